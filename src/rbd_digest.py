"""What `verify` reads of one side: each image's content as chunk digests, and its metadata.

Imported by rbd_bulk.py (system Python, python3-rbd), one process per pool and side: the charm
compares the two sides' answers (verify.py). Standard library plus rbd only.

- "digests" ("images", "chunk", optionally "sample" and "seed", "ignore_snaps"): for each image
  its size, its snapshots (user namespace, less `ignore_snaps` and rbd-mirror's own
  `.rbd-mirror.*` sync points) with their sizes, its parent link, and the digest (sha256,
  128 bits) of each `chunk`-aligned extent. Full (no "sample"): only the chunks librbd's diff
  reports allocated (a clone's include its parent's), and a chunk that reads as zeros is left
  out, like a hole: the two sides agree exactly when their lists agree, and no hole is read.
  With "sample": N chunks per image, picked from the image's size by a generator seeded with
  "seed" and the image's name, the same on both sides. The (image, chunk) reads run in one
  thread pool of "workers" threads: one big image is read in parallel too.
- "extent" ("image", "offset", "length", "block"): the digest of each `block` bytes of one
  extent; with "block" 0, the extent's bytes as hex (at most 64 KiB). verify.py narrows a
  mismatching chunk down to its first differing byte with it.
"""

from __future__ import annotations

import hashlib
import random
from concurrent.futures import ThreadPoolExecutor

import rbd  # type: ignore[import-not-found]

from bulk_schema import ExtentAnswer, ImageDigestAnswer, ImageDigestsAnswer

MIRROR_SYNC_PREFIX = ".rbd-mirror."  # rbd-mirror's sync-point snapshots: its, not the cloud's
MAX_HEX = 64 * 1024
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


def _metadata(image, ignore: set[str]) -> tuple[int, list[list], str]:
    size = image.size()
    snaps = []
    for snap in image.list_snaps():
        name = snap["name"]
        if snap.get("namespace", rbd.RBD_SNAP_NAMESPACE_TYPE_USER) != (
            rbd.RBD_SNAP_NAMESPACE_TYPE_USER
        ):
            continue
        if name in ignore or name.startswith(MIRROR_SYNC_PREFIX):
            continue
        snaps.append([name, snap["size"]])
    return size, sorted(snaps), parent_link(image)


def _allocated(image, size: int, chunk: int) -> list[int]:
    """The chunk offsets librbd's diff reports data in (a clone's include its parent's)."""
    found: set[int] = set()

    def seen(offset: int, length: int, exists: bool) -> int:
        if exists and length:
            found.update(range(offset // chunk, (offset + length - 1) // chunk + 1))
        return 0

    if size:
        image.diff_iterate(0, size, None, seen, include_parent=True, whole_object=True)
    return [i * chunk for i in sorted(found) if i * chunk < size]


def _sampled(name: str, size: int, chunk: int, count: int, seed: str) -> list[int]:
    chunks = -(-size // chunk)
    picks = random.Random(f"{seed}/{name}").sample(range(chunks), min(count, chunks))
    return [i * chunk for i in sorted(picks)]


def _read_chunk(image, offset: int, length: int, zero: bytes) -> tuple[str, int]:
    """(digest, bytes read) of one chunk; an all-zero chunk is "" (what a hole reads as)."""
    data = image.read(offset, length)
    if data == zero[: len(data)]:
        return "", len(data)
    return digest(data), len(data)


def image_digests(ioctx, req: dict) -> ImageDigestsAnswer:
    """The "digests" op over the request's images (see the module docstring)."""
    chunk = int(req["chunk"])
    sample = req.get("sample")
    seed = str(req.get("seed", ""))
    ignore = set(req.get("ignore_snaps", ()))
    workers = max(1, int(req.get("workers", 4)))
    zero = bytes(chunk)
    images: dict[str, object] = {}
    answers: dict[str, ImageDigestAnswer] = {}
    failed: dict[str, str] = {}
    tasks: list[tuple[str, int, int]] = []
    try:
        for name in req["images"]:
            try:
                image = rbd.Image(ioctx, name, read_only=True)
            except rbd.Error as exc:
                failed[name] = f"{type(exc).__name__}: {exc}"
                continue
            images[name] = image
            try:
                size, snaps, parent = _metadata(image, ignore)
                offsets = (
                    _sampled(name, size, chunk, int(sample), seed)
                    if sample is not None
                    else _allocated(image, size, chunk)
                )
            except rbd.Error as exc:
                failed[name] = f"{type(exc).__name__}: {exc}"
                continue
            answers[name] = {
                "size": size,
                "snaps": snaps,
                "parent": parent,
                "chunks": {},
                "bytes_read": 0,
            }
            tasks += [(name, off, min(chunk, size - off)) for off in offsets]

        def one(task: tuple[str, int, int]) -> tuple[str, int, str, int, str]:
            name, offset, length = task
            try:
                found, read = _read_chunk(images[name], offset, length, zero)
            except rbd.Error as exc:
                return name, offset, "", 0, f"{type(exc).__name__}: {exc}"
            return name, offset, found, read, ""

        with ThreadPoolExecutor(max_workers=workers) as pool:
            for name, offset, found, read, error in pool.map(one, tasks):
                if error:
                    failed.setdefault(name, f"reading offset {offset}: {error}")
                    continue
                answers[name]["bytes_read"] += read
                if found:
                    answers[name]["chunks"][str(offset)] = found
    finally:
        for image in images.values():
            image.close()  # type: ignore[attr-defined]
    return {"images": {n: a for n, a in answers.items() if n not in failed}, "failed": failed}


def extent(ioctx, req: dict) -> ExtentAnswer:
    """The "extent" op: per-block digests of one extent, or its bytes as hex (block 0)."""
    offset, length, block = int(req["offset"]), int(req["length"]), int(req["block"])
    with rbd.Image(ioctx, req["image"], read_only=True) as image:
        length = max(0, min(length, image.size() - offset))
        data = image.read(offset, length) if length else b""
    if block <= 0:
        return {"digests": [], "hex": data[:MAX_HEX].hex()}
    view = memoryview(data)
    digests = [digest(view[i : i + block]) for i in range(0, len(data), block)]
    return {"digests": digests, "hex": ""}
