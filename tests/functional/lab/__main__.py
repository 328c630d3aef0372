"""Command line for the lab: `python -m tests.functional.lab up|down|status|seed [DIR]`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import Lab, LabError, default_base
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
    args = parser.parse_args(argv)
    lab = Lab(args.dir.resolve())
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
