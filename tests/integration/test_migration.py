"""The packed charm in a real model, deployed as users deploy it: their bundle plus our overlay.

Builds nothing itself: it deploys the artifact `tox -e pack` made (build/*.charm), with
bundles/migration-overlay.yaml on top of a bundle holding ceph-proxy in front of an old cluster
and a new ceph-mon/ceph-osd (cloud.py). Seeds the old cluster with the OpenStack layout, runs
the four actions, and compares md5s of every image on both clusters through `juju exec`.

Needs a Juju controller on a cloud with VMs or LXD VMs able to run Ceph; skipped otherwise
(conftest.py), while the offline checks of the same bundles run in CI (test_overlay.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import shlex
from pathlib import Path

import pytest
import yaml
from pytest_operator.plugin import OpsTest

from tests.integration.cloud import cloud_bundle, clusters_bundle, write_deployment

logger = logging.getLogger(__name__)
APP = "rbd-mirror-migration"
POOLS = ("glance", "nova", "cinder-ceph")
REPO = Path(__file__).resolve().parents[2]


def artifact() -> Path:
    """The charm `tox -e pack` built."""
    found = sorted((REPO / "build").glob("rbd-mirror-migration_*.charm"))
    assert found, "no build/rbd-mirror-migration_*.charm: run `tox -e pack` first"
    return found[-1]


async def juju_exec(ops_test: OpsTest, unit: str, command: str) -> str:
    """Run a shell command as root on `unit` with `juju exec`; fail the test on error."""
    # stderr (Ceph's warnings) stays out of what the caller parses.
    wrapped = f"{{ {command} ; }} 2>/tmp/juju-exec.err"
    rc, out, err = await ops_test.juju("exec", "--unit", unit, "--", "sh", "-c", wrapped)
    assert rc == 0, f"{unit}: {command}: {err or out}"
    return out.strip()


async def run_action(ops_test: OpsTest, action: str, **params) -> dict:
    """Run an action on the leader of our application and return its results."""
    assert ops_test.model is not None
    for unit in ops_test.model.applications[APP].units:
        if await unit.is_leader_from_status():
            result = await (await unit.run_action(action, **params)).wait()
            assert result.status == "completed", result.results
            return result.results
    raise AssertionError(f"no leader unit of {APP}")


async def md5s(ops_test: OpsTest, unit: str) -> dict[str, str]:
    """md5 of every image of the OpenStack pools, read on `unit` with its admin key."""
    out = {}
    for pool in POOLS:
        listed = await juju_exec(ops_test, unit, f"rbd ls {pool} --format json")
        for image in json.loads(listed or "[]"):
            name = shlex.quote(f"{pool}/{image}")
            line = await juju_exec(ops_test, unit, f"rbd export {name} - | md5sum")
            out[f"{pool}/{image}"] = line.split()[0]
    return out


async def deploy_bundle(ops_test: OpsTest, bundle: Path, *overlays: Path) -> None:
    args = ["deploy", str(bundle), *(a for o in overlays for a in ("--overlay", str(o)))]
    rc, out, err = await ops_test.juju(*args)
    assert rc == 0, f"juju {' '.join(args)}: {err or out}"


@pytest.mark.abort_on_fail
async def test_deploy_the_users_bundle_with_the_overlay(ops_test: OpsTest, tmp_path: Path):
    """The clusters first (ceph-proxy needs the old one's fsid and key), then the overlay."""
    model = ops_test.model
    assert model is not None
    clusters = tmp_path / "clusters.yaml"
    clusters.write_text(yaml.safe_dump(clusters_bundle()))
    await deploy_bundle(ops_test, clusters)
    await model.wait_for_idle(
        apps=["src-mon", "src-osd", "ceph-mon", "ceph-osd"], status="active", timeout=3600
    )
    src = "src-mon/0"
    fsid = await juju_exec(ops_test, src, "ceph fsid")
    key = await juju_exec(ops_test, src, "ceph auth get-key client.admin")
    monmap = json.loads(await juju_exec(ops_test, src, "ceph mon dump --format json"))
    monitors = " ".join(m["addr"].split("/")[0] for m in monmap["mons"])  # "ip:6789/0"
    cloud, overlay = write_deployment(
        tmp_path / "deploy", cloud_bundle(fsid, key, monitors), artifact()
    )
    await deploy_bundle(ops_test, cloud, overlay)

    # The old cluster holds the cloud: glance image + protected snap, nova clone, a volume.
    for pool in POOLS:
        await juju_exec(ops_test, src, f"ceph osd pool create {pool} 8 && rbd pool init {pool}")
    await juju_exec(
        ops_test,
        src,
        "rbd create --size 64M glance/img && "
        "rbd bench --io-type write --io-total 32M glance/img && "
        "rbd snap create glance/img@snap && rbd snap protect glance/img@snap && "
        "rbd clone glance/img@snap nova/vm0_disk && "
        "rbd bench --io-type write --io-total 8M nova/vm0_disk && "
        "rbd create --size 32M cinder-ceph/volume-0 && "
        "rbd bench --io-type write --io-total 16M cinder-ceph/volume-0",
    )
    await model.wait_for_idle(apps=[APP, "ceph-proxy"], status="active", timeout=1800)


async def test_the_four_actions_migrate_every_byte(ops_test: OpsTest):
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
