"""The charm in a real model: ceph-proxy in front of a source, ceph-mon/ceph-osd, four actions.

Deploys a source cluster behind ceph-proxy, a destination ceph-mon/ceph-osd and this charm,
relates them, runs the four actions, then compares md5s on both clusters.

Needs a Juju controller on a cloud with VMs or LXD VMs able to run Ceph (loop-backed OSDs).
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from pytest_operator.plugin import OpsTest

logger = logging.getLogger(__name__)
APP = "rbd-mirror-migration"
POOLS = ("glance", "nova", "cinder-ceph")
ROOT = Path(__file__).resolve().parents[2]


async def ssh(ops_test: OpsTest, unit: str, *cmd: str) -> str:
    """Run a command as root on `unit` and return stdout (fail the test on error)."""
    rc, out, err = await ops_test.juju("ssh", unit, "sudo", *cmd)
    assert rc == 0, f"{unit}: {' '.join(cmd)}: {err}"
    return out.strip()


async def run_action(ops_test: OpsTest, action: str, **params) -> dict:
    """Run an action on our unit and return its results."""
    assert ops_test.model is not None
    unit = ops_test.model.applications[APP].units[0]
    result = await (await unit.run_action(action, **params)).wait()
    assert result.status == "completed", result.results
    return result.results


async def md5s(ops_test: OpsTest, unit: str) -> dict[str, str]:
    """md5 of every image of the OpenStack pools, as seen from `unit`."""
    out = {}
    for pool in POOLS:
        for image in json.loads(await ssh(ops_test, unit, "rbd", "ls", pool, "--format", "json")):
            line = await ssh(ops_test, unit, "sh", "-c", f"rbd export {pool}/{image} - | md5sum")
            out[f"{pool}/{image}"] = line.split()[0]
    return out


@pytest.mark.abort_on_fail
async def test_deploy_and_relate(ops_test: OpsTest):
    """Source cluster + ceph-proxy, destination cluster, this charm, related."""
    charm = await ops_test.build_charm(ROOT)
    model = ops_test.model
    assert model is not None
    await model.deploy(
        "ceph-mon",
        application_name="src-mon",
        num_units=1,
        config={"monitor-count": 1, "expected-osd-count": 1},
    )
    await model.deploy(
        "ceph-osd",
        application_name="src-osd",
        num_units=1,
        storage={"osd-devices": {"size": 8192, "count": 1}},
    )
    await model.deploy(
        "ceph-mon", num_units=1, config={"monitor-count": 1, "expected-osd-count": 1}
    )
    await model.deploy(
        "ceph-osd", num_units=1, storage={"osd-devices": {"size": 8192, "count": 1}}
    )
    await model.integrate("src-osd:mon", "src-mon:osd")
    await model.integrate("ceph-osd:mon", "ceph-mon:osd")
    await model.wait_for_idle(
        apps=["src-mon", "src-osd", "ceph-mon", "ceph-osd"], status="active", timeout=3600
    )
    src_unit = "src-mon/0"
    fsid = await ssh(ops_test, src_unit, "ceph", "fsid")
    key = await ssh(ops_test, src_unit, "ceph", "auth", "get-key", "client.admin")
    addr = await ssh(ops_test, src_unit, "sh", "-c", "hostname -I | cut -d' ' -f1")
    await model.deploy(
        "ceph-proxy", config={"fsid": fsid, "admin-key": key, "monitor-hosts": f"{addr}:6789"}
    )
    await model.deploy(charm, application_name=APP)  # its own machine: no foreign ceph.conf
    await model.integrate(f"{APP}:source", "ceph-proxy:client")
    await model.integrate(f"{APP}:destination", "ceph-mon:rbd-mirror")
    for pool in POOLS:
        await ssh(ops_test, src_unit, "ceph", "osd", "pool", "create", pool, "8")
        await ssh(ops_test, src_unit, "rbd", "pool", "init", pool)
    await ssh(ops_test, src_unit, "rbd", "create", "--size", "64M", "glance/img")
    await ssh(
        ops_test, src_unit, "rbd", "bench", "--io-type", "write", "--io-total", "32M", "glance/img"
    )
    await ssh(ops_test, src_unit, "rbd", "snap", "create", "glance/img@snap")
    await ssh(ops_test, src_unit, "rbd", "snap", "protect", "glance/img@snap")
    await ssh(ops_test, src_unit, "rbd", "clone", "glance/img@snap", "nova/vm0_disk")
    await ssh(ops_test, src_unit, "rbd", "create", "--size", "32M", "cinder-ceph/volume-0")
    await model.wait_for_idle(apps=[APP], status="active", timeout=1800)


async def test_four_actions_migrate_every_byte(ops_test: OpsTest):
    """enable-mirroring, status until ready, demote-promote, teardown; md5s equal."""
    before = await md5s(ops_test, "src-mon/0")
    await run_action(ops_test, "enable-mirroring")
    status: dict = {}
    for _ in range(120):
        status = await run_action(ops_test, "status")
        if status["ready-for-cutover"] == "true":
            break
        await asyncio.sleep(10)
    assert status["ready-for-cutover"] == "true", status
    await run_action(ops_test, "demote-promote")
    result = await run_action(ops_test, "teardown")
    assert result["daemon-stopped"] == "true"
    assert await md5s(ops_test, "ceph-mon/0") == before
