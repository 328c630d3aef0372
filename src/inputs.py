"""Typed inputs of the charm: its config, the parameters of each action, and name rules.

Every name that reaches Ceph, from config, an action parameter or a cluster's own listing, is
checked here first (`parse_pool_list`, `check_pool_names`, `odd_image_names`), so a pool named
`--force` can never reach a command line as a flag.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from mirror_modes import JOURNAL, interval_seconds, mode

_CLUSTER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
POOL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# RBD allows almost any image name; these are the ones no OpenStack service creates and that a
# command line or a log would misread: a leading '-', white space or control characters, '/'
# and '@' (librbd's own separators).
_ODD_IMAGE_NAME = re.compile(r"^-|[\s/@\x00-\x1f\x7f]")

MAX_DEMOTE_PROMOTE_TIMEOUT = 3600
MAX_VERIFY_SAMPLE = 1024  # random chunks per image
MAX_VERIFY_TIMEOUT = 86400  # seconds per pool and side
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
MIN_JOURNAL_LIMIT = 128 * 1024**2


def parse_size(text: str, what: str) -> int:
    """'1G', '512M', '1.5GiB', '1048576' -> bytes (powers of 1024); ValueError otherwise."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"{what}: {text!r} is not a size: use e.g. 512M, 1G or 2GiB")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def check_pool_names(names: Iterable[str], what: str) -> list[str]:
    """Return `names` as a list; ValueError names every one that is not a safe pool name."""
    items = list(names)
    bad = [p for p in items if not POOL_NAME.match(p)]
    if bad:
        raise ValueError(
            f"{what}: invalid pool name(s) {', '.join(map(repr, bad))}: use "
            "letters, digits, '.', '_' and '-', starting with a letter or digit"
        )
    return items


def parse_pool_list(text: str, what: str) -> tuple[str, ...]:
    """Split a comma-separated pool list; ValueError on empty items, duplicates and odd names."""
    items = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in items):
        raise ValueError(f"{what}: empty pool name in {text!r}; give names separated by commas")
    check_pool_names(items, what)
    dupes = sorted({p for p in items if items.count(p) > 1})
    if dupes:
        raise ValueError(f"{what}: pool(s) listed twice: {', '.join(dupes)}")
    return tuple(items)


def odd_image_names(names: Iterable[str]) -> list[str]:
    """The image names this charm refuses to handle (see `_ODD_IMAGE_NAME`), as repr()s."""
    return [repr(n) for n in names if not n or _ODD_IMAGE_NAME.search(n)]


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
    journal_backlog_limit: str = "1G"
    daemon_down_limit: int = 30
    journal_max_object_sets: int = 0
    mirror_mode: str = JOURNAL
    snapshot_interval: str = "5m"

    @property
    def snapshot_interval_s(self) -> int:
        """`snapshot-interval` in seconds."""
        return interval_seconds(self.snapshot_interval)

    @property
    def journal_limit_bytes(self) -> int:
        """`journal-backlog-limit` in bytes."""
        return parse_size(self.journal_backlog_limit, "journal-backlog-limit")

    @property
    def pool_list(self) -> tuple[str, ...]:
        """The configured pools, parsed (empty: every rbd pool of the source)."""
        return parse_pool_list(self.pools, "config pools") if self.pools.strip() else ()

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
        _ = self.pool_list  # raises ValueError on a malformed list
        _ = mode(self.mirror_mode), self.snapshot_interval_s  # ValueError: which, and why
        if self.journal_limit_bytes < MIN_JOURNAL_LIMIT:
            raise ValueError(
                f"journal-backlog-limit {self.journal_backlog_limit!r}: at least 128M (a "
                "healthy journal keeps up to two object sets, 2 x 4 x 16 MiB by default)"
            )
        for option, value, low, high in (
            ("pool-replicas", self.pool_replicas, 0, 10),
            ("command-timeout", self.command_timeout, 5, 900),
            ("max-workers", self.max_workers, 1, 64),
            ("daemon-down-limit", self.daemon_down_limit, 1, 10080),
            ("journal-max-object-sets", self.journal_max_object_sets, 0, 1000),
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
    restart: bool = False
    mode: str | None = None  # overrides config mirror-mode for this run

    def __post_init__(self):
        if self.mode is not None:
            mode(self.mode)  # ValueError naming the choices


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
    ignore_watchers: bool = False

    def __post_init__(self):
        if not 1 <= self.timeout <= MAX_DEMOTE_PROMOTE_TIMEOUT:
            raise ValueError(
                f"timeout must be between 1 and {MAX_DEMOTE_PROMOTE_TIMEOUT} seconds, "
                f"not {self.timeout}"
            )


@dataclass(frozen=True)
class TeardownParams:
    """Parameters of teardown."""

    pools: str | None = None
    dry_run: bool = False
    force: bool = False


@dataclass(frozen=True)
class AbortParams:
    """Parameters of abort."""

    pools: str | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class RollbackParams:
    """Parameters of rollback."""

    pools: str | None = None
    dry_run: bool = False
    force: bool = False


@dataclass(frozen=True)
class VerifyParams:
    """Parameters of verify."""

    pools: str | None = None
    sample: int = 0
    max_workers: int | None = None
    timeout: int = 3600

    def __post_init__(self):
        if not 0 <= self.sample <= MAX_VERIFY_SAMPLE:
            raise ValueError(
                f"sample must be between 0 and {MAX_VERIFY_SAMPLE}, not {self.sample}"
            )
        if self.max_workers is not None and not 1 <= self.max_workers <= 64:
            raise ValueError(f"max-workers must be between 1 and 64, not {self.max_workers}")
        if not 60 <= self.timeout <= MAX_VERIFY_TIMEOUT:
            raise ValueError(
                f"timeout must be between 60 and {MAX_VERIFY_TIMEOUT} seconds, not {self.timeout}"
            )


@dataclass(frozen=True)
class NoParams:
    """Parameters of an action that takes none (pause, resume)."""
