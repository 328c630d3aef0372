"""The ways back, on the lab: abort before the cutover, rollback after it, the journal guard.

Each test starts from a freshly seeded source and an empty destination (fixture `fresh_host`)
and ends by comparing md5s; `fresh_host` also checks that no cephx secret was shown or logged.
"""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
from ops import testing

from tests.functional.charm_host import CharmHost
from tests.functional.lab.procs import wait_for
from tests.functional.lab.seed import (
    POOLS,
    file_md5,
    images,
    md5,
    md5_all,
    recorded,
    start_writer,
)
from tests.functional.test_faults import primaries, wait_ready

CAP = "rbd_journal_max_concurrent_object_sets"


def configure(host: CharmHost, **options) -> None:
    """Set charm config options and run config-changed."""
    host.state = dataclasses.replace(host.state, config={**host.state.config, **options})
    host.hook("config_changed")


def source_shape(lab) -> dict[str, tuple]:
    """Each source image's features, mirroring state and snapshots, as the admin sees them."""
    out = {}
    for pool in POOLS:
        for image in images(lab.src, pool):
            info = lab.src.rbd_json("info", f"{pool}/{image}")
            snaps = sorted(s["name"] for s in lab.src.rbd_json("snap", "ls", f"{pool}/{image}"))
            out[f"{pool}/{image}"] = (
                tuple(sorted(info["features"])),
                info.get("mirroring", {}).get("state", "disabled"),
                tuple(snaps),
            )
    return out


def finish_migration(host: CharmHost) -> None:
    """Status until ready, demote-promote, teardown: every byte on the destination."""
    lab = host.lab
    wait_ready(host)
    host.action("demote-promote", timeout=120)
    assert md5_all(lab.dst) == md5_all(lab.src)
    results, _ = host.action("teardown")
    assert results["daemon-stopped"] == "true"
    for pool in POOLS:
        for image in images(lab.dst, pool):
            snaps = [s["name"] for s in lab.dst.rbd_json("snap", "ls", f"{pool}/{image}")]
            assert "rbd-mirror-migration-cutover" not in snaps, "teardown removes them"


@pytest.mark.big_image(512)
def test_abort_mid_sync_under_writes_leaves_the_source_as_it_was_and_the_destination_empty(
    fresh_host, tmp_path
):
    host, lab = fresh_host, fresh_host.lab
    host.relate()
    configure(host, **{"journal-max-object-sets": 64})
    before = source_shape(lab)
    host.action("enable-mirroring")
    assert lab.src.rbd("config", "pool", "get", "cinder-ceph", CAP).strip() == "64"

    stop = tmp_path / "stop-writing"
    disk = images(lab.src, "nova")[0]
    volume = next(i for i in images(lab.src, "cinder-ceph") if i != "volume-big")
    shadows = {f"nova/{disk}": tmp_path / "disk.shadow", f"cinder-ceph/{volume}": tmp_path / "vol"}
    writers = [
        start_writer(lab.src, "nova", disk, stop, shadow=shadows[f"nova/{disk}"]),
        start_writer(
            lab.src, "cinder-ceph", volume, stop, shadow=shadows[f"cinder-ceph/{volume}"]
        ),
    ]

    def copying() -> bool:
        du = lab.dst.rbd_json("du", "cinder-ceph/volume-big")["images"]
        return bool(du) and du[0]["used_size"] > 0

    assert wait_for(copying, timeout=180, interval=1), "the big volume never started copying"
    state = lab.dst.rbd_json("mirror", "image", "status", "cinder-ceph/volume-big")["state"]
    print(f"\nabort while cinder-ceph/volume-big is {state}")
    assert state != "up+replaying", "abort must come in the middle of the initial sync"

    results, logs = host.action("abort")
    print(f"abort: {results['changes-count']} changes, deleted {results['deleted']}")
    assert results["daemon-running"] == "false"
    assert not lab.service_pids(), "the daemon is stopped"
    time.sleep(5)  # the cloud keeps writing after the abort
    stop.touch()
    for writer in writers:
        out, err = writer.communicate(timeout=60)
        assert writer.returncode == 0 and int(out) > 0, err
        assert not err.strip(), f"the writer saw an error: {err!r}"

    after = source_shape(lab)
    assert after == before, "features, mirroring and snapshots as before enable-mirroring"
    for image, (features, mirroring, _) in after.items():
        assert "journaling" not in features and mirroring == "disabled", image
    for pool in POOLS:
        info = lab.src.rbd_json("mirror", "pool", "info", pool)
        assert info["mode"] == "disabled" and not info.get("peers"), info
        cap = [o for o in lab.src.rbd_json("config", "pool", "list", pool) if o["name"] == CAP]
        assert cap[0]["source"] != "pool", f"{pool}: the journal cap is removed: {cap}"
    expected = {**recorded(lab.src), **{k: file_md5(v) for k, v in shadows.items()}}
    assert md5_all(lab.src) == expected, "the seed's bytes and the writers' bytes, nothing else"
    for pool in POOLS:
        assert images(lab.dst, pool) == [], f"destination {pool} is empty"
        assert lab.dst.rbd_json("trash", "ls", "--all", pool) == []
        info = lab.dst.rbd_json("mirror", "pool", "info", pool)
        assert info["mode"] == "disabled" and not info.get("peers"), info
    host.hook("update_status")
    assert "migration aborted" in host.state.unit_status.message, host.state.unit_status

    again, _ = host.action("abort")
    assert again["changes-count"] == 0, "a second abort changes nothing"
    assert source_shape(lab) == before

    host.action("enable-mirroring")
    assert lab.service_pids(), "enable-mirroring starts the daemon again"
    finish_migration(host)
    assert md5(lab.dst, "cinder-ceph", "volume-big") == recorded(lab.src)["cinder-ceph/volume-big"]


def test_rollback_after_cutover_refuses_a_written_destination_then_the_migration_runs_again(
    fresh_host,
):
    host, lab = fresh_host, fresh_host.lab
    host.relate()
    host.action("enable-mirroring")
    wait_ready(host)
    with pytest.raises(testing.ActionFailed, match="cutover has not begun"):
        host.action("rollback")
    results, _ = host.action("demote-promote", timeout=120)
    assert sum(json.loads(results["cutover-snapshots"]).values()) == 7
    at_demotion = md5_all(lab.src)

    volume = images(lab.dst, "cinder-ceph")[0]
    lab.dst.rbd(
        "bench", "--io-type", "write", "--io-size", "4096", "--io-total", "4096",
        f"cinder-ceph/{volume}",
    )  # fmt: skip
    with pytest.raises(testing.ActionFailed) as exc:
        host.action("rollback")
    print(f"\nrollback refused: {exc.value.message}")
    assert f"cinder-ceph/{volume}: written since the cutover" in exc.value.message
    assert "nova/" not in exc.value.message and "glance/" not in exc.value.message
    assert all(primaries(host, lab.dst).values()), "nothing changed"
    assert not any(primaries(host, lab.src).values())

    dry, _ = host.action("rollback", force=True, **{"dry-run": True})
    assert all(primaries(host, lab.dst).values()), "a dry run changes nothing"
    started = time.monotonic()
    results, logs = host.action("rollback", force=True)
    print(f"rollback: {results['changes']}; discarded {results['discarded']}")
    assert json.loads(results["discarded"]) == [
        f"cinder-ceph/{volume}: written since the cutover (first at offset 0)"
    ]
    assert all(primaries(host, lab.src).values()), "the source is primary again"
    assert not any(primaries(host, lab.dst).values()), "the destination is not"
    assert md5_all(lab.src) == at_demotion, "the source's bytes are those of the demotion"
    again, _ = host.action("rollback")
    assert set(again["already-rolled-back"].split(",")) == set(POOLS), "a re-run changes nothing"

    wait_ready(host)
    print(f"rollback: the destination resynced and is ready {time.monotonic() - started:.0f}s "
          "after the rollback began")  # fmt: skip
    assert md5_all(lab.dst) == md5_all(lab.src)
    finish_migration(host)
    with pytest.raises(testing.ActionFailed, match="teardown has begun"):
        host.action("rollback")


def test_journal_guard_blocks_on_a_growing_journal_and_clears_once_the_daemon_replays(
    fresh_host, tmp_path
):
    host, lab = fresh_host, fresh_host.lab
    host.relate()
    configure(host, **{"journal-backlog-limit": "128M"})
    host.action("enable-mirroring")
    wait_ready(host)
    volume = images(lab.src, "cinder-ceph")[0]

    host.action("pause")
    stop = tmp_path / "stop-writing"
    # A steady writer: 16 x 64 KiB per round, a round every ~0.1 s (about 10 MiB/s at most).
    writer = start_writer(lab.src, "cinder-ceph", volume, stop, pause=0.1, count=16)
    writing_since = time.monotonic()
    samples = []
    start = time.monotonic()
    blocked = False
    while time.monotonic() - start < 120:
        results, _ = host.action("status")
        journal = json.loads(results["pools"])["cinder-ceph"]["journal"]
        samples.append((time.monotonic() - start, journal["largest-bytes"], journal))
        host.hook("update_status")
        if host.state.unit_status.name == "blocked" and "journal guard" in (
            host.state.unit_status.message
        ):
            blocked = True
            break
        time.sleep(5)
    for t, size, journal in samples:
        print(f"journal t={t:5.1f}s kept={size / 2**20:7.1f} MiB {journal}")
    assert blocked, f"never blocked: {host.state.unit_status}"
    message = host.state.unit_status.message
    print(f"unit status: {message}")
    assert "cinder-ceph" in message and volume in message and "abort" in message
    assert "not replayed" in message
    (t0, b0, _), (t1, b1, _) = samples[0], samples[-1]
    rate = (b1 - b0) / (t1 - t0) / 2**20
    print(f"journal growth on the source, daemon stopped, steady writer: {rate:.1f} MiB/s")

    # What the charm decoded from the journal's header agrees with `rbd journal status`: the
    # peer's last committed object, and everything after it is what it has not replayed.
    cli = lab.src.rbd_json("journal", "status", "--pool", "cinder-ceph", "--image", volume)
    peers = [c for c in cli["registered_clients"] if c["id"]]
    assert len(peers) == 1 and peers[0]["state"] == "connected", cli
    assert samples[-1][2]["mirror-client-connected"] is True
    committed = max(p["object_number"] for p in peers[0]["commit_position"]["object_positions"])
    print(f"rbd journal status: peer committed up to object {committed}; {cli['active_set']=}")
    assert cli["active_set"] * 4 > committed, "the writer is objects ahead of the stopped peer"

    host.action("resume")  # the daemon replays again while the writer goes on
    deadline = time.monotonic() + 180
    while True:  # both reads clear at once (the writer goes on: one alone may be borderline)
        results, _ = host.action("status")
        host.hook("update_status")
        status = host.state.unit_status
        if "journal guard" not in status.message and json.loads(results["journal-guard"]) == []:
            break
        assert time.monotonic() < deadline, f"still blocked: {status}"
        time.sleep(5)
    journal = json.loads(results["pools"])["cinder-ceph"]["journal"]
    print(f"after resume: {journal}; unit status: {host.state.unit_status.message}")
    stop.touch()
    out, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err
    written = int(out) * 16 * 64 * 1024 / 2**20  # rounds of 16 x 64 KiB
    print(f"the writer wrote {written / (time.monotonic() - writing_since):.1f} MiB/s")
    wait_ready(host)
    host.action("demote-promote", timeout=120)
    assert md5(lab.dst, "cinder-ceph", volume) == md5(lab.src, "cinder-ceph", volume)
