"""The charm as the Juju agent runs it: `./dispatch` per hook and action, on the lab.

Each test unit is the charm laid out as the artifact has it (on Python 3.12, the declared base
ubuntu@24.04's: the `.charm` that `tox -e pack` built; on Python 3.10, the oldest ops 3 runs
on, as an extra check: the same layout from this checkout with a venv built by 3.10), talking
to a stand-in Juju only through hook tools (tests/dispatch/hooktool.py) and running the real
rbd-mirror through the stand-in systemctl. The remote charms are played from what the units
publish (juju_standin.py).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dispatch.unit_dir import Unit, build_venv, required_artifact, required_python
from tests.functional.juju_standin import (
    Model,
    as_json,
    config_defaults,
    expect_ok,
    last_status,
    results,
)
from tests.functional.lab import Lab
from tests.functional.lab.procs import pid_alive, read_pid, wait_for
from tests.functional.lab.seed import POOLS, images, md5_all, recorded, seed

SYNC_TIMEOUT_S = 420
THROTTLE = "rbd_mirror_image_policy_migration_throttle"
HOOK_LIMIT_S = 30  # update-status runs every 5 minutes: a hook must never come near that
BASES = {"3.10": "tree layout, venv by 3.10", "3.12": "ubuntu@24.04: the .charm"}


@pytest.fixture
def seeded_lab(charm_host_env: Lab) -> Iterator[Lab]:
    """A freshly seeded source and an empty destination; the daemons stopped afterwards."""
    lab = charm_host_env
    lab.reset()
    seed(lab.src)
    yield lab
    lab.stop_services()


def _model(lab: Lab, tmp_path: Path, version: str) -> Model:
    python = required_python(version)
    if version == "3.12":
        return Model(lab, tmp_path, python, tmp_path / "unused", artifact=required_artifact())
    return Model(lab, tmp_path, python, build_venv(python), artifact=None)


def _wait_ready(unit: Unit, timeout: float = SYNC_TIMEOUT_S) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        expect_ok(unit.action("status"))
        got = results(unit)
        if got["ready-for-cutover"] == "true":
            return got
        assert time.monotonic() < deadline, f"not ready after {timeout}s: {got}"
        time.sleep(5)


def _durations(unit: Unit, label: str) -> None:
    by_name: dict[str, list[float]] = {}
    for run in unit.runs:
        by_name.setdefault(run.name, []).append(run.seconds)
    for name, seconds in by_name.items():
        print(
            f"dispatch {label} {name}: {len(seconds)} run(s), "
            f"max {max(seconds):.2f} s, mean {sum(seconds) / len(seconds):.2f} s"
        )


@pytest.mark.parametrize("version", sorted(BASES))
def test_the_whole_migration_runs_through_dispatch_with_every_byte_kept(
    seeded_lab: Lab, tmp_path: Path, version: str
):
    lab = seeded_lab
    model = _model(lab, tmp_path, version)
    unit = model.add_unit()

    model.deploy(unit)
    assert last_status(unit) == {
        "status": "blocked",
        "message": "Missing relation: source (relate to ceph-proxy:client)",
    }

    # What the charm publishes, and what it makes of the remote charms' real answers.
    model.relate(unit)
    sent = unit.relations()
    assert json.loads(sent["source:1"]["local"]["broker_req"])["ops"][0]["op"] == (
        "set-key-permissions"
    )
    dst_sent = sent["destination:2"]["local"]
    assert dst_sent["unique_id"] and dst_sent["unit-name"] == unit.name
    requested = sorted(op["name"] for op in json.loads(dst_sent["broker_req"])["ops"])
    assert requested == sorted(POOLS)
    for pool in POOLS:
        assert pool in lab.dst.ceph("osd", "pool", "ls").split(), "ceph-mon made the pool"
    assert lab.service_pids(), "the charm started rbd-mirror through systemctl"
    status = last_status(unit)
    assert status["status"] == "active" and "run enable-mirroring" in status["message"], status
    for keyring in unit.etc_ceph.glob("*.keyring"):
        assert keyring.stat().st_mode & 0o777 == 0o600, keyring

    # Bad input through Juju's own path: action-fail, rc 0, nothing changed.
    expect_ok(unit.action("enable-mirroring", {"pools": "nova,no-such-pool"}))
    assert "no-such-pool" in (unit.failure() or "")
    assert lab.src.rbd_json("mirror", "pool", "info", "nova")["mode"] == "disabled"

    expect_ok(unit.action("enable-mirroring", timeout=300))
    assert results(unit)["images"] == "7" and unit.action_logs(), "progress lines"
    ready = _wait_ready(unit)
    assert as_json(ready["daemon-errors"]) == []
    expect_ok(unit.hook("update-status"))
    assert "ready for cutover" in last_status(unit)["message"]

    # A cluster that does not answer: every hook stays short.
    mon = read_pid(lab.src.pid_file("mon.a"))
    assert mon is not None
    os.kill(mon, signal.SIGTERM)
    assert wait_for(lambda: not pid_alive(mon), timeout=30)
    try:
        update = unit.hook("update-status")
        expect_ok(update)
        assert "source unreachable" in last_status(unit)["message"], last_status(unit)
        status_run = unit.action("status")
        expect_ok(status_run)
        assert results(unit)["source-reachable"] == "false"
        refused = unit.action("demote-promote")
        expect_ok(refused)
        assert "source unreachable" in (unit.failure() or "")
    finally:
        lab.src.up()
    for run in (update, status_run, refused):
        print(f"dispatch {version} with the source mon down: {run.name} {run.seconds:.1f} s")
        assert run.seconds <= HOOK_LIMIT_S, f"{run.name} took {run.seconds:.1f} s"

    _wait_ready(unit)
    expect_ok(unit.action("demote-promote", timeout=300))
    assert sum(as_json(results(unit)["promoted"]).values()) == 7
    expect_ok(unit.action("teardown", timeout=300))
    done = results(unit)
    assert done["daemon-stopped"] == "true" and "remove-relation" in done["next-steps"]
    expect_ok(unit.hook("update-status"))
    assert last_status(unit)["message"].startswith("torn down"), last_status(unit)

    assert md5_all(lab.dst) == recorded(lab.src)
    for pool in POOLS:
        assert lab.dst.rbd_json("mirror", "pool", "info", pool)["mode"] == "disabled"
        for image in images(lab.dst, pool):
            assert "journaling" not in lab.dst.rbd_json("info", f"{pool}/{image}")["features"]

    # Leaving: the relations removed, then the unit; nothing of ours left in /etc/ceph.
    model.remove_unit(unit)
    assert last_status(unit) == {
        "status": "maintenance",
        "message": "leaving: rbd-mirror stopped and disabled, this unit's files removed",
    }
    assert lab.service_pids() == {}
    assert sorted(p.name for p in unit.etc_ceph.iterdir()) == [], "the charm's files removed"

    _durations(unit, version)
    slow = [r for r in unit.runs if r.name.startswith("hooks/") and r.seconds > HOOK_LIMIT_S]
    assert not slow, [(r.name, round(r.seconds, 1)) for r in slow]


def test_snapshot_mode_runs_through_the_packed_charm_without_journaling_the_source(
    seeded_lab: Lab, tmp_path: Path
):
    """Config mirror-mode=snapshot on the .charm: the pools without clones, by mirror snapshots.

    The source's journaling is sampled on every round of the sync; the charm's own snapshots
    come from update-status where the source's mgr does not schedule them.
    """
    lab = seeded_lab
    pools = ("glance", "cinder-ceph")
    model = _model(lab, tmp_path, "3.12")
    unit = model.add_unit()
    unit.set_config(
        {
            **config_defaults(),
            "mirror-mode": "snapshot",
            "snapshot-interval": "1m",
            "pools": ",".join(pools),
        }
    )
    model.deploy(unit)
    model.relate(unit)

    def journaled() -> list[str]:
        return [
            f"{p}/{i}"
            for p in pools
            for i in images(lab.src, p)
            if "journaling" in lab.src.rbd_json("info", f"{p}/{i}")["features"]
        ]

    expect_ok(unit.action("enable-mirroring", timeout=300))
    enabled = results(unit)
    assert (enabled["mode"], enabled["images"]) == ("snapshot", "4"), enabled
    for pool in pools:
        assert lab.src.rbd_json("mirror", "pool", "info", pool)["mode"] == "image"
    deadline, rounds = time.monotonic() + SYNC_TIMEOUT_S, 0
    while True:
        assert journaled() == [], "snapshot mode journaled a source image"
        rounds += 1
        expect_ok(unit.hook("update-status"))  # the charm's own snapshots, where it takes them
        expect_ok(unit.action("status"))
        got = results(unit)
        if got["ready-for-cutover"] == "true":
            break
        assert time.monotonic() < deadline, f"not ready after {SYNC_TIMEOUT_S}s: {got}"
        time.sleep(5)
    assert {as_json(got["pools"])[p]["mirror-mode"] for p in pools} == {"snapshot"}

    expect_ok(unit.action("demote-promote", timeout=300))
    assert sum(as_json(results(unit)["promoted"]).values()) == 4
    expect_ok(unit.action("teardown", timeout=300))
    assert results(unit)["daemon-stopped"] == "true"

    expected = {k: v for k, v in recorded(lab.src).items() if k.split("/")[0] in pools}
    assert md5_all(lab.dst, pools) == expected
    for pool in pools:
        assert lab.dst.rbd_json("mirror", "pool", "info", pool)["mode"] == "disabled"
        for image in images(lab.dst, pool):
            snaps = lab.dst.rbd_json("snap", "ls", "--all", f"{pool}/{image}")
            assert not [s for s in snaps if s.get("namespace", {}).get("type") == "mirror"]
    assert journaled() == []
    print(f"dispatch snapshot mode: {len(expected)} images md5-equal, sampled {rounds} round(s)")
    _durations(unit, "3.12 snapshot")


def _daemon_of_each_image(lab: Lab) -> dict[str, str]:
    """`pool/image` -> host name of the rbd-mirror daemon that replays it (dst's view)."""
    out = {}
    for pool in POOLS:
        status = lab.dst.rbd_json("mirror", "pool", "status", pool, "--verbose")
        for image in status.get("images", []):
            service = image.get("daemon_service") or {}
            if image["state"].startswith("up+"):
                out[f"{pool}/{image['name']}"] = service.get("hostname", "?")
    return out


def _split(lab: Lab, want: set[str], total: int = 7) -> dict[str, str] | None:
    """The image split once every image is up and exactly the daemons `want` hold them."""
    owners = _daemon_of_each_image(lab)
    return owners if len(owners) == total and set(owners.values()) == want else None


def test_two_units_split_the_images_and_survive_a_killed_daemon_and_a_removed_unit(
    seeded_lab: Lab, tmp_path: Path
):
    lab = seeded_lab
    # rbd-mirror moves an image to a daemon that joins only once the image has been on its
    # daemon for rbd_mirror_image_policy_migration_throttle (300 s by default): both daemons
    # start within seconds here, so the lab lets images move at once. Lab only, not the charm.
    lab.dst.ceph("config", "set", "client", THROTTLE, "0")
    try:
        _two_units(lab, tmp_path)
    finally:
        lab.dst.ceph("config", "rm", "client", THROTTLE)


def _two_units(lab: Lab, tmp_path: Path) -> None:
    model = _model(lab, tmp_path, "3.12")
    leader, other = model.add_unit("unit-a"), model.add_unit("unit-b")
    for unit in (leader, other):
        model.deploy(unit)
        model.relate(unit)
    model.settle()
    daemons = lab.service_pids()
    assert sorted(daemons) == [
        "ceph-rbd-mirror@rbd-mirror.unit-a",
        "ceph-rbd-mirror@rbd-mirror.unit-b",
    ]
    mon_bag = other.relations()["destination:2"]["units"]["ceph-mon/0"]
    keys = sorted(k for k in mon_bag if k.endswith("_key"))
    assert keys == ["unit-a_key", "unit-b_key"], "ceph-mon gave each unit its own key"

    # Actions that change pools: the leader only; status anywhere.
    expect_ok(other.action("enable-mirroring"))
    assert "leader" in (other.failure() or ""), other.failure()
    assert lab.src.rbd_json("mirror", "pool", "info", "nova")["mode"] == "disabled"
    expect_ok(other.hook("update-status"))
    print(f"non-leader unit status: {last_status(other)}")
    assert "leader" in last_status(other)["message"]

    expect_ok(leader.action("enable-mirroring", timeout=300))
    model.settle()  # Juju: peers-relation-changed on the other unit (the leader's record)
    split: dict[str, str] = {}

    def both_hold_images() -> bool:
        nonlocal split
        split = _split(lab, {"unit-a", "unit-b"}) or {}
        return bool(split)

    assert wait_for(both_hold_images, timeout=180, interval=5), (
        _daemon_of_each_image(lab),
        [lab.dst.rbd_json("mirror", "pool", "status", p, "--verbose")["daemons"] for p in POOLS],
    )
    for host in ("unit-a", "unit-b"):
        held = sorted(image for image, owner in split.items() if owner == host)
        print(f"rbd-mirror on {host} replays {len(held)} image(s): {', '.join(held)}")
    expect_ok(other.action("status"))
    assert "ready-for-cutover" in results(other), "status works on a non-leader"

    # One daemon killed: the other takes its images over.
    os.kill(daemons["ceph-rbd-mirror@rbd-mirror.unit-b"], signal.SIGKILL)
    start = time.monotonic()
    assert wait_for(lambda: _split(lab, {"unit-a"}) is not None, timeout=240, interval=5), (
        _daemon_of_each_image(lab)
    )
    print(f"unit-a's daemon took over every image {time.monotonic() - start:.0f} s after the kill")

    # The killed unit's next hook restarts its daemon; then `juju remove-unit` during the sync.
    expect_ok(other.hook("update-status"))
    assert "ceph-rbd-mirror@rbd-mirror.unit-b" in lab.service_pids()
    model.remove_unit(other)
    print(f"the removed unit's last status: {last_status(other)}")
    assert last_status(other)["message"] == (
        "leaving: this unit's daemon stopped; 1 other unit(s) keep replaying the migration of "
        "cinder-ceph, glance, nova"
    ), "the shared record (peer relation) tells the non-leader which pools; goal-state who stays"
    assert list(lab.service_pids()) == ["ceph-rbd-mirror@rbd-mirror.unit-a"]
    assert list(other.etc_ceph.iterdir()) == [], "unit-b's keyrings and conf removed"

    _wait_ready(leader)
    expect_ok(leader.action("demote-promote", timeout=300))
    assert sum(as_json(results(leader)["promoted"]).values()) == 7
    expect_ok(leader.action("teardown", timeout=300))
    assert md5_all(lab.dst) == recorded(lab.src)
