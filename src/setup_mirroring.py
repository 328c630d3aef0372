"""Phase 1, enable-mirroring: one-way mirroring of each pool, in either mode. No ops here.

The steps read the same for both modes (mirror_modes.py says what differs):
1. refuse, changing nothing, on a missing destination pool, an unreadable source, a split
   brain, odd image names, a pool mirrored in the other mode, and a finished migration
   (unless `restart`);
2. on the destination: the mode's pool mirroring mode and one rx-only peer for the source;
3. on the source: the mode's pool mirroring mode, then every image not yet mirrored: journaling
   (journal mode) or snapshot mirroring (snapshot mode), one librbd process per pool;
4. snapshot mode only: a mirror snapshot schedule on each source pool (the source's mgr runs
   it; a key that may not set one leaves it to the charm, `PoolEnableResult.schedule`), and,
   once the daemon has registered as the source's tx peer, a first mirror snapshot of every
   image: librbd's own at enable time names no peer, and the daemon ignores it.
The rbd-mirror daemon (daemon.py) then copies every image. Refuses, changing nothing, on a missing
destination pool, an unreadable source, a split brain, odd image names, and a finished
migration (unless `restart`). Re-running it also mirrors images created on the source since.

`before_changes` receives, per pool, the source images about to be journaled, before any change:
the unit records them there, so that `abort` takes journaling off exactly those, even after a
run interrupted part-way. With `journal_object_sets`, each source pool also gets librbd's
`rbd_journal_max_concurrent_object_sets` (the journal cap of the journal guard, README), before
any image is journaled.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ceph_cli import EACCES, JOURNAL_PROBE_IMAGE, CephCluster, CephError
from inputs import odd_image_names
from mirror_modes import MODES, MirrorMode
from report import PoolReport, StatusReport, foreign_peers, read, split_brain_advice
from workflow import SNAPSHOT_WORKERS, MigrationError, Options, PeerSpec, listed

JOURNAL_CAP = "rbd_journal_max_concurrent_object_sets"  # librbd's option, set per source pool
EPERM = 1
# How long enable-mirroring waits for the daemon to register as the source pools' tx peer
# before the first mirror snapshots (snapshot mode). It notices a new peer within
# rbd-mirror-pool-replayers-refresh-interval (10 s by default); past this, the schedule's
# first snapshot starts the sync.
TX_PEER_WAIT_S = 45.0
TX_PEER_POLL_S = 2.0
SELF_SCHEDULED = "self"  # PoolEnableResult.schedule: the charm takes the snapshots itself


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
    mode: str = "journal"
    schedule: str = ""  # snapshot mode: the interval the source's mgr runs, or SELF_SCHEDULED
    first_snapshots: int = 0  # snapshot mode: images given a first snapshot the daemon copies


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
    mode: MirrorMode = MODES["journal"],
    snapshot_interval: str = "5m",
    sleep: Callable[[float], None] = time.sleep,
    scheduled: Callable[[Sequence[PoolEnableResult]], None] = lambda _: None,
) -> list[PoolEnableResult]:
    """Set up one-way mirroring of `pools`; with `opts.dry_run`, only report what would change.

    Refuses, changing nothing: a missing destination pool, an unreadable source, a split brain,
    odd image names, and (unless `restart`) a pool whose migration was torn down.
    `before_changes` runs once the checks pass, before the first change (not in a dry run), with
    the images each pool is about to journal: the unit records the migration there, so that a
    run interrupted part-way is still guarded and can be aborted. `report`: both clusters as
    the preflight read them just before (else read here). `mode`: how the pools are mirrored;
    `snapshot_interval`: snapshot mode's schedule; `scheduled` gets the results once every pool
    is done, also when some images failed (who takes each pool's snapshots is decided).
    """
    if report is None:
        require_destination_pools(dst, pools)
        report = read(src, dst, pools, opts)
    refuse_to_enable(report, peer, restart=restart, mode=mode)
    if not mode.journals and (foreign := foreign_peers(src, dst, pools, peer)):
        raise MigrationError(
            f"pool(s) mirrored to other sites already, nothing changed: {listed(foreign)}. "
            "Snapshot mode never takes over another mirror (its schedules and teardown would "
            "end it): remove "
            "those peers by hand if they are stale, then re-run"
        )
    todo = {p.pool: _to_journal(p) for p in report.pools if restart or not p.torn_down}
    if not opts.dry_run:
        before_changes(todo if mode.journals else {p: [] for p in todo})
    results, failures = [], []
    for pool in report.pools:
        if pool.torn_down and not restart:
            opts.log(f"{pool.pool}: torn down already, left alone")
            continue
        result = PoolEnableResult(pool=pool.pool, images=len(pool.source_images), mode=mode.name)
        results.append(result)
        if journal_object_sets and mode.journals:
            _cap_journals(src, pool.pool, journal_object_sets, result, opts)
        # the destination first: its peer is what makes the daemon register on the source,
        # which snapshot mode's first snapshots wait for
        _enable_destination(dst, pool, peer, result, opts, mode)
        failures += _enable_source(src, pool, result, opts, mode)
        if not mode.journals:
            _schedule(src, pool.pool, snapshot_interval, result, opts)
        done = "; ".join(result.changes) or "already mirrored"
        opts.log(f"{pool.pool}: {result.images} image(s); {done}")
    if not mode.journals and not opts.dry_run:
        scheduled(results)
        first_snapshots(src, results, opts, sleep=sleep)
    if failures:
        raise MigrationError(
            f"{mode.image_step} could not be enabled on {len(failures)} image(s) "
            f"(the rest is done; re-run to retry): {listed(failures)}"
        )
    return results


def _per_mode_runs(report: StatusReport, asked: MirrorMode) -> str:
    """The way out of a refusal for mixing modes: one enable-mirroring per mode.

    Each names the pools it takes; those not mirrored yet go with the mode asked for.
    """
    by_mode: dict[str, list[str]] = {}
    for pool in report.pools:
        if not pool.torn_down:  # finished: enable-mirroring leaves it alone
            by_mode.setdefault((pool.mode or asked).name, []).append(pool.pool)
    runs = [f"enable-mirroring pools={','.join(p)} mode={m}" for m, p in sorted(by_mode.items())]
    return f"run {' and '.join(runs)}"


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


def refuse_to_enable(
    report: StatusReport, peer: PeerSpec, *, restart: bool, mode: MirrorMode
) -> None:
    """MigrationError, nothing changed, for what makes enabling `mode` on the pools wrong.

    enable-mirroring asks this before its preflight's per-image findings, which would
    otherwise hide the pool-level reason (a clone's advice in a pool of the other mode).
    """
    if report.source_errors:
        raise MigrationError(f"the source does not answer, nothing changed: {report.source_error}")
    if report.split_brain:
        raise MigrationError(split_brain_advice(report.split_brain, peer.site_name))
    demoted = [p.pool for p in report.pools if p.torn_down and p.cutover_started]
    if restart and demoted:
        raise MigrationError(
            f"{', '.join(demoted)}: the finished migration left the source's images demoted "
            "(read-only), and rbd-mirror copies only primary images: a new migration would "
            "copy nothing, nothing changed. On the old cluster, with its admin key, remove the "
            "peer, promote and disable mirroring first (README, runbook step 13), then re-run "
            "with restart=true"
        )
    # The source's mode only: an abort may leave a destination pool half-disabled (image mode)
    other = [
        f"{p.pool} ({p.mode.name} mode)"
        for p in report.pools
        if (restart or not p.torn_down) and p.mode is not None and p.mode != mode
    ]
    if other:
        raise MigrationError(
            f"pool(s) mirrored in the other mode, nothing changed: {listed(other)}. A pool is "
            f"never converted between modes: {_per_mode_runs(report, mode)}, or abort a pool "
            f"first to mirror it in {mode.name} mode"
        )
    odd = [f"{p.pool}/{n}" for p in report.pools for n in odd_image_names(p.source_images)]
    if odd:
        raise MigrationError(
            f"image name(s) this charm will not handle, nothing changed: {listed(odd)}; "
            "rename them (rbd rename) or leave their pool out"
        )
    if not report.active and not restart:
        raise MigrationError(
            f"the migration of {', '.join(p.pool for p in report.pools)} is finished (torn "
            "down), nothing changed: enabling mirroring again would re-arm mirroring on the "
            "source's images and the daemon. To start a new migration on purpose, re-run with "
            "restart=true"
        )


def _enable_source(
    src: CephCluster, pool: PoolReport, result: PoolEnableResult, opts: Options, mode: MirrorMode
) -> list[str]:
    """The mode's pool mode, then every image not yet mirrored; return per-image failures."""
    if pool.source_mode != mode.pool_mode:
        result.changes.append(f"source: mirroring mode {pool.source_mode} -> {mode.pool_mode}")
        if not opts.dry_run:
            src.mirror_pool_enable(pool.pool, mode.pool_mode)
    todo = _to_journal(pool)
    if not todo:
        return []
    what = mode.image_step
    result.changes.append(f"source: {what} on {len(todo)} image(s)")
    opts.log(f"{pool.pool}: enabling {what} on {len(todo)} of {result.images} image(s)")
    if opts.dry_run:
        return []
    if not mode.journals:
        # each enable takes a mirror snapshot: a snapshot id from the mons, so run them wide
        workers = max(opts.workers, SNAPSHOT_WORKERS)
        changed, failed = src.enable_snapshot_mirroring_all(pool.pool, todo, workers=workers)
        result.locked = sorted(n for n, what in changed.items() if "exclusive-lock" in what)
        return [f"{pool.pool}/{n}: {err}" for n, err in failed.items()]
    changed, failed = src.enable_journaling_all(pool.pool, todo, workers=opts.workers)
    result.locked = sorted(n for n, what in changed.items() if "exclusive-lock" in what)
    result.had_journaling = sorted(n for n in todo if n not in changed and n not in failed)
    return [f"{pool.pool}/{n}: {err}" for n, err in failed.items()]


def _schedule(
    src: CephCluster, pool: str, interval: str, result: PoolEnableResult, opts: Options
) -> None:
    """Snapshot mode: the pool's mirror snapshot schedule on the source's mgr, if not there.

    One schedule: another interval (an earlier `snapshot-interval`) is replaced. A key that
    may not set it (no mgr caps), or a mgr that does not answer, leaves the snapshots to the
    charm (`SELF_SCHEDULED`): said, not fatal.
    """
    try:
        found = src.snapshot_schedules(pool)
        # no foreign peer (checked): any other interval is this charm's, from an earlier config
        for other in (i for i in found if i != interval):
            result.changes.append(f"source: mirror snapshot schedule every {other} removed")
            if not opts.dry_run:
                src.snapshot_schedule(pool, other, add=False)
        if interval not in found:
            result.changes.append(f"source: mirror snapshot schedule every {interval}")
            if not opts.dry_run:
                src.snapshot_schedule(pool, interval, add=True)
        result.schedule = interval
    except CephError as exc:  # said every run, but not a change: the charm's schedule is kept
        result.schedule = SELF_SCHEDULED
        opts.log(
            f"WARNING: {pool}: no mirror snapshot schedule on the source ({exc}): the charm "
            f"takes a snapshot of each image every {interval} on update-status instead"
        )


def first_snapshots(
    src: CephCluster,
    results: Sequence[PoolEnableResult],
    opts: Options,
    *,
    wait: float = TX_PEER_WAIT_S,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Snapshot mode: once the daemon is each source pool's tx peer, a mirror snapshot of all.

    librbd's snapshot at enable time lists the source pool's tx peers of that moment; before
    the daemon has registered there it lists none, and the daemon never copies it. So wait
    (bounded) for the registration, then snapshot every image. Past the wait, the schedule's
    next snapshot starts the sync: said, not fatal.
    """
    deadline = time.monotonic() + wait
    pending = [r for r in results if r.images]
    for _ in range(int(wait // TX_PEER_POLL_S) + 1):  # bounded in count and in time
        registered = [r for r in pending if _has_tx_peer(src, r.pool)]
        for result in registered:
            _first_snapshot(src, result, opts)
        pending = [r for r in pending if r not in registered]
        if not pending or time.monotonic() >= deadline:
            break
        sleep(TX_PEER_POLL_S)
    if pending:
        opts.log(
            f"WARNING: the rbd-mirror daemon has not registered on the source yet for "
            f"{', '.join(r.pool for r in pending)}: the sync starts with the schedule's "
            "next snapshot (status shows it)"
        )


def _first_snapshot(src: CephCluster, result: PoolEnableResult, opts: Options) -> None:
    images = src.pool_state(result.pool).images
    workers = max(opts.workers, SNAPSHOT_WORKERS)
    taken, failed = src.mirror_snapshot_all(result.pool, images, workers=workers)
    result.first_snapshots = len(taken)
    opts.log(f"{result.pool}: first mirror snapshot of {len(taken)} image(s)")
    if failed:
        opts.log(
            f"WARNING: {result.pool}: no first snapshot of {len(failed)} image(s), the "
            f"schedule's next one starts their sync: {listed(sorted(failed))}"
        )


def _has_tx_peer(src: CephCluster, pool: str) -> bool:
    """The source pool lists a tx-only peer: a daemon of the destination registered there."""
    return any(p.tx_only for p in src.mirror_pool_info(pool).peers)


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
    dst: CephCluster,
    pool: PoolReport,
    peer: PeerSpec,
    result: PoolEnableResult,
    opts: Options,
    mode: MirrorMode,
) -> None:
    """The mode's pool mode and our rx-only peer on the destination pool."""
    if pool.destination_mode != mode.pool_mode:
        change = f"destination: mirroring mode {pool.destination_mode} -> {mode.pool_mode}"
        result.changes.append(change)
        if not opts.dry_run:
            dst.mirror_pool_enable(pool.pool, mode.pool_mode)
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
