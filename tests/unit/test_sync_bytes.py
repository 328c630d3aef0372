"""rbd_preflight.sync_bytes (the progress's bytes to copy) against a librbd stand-in.

The lab (tests/functional/test_rbd_bulk.py) proves the object-map figures on real Ceph; these
tests force the faults the lab cannot time: a snapshot removed between its listing and its
reading, the head's reset failing.
"""

from __future__ import annotations

import sys
import types
from unittest import mock

import pytest

MIB = 2**20


class Error(Exception):
    """rbd.Error."""


class ImageNotFound(Error):  # noqa: N818 (librbd's name)
    """rbd.ImageNotFound."""


def _stand_in() -> types.SimpleNamespace:
    return types.SimpleNamespace(
        Error=Error,
        ImageNotFound=ImageNotFound,
        RBD_FEATURE_FAST_DIFF=16,
        RBD_FLAG_FAST_DIFF_INVALID=2,
        RBD_SNAP_NAMESPACE_TYPE_USER=0,
    )


class Image:
    """A clone of 64 MiB holding `held` objects of 4 MiB; snapshots by id, their flags."""

    def __init__(self, *, clone=True, held=2, snaps=None, vanished=(), reset_fails=False):
        self.clone, self.held = clone, held
        self.snaps = snaps or {}  # id -> flags
        self.vanished, self.reset_fails = set(vanished), reset_fails
        self.at: int | None = None  # the snapshot open, None: the head

    def size(self):
        return 64 * MIB

    def features(self):
        return 16

    def get_parent_image_spec(self):
        if not self.clone:
            raise ImageNotFound("no parent")
        return {"pool_name": "glance", "image_name": "img", "snap_name": "snap"}

    def list_snaps(self):
        return [{"id": i, "name": f"s{i}"} for i in self.snaps]

    def set_snap_by_id(self, snap_id):
        if snap_id is None and self.reset_fails:
            raise Error("refresh failed")
        if snap_id in self.vanished:
            raise ImageNotFound(f"snapshot {snap_id} removed")
        self.at = snap_id

    def flags(self):
        return 0 if self.at is None else self.snaps[self.at]

    def diff_iterate(self, offset, length, from_snapshot, cb, include_parent, whole_object):
        assert self.at is None, "read at the head"
        assert not include_parent and whole_object
        for n in range(self.held):
            cb(n * 4 * MIB, 4 * MIB, True)
        cb(self.held * 4 * MIB, 4 * MIB, False)


@pytest.fixture
def sync_bytes(monkeypatch):
    monkeypatch.setitem(sys.modules, "rados", mock.MagicMock())
    monkeypatch.setitem(sys.modules, "rbd", _stand_in())
    for name in ("rbd_preflight", "rbd_digest"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    import rbd_preflight

    return rbd_preflight.sync_bytes


def test_a_clone_counts_the_objects_it_holds_and_any_other_image_its_size(sync_bytes):
    assert sync_bytes(Image(held=2)) == 8 * MIB
    assert sync_bytes(Image(clone=False, held=2)) == 64 * MIB


def test_a_snapshot_with_an_invalid_map_makes_the_clone_count_its_size(sync_bytes):
    image = Image(held=2, snaps={7: 0, 8: 2})
    assert sync_bytes(image) == 64 * MIB
    assert image.at is None, "back at the head"


def test_a_snapshot_removed_meanwhile_counts_the_size_instead_of_failing(sync_bytes):
    image = Image(held=2, snaps={7: 0}, vanished={7})
    assert sync_bytes(image) == 64 * MIB
    assert sync_bytes(Image(held=2, snaps={7: 0}, reset_fails=True)) == 64 * MIB
