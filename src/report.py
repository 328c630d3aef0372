"""Both sides of every pool, read once, and every verdict derived from the fields. No ops here.

`status` reads each pool's source and destination with one librbd process each (`PoolReport`).
What each action may do is a function of those fields, never of a message's wording:
`cutover_blockers` (demote-promote), `teardown_blockers`, `PoolReport.torn_down` and `finished`
(the daemon's end), `StatusReport.split_brain` (every change refuses), `phase` (the unit status),
`journal_backlog` (the journal guard: the source's journals against `journal-backlog-limit`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from ceph_cli import Callout, CephCluster, CephError, ImageStatus, JournalInfo, Peer, PoolState
from mirror_modes import SNAPSHOT, MirrorMode, meanwhile, mode_of_pool
from workflow import Options, PeerSpec, listed


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
    images: list[ImageStatus] = field(default_factory=list)  # mirrored destination images
    # This unit recorded a completed teardown of the pool: the only evidence an empty pool
    # leaves, and all there is once the source no longer answers.
    recorded_torn_down: bool = False
    # The source's journals, when read (`status(journals=True)`): the journal guard's figures.
    journals: tuple[JournalInfo, ...] | None = None
    journal_error: str = ""

    @property
    def largest_journal(self) -> JournalInfo | None:
        """The source image whose journal keeps the most on the source (None: none read)."""
        return max(self.journals or (), key=lambda j: (j.bytes, j.bytes_behind), default=None)

    @property
    def journal_summary(self) -> dict[str, object]:
        """The journal guard's figures for this pool, for results and the unit status.

        The image whose journal keeps the most on the source (`largest-*`: trimming waits for
        its peer), with how much of it the peer has not replayed (`backlog-bytes`, a lower
        bound: whole journal objects after its last commit; `backlog-entries` when they can be
        told); `bytes`: what all the pool's journals keep.
        """
        if self.journals is None:
            return {"read": False, "error": self.journal_error} if self.journal_error else {}
        largest = self.largest_journal
        return {
            "images": len(self.journals),
            "bytes": sum(j.bytes for j in self.journals),
            "largest-image": largest.image if largest else "",
            "largest-bytes": largest.bytes if largest else 0,
            "backlog-bytes": largest.bytes_behind if largest else 0,
            "backlog-entries": largest.entries_behind if largest else 0,
            "mirror-client-connected": not any(j.disconnected for j in self.journals),
            "disconnected": sorted(j.image for j in self.journals if j.disconnected),
        }

    @property
    def mode(self) -> MirrorMode | None:
        """How the pool is mirrored, read from the source's mode (None: not mirrored)."""
        return mode_of_pool(self.source_mode)

    @property
    def set_up(self) -> bool:
        """One mode's mirroring on both sides and a peer on the destination."""
        return (
            self.mode is not None
            and self.destination_mode == self.source_mode
            and bool(self.peers)
        )

    @property
    def not_mirrored(self) -> list[str]:
        """Source images a mirrored source pool does not mirror (enable-mirroring's to do).

        In journal mode those without journaling, in snapshot mode those not enabled.
        """
        if self.mode is None:
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
    def in_error(self) -> list[ImageStatus]:
        """Destination images the daemon reports in error."""
        return [i for i in self.images if i.in_error]

    @property
    def lagging(self) -> list[ImageStatus]:
        """Destination images not caught up (a stopped replayer is not caught up either)."""
        return [i for i in self.images if not i.caught_up]

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
        """Images that are primary (writable) on both clusters, by librbd's flags.

        Once mirroring is off on the destination, its images are plain, writable images: a
        source copy that is primary again (after a forced promotion and teardown, the old
        cluster came back) is a split brain too.
        """
        if self.destination_mode == "disabled":
            there = set(self.destination_names)
            return [n for n in self.source_primaries if n in there]
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

        Needs evidence: images that were mirrored and demoted (the source's primary flags), or
        this unit's record of a teardown. Images that were on the destination before, a pool
        never mirrored, or an empty one whose enable-mirroring stopped half-way are not torn
        down. Without the source, the record is all there is.
        """
        if self.destination_mode != "disabled":
            return False
        if not self.source_read:
            return self.recorded_torn_down
        return (
            (bool(self.source_primary) or self.recorded_torn_down)
            and self.source_mode != "disabled"
            and not self.not_on_destination
            and not self.source_primaries
        )

    @property
    def changed_since_teardown(self) -> list[str]:
        """What is wrong with a pool this unit tore down: the source changed since."""
        if not (self.recorded_torn_down and self.source_read) or self.torn_down:
            return []
        missing = [f"{self.pool}/{n}: on the source only" for n in self.not_on_destination]
        primary = [f"{self.pool}/{n}: primary on the source again" for n in self.source_primaries]
        return missing + primary

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
        out: dict[str, object] = {
            "source-mode": self.source_mode,
            "destination-mode": self.destination_mode,
            "peers": len(self.peers),
            "images": len(self.source_images),
            "states": self.states,
            "health": self.health,
        }
        if self.journal_summary:
            out["journal"] = self.journal_summary
        if self.mode is not None:
            out["mirror-mode"] = self.mode.name
        copied = [i.snapshot_copied_at for i in self.images if i.mode == SNAPSHOT]
        if copied:
            known = [c for c in copied if c is not None]
            # the oldest image's last copied mirror snapshot: what the cutover would copy since
            out["oldest-copied-snapshot"] = (
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(min(known)))
                if len(known) == len(copied)
                else "none yet (an image has no copied mirror snapshot)"
            )
        return out


@dataclass
class StatusReport:
    """Both sides of every pool; the verdicts are functions of these fields."""

    pools: list[PoolReport]
    daemon_running: bool = True
    source_errors: dict[str, str] = field(default_factory=dict)  # pool -> why it was not read
    callouts: list[Callout] = field(default_factory=list)  # the daemon's, for these pools
    # Snapshot mode: the oldest a copied mirror snapshot may be for "ready" (twice the
    # schedule's interval; 0: not checked), and when the report was read (unix seconds).
    snapshot_max_age: float = 0.0
    read_at: float = 0.0

    @property
    def daemon_errors(self) -> list[str]:
        """`pool: text` of every error the rbd-mirror daemon publishes for these pools."""
        return sorted({f"{c.pool}: {c.text}" for c in self.callouts if c.level == "error"})

    @property
    def source_error(self) -> str:
        """Why the source was not read ("" when every pool was)."""
        return next(iter(self.source_errors.values()), "")

    source_lost: bool = False  # no source read worked, and its connection timed out or was refused

    @property
    def source_answers(self) -> bool:
        """The source answered for at least one pool: it is alive, whatever else failed."""
        return any(p.source_read for p in self.pools)

    @property
    def active(self) -> list[PoolReport]:
        """The pools not torn down: what the cutover, the counts and the phase are about."""
        return [p for p in self.pools if not p.torn_down]

    @property
    def silent_daemon(self) -> bool:
        """The unit's daemon runs, yet no mirrored image's state is published by a live daemon."""
        images = [i for p in self.active for i in p.images]
        return self.daemon_running and bool(images) and not any(i.reported for i in images)

    @property
    def split_brain(self) -> list[str]:
        """`pool/image` of every image primary on both clusters."""
        return [f"{p.pool}/{n}" for p in self.pools for n in p.split_brain]

    @property
    def in_error(self) -> list[ImageStatus]:
        """Destination images in error, in every pool."""
        return [i for p in self.pools for i in p.in_error]

    @property
    def reasons(self) -> list[str]:
        """Why this is not the moment to start a cutover (empty: it is).

        What blocks one, and any cutover already begun: then `demote-promote` is to be re-run,
        which its own preflight allows, but the pools are no longer "ready for cutover".
        """
        begun = [
            f"{p.pool}: cutover in progress ({p.promoted}/{len(p.source_images)} promoted): "
            "re-run demote-promote"
            for p in self.active
            if p.cutover_started or p.promoted
        ]
        return cutover_blockers(self, ignore_watchers=True) + begun + self.stale_snapshots

    @property
    def stale_snapshots(self) -> list[str]:
        """Snapshot-mode images whose last copied mirror snapshot is older than allowed.

        Not a cutover blocker (the demotion's snapshot carries whatever is left), but the
        schedule has stopped, so the outage would copy everything since: not "ready".
        """
        if not self.snapshot_max_age:
            return []
        stale = []
        for pool in self.active:
            for image in pool.images:
                if image.mode != SNAPSHOT or image.primary:
                    continue
                copied = image.snapshot_copied_at
                if copied is None or self.read_at - copied > self.snapshot_max_age:
                    age = (
                        "none yet"
                        if copied is None
                        else f"{(self.read_at - copied) / 60:.0f} min old"
                    )
                    stale.append(f"{pool.pool}/{image.name}: last copied mirror snapshot {age}")
        if not stale:
            return []
        return [
            f"{len(stale)} image(s) have no mirror snapshot copied in the last "
            f"{self.snapshot_max_age / 60:.0f} min (two snapshot periods: snapshot-interval, "
            "or the update-status interval where the charm takes them; is the snapshot "
            "schedule running? A changed snapshot-interval takes effect on the source when "
            f"enable-mirroring is re-run): {listed(stale)}"
        ]

    @property
    def all_promoted(self) -> bool:
        """Every mirrored destination image of every active pool is primary."""
        return bool(self.active) and all(
            p.images and not p.destination_not_primary for p in self.active
        )

    @property
    def ready(self) -> bool:
        """True when every image is caught up and nothing else stands in the way."""
        return not self.reasons

    @property
    def total(self) -> int:
        """Images on the source (on the destination when the source was not read)."""
        return sum(len(p.source_images) for p in self.active)

    @property
    def replaying(self) -> int:
        """Destination images caught up."""
        return sum(1 for p in self.active for i in p.images if i.caught_up)

    @property
    def promoted(self) -> int:
        """Destination images that are primary (librbd's flag)."""
        return sum(p.promoted for p in self.pools)

    @property
    def in_cutover(self) -> int:
        """Images whose cutover has begun: demoted on the source or promoted (librbd's flags)."""
        return sum(
            1
            for p in self.active
            for i in p.images
            if i.primary or p.source_primary.get(i.name) is False
        )

    @property
    def torn_down(self) -> bool:
        """Every pool is torn down (see `PoolReport.torn_down`)."""
        return bool(self.pools) and all(p.torn_down for p in self.pools)

    @property
    def cutover_done(self) -> bool:
        """Every pool's cutover is complete and verified from both sides."""
        return bool(self.pools) and all(p.cutover_done for p in self.pools)


def status(
    src: CephCluster,
    dst: CephCluster,
    pools: Sequence[str],
    *,
    daemon_running: bool,
    workers: int = 16,
    watchers: bool = False,
    callouts: bool = False,
    recorded_torn_down: Iterable[str] = (),
    journals: bool = False,
    snapshot_max_age: float = 0.0,
) -> StatusReport:
    """Read both sides of every pool: one librbd process per pool and side.

    An unreachable source is reported (`source_errors`), not raised: the destination's side is
    still shown, and the disaster path needs it. With `watchers`, the source read also lists
    each image's watchers (the cutover's check that the cloud has stopped). With `callouts`,
    one more process reads what the destination's daemon publishes (`daemon_errors`).
    `recorded_torn_down`: the pools this unit recorded a completed teardown of. With `journals`,
    one more process per pool reads the source's journals (the journal guard); a pool whose
    journals cannot be read says why (`journal_error`) and the rest of the report stands.
    `snapshot_max_age`: see `StatusReport.stale_snapshots`.
    """
    with ThreadPoolExecutor(max_workers=1) as side:
        published = side.submit(dst.daemon_callouts) if callouts and daemon_running else None
        # the journals are read alongside the pools' states (an unreachable source fails both
        # at once); each is used only where its pool's source state was read
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(pools)))) as journal_exec:
            kept = {
                p: journal_exec.submit(src.journal_status, p, workers=workers)
                for p in (pools if journals else ())
            }
            sources, dests = _read_both(src, dst, pools, workers, watchers=watchers)
    report = StatusReport(
        pools=[],
        daemon_running=daemon_running,
        snapshot_max_age=snapshot_max_age,
        read_at=time.time(),
    )
    if published is not None:
        try:
            report.callouts = [c for c in published.result() if c.pool in pools]
        except CephError:
            pass  # the mgr did not answer: the pools' own states still show what is wrong
    recorded = set(recorded_torn_down)
    for pool in pools:
        pool_report = PoolReport(pool=pool, recorded_torn_down=pool in recorded)
        report.pools.append(pool_report)
        try:
            _read_source(sources[pool].result(), pool_report)
        except CephError as exc:
            report.source_errors[pool] = str(exc)
        _read_destination(dests[pool].result(), pool_report)
        if pool in kept and pool_report.source_read:
            try:
                pool_report.journals = tuple(kept[pool].result())
            except CephError as exc:
                pool_report.journal_error = str(exc)
    # Lost, not merely erroring: no read worked and the client saw a timeout or a refused
    # connection. A permission error or a broken helper is an answer, and force must not run.
    report.source_lost = not report.source_answers and src.lost
    return report


def journal_backlog(report: StatusReport, limit: int) -> list[str]:
    """The pools where a source image's journal keeps more than `limit` bytes on the source.

    What the journal keeps is what fills the source: trimming waits for the mirror peer, so
    it is the backlog plus at most the object sets in use (2 x 4 x 16 MiB with Ceph's
    defaults). Also a pool with a disconnected mirror client: its images no longer replay.
    """
    over = []
    for pool in report.active:
        largest = pool.largest_journal
        if largest and largest.bytes > limit:
            entries = largest.entries_behind
            over.append(
                f"{pool.pool} ({largest.image}: journal {human_bytes(largest.bytes)} over the "
                f"{human_bytes(limit)} limit, at least "
                f"{human_bytes(largest.bytes_behind)} not replayed"
                + ("" if entries is None else f", {entries} entries")
                + ")"
            )
        elif cut := sorted(j.image for j in pool.journals or () if j.disconnected):
            over.append(
                f"{pool.pool} (mirror client disconnected by the journal cap: {listed(cut)}: "
                "`rbd mirror image resync` each on the destination, or abort)"
            )
    return over


def human_bytes(size: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def read(
    src: CephCluster,
    dst: CephCluster,
    pools: Sequence[str],
    opts: Options,
    *,
    daemon_running: bool = True,
    watchers: bool = False,
) -> StatusReport:
    """`status` as a phase reads it: with the run's workers and the unit's teardown record."""
    return status(
        src,
        dst,
        pools,
        daemon_running=daemon_running,
        workers=opts.workers,
        watchers=watchers,
        recorded_torn_down=opts.torn_down,
    )


def _read_both(
    src: CephCluster, dst: CephCluster, pools: Sequence[str], workers: int, *, watchers: bool
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
    report.images = list(state.statuses)
    if not report.source_read:  # source unreachable: the destination's list is all we know
        report.source_images = [i.name for i in report.images]


def foreign_peers(
    src: CephCluster, dst: CephCluster, pools: Sequence[str], peer: PeerSpec
) -> list[str]:
    """`pool: site (direction)` of every peer that is not this migration's, on either side.

    Ours: on the source, the tx registration of the destination's daemon (the destination's
    site name); on the destination, `peer`. Any other means the pool mirrors elsewhere too.
    """
    dst_pools = dst.mirror_pools(pools)
    site = next((p.site_name for p in dst_pools), "")
    return [
        f"{info.name}: {p.site_name or p.client_name} ({p.direction})"
        for info in src.mirror_pools(pools)
        for p in info.peers
        if not site or p.site_name != site
    ] + [
        f"destination {info.name}: {p.site_name} ({p.direction})"
        for info in dst_pools
        for p in info.peers
        if p.site_name != peer.site_name
    ]


def confirm_source_lost(src: CephCluster, report: StatusReport) -> None:
    """For `force`: a source read as lost must fail a fresh connection too, or it answers.

    One connection that timed out may be a network blip; a forced promotion of a live source is
    a split brain. The second attempt costs the connect timeout, on the disaster path only.
    """
    if report.source_lost and not src.confirm_lost():
        report.source_lost = False


def split_brain_advice(images: Sequence[str], source_cluster: str) -> str:
    """What the operator chooses between for images primary on both clusters."""
    return (
        f"SPLIT-BRAIN, nothing changed: {len(images)} image(s) are primary on both clusters: "
        f"{listed(images)}. Decide per image which copy to keep; the charm will not. Keep the "
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
    if report.source_lost:
        blocking.append(
            f"source unreachable ({report.source_error}); if it is lost for good, "
            "re-run with force=true (the disaster path)"
        )
    blocking += [f"{p}: the source answered with an error: {e}" for p, e in _source_faults(report)]
    for pool in report.active:
        if not pool.source_read:
            continue
        if not pool.set_up:
            blocking.append(
                f"{pool.pool}: mirroring is not set up (source mode {pool.source_mode}, "
                f"destination mode {pool.destination_mode}, {len(pool.peers)} peer(s)): "
                "run enable-mirroring"
            )
            continue
        blocking += [
            f"{pool.pool}/{n}: not mirrored on the source (run enable-mirroring)"
            for n in pool.not_mirrored
        ]
        blocking += [
            f"{pool.pool}/{n}: not on the destination yet"
            for n in pool.missing
            if n not in pool.not_mirrored
        ]
        if not ignore_watchers:
            copying = {i.name for i in pool.lagging}
            blocking += [
                f"{pool.pool}/{n}: still in use on the source (watchers {', '.join(w)}): "
                + (
                    "rbd-mirror watches an image while it copies it: wait until status shows "
                    "it replaying, then re-run; if it stays, "
                    if n in copying
                    else ""
                )
                + "stop the instance or detach the volume, or re-run with ignore-watchers=true"
                + (
                    " (snapshot mode: another unit's rbd-mirror watches the images it "
                    "replays: README, Several units)"
                    if pool.mode is not None and not pool.mode.journals
                    else ""
                )
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
    if force and not report.source_lost:
        return [
            "force=true is only for a source that no longer answers, and it answers: the "
            "checks below apply (run teardown without force)"
        ] + teardown_blockers(report, force=False)
    if report.source_lost and not force:
        blocking.append(
            f"the source does not answer ({report.source_error}); teardown must see that every "
            "source image is on the destination. If the source is lost for good, re-run with "
            "force=true"
        )
    blocking += [f"{p}: the source answered with an error: {e}" for p, e in _source_faults(report)]
    for pool in report.pools:
        sites = {p.site_name for p in pool.peers}
        if len(sites) > 1:
            blocking.append(
                f"{pool.pool}: peers of several sites ({', '.join(sorted(sites))}): remove the "
                "ones that are not this migration's by hand, then re-run"
            )
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
            if n not in pool.not_on_destination and pool.destination_mode != "disabled"
        ]
        blocking += [
            f"{pool.pool}/{n}: still primary on the source: run demote-promote"
            for n in pool.source_primaries
        ]
    return blocking


def attention(report: StatusReport) -> str:
    """What needs the operator now, in the order it matters ("" when nothing does)."""
    changed = [c for p in report.pools for c in p.changed_since_teardown]
    errors = report.in_error
    source_meanwhile = meanwhile([p.mode for p in report.active])
    for problem, message in (
        (report.split_brain, phase(report)),
        (
            changed,
            f"the source changed after the teardown: {', '.join(changed[:3])}: that "
            "data is not on the new cluster: stop what still uses the old cluster and copy "
            "it by hand (rbd export | rbd import, with both clusters' admin keys)",
        ),
        (
            report.source_lost and report.all_promoted,
            "cutover forced (the source does not answer): run teardown force=true, then "
            "relate the cloud to ceph-mon; demote the old cluster's images before it is used",
        ),
        (
            report.source_lost,
            "source unreachable; if it is lost for good: demote-promote force=true",
        ),
        (not report.source_answers, f"the source answers with errors: {report.source_error}"),
        (
            report.daemon_errors,
            f"rbd-mirror reports {'; '.join(report.daemon_errors[:3])} ({source_meanwhile}): "
            "check the relations' addresses and keys",
        ),
        (
            errors,
            f"{len(errors)} image(s) in error: "
            f"{', '.join(i.pool + '/' + i.name for i in errors[:5])}: status verbose=true shows "
            f"why ({source_meanwhile})",
        ),
    ):
        if problem:
            return message
    return ""


def _source_faults(report: StatusReport) -> list[tuple[str, str]]:
    """Pools whose source read failed while the source is not lost (it answers otherwise)."""
    return [] if report.source_lost else sorted(report.source_errors.items())


def phase(report: StatusReport, syncing: Callable[[], str] | None = None) -> str:
    """The migration phase in a few words, with the next step.

    `syncing`: what to say of a sync in progress instead of the image count (progress.py),
    called only when the phase is the sync.
    """
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
    if any(p.source_read and not p.set_up for p in report.active) and not any(
        p.promoted for p in report.active
    ):
        return f"ready: {len(report.active)} pools; run enable-mirroring"
    if report.cutover_done:
        return "cutover done: run teardown"
    if report.in_cutover:
        return f"cutover in progress ({report.promoted}/{total} promoted): re-run demote-promote"
    if report.ready:
        return f"{report.replaying}/{total} replaying: ready for cutover"
    if report.stale_snapshots and report.reasons == report.stale_snapshots:
        return (
            f"{report.replaying}/{total} replaying, but no mirror snapshot copied for over "
            f"{report.snapshot_max_age / 60:.0f} min: check the source's snapshot schedule "
            "(re-run enable-mirroring after changing snapshot-interval)"
        )
    hint = "; run enable-mirroring" if any(p.not_mirrored for p in report.active) else ""
    said = syncing() if syncing else ""
    return f"{said or f'syncing {report.replaying}/{total} images'}{hint}"


def finished(report: StatusReport) -> bool:
    """Every pool is torn down.

    See `PoolReport.torn_down`: read from the clusters, with this unit's record where they
    cannot show it.
    """
    return report.torn_down
