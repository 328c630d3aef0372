"""Phase 1, enable-mirroring: one-way journal mirroring of each pool. No ops here.

On the source: pool-mode mirroring and journaling on every image not yet mirrored (one librbd
process per pool). On the destination: pool mode and one rx-only peer for the source. The
rbd-mirror daemon (daemon.py) then copies every image. Refuses, changing nothing, on a missing
destination pool, an unreadable source, a split brain, odd image names, and a finished
migration (unless `restart`). Re-running it also mirrors images created on the source since.

`before_changes` receives, per pool, the source images about to be journaled, before any change:
the unit records them there, so that `abort` takes journaling off exactly those, even after a
run interrupted part-way. With `journal_object_sets`, each source pool also gets librbd's
`rbd_journal_max_concurrent_object_sets` (the journal cap of the journal guard, README), before
any image is journaled.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ceph_cli import EACCES, JOURNAL_PROBE_IMAGE, CephCluster, CephError
from inputs import odd_image_names
from report import PoolReport, StatusReport, read, split_brain_advice
from workflow import MigrationError, Options, PeerSpec, listed

JOURNAL_CAP = "rbd_journal_max_concurrent_object_sets"  # librbd's option, set per source pool
EPERM = 1


@dataclass
class PoolEnableResult:
    """What enable-mirroring found and did on one pool."""

    pool: str
    images: int = 0
    changes: list[str] = field(default_factory=list)
    peer_uuid: str = ""
    locked: list[str] = field(default_factory=list)  # images that got exclusive-lock too
    had_journaling: list[str] = field(default_factory=list)  # journaled before: not ours
    cap: str = ""  # the journal cap: "", "set to N", or why it could not be set


def enable_mirroring(
    src: CephCluster,
    dst: CephCluster,
    pools: Sequence[str],
    peer: PeerSpec,
    opts: Options,
    *,
    restart: bool = False,
    before_changes: Callable[[dict[str, list[str]]], None] = lambda _: None,
    journal_object_sets: int = 0,
    report: StatusReport | None = None,
) -> list[PoolEnableResult]:
    """Set up one-way mirroring of `pools`; with `opts.dry_run`, only report what would change.

    Refuses, changing nothing: a missing destination pool, an unreadable source, a split brain,
    odd image names, and (unless `restart`) a pool whose migration was torn down.
    `before_changes` runs once the checks pass, before the first change (not in a dry run), with
    the images each pool is about to journal: the unit records the migration there, so that a
    run interrupted part-way is still guarded and can be aborted. `report`: both clusters as
    the preflight read them just before (else read here).
    """
    if report is None:
        require_destination_pools(dst, pools)
        report = read(src, dst, pools, opts)
    _refuse_to_enable(report, peer, restart=restart)
    todo = {p.pool: _to_journal(p) for p in report.pools if restart or not p.torn_down}
    if not opts.dry_run:
        before_changes(todo)
    results, failures = [], []
    for pool in report.pools:
        if pool.torn_down and not restart:
            opts.log(f"{pool.pool}: torn down already, left alone")
            continue
        result = PoolEnableResult(pool=pool.pool, images=len(pool.source_images))
        results.append(result)
        if journal_object_sets:
            _cap_journals(src, pool.pool, journal_object_sets, result, opts)
        failures += _enable_source(src, pool, result, opts)
        _enable_destination(dst, pool, peer, result, opts)
        done = "; ".join(result.changes) or "already mirrored"
        opts.log(f"{pool.pool}: {result.images} image(s); {done}")
    if failures:
        raise MigrationError(
            f"journaling could not be enabled on {len(failures)} image(s) "
            f"(the rest is done; re-run to retry): {listed(failures)}"
        )
    return results


def require_destination_pools(dst: CephCluster, pools: Sequence[str]) -> None:
    """MigrationError, naming them, while a destination pool does not exist yet."""
    dst_pools = {p.name for p in dst.pools()}
    missing = [p for p in pools if p not in dst_pools]
    if missing:
        raise MigrationError(
            f"destination pool(s) missing: {', '.join(missing)}. ceph-mon creates "
            "them from this charm's broker request; wait until the unit status "
            "no longer says 'waiting for destination pools', then re-run"
        )


def _refuse_to_enable(report: StatusReport, peer: PeerSpec, *, restart: bool) -> None:
    if report.source_errors:
        raise MigrationError(f"the source does not answer, nothing changed: {report.source_error}")
    if report.split_brain:
        raise MigrationError(split_brain_advice(report.split_brain, peer.site_name))
    odd = [f"{p.pool}/{n}" for p in report.pools for n in odd_image_names(p.source_images)]
    if odd:
        raise MigrationError(
            f"image name(s) this charm will not handle, nothing changed: {listed(odd)}; "
            "rename them (rbd rename) or leave their pool out"
        )
    if not report.active and not restart:
        raise MigrationError(
            f"the migration of {', '.join(p.pool for p in report.pools)} is finished (torn "
            "down), nothing changed: enabling mirroring again would journal the source's "
            "images and re-arm the daemon. To start a new migration on purpose, re-run with "
            "restart=true"
        )


def _enable_source(
    src: CephCluster, pool: PoolReport, result: PoolEnableResult, opts: Options
) -> list[str]:
    """Pool mode, then journaling on every image not yet mirrored; return per-image failures."""
    if pool.source_mode != "pool":
        result.changes.append(f"source: mirroring mode {pool.source_mode} -> pool")
        if not opts.dry_run:
            src.mirror_pool_enable(pool.pool, "pool")
    todo = _to_journal(pool)
    if not todo:
        return []
    result.changes.append(f"source: journaling on {len(todo)} image(s)")
    opts.log(f"{pool.pool}: enabling journaling on {len(todo)} of {result.images} image(s)")
    if opts.dry_run:
        return []
    changed, failed = src.enable_journaling_all(pool.pool, todo, workers=opts.workers)
    result.locked = sorted(n for n, what in changed.items() if "exclusive-lock" in what)
    result.had_journaling = sorted(n for n in todo if n not in changed and n not in failed)
    return [f"{pool.pool}/{n}: {err}" for n, err in failed.items()]


def _to_journal(pool: PoolReport) -> list[str]:
    """The source images to journal: not mirrored yet, and not the preflight's probe image.

    In pool mode, the mirrored images are exactly those with journaling. Before pool mode,
    none is listed; the helper skips images that already have journaling. A probe image left
    by a killed preflight is listed until the next probe removes it: never the cloud's.
    """
    return [
        n
        for n in pool.source_images
        if n not in pool.source_primary and not n.startswith(JOURNAL_PROBE_IMAGE)
    ]


def _cap_journals(
    src: CephCluster, pool: str, sets: int, result: PoolEnableResult, opts: Options
) -> None:
    """The journal cap on the source pool, if its key may set it (else said, not fatal).

    librbd reads pool-level options when it opens (or refreshes) an image: the writer, the
    VM's own librbd, enforces the cap, and a peer past it is disconnected.
    """
    result.changes.append(f"source: {JOURNAL_CAP} = {sets}")
    if opts.dry_run:
        return
    try:
        src.pool_config_set(pool, JOURNAL_CAP, str(sets))
    except CephError as exc:
        if exc.rc not in (EACCES, EPERM):
            raise
        result.changes[-1] = f"source: {JOURNAL_CAP} not set, the source key may not: {exc}"
        opts.log(f"WARNING: {pool}: {result.changes[-1]}")
        return
    result.cap = f"set to {sets}"


def _enable_destination(
    dst: CephCluster, pool: PoolReport, peer: PeerSpec, result: PoolEnableResult, opts: Options
) -> None:
    """Pool mode and our rx-only peer on the destination pool."""
    if pool.destination_mode != "pool":
        result.changes.append(f"destination: mirroring mode {pool.destination_mode} -> pool")
        if not opts.dry_run:
            dst.mirror_pool_enable(pool.pool, "pool")
    ours = [
        p
        for p in pool.peers
        if p.site_name == peer.site_name and p.client_name == peer.client_name
    ]
    if ours:
        result.peer_uuid = ours[0].uuid
        return
    result.changes.append(f"destination: add rx-only peer {peer.client_name}@{peer.site_name}")
    if not opts.dry_run:
        result.peer_uuid = dst.peer_add(pool.pool, peer.client_name, peer.site_name)
