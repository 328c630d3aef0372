"""Undoing the cutover: the source primary again, the destination secondary. No ops here.

After `demote-promote` and before `teardown`, with the cloud still related to ceph-proxy.

Proof that nothing wrote to the destination since its promotion: demote-promote snapshots each
destination image right after promoting it (`CUTOVER_SNAPSHOT`); rollback asks librbd what
changed since that snapshot: extents written (`diff_iterate`), the size, snapshots taken after
it. A primary destination image without the snapshot cannot be proven unchanged. Either way
rollback refuses and names the images, unless `force` (their writes are discarded). The source
is never written by the cutover (it is demoted, read-only), so its bytes are those of the
demotion.

Then: demote the destination (no image is primary anywhere for a moment, never on both
sides); check again, now that nothing can write to it (a client still running on the new
cluster wrote between the check and the demotion: promote it back and refuse); promote the
source (not forced: its images are demoted, and librbd allows that when no other cluster
holds them primary), and flag every destination image for resync. The source's promotion is
not in the destination's journal history, so its daemon reports a split brain (seen on the
lab): the resync has it copy each image again (measured on the lab: README). Images never
promoted are resynced too: simpler than proving their history. The migration is then back to
syncing; `status`, `demote-promote` and `teardown` go on from there,
or `abort` calls it off.

Refuses, changing nothing: a split brain, a source that does not answer, a pool whose teardown
has begun (its peer or pool-mode mirroring is gone; also with `force`), and a pool whose
cutover has not begun (`abort`'s job), except a pool whose rollback is recorded: then it
finishes what is left (the resync) or says done.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ceph_cli import CephCluster, CephError
from report import PoolReport, read, split_brain_advice
from workflow import MigrationError, Options, PeerSpec, listed


@dataclass
class RollbackResult:
    """What rollback did (or would do, in a dry run)."""

    demoted: dict[str, int] = field(default_factory=dict)
    promoted: dict[str, int] = field(default_factory=dict)
    resync: dict[str, int] = field(default_factory=dict)
    discarded: list[str] = field(default_factory=list)  # force: writes that were thrown away
    changes: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)  # pools rolled back before


def rollback(
    src: CephCluster,
    dst: CephCluster,
    pools: Sequence[str],
    peer: PeerSpec,
    opts: Options,
    *,
    force: bool = False,
    rolling_back: Sequence[str] = (),
    rolled_back: Sequence[str] = (),
    before_changes: Callable[[], None] = lambda: None,
    undone: Callable[[], None] = lambda: None,
) -> RollbackResult:
    """Roll the cutover of `pools` back; see the module docstring.

    `before_changes` runs before the first change; `undone` when a write found after the
    destination's demotion made rollback promote it back (the cutover's state again).
    """
    report = read(src, dst, pools, opts)
    if report.split_brain:
        raise MigrationError(split_brain_advice(report.split_brain, peer.site_name))
    result = RollbackResult()
    todo = _pools_to_roll_back(report.pools, report.source_error, rolling_back, rolled_back)
    result.already = [p.pool for p in report.pools if p not in todo]
    if not todo:
        opts.log(f"nothing to roll back: {', '.join(result.already)} rolled back already")
        return result
    written = _written_since_cutover(dst, todo, opts)
    # An earlier run demoted the destination, which flushed a late write, and stopped before
    # it could check again: no image is primary on either side. Back to the cutover's state.
    stranded = [
        p for p in todo if p.pool in rolling_back and not p.promoted and not p.source_primaries
    ]
    if written and not force and stranded and not opts.dry_run:
        _promote_back(dst, stranded, opts)
        undone()
        raise MigrationError(
            f"the destination was written while an earlier rollback ran (is a client still "
            f"using the new cluster?): {listed(written)}. The destination is primary again "
            "and the source untouched; stop that client, then re-run rollback (force=true "
            "discards those writes)"
        )
    if written and not force:
        raise MigrationError(
            f"the destination was written after the cutover, nothing changed: "
            f"{listed(written)}. Rolling back discards those writes: re-run with force=true if "
            "that is what you want"
        )
    result.discarded = written
    if not opts.dry_run:
        before_changes()
    for pool in todo:
        _demote_destination(dst, pool, result, opts)
    if not force and not opts.dry_run:
        _check_again(dst, todo, result, opts, undone)
    for pool in todo:
        _promote_source_resync_destination(src, dst, pool, result, opts)
    return result


def _check_again(
    dst: CephCluster,
    pools: list[PoolReport],
    result: RollbackResult,
    opts: Options,
    undone: Callable[[], None],
) -> None:
    """The proof again, now that the destination is demoted (read-only: nothing writes now).

    A client still running on the destination wrote between the first check and the demotion
    (librbd flushed it when the demotion took the lock): promote the destination back and
    refuse, naming the images; the source was not touched.
    """
    late = _written_since_cutover(dst, pools, opts)
    if not late:
        return
    promoted = [p.pool for p in pools if p.source_primaries]
    if promoted:  # an earlier run promoted the source: promoting back would make two primaries
        raise MigrationError(
            f"the destination was written after the cutover: {listed(late)}, but the source "
            f"of {', '.join(promoted)} is primary already (an earlier rollback): the "
            "destination stays demoted; re-run with force=true to discard those writes"
        )
    _promote_back(dst, pools, opts)
    undone()
    raise MigrationError(
        f"the destination was written while rollback ran (is a client still using the new "
        f"cluster?): {listed(late)}. The destination is primary again and the source untouched; "
        "stop that client, then re-run rollback (force=true discards those writes)"
    )


def _promote_back(dst: CephCluster, pools: list[PoolReport], opts: Options) -> None:
    """Back as the cutover left it: each image the cutover promoted, promoted again.

    Those with the cutover snapshot, also in a pool an earlier, interrupted run demoted.
    Never the pool at once: an image whose demotion snapshot the daemon was still copying
    would be promoted too (snapshot mode: librbd allows that), without its last writes.
    """
    for pool in pools:
        try:
            dst.cutover_snapshots(pool.pool, "promote-back", workers=opts.workers)
        except CephError as exc:
            raise MigrationError(
                f"{pool.pool}: a write reached the destination while rollback ran, and its "
                f"images could not all be promoted back ({exc}): no image of it may be primary "
                "anywhere now; re-run rollback (it promotes them back first)"
            ) from exc


def _pools_to_roll_back(
    pools: list[PoolReport],
    source_error: str,
    rolling_back: Sequence[str],
    rolled_back: Sequence[str],
) -> list[PoolReport]:
    """The pools to work on; MigrationError (nothing changed) for any that cannot be."""
    unread = [p.pool for p in pools if not p.source_read]
    if unread:
        raise MigrationError(
            f"the source does not answer for {', '.join(unread)} ({source_error}), nothing "
            "changed: rollback makes the source primary again, so it needs the source"
        )
    # A teardown that began (even one that stopped part-way) removed the cutover snapshots
    # and the peer first, then disables mirroring: neither the proof nor the resync is there.
    # (Each mode's pools keep their mirroring mode, `MirrorMode.pool_mode`, until teardown.)
    torn = [
        p.pool
        for p in pools
        if p.torn_down
        or p.recorded_torn_down
        or p.mode is None
        or p.destination_mode != p.mode.pool_mode
        or not p.peers
    ]
    if torn:
        raise MigrationError(
            f"{', '.join(torn)}: teardown has begun (the destination's peer or its mode's "
            "mirroring is gone), nothing changed: rollback is only possible between "
            "demote-promote and teardown, also with force"
        )
    todo, never = [], []
    for pool in pools:
        begun = pool.cutover_started or pool.promoted
        if begun or pool.pool in rolling_back:
            todo.append(pool)
        elif pool.pool not in rolled_back:
            never.append(pool.pool)
    if never:
        raise MigrationError(
            f"{', '.join(never)}: the cutover has not begun (the source is primary, the "
            "destination is not), nothing changed: there is nothing to roll back. To call the "
            "migration off, run abort"
        )
    return todo


def _written_since_cutover(dst: CephCluster, pools: list[PoolReport], opts: Options) -> list[str]:
    """`pool/image: what` for every destination image not proven unchanged since its promotion."""
    written = []
    for pool in pools:
        check = dst.cutover_snapshots(pool.pool, "check", workers=opts.workers)
        written += [f"{pool.pool}/{n}: {what}" for n, what in sorted(check.written.items())]
        written += [
            f"{pool.pool}/{n}: primary without the cutover snapshot (cannot be proven unchanged)"
            for n in check.missing
        ]
    return written


def _demote_destination(
    dst: CephCluster, pool: PoolReport, result: RollbackResult, opts: Options
) -> None:
    """Demote the destination's primary images of `pool` (first: never two primaries)."""
    name = pool.pool
    if pool.promoted:
        result.changes.append(f"{name}: demote {pool.promoted} destination image(s)")
        if not opts.dry_run:
            result.demoted[name] = dst.pool_demote(name)
            opts.log(f"{name}: demoted {result.demoted[name]} destination image(s)")


def _promote_source_resync_destination(
    src: CephCluster, dst: CephCluster, pool: PoolReport, result: RollbackResult, opts: Options
) -> None:
    """Promote the source's demoted images, then flag every destination image for resync."""
    name = pool.pool
    demoted = [n for n, primary in pool.source_primary.items() if primary is False]
    if demoted:
        result.changes.append(f"{name}: promote {len(demoted)} source image(s)")
        if not opts.dry_run:
            result.promoted[name] = src.pool_promote(name)
            opts.log(f"{name}: promoted {result.promoted[name]} source image(s)")
    mirrored = sorted(i.name for i in pool.images)
    result.changes.append(f"{name}: resync {len(mirrored)} destination image(s)")
    if opts.dry_run or not mirrored:
        return
    flagged, failed = dst.resync_images(name, mirrored, workers=opts.workers)
    result.resync[name] = len(flagged)
    opts.log(f"{name}: {len(flagged)} destination image(s) flagged for resync")
    if failed:
        raise MigrationError(
            f"{name}: {len(failed)} destination image(s) could not be flagged for resync "
            f"(re-run rollback): {listed([f'{n}: {e}' for n, e in sorted(failed.items())])}"
        )
