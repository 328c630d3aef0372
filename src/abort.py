"""Calling the migration off before the cutover: the source as it was, the destination empty.

No ops here.

`abort` runs while the cloud keeps writing to the source. It refuses, changing nothing, once
the cutover has begun (an image demoted on the source or primary on the destination: that is
`rollback`'s job), during a split brain, while the source does not answer, and on a pool torn
down. Otherwise, once `before_changes` has run (the caller stops the daemon there: it would
register itself on the source again and keep copying), pools of clones before the pools of
their parents:

1. Source: the peers the destination's daemon registered (tx-only, named by the destination's
   site name; a peer of any other site refuses the abort, changing nothing), then pool mirroring
   disabled. librbd takes journaling off every pool-mode image and removes the daemon's
   sync-point snapshots with it, also on images open and locked by the cloud's clients (their
   librbd applies the change). Journaling still on an image the charm journaled (`journaled`)
   is taken off too; the journal cap (a pool-level librbd option) is removed.
2. Destination: the rx-only peer removed, the pool switched to image mode (librbd refuses to
   disable one image of a pool-mode pool), every image that is not primary deleted, clones
   first (mirroring off by force, snapshots, the image), then mirroring disabled.

An interrupted abort is finished by the next one: each step skips what is done already; an
image whose mirroring the last run disabled is deleted if its pool was being aborted
(`aborting`) and the source has an image of that name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ceph_cli import EACCES, CephCluster, CephError, ImageInfo
from report import PoolReport, read, split_brain_advice
from teardown import clone_levels, disable_order, disable_pool, remove_journal_cap, remove_peers
from workflow import MigrationError, Options, PeerSpec, listed


@dataclass
class AbortResult:
    """What abort did (or would do, in a dry run)."""

    pools: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    deleted: dict[str, list[str]] = field(default_factory=dict)
    journaling_removed: list[str] = field(default_factory=list)


def abort(
    src: CephCluster,
    dst: CephCluster,
    pools: Sequence[str],
    peer: PeerSpec,
    opts: Options,
    *,
    journaled: Mapping[str, Sequence[str]],
    aborting: Sequence[str] = (),
    before_changes: Callable[[], None] = lambda: None,
) -> AbortResult:
    """Call off the migration of `pools`; see the module docstring."""
    report = read(src, dst, pools, opts)
    _refuse(report.pools, report.split_brain, report.source_error, peer)
    _refuse_foreign_peers(src, dst, pools)
    result = AbortResult(pools=list(pools))
    infos = {pool: dst.image_states(pool, workers=opts.workers) for pool in pools}
    plan = {
        p.pool: _to_delete(p, infos[p.pool], aborting=p.pool in aborting) for p in report.pools
    }
    busy = [
        p for p in report.pools if p.source_mode != "disabled" or p.destination_mode != "disabled"
    ]
    if not busy and not any(plan.values()):
        opts.log("nothing to abort: no pool is mirrored and no image is left to delete")
        return result
    if not opts.dry_run:
        before_changes()
    # The order comes from the source's parent links: the destination may not hold every
    # clone yet, and librbd refuses (EBUSY) to disable a parent's pool before its clones'.
    order = disable_order({p: src.image_states(p, workers=opts.workers) for p in pools})
    for pool in order:
        _abort_source(src, next(p for p in report.pools if p.pool == pool), result, opts)
    _finish_journaling(src, pools, journaled, result, opts)
    for pool in order:
        _abort_destination(dst, pool, peer, infos[pool], plan[pool], result, opts)
    opts.log(
        f"abort: {'would change' if opts.dry_run else 'changed'}: "
        f"{'; '.join(result.changes) or 'nothing'}"
    )
    return result


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


def _refuse_foreign_peers(src: CephCluster, dst: CephCluster, pools: Sequence[str]) -> None:
    """A source pool with a peer that is not the destination's daemon mirrors elsewhere too.

    Disabling its mirroring would break that other mirror: abort refuses, changing nothing.
    """
    site = next((p.site_name for p in dst.mirror_pools(pools)), "")
    foreign = [
        f"{info.name}: {p.site_name or p.client_name} ({p.direction})"
        for info in src.mirror_pools(pools)
        for p in info.peers
        if not site or p.site_name != site
    ]
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


def _abort_source(src: CephCluster, pool: PoolReport, result: AbortResult, opts: Options) -> None:
    """The daemon's tx-only peers removed, then mirroring (and with it journaling) disabled."""
    if pool.source_mode == "disabled":
        return
    info = src.mirror_pool_info(pool.pool)
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
    result.changes.append(f"source {pool.pool}: disable mirroring (mode {pool.source_mode})")
    if opts.dry_run:
        return
    src.mirror_pool_disable(pool.pool)
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
    peer: PeerSpec,
    infos: list[ImageInfo],
    doomed: list[str],
    result: AbortResult,
    opts: Options,
) -> None:
    """The peer removed, the migration's images deleted (clones first), mirroring disabled."""
    result.changes += remove_peers(dst, pool, peer, opts).changes
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
    result.changes += disable_pool(dst, pool, [], opts)
