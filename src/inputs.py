"""Typed inputs of the charm: its config and the parameters of each action."""

from __future__ import annotations

import re
from dataclasses import dataclass

_CLUSTER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class CharmConfig:
    """config.yaml, validated (ValueError says which option is wrong)."""

    pools: str = ""
    source_cluster_name: str = "source"
    pool_replicas: int = 0
    command_timeout: int = 60
    max_workers: int = 16
    rbd_mirror_concurrent_image_syncs: int = 5
    rbd_concurrent_management_ops: int = 10
    rbd_mirror_pool_replayers_refresh_interval: int = 10
    rbd_mirror_image_state_check_interval: int = 10

    @property
    def daemon_tuning(self) -> tuple[tuple[str, int], ...]:
        """Ceph options for the rbd-mirror daemon's [client] section."""
        return (
            ("rbd_mirror_concurrent_image_syncs", self.rbd_mirror_concurrent_image_syncs),
            ("rbd_concurrent_management_ops", self.rbd_concurrent_management_ops),
            (
                "rbd_mirror_pool_replayers_refresh_interval",
                self.rbd_mirror_pool_replayers_refresh_interval,
            ),
            ("rbd_mirror_image_state_check_interval", self.rbd_mirror_image_state_check_interval),
        )

    def __post_init__(self):
        name = self.source_cluster_name
        if not _CLUSTER_NAME.match(name) or name == "ceph":
            raise ValueError(
                f"source-cluster-name {name!r}: use letters, digits, '-' and '_', "
                "start with a letter, and not 'ceph' (the destination)"
            )
        for option, value, low, high in (
            ("pool-replicas", self.pool_replicas, 0, 10),
            ("command-timeout", self.command_timeout, 5, 3600),
            ("max-workers", self.max_workers, 1, 64),
            ("rbd-mirror-concurrent-image-syncs", self.rbd_mirror_concurrent_image_syncs, 1, 64),
            ("rbd-concurrent-management-ops", self.rbd_concurrent_management_ops, 1, 256),
            (
                "rbd-mirror-pool-replayers-refresh-interval",
                self.rbd_mirror_pool_replayers_refresh_interval,
                1,
                3600,
            ),
            (
                "rbd-mirror-image-state-check-interval",
                self.rbd_mirror_image_state_check_interval,
                1,
                3600,
            ),
        ):
            if not low <= value <= high:
                raise ValueError(f"{option} must be between {low} and {high}, not {value}")


@dataclass(frozen=True)
class EnableMirroringParams:
    """Parameters of enable-mirroring."""

    pools: str | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class StatusParams:
    """Parameters of status."""

    pools: str | None = None
    verbose: bool = False


@dataclass(frozen=True)
class DemotePromoteParams:
    """Parameters of demote-promote."""

    pools: str | None = None
    timeout: int = 300
    force: bool = False

    def __post_init__(self):
        if self.timeout < 1:
            raise ValueError("timeout must be at least 1 second")


@dataclass(frozen=True)
class TeardownParams:
    """Parameters of teardown."""

    pools: str | None = None
    dry_run: bool = False
