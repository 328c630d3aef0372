"""The proof: every image's content compared on the two clusters, after the cutover. No ops here.

`verify` runs once the source is demoted (after `demote-promote`, before or after `teardown`,
while the source answers): before that, a primary source is still being written and no two
reads could agree. Each pool's images are read on both sides at once, one librbd process per
pool and side (rbd_digest.py), each reading its chunks in a bounded thread pool:

- full (`sample` 0): every chunk either side's diff reports allocated, as a digest; a chunk of
  zeros counts as a hole, so a hole on both sides is never read, and one on one side only is
  read on the other side only;
- `sample` N: N random 4 MiB chunks per image, the same picks on both sides.

Both compare each image's size, its snapshots (the cloud's: not the cutover snapshot nor
rbd-mirror's sync points) and its parent link. A full verify also compares each snapshot's
content: the first snapshot's allocated chunks, then what librbd's diff reports changed from
one snapshot to the next and to the head, so a chunk no snapshot changed is read once. A chunk
that differs is narrowed down to its first differing byte (two more small reads per side).
Images only on the destination (created by the cloud after the cutover) are not compared.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ceph_cli import CephCluster, CephError, Digests, ImageDigest, Layer
from report import StatusReport, human_bytes, read, split_brain_advice
from workflow import MigrationError, Options, listed

CHUNK = 4 * 1024 * 1024
BLOCK = 4096
# Chunk reads in flight per pool and side unless the action's max-workers says otherwise.
# Measured on the lab (two 1 GiB images; two memstore clusters on two cores): 1 in flight read
# 88-100% as fast as `rbd export` of both sides, 2 read 82-90%, 4 read 63-80%, 16 read 62-72%.
# Each chunk is hashed just after it arrives; more chunks in flight push it out of the CPU's
# cache first, and sha256 of a cold 4 MiB chunk runs at 1100 MiB/s against 1770 warm. Two keep
# one read waiting on the OSD while the other is hashed; where reads wait on disks (HDD OSDs),
# raise max-workers.
READS_IN_FLIGHT = 2


@dataclass(frozen=True)
class Mismatch:
    """One image that differs: `offset` is the first differing byte when the content differs."""

    image: str  # pool/image
    what: str
    offset: int | None = None
    snapshot: str = ""  # the snapshot whose content differs ("": the head, or not content)

    def as_dict(self) -> dict[str, object]:
        """For the action's `mismatches` result."""
        out: dict[str, object] = {"image": self.image, "offset": self.offset, "what": self.what}
        if self.snapshot:
            out["snapshot"] = self.snapshot
        return out

    def __str__(self) -> str:
        at = "" if self.offset is None else f" at offset {self.offset}"
        return f"{self.image}: {self.what}{at}"


@dataclass
class VerifyResult:
    """What verify compared and found."""

    images: int = 0
    bytes_read: int = 0
    seconds: float = 0.0
    mismatches: list[Mismatch] = field(default_factory=list)
    sample: int = 0

    @property
    def throughput(self) -> float:
        """Bytes read (both sides) per second."""
        return self.bytes_read / self.seconds if self.seconds > 0 else 0.0


def verify_blockers(report: StatusReport) -> list[str]:
    """Why the two copies cannot be compared now (empty: they can)."""
    if not report.source_answers:
        return [f"the source does not answer: {report.source_error or 'no pool was read'}"]
    if report.split_brain:
        return [split_brain_advice(report.split_brain, "the source")]
    out = []
    for pool in report.pools:
        if not pool.source_read:
            out.append(f"{pool.pool}: the source was not read")
        elif not (pool.cutover_done or pool.torn_down):
            primary = pool.source_primaries
            why = (
                f"{len(primary)} image(s) still primary on the source (a primary source is "
                f"still being written), e.g. {listed(primary[:3])}"
                if primary
                else "not cut over (every source image demoted and primary on the destination)"
            )
            out.append(f"{pool.pool}: {why}")
    return out


def verify(
    src: CephCluster,
    dst: CephCluster,
    pools: Sequence[str],
    opts: Options,
    *,
    sample: int = 0,
    timeout: float | None = None,
    reads: int = READS_IN_FLIGHT,
) -> VerifyResult:
    """Compare every source image with its destination copy; refuse before the cutover.

    `reads`: chunk reads in flight per pool and side (the rest of the work uses `opts`).
    """
    report = read(src, dst, pools, opts)
    blockers = verify_blockers(report)
    if blockers:
        raise MigrationError(
            "verify compares the two copies once the source is demoted (after demote-promote, "
            f"before or after teardown); nothing was read: {'; '.join(blockers)}"
        )
    result = VerifyResult(sample=sample)
    seed = secrets.token_hex(8)
    started = time.monotonic()
    way = f"{sample} random 4 MiB chunk(s) per image" if sample else "every allocated byte"
    opts.log(f"verify: {report.total} image(s) in {len(pools)} pool(s), {way}")
    torn_down = [p.pool for p in report.pools if p.torn_down]
    if torn_down:
        opts.log(
            f"WARNING: {', '.join(torn_down)} torn down: once the cloud writes to the new "
            "cluster, its writes show here as differences"
        )
    for pool in report.pools:
        names = list(pool.source_images)
        if not names:
            continue
        sides = _read_sides(src, dst, pool.pool, names, reads, sample, seed, timeout)
        found = _compare_pool(src, dst, pool.pool, names, sides)
        read_now = sum(d.bytes_read for s in sides for d in s.images.values())
        result.images += len(names)
        result.bytes_read += read_now
        result.mismatches += found
        opts.log(
            f"{pool.pool}: {len(names)} image(s) compared, {human_bytes(read_now)} read, "
            f"{len(found)} mismatch(es); {time.monotonic() - started:.1f} s so far"
        )
    result.seconds = time.monotonic() - started
    return result


def _read_sides(
    src: CephCluster,
    dst: CephCluster,
    pool: str,
    names: list[str],
    reads: int,
    sample: int,
    seed: str,
    timeout: float | None,
) -> tuple[Digests, Digests]:
    """Both sides of one pool at once: one librbd process each."""
    with ThreadPoolExecutor(max_workers=2) as pair:
        futures = [
            pair.submit(
                side.image_digests,
                pool,
                names,
                chunk=CHUNK,
                sample=sample or None,
                seed=seed,
                workers=reads,
                timeout=timeout,
            )
            for side in (src, dst)
        ]
        answers = [f.result() for f in futures]
    failed = {f"{pool}/{n}": e for n, e in answers[0].failed.items()}
    if failed:
        raise MigrationError(f"the source could not be read: {listed(list(failed))}")
    return answers[0], answers[1]


def _compare_pool(
    src: CephCluster, dst: CephCluster, pool: str, names: list[str], sides: tuple[Digests, Digests]
) -> list[Mismatch]:
    source, destination = sides
    out = []
    for name in names:
        theirs = destination.images.get(name)
        image = f"{pool}/{name}"
        if theirs is None:
            error = destination.failed.get(name, "")
            out.append(Mismatch(image, f"not readable on the destination: {error}"))
            continue
        mismatch = compare_image(image, source.images[name], theirs)
        if mismatch is not None and mismatch.offset is not None:
            mismatch = _narrowed(src, dst, pool, name, mismatch)
        if mismatch is not None:
            out.append(mismatch)
    return out


def compare_image(image: str, ours: ImageDigest, theirs: ImageDigest) -> Mismatch | None:
    """The first difference between the source's `ours` and the destination's `theirs`.

    A content mismatch carries the offset of its first differing chunk (narrowed later).
    """
    if ours.size != theirs.size:
        return Mismatch(image, f"size {ours.size} on the source, {theirs.size} on the destination")
    if ours.parent != theirs.parent:
        return Mismatch(
            image,
            f"parent {ours.parent or 'none'} on the source, "
            f"{theirs.parent or 'none'} on the destination",
        )
    if ours.snaps != theirs.snaps:
        names = {n for n, _ in ours.snaps} ^ {n for n, _ in theirs.snaps}
        what = f" ({', '.join(sorted(names))})" if names else " (sizes)"
        return Mismatch(image, f"snapshots differ{what}")
    return _first_content_difference(image, ours.layers, theirs.layers)


def _first_content_difference(
    image: str, ours: Sequence[Layer], theirs: Sequence[Layer]
) -> Mismatch | None:
    """Apply both sides' layers in step; the first snapshot (or head) whose content differs.

    The two sides may report a layer's changes differently (librbd's diff may over-report),
    so what is compared is each side's whole map after the layer: a chunk no layer has named
    since it was last zero is a hole. A layer read whole replaces its side's map; then every
    chunk of either map is compared, else only the chunks either layer names (no other can
    start to differ there).
    """
    if [x.snap for x in ours] != [x.snap for x in theirs]:
        return Mismatch(image, "snapshots differ (order)")
    mine: dict[int, str] = {}
    yours: dict[int, str] = {}
    for a, b in zip(ours, theirs, strict=True):
        for state, layer in ((mine, a), (yours, b)):
            if layer.whole:
                state.clear()
            for offset in [o for o in state if o >= layer.size]:
                del state[offset]  # shrunk
            for offset, found in layer.chunks.items():
                if found:
                    state[offset] = found
                else:
                    state.pop(offset, None)
        named = set(mine) | set(yours) if a.whole or b.whole else set(a.chunks) | set(b.chunks)
        for offset in sorted(named):
            if mine.get(offset) != yours.get(offset):
                what = f"content of snapshot {a.snap} differs" if a.snap else "content differs"
                return Mismatch(image, what, offset, a.snap)
    return None


def _narrowed(
    src: CephCluster, dst: CephCluster, pool: str, name: str, found: Mismatch
) -> Mismatch:
    """The first differing byte of the chunk `found` names: 4 KiB blocks, then the bytes."""
    chunk, snap = found.offset or 0, found.snapshot
    try:
        a, b = (c.extent_digests(pool, name, chunk, CHUNK, BLOCK, snap) for c in (src, dst))
        block = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
        if block is None and len(a) == len(b):
            return Mismatch(found.image, _equal_on_reread(found, pool, name), found.offset, snap)
        if block is None:
            return found
        start = chunk + block * BLOCK
        x, y = (c.extent_bytes(pool, name, start, BLOCK, snap) for c in (src, dst))
        byte = next((i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), 0)
    except CephError:
        return found  # the chunk's offset is still right
    return Mismatch(found.image, found.what, start + byte, snap)


def _equal_on_reread(found: Mismatch, pool: str, name: str) -> str:
    """What a chunk that differed in the digests but reads equal now means, and what to do."""
    spec = f"{pool}/{name}"
    if found.snapshot:  # a snapshot does not change: the two librbd diffs disagree
        return (
            f"{found.what} (read again, its 4 KiB blocks are equal: the two sides' librbd "
            "diffs disagree about this chunk; check both object maps with `rbd object-map "
            f"check {spec}@{found.snapshot}` on each cluster and rebuild a bad one)"
        )
    return (
        f"{found.what} (read again, its 4 KiB blocks are equal: it was written while verify "
        "read it, or the two sides' librbd diffs disagree; if nothing writes to it, check both "
        f"object maps with `rbd object-map check {spec}` on each cluster)"
    )
