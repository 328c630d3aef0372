"""Phase 0, the preflight: what will go wrong, told before enable-mirroring changes anything.

`preflight` reads both clusters (no change, but for two harmless probes of the source key) and
returns `Finding`s, each naming what it is about. enable-mirroring lists them all in a dry run
(`warnings`) and refuses on the blocking ones before its first change:

- qcow2 (warns): a non-clone image whose first bytes are a qcow2 header (`QFI` and 0xfb) although
  RBD stores it raw: clones of it never boot; the migration copies it faithfully.
- space (blocks, or warns under 20% headroom): what each source pool stores, less what its
  destination pool holds already, against what the destination pool may take (`max_avail`,
  replicas and full ratio counted, and its quota); and the sum times each pool's replicas
  against the destination's raw bytes available.
- the source key (blocks): it may blocklist (a 1-second entry for an address no client has)
  and, in journal mode, journal images (a probe image created, journaled, removed, in a pool
  whose mirroring is still off); the message gives the caps ceph-proxy must grant.
- images that cannot be mirrored (blocks): old format 1, being live-migrated, already mirrored
  in the other mode or journaled in snapshot mode (`MirrorMode.image_refusal`), clones of a
  parent in a pool that is not migrated, clones in snapshot mode where the releases do not
  carry the clone fix (`ceph_release.snapshot_clone_refusal`), unreadable.
- destination pools holding images this migration did not create (blocks): images there that
  are not mirrored copies.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ceph_cli import EACCES, CephCluster, CephError, PreflightImage, Space
from ceph_release import SNAPSHOT_CLONE_ADVICE, CephVersion
from mirror_modes import JOURNAL, MODES, MirrorMode, mode_of_pool
from report import StatusReport, human_bytes, read
from setup_mirroring import require_destination_pools
from workflow import Options, listed

QCOW2_MAGIC = b"QFI\xfb".hex()
HEADROOM = 0.2  # warn when the destination keeps less than this share free


@dataclass(frozen=True)
class Finding:
    """One thing the preflight found: what it is about, what is wrong, whether it blocks."""

    kind: str  # qcow2, space, blocklist, journaling, image, destination, source
    about: str
    text: str
    blocks: bool = False

    def __str__(self) -> str:
        return f"{'BLOCKS: ' if self.blocks else ''}{self.about}: {self.text}"


@dataclass(frozen=True)
class Preflight:
    """The findings, and what the preflight read of both clusters (enable-mirroring acts on it)."""

    findings: list[Finding]
    report: StatusReport
    sizes: dict[str, int] = field(default_factory=dict)  # "pool/image" -> bytes to copy


def preflight(
    src: CephCluster,
    dst: CephCluster,
    pools: Sequence[str],
    opts: Options,
    *,
    all_pools: Sequence[str],
    key_caps: str,
    release: CephVersion | None = None,
    aborting: Sequence[str] = (),
    mode: MirrorMode = MODES[JOURNAL],
    clone_refusal: str = "",
    restart: bool = False,
) -> Preflight:
    """Every finding about migrating `pools` (`all_pools`: every pool the migration covers).

    `key_caps`: what ceph-proxy must grant the source key, for the message when it may not;
    `aborting`: pools whose abort was interrupted (their leftover copies are the abort's to
    delete); `mode`: the mirroring mode asked for (snapshot mode never journals: no journaling
    probe); `clone_refusal`: why clones may not be mirrored in it ("" when they may). The image
    and space checks run at once (each waits on a cluster); the journaling
    probe runs after the image check, which would otherwise meet its probe image.
    """
    require_destination_pools(dst, pools)
    with ThreadPoolExecutor(max_workers=4) as checks:
        # The blocklist probe waits about a second for the mons to commit its entry: it runs
        # alongside the reads.
        blocklist = checks.submit(_blocklist, src, key_caps, release)
        report = read(src, dst, pools, opts)
        if report.source_errors:
            why = f"does not answer: {report.source_error}"
            return Preflight([Finding("source", "source", why, blocks=True)], report)
        sizes: dict[str, int] = {}
        images = checks.submit(
            _images, src, report, set(all_pools), opts, sizes, mode, clone_refusal
        )
        space = checks.submit(_space, src, dst, pools)
        findings = _destination_images(report, set(aborting), restart) + images.result()
        if mode.journals:
            findings += _journaling(src, report, key_caps)
        findings += space.result()
        return Preflight(findings + blocklist.result(), report, sizes)


def _destination_images(
    report: StatusReport, aborting: set[str], restart: bool = False
) -> list[Finding]:
    out = []
    for pool in report.pools:
        mirrored = {i.name for i in pool.images}
        foreign = sorted(n for n in pool.destination_names if n not in mirrored)
        if foreign and pool.pool in aborting:
            # abort deletes only the copies of source images (abort._to_delete)
            copies = [n for n in foreign if n in pool.source_images]
            others = [n for n in foreign if n not in pool.source_images]
            by_hand = f"; remove by hand: {listed(others)}" if others else ""
            out.append(
                Finding(
                    "destination",
                    f"destination pool {pool.pool}",
                    f"an abort of it was interrupted and {len(copies)} copy(ies) are left "
                    f"({listed(copies)}): re-run abort pools={pool.pool}, which deletes them"
                    f"{by_hand}; then enable-mirroring",
                    blocks=True,
                )
            )
        elif foreign and (pool.torn_down or pool.recorded_torn_down) and not restart:
            continue  # enable-mirroring leaves a torn-down pool alone
        elif foreign and (pool.torn_down or pool.recorded_torn_down):
            out.append(
                Finding(
                    "destination",
                    f"destination pool {pool.pool}",
                    f"holds the finished migration's {len(foreign)} image(s), the cloud's data "
                    f"on this cluster since the teardown ({listed(foreign)}): never remove "
                    "them; a new migration of this pool needs an empty destination pool",
                    blocks=True,
                )
            )
        elif foreign:
            out.append(
                Finding(
                    "destination",
                    f"destination pool {pool.pool}",
                    f"holds {len(foreign)} image(s) this migration did not create (not mirrored "
                    f"copies): {listed(foreign)}; remove them or migrate into empty pools",
                    blocks=True,
                )
            )
    return out


def _images(
    src: CephCluster,
    report: StatusReport,
    migrated: set[str],
    opts: Options,
    sizes: dict[str, int],
    mode: MirrorMode,
    clone_refusal: str,
) -> list[Finding]:
    """Each image's findings; `sizes` gets each image's bytes to copy (the progress keeps them)."""
    names = [p.pool for p in report.pools]
    with ThreadPoolExecutor(max_workers=max(1, min(opts.workers, len(names)))) as pool_exec:
        reads = {p: pool_exec.submit(src.preflight_images, p, workers=opts.workers) for p in names}
    out, found_in = [], {}
    for pool, future in reads.items():
        try:
            found_in[pool] = future.result()
        except CephError as exc:
            why = f"images not readable: {exc}"
            out.append(Finding("image", f"source pool {pool}", why, blocks=True))
    clones = [i for found in found_in.values() for i in found if i.parent]
    modes = _modes_after(src, report, {i.parent.partition("/")[0] for i in clones}, mode)
    for pool, found in found_in.items():
        mirrored = next(p.mode for p in report.pools if p.pool == pool) is not None
        for image in found:
            out += _image_findings(pool, image, migrated, mode, clone_refusal, mirrored)
            parent_mode = modes.get(image.parent.partition("/")[0])
            if image.parent and parent_mode is not None and parent_mode != mode:
                parent_pool = image.parent.partition("/")[0]
                why = (
                    f"a clone of {image.parent}, whose pool {parent_pool} is mirrored in "
                    f"{parent_mode.name} mode: keep clones and their parents' pools in "
                    f"one mode, {mode.name} (mixing them is not tested): abort {parent_pool} "
                    f"and mirror it with mode={mode.name}"
                )
                out.append(Finding("image", f"{pool}/{image.name}", why, blocks=True))
            sizes[f"{pool}/{image.name}"] = image.size
    return out


def _modes_after(
    src: CephCluster, report: StatusReport, pools: set[str], asked: MirrorMode
) -> dict[str, MirrorMode | None]:
    """The mode each of `pools` will be mirrored in once this run is done (None: not at all).

    A pool of this run: the mode it has, else the one asked for; any other: the one it has.
    """
    out: dict[str, MirrorMode | None] = {p.pool: p.mode or asked for p in report.pools}
    others = sorted(pools - set(out))
    if others:
        try:
            out |= {i.name: mode_of_pool(i.mode) for i in src.mirror_pools(others)}
        except CephError:  # not readable: the parent check above names that pool
            pass
    return out


def _image_findings(
    pool: str,
    image: PreflightImage,
    migrated: set[str],
    mode: MirrorMode,
    clone_refusal: str,
    pool_mirrored: bool = False,
) -> list[Finding]:
    """`pool_mirrored`: the pool is mirrored already (an image created since the last run)."""
    about = f"{pool}/{image.name}"
    out = []
    if image.head == QCOW2_MAGIC:
        out.append(
            Finding(
                "qcow2",
                about,
                "its first bytes are a qcow2 header although RBD stores it raw: clones of it "
                "never boot (convert it with qemu-img to raw and upload it again); it is "
                "copied as it is",
            )
        )
    why = []
    if image.old_format:
        why.append("an old format 1 image: it cannot be journaled (rbd migration to format 2)")
    if "migrating" in image.features:
        why.append("being live-migrated (rbd migration): commit or abort that first")
    if refusal := mode.image_refusal(image.mirror_mode, image.features):
        why.append(refusal)
    if image.parent and clone_refusal and pool_mirrored and not image.mirror_mode:
        risk = clone_refusal.removesuffix(SNAPSHOT_CLONE_ADVICE)
        why.append(  # created after the sync began: the pool's mode is not changed now
            f"{risk}, and {pool} is already mirrored in {mode.name} mode: flatten it "
            f"(rbd flatten {about}) and re-run, or abort this pool and start over with "
            "mode=journal"
        )
    elif image.parent and clone_refusal:
        why.append(clone_refusal)
    parent_pool = image.parent.partition("/")[0]
    if image.parent and parent_pool not in migrated:
        why.append(
            f"a clone of {image.parent}, in pool {parent_pool} that is not migrated: "
            "rbd-mirror mirrors a clone only with its parent (migrate that pool or flatten it)"
        )
    out += [Finding("image", about, w, blocks=True) for w in why]
    return out


def _space(src: CephCluster, dst: CephCluster, pools: Sequence[str]) -> list[Finding]:
    with ThreadPoolExecutor(max_workers=1) as other_side:
        destination = other_side.submit(dst.space)
        try:
            source = src.space()
        except CephError as exc:
            why = f"the source's usage is not readable with this key: {exc}"
            return [Finding("space", "space", why)]
        return space_findings(source, destination.result(), pools)


def space_findings(source: Space, destination: Space, pools: Sequence[str]) -> list[Finding]:
    """Each pool's need against what its destination pool may take, then together.

    Pools whose CRUSH rules place data on the same OSDs (one rule, or two rules taking the same
    root and device class) share those OSDs' space; the raw total is the whole cluster's.
    """
    out, raw_need = [], 0
    # the OSDs (or, unknown, the rule id) -> [(pool, raw need, raw room)]
    by_rule: dict[tuple[int, ...] | int, list[tuple[str, int, int]]] = {}
    for name in pools:
        theirs, ours = destination.pools.get(name), source.pools.get(name)
        if theirs is None or ours is None:
            continue
        need = max(0, ours.stored - theirs.stored)
        room = theirs.max_avail
        if theirs.quota_max_bytes:
            room = min(room, max(0, theirs.quota_max_bytes - theirs.stored))
        replicas = max(1, theirs.size)
        raw_need += need * replicas
        by_rule.setdefault(theirs.osds or theirs.crush_rule, []).append(
            (name, need * replicas, theirs.max_avail * replicas)
        )
        out += _fit(f"space: pool {name}", need, room, "the destination pool may take")
    for osds, sharing in by_rule.items():
        if osds != -1 and len(sharing) > 1:  # each pool's max_avail counts the same OSDs
            which = f"CRUSH rule {osds}" if isinstance(osds, int) else f"{len(osds)} OSD(s)"
            out += _fit(
                f"space: pools {', '.join(n for n, _, _ in sharing)} (the same {which})",
                sum(need for _, need, _ in sharing),
                min(room for _, _, room in sharing),
                "their OSDs may take (raw)",
            )
    out += _fit("space: destination", raw_need, destination.total_avail_bytes, "raw available")
    return out


def _fit(about: str, need: int, room: int, what: str) -> list[Finding]:
    figures = f"needs {human_bytes(need)} ({need} bytes), {what} {human_bytes(room)} ({room})"
    if need > room:
        return [Finding("space", about, f"does not fit: {figures}", blocks=True)]
    if need and need > room * (1 - HEADROOM):
        return [Finding("space", about, f"less than 20% headroom: {figures}")]
    return []


def _fix(caps: str) -> str:
    return (
        f"ceph-proxy has not applied this charm's key request ({caps}); grant the caps, or "
        "fix ceph-proxy, then re-run"
    )


def _blocklist(src: CephCluster, caps: str, release: CephVersion | None) -> list[Finding]:
    """May the source key blocklist? (rbd-mirror breaks a dead instance's lock with it)."""
    try:
        if src.can_blocklist(release):
            return []
    except CephError as exc:
        return [Finding("blocklist", "source key", f"the blocklist probe failed: {exc}", True)]
    return [Finding("blocklist", "source key", f"may not blocklist: {_fix(caps)}", True)]


def _journaling(src: CephCluster, report: StatusReport, caps: str) -> list[Finding]:
    """May the source key journal images? Probed only in pools whose mirroring is still off."""
    for pool in report.pools:
        if pool.source_mode != "disabled":
            continue  # a journaled probe image would be mirrored; journaling proven already
        try:
            denied = src.journal_probe(pool.pool)
        except CephError as exc:
            if exc.rc != EACCES:
                raise
            denied = str(exc)
        if denied:
            what = f"may not journal images ({denied}): {_fix(caps)}"
            return [Finding("journaling", f"source key, pool {pool.pool}", what, True)]
    return []
