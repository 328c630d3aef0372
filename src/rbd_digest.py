"""What `verify` reads of one side: each image's content as chunk digests, and its metadata.

Imported by rbd_bulk.py (system Python, python3-rbd), one process per pool and side: the charm
compares the two sides' answers (verify.py). Standard library plus rbd only.

- "digests" ("images", "chunk", optionally "sample" and "seed", "ignore_snaps"): for each image
  its size, its snapshots (user namespace, less `ignore_snaps` and rbd-mirror's own
  `.rbd-mirror.*` sync points) with their sizes, its parent link, and its layers: the digest
  (sha256, 128 bits; "" for a chunk of zeros) of each `chunk`-aligned extent read in each
  snapshot, oldest first, then in the head. Full (no "sample"): the first snapshot's chunks
  librbd's diff reports allocated (a clone's include its parent's), then each later snapshot's
  chunks the diff reports changed since the one before, unless its parent link or overlap
  changed in between (then it is read whole); the head is read whole (every allocated chunk),
  never by its changes. Applied in order, the layers give
  each snapshot's and the head's whole content, and no hole is read; the two sides may split
  their changes differently (the diff may over-report), so verify.py compares the applied
  maps, not the layers. With "sample": the head only, N chunks picked from its size by a
  generator seeded with "seed" and the image's name, the same on both sides. The (image,
  layer, chunk) reads run in one thread pool of "workers" threads: one big image is read in
  parallel too. Images are opened in batches of at most MAX_OPEN handles.
- "extent" ("image", "offset", "length", "block", optionally "snap"): the digest of each
  `block` bytes of one extent (of the head, or of snapshot "snap"); with "block" 0, the
  extent's bytes as hex (at most 64 KiB). verify.py narrows a mismatching chunk down to its
  first differing byte with it.
"""

from __future__ import annotations

import hashlib
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import rbd  # type: ignore[import-not-found]

from bulk_schema import ExtentAnswer, ImageDigestAnswer, ImageDigestsAnswer

MIRROR_SYNC_PREFIX = ".rbd-mirror."  # rbd-mirror's sync-point snapshots: its, not the cloud's
MAX_HEX = 64 * 1024
MAX_OPEN = 256  # image and snapshot handles open at once (each holds a librbd image context)
DIGEST_HEX = 32  # 128 bits of sha256


def digest(data: bytes | memoryview) -> str:
    """The digest both sides give a chunk (and the charm's zero chunk)."""
    return hashlib.sha256(data).hexdigest()[:DIGEST_HEX]


def parent_link(image) -> str:
    """`pool/image@snap` of a clone's parent, "" for an image that is not a clone."""
    try:
        parent = image.get_parent_image_spec()
    except rbd.ImageNotFound:
        return ""
    return f"{parent['pool_name']}/{parent['image_name']}@{parent['snap_name']}"


def _compared(image, ignore: set[str]) -> list[dict]:
    """The cloud's snapshots, in the order they were taken (user namespace, not ours)."""
    out = []
    for snap in image.list_snaps():
        name = snap["name"]
        if snap.get("namespace", rbd.RBD_SNAP_NAMESPACE_TYPE_USER) != (
            rbd.RBD_SNAP_NAMESPACE_TYPE_USER
        ):
            continue
        if name in ignore or name.startswith(MIRROR_SYNC_PREFIX):
            continue
        out.append(snap)
    return sorted(out, key=lambda s: s["id"])


def _changed(image, size: int, chunk: int, since: str | None) -> set[int]:
    """The chunk offsets librbd's diff reports data in, since snapshot `since` (None: all).

    A clone's include its parent's. The diff may report more than changed, never less.
    """
    found: set[int] = set()

    def seen(offset: int, length: int, exists: bool) -> int:
        if length and (exists or since is not None):  # since a snapshot, a discard counts too
            found.update(range(offset // chunk, (offset + length - 1) // chunk + 1))
        return 0

    if size:
        image.diff_iterate(0, size, since, seen, include_parent=True, whole_object=True)
    return {i * chunk for i in found if i * chunk < size}


def _sampled(name: str, size: int, chunk: int, count: int, seed: str) -> set[int]:
    chunks = -(-size // chunk)
    picks = random.Random(f"{seed}/{name}").sample(range(chunks), min(count, chunks))
    return {i * chunk for i in picks}


def _read_chunk(image, offset: int, length: int, zero: bytes) -> tuple[str, int]:
    """(digest, bytes read) of one chunk; an all-zero chunk is "" (what a hole reads as)."""
    data = image.read(offset, length)
    if data == zero[: len(data)]:
        return "", len(data)
    return digest(data), len(data)


@dataclass
class _Layer:
    """One snapshot (or the head, "") of one image: its size and the chunks to read in it."""

    snap: str
    image: object  # an rbd.Image open at that snapshot
    size: int
    offsets: set[int]
    whole: bool  # read from nothing: every allocated chunk, not the changes since the one before
    chunks: dict[str, str] = field(default_factory=dict)


def _backing(image) -> tuple[str, int] | None:
    """A layer's parent link and parent overlap; None when the overlap cannot be read."""
    link = parent_link(image)
    if not link:
        return "", 0
    try:
        return link, image.overlap()
    except rbd.Error:
        return None


def _layers(ioctx, image, name: str, req: dict, opened: list) -> tuple[list[list], list[_Layer]]:
    """An image's compared snapshots ([name, size]) and what to read of each layer.

    Full: the first snapshot's allocated chunks, then each later snapshot's changes since the
    one before (and the chunk at a size change, whose length changed), the head whole.
    A later snapshot whose parent link or overlap is not the one before's (a clone shrunk, or
    flattened, in between) is read whole too: the diff since a snapshot does not report what
    the parent stopped backing. Sample: the head only, at the sampled offsets.
    """
    chunk = int(req["chunk"])
    size = image.size()
    snaps = _compared(image, set(req.get("ignore_snaps", ())))
    listed = sorted([s["name"], s["size"]] for s in snaps)
    if req.get("sample") is not None:
        offsets = _sampled(name, size, chunk, int(req["sample"]), str(req.get("seed", "")))
        return listed, [_Layer("", image, size, offsets, whole=False)]
    layers: list[_Layer] = []
    since: str | None = None
    before: tuple[str, int] | None = None
    for snap in [*snaps, None]:
        if snap is None:
            handle = image
        else:
            handle = rbd.Image(ioctx, name, snapshot=snap["name"], read_only=True)
            opened.append(handle)
        at_size = handle.size()
        backing = _backing(handle)
        # the head is read whole (its diff from nothing), as is a snapshot whose backing
        # changed: only a snapshot with the same parent overlap is read by its changes
        by_changes = snap is not None and backing is not None and backing == before
        offsets = _changed(handle, at_size, chunk, since if by_changes else None)
        if layers and layers[-1].size != at_size and min(layers[-1].size, at_size):
            offsets.add((min(layers[-1].size, at_size) - 1) // chunk * chunk)
        name_ = snap["name"] if snap else ""
        layers.append(_Layer(name_, handle, at_size, offsets, whole=not by_changes))
        since, before = (snap["name"] if snap else None), backing
    return listed, layers


def image_digests(ioctx, req: dict) -> ImageDigestsAnswer:
    """The "digests" op over the request's images (see the module docstring).

    Images are opened in batches of at most MAX_OPEN handles (each snapshot read is one),
    each batch's chunks read in one bounded thread pool, then its handles closed.
    """
    chunk = int(req["chunk"])
    zero = bytes(chunk)
    answers: dict[str, ImageDigestAnswer] = {}
    layers: dict[str, list[_Layer]] = {}
    failed: dict[str, str] = {}

    def one(task: tuple[str, _Layer, int]) -> tuple[str, _Layer, int, str, int, str]:
        name, layer, offset = task
        length = min(chunk, layer.size - offset)
        try:
            found, read = _read_chunk(layer.image, offset, length, zero)
        except rbd.Error as exc:
            return name, layer, offset, "", 0, f"{type(exc).__name__}: {exc}"
        return name, layer, offset, found, read, ""

    names = list(req["images"])
    with ThreadPoolExecutor(max_workers=max(1, int(req.get("workers", 4)))) as pool:
        while names:
            opened: list = []
            try:
                tasks = _open_batch(ioctx, names, req, opened, answers, layers, failed)
                for name, layer, offset, found, read, error in pool.map(one, tasks):
                    if error:
                        where = f" of snapshot {layer.snap}" if layer.snap else ""
                        failed.setdefault(name, f"reading offset {offset}{where}: {error}")
                        continue
                    answers[name]["bytes_read"] += read
                    layer.chunks[str(offset)] = found
            finally:
                for image in opened:
                    image.close()
    for name, answer in answers.items():
        answer["layers"] = [[x.snap, x.size, x.chunks, x.whole] for x in layers[name]]
    return {"images": {n: a for n, a in answers.items() if n not in failed}, "failed": failed}


def _open_batch(
    ioctx,
    names: list[str],
    req: dict,
    opened: list,
    answers: dict[str, ImageDigestAnswer],
    layers: dict[str, list[_Layer]],
    failed: dict[str, str],
) -> list[tuple[str, _Layer, int]]:
    """Open images from `names` (taken off it) until MAX_OPEN handles are; their reads."""
    tasks: list[tuple[str, _Layer, int]] = []
    while names and len(opened) < MAX_OPEN:
        name = names.pop(0)
        try:
            image = rbd.Image(ioctx, name, read_only=True)
        except rbd.Error as exc:
            failed[name] = f"{type(exc).__name__}: {exc}"
            continue
        opened.append(image)
        try:
            snaps, layers[name] = _layers(ioctx, image, name, req, opened)
        except rbd.Error as exc:
            failed[name] = f"{type(exc).__name__}: {exc}"
            continue
        answers[name] = {
            "size": layers[name][-1].size,
            "snaps": snaps,
            "parent": parent_link(image),
            "layers": [],
            "bytes_read": 0,
        }
        tasks += [(name, layer, off) for layer in layers[name] for off in sorted(layer.offsets)]
    return tasks


def extent(ioctx, req: dict) -> ExtentAnswer:
    """The "extent" op: per-block digests of one extent, or its bytes as hex (block 0)."""
    offset, length, block = int(req["offset"]), int(req["length"]), int(req["block"])
    snap = req.get("snap") or None
    with rbd.Image(ioctx, req["image"], snapshot=snap, read_only=True) as image:
        length = max(0, min(length, image.size() - offset))
        data = image.read(offset, length) if length else b""
    if block <= 0:
        return {"digests": [], "hex": data[:MAX_HEX].hex()}
    view = memoryview(data)
    digests = [digest(view[i : i + block]) for i in range(0, len(data), block)]
    return {"digests": digests, "hex": ""}
