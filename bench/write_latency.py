"""The live cloud's write latency while the sync runs: no mirroring, journal mode, snapshot mode.

    python -m bench.write_latency [--seconds 10] [--repeats 3] [--size-mib 256] [--interval 1m]

As root, on a machine with nothing else on the lab's ports: brings up a lab of its own in a
temporary directory and stops it at the end, by PID. One source image of `--size-mib`, fully
written first (a fresh image's first run pays for creating its objects), in each of three pools:

- `lat`: not mirrored (the baseline, a);
- `lat-journal`: mirrored by the charm in journal mode (b): its `enable-mirroring` action with
  config mirror-mode journal (pool mode `pool`, journaling on the image, the destination pool in
  pool mode with an rx-only peer), the charm-started rbd-mirror replaying it;
- `lat-snap`: mirrored by the charm in snapshot mode (c): `enable-mirroring` with mirror-mode
  snapshot (pools in `image` mode, the image snapshot mirrored, the source mgr's mirror snapshot
  schedule every `--interval`), the same daemon replaying it.

Each measurement is `rbd bench --io-type write --io-size 4K --io-pattern rand --io-threads 1`
with the same `--io-total` for every state (sized from a calibration run on `lat` to last about
`--seconds`), run once in every state per repeat, interleaved (a, b, c, a, b, c, ...) so that
drift cancels. Before each run the charm's rbd-mirror daemon is let go idle (bounded): on the
2-core lab it shares the CPUs, and a journal backlog replayed during the next state's run
would be charged to that state. With one I/O in flight the mean latency is 1 / ops per
second. Every figure is printed with its ratio to the baseline of the same repeat; nothing is
asserted.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.__main__ import charm_action, image_state, make_images
from mirror_modes import interval_seconds
from tests.functional.lab import Lab
from tests.functional.lab.procs import LabError, wait_for

POOLS = {"a": "lat", "b": "lat-journal", "c": "lat-snap"}
STATES = {"a": "no mirroring", "b": "journal mode", "c": "snapshot mode"}
IMAGE = "img00000"
IO_SIZE = 4096
_SUMMARY = re.compile(r"elapsed:\s*([\d.]+)\s+ops:\s*(\d+)\s+ops/sec:\s*([\d.]+)")


def rbd_bench(lab: Lab, pool: str, io_total: int) -> tuple[float, int, float]:
    """One `rbd bench` of 4K random writes, one in flight: (elapsed s, ops, ops/s)."""
    proc = lab.src.run(
        ["rbd", "--cluster", "src", "-c", str(lab.src.conf), "bench", "--io-type", "write",
         "--io-size", "4K", "--io-pattern", "rand", "--io-threads", "1",
         "--io-total", str(io_total), f"{pool}/{IMAGE}"],
        timeout=1200,
    )  # fmt: skip
    out = (proc.stdout + proc.stderr).decode(errors="replace")
    match = _SUMMARY.search(out)
    if not match:
        raise LabError(f"rbd bench on {pool}: no summary line in {out[-500:]!r}")
    return float(match.group(1)), int(match.group(2)), float(match.group(3))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds `pid` has used so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_quiet(lab: Lab, limit: float = 180.0) -> float:
    """Wait until the rbd-mirror daemon is idle (< 5% of a core for 3 s); seconds waited.

    On this 2-core lab the daemon shares the CPUs with the writer and the OSDs: left to replay
    a journal backlog (or copy a snapshot) during the next state's run, it would charge its work
    to that state. Bounded: `limit` seconds at most.
    """
    pids = list(lab.service_pids().values())
    start = time.monotonic()
    quiet = 0
    last = sum(cpu_seconds(p) for p in pids)
    for _ in range(int(limit)):
        time.sleep(1.0)
        now = sum(cpu_seconds(p) for p in pids)
        quiet = quiet + 1 if now - last < 0.05 else 0
        last = now
        if quiet >= 3:
            break
    return time.monotonic() - start


def mirror_snapshot_ids(lab: Lab, pool: str) -> set[int]:
    """The ids of the source image's mirror snapshots now."""
    snaps = lab.src.rbd_json("snap", "ls", "--all", f"{pool}/{IMAGE}")
    return {s["id"] for s in snaps if s.get("namespace", {}).get("type") == "mirror"}


def set_up(lab: Lab, size_mib: int, interval: str) -> None:
    """The three pools and images, written in full; b and c mirrored by the charm's actions."""
    from ops import testing

    from tests.functional.charm_host import CharmHost, enter_private_etc_ceph

    lab.up()
    enter_private_etc_ceph(lab)
    for pool in POOLS.values():
        start = time.monotonic()
        make_images(lab, pool, 1, size_mib=size_mib)
        print(f"setup: {pool}/{IMAGE}, {size_mib} MiB written in {time.monotonic() - start:.1f}s")
    config = {
        "pools": f"{POOLS['b']},{POOLS['c']}",
        "snapshot-interval": interval,
        "mirror-mode": "journal",
    }
    host = CharmHost(lab)  # this process's unit: relates (destination pools, the daemon), waits
    host.state = testing.State(leader=True, relations=host.state.relations, config=config)
    host.relate()
    for state, mode in (("b", "journal"), ("c", "snapshot")):
        figures = charm_action(
            lab, {**config, "mirror-mode": mode}, "enable-mirroring", pools=POOLS[state]
        )
        print(f"setup: enable-mirroring {POOLS[state]} ({mode}) in {figures['seconds']:.1f}s")
        print(f"   results: {figures['results']}", flush=True)
    start = time.monotonic()
    ok = wait_for(
        lambda: all(image_state(lab, f"{POOLS[s]}/{IMAGE}") == "up+replaying" for s in "bc"),
        timeout=600,
        interval=2,
    )
    if not ok:
        raise LabError("the mirrored images never both up+replaying")
    ready = wait_for(
        lambda: host.action("status")[0].get("ready-for-cutover") == "true",
        timeout=600,
        interval=5,
    )
    print(
        f"setup: both mirrored images up+replaying, charm status ready-for-cutover={ready}, "
        f"{time.monotonic() - start:.0f}s after enable",
        flush=True,
    )
    for state in "bc":
        spec = f"{POOLS[state]}/{IMAGE}"
        features = lab.src.rbd_json("info", spec)["features"]
        mode = lab.src.rbd_json("mirror", "pool", "info", POOLS[state])["mode"]
        print(f"setup: {spec}: source pool mode {mode}, features {','.join(features)}")


def schedule_snapshots(lab: Lab, interval: str, stop: threading.Event) -> threading.Thread | None:
    """Snapshot mode's periodic mirror snapshots of lat-snap, if the charm left none running.

    When the charm's source key may not set the mgr's schedule, the charm says so
    (`schedule: self`) and takes the snapshots itself on update-status, which no hook runs
    here: so the source's mgr gets the schedule as admin, or, if that fails too, a thread takes
    `rbd mirror image snapshot` every interval, as the charm's update-status would.
    """
    pool = POOLS["c"]
    base = ["rbd", "--cluster", "src", "-c", str(lab.src.conf), "mirror"]
    listed = lab.src.run([*base, "snapshot", "schedule", "ls", "--pool", pool], check=False)
    if listed.returncode == 0 and listed.stdout.strip():
        print(f"setup: {pool}: the charm's schedule: {listed.stdout.decode().strip()}")
        return None
    add = [*base, "snapshot", "schedule", "add", "--pool", pool, interval]
    added = lab.src.run(add, check=False)
    listed = lab.src.run([*base, "snapshot", "schedule", "ls", "--pool", pool], check=False)
    print(
        f"setup: {pool}: admin `mirror snapshot schedule add {interval}`: rc={added.returncode} "
        f"{added.stderr.decode().strip()[-300:]}; ls: rc={listed.returncode} "
        f"{(listed.stdout + listed.stderr).decode().strip()[-300:]}",
        flush=True,
    )
    if added.returncode == 0:
        return None
    seconds = interval_seconds(interval)

    def loop() -> None:
        while not stop.wait(seconds):
            lab.src.run([*base, "image", "snapshot", f"{pool}/{IMAGE}"], check=False, timeout=120)

    print(f"setup: {pool}: a thread takes a mirror snapshot every {seconds}s instead", flush=True)
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def measure(lab: Lab, seconds: float, repeats: int) -> dict[str, list[float]]:
    """Calibrate, warm up, then `repeats` interleaved rounds; each state's latencies (ms)."""
    probe = 64 * 1024 * 1024  # 16384 writes: a few seconds, the image's objects all exist
    io_total = probe  # set from state (a)'s warm-up below
    for state, pool in POOLS.items():  # warm-up: the journal's first objects, caches
        waited = wait_quiet(lab)
        _, _, rate = rbd_bench(lab, pool, probe)
        print(
            f"warm-up {state} ({STATES[state]}): {rate:.0f} ops/s (not counted; daemon idle "
            f"after {waited:.0f}s)",
            flush=True,
        )
        if state == "a":
            io_total = max(probe // 16, int(rate * seconds) * IO_SIZE)
    print(
        f"calibration on {POOLS['a']}'s warm-up: --io-total {io_total} "
        f"({io_total // IO_SIZE} writes of 4K) in every state",
        flush=True,
    )
    latency: dict[str, list[float]] = {s: [] for s in POOLS}
    snapshots_seen = 0
    for n in range(repeats):
        for state, pool in POOLS.items():
            waited = wait_quiet(lab)
            before = mirror_snapshot_ids(lab, pool) if state == "c" else set()
            elapsed, ops, rate = rbd_bench(lab, pool, io_total)
            note = f"  (daemon idle {waited:.0f}s before)"
            if state == "c":
                taken = len(mirror_snapshot_ids(lab, pool) - before)
                snapshots_seen += taken
                note += f"  mirror snapshots taken meanwhile: {taken}"
            latency[state].append(1000.0 / rate)
            ratio = latency[state][-1] / latency["a"][-1]
            print(
                f"repeat {n + 1} {state} ({STATES[state]:13}): {ops} ops in {elapsed:.0f}s, "
                f"{rate:7.1f} ops/s, avg latency {latency[state][-1]:.3f} ms, "
                f"x{ratio:.2f} of a{note}",
                flush=True,
            )
    print(f"mirror snapshots of {POOLS['c']}/{IMAGE} during the measured runs: {snapshots_seen}")
    return latency


def summary(latency: dict[str, list[float]]) -> None:
    """Medians, and the latency ratios to the baseline (per repeat, and their median)."""
    for state, values in latency.items():
        med = statistics.median(values)
        print(f"median {state} ({STATES[state]:13}): {1000.0 / med:7.1f} ops/s, {med:.3f} ms")
    for state in "bc":
        ratios = [x / a for x, a in zip(latency[state], latency["a"], strict=True)]
        listed = ", ".join(f"{r:.2f}" for r in ratios)
        print(
            f"latency({state})/latency(a), {STATES[state]}: per repeat {listed}; median "
            f"x{statistics.median(ratios):.2f} (ratio of medians "
            f"x{statistics.median(latency[state]) / statistics.median(latency['a']):.2f})",
            flush=True,
        )


def main() -> int:
    """Parse arguments, run in a fresh lab, stop it."""
    parser = argparse.ArgumentParser(prog="python -m bench.write_latency")
    parser.add_argument("--seconds", type=float, default=10.0, help="about how long each run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--interval", default="1m", help="snapshot mode's snapshot-interval")
    args = parser.parse_args()
    lab = Lab(Path(tempfile.mkdtemp(prefix="rbd-mirror-latency-")))
    stop = threading.Event()
    thread = None
    try:
        set_up(lab, args.size_mib, args.interval)
        thread = schedule_snapshots(lab, args.interval, stop)
        summary(measure(lab, args.seconds, args.repeats))
    except LabError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    finally:
        stop.set()
        if thread is not None:
            thread.join(timeout=150)
        lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
