"""Benchmarks on the lab: the charm's actions against the manual procedure, in the same run.

    python -m bench [--images 200] [--big-mib 1024] [--out BENCHMARKS.json]

Two pools of N images each on the source: `bench-a` is migrated by hand (the seed's serial loops
and bare commands), `bench-b` by the charm's actions (its real handlers, as in the demo). Every
figure is printed with its ratio to the baseline measured here. No figure is asserted.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.functional.lab import Lab
from tests.functional.lab.procs import LabError, run, wait_for

HERE = Path(__file__).resolve().parent
SYSTEM_PYTHON = "/usr/bin/python3"
PEER = "client.rbd-mirror-migration@source"


class Counter:
    """Counts the processes this Python process starts (audit hook on subprocess.Popen)."""

    def __init__(self):
        self.on = False
        self.count = 0
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args) -> None:
        if self.on and event == "subprocess.Popen":
            self.count += 1

    def measure(self, fn):
        """Run fn; return (seconds, processes started, result)."""
        self.count, self.on = 0, True
        start = time.monotonic()
        try:
            result = fn()
        finally:
            self.on = False
        return time.monotonic() - start, self.count, result


def timed(fn) -> tuple[float, object]:
    """(seconds, result) of fn()."""
    start = time.monotonic()
    result = fn()
    return time.monotonic() - start, result


def make_images(lab: Lab, pool: str, count: int, size_mib: int = 4) -> None:
    """Create `count` images with data in a new rbd pool on src."""
    lab.src.ceph("osd", "pool", "create", pool, "32", "32")
    lab.src.rbd("pool", "init", pool)
    run(
        [
            SYSTEM_PYTHON,
            str(HERE / "make_images.py"),
            str(lab.src.conf),
            "src",
            pool,
            str(count),
            str(size_mib),
        ],
        timeout=1800,
    )


def rbd_cli(lab_cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """One rbd command as admin (the baseline's tool)."""
    return run(
        ["rbd", "--cluster", lab_cluster.name, "-c", str(lab_cluster.conf), *args],
        check=check,
        timeout=300,
    )


def replaying(lab: Lab, pool: str, count: int) -> bool:
    """All `count` images of `pool` up+replaying on dst."""
    status = lab.dst.rbd_json("mirror", "pool", "status", pool, "--verbose")
    states = [i["state"] for i in status.get("images", [])]
    return len(states) == count and all(s == "up+replaying" for s in states)


def report(
    rows: list[dict], name: str, baseline: float, ours: float, unit: str = "s", note: str = ""
) -> None:
    """Print and keep one comparison row."""
    ratio = baseline / ours if ours else float("inf")
    rows.append(
        {
            "benchmark": name,
            "baseline": round(baseline, 2),
            "charm": round(ours, 2),
            "unit": unit,
            "speedup": round(ratio, 2),
            "note": note,
        }
    )
    print(
        f"{name:58} baseline {baseline:8.2f}{unit}  charm {ours:8.2f}{unit}  "
        f"ratio {ratio:5.2f}x  {note}",
        flush=True,
    )


def bench(
    lab: Lab, images: int, big_mib: int, seeded: bool = True, management_ops: int = 0
) -> list[dict]:
    """Run every benchmark; return the rows."""
    from tests.functional.charm_host import CharmHost, enter_private_etc_ceph

    rows: list[dict] = []
    counter = Counter()
    lab.up()
    enter_private_etc_ceph(lab)
    if seeded:
        rows += bench_seeded_sync(lab)
    for pool in ("bench-a", "bench-b"):
        seconds, _ = timed(lambda p=pool: make_images(lab, p, images))
        print(f"setup: {images} images in {pool} in {seconds:.1f}s", flush=True)
    host = CharmHost(lab)
    from ops import testing

    config: dict[str, str | int] = {"pools": "bench-a,bench-b"}
    if management_ops:
        config["rbd-concurrent-management-ops"] = management_ops
    host.state = testing.State(leader=True, relations=host.state.relations, config=config)
    host.relate()

    # 1. enable-mirroring vs the seed's serial loop.
    rbd_cli(lab.src, "mirror", "pool", "enable", "bench-a", "pool")
    names = lab.src.rbd_json("ls", "bench-a")

    def serial() -> None:
        for name in names:
            rbd_cli(lab.src, "feature", "enable", f"bench-a/{name}", "journaling")

    base, _ = timed(serial)
    ours, procs, _ = counter.measure(lambda: host.action("enable-mirroring", pools="bench-b"))
    report(
        rows,
        f"1. enable-mirroring, {images} images",
        base,
        ours,
        note=f"charm started {procs} processes (baseline {images})",
    )
    rbd_cli(lab.dst, "mirror", "pool", "enable", "bench-a", "pool")
    rbd_cli(lab.dst, "mirror", "pool", "peer", "add", "bench-a", PEER, "--direction", "rx-only")

    # 2. status vs a per-image `rbd info` loop (on the source, before any sync).
    def info_loop() -> None:
        for name in names:
            rbd_cli(lab.src, "info", f"bench-a/{name}")

    base, _ = timed(info_loop)
    ours, procs, _ = counter.measure(lambda: host.action("status", pools="bench-b"))
    report(
        rows,
        f"2. status, {images} images, 1 pool",
        base,
        ours,
        note=f"charm started {procs} processes incl. collect-status (baseline {images})",
    )

    # Wait for both pools to replay before the cutover benchmarks.
    seconds, ok = timed(
        lambda: wait_for(
            lambda: replaying(lab, "bench-a", images) and replaying(lab, "bench-b", images),
            timeout=1800,
            interval=5,
        )
    )
    if not ok:
        raise LabError("pools never all replaying")
    print(f"sync: {2 * images} images replaying {seconds:.0f}s after enable", flush=True)
    wait_for(
        lambda: host.action("status")[0]["ready-for-cutover"] == "true", timeout=300, interval=5
    )

    rows += bench_cutover(lab, host, counter, images)

    # 4. initial sync of one big image vs rbd export | rbd import.
    if big_mib:
        rows += bench_sync(lab, host, big_mib)

    # 5. peak memory of this process (the charm runs in it, as in a hook).
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"5. peak RSS of the process running the charm's handlers: {peak:.0f} MiB", flush=True)
    rows.append(
        {
            "benchmark": "5. peak RSS of the charm process",
            "charm": round(peak),
            "unit": "MiB",
            "note": f"{images} images per pool",
        }
    )
    return rows


CEPH_DEFAULT_TUNING = {
    "rbd-mirror-pool-replayers-refresh-interval": 30,
    "rbd-mirror-image-state-check-interval": 30,
    "rbd-concurrent-management-ops": 10,
    "rbd-mirror-concurrent-image-syncs": 5,
}


def bench_seeded_sync(lab: Lab) -> list[dict]:
    """The OpenStack seed: enable-mirroring to ready-for-cutover, Ceph's tuning vs the charm's."""
    from ops import testing

    from tests.functional.charm_host import CharmHost
    from tests.functional.lab.seed import seed

    times = {}
    for name, config in (("ceph defaults", CEPH_DEFAULT_TUNING), ("charm defaults", {})):
        lab.reset()
        seed(lab.src)
        host = CharmHost(lab)
        host.state = testing.State(leader=True, relations=host.state.relations, config=config)
        host.relate()
        start = time.monotonic()
        host.action("enable-mirroring")
        ok = wait_for(
            lambda h=host: h.action("status")[0]["ready-for-cutover"] == "true",
            timeout=900,
            interval=2,
        )
        times[name] = time.monotonic() - start
        print(
            f"seeded migration ({name}): ready for cutover {times[name]:.1f}s after "
            f"enable-mirroring{'' if ok else ' (TIMED OUT)'}",
            flush=True,
        )
    lab.reset()
    rows: list[dict] = []
    report(
        rows,
        "4b. seeded migration (7 images) enable -> ready",
        times["ceph defaults"],
        times["charm defaults"],
        note="baseline = Ceph's default daemon tuning",
    )
    return rows


def bench_cutover(lab: Lab, host, counter: Counter, images: int) -> list[dict]:
    """demote-promote vs bare `pool demote` + `pool promote` retried until rc=0."""
    rows: list[dict] = []

    def bare() -> int:
        rbd_cli(lab.src, "mirror", "pool", "demote", "bench-a")
        attempts = 0
        while rbd_cli(lab.dst, "mirror", "pool", "promote", "bench-a", check=False).returncode:
            attempts += 1
            time.sleep(1)
        return attempts

    base, _ = timed(bare)
    ours, procs, _ = counter.measure(lambda: host.action("demote-promote", pools="bench-b"))
    report(
        rows,
        f"3. demote-promote, {images} images",
        base,
        ours,
        note=f"overhead {100 * (ours - base) / base:+.0f}% (includes preflight and verify)",
    )
    return rows


def bench_sync(lab: Lab, host, big_mib: int) -> list[dict]:
    """Raw copy vs journal mirroring of one big image (time to up+replaying)."""
    rows: list[dict] = []
    make_images(lab, "bench-big", 1, size_mib=big_mib)
    lab.dst.ceph("osd", "pool", "create", "rawcopy", "32", "32")

    def raw() -> None:
        export = subprocess.Popen(
            [
                "rbd",
                "--cluster",
                "src",
                "-c",
                str(lab.src.conf),
                "export",
                "bench-big/img00000",
                "-",
                "--no-progress",
            ],
            stdout=subprocess.PIPE,
        )
        subprocess.run(
            [
                "rbd",
                "--cluster",
                "dst",
                "-c",
                str(lab.dst.conf),
                "import",
                "-",
                "rawcopy/img00000",
                "--no-progress",
            ],
            stdin=export.stdout,
            check=True,
            timeout=900,
        )
        export.wait(timeout=60)

    base, _ = timed(raw)
    rbd_cli(lab.src, "mirror", "pool", "enable", "bench-big", "pool")
    lab.dst.ceph("osd", "pool", "create", "bench-big", "32", "32")
    rbd_cli(lab.dst, "pool", "init", "bench-big")
    rbd_cli(lab.dst, "mirror", "pool", "enable", "bench-big", "pool")
    rbd_cli(lab.dst, "mirror", "pool", "peer", "add", "bench-big", PEER, "--direction", "rx-only")
    start = time.monotonic()
    rbd_cli(lab.src, "feature", "enable", "bench-big/img00000", "journaling")
    wait_for(lambda: replaying(lab, "bench-big", 1), timeout=1800, interval=0.5)
    ours = time.monotonic() - start
    report(
        rows,
        f"4. initial sync of a {big_mib} MiB image (to up+replaying)",
        base,
        ours,
        note=f"raw {big_mib / base:.0f} MiB/s, mirror {big_mib / ours:.0f} MiB/s "
        f"= {100 * base / ours:.0f}% of raw",
    )
    return rows


def main() -> int:
    """Parse arguments, run in a fresh lab, stop it, write the rows as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--management-ops",
        type=int,
        default=0,
        help="rbd-concurrent-management-ops for the charm (default: its own)",
    )
    parser.add_argument(
        "--skip-seeded",
        action="store_true",
        help="skip the seeded-migration tuning comparison (about 3 minutes)",
    )
    args = parser.parse_args()
    lab = Lab(Path(tempfile.mkdtemp(prefix="rbd-mirror-bench-")))
    try:
        rows = bench(
            lab,
            args.images,
            args.big_mib,
            seeded=not args.skip_seeded,
            management_ops=args.management_ops,
        )
    except LabError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    finally:
        lab.down()
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
