"""A stand-in for librbd's Python binding, for unit tests of rbd_digest.py (what verify reads).

Models what verify depends on: objects of OBJ bytes; snapshots with ids and namespaces;
per-object change tracking between snapshots (what fast-diff reports); clones with a parent
overlap per snapshot that only ever shrinks (a shrink cuts it, a later grow does not restore
it); copy-up on the first write to an object the parent backs; and librbd's DiffIterate rule
that the parent is consulted only for a diff from the beginning (DiffIterate.cc:
`if (m_include_parent && from_snap_id == 0)`), so a diff since a snapshot does not report
what the parent stopped backing. `stale_head` models a head whose object map missed a change.
"""

from __future__ import annotations

import itertools

OBJ = 64  # object size (tests use chunk == OBJ)
RBD_SNAP_NAMESPACE_TYPE_USER = 0
RBD_SNAP_NAMESPACE_TYPE_GROUP = 1
RBD_SNAP_NAMESPACE_TYPE_TRASH = 2
RBD_SNAP_NAMESPACE_TYPE_MIRROR = 3

OPENS = []  # every handle opened (to count them)
PEAK = [0]  # the most handles open at once


class Error(Exception):
    """librbd's base error."""


class ImageNotFound(Error):  # noqa: N818 (librbd's name)
    """No such image, snapshot or parent."""


class InvalidArgument(Error):  # noqa: N818 (librbd's name)
    """A diff from a snapshot not older than its end, and the like."""


class State:
    """The image at one point in time: its size, its own objects, its parent overlap."""

    def __init__(self, size, objs, overlap):
        self.size, self.objs, self.overlap = size, dict(objs), overlap


class Img:
    """One image with its history: what the cloud (or rbd-mirror) did to it."""

    _ids = itertools.count(1)

    def __init__(self, name, size, parent=None, parent_snap=None):
        self.name = name
        self.head = State(size, {}, size if parent else 0)
        self.parent, self.parent_snap = parent, parent_snap
        self.snaps = []  # [id, name, ns, State, changed-since-previous-point set]
        self.changed = set()  # objects changed since the last snapshot (any namespace)
        self.fail_open_snap = set()
        self.stale_head = set()  # objects changed behind the object map's back

    # --- content -------------------------------------------------------------------------
    def state(self, snap):
        if snap is None:
            return self.head
        for s in self.snaps:
            if s[1] == snap and s[2] == RBD_SNAP_NAMESPACE_TYPE_USER:
                return s[3]
        raise ImageNotFound(f"snapshot {snap}")

    def read_state(self, st, off, length):
        out = bytearray()
        for pos in range(off, off + length):
            o, i = divmod(pos, OBJ)
            if o in st.objs:
                out.append(st.objs[o][i])
            elif self.parent is not None and pos < st.overlap:
                out += self.parent.read_state(self.parent.state(self.parent_snap), pos, 1)
            else:
                out.append(0)
        return bytes(out)

    def _obj_for_write(self, o):
        st = self.head
        if o not in st.objs:
            base = o * OBJ
            if self.parent is not None and base < st.overlap:  # copyup
                n = min(OBJ, st.overlap - base)
                data = self.parent.read_state(self.parent.state(self.parent_snap), base, n)
                st.objs[o] = bytearray(data + bytes(OBJ - n))
            else:
                st.objs[o] = bytearray(OBJ)
        else:
            st.objs[o] = bytearray(st.objs[o])
        self.changed.add(o)
        return st.objs[o]

    # --- operations (the cloud's) ----------------------------------------------------------
    def write(self, off, data):
        for k, b in enumerate(data):
            o, i = divmod(off + k, OBJ)
            self._obj_for_write(o)[i] = b

    def discard(self, off, length):
        for o in range(off // OBJ, (off + length - 1) // OBJ + 1):
            lo, hi = max(off, o * OBJ), min(off + length, (o + 1) * OBJ)
            covers_parent = self.parent is not None and o * OBJ < self.head.overlap
            if lo == o * OBJ and hi == (o + 1) * OBJ and not covers_parent:
                if o in self.head.objs:
                    del self.head.objs[o]
                    self.changed.add(o)
            elif o in self.head.objs or covers_parent:
                obj = self._obj_for_write(o)
                obj[lo - o * OBJ : hi - o * OBJ] = bytes(hi - lo)

    def resize(self, size):
        st = self.head
        if size < st.size:
            b = size // OBJ
            backed = self.parent is not None and b * OBJ < st.overlap
            if size % OBJ and b not in st.objs and backed:
                self._obj_for_write(b)  # librbd trims the boundary object: a copyup first
            for o in list(st.objs):
                if o * OBJ >= size:
                    del st.objs[o]
                    self.changed.add(o)
                elif (o + 1) * OBJ > size:
                    obj = self._obj_for_write(o)
                    cut = size - o * OBJ
                    obj[cut:] = bytes(OBJ - cut)
            st.overlap = min(st.overlap, size)  # the overlap only ever shrinks
        st.size = size

    def snap_create(self, name, ns=RBD_SNAP_NAMESPACE_TYPE_USER, snap_id=None):
        snap_id = snap_id if snap_id is not None else next(Img._ids)
        frozen = State(
            self.head.size, {o: bytes(b) for o, b in self.head.objs.items()}, self.head.overlap
        )
        self.snaps.append([snap_id, name, ns, frozen, set(self.changed)])
        self.snaps.sort(key=lambda s: s[0])
        self.changed = set()

    # --- what diff_iterate reports -----------------------------------------------------------
    def changed_between(self, since_id, end_id):
        """Objects any write/discard/trim touched after snapshot since_id up to end_id."""
        out = set()
        for s in self.snaps:
            if since_id < s[0] <= end_id:
                out |= s[4]
        if end_id == float("inf"):
            out |= self.changed
        return out - self.stale_head if end_id == float("inf") else out


class Ioctx:
    """A pool: its images by name."""

    def __init__(self, images):
        self.images = {i.name: i for i in images}


class Image:
    """rbd.Image: a handle on the head or on one snapshot."""

    def __init__(self, ioctx, name, snapshot=None, read_only=False):
        if name not in ioctx.images:
            raise ImageNotFound(name)
        self.img = ioctx.images[name]
        if snapshot is not None and snapshot in self.img.fail_open_snap:
            raise Error(f"cannot open snapshot {snapshot}")
        self.snap = snapshot
        self.st = self.img.state(snapshot)
        self.closed = False
        OPENS.append(self)
        PEAK[0] = max(PEAK[0], sum(not h.closed for h in OPENS))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.closed = True

    def size(self):
        return self.st.size

    def list_snaps(self):
        return [
            {"id": s[0], "name": s[1], "namespace": s[2], "size": s[3].size}
            for s in self.img.snaps
        ]

    def _snap_id(self, name):
        if name is None:
            return 0
        for s in self.img.snaps:
            if s[1] == name and s[2] == RBD_SNAP_NAMESPACE_TYPE_USER:
                return s[0]
        raise ImageNotFound(name)

    def read(self, off, length):
        length = max(0, min(length, self.st.size - off))
        return self.img.read_state(self.st, off, length)

    def overlap(self):
        """The bytes of the parent this head or snapshot still shows."""
        if self.img.parent is None:
            raise ImageNotFound("no parent")
        return self.st.overlap

    def get_parent_image_spec(self):
        if self.img.parent is None:
            raise ImageNotFound("no parent")
        return {
            "pool_name": "p",
            "image_name": self.img.parent.name,
            "snap_name": self.img.parent_snap,
        }

    def diff_iterate(
        self, offset, length, from_snapshot, cb, include_parent=True, whole_object=False
    ):
        """Report each object with data (from the start) or changed (since a snapshot)."""
        del whole_object  # the stand-in always reports whole objects
        end_id = float("inf") if self.snap is None else self._snap_id(self.snap)
        from_id = self._snap_id(from_snapshot)
        if from_id >= end_id:
            raise InvalidArgument("from >= end")
        if from_id == 0:
            for o in sorted(self._allocated(include_parent)):
                if o * OBJ < offset + length:
                    cb(o * OBJ, min(OBJ, self.st.size - o * OBJ), True)
            return 0
        before = self.img.state(from_snapshot)
        for o in sorted(self.img.changed_between(from_id, end_id)):
            if o * OBJ >= offset + length:
                continue
            exists = o in self.st.objs
            if exists or o in before.objs:
                cb(o * OBJ, min(OBJ, max(0, self.st.size - o * OBJ)) or OBJ, exists)
        return 0

    def _allocated(self, include_parent: bool) -> set[int]:
        """This handle's own objects, and its parent's allocated ones within the overlap."""
        img, st = self.img, self.st
        found = set(st.objs)
        if include_parent and img.parent is not None and st.overlap:
            parent = img.parent.state(img.parent_snap)
            for o in range(-(-st.overlap // OBJ)):
                if o in parent.objs or img.parent.parent is not None:
                    found.add(o)
        return found
