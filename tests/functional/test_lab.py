"""The lab itself: two healthy clusters, the OpenStack seed, idempotent up, clean down."""

from __future__ import annotations

import pytest

from tests.functional.lab import Lab
from tests.functional.lab.procs import pid_alive
from tests.functional.lab.seed import POOLS, images, md5_all, recorded, seed


@pytest.fixture(scope="module")
def lab(lab: Lab) -> Lab:
    """The session's lab, reset to a fresh seed: other modules change both clusters."""
    lab.reset()
    seed(lab.src)
    return lab


def test_both_clusters_are_healthy_and_independent(lab: Lab):
    assert lab.src.health() == "HEALTH_OK"
    assert lab.dst.health() == "HEALTH_OK"
    assert lab.src.fsid != lab.dst.fsid
    assert lab.dst.ceph_json("osd", "pool", "ls") == ["device_health_metrics"]


def test_every_daemon_listens_on_loopback_only(lab: Lab):
    for cluster in (lab.src, lab.dst):
        for daemon in cluster.running_pids():
            addrs = cluster.ceph_json(*_metadata(daemon))
            text = " ".join(str(v) for k, v in addrs.items() if "addr" in k)
            assert "127.0.0.1" in text, (cluster.name, daemon, text)
            for part in text.replace(",", " ").replace("[", " ").split():
                if ":" in part and part.startswith(("v1:", "v2:")):
                    assert part.split(":")[1] == "127.0.0.1", (cluster.name, daemon, part)


def _metadata(daemon: str) -> tuple[str, ...]:
    kind, ident = daemon.split(".")
    return (kind, "metadata", ident) if kind != "mon" else ("mon", "metadata", ident)


def test_seed_has_openstack_layout_with_clone_parent_links(lab: Lab):
    pools = {p["pool_name"]: p for p in lab.src.ceph_json("osd", "pool", "ls", "detail")}
    for pool in POOLS:
        assert "rbd" in pools[pool]["application_metadata"]
    (glance,) = images(lab.src, "glance")
    snaps = lab.src.rbd_json("snap", "ls", f"glance/{glance}")
    assert [s["name"] for s in snaps] == ["snap"]
    assert lab.src.rbd_json("info", f"glance/{glance}@snap")["protected"] == "true"
    disks = images(lab.src, "nova")
    assert len(disks) == 3 and all(d.endswith("_disk") for d in disks)
    for disk in disks:
        parent = lab.src.rbd_json("info", f"nova/{disk}")["parent"]
        assert (parent["pool"], parent["image"], parent["snapshot"]) == ("glance", glance, "snap")
    volumes = images(lab.src, "cinder-ceph")
    assert len(volumes) == 3 and all(v.startswith("volume-") for v in volumes)


def test_seed_records_distinct_md5s_that_match_the_images(lab: Lab):
    sums = recorded(lab.src)
    assert len(sums) == 7
    assert len(set(sums.values())) == 7, "every image, clones included, holds distinct data"
    assert md5_all(lab.src) == sums


def test_second_up_is_a_noop(lab: Lab):
    before = lab.all_pids()
    assert lab.up() is False
    assert lab.all_pids() == before


def test_down_leaves_no_process_and_up_restores_the_data(lab: Lab):
    pids = lab.all_pids()
    assert len(pids) == 6
    lab.down()
    assert not [pid for pid in pids if pid_alive(pid)]
    assert lab.all_pids() == []
    assert lab.up() is True
    assert lab.src.health() == "HEALTH_OK"
    assert md5_all(lab.src) == recorded(lab.src)
