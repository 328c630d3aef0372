"""Phase 4, teardown: stop mirroring into the destination once the cutover is complete. No ops.

Only once every source image is on the destination and primary there and none is primary on
the source (`report.teardown_blockers`): remove the peers, then the cutover snapshots
(rollback's evidence: rollback is refused from here on), disable mirroring with the pools of
clones before the pools of their parents (librbd insists), image by image where a pool refuses
(snapshot mode's `image` pools always do: clones first there too; disabling an image removes
its mirror snapshots), confirm journaling is gone, and remove the source's journal cap and
mirror snapshot schedules (`remove_snapshot_schedules`). The charm stops the daemon once every
migrated pool is torn down (`report.finished`), whether in one run or several.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ceph_cli import EACCES, EBUSY, EINVAL, CephCluster, CephError
from report import StatusReport, confirm_source_lost, read, split_brain_advice, teardown_blockers
from setup_mirroring import EPERM, JOURNAL_CAP
from workflow import SNAPSHOT_WORKERS, MigrationError, Options, PeerSpec, listed


@dataclass
class TeardownResult:
    """What teardown did, per pool."""

    peers_removed: dict[str, list[str]] = field(default_factory=dict)
    peers_removed_by_omap: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    order: list[str] = field(default_factory=list)
    journaling_removed: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    schedules_left: list[str] = field(default_factory=list)  # the mgr would not remove them


def teardown(
    src: CephCluster,
    dst: CephCluster,
    pools: Sequence[str],
    peer: PeerSpec,
    opts: Options,
    *,
    force: bool = False,
    all_pools: Sequence[str] = (),
) -> TeardownResult:
    """Stop mirroring into the destination pools once the cutover is complete on both sides.

    `all_pools`: every pool of the migration; a subset holding the parents of clones still
    mirrored in a pool outside it is refused (librbd would refuse the parents, EBUSY, after
    the peers and the cutover snapshots were gone).
    """
    report = read(src, dst, pools, opts)
    if report.split_brain:
        raise MigrationError(split_brain_advice(report.split_brain, peer.site_name))
    if force:
        confirm_source_lost(src, report)
    blocking = teardown_blockers(report, force=force)
    if blocking:
        raise MigrationError(f"refusing teardown, nothing changed: {listed(blocking)}")
    _refuse_parents_without_clones(dst, pools, all_pools, opts.workers)
    result = TeardownResult()
    infos = _image_infos(dst, pools, opts.workers)
    images = {pool: [i for p, i in infos if p == pool] for pool in pools}
    _remove_all_peers(dst, pools, peer, result, opts)
    for pool in pools:  # after every pool's peers: a refusal there leaves rollback its proof
        result.changes += _remove_cutover_snapshots(dst, pool, opts)
    result.order = disable_order(images)
    for pool in result.order:
        changes = disable_pool(dst, pool, images[pool], opts)
        result.changes += changes
        if changes and not opts.dry_run:
            result.disabled.append(pool)
    if not opts.dry_run:  # disabling mirroring drops journaling; confirm, and finish any leftover
        _remove_leftover_journaling(dst, pools, result, opts)
    if not report.source_lost:
        remove_journal_cap(src, pools, opts)
        result.schedules_left = remove_snapshot_schedules(src, _snapshot_pools(report), opts)
    opts.log(
        f"teardown: {'would change' if opts.dry_run else 'changed'}: "
        f"{'; '.join(result.changes) or 'nothing'}"
    )
    return result


def _refuse_parents_without_clones(
    dst: CephCluster, pools: Sequence[str], all_pools: Sequence[str], workers: int
) -> None:
    """MigrationError, nothing changed, if a clone outside `pools` still mirrors a parent in it."""
    inside = set(pools)
    outside = [p for p in all_pools if p not in inside]
    clones = [
        f"{pool}/{info.name} (clone of {info.parent})"
        for pool, info in _image_infos(dst, outside, workers)
        if info.mirroring_state == "enabled" and info.parent.partition("/")[0] in inside
    ]
    if clones:
        raise MigrationError(
            f"refusing teardown, nothing changed: {', '.join(pools)} hold the parents of clones "
            f"still mirrored in pools not torn down: {listed(clones)}: tear those pools down "
            "first, or together (pools=...)"
        )


def _snapshot_pools(report: StatusReport) -> list[str]:
    """The pools mirrored in snapshot mode, as the report read the source."""
    return [p.pool for p in report.pools if p.mode is not None and not p.mode.journals]


def _remove_all_peers(
    dst: CephCluster, pools: Sequence[str], peer: PeerSpec, result: TeardownResult, opts: Options
) -> None:
    for pool in pools:
        removed = remove_peers(dst, pool, peer, opts)
        result.changes += removed.changes
        if removed.uuids:
            result.peers_removed[pool] = removed.uuids
        result.peers_removed_by_omap += [f"{pool}:{u}" for u in removed.by_omap]


def remove_journal_cap(src: CephCluster, pools: Sequence[str], opts: Options) -> None:
    """The journal cap enable-mirroring may have set on the source pools, removed.

    A key that may not is said, not fatal: the cap only bounds journals.
    """
    if opts.dry_run:
        return
    for pool in pools:
        try:
            src.pool_config_set(pool, JOURNAL_CAP, None)
        except CephError as exc:
            if exc.rc not in (EACCES, EPERM):
                raise
            opts.log(f"WARNING: {pool}: the journal cap could not be removed: {exc}")


def remove_snapshot_schedules(src: CephCluster, pools: Sequence[str], opts: Options) -> list[str]:
    """The mirror snapshot schedules of the snapshot-mode source `pools`, removed.

    Every pool-level schedule there is the charm's (enable-mirroring refuses a pool with
    another site's peer). A key that may not (no mgr caps) never set one: the charm took the
    snapshots itself. Any other failure (a mgr that does not answer) must not hold up abort or
    teardown (the mgr skips demoted and unmirrored images): returned, one line per pool with
    the command that removes it by hand, for the action's results and log.
    """
    left = []
    for pool in pools:
        try:
            for interval in src.snapshot_schedules(pool):
                if not opts.dry_run:
                    src.snapshot_schedule(pool, interval, add=False)
                done = "would be removed" if opts.dry_run else "removed"
                opts.log(f"{pool}: source mirror snapshot schedule every {interval} {done}")
        except CephError as exc:
            if exc.rc in (EACCES, EPERM):
                opts.log(f"{pool}: no source mirror snapshot schedule to remove: {exc}")
                continue
            left.append(
                f"{pool}: not removed ({exc}): once the source's mgr answers, re-run, or with "
                f"its admin key: rbd mirror snapshot schedule ls --pool {pool}, then "
                f"rbd mirror snapshot schedule remove --pool {pool} INTERVAL"
            )
            opts.log(f"WARNING: {left[-1]}")
    return left


def _remove_leftover_journaling(
    dst: CephCluster, pools: Sequence[str], result: TeardownResult, opts: Options
) -> None:
    infos = _image_infos(dst, pools, opts.workers)
    still = [(p, i.name) for p, i in infos if "journaling" in i.features]
    if not still:
        return
    result.changes.append(f"disable journaling left on {len(still)} image(s)")
    failed = []
    for pool in pools:
        names = [n for p, n in still if p == pool]
        if names:
            done, errors = dst.disable_journaling_all(pool, names, workers=opts.workers)
            result.journaling_removed += [f"{pool}/{n}" for n in done]
            failed += [f"{pool}/{n}: {e}" for n, e in errors.items()]
    if failed:
        raise MigrationError(f"journaling still on {listed(failed)}")


def _image_infos(dst: CephCluster, pools: Iterable[str], workers: int) -> list:
    """(pool, ImageInfo) of every destination image: one librbd process per pool."""
    return [(pool, info) for pool in pools for info in dst.image_states(pool, workers=workers)]


def _remove_cutover_snapshots(dst: CephCluster, pool: str, opts: Options) -> list[str]:
    """The snapshots demote-promote took for rollback: rollback is refused from here on."""
    if opts.dry_run:
        return [f"{pool}: remove the cutover snapshots (rollback's evidence)"]
    workers = max(opts.workers, SNAPSHOT_WORKERS)
    removed = dst.cutover_snapshots(pool, "remove", workers=workers).changed
    if removed:
        opts.log(f"{pool}: removed {len(removed)} cutover snapshot(s)")
        return [f"{pool}: removed {len(removed)} cutover snapshot(s)"]
    return []


@dataclass
class PeersRemoved:
    """What `remove_peers` did: the uuids removed, those removed from the omap, the changes."""

    uuids: list[str] = field(default_factory=list)
    by_omap: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)


def remove_peers(cluster: CephCluster, pool: str, peer: PeerSpec, opts: Options) -> PeersRemoved:
    """Remove our peer from `pool` (a peer of another site refuses: it is not ours)."""
    out = PeersRemoved()
    info = cluster.mirror_pool_info(pool)
    foreign = [p for p in info.peers if p.site_name != peer.site_name]
    if foreign:
        sites = ", ".join(p.site_name for p in foreign)
        raise MigrationError(
            f"{pool}: peer(s) of other sites ({sites}) are registered; remove "
            "them by hand, then re-run"
        )
    for p in info.peers:
        out.changes.append(f"{pool}: remove peer {p.uuid}")
        if opts.dry_run:
            continue
        try:
            cluster.peer_remove(pool, p.uuid)
        except CephError as exc:
            if exc.rc != EACCES:
                raise
            # ceph-mon's rbd-mirror key may not `config-key rm` the peer's attributes, and
            # librbd then refuses the whole removal. The key's `osd profile rbd` may drop the
            # peer record from the pool's rbd_mirroring object; check the pool afterwards.
            cluster.remove_peer_omap(pool, p.uuid)
            if any(q.uuid == p.uuid for q in cluster.mirror_pool_info(pool).peers):
                raise MigrationError(f"{pool}: peer {p.uuid} could not be removed") from exc
            out.by_omap.append(p.uuid)
        out.uuids.append(p.uuid)
        opts.log(f"{pool}: removed peer {p.uuid}")
    return out


def disable_order(images: dict) -> list[str]:
    """Pools holding clones come before the pools holding their parents (librbd insists)."""
    parents_of: dict[str, set[str]] = {pool: set() for pool in images}
    for pool, imgs in images.items():
        for image in imgs:
            parent_pool = image.parent.split("/")[0] if image.parent else ""
            if parent_pool in images and parent_pool != pool:
                parents_of[parent_pool].add(pool)  # parent_pool waits for pool
    order: list[str] = []
    remaining = dict(parents_of)
    while remaining:
        ready = sorted(p for p, waits in remaining.items() if not (waits - set(order)))
        if not ready:  # a cycle between pools: per-image order inside each pool handles it
            ready = sorted(remaining)
        for pool in ready:
            order.append(pool)
            del remaining[pool]
    return order


def clone_levels(pool: str, imgs: list) -> list[list[str]]:
    """Image names of `pool` by clone depth, deepest first: each clone before its parent."""
    by_name = {i.name: i for i in imgs}

    def level(name: str, seen: frozenset = frozenset()) -> int:
        parent = by_name[name].parent
        pname = parent.split("@")[0].split("/", 1)[1] if parent.startswith(f"{pool}/") else ""
        if not pname or pname not in by_name or pname in seen:
            return 0
        return 1 + level(pname, seen | {name})

    depth = {name: level(name) for name in by_name}
    return [
        sorted(n for n in by_name if depth[n] == d)
        for d in sorted(set(depth.values()), reverse=True)
    ]


def disable_pool(
    cluster: CephCluster, pool: str, imgs: list, opts: Options, *, action: str = "teardown"
) -> list[str]:
    """Disable mirroring of `pool`; image by image (clones first) where the pool refuses.

    Returns the changes (none: it was disabled already).
    """
    mode = cluster.mirror_pool_info(pool).mode
    if mode == "disabled":
        return []
    changes = [f"{pool}: disable mirroring (mode {mode})"]
    if opts.dry_run:
        return changes
    try:
        cluster.mirror_pool_disable(pool)
    except CephError as exc:
        if exc.rc not in (EBUSY, EINVAL):
            raise
        # Half-disabled (mode image) or a clone in the same pool: image by image, clones first.
        opts.log(f"{pool}: pool-wide disable refused ({exc.rc}); disabling image by image")
        enabled = {
            i.name
            for i in cluster.image_states(pool, workers=opts.workers)
            if i.mirroring_state == "enabled"
        }
        levels = [[n for n in level if n in enabled] for level in clone_levels(pool, imgs)]
        _, failed = cluster.mirror_image_disable_all(pool, levels, workers=opts.workers)
        if failed:
            raise MigrationError(
                f"{pool}: mirroring could not be disabled on {len(failed)} image(s) (re-run "
                f"{action}): {listed([f'{n}: {e}' for n, e in sorted(failed.items())])}"
            ) from exc
        cluster.mirror_pool_disable(pool)
    opts.log(f"{pool}: mirroring disabled")
    return changes
