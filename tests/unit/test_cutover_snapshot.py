"""rbd_bulk's `_cutover_snapshot` (rollback's proof) against a small librbd stand-in.

It decides on a read-only handle and opens the image read-write only to change it: these tests
record each open and what was done, for each action and image state. The lab proves the rest
(tests/functional/test_ways_back.py: taken at the cutover, checked by rollback, removed by
teardown).
"""

from __future__ import annotations

import sys
from unittest import mock

import pytest

SNAP = "rbd-mirror-migration-cutover"


class _Image:
    """An image: its snapshots and primary flag; each handle records how it was opened."""

    def __init__(self, primary: bool, snaps: list[str]):
        self.primary, self.snaps, self.opens = primary, list(snaps), []


class _ReadOnlyError(Exception):
    """librbd's ReadOnlyImage (EROFS)."""


class _Handle:
    """rbd.Image over `_Handle.images`: records each open as "ro" or "rw"."""

    images: dict[str, _Image] = {}

    def __init__(self, ioctx, name, read_only=False):
        self.img, self.read_only = self.images[name], read_only
        self.img.opens.append("ro" if read_only else "rw")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def list_snaps(self):
        return [{"name": n, "id": i, "size": 8} for i, n in enumerate(self.img.snaps)]

    def mirror_image_get_info(self):
        return {"primary": self.img.primary}

    def create_snap(self, name):
        if self.read_only or not self.img.primary:
            raise _ReadOnlyError("EROFS")
        self.img.snaps.append(name)

    def remove_snap(self, name):
        if self.read_only:
            raise _ReadOnlyError("EROFS")
        self.img.snaps.remove(name)

    def size(self):
        return 8

    def diff_iterate(self, offset, length, since, cb, **kw):
        return 0


@pytest.fixture
def bulk(monkeypatch):
    rbd = mock.MagicMock()
    rbd.Error = Exception
    rbd.Image = _Handle
    monkeypatch.setitem(sys.modules, "rados", mock.MagicMock())
    monkeypatch.setitem(sys.modules, "rbd", rbd)
    monkeypatch.delitem(sys.modules, "rbd_bulk", raising=False)
    import rbd_bulk

    def run(action: str, **state: _Image) -> dict[str, tuple[str, str]]:
        _Handle.images = dict(state)
        return {n: rbd_bulk._cutover_snapshot(None, n, SNAP, action) for n in state}

    return run


def test_create_snapshots_only_a_primary_image_without_one_opening_read_write_only_then(bulk):
    new, has, secondary = _Image(True, []), _Image(True, [SNAP]), _Image(False, [])
    out = bulk("create", new=new, has=has, secondary=secondary)
    assert out == {"new": ("created", ""), "has": ("", ""), "secondary": ("", "")}
    assert (new.snaps, new.opens) == ([SNAP], ["ro", "rw"])
    assert has.opens == secondary.opens == ["ro"], "no read-write open where nothing changes"


def test_remove_is_idempotent_and_check_names_a_primary_image_without_one(bulk):
    has, gone = _Image(False, [SNAP]), _Image(True, [])
    assert bulk("remove", has=has, gone=gone) == {"has": ("removed", ""), "gone": ("", "")}
    assert has.snaps == [] and gone.opens == ["ro"]
    checked = bulk("check", gone=gone, kept=_Image(True, [SNAP]), other=_Image(False, []))
    assert checked == {"gone": ("", "missing"), "kept": ("", ""), "other": ("", "")}
