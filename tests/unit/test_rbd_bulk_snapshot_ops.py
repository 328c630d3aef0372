"""rbd_bulk's snapshot-mode promote and copy rewind against a stand-in for python3-rbd.

The real functions run; only librbd's `Image` and the ioctx are replaced. Each "not yet" of
`_promote_demoted` must stay a `pending: ` ValueError (the cutover retries those, and ends on
anything else), and the demotion copy's progress must read "object N of M" (how the cutover
tells a stalled copy). `_rewind_copy_progress` must step an interrupted copy back one object
through cls_rbd, and touch nothing else; the daemon unit's pre-start step must do that on
every pool in image mode and keep the daemon from starting when anything is unread.
"""

from __future__ import annotations

import importlib
import struct
import sys
import types

import pytest

PENDING = "pending: "
NON_PRIMARY, NON_PRIMARY_DEMOTED, MIRROR_NS = 2, 3, 3


class Error(Exception):
    """librbd's base error."""


class ReadOnlyImage(Error):  # noqa: N818 (librbd's name)
    """EROFS: the daemon holds the image."""


class ImageBusy(Error):  # noqa: N818 (librbd's name)
    """EBUSY."""


class ImageNotFound(Error):  # noqa: N818 (librbd's name)
    """ENOENT."""


class PermissionError_(Error):  # noqa: N801, N818 (librbd's PermissionError)
    """EPERM."""


class RadosError(Exception):
    """librados' base error."""


class ObjectNotFound(RadosError):  # noqa: N818 (librados' name)
    """ENOENT: a pool deleted meanwhile."""


class FakeImage:
    """One non-primary, snapshot-mirrored image whose newest mirror snapshot is `newest`."""

    def __init__(self, newest: dict, *, stat_error: bool = False, objects: int = 128):
        self.newest, self.stat_error, self.objects = newest, stat_error, objects
        self.promoted = False
        self.watchers: list[dict] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def mirror_image_get_info(self):
        return {"state": 1, "primary": False}

    def mirror_image_get_mode(self):
        return 1

    def list_snaps(self):
        return [{"id": 7, "namespace": MIRROR_NS}]

    def snap_get_mirror_namespace(self, snap_id):
        return self.newest

    def stat(self):
        if self.stat_error:
            raise Error("RBD I/O error (refresh failed)")
        return {"num_objs": self.objects}

    def mirror_image_promote(self, force):
        self.promoted = True

    def id(self):
        return "abc123"

    def watchers_list(self):
        return iter(self.watchers)


class FakeIoctx:
    """Records cls calls."""

    def __init__(self):
        self.executed: list[tuple] = []

    def execute(self, oid, cls, method, data):
        self.executed.append((oid, cls, method, data))
        return 0, b""


class _Binding(types.SimpleNamespace):
    """A module stand-in: the names set here, and any other constant as its own name."""

    def __getattr__(self, name: str) -> str:
        return name


@pytest.fixture
def bulk(monkeypatch):
    """rbd_bulk imported with stand-ins for rados and rbd."""
    rbd = _Binding(
        Error=Error, ReadOnlyImage=ReadOnlyImage, ImageBusy=ImageBusy, Image=None,
        ImageNotFound=ImageNotFound, PermissionError=PermissionError_, RBD=None,
        RBD_MIRROR_MODE_DISABLED=0, RBD_MIRROR_MODE_IMAGE=1, RBD_MIRROR_MODE_POOL=2,
        RBD_MIRROR_IMAGE_ENABLED=1, RBD_MIRROR_IMAGE_MODE_SNAPSHOT=1,
        RBD_SNAP_NAMESPACE_TYPE_MIRROR=MIRROR_NS,
        RBD_SNAP_MIRROR_STATE_NON_PRIMARY_DEMOTED=NON_PRIMARY_DEMOTED,
        RBD_SNAP_MIRROR_STATE_NON_PRIMARY=NON_PRIMARY,
    )  # fmt: skip
    monkeypatch.setitem(sys.modules, "rbd", rbd)
    rados = _Binding(
        Error=RadosError, ObjectNotFound=ObjectNotFound,
        Rados=None,
    )  # fmt: skip
    monkeypatch.setitem(sys.modules, "rados", rados)
    monkeypatch.delitem(sys.modules, "rbd_bulk", raising=False)
    module = importlib.import_module("rbd_bulk")
    yield module
    sys.modules.pop("rbd_bulk", None)


def _promote(bulk, image: FakeImage) -> str:
    bulk.rbd.Image = lambda ioctx, name: image
    return bulk._promote_demoted(None, "volume-big")


def test_a_demotion_still_copying_is_pending_with_its_object_count(bulk):
    image = FakeImage({"state": NON_PRIMARY_DEMOTED, "complete": False,
                       "last_copied_object_number": 63})  # fmt: skip
    with pytest.raises(ValueError, match=f"^{PENDING}.*still being copied: object 63 of 128$"):
        _promote(bulk, image)
    assert not image.promoted


def test_a_refresh_that_fails_while_counting_is_still_pending_not_an_error(bulk):
    """Review finding: `stat()` refreshes the image, and that can fail as the copy ends."""
    image = FakeImage(
        {"state": NON_PRIMARY_DEMOTED, "complete": False, "last_copied_object_number": 5},
        stat_error=True,
    )
    with pytest.raises(ValueError, match=f"^{PENDING}.*still being copied: object 5$"):
        _promote(bulk, image)


def test_an_image_grown_on_the_source_names_the_object_alone(bulk):
    image = FakeImage({"state": NON_PRIMARY_DEMOTED, "complete": False,
                       "last_copied_object_number": 150})  # fmt: skip
    with pytest.raises(ValueError, match="object 150$"):
        _promote(bulk, image)


def test_a_binding_without_the_copy_counter_reads_object_zero(bulk):
    image = FakeImage({"state": NON_PRIMARY_DEMOTED, "complete": False})
    with pytest.raises(ValueError, match="object 0 of 128$"):
        _promote(bulk, image)


def test_a_demotion_copied_whole_is_promoted(bulk):
    image = FakeImage({"state": NON_PRIMARY_DEMOTED, "complete": True})
    assert _promote(bulk, image) == "promoted" and image.promoted


def test_the_daemon_holding_the_image_is_pending(bulk):
    image = FakeImage({"state": NON_PRIMARY_DEMOTED, "complete": True})

    def held(force):
        raise ReadOnlyImage("[errno 30] RBD read-only image")

    image.mirror_image_promote = held  # type: ignore[method-assign]
    with pytest.raises(ValueError, match=f"^{PENDING}the daemon still holds it"):
        _promote(bulk, image)


def _rewind(bulk, image: FakeImage) -> tuple[str, list]:
    bulk.rbd.Image = lambda ioctx, name, read_only=False: image
    ioctx = FakeIoctx()
    return bulk._rewind_copy_progress(ioctx, "volume-big"), ioctx.executed


@pytest.mark.parametrize("state", [NON_PRIMARY, NON_PRIMARY_DEMOTED])
def test_an_interrupted_copy_steps_back_one_object_through_cls_rbd(bulk, state):
    image = FakeImage({"state": state, "complete": False, "last_copied_object_number": 3})
    answer, executed = _rewind(bulk, image)
    assert answer == "rewound to 2"
    assert executed == [(
        "rbd_header.abc123", "rbd", "mirror_image_snapshot_set_copy_progress",
        struct.pack("<QBQ", 7, 0, 2),
    )]  # fmt: skip


@pytest.mark.parametrize(
    "newest",
    [{"state": NON_PRIMARY, "complete": True, "last_copied_object_number": 128},
     {"state": NON_PRIMARY, "complete": False, "last_copied_object_number": 0},
     {"state": NON_PRIMARY, "complete": False}],
)  # fmt: skip
def test_a_copy_complete_or_not_started_is_left_alone(bulk, newest):
    assert _rewind(bulk, FakeImage(newest)) == ("", [])


def test_a_primary_image_is_left_alone(bulk):
    image = FakeImage({"state": NON_PRIMARY, "complete": False, "last_copied_object_number": 3})
    image.mirror_image_get_info = lambda: {"state": 1, "primary": True}  # type: ignore[method-assign]
    assert _rewind(bulk, image) == ("", [])


def test_a_watched_image_is_rewound_all_the_same(bulk):
    """A killed daemon's watch outlives it by up to 30 s: not a sign of another daemon."""
    image = FakeImage({"state": NON_PRIMARY, "complete": False, "last_copied_object_number": 3})
    image.watchers = [{"addr": "127.0.0.1:0/1", "id": 4242, "cookie": 1}]
    assert _rewind(bulk, image)[0] == "rewound to 2"


def test_an_image_gone_meanwhile_has_nothing_to_rewind(bulk):
    def gone(ioctx, name, read_only=False):
        raise ImageNotFound("[errno 2] RBD image not found")

    bulk.rbd.Image = gone
    assert bulk._rewind_copy_progress(FakeIoctx(), "volume-gone") == ""


# --- the daemon unit's pre-start step: every pool in image mode ---------------------------


class FakePool(FakeIoctx):
    """A pool's ioctx: its mirror mode (or the error reading it) and its images."""

    def __init__(self, mode, images: dict[str, FakeImage], error: Exception | None = None):
        super().__init__()
        self.mode, self.images, self.error = mode, images, error

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class FakeCluster:
    """`open_ioctx` over `pools` (None: a pool deleted)."""

    def __init__(self, pools: dict[str, FakePool | None]):
        self.pools = pools

    def open_ioctx(self, name):
        pool = self.pools[name]
        if pool is None:
            raise ObjectNotFound(f"pool {name}")
        return pool


class FakeRBD:
    def mirror_mode_get(self, ioctx):
        if ioctx.error is not None:
            raise ioctx.error
        return ioctx.mode

    def list(self, ioctx):
        return list(ioctx.images)


def _interrupted(copied: int = 3) -> FakeImage:
    return FakeImage(
        {"state": NON_PRIMARY, "complete": False, "last_copied_object_number": copied}
    )


@pytest.fixture
def cluster(bulk, monkeypatch):
    """Pools as the pre-start step finds them.

    Snapshot-mirrored `glance` with one interrupted copy, journal-mirrored `nova` (pool mode)
    with an image that would look interrupted, `gone` deleted.
    """
    pools = {
        "glance": FakePool(1, {"img-a": _interrupted(), "img-b": FakeImage({"complete": True})}),
        "nova": FakePool(2, {"disk": _interrupted()}),
        "gone": None,
    }
    fake = FakeCluster(pools)
    bulk.rbd.RBD = FakeRBD
    bulk.rbd.Image = lambda ioctx, name, read_only=False: ioctx.images[name]
    return fake


def test_pre_start_rewinds_every_image_mode_pool_and_nothing_in_pool_mode(bulk, cluster):
    answer = bulk._rewind_before_start(cluster, ["glance", "nova", "gone"], workers=2)
    assert answer == {"changed": {"glance/img-a": "rewound to 2"}, "failed": {}}
    assert len(cluster.pools["glance"].executed) == 1
    assert cluster.pools["nova"].executed == [], "journal mirroring has no snapshot copies"


def test_pre_start_touches_only_the_migrated_pools(bulk, cluster):
    """Another pool in image mode (another mirroring on the destination) is not ours."""
    cluster.pools["other"] = FakePool(1, {"theirs": _interrupted()})
    answer = bulk._rewind_before_start(cluster, ["glance"], workers=2)
    assert answer["changed"] == {"glance/img-a": "rewound to 2"}
    assert cluster.pools["other"].executed == []


@pytest.mark.parametrize("error", [Error("[errno 5] EIO"), PermissionError_("[errno 1] EPERM")])
def test_pre_start_fails_when_a_migrated_pool_cannot_be_read(bulk, cluster, error):
    cluster.pools["cinder-ceph"] = FakePool(None, {}, error=error)
    answer = bulk._rewind_before_start(cluster, ["cinder-ceph", "glance"], workers=2)
    assert list(answer["failed"]) == ["cinder-ceph"]
    assert answer["changed"] == {"glance/img-a": "rewound to 2"}, "the other pools all the same"


def _run_pre_start(bulk, monkeypatch, answer) -> tuple[int, list]:
    requests = []

    def handle(request):
        requests.append(request)
        return answer

    monkeypatch.setattr(bulk, "handle", handle)
    argv = ["--pre-start", "--cluster", "ceph", "--id", "rbd-mirror.u1", "--workers", "3"]
    argv += ["--pools", "glance,nova"]
    return bulk.main(argv), requests


def test_pre_start_exits_zero_and_names_what_it_rewound(bulk, monkeypatch, capsys):
    rc, requests = _run_pre_start(
        bulk, monkeypatch, {"changed": {"glance/img-a": "rewound to 2"}, "failed": {}}
    )
    assert rc == 0
    assert requests == [{
        "op": "rewind-before-start", "cluster": "ceph", "client_id": "rbd-mirror.u1",
        "connect_timeout": bulk.PRE_START_CONNECT_TIMEOUT_S, "workers": 3,
        "pools": ["glance", "nova"],
    }]  # fmt: skip
    assert "glance/img-a: interrupted snapshot copy rewound to 2" in capsys.readouterr().out


def test_pre_start_exits_non_zero_so_systemd_does_not_start_the_daemon(bulk, monkeypatch, capsys):
    rc, _ = _run_pre_start(bulk, monkeypatch, {"changed": {}, "failed": {"glance/img-a": "EIO"}})
    assert rc == 1
    err = capsys.readouterr().err
    assert "glance/img-a: could not be rewound: EIO" in err and "not starting rbd-mirror" in err


def test_pre_start_that_cannot_reach_the_cluster_exits_with_its_errno(bulk, monkeypatch, capsys):
    class TimedOutError(RadosError):
        errno = 110

    def unreachable(request):
        raise TimedOutError("[errno 110] RADOS timed out")

    monkeypatch.setattr(bulk, "handle", unreachable)
    argv = ["--pre-start", "--cluster", "ceph", "--id", "rbd-mirror.u1", "--pools", "nova"]
    assert bulk.main(argv) == 110
    assert "not starting rbd-mirror: the cluster was not read" in capsys.readouterr().err


def test_pre_start_without_migrated_pools_reads_nothing(bulk, monkeypatch):
    monkeypatch.setattr(bulk, "handle", lambda request: pytest.fail("nothing to read"))
    assert bulk.main(["--pre-start", "--cluster", "ceph", "--id", "x", "--pools", ""]) == 0
