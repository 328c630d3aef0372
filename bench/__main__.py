"""Benchmarks on the lab: the charm's actions against the manual procedure, in the same run.

    python -m bench [--images 200] [--big-mib 1024] [--mode journal|snapshot] [--out FILE]
                    [--baseline-workers 1] [--skip-cutover] [--skip-seeded] [--timeline]

Two pools of N images each on the source: `bench-a` is migrated by hand (the seed's serial loops
and bare commands), `bench-b` by the charm's actions (its real handlers, as in the demo). Every
figure is printed with its ratio to the baseline measured here. No figure is asserted.

`--mode snapshot` runs the charm with config mirror-mode snapshot (snapshot-interval 1m) and the
manual baseline in the same mode: image-mode pools, `rbd mirror image enable IMG snapshot` per
image (a mirror snapshot schedule of 1m on `bench-a`, as admin), and for row 4 the time from
`mirror image enable` until the destination holds a complete copy of that first snapshot.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from tests.functional.lab import Lab
from tests.functional.lab.procs import LabError, run, wait_for

HERE = Path(__file__).resolve().parent
SYSTEM_PYTHON = "/usr/bin/python3"
TIMELINE = False  # --timeline: print each charm action's Ceph calls
PEER = "client.rbd-mirror-migration@source"
BIG_POOL = "bench-big"
MODE = "journal"  # --mode: the charm's mirror-mode, and the manual baseline's
BASELINE_WORKERS = 1  # --baseline-workers: row 1's manual loop, run this many at once
SNAPSHOT_INTERVAL = "1m"
POOL_MODE = {"journal": "pool", "snapshot": "image"}
T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """(seconds, result) of fn()."""
    start = time.monotonic()
    result = fn()
    return time.monotonic() - start, result


def charm_action(lab: Lab, config: dict, action: str, **params) -> dict:
    """Run one action in a fresh process (bench/charm_action.py), as a hook runs; its figures."""
    proc = run(
        [
            sys.executable,
            "-m",
            "bench.charm_action",
            str(lab.base),
            json.dumps(config),
            action,
            json.dumps(params),
        ],
        timeout=1800,
    )
    figures = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    if TIMELINE:
        print(f"   {action}: the Ceph calls, each with when it ended (s):", flush=True)
        for line in figures.get("calls", []):
            print(f"     {line}", flush=True)
    if "error" in figures:
        raise LabError(f"{action} failed: {figures['error']}")
    return figures


def make_images(
    lab: Lab, pool: str, count: int, size_mib: int = 4, first: int = 0, create_pool: bool = True
) -> None:
    """Create `count` images with data (img<first> on) in an rbd pool on src."""
    if create_pool:
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
            str(first),
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


def pool_states(lab: Lab, pool: str) -> dict[str, int]:
    """How many images of `pool` the destination reports in each state."""
    status = lab.dst.rbd_json("mirror", "pool", "status", pool, "--verbose")
    states: dict[str, int] = {}
    for image in status.get("images", []):
        states[image["state"]] = states.get(image["state"], 0) + 1
    return states


def stopped(states: dict[str, int], count: int) -> bool:
    """All `count` images stopped replaying (each is primary on the destination now)."""
    return sum(n for state, n in states.items() if state.endswith("+stopped")) == count


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
    lab: Lab,
    images: int,
    big_mib: int,
    *,
    seeded: bool = True,
    cutover: bool = True,
    management_ops: int = 0,
) -> list[dict]:
    """Run every benchmark; return the rows."""
    from tests.functional.charm_host import CharmHost, enter_private_etc_ceph

    rows: list[dict] = []
    lab.up()
    enter_private_etc_ceph(lab)
    if seeded:
        rows += bench_seeded_sync(lab)
    for pool in ("bench-a", "bench-b"):
        seconds, _ = timed(lambda p=pool: make_images(lab, p, images))
        print(f"setup: {images} images in {pool} in {seconds:.1f}s", flush=True)
    host = CharmHost(lab)  # this process's unit: waits only; measured actions run in children
    from ops import testing

    # The charm manages bench-b only (its unit status reads just that pool, as in a real
    # migration); bench-a's destination pool is created by hand, as the runbook does.
    config: dict[str, str | int] = {"pools": "bench-b", "mirror-mode": MODE}
    if MODE == "snapshot":
        config["snapshot-interval"] = SNAPSHOT_INTERVAL
    if management_ops:
        config["rbd-concurrent-management-ops"] = management_ops
    host.state = testing.State(leader=True, relations=host.state.relations, config=config)
    host.relate()

    rows += bench_enable_and_status(lab, config, images)
    if cutover:
        wait_until_ready(lab, host, images)
        rows += bench_cutover(lab, config, images)
        rows += bench_verify(lab, "bench-b", f"{images} images of 4 MiB, 1 MiB of data each")

    # 4. initial sync of one big image vs rbd export | rbd import.
    if big_mib:
        rows += bench_sync(lab, big_mib)
        cut_over_by_hand(lab, BIG_POOL)
        rows += bench_verify(lab, BIG_POOL, f"the {big_mib} MiB images of row 4 and a 4 MiB one")
    return rows


def bench_enable_and_status(lab: Lab, config: dict, images: int) -> list[dict]:
    """1, 2 and 5: enable-mirroring and status against the manual loops, and their memory."""
    rows: list[dict] = []
    # 1. enable-mirroring vs the seed's serial loop.
    rbd_cli(lab.src, "mirror", "pool", "enable", "bench-a", POOL_MODE[MODE])
    names = lab.src.rbd_json("ls", "bench-a")

    def one(name: str) -> None:
        if MODE == "snapshot":
            rbd_cli(lab.src, "mirror", "image", "enable", f"bench-a/{name}", "snapshot")
        else:
            rbd_cli(lab.src, "feature", "enable", f"bench-a/{name}", "journaling")

    def loop() -> None:  # the seed's serial loop, or BASELINE_WORKERS of them side by side
        with ThreadPoolExecutor(max_workers=BASELINE_WORKERS) as workers:
            list(workers.map(one, names))

    base, _ = timed(loop)
    enable = charm_action(lab, config, "enable-mirroring", pools="bench-b")
    parallel = f", {BASELINE_WORKERS} loops in parallel" if BASELINE_WORKERS > 1 else ""
    report(
        rows,
        f"1. enable-mirroring, {images} images",
        base,
        enable["seconds"],
        note=f"charm started {enable['processes']} processes (baseline {images}{parallel})",
    )
    lab.dst.ceph("osd", "pool", "create", "bench-a", "32", "32")
    rbd_cli(lab.dst, "pool", "init", "bench-a")
    rbd_cli(lab.dst, "mirror", "pool", "enable", "bench-a", POOL_MODE[MODE])
    rbd_cli(lab.dst, "mirror", "pool", "peer", "add", "bench-a", PEER, "--direction", "rx-only")
    if MODE == "snapshot":  # the snapshots taken at enable list no peer yet: the schedule's do
        rbd_cli(
            lab.src, "mirror", "snapshot", "schedule", "add", "--pool", "bench-a",
            SNAPSHOT_INTERVAL,
        )  # fmt: skip

    # 2. status vs a per-image `rbd info` loop (on the source, while the first sync runs).
    def info_loop() -> None:
        for name in names:
            rbd_cli(lab.src, "info", f"bench-a/{name}")

    base, _ = timed(info_loop)
    status = charm_action(lab, config, "status", pools="bench-b")
    report(
        rows,
        f"2. status, {images} images, 1 pool",
        base,
        status["seconds"],
        note=f"charm started {status['processes']} processes incl. collect-status "
        f"(baseline {images})",
    )
    rows += memory_rows(images, {"enable-mirroring": enable, "status": status})

    return rows


def wait_until_ready(lab: Lab, host, images: int) -> None:
    """Both pools replaying, and the charm's status ready for the cutover."""
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


def memory_rows(images: int, figures: dict[str, dict]) -> list[dict]:
    """5. Peak RSS of the process that ran each action, and of its largest child (a helper)."""
    rows = []
    for action, f in figures.items():
        print(
            f"5. peak RSS, {action}, {images} images: charm process {f['peak_rss_mib']:.0f} MiB "
            f"during the action ({f['rss_before_mib']:.0f} MiB before it), largest child "
            f"process {f['child_peak_rss_mib']:.0f} MiB",
            flush=True,
        )
        rows.append(
            {
                "benchmark": f"5. peak RSS, {action}, {images} images",
                "charm": f["peak_rss_mib"],
                "unit": "MiB",
                "note": f"before the action {f['rss_before_mib']} MiB; largest child "
                f"{f['child_peak_rss_mib']} MiB",
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


def bench_cutover(lab: Lab, config: dict, images: int) -> list[dict]:
    """demote-promote vs bare `pool demote` + `pool promote` retried until rc=0."""
    rows: list[dict] = []

    def bare() -> int:
        rbd_cli(lab.src, "mirror", "pool", "demote", "bench-a")
        attempts = 0
        while rbd_cli(lab.dst, "mirror", "pool", "promote", "bench-a", check=False).returncode:
            attempts += 1
            time.sleep(1)
        return attempts

    base, rounds = timed(bare)
    # Let the daemon finish stopping bench-a's replayers before the charm's cutover starts,
    # so that the second cutover does not pay for the first one's aftermath.
    settle, settled = timed(
        lambda: wait_for(
            lambda: stopped(pool_states(lab, "bench-a"), images), timeout=120, interval=2
        )
    )
    print(f"bench-a settled (all up+stopped) {settle:.0f}s after its cutover: {settled}")
    ours = charm_action(lab, config, "demote-promote", pools="bench-b")
    report(
        rows,
        f"3. demote-promote, {images} images",
        base,
        ours["seconds"],
        note=f"overhead {100 * (ours['seconds'] - base) / base:+.0f}% (includes preflight and "
        f"verify; {ours['results']['seconds']}s inside the workflow); promote rounds: bare "
        f"{rounds + 1}, charm {ours['results']['attempts']}",
    )
    return rows


def cut_over_by_hand(lab: Lab, pool: str) -> None:
    """`pool demote` on the source, `pool promote` on the destination retried until it works."""
    rbd_cli(lab.src, "mirror", "pool", "demote", pool)
    if not wait_for(
        lambda: rbd_cli(lab.dst, "mirror", "pool", "promote", pool, check=False).returncode == 0,
        timeout=300,
        interval=1,
    ):
        raise LabError(f"{pool}: never promoted on the destination")


def export_all(cluster, pool: str, names: list[str]) -> int:
    """`rbd export` of every image of `pool`, one after the other, to nowhere; bytes exported."""
    total = 0
    for name in names:
        with subprocess.Popen(
            ["rbd", "--cluster", cluster.name, "-c", str(cluster.conf), "export",
             f"{pool}/{name}", "-", "--no-progress"],
            stdout=subprocess.PIPE,
        ) as proc:  # fmt: skip
            assert proc.stdout is not None
            while chunk := proc.stdout.read(1 << 20):
                total += len(chunk)
        if proc.returncode:
            raise LabError(f"rbd export {pool}/{name} on {cluster.name}: rc={proc.returncode}")
    return total


def bench_verify(lab: Lab, pool: str, what: str) -> list[dict]:
    """6. A full `verify` of a cut-over pool vs reading both sides raw, side by side.

    The baseline exports every image of the pool on each side (`rbd export`, one side per
    thread, at once): what an operator does to checksum both copies by hand.
    """
    names = lab.src.rbd_json("ls", pool)
    with ThreadPoolExecutor(max_workers=2) as sides:
        start = time.monotonic()
        exported = sum(sides.map(lambda c: export_all(c, pool, names), (lab.src, lab.dst)))
        base = time.monotonic() - start
    ours = charm_action(lab, {"pools": pool}, "verify", pools=pool)
    results = ours["results"]
    if int(results["mismatch-count"]):
        raise LabError(f"verify found mismatches in {pool}: {results['mismatches']}")
    rows: list[dict] = []
    mib = 1024 * 1024
    report(
        rows,
        f"6. verify (full), {len(names)} images in {pool}",
        base,
        ours["seconds"],
        note=f"{what}; raw: {exported / mib:.0f} MiB exported at {exported / mib / base:.0f} "
        f"MiB/s; verify: {int(results['bytes-read']) / mib:.0f} MiB read, "
        f"{results['seconds']} s inside the workflow, the action {ours['seconds']:.1f} s in all "
        f"= {100 * base / ours['seconds']:.0f}% of the raw read's speed",
    )
    return rows


def image_state(lab: Lab, spec: str) -> str:
    """The destination's published mirror status of one image ("" while there is none)."""
    proc = rbd_cli(lab.dst, "mirror", "image", "status", spec, "--format", "json", check=False)
    return json.loads(proc.stdout or b"{}").get("state", "") if proc.returncode == 0 else ""


def live_state(spec: str) -> str:
    """The daemon's own state of one image (its admin socket), e.g. "Replaying".

    The published status (`rbd mirror image status`) lags it: rbd-mirror writes statuses on a
    fixed 30-second timer (MirrorStatusUpdater) except for some transitions.
    """
    sockets = sorted(
        Path("/run/ceph").glob("ceph-client.rbd-mirror.*.asok"), key=lambda p: p.stat().st_mtime
    )
    if not sockets:
        return ""
    proc = run(
        ["ceph", "--admin-daemon", str(sockets[-1]), "rbd", "mirror", "status", spec],
        check=False,
        timeout=30,
    )
    try:
        return json.loads(proc.stdout or b"{}").get("state", "")
    except ValueError:
        return ""


def bench_sync(lab: Lab, big_mib: int, runs: int = 2) -> list[dict]:
    """Raw copy vs journal mirroring of one big image, `runs` times each.

    Mirroring is timed from `feature enable journaling` until the daemon itself says
    Replaying (its admin socket), with the pool replayer already running (as during a
    migration, once the first images replay); the published status is timed too.
    """
    rows: list[dict] = []
    pool = BIG_POOL
    lab.src.ceph("osd", "pool", "create", pool, "32", "32")
    lab.src.rbd("pool", "init", pool)
    rbd_cli(lab.src, "mirror", "pool", "enable", pool, POOL_MODE[MODE])
    lab.dst.ceph("osd", "pool", "create", "rawcopy", "32", "32")
    rbd_cli(lab.dst, "pool", "init", "rawcopy")
    lab.dst.ceph("osd", "pool", "create", pool, "32", "32")
    rbd_cli(lab.dst, "pool", "init", pool)
    rbd_cli(lab.dst, "mirror", "pool", "enable", pool, POOL_MODE[MODE])
    rbd_cli(lab.dst, "mirror", "pool", "peer", "add", pool, PEER, "--direction", "rx-only")
    # A small mirrored image proves the pool replayer runs before anything is timed.
    make_images(lab, pool, 1, size_mib=4, first=99, create_pool=False)
    if MODE == "snapshot":
        # Snapshots list the source's tx peers of their moment: wait for the daemon's.
        if not wait_for(lambda: tx_peer(lab, pool), timeout=300, interval=1):
            raise LabError(f"the daemon never registered on the source's {pool}")
        rbd_cli(lab.src, "mirror", "image", "enable", f"{pool}/img00099", "snapshot")
    else:
        rbd_cli(lab.src, "feature", "enable", f"{pool}/img00099", "journaling")
    if not wait_for(
        lambda: image_state(lab, f"{pool}/img00099") == "up+replaying", timeout=300, interval=1
    ):
        raise LabError("the bench-big pool replayer never started")
    raws, lives, published = [], [], []
    for n in range(runs):
        make_images(lab, pool, 1, size_mib=big_mib, first=n, create_pool=False)
        spec = f"{pool}/img{n:05d}"
        raws.append(timed(lambda s=spec, n=n: raw_copy(lab, s, f"rawcopy/copy{n}"))[0])
        rbd_cli(lab.dst, "rm", f"rawcopy/copy{n}", "--no-progress")
        live, shown = (sync_times_snapshot if MODE == "snapshot" else sync_times)(lab, spec)
        lives.append(live)
        published.append(shown)
        print(
            f"sync run {n + 1}: raw {raws[-1]:.2f}s; mirror replaying after {live:.2f}s, "
            f"published as up+replaying after {shown:.2f}s",
            flush=True,
        )
    raw, live, shown = (statistics.mean(x) for x in (raws, lives, published))
    report(
        rows,
        f"4. initial sync of a {big_mib} MiB image, mean of {runs}, {MODE} mode",
        raw,
        live,
        note=f"raw {big_mib / raw:.0f} MiB/s, mirror {big_mib / live:.0f} MiB/s "
        f"= {100 * raw / live:.0f}% of raw; the published status said up+replaying "
        f"{shown - live:.1f}s later",
    )
    return rows


def sync_times(lab: Lab, spec: str) -> tuple[float, float]:
    """Enable journaling on `spec`; seconds until the daemon replays it, and until published."""
    start = time.monotonic()
    rbd_cli(lab.src, "feature", "enable", spec, "journaling")
    live = None
    while time.monotonic() < start + 1800:
        if live is None and live_state(spec) == "Replaying":
            live = time.monotonic() - start
        if image_state(lab, spec) == "up+replaying":
            shown = time.monotonic() - start
            return (live if live is not None else shown), shown
        time.sleep(0.25)
    raise LabError(f"{spec} never replayed")


def tx_peer(lab: Lab, pool: str) -> bool:
    """The source's `pool` lists a tx-only peer: the destination's daemon registered there."""
    info = lab.src.rbd_json("mirror", "pool", "info", pool)
    return any(p.get("direction") in ("tx-only", 1, "1") for p in info.get("peers", []))


def copied_snapshot(lab: Lab, spec: str) -> bool:
    """The destination's `spec` holds a complete non-primary mirror snapshot (a full copy)."""
    proc = rbd_cli(lab.dst, "snap", "ls", "--all", spec, "--format", "json", check=False)
    if proc.returncode:
        return False
    for snap in json.loads(proc.stdout or b"[]"):
        ns = snap.get("namespace", {})
        if (
            ns.get("type") == "mirror"
            and "non-primary" in ns.get("state", "")
            and ns.get("complete")
        ):
            return True
    return False


def sync_times_snapshot(lab: Lab, spec: str) -> tuple[float, float]:
    """Snapshot-mirror `spec`; seconds until dst holds a complete copy, and until published.

    `mirror image enable` takes the first mirror snapshot (the daemon is the pool's tx peer
    already); the copy is done when the destination's non-primary snapshot is complete.
    """
    start = time.monotonic()
    rbd_cli(lab.src, "mirror", "image", "enable", spec, "snapshot")
    live = None
    while time.monotonic() < start + 1800:
        if live is None and copied_snapshot(lab, spec):
            live = time.monotonic() - start
        if live is not None and image_state(lab, spec) == "up+replaying":
            return live, time.monotonic() - start
        time.sleep(0.25)
    raise LabError(f"{spec} never copied")


def raw_copy(lab: Lab, spec: str, target: str) -> None:
    """`rbd export - | rbd import -` from src to dst: the manual way to move an image."""
    export = subprocess.Popen(
        ["rbd", "--cluster", "src", "-c", str(lab.src.conf), "export", spec, "-", "--no-progress"],
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
            target,
            "--no-progress",
        ],
        stdin=export.stdout,
        check=True,
        timeout=900,
    )
    export.wait(timeout=60)


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
        "--skip-cutover",
        action="store_true",
        help="stop after enable-mirroring, status and memory (for --images 1000)",
    )
    parser.add_argument(
        "--skip-seeded",
        action="store_true",
        help="skip the seeded-migration tuning comparison (about 3 minutes)",
    )
    parser.add_argument(
        "--mode",
        choices=sorted(POOL_MODE),
        default="journal",
        help="the charm's mirror-mode, and the manual baseline's (default journal)",
    )
    parser.add_argument(
        "--timeline", action="store_true", help="print each charm action's Ceph calls, timed"
    )
    parser.add_argument(
        "--baseline-workers",
        type=int,
        default=1,
        help="row 1's manual per-image loop, this many at once (default 1: the seed's serial "
        "loop; snapshot mode's takes about 1 s per image)",
    )
    args = parser.parse_args()
    global TIMELINE, MODE, BASELINE_WORKERS
    TIMELINE = args.timeline
    MODE = args.mode
    BASELINE_WORKERS = max(1, args.baseline_workers)
    print(f"mode: {MODE}", flush=True)
    lab = Lab(Path(tempfile.mkdtemp(prefix="rbd-mirror-bench-")))
    try:
        rows = bench(
            lab,
            args.images,
            args.big_mib,
            seeded=not args.skip_seeded,
            cutover=not args.skip_cutover,
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
