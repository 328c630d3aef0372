"""The whole migration through the charm's own handlers, on two real Ceph clusters."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.functional.charm_host import CharmHost
from tests.functional.lab.seed import POOLS, images, md5_all, recorded

SYNC_TIMEOUT_S = 420


def test_full_migration_keeps_every_byte_and_leaves_no_mirroring(fresh_host: CharmHost):
    host = fresh_host
    lab = host.lab

    # Relations: the charm sends unique_id and a broker request; ceph-mon creates the pools.
    host.hook("install")
    host.hook("relation_changed", "source")
    host.hook("relation_changed", "destination")
    assert host.state.unit_status.name == "waiting"
    sent = host.relation("destination").local_unit_data
    assert sent["unique_id"] == host.unique_id
    ops = json.loads(sent["broker_req"])["ops"]
    assert sorted(op["name"] for op in ops) == sorted(POOLS)
    host.play_remote_charms()
    assert host.broker_response()["exit-code"] == 0
    assert host.broker_response("source")["exit-code"] == 0
    for pool in POOLS:
        assert pool in lab.dst.ceph("osd", "pool", "ls").split()
    etc = Path("/etc/ceph")
    for keyring in etc.glob("*.keyring"):
        assert keyring.stat().st_mode & 0o777 == 0o600
    secret = host.relation("source").remote_units_data[0]["key"]
    assert secret not in (etc / "source.conf").read_text()
    assert lab.service_pids(), "the charm started the rbd-mirror daemon"
    assert host.state.unit_status.name == "active", host.state.unit_status
    assert "run enable-mirroring" in host.state.unit_status.message

    # Dry run changes nothing.
    results, _ = host.action("enable-mirroring", **{"dry-run": True})
    assert results["changes"] > 0
    assert lab.src.rbd_json("mirror", "pool", "info", "nova")["mode"] == "disabled"

    results, logs = host.action("enable-mirroring")
    assert results["images"] == 7
    assert results["source-key-can-blocklist"] == "true", "ceph-proxy applied our caps request"
    assert logs
    again, _ = host.action("enable-mirroring")
    assert again["changes"] == 0, "a second enable-mirroring changes nothing"

    deadline = time.monotonic() + SYNC_TIMEOUT_S
    while True:
        results, _ = host.action("status", verbose=True)
        if results["ready-for-cutover"] == "true":
            break
        assert time.monotonic() < deadline, f"not ready after {SYNC_TIMEOUT_S}s: {results}"
        time.sleep(5)
    assert results["daemon-errors"] == "[]", "the daemon's own report, read from the mgr"
    assert results["source-release"].startswith(lab.src.version())
    assert results["destination-release"].startswith(lab.dst.version())
    assert results["daemon-release"].startswith(lab.dst.version()), "the unit's own rbd-mirror"
    assert results["unit-tools-release"].startswith(f"rbd {lab.dst.version()}")
    assert results["release-support"] == "proven in the lab"
    host.hook("update_status")
    assert "ready for cutover" in host.state.unit_status.message

    results, _ = host.action("demote-promote", timeout=120)
    assert sum(json.loads(results["promoted"]).values()) == 7
    again, _ = host.action("demote-promote", timeout=60)
    assert sum(json.loads(again["promoted"]).values()) == 0, "re-run is a no-op"

    results, _ = host.action("teardown")
    assert results["daemon-stopped"] == "true"
    # ceph-mon's rbd-mirror key may be refused `peer remove`: the omap path is then taken.
    by_omap = json.loads(results["peers-removed-by-omap"])
    print(f"\nteardown: peers removed by omap: {len(by_omap)} of {len(POOLS)}")
    assert "remove-relation" in results["next-steps"]

    # Proof: data, clone links, no mirroring or journaling left, no daemon.
    seeded, arrived = recorded(lab.src), md5_all(lab.dst)
    equal = sum(arrived.get(name) == digest for name, digest in seeded.items())
    assert arrived == seeded
    print(
        f"\nrelease-pair source={lab.src.version()} destination={lab.dst.version()} "
        f"images={len(seeded)} md5-equal={equal} ok"
    )
    (glance,) = images(lab.dst, "glance")
    for disk in images(lab.dst, "nova"):
        parent = lab.dst.rbd_json("info", f"nova/{disk}")["parent"]
        assert (parent["pool"], parent["image"], parent["snapshot"]) == ("glance", glance, "snap")
    for pool in POOLS:
        info = lab.dst.rbd_json("mirror", "pool", "info", pool)
        assert info["mode"] == "disabled" and not info.get("peers"), info
        for image in images(lab.dst, pool):
            info = lab.dst.rbd_json("info", f"{pool}/{image}")
            assert "journaling" not in info["features"]
            assert "mirroring" not in info or info["mirroring"]["state"] == "disabled"
    assert lab.service_pids() == {}
    host.hook("update_status")
    assert lab.service_pids() == {}, "a torn-down migration does not restart the daemon"
    assert host.state.unit_status.message.startswith("torn down")
