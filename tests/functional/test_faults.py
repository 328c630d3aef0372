"""The fault matrix on the lab: every way the migration can be hurt leaves the data intact.

Each test starts from a freshly seeded source and an empty destination (fixture `fresh_host`),
and ends by comparing md5s; `fresh_host` also checks that no cephx secret was shown or logged.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
from ops import testing

import cutover
import teardown
from tests.functional.charm_host import CharmHost
from tests.functional.lab.procs import LabError, pid_alive, read_pid, wait_for
from tests.functional.lab.seed import (
    POOLS,
    images,
    md5,
    md5_all,
    primary_sampler,
    recorded,
    start_writer,
)

SYNC_TIMEOUT_S = 420


def wait_ready(host: CharmHost, timeout: float = SYNC_TIMEOUT_S) -> dict:
    """Run `status` until ready-for-cutover (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        results, _ = host.action("status")
        if results["ready-for-cutover"] == "true":
            return results
        assert time.monotonic() < deadline, f"not ready after {timeout}s: {results['reasons']}"
        time.sleep(5)


def caught_up(cluster, pool: str, image: str) -> bool:
    """The destination's daemon replays the image with no journal entry left behind."""
    status = cluster.rbd_json("mirror", "image", "status", f"{pool}/{image}")
    _, _, detail = status.get("description", "").partition(", ")
    behind = json.loads(detail).get("entries_behind_primary") if detail.startswith("{") else None
    return status.get("state") == "up+replaying" and behind == 0


def all_replaying(lab) -> bool:
    """Every seeded image is up+replaying on the destination (lag not considered)."""
    states = [
        i["state"]
        for pool in POOLS
        for i in lab.dst.rbd_json("mirror", "pool", "status", pool, "--verbose")["images"]
    ]
    return len(states) == 7 and set(states) == {"up+replaying"}


def primaries(host: CharmHost, cluster) -> dict[str, bool]:
    """`pool/image` -> mirroring primary, as the cluster's admin sees it.

    An image listed but gone by the time it is opened counts as not primary: only the
    daemon removes an image under us, and only a non-primary one it resyncs (CI saw this
    right after a rollback flagged the destination for resync).
    """
    out = {}
    for pool in POOLS:
        for image in images(cluster, pool):
            try:
                info = cluster.rbd_json("info", f"{pool}/{image}")
            except LabError as exc:
                if "(2) No such file or directory" not in str(exc):
                    raise
                info = {}
            out[f"{pool}/{image}"] = bool(info.get("mirroring", {}).get("primary"))
    return out


@pytest.mark.big_image(512)
@pytest.mark.parametrize("mode", ["journal", "snapshot"])
def test_killed_daemon_is_restarted_by_the_next_hook_and_the_sync_completes(
    fresh_host, caplog, mode
):
    """SIGKILL the daemon while the 512 MiB volume copies; update-status restarts it.

    Snapshot mode carries the pools without clones (nova's are refused: tracker 61891) and
    copies the volume's first mirror snapshot, which the new daemon must resume or restart.
    """
    host, lab = fresh_host, fresh_host.lab
    host.relate()
    pools = POOLS
    if mode == "snapshot":
        pools = ("glance", "cinder-ceph")
        config = {"mirror-mode": mode, "snapshot-interval": "1m", "pools": ",".join(pools)}
        host.configure(**config)
    results, _ = host.action("enable-mirroring")
    assert results["mode"] == mode
    assert results["source-key-can-blocklist"] == "true"

    def copying() -> bool:
        return lab.dst.rbd_json("du", "cinder-ceph/volume-big")["images"][0]["used_size"] > 0

    assert wait_for(copying, timeout=180, interval=1), "the big volume never started copying"
    (pid,) = lab.service_pids().values()
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not pid_alive(pid), timeout=10, interval=0.2)
    results, _ = host.action("status")
    assert results["ready-for-cutover"] == "false"
    assert "daemon is not running" in results["reasons"]
    caplog.clear()
    host.hook("update_status")
    assert "rbd-mirror daemon is not running: starting it" in caplog.text
    (new_pid,) = lab.service_pids().values()
    assert new_pid != pid
    wait_ready(host)
    results, _ = host.action("demote-promote", timeout=180)
    expected = {k: v for k, v in recorded(lab.src).items() if k.split("/")[0] in pools}
    assert sum(json.loads(results["promoted"]).values()) == len(expected)
    assert md5(lab.dst, "cinder-ceph", "volume-big") == expected["cinder-ceph/volume-big"]
    assert md5_all(lab.dst, pools) == expected


def test_cutover_under_writes_interrupted_twice_then_teardown_interrupted_twice(
    fresh_host, monkeypatch, tmp_path
):
    host, lab = fresh_host, fresh_host.lab
    host.relate()
    host.action("enable-mirroring")

    # Fault 4: lagging images -> refuse, list them, change nothing.
    with pytest.raises(testing.ActionFailed) as exc:
        host.action("demote-promote")
    assert "not ready for cutover, nothing changed" in exc.value.message
    assert all(primaries(host, lab.src).values())
    assert not any(primaries(host, lab.dst).values())

    # Fault 2: writes keep landing on the source while it mirrors.
    stop = tmp_path / "stop-writing"
    disk = images(lab.src, "nova")[0]
    writers = [
        start_writer(lab.src, "nova", disk, stop),
        start_writer(lab.src, "cinder-ceph", images(lab.src, "cinder-ceph")[0], stop),
    ]
    assert wait_for(lambda: all_replaying(lab), timeout=SYNC_TIMEOUT_S, interval=5)
    time.sleep(15)  # writes keep landing while every image replays

    # Fault 12: the instances were not stopped. The writers' images are named, and only
    # them: the replaying rbd-mirror daemon holds no watch on a source image.
    with pytest.raises(testing.ActionFailed) as exc:
        host.action("demote-promote")
    named = r"([\w.-]+/[\w.-]+): still in use on the source"
    in_use = sorted(re.findall(named, exc.value.message))
    assert in_use == sorted([f"nova/{disk}", f"cinder-ceph/{images(lab.src, 'cinder-ceph')[0]}"])
    assert all(primaries(host, lab.src).values()), "nothing changed"
    print(f"demote-promote refused with the writers running: {in_use}")

    stop.touch()  # "stop the instances", just before the cutover
    rounds = [int(w.communicate(timeout=60)[0]) for w in writers]
    assert all(r > 0 for r in rounds)
    wait_ready(host)

    sampler = primary_sampler(lab.src, lab.dst, seconds=120)

    # Fault 3a: the action dies after demoting the source, before any promotion.
    def die(*args, **kwargs):
        raise RuntimeError("simulated crash of the action process")

    monkeypatch.setattr(cutover, "_promote_until_done", die)
    with pytest.raises(Exception, match="simulated crash"):
        host.action("demote-promote")
    source_at_demotion = md5_all(lab.src)
    assert source_at_demotion != recorded(lab.src), "the writers changed the source"
    assert not any(primaries(host, lab.src).values())
    # Fault 3b: dies after promoting only the first pool.
    monkeypatch.undo()
    original = cutover._promote_until_done

    def partial(dst, pending_rc, *args, **kwargs):
        first = dict(list(pending_rc.items())[:1])
        original(dst, first, *args, **kwargs)
        raise RuntimeError("simulated crash after a partial promote")

    monkeypatch.setattr(cutover, "_promote_until_done", partial)
    with pytest.raises(Exception, match="partial promote"):
        host.action("demote-promote")
    monkeypatch.undo()

    def in_progress() -> bool:
        host.hook("update_status")
        return host.state.unit_status.message.startswith("cutover in progress")

    assert wait_for(in_progress, timeout=90, interval=5), host.state.unit_status
    results, _ = host.action("status")
    assert results["ready-for-cutover"] == "false"

    results, _ = host.action("demote-promote", timeout=120)  # the re-run finishes the job
    assert all(primaries(host, lab.dst).values())
    assert not any(primaries(host, lab.src).values())
    assert md5_all(lab.dst) == source_at_demotion

    # Fault 6a: teardown dies after removing the peers, before disabling any pool.
    def die_disabling(*args, **kwargs):
        raise RuntimeError("simulated crash during teardown")

    monkeypatch.setattr(teardown, "disable_pool", die_disabling)
    with pytest.raises(Exception, match="during teardown"):
        host.action("teardown")
    monkeypatch.undo()
    assert all(not lab.dst.rbd_json("mirror", "pool", "info", p)["peers"] for p in POOLS)
    # Fault 6b: someone disables the parent pool first: librbd leaves it half-disabled.
    with pytest.raises(Exception, match="rc=16"):
        lab.dst.rbd("mirror", "pool", "disable", "glance")
    assert lab.dst.rbd_json("mirror", "pool", "info", "glance")["mode"] == "image"

    results, _ = host.action("teardown")
    assert results["daemon-stopped"] == "true"
    print(
        f"teardown after the half-disabled pool: journaling removed by the charm itself on "
        f"{results['journaling-removed']} image(s)"
    )
    for pool in POOLS:
        assert lab.dst.rbd_json("mirror", "pool", "info", pool)["mode"] == "disabled"
        for image in images(lab.dst, pool):
            assert "journaling" not in lab.dst.rbd_json("info", f"{pool}/{image}")["features"]
    assert md5_all(lab.dst) == source_at_demotion
    report = json.loads(sampler.communicate(timeout=180)[0])
    assert report["samples"] > 10 and report["violations"] == []


def test_unreachable_source_is_reported_forced_promotion_then_split_brain(fresh_host):
    """With the default config (pools empty): the record of enable-mirroring names the pools."""
    host, lab = fresh_host, fresh_host.lab
    host.relate()
    host.action("enable-mirroring")
    wait_ready(host)
    with pytest.raises(testing.ActionFailed) as exc:
        host.action("demote-promote", force=True)
    assert "the source answers" in exc.value.message, "force refuses a live source"
    assert not any(primaries(host, lab.dst).values()) and all(primaries(host, lab.src).values())

    mon = read_pid(lab.src.pid_file("mon.a"))
    assert mon is not None
    os.kill(mon, signal.SIGTERM)
    assert wait_for(lambda: not pid_alive(mon), timeout=30)
    start = time.monotonic()
    results, _ = host.action("status")
    print(f"status with the source mon down answered in {time.monotonic() - start:.1f}s")
    assert results["source-reachable"] == "false"
    assert json.loads(results["pools"])["nova"]["images"] == 3
    host.hook("update_status")
    assert "source unreachable" in host.state.unit_status.message

    with pytest.raises(testing.ActionFailed) as exc:
        host.action("demote-promote")
    assert "source unreachable" in exc.value.message
    assert not any(primaries(host, lab.dst).values())

    results, logs = host.action("demote-promote", force=True)
    assert results["forced"] == "true" and any("FORCE" in line for line in logs)
    assert all(primaries(host, lab.dst).values())

    lab.src.up()  # the source comes back with its images still primary

    def split() -> int:
        return len(json.loads(host.action("status")[0]["split-brain"]))

    assert wait_for(lambda: split() == 7, timeout=120, interval=5), split()
    host.hook("update_status")
    assert "SPLIT-BRAIN" in host.state.unit_status.message
    for action in ("demote-promote", "teardown", "enable-mirroring"):
        with pytest.raises(testing.ActionFailed) as exc:
            host.action(action)
        assert (
            "SPLIT-BRAIN, nothing changed" in exc.value.message and "resync" in exc.value.message
        )
    assert all(primaries(host, lab.src).values()), "the source's copies were left alone"
    assert all(primaries(host, lab.dst).values())


def test_volume_created_after_the_sync_blocks_teardown_until_it_is_mirrored(fresh_host):
    """A volume the cloud created after the cutover (APIs not frozen) is never left behind."""
    host, lab = fresh_host, fresh_host.lab
    host.relate()
    host.action("enable-mirroring")
    wait_ready(host)
    host.action("demote-promote", timeout=120)
    lab.src.rbd("create", "--size", "16M", "cinder-ceph/volume-late")
    lab.src.rbd("bench", "--io-type", "write", "--io-total", "4M", "cinder-ceph/volume-late")
    late = md5(lab.src, "cinder-ceph", "volume-late")
    peers_before = lab.dst.rbd_json("mirror", "pool", "info", "cinder-ceph")["peers"]

    with pytest.raises(testing.ActionFailed) as exc:
        host.action("teardown")
    assert "cinder-ceph/volume-late: on the source but not on the destination" in exc.value.message
    for pool in POOLS:
        assert lab.dst.rbd_json("mirror", "pool", "info", pool)["mode"] == "pool"
    assert lab.dst.rbd_json("mirror", "pool", "info", "cinder-ceph")["peers"] == peers_before
    assert lab.service_pids(), "nothing changed: the daemon still runs"
    host.hook("update_status")
    assert "cutover done" not in host.state.unit_status.message

    # What the charm supports: mirror it like the others, then finish the cutover.
    results, _ = host.action("enable-mirroring")
    assert results["changes"] == 1, results
    assert wait_for(
        lambda: "volume-late" in images(lab.dst, "cinder-ceph"), timeout=180, interval=5
    ), "the late volume reached the destination"
    # The destination image exists from the start of its copy, and rbd-mirror watches the source
    # image while it copies it (seen on the lab): wait until it replays, as status would show.
    assert wait_for(
        lambda: caught_up(lab.dst, "cinder-ceph", "volume-late"), timeout=180, interval=3
    ), "the late volume replays"
    results, _ = host.action("demote-promote", timeout=300)
    assert json.loads(results["promoted"])["cinder-ceph"] == 1
    results, _ = host.action("teardown")
    assert results["daemon-stopped"] == "true"
    assert md5(lab.dst, "cinder-ceph", "volume-late") == late
    assert md5_all(lab.dst) == {**recorded(lab.src), "cinder-ceph/volume-late": late}


def test_three_mon_units_and_ten_update_status_hooks_leave_the_daemon_alone(fresh_host):
    """ceph-mon's units come in no fixed order; the daemon is restarted only on a change."""
    host, lab = fresh_host, fresh_host.lab
    host.extra_mon_addresses = ("127.0.0.3", "127.0.0.2")  # no mon listens there
    host.state = testing.State(leader=True, relations=host._relations())
    host.relate()
    pids = lab.service_pids()
    assert pids, "the daemon runs"
    for _ in range(10):
        host.hook("update_status")
    assert lab.service_pids() == pids, "a hook restarted the daemon without a change"
    assert "mon host = 127.0.0.1 127.0.0.2 127.0.0.3" in Path("/etc/ceph/ceph.conf").read_text()


def test_destination_not_ready_is_named_exactly(fresh_host):
    host, lab = fresh_host, fresh_host.lab
    host.relate()
    lab.dst.ceph("osd", "pool", "rm", "nova", "nova", "--yes-i-really-really-mean-it")
    with pytest.raises(testing.ActionFailed) as exc:
        host.action("enable-mirroring")
    assert "destination pool(s) missing: nova" in exc.value.message
    assert lab.src.rbd_json("mirror", "pool", "info", "glance")["mode"] == "disabled"

    host.play_remote_charms()  # ceph-mon re-runs the broker request: nova is back
    host.action("enable-mirroring")
    uuid = lab.dst.rbd_json("mirror", "pool", "info", "glance")["peers"][0]["uuid"]
    lab.dst.rbd("mirror", "pool", "peer", "remove", "glance", uuid)
    results, _ = host.action("status")
    assert "glance: mirroring is not set up" in results["reasons"]
    assert "0 peer(s)" in results["reasons"]

    for pid in lab.service_pids().values():
        os.kill(pid, signal.SIGTERM)
    assert wait_for(lambda: not lab.service_pids(), timeout=30)
    results, _ = host.action("status")
    assert "daemon is not running" in results["reasons"]
    assert md5_all(lab.src) == recorded(lab.src)
