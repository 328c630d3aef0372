"""The librbd helper's teardown operations on a real cluster: clone order and idempotence.

Teardown uses them only after a fault (a pool that refuses the pool-wide disable, journaling
left behind), so the migration tests may not reach them; these tests call them directly.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.functional.lab import Lab

HELPER = Path(__file__).resolve().parents[2] / "src" / "rbd_bulk.py"
POOL = "bulk-ops"


def bulk(lab: Lab, **request) -> dict:
    """One rbd_bulk.py request as client.admin on the source cluster."""
    request = {
        "cluster": lab.src.name,
        "client_id": "admin",
        "conffile": str(lab.src.conf),
        "pool": POOL,
        "workers": 4,
        **request,
    }
    proc = subprocess.run(
        ["/usr/bin/python3", str(HELPER)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(proc.stdout)


@pytest.fixture
def clone_pool(lab: Lab) -> Iterator[Lab]:
    """An image-mode pool: journaled parent and clone, both mirrored; a journaled `plain`."""
    lab.src.ceph("osd", "pool", "create", POOL, "8", "8")
    lab.src.rbd("pool", "init", POOL)
    try:
        features = ["--image-feature", "layering,exclusive-lock,journaling"]
        lab.src.rbd("create", f"{POOL}/base", "--size", "8M", *features)
        lab.src.rbd("snap", "create", f"{POOL}/base@s")
        lab.src.rbd("snap", "protect", f"{POOL}/base@s")
        lab.src.rbd("clone", f"{POOL}/base@s", f"{POOL}/child", *features)
        lab.src.rbd("create", f"{POOL}/plain", "--size", "8M", *features)
        lab.src.rbd("mirror", "pool", "enable", POOL, "image")
        for name in ("base", "child"):
            lab.src.rbd("mirror", "image", "enable", f"{POOL}/{name}", "journal")
        yield lab
    finally:
        lab.src.ceph("osd", "pool", "rm", POOL, POOL, "--yes-i-really-really-mean-it")


def mirroring(lab: Lab, name: str) -> str:
    """The image's mirroring state as `rbd info` shows it (no `mirroring` key: disabled)."""
    info = lab.src.rbd_json("info", f"{POOL}/{name}")
    return info.get("mirroring", {}).get("state", "disabled")


def test_mirroring_is_disabled_clone_depth_by_depth_and_a_parent_first_is_refused(clone_pool):
    lab = clone_pool
    wrong = bulk(lab, op="disable-mirroring", levels=[["base"], ["child"]])
    assert wrong["changed"] == [] and "base" in wrong["failed"], wrong
    assert "child" not in wrong["failed"], "the helper stops after the first failed depth"
    assert mirroring(lab, "base") == mirroring(lab, "child") == "enabled"

    right = bulk(lab, op="disable-mirroring", levels=[["child"], ["base"]])
    assert right == {"changed": ["child", "base"], "failed": {}}
    assert mirroring(lab, "base") == mirroring(lab, "child") == "disabled"
    again = bulk(lab, op="disable-mirroring", levels=[["child"], ["base"]])
    assert again == {"changed": [], "failed": {}}, "a re-run changes nothing"


def test_journaling_is_removed_once_and_a_rerun_changes_nothing(clone_pool):
    lab = clone_pool
    # librbd drops journaling itself when it disables an image's mirroring ...
    bulk(lab, op="disable-mirroring", levels=[["child"], ["base"]])
    for name in ("base", "child"):
        assert "journaling" not in lab.src.rbd_json("info", f"{POOL}/{name}")["features"]
    # ... so the helper's own removal is for what is left: a journaled image not mirrored.
    first = bulk(lab, op="disable-journaling", images=["base", "child", "plain"])
    assert first == {"changed": {"plain": "journaling"}, "failed": {}}
    assert "journaling" not in lab.src.rbd_json("info", f"{POOL}/plain")["features"]
    again = bulk(lab, op="disable-journaling", images=["base", "child", "plain"])
    assert again == {"changed": {}, "failed": {}}


def test_a_pool_holding_images_without_application_rbd_is_flagged(lab: Lab):
    """Review finding: with config pools empty, an untagged RBD pool was left behind silently."""
    untagged, empty = "bulk-untagged", "bulk-empty"
    lab.src.ceph("osd", "pool", "create", untagged, "8", "8")
    lab.src.ceph("osd", "pool", "create", empty, "8", "8")
    try:
        lab.src.rbd("create", f"{untagged}/vol", "--size", "4M")
        apps = lab.src.ceph_json("osd", "pool", "application", "get", untagged)
        assert "rbd" not in apps, f"the pool was tagged after all: {apps}"
        pools = {p["pool_name"]: p for p in bulk(lab, op="pools")["pools"]}
        assert pools[untagged]["holds_rbd_images"] is True
        assert pools[empty]["holds_rbd_images"] is False
        tagged = [p for p in pools.values() if "rbd" in (p.get("application_metadata") or {})]
        assert all("holds_rbd_images" not in p for p in tagged), "tagged pools are not probed"
    finally:
        for name in (untagged, empty):
            lab.src.ceph("osd", "pool", "rm", name, name, "--yes-i-really-really-mean-it")


def test_the_progress_counts_a_clones_own_data_not_its_parents_size(lab: Lab):
    """Waiting nova clones counted their glance parent's whole size as bytes to copy.

    A clone with fast-diff valid for its head and every snapshot counts its objects by its
    object map; any other image counts its size.
    """
    pool = "bulk-sizes"
    lab.src.ceph("osd", "pool", "create", pool, "8", "8")
    lab.src.rbd("pool", "init", pool)
    try:
        lab.src.rbd("create", f"{pool}/base", "--size", "64M")  # Pacific's defaults: fast-diff
        write = ["bench", "--io-type", "write", "--io-pattern", "seq", "--io-threads", "1"]
        lab.src.rbd(*write, "--io-size", "4M", "--io-total", "8M", f"{pool}/base")
        lab.src.rbd("snap", "create", f"{pool}/base@snap")
        lab.src.rbd("snap", "protect", f"{pool}/base@snap")
        lab.src.rbd("clone", f"{pool}/base@snap", f"{pool}/disk")
        lab.src.rbd(*write, "--io-size", "4K", "--io-total", "4K", f"{pool}/disk")  # one object
        bare = ["--image-feature", "layering,exclusive-lock"]
        lab.src.rbd("clone", f"{pool}/base@snap", f"{pool}/bare", *bare)  # no object map
        lab.src.rbd(*write, "--io-size", "4K", "--io-total", "4K", f"{pool}/bare")
        # fast-diff enabled after a snapshot: the head's map is rebuilt, the snapshot's stays
        # invalid, and librbd would stat every object (review)
        lab.src.rbd("clone", f"{pool}/base@snap", f"{pool}/late", *bare)
        lab.src.rbd(*write, "--io-size", "4K", "--io-total", "4K", f"{pool}/late")
        lab.src.rbd("snap", "create", f"{pool}/late@before")
        lab.src.rbd("feature", "enable", f"{pool}/late", "object-map", "fast-diff")
        lab.src.rbd("object-map", "rebuild", f"{pool}/late")
        flags = lab.src.rbd_json("info", f"{pool}/late")["flags"]
        assert "fast diff invalid" not in flags, flags  # the head is valid, as in the cloud
        want = {"base": 64 * 2**20, "disk": 4 * 2**20, "bare": 64 * 2**20, "late": 64 * 2**20}
        assert bulk(lab, pool=pool, op="sizes", images=sorted(want)) == {
            "sizes": want,
            "failed": {},
        }
        found = bulk(lab, pool=pool, op="preflight-images")
        assert {i["name"]: i["size"] for i in found["images"]} == want, found
    finally:
        lab.src.ceph("osd", "pool", "rm", pool, pool, "--yes-i-really-really-mean-it")
