"""The migration workflow, start to end, over two cluster clients. No ops here.

1. `enable_mirroring`: pool-mode mirroring and journaling on the source; pool mode and one rx-only
   peer on the destination. The rbd-mirror daemon (daemon.py) then copies every image.
2. `status`: per-pool counts and whether the cutover is safe now (`ready`, with reasons).
3. `demote_promote`: the cutover. Preflight, demote the source, promote the destination (retried
   while librbd answers EBUSY), verify. Safety rule: a non-forced promote succeeds only once the
   destination has replayed the source's demotion, which comes after every write to the image;
   so "caught up" is proven by librbd itself, not by the lagging `entries_behind_primary`.
4. `teardown`: remove the peers, disable mirroring clones-before-parents, confirm journaling is
   gone; the charm then stops the daemon.
Every step is idempotent: re-running after an interruption finishes the job.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from ceph_cli import (
    EACCES,
    EBUSY,
    EINVAL,
    CephClient,
    CephError,
    ImageStatus,
    PoolInfo,
    PoolState,
)

Log = Callable[[str], None]

POOL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
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


@dataclass(frozen=True)
class PeerSpec:
    """The source as a peer of the destination pools: `client_name@site_name`."""

    client_name: str
    site_name: str


# --- pool selection --------------------------------------------------------------------------


def parse_pool_list(text: str, what: str) -> list[str]:
    """Split a comma-separated pool list; reject empty items, duplicates and odd names."""
    items = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in items):
        raise MigrationError(
            f"{what}: empty pool name in {text!r}; give names separated by commas"
        )
    bad = [p for p in items if not POOL_NAME.match(p)]
    if bad:
        raise MigrationError(
            f"{what}: invalid pool name(s) {', '.join(map(repr, bad))}: use "
            "letters, digits, '.', '_' and '-'"
        )
    dupes = sorted({p for p in items if items.count(p) > 1})
    if dupes:
        raise MigrationError(f"{what}: pool(s) listed twice: {', '.join(dupes)}")
    return items


def select_pools(
    configured: str, source_pools: Iterable[PoolInfo], subset: str | None
) -> list[str]:
    """The pools to work on: config `pools` (else every rbd pool), narrowed by `subset`."""
    by_name = {p.name: p for p in source_pools}
    if configured.strip():
        pools = parse_pool_list(configured, "config pools")
        missing = [p for p in pools if p not in by_name]
        if missing:
            raise MigrationError(f"config pools: not on the source: {', '.join(missing)}")
    else:
        pools = sorted(name for name, p in by_name.items() if "rbd" in p.applications)
        if not pools:
            raise MigrationError("the source has no pool with application rbd; set config pools")
    if subset is None:
        return pools
    wanted = parse_pool_list(subset, "pools")
    unknown = [p for p in wanted if p not in pools]
    if unknown:
        raise MigrationError(
            f"unknown pool(s) {', '.join(unknown)}: the pools to migrate are {', '.join(pools)}"
        )
    return wanted


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f" ... and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


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
    pools: list[str],
    peer: PeerSpec,
    *,
    dry_run: bool,
    workers: int,
    log: Log,
) -> list[PoolEnableResult]:
    """Set up one-way mirroring of `pools`; with `dry_run`, only report what would change."""
    dst_pools = {p.name for p in dst.pools()}
    missing = [p for p in pools if p not in dst_pools]
    if missing:
        raise MigrationError(
            f"destination pool(s) missing: {', '.join(missing)}. ceph-mon creates "
            "them from this charm's broker request; wait until the unit status "
            "no longer says 'waiting for destination pools', then re-run"
        )
    results, failures = [], []
    for pool in pools:
        result = PoolEnableResult(pool=pool)
        results.append(result)
        failures += _enable_source(src, pool, result, dry_run=dry_run, workers=workers, log=log)
        _enable_destination(dst, pool, peer, result, dry_run=dry_run)
        log(f"{pool}: {result.images} image(s); {'; '.join(result.changes) or 'already mirrored'}")
    if failures:
        raise MigrationError(
            f"journaling could not be enabled on {len(failures)} image(s) "
            f"(the rest is done; re-run to retry): {_listed(failures)}"
        )
    return results


def _enable_source(
    src: CephClient, pool: str, result: PoolEnableResult, *, dry_run: bool, workers: int, log: Log
) -> list[str]:
    """Pool mode, then journaling on every image not yet mirrored; return per-image failures."""
    state = src.pool_state(pool)
    if state.mode != "pool":
        result.changes.append(f"source: mirroring mode {state.mode} -> pool")
        if not dry_run:
            src.mirror_pool_enable(pool, "pool")
    result.images = len(state.images)
    # In pool mode, the mirrored images are exactly those with journaling. Before pool mode,
    # none is listed; the helper skips images that already have journaling.
    mirrored = {i.name for i in state.statuses}
    todo = [n for n in state.images if n not in mirrored]
    if not todo:
        return []
    result.changes.append(f"source: journaling on {len(todo)} image(s)")
    log(f"{pool}: enabling journaling on {len(todo)} of {len(state.images)} image(s)")
    if dry_run:
        return []
    _, failed = src.enable_journaling_all(pool, todo, workers=workers)
    return [f"{pool}/{n}: {err}" for n, err in failed.items()]


def _enable_destination(
    dst: CephClient, pool: str, peer: PeerSpec, result: PoolEnableResult, *, dry_run: bool
) -> None:
    """Pool mode and our rx-only peer on the destination pool."""
    state = dst.pool_state(pool)
    if state.mode != "pool":
        result.changes.append(f"destination: mirroring mode {state.mode} -> pool")
        if not dry_run:
            dst.mirror_pool_enable(pool, "pool")
    ours = [
        p
        for p in state.peers
        if p.site_name == peer.site_name and p.client_name == peer.client_name
    ]
    if ours:
        result.peer_uuid = ours[0].uuid
        return
    result.changes.append(f"destination: add rx-only peer {peer.client_name}@{peer.site_name}")
    if not dry_run:
        result.peer_uuid = dst.peer_add(pool, peer.client_name, peer.site_name)


# --- 2. status -------------------------------------------------------------------------------


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
    def in_cutover(self) -> bool:
        """The source was demoted or the destination promoted for this image."""
        return self.primary or (
            self.state in ("up+stopped", "up+unknown")
            and self.description.split(",")[0] in CUTOVER_DESCRIPTIONS
        )

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
    """The mirroring state of one pool on both sides."""

    pool: str
    source_mode: str = "disabled"
    destination_mode: str = "disabled"
    peers: int = 0
    source_images: list[str] = field(default_factory=list)
    not_journaled: list[str] = field(default_factory=list)
    images: list[ImageReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    destination_images: int = 0  # counted only while destination mirroring is disabled
    source_primary: dict[str, bool] = field(default_factory=dict)  # librbd's flags, by image

    @property
    def health(self) -> str:
        """ERROR if an image is in error, WARNING if one is not replaying or stopped, else OK."""
        states = {i.state.split("+")[-1] for i in self.images} | (
            {"missing"} if self.missing else set()
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
        missing = len(self.missing)
        if missing:
            counts["missing"] = missing
        return counts

    @property
    def missing(self) -> list[str]:
        """Source images the destination does not report yet."""
        there = {i.name for i in self.images}
        return [n for n in self.source_images if n not in there]

    def as_dict(self, verbose: bool) -> dict[str, object]:
        """For action results."""
        out: dict[str, object] = {
            "source-mode": self.source_mode,
            "destination-mode": self.destination_mode,
            "peers": self.peers,
            "images": len(self.source_images),
            "states": self.states,
            "health": self.health,
        }
        if verbose:
            out["image-status"] = [i.as_dict() for i in self.images]
        return out


@dataclass
class StatusReport:
    """Status of every pool, and the cutover verdict."""

    pools: list[PoolReport]
    reasons: list[str]
    source_error: str = ""
    split_brain: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        """True when every image is caught up and nothing else stands in the way."""
        return not self.reasons

    @property
    def total(self) -> int:
        """Images on the source."""
        return sum(len(p.source_images) for p in self.pools)

    @property
    def replaying(self) -> int:
        """Destination images caught up."""
        return sum(1 for p in self.pools for i in p.images if i.caught_up)

    @property
    def promoted(self) -> int:
        """Destination images that are primary (librbd's flag)."""
        return sum(1 for p in self.pools for i in p.images if i.primary)

    @property
    def in_cutover(self) -> int:
        """Destination images for which the cutover has begun."""
        return sum(1 for p in self.pools for i in p.images if i.in_cutover)


def status(
    src: CephClient, dst: CephClient, pools: list[str], *, daemon_running: bool, workers: int = 4
) -> StatusReport:
    """Read both sides of every pool and decide whether the cutover may start.

    One librbd process per pool and side (`CephClient.pool_state`). An unreachable source is
    reported (`source_error`), not raised: the destination's side is still shown, and the
    disaster path needs it. Images primary on both sides are reported as split-brain.
    """
    sources, dests = _read_both(src, dst, pools, workers)
    return _build_report(pools, sources, dests, daemon_running=daemon_running)


def _read_both(
    src: CephClient, dst: CephClient, pools: list[str], workers: int
) -> tuple[dict[str, Future], dict[str, Future]]:
    """Both sides of every pool at once (bounded): each read is one librbd process."""
    with ThreadPoolExecutor(max_workers=max(1, min(workers, 2 * len(pools)))) as pool_exec:
        sources = {p: pool_exec.submit(src.pool_state, p) for p in pools}
        dests = {p: pool_exec.submit(dst.pool_state, p) for p in pools}
    return sources, dests


def _build_report(
    pools: list[str],
    sources: dict[str, Future],
    dests: dict[str, Future],
    *,
    daemon_running: bool,
) -> StatusReport:
    """The status report from both sides' reads; a failed source read is reported, not raised."""
    reasons = []
    if not daemon_running:
        reasons.append("the rbd-mirror daemon is not running on this unit")
    reports, source_error = [], ""
    for pool in pools:
        report = PoolReport(pool=pool)
        reports.append(report)
        try:
            _read_source(sources[pool].result(), report)
        except CephError as exc:
            if not source_error:
                source_error = str(exc)
                reasons.append(f"source unreachable: {exc}")
        _read_destination(dests[pool].result(), report)
        report.problems += _image_problems(report)
        reasons += report.problems
    split = [] if source_error else _split_brain(reports)
    reasons += [f"SPLIT-BRAIN: {name} is primary on both clusters" for name in split]
    return StatusReport(
        pools=reports, reasons=reasons, source_error=source_error, split_brain=split
    )


def _read_source(state: PoolState, report: PoolReport) -> None:
    report.source_mode, report.source_images = state.mode, list(state.images)
    report.source_primary = {i.name: bool(i.primary) for i in state.statuses}
    if report.source_mode == "pool":  # in pool mode, mirrored == journaled
        report.not_journaled = [n for n in state.images if n not in report.source_primary]


def _read_destination(state: PoolState, report: PoolReport) -> None:
    pool = report.pool
    report.destination_mode, report.peers = state.mode, len(state.peers)
    if report.source_mode != "pool" or report.destination_mode != "pool" or not report.peers:
        report.problems.append(
            f"{pool}: mirroring is not set up (source mode {report.source_mode}, destination "
            f"mode {report.destination_mode}, {report.peers} peer(s)): run enable-mirroring"
        )
    if report.destination_mode == "disabled":
        report.destination_images = len(state.images)
        return
    report.images = [_image_report(pool, i) for i in state.statuses]
    if not report.source_images:  # source unreachable: the destination's list is all we know
        report.source_images = [i.name for i in report.images]


def _split_brain(reports: list[PoolReport]) -> list[str]:
    """Images that librbd says are primary on both clusters."""
    return sorted(
        f"{r.pool}/{i.name}"
        for r in reports
        for i in r.images
        if i.primary and r.source_primary.get(i.name)
    )


def torn_down(report: StatusReport) -> bool:
    """Mirroring is off on every destination pool and the pools hold the migrated images."""
    return all(p.destination_mode == "disabled" and p.destination_images > 0 for p in report.pools)


def phase(report: StatusReport) -> str:
    """The migration phase in a few words, with the next step."""
    n, total = len(report.pools), report.total
    if report.split_brain:
        return f"SPLIT-BRAIN: {len(report.split_brain)} image(s) primary on both clusters"
    if torn_down(report):
        return "torn down: relate the cloud to ceph-mon (README: after the charm)"
    if any(p.destination_mode == "disabled" for p in report.pools):
        return f"ready: {n} pools; run enable-mirroring"
    if total and report.promoted == total:
        return "cutover done: run teardown"
    if report.in_cutover:
        return f"cutover in progress ({report.promoted}/{total} promoted): re-run demote-promote"
    if report.ready:
        return f"{report.replaying}/{total} replaying: ready for cutover"
    hint = "; run enable-mirroring" if any(p.not_journaled for p in report.pools) else ""
    return f"syncing {report.replaying}/{total} images{hint}"


def _image_report(pool: str, image: ImageStatus) -> ImageReport:
    return ImageReport(
        pool=pool,
        name=image.name,
        state=image.state,
        description=image.description,
        last_update=image.last_update,
        primary=bool(image.primary),
    )


def _image_problems(report: PoolReport) -> list[str]:
    problems = [
        f"{report.pool}/{n}: no journaling on the source, so not mirrored: run enable-mirroring"
        for n in report.not_journaled
    ]
    if report.destination_mode == "disabled":
        return problems
    problems += [f"{report.pool}/{n}: not on the destination yet" for n in report.missing]
    problems += [
        f"{report.pool}/{i.name}: {i.state} ({i.description.split(',')[0]})"
        for i in report.images
        if not i.caught_up
    ]
    return problems


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
    pools: list[str],
    *,
    timeout: float,
    force: bool,
    daemon_running: bool,
    log: Log,
    sleep: Callable[[float], None] = time.sleep,
) -> CutoverResult:
    """Cut over `pools` from the source to the destination; see the module docstring."""
    start = time.monotonic()
    result = CutoverResult(forced=force)
    if force:
        _force_promote(src, dst, pools, result, log)
    else:
        report = status(src, dst, pools, daemon_running=daemon_running)
        _preflight(report, _cutover_started(report))
        for pool in pools:
            result.demoted[pool] = src.pool_demote(pool)
            log(f"{pool}: demoted {result.demoted[pool]} source image(s)")
        _promote_until_done(dst, pools, result, start + timeout, log, sleep)
        after, result.report = _verify_cutover(src, dst, pools, daemon_running=daemon_running)
        before = {p.pool: sum(1 for i in p.images if i.primary) for p in report.pools}
        result.promoted = {pool: after[pool] - before.get(pool, 0) for pool in pools}
    result.seconds = time.monotonic() - start
    return result


def _force_promote(
    src: CephClient, dst: CephClient, pools: list[str], result: CutoverResult, log: Log
) -> None:
    """The disaster path: demote the source if it answers, promote the destination by force."""
    log("FORCE: promoting the destination without a preflight; unreplayed writes are lost")
    for pool in pools:
        try:
            result.demoted[pool] = src.pool_demote(pool)
        except CephError as exc:
            log(f"source not demoted ({exc}): demote its pools before it is used again")
            break
    for pool in pools:
        result.promoted[pool] = dst.pool_promote(pool, force=True)
        log(f"{pool}: promoted {result.promoted[pool]} image(s) by force")


def _promote_until_done(
    dst: CephClient,
    pools: list[str],
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


def _cutover_started(report: StatusReport) -> set[str]:
    """Pools whose source already has demoted images: an earlier run got that far.

    Read from librbd's primary flags, not from the destination's lagging status.
    """
    return {p.pool for p in report.pools if any(v is False for v in p.source_primary.values())}


def _preflight(report: StatusReport, started: set[str]) -> None:
    """Fail, changing nothing, unless every image is caught up or its cutover has begun.

    In a pool whose source is (partly) demoted, the lag figures no longer matter: the promote
    itself waits for the demotion to be replayed. Missing or unjournaled images always block.
    """
    blocking = []
    if report.source_error:
        blocking.append(
            f"source unreachable ({report.source_error}); if it is lost for good, "
            "re-run with force=true (the disaster path)"
        )
    for pool in report.pools:
        blocking += [p for p in pool.problems if "mirroring is not set up" in p]
        blocking += [f"{pool.pool}/{n}: not on the destination" for n in pool.missing]
        blocking += [f"{pool.pool}/{n}: not journaled" for n in pool.not_journaled]
        if pool.pool in started:
            continue
        blocking += [
            f"{pool.pool}/{i.name}: {i.state} ({i.description.split(',')[0]})"
            for i in pool.images
            if not (i.caught_up or i.in_cutover)
        ]
    if not started and any("daemon is not running" in r for r in report.reasons):
        blocking.insert(0, "the rbd-mirror daemon is not running on this unit")
    if blocking:
        raise MigrationError(f"not ready for cutover, nothing changed: {_listed(blocking)}")


def _verify_cutover(
    src: CephClient, dst: CephClient, pools: list[str], *, daemon_running: bool
) -> tuple[dict[str, int], StatusReport]:
    """Check librbd's primary flags on both sides after a cutover.

    Returns the destination's primaries per pool, and the status report those same reads make
    (the unit status reuses it). Every mirrored destination image must be primary, no source
    image primary, none missing.
    """
    wrong, primaries = [], {}
    sources, dests = _read_both(src, dst, pools, workers=8)
    for pool in pools:
        source, dest = sources[pool].result(), dests[pool].result()
        still = [i.name for i in source.statuses if i.primary]
        not_yet = [i.name for i in dest.statuses if not i.primary]
        missing = [i.name for i in source.statuses if i.name not in dest.images]
        for what, names in (
            ("still primary on the source", still),
            ("not primary on the destination", not_yet),
            ("missing on the destination", missing),
        ):
            if names:
                wrong.append(f"{pool}: {len(names)} image(s) {what}: {_listed(names)}")
        primaries[pool] = sum(1 for i in dest.statuses if i.primary)
    if wrong:
        raise MigrationError(f"cutover verification failed: {'; '.join(wrong)}; re-run")
    return primaries, _build_report(pools, sources, dests, daemon_running=daemon_running)


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
    dst: CephClient, pools: list[str], peer: PeerSpec, *, dry_run: bool, workers: int, log: Log
) -> TeardownResult:
    """Stop mirroring into the destination pools once every image there is primary."""
    result = TeardownResult()
    infos = _image_infos(dst, pools, workers)
    images = {pool: [i for p, i in infos if p == pool] for pool in pools}
    not_primary = [
        f"{p}/{i.name}" for p, i in infos if i.mirroring_state == "enabled" and i.primary is False
    ]
    if not_primary:
        raise MigrationError(
            f"refusing teardown, nothing changed: {len(not_primary)} destination "
            f"image(s) are not primary: {_listed(not_primary)}; run "
            "demote-promote first"
        )
    for pool in pools:
        _remove_peers(dst, pool, peer, dry_run, result, log)
    result.order = _disable_order(images)
    for pool in result.order:
        _disable_pool(dst, pool, images[pool], dry_run, workers, result, log)
    if not dry_run:  # disabling mirroring drops journaling; confirm, and finish any leftover
        still = [
            (p, i.name) for p, i in _image_infos(dst, pools, workers) if "journaling" in i.features
        ]
        if still:
            result.changes.append(f"disable journaling left on {len(still)} image(s)")
            failed = []
            for pool in pools:
                names = [n for p, n in still if p == pool]
                if names:
                    done, errors = dst.disable_journaling_all(pool, names, workers=workers)
                    result.journaling_removed += [f"{pool}/{n}" for n in done]
                    failed += [f"{pool}/{n}: {e}" for n, e in errors.items()]
            if failed:
                raise MigrationError(f"journaling still on {_listed(failed)}")
    log(
        f"teardown: {'would change' if dry_run else 'changed'}: "
        f"{'; '.join(result.changes) or 'nothing'}"
    )
    return result


def _image_infos(dst: CephClient, pools: Iterable[str], workers: int) -> list:
    """(pool, ImageInfo) of every destination image: one librbd process per pool."""
    return [(pool, info) for pool in pools for info in dst.image_states(pool, workers=workers)]


def _remove_peers(
    dst: CephClient, pool: str, peer: PeerSpec, dry_run: bool, result: TeardownResult, log: Log
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
        if dry_run:
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
        log(f"{pool}: removed peer {p.uuid}")


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
    dst: CephClient,
    pool: str,
    imgs: list,
    dry_run: bool,
    workers: int,
    result: TeardownResult,
    log: Log,
) -> None:
    mode = dst.mirror_pool_info(pool).mode
    if mode == "disabled":
        return
    result.changes.append(f"{pool}: disable mirroring (mode {mode})")
    if dry_run:
        return
    try:
        dst.mirror_pool_disable(pool)
    except CephError as exc:
        if exc.rc not in (EBUSY, EINVAL):
            raise
        # Half-disabled (mode image) or a clone in the same pool: image by image, clones first.
        log(f"{pool}: pool-wide disable refused ({exc.rc}); disabling image by image")
        enabled = {
            i.name
            for i in dst.image_states(pool, workers=workers)
            if i.mirroring_state == "enabled"
        }
        levels = [[n for n in level if n in enabled] for level in _clone_levels(pool, imgs)]
        _, failed = dst.mirror_image_disable_all(pool, levels, workers=workers)
        if failed:
            raise MigrationError(
                f"{pool}: mirroring could not be disabled on {len(failed)} image(s) (re-run "
                f"teardown): {_listed([f'{n}: {e}' for n, e in sorted(failed.items())])}"
            ) from exc
        dst.mirror_pool_disable(pool)
    result.disabled.append(pool)
    log(f"{pool}: mirroring disabled")
