"""The proof and the preflight, on the lab: verify, enable-mirroring's warnings, the progress.

Each test starts from a freshly seeded source and an empty destination (fixture `fresh_host`).
"""

from __future__ import annotations

import json
import time

import pytest
from ops import testing

from tests.functional.charm_host import CharmHost
from tests.functional.lab.seed import POOLS, SYSTEM_PYTHON, images
from tests.functional.test_faults import wait_ready

# Writes bytes (hex) at an offset of an image with librbd, as client.admin.
POKE = """
import sys, rados, rbd
conf, cluster, pool, image, offset, data = sys.argv[1:]
with rados.Rados(conffile=conf, clustername=cluster, name="client.admin") as conn:
    with conn.open_ioctx(pool) as ioctx, rbd.Image(ioctx, image) as img:
        img.write(bytes.fromhex(data), int(offset))
        img.flush()
"""


def poke(cluster, pool: str, image: str, offset: int, data: bytes) -> None:
    """Write `data` at `offset` of `pool/image` on `cluster`."""
    cluster.run(
        [SYSTEM_PYTHON, "-c", POKE, str(cluster.conf), cluster.name, pool, image, str(offset),
         data.hex()],
        timeout=60,
    )  # fmt: skip


def verify_fails(host: CharmHost, **params) -> str:
    """Run verify, expecting it to fail; its message."""
    with pytest.raises(testing.ActionFailed) as failed:
        host.action("verify", **params)
    print(f"\nverify failed: {failed.value.message}")
    return failed.value.message


def test_verify_proves_the_copy_and_names_a_changed_block_size_and_parent(fresh_host):
    host, lab = fresh_host, fresh_host.lab
    host.relate()
    host.action("enable-mirroring")
    wait_ready(host)
    assert "a primary source is still being written" in verify_fails(host)

    host.action("demote-promote", timeout=120)
    results, logs = host.action("verify")
    print(
        f"\nverify: {results['images']} images, {results['bytes-read']} bytes read in "
        f"{results['seconds']} s ({results['throughput']})"
    )
    assert results["images"] == 7 and results["mismatch-count"] == 0
    assert any("cinder-ceph: 3 image(s) compared" in line for line in logs)

    volume = images(lab.dst, "cinder-ceph")[0]
    offset = 5 * 1024 * 1024 + 8192
    original = lab.dst.rbd_bytes("export", f"cinder-ceph/{volume}", "-")[offset : offset + 4096]
    poke(lab.dst, "cinder-ceph", volume, offset, bytes(b ^ 0xFF for b in original))
    message = verify_fails(host)
    assert f"cinder-ceph/{volume}: content differs at offset {offset}" in message
    assert "nova/" not in message and "glance/" not in message
    assert json.loads((host.ctx.action_results or {})["mismatches"]) == [
        {"image": f"cinder-ceph/{volume}", "offset": offset, "what": "content differs"}
    ]
    poke(lab.dst, "cinder-ceph", volume, offset, original)
    results, _ = host.action("verify")
    assert results["mismatch-count"] == 0, "the block restored, every image matches again"

    results, _ = host.action("teardown")
    (glance,) = images(lab.dst, "glance")
    assert results["old-fsid"] == lab.src.fsid and results["new-fsid"] == lab.dst.fsid
    assert json.loads(results["glance-locations"]) == [
        f"rbd://{lab.dst.fsid}/glance/{glance}/snap"
    ]
    print(f"teardown: {results['glance-locations-sql']}")
    results, _ = host.action("verify", sample=4)
    assert results["mismatch-count"] == 0, "after teardown too"
    assert results["mode"] == "sample of 4 chunk(s) per image"

    other = images(lab.dst, "cinder-ceph")[1]
    lab.dst.rbd("resize", "--size", "40M", f"cinder-ceph/{other}")
    disk = images(lab.dst, "nova")[0]
    lab.dst.rbd("flatten", f"nova/{disk}")
    message = verify_fails(host, sample=4)
    assert f"cinder-ceph/{other}: size {32 * 1024 * 1024} on the source" in message
    assert f"nova/{disk}: parent glance/" in message and "none on the destination" in message


def test_preflight_names_a_qcow2_image_and_blocks_a_destination_too_small(fresh_host):
    host, lab = fresh_host, fresh_host.lab
    host.relate()
    header = b"QFI\xfb\x00\x00\x00\x03" + bytes(4 * 1024 * 1024 - 8)  # a qcow2 v3 header
    lab.src.rbd("import", "--dest-pool", "glance", "-", "qcow2-as-raw", input=header)
    lab.dst.ceph("osd", "pool", "set-quota", "cinder-ceph", "max_bytes", str(50 * 1024 * 1024))

    results, _ = host.action("enable-mirroring", **{"dry-run": True})
    warnings = json.loads(results["warnings"])
    print("\npreflight warnings:\n" + "\n".join(warnings))
    assert any(w.startswith("glance/qcow2-as-raw: ") and "qcow2" in w for w in warnings)
    assert any(w.startswith("BLOCKS: space: pool cinder-ceph: does not fit") for w in warnings)
    assert results["source-key-can-blocklist"] == "true"

    with pytest.raises(testing.ActionFailed) as refused:
        host.action("enable-mirroring")
    print(f"enable-mirroring refused: {refused.value.message}")
    assert "may take 50.0 MiB (52428800)" in refused.value.message
    for pool in ("glance", "nova", "cinder-ceph"):
        assert lab.src.rbd_json("mirror", "pool", "info", pool)["mode"] == "disabled"
        assert lab.dst.rbd_json("mirror", "pool", "info", pool)["mode"] == "disabled"
    assert "rbd-mirror-migration-probe" not in images(lab.src, "nova"), "the probe is removed"

    lab.dst.ceph("osd", "pool", "set-quota", "cinder-ceph", "max_bytes", "0")
    results, logs = host.action("enable-mirroring")
    assert results["images"] == 8
    assert any(line.startswith("WARNING: glance/qcow2-as-raw") for line in logs)


def all_copied(lab, count: int) -> bool:
    """The destination's daemon reports all `count` images up+replaying (their copy done)."""
    states = [
        i["state"]
        for pool in POOLS
        for i in lab.dst.rbd_json("mirror", "pool", "status", pool, "--verbose")["images"]
    ]
    return len(states) == count and set(states) == {"up+replaying"}


SLOW_SOURCE = {  # every client of the source: each OSD answer up to 0.4 s late, one op at a time
    "ms_inject_delay_type": "osd",
    "ms_inject_delay_max": "0.4",
    "ms_inject_delay_probability": "1",
    "rbd_concurrent_management_ops": "1",
}


@pytest.mark.big_image(1024)
def test_sync_progress_rises_and_its_eta_tracks_the_time_left(fresh_host):
    """Loopback copies 1 GiB in ~4 s, faster than the daemon publishes (30 s): slowed here.

    Asserted: the percentage only rises and the copy completes. The ETA is printed against the
    real time left (taken from the cluster every 2 s), not asserted: it is not yet within 30%.
    """
    host, lab = fresh_host, fresh_host.lab
    host.relate()
    for option, value in SLOW_SOURCE.items():
        lab.src.ceph("config", "set", "client", option, value)
    count = sum(len(images(lab.src, pool)) for pool in POOLS)
    samples: list[tuple[float, int, object, str]] = []
    end = 0.0  # when the destination's daemon first reports every image replaying (copied)
    try:
        host.action("enable-mirroring")
        deadline = time.monotonic() + 900
        while not end:
            assert time.monotonic() < deadline, f"not copied in 900 s: {samples[-3:]}"
            polled = time.monotonic()
            results, _ = host.action("status")
            if "percent-copied" in results:
                big = lab.dst.rbd_json("mirror", "pool", "status", "cinder-ceph", "--verbose")
                seen = [
                    f"{i['description']} @{i['last_update'][-8:]}"
                    for i in big["images"]
                    if i["name"] == "volume-big"
                ]
                samples.append(
                    (
                        polled,
                        results["percent-copied"],
                        results["eta-seconds"],
                        f"{results['phase']} | volume-big: {seen}",
                    )
                )
            while not end and time.monotonic() < polled + 10:  # the ground truth, every 2 s
                if all_copied(lab, count):
                    end = time.monotonic()
                    print(f"\nall copied at {time.strftime('%H:%M:%S')}")
                time.sleep(2)
    finally:
        for option in SLOW_SOURCE:
            lab.src.ceph("config", "rm", "client", option)
    wait_ready(host)
    print(f"\ncopied {end - samples[0][0]:.0f} s after the first sample")
    print("t(s)  percent  eta(s)  real-left(s)  phase")
    start = samples[0][0]
    for polled, percent, eta, phase in samples:
        print(f"{polled - start:5.0f} {percent:7} {eta!s:>7} {end - polled:12.0f}  {phase}")
    percents = [p for _, p, _, _ in samples]
    assert percents == sorted(percents), "the percentage only rises"
    # The goal, the ETA within 30% of the time left over the last half, is NOT met yet
    # (README, "Known limits"): the samples are printed, the error of each is shown.
    for polled, percent, eta, _ in samples:
        if percent >= 50 and isinstance(eta, int):
            left = end - polled
            print(f"ETA error at {percent}%: {eta - left:+.0f} s of {left:.0f} s left")
