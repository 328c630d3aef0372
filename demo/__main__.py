"""The migration demo: two local Ceph clusters, the charm's own handlers, md5-verified result.

    python -m demo [--keep] [--dir DIR]

Brings up `src` and `dst` on 127.0.0.1, seeds `src` with an OpenStack layout, relates the charm
to the lab's ceph-proxy and ceph-mon stand-ins, then runs enable-mirroring, status (until ready),
demote-promote and teardown, and prints a table of every image's md5 on both sides.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from tests.functional.lab import Lab, LabError
from tests.functional.lab.seed import POOLS, images, md5_all, seed

SYNC_TIMEOUT_S = 600


def say(msg: str, t0: float) -> None:
    """Print a progress line with the elapsed time."""
    print(f"[{time.monotonic() - t0:6.1f}s] {msg}", flush=True)


def run_demo(lab: Lab) -> bool:
    """Run every step; return True when every destination md5 equals the source's."""
    from tests.functional.charm_host import CharmHost, enter_private_etc_ceph

    t0 = time.monotonic()
    say(f"lab: bringing up src and dst under {lab.base}", t0)
    lab.up()
    say(f"lab: src {lab.src.health()}, dst {lab.dst.health()}", t0)
    before = seed(lab.src)
    say(f"seed: {len(before)} images in {', '.join(POOLS)} (md5 recorded)", t0)
    enter_private_etc_ceph(lab)
    host = CharmHost(lab)
    for hook, endpoint in (
        ("install", None),
        ("relation_changed", "source"),
        ("relation_changed", "destination"),
    ):
        host.hook(hook, endpoint)
    say(f"charm: related; unit status: {host.state.unit_status.message}", t0)
    host.play_remote_charms()
    say(
        f"ceph-mon: broker reply {host.broker_response()['exit-code']}; "
        f"unit status: {host.state.unit_status.message}",
        t0,
    )
    results, logs = host.action("enable-mirroring")
    for line in logs:
        say(f"  enable-mirroring: {line}", t0)
    deadline = time.monotonic() + SYNC_TIMEOUT_S
    while True:
        results, _ = host.action("status")
        say(f"status: {results['phase']}", t0)
        if results["ready-for-cutover"] == "true":
            break
        if time.monotonic() > deadline:
            raise LabError(f"not ready after {SYNC_TIMEOUT_S}s: {results['reasons']}")
        time.sleep(5)
    say("cutover: (a real cloud stops its instances here)", t0)
    results, logs = host.action("demote-promote")
    for line in logs:
        say(f"  demote-promote: {line}", t0)
    say(f"demote-promote: {results['seconds']}s, {results['attempts']} promote round(s)", t0)
    results, logs = host.action("teardown")
    for line in logs:
        say(f"  teardown: {line}", t0)
    host.hook("update_status")
    say(f"unit status: {host.state.unit_status.message}", t0)
    after = md5_all(lab.dst)
    return print_table(lab, before, after, t0)


def print_table(lab: Lab, before: dict[str, str], after: dict[str, str], t0: float) -> bool:
    """Print src/dst md5 per image and the clone links; return True if all match."""
    print(f"\n{'image':60} {'source md5':32}  {'destination md5':32}  ok")
    for name in sorted(before):
        ok = before[name] == after.get(name)
        print(f"{name:60} {before[name]:32}  {after.get(name, '-'):32}  {'yes' if ok else 'NO'}")
    parents = {d: lab.dst.rbd_json("info", f"nova/{d}")["parent"] for d in images(lab.dst, "nova")}
    linked = sum(1 for p in parents.values() if p.get("snapshot") == "snap")
    modes = {p: lab.dst.rbd_json("mirror", "pool", "info", p)["mode"] for p in POOLS}
    same = before == after
    print(f"\nclones still linked to glance/<id>@snap on dst: {linked}/{len(parents)}")
    print(f"destination mirroring modes: {json.dumps(modes)}")
    print(f"rbd-mirror daemons running: {len(lab.service_pids())}")
    say(
        f"{'PASS' if same else 'FAIL'}: {sum(before[n] == after.get(n) for n in before)}/"
        f"{len(before)} images identical",
        t0,
    )
    return same


def main() -> int:
    """Parse arguments, run the demo in a fresh lab, stop the lab unless --keep."""
    parser = argparse.ArgumentParser(prog="python -m demo")
    parser.add_argument("--dir", type=Path, help="lab directory (default: a new temp dir)")
    parser.add_argument("--keep", action="store_true", help="leave the lab running")
    args = parser.parse_args()
    lab = Lab((args.dir or Path(tempfile.mkdtemp(prefix="rbd-mirror-demo-"))).resolve())
    ok = False
    try:
        ok = run_demo(lab)
    except LabError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
    finally:
        if not args.keep:
            lab.down()
            print(f"lab stopped ({lab.base})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
