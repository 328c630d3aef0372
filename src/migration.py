"""The migration workflow, start to end, over two cluster clients. No ops here.

1. `enable_mirroring`: pool-mode mirroring and journaling on the source; pool mode and one rx-only
   peer on the destination. The rbd-mirror daemon (daemon.py) then copies every image.
2. `status`: both sides of every pool read once (`PoolReport`), and what each action may do
   derived from the fields of that report, never from the wording of a message:
   `cutover_blockers`, `teardown_blockers`, `PoolReport.torn_down`, `phase`.
3. `demote_promote`: the cutover. Preflight, demote the source, promote the destination (retried
   while librbd answers EBUSY), verify. Safety rule: a non-forced promote succeeds only once the
   destination has replayed the source's demotion, which comes after every write to the image;
   so "caught up" is proven by librbd itself, not by the lagging `entries_behind_primary`.
   `force` is for a source that does not answer at all; with a source that answers it refuses.
4. `teardown`: only once every source image is on the destination and primary there and none is
   primary on the source; remove the peers, disable mirroring clones-before-parents, confirm
   journaling is gone. The charm stops the daemon once every migrated pool is torn down.
Every step is idempotent: re-running after an interruption finishes the job. While any image is
primary on both clusters (split brain) every step that changes something refuses: which copy to
keep is the operator's decision (`split_brain_advice`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from ceph_cli import (
    EACCES,
    EBUSY,
    EINVAL,
    CephClient,
    CephError,
    ImageStatus,
    Peer,
    PoolInfo,
    PoolState,
)
from inputs import check_pool_names, odd_image_names, parse_pool_list

Log = Callable[[str], None]

REPLAYING = "up+replaying"
# Destination descriptions that mean the cutover has begun for an image (source demoted or
# destination promoted). Pacific words them like this; see the lab's JSON samples.
CUTOVER_DESCRIPTIONS = (
    "local image is primary",
    "remote image is not primary",
    "remote image demoted",
    "stopped",
)
MAX_LISTED = 20


class MigrationError(Exception):
    """An expected failure; the message says what is wrong and what to do."""


def _no_log(_: str) -> None:
    """The default `Options.log`: progress lines go nowhere."""


@dataclass(frozen=True)
class Options:
    """How a step runs: parallelism of per-image and per-pool work, dry run, progress lines."""

    workers: int = 16
    dry_run: bool = False
    log: Log = _no_log


@dataclass(frozen=True)
class PeerSpec:
    """The source as a peer of the destination pools: `client_name@site_name`."""

    client_name: str
    site_name: str


# --- pool selection --------------------------------------------------------------------------


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
    destination: CephClient,
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
        names = check_pool_names(sorted(destination_pools), "destination pools")
        pools = [
            p.name
            for p in destination.mirrored_pools(names)
            if p.mode != "disabled" and site_name in p.peer_sites
        ]
    if not pools:
        raise MigrationError(
            "the source does not answer and no destination pool is mirrored from it: "
            "set config pools to name the pools being migrated"
        )
    return narrowed(pools, subset)


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f" ... and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


# --- the status report: both sides, as fields -------------------------------------------------


def parse_description(description: str) -> dict[str, object]:
    """`replaying, {json}` -> the JSON's fields; anything else -> {}."""
    _, sep, rest = description.partition(", ")
    if not sep or not rest.startswith("{"):
        return {}
    try:
        data = json.loads(rest)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class ImageReport:
    """One image as the destination's daemon reports it."""

    pool: str
    name: str
    state: str
    description: str
    last_update: str
    primary: bool = False  # librbd's flag on the destination, not the status description

    @property
    def entries_behind(self) -> int | None:
        """`entries_behind_primary` from a journal-mode description, if any."""
        value = parse_description(self.description).get("entries_behind_primary")
        return int(value) if isinstance(value, (int, float)) else None

    @property
    def bytes_per_second(self) -> float | None:
        """Replay throughput from the description, if any."""
        value = parse_description(self.description).get("bytes_per_second")
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def caught_up(self) -> bool:
        """Replaying with nothing left to replay (as far as the lagging status knows)."""
        return self.state == REPLAYING and (self.entries_behind or 0) == 0

    @property
    def in_error(self) -> bool:
        """The daemon reports an error for this image."""
        return self.state.endswith("+error")

    @property
    def in_cutover(self) -> bool:
        """The source was demoted or the destination promoted for this image."""
        return self.primary or (
            self.state in ("up+stopped", "up+unknown")
            and self.description.split(",")[0] in CUTOVER_DESCRIPTIONS
        )

    @property
    def summary(self) -> str:
        """`pool/name: state (first words of the description)`."""
        return f"{self.pool}/{self.name}: {self.state} ({self.description.split(',')[0]})"

    def as_dict(self) -> dict[str, object]:
        """For action results."""
        return {
            "pool": self.pool,
            "image": self.name,
            "state": self.state,
            "primary": self.primary,
            "entries-behind-primary": self.entries_behind,
            "bytes-per-second": self.bytes_per_second,
            "description": self.description.split(",")[0],
            "last-update": self.last_update,
        }


@dataclass
class PoolReport:
    """The mirroring state of one pool on both sides; every decision reads these fields."""

    pool: str
    source_read: bool = False  # the source answered for this pool
    source_mode: str = "disabled"
    destination_mode: str = "disabled"
    peers: tuple[Peer, ...] = ()  # the destination pool's peers
    source_images: list[str] = field(default_factory=list)  # every image on the source
    source_primary: dict[str, bool] = field(default_factory=dict)  # mirrored source images
    source_watchers: dict[str, tuple[str, ...]] = field(default_factory=dict)  # when asked
    destination_names: list[str] = field(default_factory=list)  # every image on the destination
    images: list[ImageReport] = field(default_factory=list)  # mirrored destination images

    @property
    def set_up(self) -> bool:
        """Pool-mode mirroring on both sides and a peer on the destination."""
        return self.source_mode == "pool" and self.destination_mode == "pool" and bool(self.peers)

    @property
    def not_journaled(self) -> list[str]:
        """Source images a pool-mode source does not mirror (no journaling)."""
        if self.source_mode != "pool":
            return []
        return [n for n in self.source_images if n not in self.source_primary]

    @property
    def missing(self) -> list[str]:
        """Source images the destination does not report as mirrored (yet)."""
        there = {i.name for i in self.images}
        return [n for n in self.source_images if n not in there]

    @property
    def not_on_destination(self) -> list[str]:
        """Source images with no image of that name on the destination at all."""
        there = set(self.destination_names)
        return [n for n in self.source_images if n not in there]

    @property
    def in_error(self) -> list[ImageReport]:
        """Destination images the daemon reports in error."""
        return [i for i in self.images if i.in_error]

    @property
    def lagging(self) -> list[ImageReport]:
        """Destination images neither caught up nor in the cutover."""
        return [i for i in self.images if not (i.caught_up or i.in_cutover)]

    @property
    def source_primaries(self) -> list[str]:
        """Mirrored source images that are primary (librbd's flag)."""
        return sorted(n for n, primary in self.source_primary.items() if primary)

    @property
    def destination_not_primary(self) -> list[str]:
        """Mirrored destination images that are not primary."""
        return sorted(i.name for i in self.images if not i.primary)

    @property
    def split_brain(self) -> list[str]:
        """Images that librbd says are primary on both clusters."""
        return sorted(i.name for i in self.images if i.primary and self.source_primary.get(i.name))

    @property
    def cutover_started(self) -> bool:
        """The source already has demoted images: an earlier cutover got that far."""
        return any(primary is False for primary in self.source_primary.values())

    @property
    def promoted(self) -> int:
        """Destination images that are primary."""
        return sum(1 for i in self.images if i.primary)

    @property
    def cutover_done(self) -> bool:
        """Every source image is mirrored, primary on the destination, and none on the source."""
        primary_there = {i.name for i in self.images if i.primary}
        return (
            self.source_read
            and self.destination_mode != "disabled"
            and all(n in primary_there for n in self.source_images)
            and not self.source_primaries
        )

    @property
    def torn_down(self) -> bool:
        """Mirroring was set up, and is now off on the destination, which holds every image.

        Derived from the migrated images themselves: images that were on the destination before
        the migration, or a pool that was never mirrored, do not make a pool torn down.
        """
        return (
            self.source_read
            and self.source_mode != "disabled"
            and self.destination_mode == "disabled"
            and not self.not_on_destination
            and not self.source_primaries
        )

    @property
    def health(self) -> str:
        """ERROR if an image is in error, WARNING if one is not replaying or stopped, else OK."""
        states = {i.state.split("+")[-1] for i in self.images} | (
            {"missing"} if self.missing and self.destination_mode != "disabled" else set()
        )
        if "error" in states:
            return "ERROR"
        return "OK" if states <= {"replaying", "stopped"} else "WARNING"

    @property
    def states(self) -> dict[str, int]:
        """Destination image counts by state, plus `missing` for source images not there yet."""
        counts: dict[str, int] = {}
        for image in self.images:
            counts[image.state] = counts.get(image.state, 0) + 1
        if self.destination_mode != "disabled" and self.missing:
            counts["missing"] = len(self.missing)
        return counts

    def as_dict(self) -> dict[str, object]:
        """For action results (per-image detail is added by the caller, bounded)."""
        return {
            "source-mode": self.source_mode,
            "destination-mode": self.destination_mode,
            "peers": len(self.peers),
            "images": len(self.source_images),
            "states": self.states,
            "health": self.health,
        }


@dataclass
class StatusReport:
    """Both sides of every pool; the verdicts are functions of these fields."""

    pools: list[PoolReport]
    daemon_running: bool = True
    source_errors: dict[str, str] = field(default_factory=dict)  # pool -> why it was not read

    @property
    def source_error(self) -> str:
        """Why the source was not read ("" when every pool was)."""
        return next(iter(self.source_errors.values()), "")

    @property
    def source_answers(self) -> bool:
        """The source answered for at least one pool: it is alive, whatever else failed."""
        return any(p.source_read for p in self.pools)

    @property
    def split_brain(self) -> list[str]:
        """`pool/image` of every image primary on both clusters."""
        return [f"{p.pool}/{n}" for p in self.pools for n in p.split_brain]

    @property
    def in_error(self) -> list[ImageReport]:
        """Destination images in error, in every pool."""
        return [i for p in self.pools for i in p.in_error]

    @property
    def reasons(self) -> list[str]:
        """Why the cutover may not start now (empty: it may)."""
        return cutover_blockers(self, ignore_watchers=True)

    @property
    def ready(self) -> bool:
        """True when every image is caught up and nothing else stands in the way."""
        return not self.reasons

    @property
    def total(self) -> int:
        """Images on the source (on the destination when the source was not read)."""
        return sum(len(p.source_images) for p in self.pools)

    @property
    def replaying(self) -> int:
        """Destination images caught up."""
        return sum(1 for p in self.pools for i in p.images if i.caught_up)

    @property
    def promoted(self) -> int:
        """Destination images that are primary (librbd's flag)."""
        return sum(p.promoted for p in self.pools)

    @property
    def in_cutover(self) -> int:
        """Destination images for which the cutover has begun."""
        return sum(1 for p in self.pools for i in p.images if i.in_cutover)

    @property
    def torn_down(self) -> bool:
        """Every pool is torn down (see `PoolReport.torn_down`)."""
        return bool(self.pools) and all(p.torn_down for p in self.pools)

    @property
    def cutover_done(self) -> bool:
        """Every pool's cutover is complete and verified from both sides."""
        return bool(self.pools) and all(p.cutover_done for p in self.pools)


def status(
    src: CephClient,
    dst: CephClient,
    pools: Sequence[str],
    *,
    daemon_running: bool,
    workers: int = 16,
    watchers: bool = False,
) -> StatusReport:
    """Read both sides of every pool: one librbd process per pool and side.

    An unreachable source is reported (`source_errors`), not raised: the destination's side is
    still shown, and the disaster path needs it. With `watchers`, the source read also lists
    each image's watchers (the cutover's check that the cloud has stopped).
    """
    sources, dests = _read_both(src, dst, pools, workers, watchers=watchers)
    report = StatusReport(pools=[], daemon_running=daemon_running)
    for pool in pools:
        pool_report = PoolReport(pool=pool)
        report.pools.append(pool_report)
        try:
            _read_source(sources[pool].result(), pool_report)
        except CephError as exc:
            report.source_errors[pool] = str(exc)
        _read_destination(dests[pool].result(), pool_report)
    return report


def _read_both(
    src: CephClient, dst: CephClient, pools: Sequence[str], workers: int, *, watchers: bool
) -> tuple[dict[str, Future], dict[str, Future]]:
    """Both sides of every pool at once (bounded): each read is one librbd process."""
    with ThreadPoolExecutor(max_workers=max(1, min(workers, 2 * len(pools)))) as pool_exec:
        sources = {
            p: pool_exec.submit(src.pool_state, p, watchers=watchers, workers=workers)
            if watchers
            else pool_exec.submit(src.pool_state, p)
            for p in pools
        }
        dests = {p: pool_exec.submit(dst.pool_state, p) for p in pools}
    return sources, dests


def _read_source(state: PoolState, report: PoolReport) -> None:
    report.source_read = True
    report.source_mode, report.source_images = state.mode, list(state.images)
    report.source_primary = {i.name: bool(i.primary) for i in state.statuses}
    report.source_watchers = dict(state.watchers)


def _read_destination(state: PoolState, report: PoolReport) -> None:
    report.destination_mode, report.peers = state.mode, state.peers
    report.destination_names = list(state.images)
    report.images = [_image_report(report.pool, i) for i in state.statuses]
    if not report.source_read:  # source unreachable: the destination's list is all we know
        report.source_images = [i.name for i in report.images]


def _image_report(pool: str, image: ImageStatus) -> ImageReport:
    return ImageReport(
        pool=pool,
        name=image.name,
        state=image.state,
        description=image.description,
        last_update=image.last_update,
        primary=bool(image.primary),
    )


def split_brain_advice(images: Sequence[str], source_cluster: str) -> str:
    """What the operator chooses between for images primary on both clusters."""
    return (
        f"SPLIT-BRAIN, nothing changed: {len(images)} image(s) are primary on both clusters: "
        f"{_listed(images)}. Decide per image which copy to keep; the charm will not. Keep the "
        "destination's copy (the source's writes since the forced promotion are lost): "
        f"`rbd --cluster {source_cluster} mirror image demote POOL/IMAGE` with the source's "
        "admin key. Keep the source's copy (the destination's writes are lost): on the "
        "destination `rbd mirror image demote POOL/IMAGE` then `rbd mirror image resync "
        "POOL/IMAGE`, and run demote-promote again once status says ready"
    )


def _daemon_blocker(report: StatusReport) -> list[str]:
    if report.daemon_running:
        return []
    return [
        "the rbd-mirror daemon is not running on this unit (paused? run resume; else see "
        "its journal): without it nothing is replayed, not even the demotion"
    ]


def cutover_blockers(report: StatusReport, *, ignore_watchers: bool = False) -> list[str]:
    """What stands in the way of a non-forced cutover of `report.pools`; empty: go.

    In a pool whose source is (partly) demoted, the lag figures no longer matter: the promote
    itself waits for the demotion to be replayed. Missing or unjournaled images, images in
    error, watchers on the source and a stopped daemon always block.
    """
    blocking = list(_daemon_blocker(report))
    if report.source_errors:
        blocking.append(
            f"source unreachable ({report.source_error}); if it is lost for good, "
            "re-run with force=true (the disaster path)"
        )
    for pool in report.pools:
        if not pool.source_read:
            continue
        if not pool.set_up:
            blocking.append(
                f"{pool.pool}: mirroring is not set up (source mode {pool.source_mode}, "
                f"destination mode {pool.destination_mode}, {len(pool.peers)} peer(s)): "
                "run enable-mirroring"
            )
            continue
        blocking += [f"{pool.pool}/{n}: not journaled on the source" for n in pool.not_journaled]
        blocking += [
            f"{pool.pool}/{n}: not on the destination yet"
            for n in pool.missing
            if n not in pool.not_journaled
        ]
        if not ignore_watchers:
            blocking += [
                f"{pool.pool}/{n}: still in use on the source (watchers {', '.join(w)}): "
                "stop the instance or detach the volume, or re-run with ignore-watchers=true"
                for n, w in sorted(pool.source_watchers.items())
                if w
            ]
        if not pool.cutover_started:
            blocking += [i.summary for i in pool.lagging]
    return blocking


def teardown_blockers(report: StatusReport, *, force: bool) -> list[str]:
    """What stands in the way of tearing `report.pools` down; empty: go.

    Every image of the source must be on the destination and primary there, and none primary
    on the source: else the cloud would be re-related to a cluster without that volume. Only
    a source that does not answer at all may be skipped, with `force`.
    """
    blocking: list[str] = []
    if force and report.source_answers:
        return [
            "force=true is only for a source that no longer answers, and it answers: the "
            "checks below apply (run teardown without force)"
        ] + teardown_blockers(report, force=False)
    if report.source_errors and not force:
        blocking.append(
            f"the source does not answer ({report.source_error}); teardown must see that every "
            "source image is on the destination. If the source is lost for good, re-run with "
            "force=true"
        )
    for pool in report.pools:
        blocking += [
            f"{pool.pool}/{n}: not primary on the destination: run demote-promote"
            for n in pool.destination_not_primary
        ]
        if not pool.source_read:
            continue
        blocking += [
            f"{pool.pool}/{n}: on the source but not on the destination (created after the "
            "sync? mirror it: enable-mirroring, status, demote-promote; or remove it from the "
            "source)"
            for n in pool.not_on_destination
        ]
        blocking += [
            f"{pool.pool}/{n}: not mirrored yet (on the destination, but not as its mirror)"
            for n in pool.missing
            if n not in pool.not_on_destination and pool.destination_mode == "pool"
        ]
        blocking += [
            f"{pool.pool}/{n}: still primary on the source: run demote-promote"
            for n in pool.source_primaries
        ]
    return blocking


def phase(report: StatusReport) -> str:
    """The migration phase in a few words, with the next step."""
    n, total = len(report.pools), report.total
    if report.split_brain:
        return (
            f"SPLIT-BRAIN: {len(report.split_brain)} image(s) primary on both clusters: "
            "the status action says how to resolve it"
        )
    if report.torn_down:
        return "torn down: remove the destination relation, then relate the cloud to ceph-mon"
    done = [p.pool for p in report.pools if p.torn_down]
    rest = [p for p in report.pools if not p.torn_down]
    if done and all(p.cutover_done for p in rest):
        return (
            f"partly torn down ({len(done)}/{n} pools): run teardown for "
            f"{', '.join(p.pool for p in rest)}"
        )
    if any(p.source_read and not p.set_up and not p.torn_down for p in report.pools) and not any(
        p.promoted for p in report.pools
    ):
        return f"ready: {n} pools; run enable-mirroring"
    if report.cutover_done:
        return "cutover done: run teardown"
    if report.in_cutover:
        return f"cutover in progress ({report.promoted}/{total} promoted): re-run demote-promote"
    if report.ready:
        return f"{report.replaying}/{total} replaying: ready for cutover"
    hint = "; run enable-mirroring" if any(p.not_journaled for p in report.pools) else ""
    return f"syncing {report.replaying}/{total} images{hint}"


# --- 1. enable mirroring ---------------------------------------------------------------------


@dataclass
class PoolEnableResult:
    """What enable-mirroring found and did on one pool."""

    pool: str
    images: int = 0
    changes: list[str] = field(default_factory=list)
    peer_uuid: str = ""


def enable_mirroring(
    src: CephClient,
    dst: CephClient,
    pools: Sequence[str],
    peer: PeerSpec,
    opts: Options,
    *,
    restart: bool = False,
) -> list[PoolEnableResult]:
    """Set up one-way mirroring of `pools`; with `opts.dry_run`, only report what would change.

    Refuses, changing nothing: a missing destination pool, an unreadable source, a split brain,
    odd image names, and (unless `restart`) a pool whose migration was torn down.
    """
    dst_pools = {p.name for p in dst.pools()}
    missing = [p for p in pools if p not in dst_pools]
    if missing:
        raise MigrationError(
            f"destination pool(s) missing: {', '.join(missing)}. ceph-mon creates "
            "them from this charm's broker request; wait until the unit status "
            "no longer says 'waiting for destination pools', then re-run"
        )
    report = status(src, dst, pools, daemon_running=True, workers=opts.workers)
    _refuse_to_enable(report, peer, restart=restart)
    results, failures = [], []
    for pool in report.pools:
        result = PoolEnableResult(pool=pool.pool, images=len(pool.source_images))
        results.append(result)
        failures += _enable_source(src, pool, result, opts)
        _enable_destination(dst, pool, peer, result, opts)
        done = "; ".join(result.changes) or "already mirrored"
        opts.log(f"{pool.pool}: {result.images} image(s); {done}")
    if failures:
        raise MigrationError(
            f"journaling could not be enabled on {len(failures)} image(s) "
            f"(the rest is done; re-run to retry): {_listed(failures)}"
        )
    return results


def _refuse_to_enable(report: StatusReport, peer: PeerSpec, *, restart: bool) -> None:
    if report.source_errors:
        raise MigrationError(f"the source does not answer, nothing changed: {report.source_error}")
    if report.split_brain:
        raise MigrationError(split_brain_advice(report.split_brain, peer.site_name))
    odd = [f"{p.pool}/{n}" for p in report.pools for n in odd_image_names(p.source_images)]
    if odd:
        raise MigrationError(
            f"image name(s) this charm will not handle, nothing changed: {_listed(odd)}; "
            "rename them (rbd rename) or leave their pool out"
        )
    done = [p.pool for p in report.pools if p.torn_down]
    if done and not restart:
        raise MigrationError(
            f"the migration of {', '.join(done)} is finished (torn down), nothing changed: "
            "enabling mirroring again would journal the source's images and re-arm the "
            "daemon. To start a new migration on purpose, re-run with restart=true"
        )


def _enable_source(
    src: CephClient, pool: PoolReport, result: PoolEnableResult, opts: Options
) -> list[str]:
    """Pool mode, then journaling on every image not yet mirrored; return per-image failures."""
    if pool.source_mode != "pool":
        result.changes.append(f"source: mirroring mode {pool.source_mode} -> pool")
        if not opts.dry_run:
            src.mirror_pool_enable(pool.pool, "pool")
    # In pool mode, the mirrored images are exactly those with journaling. Before pool mode,
    # none is listed; the helper skips images that already have journaling.
    todo = [n for n in pool.source_images if n not in pool.source_primary]
    if not todo:
        return []
    result.changes.append(f"source: journaling on {len(todo)} image(s)")
    opts.log(f"{pool.pool}: enabling journaling on {len(todo)} of {result.images} image(s)")
    if opts.dry_run:
        return []
    _, failed = src.enable_journaling_all(pool.pool, todo, workers=opts.workers)
    return [f"{pool.pool}/{n}: {err}" for n, err in failed.items()]


def _enable_destination(
    dst: CephClient, pool: PoolReport, peer: PeerSpec, result: PoolEnableResult, opts: Options
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


# --- 3. cutover ------------------------------------------------------------------------------


@dataclass
class CutoverResult:
    """What demote-promote did, per pool."""

    demoted: dict[str, int] = field(default_factory=dict)
    promoted: dict[str, int] = field(default_factory=dict)
    attempts: int = 0
    seconds: float = 0.0
    forced: bool = False
    report: StatusReport | None = None  # both sides as verified after the cutover


def demote_promote(
    src: CephClient,
    dst: CephClient,
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
    report = status(
        src,
        dst,
        pools,
        daemon_running=daemon_running,
        workers=opts.workers,
        watchers=not (force or ignore_watchers),
    )
    if report.split_brain:
        raise MigrationError(split_brain_advice(report.split_brain, source_cluster))
    if force:
        _force_promote(dst, report, result, opts.log)
    else:
        blocking = cutover_blockers(report, ignore_watchers=ignore_watchers)
        if blocking:
            raise MigrationError(f"not ready for cutover, nothing changed: {_listed(blocking)}")
        for pool in pools:
            result.demoted[pool] = src.pool_demote(pool)
            opts.log(f"{pool}: demoted {result.demoted[pool]} source image(s)")
        _promote_until_done(dst, pools, result, start + timeout, opts.log, sleep)
        result.report = _verify_cutover(src, dst, pools, daemon_running, opts.workers)
        before = {p.pool: p.promoted for p in report.pools}
        after = {p.pool: p.promoted for p in result.report.pools}
        result.promoted = {pool: after[pool] - before.get(pool, 0) for pool in pools}
    result.seconds = time.monotonic() - start
    return result


def _force_promote(dst: CephClient, report: StatusReport, result: CutoverResult, log: Log) -> None:
    """The disaster path: promote every requested pool by force, only if the source is gone.

    A source that answers, even for one pool, is alive: then the safe path is the one to use,
    because a forced promotion of a live source is a split brain with unreplayed writes.
    """
    if report.source_answers:
        raise MigrationError(
            "force=true refused, nothing changed: the source answers, so use demote-promote "
            "without force (it waits for every write to be replayed). force is only for a "
            "source that is lost"
        )
    log(
        "FORCE: the source does not answer; promoting every requested pool without demoting "
        f"it ({report.source_error}). Writes not replayed yet are lost, and the source must "
        "be demoted before it is used again"
    )
    for pool in report.pools:
        result.promoted[pool.pool] = dst.pool_promote(pool.pool, force=True)
        log(f"{pool.pool}: promoted {result.promoted[pool.pool]} image(s) by force")


def _promote_until_done(
    dst: CephClient,
    pools: Sequence[str],
    result: CutoverResult,
    deadline: float,
    log: Log,
    sleep: Callable[[float], None],
) -> None:
    """`pool promote` each pool until it answers 0; EBUSY means the demotion is still in flight.

    `pool promote` is not all-or-nothing (it promotes some images and answers EBUSY for the
    rest), and it skips images already primary, so repeating it is safe.
    """
    pending = list(pools)
    while pending:
        result.attempts += 1
        for pool in list(pending):
            try:
                count = dst.pool_promote(pool)
            except CephError as exc:
                if exc.rc != EBUSY:
                    raise
                continue
            pending.remove(pool)
            log(f"{pool}: promotion complete ({count} in the last round)")
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise MigrationError(
                f"timed out: {', '.join(pending)} not fully promoted (the demotion has not been "
                "replayed yet). The source is demoted and no image is primary twice; re-run "
                "demote-promote to finish"
            )
        sleep(1.0)


def _verify_cutover(
    src: CephClient, dst: CephClient, pools: Sequence[str], daemon_running: bool, workers: int
) -> StatusReport:
    """Read librbd's primary flags on both sides after a cutover; return that report.

    Every source image must be primary on the destination and none primary on the source.
    The unit status reuses the report.
    """
    report = status(src, dst, pools, daemon_running=daemon_running, workers=workers)
    wrong = []
    for pool in report.pools:
        for what, names in (
            ("still primary on the source", pool.source_primaries),
            ("not primary on the destination", pool.destination_not_primary),
            ("missing on the destination", pool.missing),
        ):
            if names:
                wrong.append(f"{pool.pool}: {len(names)} image(s) {what}: {_listed(names)}")
    if report.source_errors:
        wrong.append(f"the source did not answer the check: {report.source_error}")
    if wrong:
        raise MigrationError(f"cutover verification failed: {'; '.join(wrong)}; re-run")
    return report


# --- 4. teardown -----------------------------------------------------------------------------


@dataclass
class TeardownResult:
    """What teardown did, per pool."""

    peers_removed: dict[str, list[str]] = field(default_factory=dict)
    peers_removed_by_omap: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    order: list[str] = field(default_factory=list)
    journaling_removed: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)


def teardown(
    src: CephClient,
    dst: CephClient,
    pools: Sequence[str],
    peer: PeerSpec,
    opts: Options,
    *,
    force: bool = False,
) -> TeardownResult:
    """Stop mirroring into the destination pools once the cutover is complete on both sides."""
    report = status(src, dst, pools, daemon_running=True, workers=opts.workers)
    if report.split_brain:
        raise MigrationError(split_brain_advice(report.split_brain, peer.site_name))
    blocking = teardown_blockers(report, force=force)
    if blocking:
        raise MigrationError(f"refusing teardown, nothing changed: {_listed(blocking)}")
    result = TeardownResult()
    infos = _image_infos(dst, pools, opts.workers)
    images = {pool: [i for p, i in infos if p == pool] for pool in pools}
    for pool in pools:
        _remove_peers(dst, pool, peer, result, opts)
    result.order = _disable_order(images)
    for pool in result.order:
        _disable_pool(dst, pool, images[pool], result, opts)
    if not opts.dry_run:  # disabling mirroring drops journaling; confirm, and finish any leftover
        _remove_leftover_journaling(dst, pools, result, opts)
    opts.log(
        f"teardown: {'would change' if opts.dry_run else 'changed'}: "
        f"{'; '.join(result.changes) or 'nothing'}"
    )
    return result


def _remove_leftover_journaling(
    dst: CephClient, pools: Sequence[str], result: TeardownResult, opts: Options
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
        raise MigrationError(f"journaling still on {_listed(failed)}")


def finished(report: StatusReport, recorded_torn_down: Iterable[str]) -> bool:
    """Every pool is torn down.

    Read from the clusters; where the source does not answer, from the destination's disabled
    mirroring and this unit's record of a completed teardown.
    """
    recorded = set(recorded_torn_down)
    return bool(report.pools) and all(
        p.torn_down if p.source_read else (p.destination_mode == "disabled" and p.pool in recorded)
        for p in report.pools
    )


def _image_infos(dst: CephClient, pools: Iterable[str], workers: int) -> list:
    """(pool, ImageInfo) of every destination image: one librbd process per pool."""
    return [(pool, info) for pool in pools for info in dst.image_states(pool, workers=workers)]


def _remove_peers(
    dst: CephClient, pool: str, peer: PeerSpec, result: TeardownResult, opts: Options
) -> None:
    info = dst.mirror_pool_info(pool)
    foreign = [p for p in info.peers if p.site_name != peer.site_name]
    if foreign:
        sites = ", ".join(p.site_name for p in foreign)
        raise MigrationError(
            f"{pool}: peer(s) of other sites ({sites}) are registered; remove "
            "them by hand, then re-run"
        )
    for p in info.peers:
        result.changes.append(f"{pool}: remove peer {p.uuid}")
        if opts.dry_run:
            continue
        try:
            dst.peer_remove(pool, p.uuid)
        except CephError as exc:
            if exc.rc != EACCES:
                raise
            # ceph-mon's rbd-mirror key may not `config-key rm` the peer's attributes, and
            # librbd then refuses the whole removal. The key's `osd profile rbd` may drop the
            # peer record from the pool's rbd_mirroring object; check the pool afterwards.
            dst.remove_peer_omap(pool, p.uuid)
            if any(q.uuid == p.uuid for q in dst.mirror_pool_info(pool).peers):
                raise MigrationError(f"{pool}: peer {p.uuid} could not be removed") from exc
            result.peers_removed_by_omap.append(f"{pool}:{p.uuid}")
        result.peers_removed.setdefault(pool, []).append(p.uuid)
        opts.log(f"{pool}: removed peer {p.uuid}")


def _disable_order(images: dict) -> list[str]:
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


def _clone_levels(pool: str, imgs: list) -> list[list[str]]:
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


def _disable_pool(
    dst: CephClient, pool: str, imgs: list, result: TeardownResult, opts: Options
) -> None:
    mode = dst.mirror_pool_info(pool).mode
    if mode == "disabled":
        return
    result.changes.append(f"{pool}: disable mirroring (mode {mode})")
    if opts.dry_run:
        return
    try:
        dst.mirror_pool_disable(pool)
    except CephError as exc:
        if exc.rc not in (EBUSY, EINVAL):
            raise
        # Half-disabled (mode image) or a clone in the same pool: image by image, clones first.
        opts.log(f"{pool}: pool-wide disable refused ({exc.rc}); disabling image by image")
        enabled = {
            i.name
            for i in dst.image_states(pool, workers=opts.workers)
            if i.mirroring_state == "enabled"
        }
        levels = [[n for n in level if n in enabled] for level in _clone_levels(pool, imgs)]
        _, failed = dst.mirror_image_disable_all(pool, levels, workers=opts.workers)
        if failed:
            raise MigrationError(
                f"{pool}: mirroring could not be disabled on {len(failed)} image(s) (re-run "
                f"teardown): {_listed([f'{n}: {e}' for n, e in sorted(failed.items())])}"
            ) from exc
        dst.mirror_pool_disable(pool)
    result.disabled.append(pool)
    opts.log(f"{pool}: mirroring disabled")
