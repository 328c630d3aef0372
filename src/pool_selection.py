"""Which pools a run works on: from config or the source, or without the source. No ops here.

Every name is checked (inputs.py) before it can reach a command line, and erasure-coded pools
are refused: RBD keeps image data there through a replicated metadata pool.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ceph_cli import CephCluster, PoolInfo
from inputs import POOL_NAME, check_pool_names, parse_pool_list
from workflow import MigrationError


def _parsed(text: str, what: str) -> tuple[str, ...]:
    try:
        return parse_pool_list(text, what)
    except ValueError as exc:
        raise MigrationError(str(exc)) from None


def select_pools(
    configured: Sequence[str], source_pools: Iterable[PoolInfo], subset: str | None
) -> list[str]:
    """The pools to work on: `configured` (else every rbd pool), narrowed by `subset`.

    Auto-discovered names are checked like configured ones, and erasure-coded pools refused.
    """
    by_name = {p.name: p for p in source_pools}
    if configured:
        pools = list(configured)
        missing = [p for p in pools if p not in by_name]
        if missing:
            raise MigrationError(f"config pools: not on the source: {', '.join(missing)}")
    else:
        untagged = sorted(name for name, p in by_name.items() if p.untagged_rbd)
        if untagged:
            raise MigrationError(
                f"pool(s) {', '.join(untagged)} hold RBD images (or could not be checked) but "
                "have no application rbd, "
                "so they would be left behind: tag them on the source (ceph osd pool "
                "application enable <pool> rbd) or list every pool to migrate in config pools"
            )
        pools = sorted(name for name, p in by_name.items() if "rbd" in p.applications)
        if not pools:
            raise MigrationError("the source has no pool with application rbd; set config pools")
        try:
            check_pool_names(pools, "source pools with application rbd (set config pools)")
        except ValueError as exc:
            raise MigrationError(str(exc)) from None
    erasure = [p for p in pools if by_name[p].erasure]
    if erasure:
        raise MigrationError(
            f"erasure-coded pool(s) {', '.join(erasure)}: not supported (RBD keeps image data "
            "there through a replicated metadata pool, and this charm creates replicated "
            "pools only); leave them out with config pools"
        )
    return narrowed(pools, subset)


def narrowed(pools: list[str], subset: str | None) -> list[str]:
    """`pools`, or the `subset` of them named in an action's `pools` parameter."""
    if subset is None:
        return pools
    wanted = list(_parsed(subset, "pools"))
    unknown = [p for p in wanted if p not in pools]
    if unknown:
        raise MigrationError(
            f"unknown pool(s) {', '.join(unknown)}: the pools to migrate are {', '.join(pools)}"
        )
    return wanted


def pools_without_source(
    configured: Sequence[str],
    recorded: Sequence[str],
    destination: CephCluster,
    destination_pools: Iterable[str],
    site_name: str,
    subset: str | None,
) -> list[str]:
    """The pools being migrated when the source does not answer (the disaster path).

    In order: config `pools`; those `enable-mirroring` recorded on this unit; else the
    destination pools mirrored from `site_name` (one librbd process reads them all).
    """
    pools = list(configured) or list(recorded)
    if not pools:
        # ceph-mon lists every pool of its cluster, `.mgr` among them from Quincy on: only
        # names this charm could have mirrored into are asked about.
        names = [n for n in sorted(destination_pools) if POOL_NAME.match(n)]
        pools = [
            p.name
            for p in destination.mirror_pools(names)
            if p.mode != "disabled" and site_name in p.peer_sites
        ]
    if not pools:
        raise MigrationError(
            "the source does not answer and no destination pool is mirrored from it: "
            "set config pools to name the pools being migrated"
        )
    return narrowed(pools, subset)
