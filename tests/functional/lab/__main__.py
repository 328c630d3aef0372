"""The lab's command line: `python -m tests.functional.lab up|down|status|seed [DIR]`.

`--src R` and `--dst R` choose each cluster's Ceph release (pacific, reef, tentacle).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import Lab, LabError, default_base
from .releases import RELEASES, release
from .seed import seed


def main(argv: list[str] | None = None) -> int:
    """Run one lab command; exit 1 with the error on failure."""
    parser = argparse.ArgumentParser(prog="python -m tests.functional.lab")
    parser.add_argument("command", choices=("up", "down", "status", "seed"))
    parser.add_argument(
        "dir",
        nargs="?",
        type=Path,
        default=default_base(),
        help="lab directory (default $RBD_MIRROR_LAB or /tmp/rbd-mirror-lab)",
    )
    for side in ("src", "dst"):
        parser.add_argument(
            f"--{side}",
            choices=sorted(RELEASES),
            help=f"Ceph release of {side} (default $RBD_MIRROR_LAB_{side.upper()} or pacific)",
        )
    args = parser.parse_intermixed_args(argv)
    lab = Lab(
        args.dir.resolve(),
        src=release(args.src) if args.src else None,
        dst=release(args.dst) if args.dst else None,
    )
    start = time.monotonic()
    try:
        if args.command == "up":
            print("started" if lab.up() else "already running")
        elif args.command == "down":
            lab.down()
            print("stopped")
        elif args.command == "seed":
            sums = seed(lab.src)
            print(json.dumps(sums, indent=1, sort_keys=True))
        print(json.dumps(lab.status(), indent=1))
    except LabError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    print(f"{args.command}: {time.monotonic() - start:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
