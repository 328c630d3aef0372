"""rbd_digest.py (what verify reads of one side) against a librbd stand-in (fake_librbd.py).

The real rbd_digest.py, ceph_cli's parsing and verify's comparison and narrowing run here; only
librbd is replaced. Each test compares verify's answer with the truth: every snapshot's and
the head's bytes read in full on both sides. The lab (tests/functional/test_proof.py) proves
the same on real Ceph for the cases it can build.
"""

from __future__ import annotations

import copy
import json
import random
import sys

import pytest

from ceph_cli import CephClient
from tests.unit import fake_librbd as rbd

OBJ = rbd.OBJ
USER, MIRROR = rbd.RBD_SNAP_NAMESPACE_TYPE_USER, rbd.RBD_SNAP_NAMESPACE_TYPE_MIRROR
CUTOVER = "rbd-mirror-migration-cutover"


@pytest.fixture
def verify_on_stand_in(monkeypatch):
    """Verify's comparison of one image, with rbd_digest.py reading the stand-in."""
    monkeypatch.setitem(sys.modules, "rbd", rbd)
    monkeypatch.delitem(sys.modules, "rbd_digest", raising=False)
    import rbd_digest
    import verify

    monkeypatch.setattr(verify, "CHUNK", OBJ)
    monkeypatch.setattr(verify, "BLOCK", 16)

    class Side(CephClient):
        ioctx: rbd.Ioctx  # the pool this side reads (CephClient is frozen: set once below)

        def __init__(self, images):
            super().__init__("lab", "admin")
            object.__setattr__(self, "ioctx", rbd.Ioctx(images))

        def _bulk(self, request, timeout=None):
            req = json.loads(json.dumps(request))  # what crosses the process boundary
            op = rbd_digest.image_digests if req["op"] == "digests" else rbd_digest.extent
            return json.loads(json.dumps(op(self.ioctx, req)))

    def compare(src_images, dst_images, name, **kw):
        src, dst = Side(src_images), Side(dst_images)
        ours = src.image_digests("p", [name], chunk=OBJ, **kw)
        theirs = dst.image_digests("p", [name], chunk=OBJ, **kw)
        assert not ours.failed and not theirs.failed, (ours.failed, theirs.failed)
        found = verify.compare_image(f"p/{name}", ours.images[name], theirs.images[name])
        if found is not None and found.offset is not None:
            found = verify._narrowed(src, dst, "p", name, found)
        return found

    compare.Side = Side  # type: ignore[attr-defined]
    return compare


def _replayed(img, parent=None, shift=1000):
    """The destination as rbd-mirror leaves it.

    The same content, other snapshot ids, and a mirror snapshot after each of the cloud's.
    """
    out = copy.deepcopy(img)
    if parent is not None:
        out.parent = parent
    snaps = []
    for k, snap in enumerate(out.snaps):
        snap[0] = shift + 2 * k + 1
        snaps.append(snap)
        snaps.append(
            [shift + 2 * k + 2, f".mirror.non_primary.{k}", MIRROR, copy.deepcopy(snap[3]), set()]
        )
    out.snaps = snaps
    return out


def _truth(src, dst) -> list[tuple[str, int]]:
    """Each user snapshot (and the head, "") whose bytes differ, with the first differing byte."""
    out = []
    for snap in [s[1] for s in src.snaps if s[2] == USER and s[1] != CUTOVER] + [None]:
        a, b = src.state(snap), dst.state(snap)
        ra, rb = src.read_state(a, 0, a.size), dst.read_state(b, 0, b.size)
        if ra != rb:
            diff = (i for i, (x, y) in enumerate(zip(ra, rb, strict=False)) if x != y)
            out.append((snap or "", next(diff, min(len(ra), len(rb)))))
    return out


def _parent_and_clone():
    parent = rbd.Img("parent", 4 * OBJ)
    parent.write(0, bytes(i % 251 + 1 for i in range(4 * OBJ)))
    parent.snap_create("snap")
    return parent, rbd.Img("clone", 4 * OBJ, parent=parent, parent_snap="snap")


def _shrunk_and_grown(clone) -> None:
    clone.snap_create("s1")
    clone.resize(OBJ)  # the parent overlap: 4 objects -> 1, for good
    clone.resize(4 * OBJ)


def test_a_faithful_copy_of_a_clone_whose_overlap_shrank_passes(verify_on_stand_in):
    parent, clone = _parent_and_clone()
    _shrunk_and_grown(clone)
    clone.snap_create("s2")
    dst_parent = _replayed(parent)
    assert (
        verify_on_stand_in([parent, clone], [dst_parent, _replayed(clone, dst_parent)], "clone")
        is None
    )


def test_a_destination_head_still_showing_the_parent_is_named(verify_on_stand_in):
    parent, clone = _parent_and_clone()
    _shrunk_and_grown(clone)
    dst_parent = _replayed(parent)
    bad = _replayed(clone, dst_parent)
    bad.head.overlap = 4 * OBJ
    found = verify_on_stand_in([parent, clone], [dst_parent, bad], "clone")
    assert _truth(clone, bad) == [("", OBJ)]
    assert found is not None and (found.snapshot, found.offset) == ("", OBJ)


def test_a_snapshot_taken_after_the_overlap_shrank_is_read_whole(verify_on_stand_in):
    # the diff since s1 reports nothing of what the parent stopped backing: read by its
    # changes, the destination's s2 would pass while it still shows the parent's data
    parent, clone = _parent_and_clone()
    _shrunk_and_grown(clone)
    clone.snap_create("s2")
    dst_parent = _replayed(parent)
    bad = _replayed(clone, dst_parent)
    next(s for s in bad.snaps if s[1] == "s2")[3].overlap = 4 * OBJ
    found = verify_on_stand_in([parent, clone], [dst_parent, bad], "clone")
    assert _truth(clone, bad) == [("s2", OBJ)]
    assert found is not None and (found.snapshot, found.offset) == ("s2", OBJ)


def test_a_head_changed_behind_the_object_map_is_named(verify_on_stand_in):
    src = rbd.Img("img", 3 * OBJ)
    src.write(0, b"A" * (3 * OBJ))
    src.snap_create("s1")
    src.write(2 * OBJ, b"B" * OBJ)
    src.snap_create(CUTOVER)
    dst = _replayed(src)
    dst.head.objs[1] = bytearray(b"C" * OBJ)
    dst.stale_head.add(1)  # the diff since a snapshot would not report it
    found = verify_on_stand_in(
        [src],
        [dst],
        "img",
    )
    assert found is not None and (found.snapshot, found.offset) == ("", OBJ)


def _history(rng: random.Random, size: int) -> list[tuple]:
    ops: list[tuple] = []
    for k in range(rng.randrange(1, 12)):
        kind = rng.choice("wwdrss")
        if kind == "w":
            data = bytes([rng.randrange(1, 255)]) * rng.randrange(1, 2 * OBJ)
            ops.append(("w", rng.randrange(0, 8 * OBJ), data))
        elif kind == "d":
            ops.append(("d", rng.randrange(0, 8 * OBJ), rng.randrange(1, 3 * OBJ)))
        elif kind == "r":
            ops.append(("r", rng.randrange(1, 8 * OBJ)))
        else:
            ops.append(("s", f"s{k}"))
    return [*ops, ("s", CUTOVER)]


def _play(ops, size, parent, flip: int | None):
    """Replay `ops` on a new image.

    `flip`: the step the destination got wrong (a bit flipped in a write, a discard or resize
    missed).
    """
    img = rbd.Img("img", size, parent=parent, parent_snap="snap" if parent else None)
    for k, op in enumerate(ops):
        wrong = k == flip
        if op[0] == "w":
            data = bytes([op[2][0] ^ 0xFF]) + op[2][1:] if wrong else op[2]
            img.write(op[1], data[: max(0, img.head.size - op[1])])
        elif op[0] == "d" and not wrong and op[1] < img.head.size:
            img.discard(op[1], min(op[2], img.head.size - op[1]))
        elif op[0] == "r" and not wrong:
            img.resize(op[1])
        elif op[0] == "s":
            img.snap_create(op[1])
    return img


@pytest.mark.parametrize("clones", [False, True], ids=["images", "clones"])
def test_verify_agrees_with_reading_every_byte_over_random_histories(verify_on_stand_in, clones):
    rng = random.Random(14)
    parent = rbd.Img("parent", 8 * OBJ)
    parent.write(0, bytes(rng.randrange(1, 255) for _ in range(8 * OBJ)))
    parent.snap_create("snap")
    differ = 0
    for _ in range(150):
        size = rng.randrange(1, 6 * OBJ)
        ops = _history(rng, size)
        flip = rng.randrange(len(ops)) if rng.random() < 0.5 else None
        src = _play(ops, size, parent if clones else None, None)
        dst = _replayed(_play(ops, size, parent if clones else None, flip))
        dst.parent = src.parent
        truth = _truth(src, dst)
        found = verify_on_stand_in([src], [dst], "img")
        differ += bool(truth)
        assert (found is None) == (not truth), (ops, flip, truth, found)
        if found is not None and found.offset is not None:
            assert (found.snapshot, found.offset) == truth[0], (ops, flip)
    assert differ > 10, "the histories must include real differences"


def test_handles_are_opened_in_batches_and_all_closed_even_when_a_snapshot_fails(
    verify_on_stand_in, monkeypatch
):
    images = []
    for n in range(5):
        img = rbd.Img(f"i{n}", 2 * OBJ)
        for k in range(4):
            img.write((k % 2) * OBJ, bytes([k + 1]) * 8)
            img.snap_create(f"s{k}")
        images.append(img)
    images[3].fail_open_snap.add("s2")
    rbd.OPENS.clear()
    rbd.PEAK[0] = 0
    monkeypatch.setattr(sys.modules["rbd_digest"], "MAX_OPEN", 6)  # 5 handles per image
    side = verify_on_stand_in.Side(images)
    got = side.image_digests("p", [i.name for i in images], chunk=OBJ)
    assert set(got.failed) == {"i3"} and "cannot open snapshot s2" in got.failed["i3"]
    assert sorted(got.images) == ["i0", "i1", "i2", "i4"]
    assert len(rbd.OPENS) == 5 * 5 - 2 and all(h.closed for h in rbd.OPENS)
    assert rbd.PEAK[0] == 10, "two images at a time: the batch is full after the second"


def test_a_sample_reads_only_the_head(verify_on_stand_in):
    img = rbd.Img("img", 4 * OBJ)
    img.write(0, b"x" * (4 * OBJ))
    img.snap_create("s1")
    side = verify_on_stand_in.Side([img])
    got = side.image_digests("p", ["img"], chunk=OBJ, sample=2, seed="s")
    layers = got.images["img"].layers
    assert [x.snap for x in layers] == [""] and len(layers[0].chunks) == 2
