"""The proof and the preflight, on the lab: verify, enable-mirroring's warnings, the progress.

Each test starts from a freshly seeded source and an empty destination (fixture `fresh_host`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import pytest
from ops import testing

from tests.functional.charm_host import CharmHost, charm_root
from tests.functional.lab.seed import POOLS, SYSTEM_PYTHON, images
from tests.functional.test_faults import wait_ready

MIB = 1024 * 1024

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


def test_verify_proves_the_copy_and_names_a_changed_block_snapshot_size_and_parent(fresh_host):
    host, lab = fresh_host, fresh_host.lab
    host.relate()
    kept = images(lab.src, "cinder-ceph")[2]  # a volume with a snapshot, written since
    lab.src.rbd("snap", "create", f"cinder-ceph/{kept}@backup-1")
    poke(lab.src, "cinder-ceph", kept, 20 * MIB, b"written after the snapshot")
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

    # the snapshot made again on the destination with one block changed, the head restored:
    # the heads agree, the snapshot's content does not
    at = MIB + 4096
    block = lab.dst.rbd_bytes("export", f"cinder-ceph/{kept}", "-")[at : at + 4096]
    lab.dst.rbd("snap", "rm", f"cinder-ceph/{kept}@backup-1")
    poke(lab.dst, "cinder-ceph", kept, at, bytes(b ^ 0x5A for b in block))
    lab.dst.rbd("snap", "create", f"cinder-ceph/{kept}@backup-1")
    poke(lab.dst, "cinder-ceph", kept, at, block)
    message = verify_fails(host)
    assert f"cinder-ceph/{kept}: content of snapshot backup-1 differs at offset {at}" in message

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

    # a source key ceph-proxy did not give the charm's caps: named, with the request to send
    key = "client.rbd-mirror-migration"
    caps = lab.src.ceph_json("auth", "get", key)[0]["caps"]
    lab.src.ceph("auth", "caps", key, "mon", "allow r", "osd", "profile rbd")
    try:
        results, _ = host.action("enable-mirroring", **{"dry-run": True})
    finally:
        lab.src.ceph("auth", "caps", key, *[x for kv in caps.items() for x in kv])
    blocked = [w for w in json.loads(results["warnings"]) if "may not blocklist" in w]
    print(f"with mon 'allow r': {blocked}")
    assert results["source-key-can-blocklist"] == "false"
    assert blocked and '"op": "set-key-permissions"' in blocked[0]
    assert f"ceph auth caps {key} mon 'profile rbd' osd 'profile rbd'" in blocked[0]

    with pytest.raises(testing.ActionFailed) as refused:
        host.action("enable-mirroring")
    print(f"enable-mirroring refused: {refused.value.message}")
    assert "may take 50.0 MiB (52428800)" in refused.value.message
    for pool in ("glance", "nova", "cinder-ceph"):
        assert lab.src.rbd_json("mirror", "pool", "info", pool)["mode"] == "disabled"
        assert lab.dst.rbd_json("mirror", "pool", "info", pool)["mode"] == "disabled"
    left = [n for n in images(lab.src, "nova") if n.startswith("rbd-mirror-migration-probe")]
    assert not left, "the probe is removed"

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


BIG = "cinder-ceph/volume-big"
ETA_ROUNDING_S = 1.0  # the ETA is given in whole seconds


def objects_on_destination(lab, prefix: str) -> int:
    """How many of the big volume's data objects the destination holds (each 4 MiB copied)."""
    pool = BIG.split("/")[0]
    return sum(1 for name in lab.dst.rados("-p", pool, "ls").split() if name.startswith(prefix))


def big_volume_publications(lab) -> dict[float, int]:
    """The big volume's publications the unit keeps for its rate (progress.json): when, bytes."""
    path = charm_root(lab.base) / "reports" / "progress.json"
    try:
        kept = json.loads(path.read_text()).get("samples", {}).get(BIG, [])
    except (OSError, ValueError):
        return {}
    return {float(t): int(b) for t, b in kept}


@dataclass
class Truth:
    """The ground truth, read from the clusters every 2 s while no status action runs.

    When the big volume's bytes were all on the destination: after the last read that found
    fewer objects (`before`), at the latest at the first that found them all (`copied`); the
    status action runs between two reads, so they may be 5 s apart. And when every image was
    reported replaying (`replaying`).
    """

    objects: int
    prefix: str = ""
    before: float = 0.0
    copied: float = 0.0
    replaying: float = 0.0
    seen: list[tuple[float, int]] = field(default_factory=list)  # (when, objects copied)

    def poll(self, lab, count: int, until: float) -> None:
        """Read the clusters every 2 s until `until` (once at least) or every image replays."""
        while not self.replaying:
            if not self.prefix:
                found = lab.dst.run(
                    ["rbd", "--cluster", "dst", "-c", str(lab.dst.conf), "info", BIG,
                     "--format", "json"],
                    check=False,
                )  # fmt: skip
                if found.returncode == 0:
                    self.prefix = json.loads(found.stdout)["block_name_prefix"] + "."
            if self.prefix and not self.copied:
                asked = time.monotonic()  # fewer objects found: they were fewer when asked
                done = objects_on_destination(lab, self.prefix)
                self.seen.append((time.monotonic(), done))
                if done >= self.objects:
                    self.copied = time.monotonic()
                else:
                    self.before = asked
            if all_copied(lab, count):
                self.replaying = time.monotonic()
            elif time.monotonic() >= until:
                return
            else:
                time.sleep(2)


SLOW_DAEMON = {  # the daemon's destination entity only: each OSD answer up to 0.3 s late
    "ms_inject_delay_type": "osd",
    "ms_inject_delay_max": "0.3",
    "ms_inject_delay_probability": "1",
}
ONE_OP_AT_A_TIME = ("rbd_concurrent_management_ops", "1")  # the source's clients: one copy op


@pytest.mark.big_image(1024)
def test_sync_progress_rises_and_its_eta_tracks_the_time_left(fresh_host):
    """Loopback copies 1 GiB in ~4 s, faster than the daemon publishes (30 s): slowed here.

    The ETA is the time until the bytes to go are copied: compared with when the destination
    held every object of the big volume (read every 2 s). The daemon then needs a few more
    operations before it reports the image replaying; the lab's injected latency stretches
    them, so that tail is printed, not counted.
    """
    host, lab = fresh_host, fresh_host.lab
    host.relate()
    daemon = f"client.rbd-mirror.{host.unique_id}"  # the charm's own reads are not slowed
    for option, value in SLOW_DAEMON.items():
        lab.dst.ceph("config", "set", daemon, option, value)
    lab.src.ceph("config", "set", "client", *ONE_OP_AT_A_TIME)
    count = sum(len(images(lab.src, pool)) for pool in POOLS)
    truth = Truth(objects=1024 // 4)
    samples: list[tuple[float, int, object, str]] = []
    published: dict[float, int] = {}  # the big volume's publications the charm measured from
    try:
        host.action("enable-mirroring")
        deadline = time.monotonic() + 900
        while not truth.replaying:
            assert time.monotonic() < deadline, f"not copied in 900 s: {samples[-3:]}"
            polled = time.monotonic()
            results, _ = host.action("status")
            answered = time.monotonic()  # the ETA is the operator's when the answer arrives
            if "percent-copied" in results:
                samples.append(
                    (answered, results["percent-copied"], results["eta-seconds"], results["phase"])
                )
                published.update(big_volume_publications(lab))
            truth.poll(lab, count, polled + 10)
    finally:
        for option in SLOW_DAEMON:
            lab.dst.ceph("config", "rm", daemon, option)
        lab.src.ceph("config", "rm", "client", ONE_OP_AT_A_TIME[0])
    wait_ready(host)
    start = samples[0][0]
    assert truth.copied, f"the destination never held all {truth.objects} objects"
    assert truth.before, "the destination was read before it held every object"
    print(f"\ncopied {truth.copied - start:.0f} s after the first sample; every image replaying "
          f"{truth.replaying - truth.copied:.0f} s later")  # fmt: skip
    print("objects on the destination:", [(round(t - start), n) for t, n in truth.seen])
    to_monotonic = time.monotonic() - time.time()  # publications are epoch seconds
    seen = [(round(t + to_monotonic - start), b // MIB) for t, b in sorted(published.items())]
    print("the big volume's publications (t, MiB copied):", seen)
    print("t(s)  percent  eta(s)  copy-left(s)  error  phase")
    percents, errors = [], []
    for answered, percent, eta, phase in samples:
        low, left = truth.before - answered, truth.copied - answered  # the time left is in there
        percents.append(percent)
        error = ""
        if isinstance(eta, int) and left > 0 and answered - start >= (truth.copied - start) / 2:
            # an ETA too long is judged against the latest truth, one too short the earliest
            off, near = (eta - left, left) if eta > left else (min(0.0, eta - low), low)
            errors.append((off, near))
            error = f"{off:+.0f} s"
        known = f"{max(low, 0):.0f}-{max(left, 0):.0f}"
        print(f"{answered - start:5.0f} {percent:7} {eta!s:>7} {known:>13} {error:>6}  {phase}")
    assert percents == sorted(percents), "the percentage only rises"
    assert errors, "an ETA was given in the last half of the copy"
    # Within 30% of the time left, as far as the truth is known (between two reads: an ETA too
    # long against the latest, one too short against the earliest), or within the rounding.
    assert all(abs(off) <= max(0.30 * near, ETA_ROUNDING_S) for off, near in errors), errors
