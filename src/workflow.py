"""What every phase of the migration shares: its error, its run options, the peer. No ops here."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

Log = Callable[[str], None]
MAX_LISTED = 20
# Images snapshotted (or snapshots removed) at once: each takes a snapshot id from the mons,
# which hand them out once per Paxos round (about 1 s), so the time is rounds, not bytes.
# Measured on the lab: 100 snapshots took 6.8 s with 16 at once, 2.1 s with 64, 1.1 s with
# 100 (95 MiB for the process); 200 took 12.7 s with 16.
SNAPSHOT_WORKERS = 128


class MigrationError(Exception):
    """An expected failure; the message says what is wrong and what to do.

    `results`: what the action found before it failed (verify's mismatches), set as the
    action's results beside the failure.
    """

    def __init__(self, message: str, *, results: dict[str, object] | None = None):
        super().__init__(message)
        self.results = results or {}


def _no_log(_: str) -> None:
    """The default `Options.log`: progress lines go nowhere."""


@dataclass(frozen=True)
class Options:
    """How a step runs: parallelism of per-image and per-pool work, dry run, progress lines."""

    workers: int = 16
    dry_run: bool = False
    log: Log = _no_log
    # The pools this unit recorded a completed teardown of: the only evidence an empty pool
    # leaves, and all there is once the source no longer answers (report.PoolReport.torn_down).
    torn_down: frozenset[str] = frozenset()


@dataclass(frozen=True)
class PeerSpec:
    """The source as a peer of the destination pools: `client_name@site_name`."""

    client_name: str
    site_name: str


def listed(items: Sequence[str]) -> str:
    """Up to MAX_LISTED items, comma-separated, and how many more there are."""
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f" ... and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")
