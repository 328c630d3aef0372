"""Calling the migration off before the cutover: the source as it was, the destination empty.

No ops here.

`abort` runs while the cloud keeps writing to the source. It refuses, changing nothing, once
the cutover has begun (an image demoted on the source or primary on the destination: that is
`rollback`'s job), during a split brain, while the source does not answer, on a pool torn
down, on a source pool that also mirrors to another site, and on a subset holding the parents
of clones in pools outside it. Otherwise, once `before_changes` has run (the caller stops this
unit's daemon there), pools of clones before the pools of their parents:

1. Destination: the rx-only peers removed first: every unit's daemon then stops replaying
   those pools, and stops registering itself on the source.
2. Source: the peers the destination's daemon registered (tx-only, named by the destination's
   site name) removed, then mirroring disabled (image by image, clones first, where librbd
   refuses the pool at once). librbd takes journaling off every pool-mode image and removes
   the daemon's sync-point snapshots with it, also on images open and locked by the cloud's
   clients (their librbd applies the change). Journaling still on an image the charm
   journaled (`journaled`) is taken off too; the journal cap (a pool-level option) removed.
3. Destination: the pool switched to image mode (librbd refuses to disable one image of a
   pool-mode pool), every image that is not primary deleted, clones first (mirroring off by
   force, snapshots, the image), then mirroring disabled.

An interrupted abort is finished by the next one: each step skips what is done already; an
image whose mirroring the last run disabled is deleted if its pool was being aborted
(`aborting`) and the source has an image of that name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ceph_cli import EACCES, CephCluster, CephError, ImageInfo
from report import PoolReport, foreign_peers, read, split_brain_advice
from teardown import (
    clone_levels,
    disable_order,
    disable_pool,
    remove_journal_cap,
    remove_peers,
    remove_snapshot_schedules,
)
from workflow import MigrationError, Options, PeerSpec, listed


@dataclass
class AbortResult:
    """What abort did (or would do, in a dry run)."""

    pools: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    deleted: dict[str, list[str]] = field(default_factory=dict)
    journaling_removed: list[str] = field(default_factory=list)
    schedules_left: list[str] = field(default_factory=list)  # the mgr would not remove them


def abort(
    src: CephCluster,
    dst: CephCluster,
    pools: Sequence[str],
    peer: PeerSpec,
    opts: Options,
    *,
    journaled: Mapping[str, Sequence[str]],
    aborting: Sequence[str] = (),
    all_pools: Sequence[str] = (),
    before_changes: Callable[[], None] = lambda: None,
) -> AbortResult:
    """Call off the migration of `pools` (of `all_pools` migrated); see the module docstring."""
    report = read(src, dst, pools, opts)
    _refuse(report.pools, report.split_brain, report.source_error, peer)
    _refuse_foreign_peers(src, dst, pools, peer)
    # Parent links come from the source: the destination may not hold every clone yet.
    links = {p: src.image_states(p, workers=opts.workers) for p in {*pools, *all_pools}}
    _refuse_orphaned_clones(links, pools)
    result = AbortResult(pools=list(pools))
    plan = _plan(dst, report.pools, aborting, opts)
    busy = [
        p for p in report.pools if p.source_mode != "disabled" or p.destination_mode != "disabled"
    ]
    if not busy and not any(doomed for _, doomed in plan.values()):
        opts.log("nothing to abort: no pool is mirrored and no image is left to delete")
        return result
    if not opts.dry_run:
        before_changes()
        # Read again once the daemon is stopped: it may have created an image meanwhile.
        plan = _plan(dst, report.pools, aborting, opts)
    order = disable_order({p: links[p] for p in pools})
    for pool in order:  # every unit's daemon stops replaying these pools, and pinging the source
        result.changes += remove_peers(dst, pool, peer, opts).changes
    snapshot_pools = [p.pool for p in report.pools if p.mode is not None and not p.mode.journals]
    # before mirroring goes (its mode says which pools)
    result.schedules_left = remove_snapshot_schedules(src, snapshot_pools, opts)
    for pool in order:
        _abort_source(
            src, dst, next(p for p in report.pools if p.pool == pool), links, result, opts
        )
    _finish_journaling(src, pools, journaled, result, opts)
    for pool in order:
        _abort_destination(dst, pool, plan[pool], result, opts)
    opts.log(
        f"abort: {'would change' if opts.dry_run else 'changed'}: "
        f"{'; '.join(result.changes) or 'nothing'}"
    )
    return result


def _plan(
    dst: CephCluster, pools: list[PoolReport], aborting: Sequence[str], opts: Options
) -> dict[str, tuple[list[ImageInfo], list[str]]]:
    """Per pool: the destination's images, and those to delete."""
    plan = {}
    for pool in pools:
        infos = dst.image_states(pool.pool, workers=opts.workers)
        plan[pool.pool] = (infos, _to_delete(pool, infos, aborting=pool.pool in aborting))
    return plan


def _refuse_orphaned_clones(links: Mapping[str, list[ImageInfo]], pools: Sequence[str]) -> None:
    """A subset that holds the parents of clones mirrored in a pool outside it: refuse.

    librbd will not disable mirroring of a parent while its clones are mirrored (EBUSY).
    """
    inside = set(pools)
    outside = [
        f"{pool}/{i.name} (clone of {i.parent})"
        for pool, infos in links.items()
        if pool not in inside
        for i in infos
        if i.parent and i.parent.split("/")[0] in inside
    ]
    if outside:
        raise MigrationError(
            f"pool(s) {', '.join(pools)} hold the parents of clones in pools not being "
            f"aborted: {listed(outside)}, nothing changed: abort those pools too (pools=...)"
        )


def _refuse(pools: list[PoolReport], split: list[str], source_error: str, peer: PeerSpec) -> None:
    if split:
        raise MigrationError(split_brain_advice(split, peer.site_name))
    unread = [p.pool for p in pools if not p.source_read]
    if unread:
        raise MigrationError(
            f"the source does not answer for {', '.join(unread)} ({source_error}), nothing "
            "changed: abort must take journaling off the source's images; re-run once it answers"
        )
    torn = [p.pool for p in pools if p.torn_down or p.recorded_torn_down]
    if torn:
        raise MigrationError(
            f"{', '.join(torn)}: torn down already (the migration finished), nothing changed: "
            "there is nothing to abort"
        )
    begun = [
        f"{p.pool}: {p.promoted} image(s) primary on the destination" for p in pools if p.promoted
    ] + [
        f"{p.pool}: {sum(1 for v in p.source_primary.values() if v is False)} image(s) demoted "
        "on the source"
        for p in pools
        if p.cutover_started and not p.promoted
    ]
    if begun:
        raise MigrationError(
            f"the cutover has begun ({'; '.join(begun)}), nothing changed: abort is for a "
            "migration before demote-promote. Run rollback to make the source primary again"
        )


def _refuse_foreign_peers(
    src: CephCluster, dst: CephCluster, pools: Sequence[str], peer: PeerSpec
) -> None:
    """A pool with a peer that is not ours (on either side) mirrors elsewhere too.

    Disabling its mirroring would break that other mirror: abort refuses, changing nothing.
    """
    foreign = foreign_peers(src, dst, pools, peer)
    if foreign:
        raise MigrationError(
            f"source pool(s) mirror to other sites too, nothing changed: {listed(foreign)}. "
            "Disabling their mirroring would break that; remove those peers by hand first "
            "if they are stale, then re-run abort"
        )


def _to_delete(pool: PoolReport, infos: list[ImageInfo], *, aborting: bool) -> list[str]:
    """Destination images the migration created: mirrored and not primary.

    Also, in a pool the last abort left half-done, an image whose mirroring it disabled (the
    source has an image of that name). A primary image is never deleted (abort refuses first).
    """
    source = set(pool.source_images)
    return sorted(
        i.name
        for i in infos
        if (i.mirroring_state == "enabled" and i.primary is False)
        or (aborting and i.mirroring_state != "enabled" and i.name in source)
    )


def _abort_source(
    src: CephCluster,
    dst: CephCluster,
    pool: PoolReport,
    links: Mapping[str, list[ImageInfo]],
    result: AbortResult,
    opts: Options,
) -> None:
    """The daemon's tx-only peers removed, then mirroring (and with it journaling) disabled.

    Image by image, clones first, where librbd refuses the pool at once (a half-disabled pool
    an earlier abort left in image mode, or a clone in the same pool).
    """
    info = src.mirror_pool_info(pool.pool)
    if info.mode == "disabled":
        return
    for p in info.peers:
        result.changes.append(f"source {pool.pool}: remove peer {p.site_name} ({p.direction})")
        if opts.dry_run:
            continue
        try:
            src.peer_remove(pool.pool, p.uuid)
        except CephError as exc:
            if exc.rc != EACCES:
                raise
            src.remove_peer_omap(pool.pool, p.uuid)  # as teardown does on the destination
    changes = disable_pool(src, pool.pool, links[pool.pool], opts, action="abort")
    result.changes += [f"source {c}" for c in changes]
    if changes and not opts.dry_run:
        opts.log(f"{pool.pool}: source mirroring disabled (journaling with it)")


def _finish_journaling(
    src: CephCluster,
    pools: Sequence[str],
    journaled: Mapping[str, Sequence[str]],
    result: AbortResult,
    opts: Options,
) -> None:
    """Journaling off the images the charm journaled that still have it; the cap removed."""
    remove_journal_cap(src, pools, opts)
    for pool in pools:
        names = list(journaled.get(pool, ()))
        if opts.dry_run:
            result.changes.append(f"source {pool}: journaling off where still on, cap removed")
            continue
        if not names:
            continue
        done, failed = src.disable_journaling_all(pool, names, workers=opts.workers)
        result.journaling_removed += [f"{pool}/{n}" for n in done]
        if done:
            result.changes.append(f"source {pool}: journaling off {len(done)} image(s)")
        if failed:
            raise MigrationError(
                f"{pool}: journaling could not be taken off {len(failed)} image(s) (re-run "
                f"abort): {listed([f'{n}: {e}' for n, e in sorted(failed.items())])}"
            )


def _abort_destination(
    dst: CephCluster,
    pool: str,
    plan: tuple[list[ImageInfo], list[str]],
    result: AbortResult,
    opts: Options,
) -> None:
    """The migration's images deleted (clones first), then mirroring disabled."""
    infos, doomed = plan
    mode = dst.mirror_pool_info(pool).mode
    if doomed:
        if mode == "pool":
            result.changes.append(f"{pool}: destination mirroring mode pool -> image")
            if not opts.dry_run:
                dst.mirror_pool_enable(pool, "image")
        result.changes.append(f"{pool}: delete {len(doomed)} destination image(s)")
        if not opts.dry_run:
            chosen = set(doomed)
            levels = [[n for n in level if n in chosen] for level in clone_levels(pool, infos)]
            deleted, failed = dst.delete_images(pool, levels, workers=opts.workers)
            result.deleted[pool] = deleted
            opts.log(f"{pool}: deleted {len(deleted)} destination image(s)")
            if failed:
                raise MigrationError(
                    f"{pool}: {len(failed)} destination image(s) could not be deleted (re-run "
                    f"abort): {listed([f'{n}: {e}' for n, e in sorted(failed.items())])}"
                )
    result.changes += disable_pool(dst, pool, [], opts, action="abort")
