"""Phase 3, demote-promote: the cutover. No ops here.

Preflight (`report.cutover_blockers`), demote the source, promote the destination (retried
while the demotion is not replayed: `pool promote` answering EBUSY in journal mode; in snapshot
mode image by image, each once its demotion snapshot is copied whole, `_promote_round`),
snapshot every promoted destination image (`CUTOVER_SNAPSHOT`: rollback's proof that nothing
wrote to it since), verify from librbd's primary flags on both sides.

Safety rule: a promote happens only once the destination has replayed the source's demotion,
which comes after every write to the image; so "caught up" is proven by librbd itself, not by
the lagging status. Journal mode: librbd refuses a non-forced promote until then. Snapshot
mode: the demotion is a last mirror snapshot taken by `pool demote` after the instances
stopped, and librbd would let a promote through before it is copied (only the daemon's lock
stops it), so the charm itself checks that snapshot is complete first. `force` is for a
source that does not answer at all; with a source that answers it refuses (a forced
promotion of a live source is a split brain).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import tenacity

from ceph_cli import PENDING, CephCluster, CephError
from ceph_release import snapshot_clone_refusal
from mirror_modes import JOURNAL, MODES, SNAPSHOT, MirrorMode
from report import (
    StatusReport,
    confirm_source_lost,
    cutover_blockers,
    read,
    split_brain_advice,
)
from workflow import SNAPSHOT_WORKERS, Log, MigrationError, Options, listed


@dataclass
class CutoverResult:
    """What demote-promote did, per pool."""

    demoted: dict[str, int] = field(default_factory=dict)
    promoted: dict[str, int] = field(default_factory=dict)
    attempts: int = 0
    seconds: float = 0.0
    forced: bool = False
    # Forced only: images that were not caught up when promoted (writes may be missing).
    at_risk: list[str] = field(default_factory=list)
    report: StatusReport | None = None  # both sides as verified after the cutover
    snapshots: dict[str, int] = field(default_factory=dict)  # cutover snapshots taken now


def demote_promote(
    src: CephCluster,
    dst: CephCluster,
    pools: Sequence[str],
    opts: Options,
    *,
    timeout: float,
    force: bool,
    daemon_running: bool,
    ignore_watchers: bool = False,
    source_cluster: str = "source",
    sleep: Callable[[float], None] = time.sleep,
) -> CutoverResult:
    """Cut over `pools` from the source to the destination; see the module docstring."""
    start = time.monotonic()
    result = CutoverResult(forced=force)
    watchers = not (force or ignore_watchers)
    report = read(src, dst, pools, opts, daemon_running=daemon_running, watchers=watchers)
    if report.split_brain:
        raise MigrationError(split_brain_advice(report.split_brain, source_cluster))
    active = [p.pool for p in report.active]  # pools already torn down are left alone
    if not active:
        raise MigrationError("nothing to cut over, nothing changed: every pool is torn down")
    if force:
        confirm_source_lost(src, report)
        _force_promote(dst, report, result, opts.log)
        _snapshot_promoted(dst, _not_primary(report), result, opts)
    else:
        blocking = cutover_blockers(report, ignore_watchers=ignore_watchers)
        blocking += snapshot_clones(src, report)
        if blocking:
            raise MigrationError(f"not ready for cutover, nothing changed: {listed(blocking)}")
        modes = {p.pool: p.mode or MODES[JOURNAL] for p in report.active}
        names = {p.pool: [i.name for i in p.images] for p in report.active}
        on_source = {p.pool: list(p.source_images) for p in report.active}
        for pool in active:
            result.demoted[pool] = _demote(src, pool, modes[pool], on_source[pool], opts)
            opts.log(f"{pool}: demoted {result.demoted[pool]} source image(s)")
        try:
            _promote_until_done(dst, modes, result, start + timeout, opts, sleep, names)
        except BaseException:  # a timeout or an error: what this run promoted gets its proof
            _snapshot_promoted(dst, _not_primary(report), result, opts, quiet=True)
            raise
        _snapshot_promoted(dst, _not_primary(report), result, opts)
        result.report = _verify_cutover(src, dst, active, daemon_running, opts)
        before = {p.pool: p.promoted for p in report.pools}
        after = {p.pool: p.promoted for p in result.report.pools}
        result.promoted = {pool: after[pool] - before.get(pool, 0) for pool in active}
    result.seconds = time.monotonic() - start
    return result


def _demote(src: CephCluster, pool: str, mode: MirrorMode, names: list[str], opts: Options) -> int:
    """Demote the source's primary images of `pool`, as the pool's mode does it; how many.

    Image by image, side by side, where each demotion is a snapshot: a failure leaves the
    others demoted (the cutover has begun) and is raised: the re-run demotes the rest.
    """
    if not mode.demotes_per_image:
        return src.pool_demote(pool)
    demoted, failed = src.demote_images(pool, names, workers=max(opts.workers, SNAPSHOT_WORKERS))
    if failed:
        why = [f"{n}: {e}" for n, e in sorted(failed.items())]
        raise MigrationError(
            f"{pool}: {len(failed)} source image(s) not demoted ({len(demoted)} were; re-run "
            f"demote-promote to finish): {listed(why)}"
        )
    return len(demoted)


def _force_promote(
    dst: CephCluster, report: StatusReport, result: CutoverResult, log: Log
) -> None:
    """The disaster path: promote every requested pool by force, only if the source is gone.

    A source that answers, even for one pool, is alive: then the safe path is the one to use,
    because a forced promotion of a live source is a split brain with unreplayed writes.
    """
    if not report.source_lost:
        raise MigrationError(
            "force=true refused, nothing changed: the source answers (a read that fails with "
            "an error is an answer), so use demote-promote without force: it waits for every "
            "write to be replayed. force is only for a source that no longer answers at all"
        )
    log(
        "FORCE: the source does not answer; promoting every requested pool without demoting "
        f"it ({report.source_error}). Writes not replayed yet are lost, and the source must "
        "be demoted before it is used again"
    )
    result.at_risk = [
        f"{i.pool}/{i.name}: {i.state}" for pool in report.active for i in pool.lagging
    ] + [  # a forced promote rolls a snapshot-mode image back to its last copied snapshot
        f"{i.pool}/{i.name}: writes since its last copied mirror snapshot are lost"
        for pool in report.active
        for i in pool.images
        if i.mode == SNAPSHOT and i.caught_up
    ]
    if result.at_risk:
        log(
            f"FORCE: {len(result.at_risk)} image(s) were not caught up and may miss writes or "
            f"be incomplete: {listed(result.at_risk)}"
        )
    for pool in report.active:
        result.promoted[pool.pool] = dst.pool_promote(pool.pool, force=True)
        log(f"{pool.pool}: promoted {result.promoted[pool.pool]} image(s) by force")


def snapshot_clones(src: CephCluster, report: StatusReport) -> list[str]:
    """Clones mirrored in snapshot mode (enabled by hand since enable-mirroring refused them).

    Snapshot mirroring may corrupt a clone's copy (`ceph_release.snapshot_clone_refusal`):
    the cutover will not make such a copy the one the cloud uses. One read per such pool.
    """
    found = [
        f"{pool.pool}/{info.name}: {snapshot_clone_refusal()}"
        for pool in report.active
        if pool.mode is not None and not pool.mode.carries_clones
        for info in src.image_states(pool.pool)
        if info.parent and info.mirroring_state == "enabled"
    ]
    return found


def _not_primary(report: StatusReport) -> dict[str, list[str]]:
    """Per active pool, the destination images not primary before this run: it promotes them."""
    return {p.pool: [i.name for i in p.images if not i.primary] for p in report.active}


def _snapshot_promoted(
    dst: CephCluster,
    promoted: dict[str, list[str]],
    result: CutoverResult,
    opts: Options,
    *,
    quiet: bool = False,
) -> None:
    """The cutover snapshot of every image this run promoted (rollback's proof).

    Taken right after the promotion, while the cloud is stopped and still related to the
    source: nothing can have written to the destination yet. Only this run's: an image found
    primary already (an earlier run was killed before its snapshot) may have been written
    since, so it gets none, and rollback cannot prove it unchanged. `quiet`: after the cutover
    failed; an error here is logged, never raised over that failure.
    """
    for pool, names in promoted.items():
        if not names:
            continue
        try:
            taken = dst.cutover_snapshots(
                pool, "create", workers=max(opts.workers, SNAPSHOT_WORKERS), images=names
            ).changed
        except CephError as exc:
            if not quiet:
                raise
            opts.log(f"WARNING: {pool}: cutover snapshots not taken: {exc}")
            continue
        result.snapshots[pool] = len(taken)
        if taken:
            opts.log(f"{pool}: cutover snapshot taken of {len(taken)} image(s)")
        without = sorted(set(names) - set(taken))
        if without and not quiet:
            opts.log(
                f"WARNING: {pool}: {len(without)} image(s) got no cutover snapshot (not "
                f"primary, or it had one already): {listed(without)}"
            )


class _StillBusyError(Exception):
    """Some pools are not fully promoted yet: their demotion is not replayed yet."""

    def __init__(self, pending: list[str]):
        self.pending = pending
        super().__init__(", ".join(pending))


STALLED_AFTER_S = 60.0  # a demotion copy whose object count did not move this long is "stalled"
# rbd_bulk's answer for a demotion snapshot the daemon is copying: "... object N[ of M]".
_COPYING = re.compile(r"being copied: object (\d+)")


def _promote_until_done(
    dst: CephCluster,
    pending_modes: dict[str, MirrorMode],
    result: CutoverResult,
    deadline: float,
    opts: Options,
    sleep: Callable[[float], None],
    images: dict[str, list[str]] | None = None,
) -> None:
    """Promote each pool until done; a pool whose demotion is still in flight stays pending.

    The retry rule: a round promotes every pending pool (`_promote_round`, per the pool's
    mode); only "not yet" keeps a pool pending (any other error ends the cutover at once); a
    round that leaves pools pending is retried every second until `deadline`. Each round
    skips images already primary, so repeating it is safe. `images`: each snapshot-mode
    pool's destination images (promoted one by one).
    """
    pending = list(pending_modes)
    # What each image still awaits, and since when that answer has not changed: a snapshot
    # copy's answer carries its object count, so an unchanged one is a copy not progressing.
    waiting: dict[str, tuple[str, float]] = {}

    def one_round() -> None:
        result.attempts += 1
        now = time.monotonic()
        for pool in list(pending):
            names = (images or {}).get(pool, [])
            count, awaited = _promote_round(dst, pool, pending_modes[pool], names, opts)
            for key in [k for k in waiting if k.startswith(f"{pool}/") and k not in awaited]:
                del waiting[key]
            for key, why in awaited.items():
                if waiting.get(key, ("", 0.0))[0] != why:
                    waiting[key] = (why, now)
            if awaited:
                continue
            pending.remove(pool)
            opts.log(f"{pool}: promotion complete ({count} in the last round)")
        if pending:
            raise _StillBusyError(pending)

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(_StillBusyError),
        stop=lambda _: time.monotonic() >= deadline,
        wait=tenacity.wait_fixed(1.0),
        sleep=sleep,
        reraise=True,
    )
    try:
        retrying(one_round)
    except _StillBusyError as busy:
        listing, stalled = _awaited(waiting, time.monotonic())
        raise MigrationError(
            f"timed out: {busy} not fully promoted (the demotion has not been replayed yet"
            f"{listing}). The source is demoted and no image is primary twice; re-run "
            "demote-promote to finish. "
            + (
                f"A demotion copy that has not moved for {STALLED_AFTER_S:.0f} s may never "
                "finish (a daemon restarted while it copied may not resume it: on the lab "
                "Pacific 16.2.15 did not, Tentacle 20.2.4 did; ceph/ceph PR 65953): if it has "
                "not moved after a re-run either, "
                if stalled
                else "If an image stays pending run after run, "
            )
            + "run rollback, then demote-promote again"
        ) from None


def _awaited(waiting: dict[str, tuple[str, float]], now: float) -> tuple[str, bool]:
    """The images still awaited at a timeout, each with its answer; whether a copy stalled.

    Demotion copies under way come first, the longest unmoved first: one that has not moved
    for `STALLED_AFTER_S` is marked. An image that has not started copying (queued for a
    daemon's sync slot: object 0), one whose demotion has not arrived, a daemon still holding
    an image, or a journal-mode pool give no progress to judge and are never marked.
    """
    copying = {
        key: since
        for key, (why, since) in waiting.items()
        if (found := _COPYING.search(why)) and int(found.group(1)) > 0
    }
    order = sorted(copying, key=lambda k: (copying[k], k)) + sorted(set(waiting) - set(copying))
    items, stalled = [], False
    for key in order:
        why, since = waiting[key]
        if key in copying and now - since >= STALLED_AFTER_S:
            stalled = True
            why += f", not moved for the last {now - since:.0f} s"
        items.append(f"{key} {why}")
    return (f": {listed(items)}" if items else ""), stalled


def _promote_round(
    dst: CephCluster, pool: str, mode: MirrorMode, names: list[str], opts: Options
) -> tuple[int, dict[str, str]]:
    """One promotion of `pool`: (images promoted, {what is still awaited: why}, empty when done).

    Journal mode: `pool promote`, "not yet" being EBUSY (librbd refuses until the demotion is
    replayed). Snapshot mode: image by image, each only once its demotion snapshot is copied
    whole (librbd alone would not wait for that: `mirror_modes.PROMOTE_PENDING_SNAPSHOT`).
    """
    if not mode.promotes_per_image:
        try:
            return dst.pool_promote(pool), {}
        except CephError as exc:
            if exc.rc != mode.promote_pending_rc:
                raise
            return 0, {f"{pool}/*": f"(librbd answered {exc.rc})"}
    promoted, failed = dst.promote_demoted(pool, names, workers=opts.workers)
    errors = {n: e for n, e in failed.items() if PENDING not in e}
    if errors:
        raise MigrationError(
            f"{pool}: {len(errors)} image(s) could not be promoted (the rest is done; re-run "
            f"demote-promote): {listed([f'{n}: {e}' for n, e in sorted(errors.items())])}"
        )
    return len(promoted), {f"{pool}/{n}": _why_pending(e) for n, e in sorted(failed.items())}


def _why_pending(error: str) -> str:
    """rbd_bulk's "not yet" without its exception type and marker: "(the ... is ...)"."""
    return f"({error.split(PENDING, 1)[-1]})"


def _verify_cutover(
    src: CephCluster, dst: CephCluster, pools: Sequence[str], daemon_running: bool, opts: Options
) -> StatusReport:
    """Read librbd's primary flags on both sides after a cutover; return that report.

    Every source image must be primary on the destination and none primary on the source.
    The unit status reuses the report.
    """
    report = read(src, dst, pools, opts, daemon_running=daemon_running)
    wrong = []
    for pool in report.pools:
        for what, names in (
            ("still primary on the source", pool.source_primaries),
            ("not primary on the destination", pool.destination_not_primary),
            ("missing on the destination", pool.missing),
        ):
            if names:
                wrong.append(f"{pool.pool}: {len(names)} image(s) {what}: {listed(names)}")
    if report.source_errors:
        wrong.append(f"the source did not answer the check: {report.source_error}")
    if wrong:
        raise MigrationError(f"cutover verification failed: {'; '.join(wrong)}; re-run")
    return report
