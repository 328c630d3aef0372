#!/usr/bin/env python3
"""Stand-in Juju hook tools for the dispatch tests: one script, linked under each tool's name.

State lives in JSON files under $HOOKTOOL_STATE: `config.json`, `params.json`, `leader`,
`calls.jsonl` (every call, argv), `statuses.jsonl`, `results.json`, `logs.jsonl`, `failed`.
It rejects what Juju rejects where that is cheap to check: action result keys outside Juju's
grammar, unknown status values. Unknown tools fail loudly. Standard library only: it runs
under whichever python3 is first on PATH.
"""

import json
import os
import re
import sys
from pathlib import Path

STATE = Path(os.environ["HOOKTOOL_STATE"])
# Juju's action-set key rule: lowercase letters, digits and '-', segments separated by '.',
# each starting and ending with a letter or digit.
KEY = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
STATUSES = {"active", "blocked", "waiting", "maintenance"}


def _append(name: str, item) -> None:
    with (STATE / name).open("a") as handle:
        handle.write(json.dumps(item) + "\n")


def _read(name: str, default):
    path = STATE / name
    return json.loads(path.read_text()) if path.exists() else default


def _args(argv: list[str]) -> list[str]:
    """Positional arguments: options (`--x`, `--x=y`, `--log-level L`) and `--` dropped."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--log-level":
            skip = True
        elif not arg.startswith("--"):
            out.append(arg)
    return out


def _status_set(args: list[str]) -> int:
    if not args or args[0] not in STATUSES:
        print(f"ERROR invalid status {args[:1]}", file=sys.stderr)
        return 2
    _append("statuses.jsonl", {"status": args[0], "message": " ".join(args[1:])})
    return 0


def _action_set(args: list[str]) -> int:
    results = _read("results.json", {})
    for item in args:
        key, sep, value = item.partition("=")
        if not sep or not KEY.match(key):
            print(f'ERROR invalid action result key "{key}"', file=sys.stderr)
            return 2
        results[key] = value
    (STATE / "results.json").write_text(json.dumps(results))
    return 0


def _printing(value):
    def tool(_: list[str]) -> int:
        print(json.dumps(value() if callable(value) else value))
        return 0

    return tool


def _recording(name: str, as_file: bool = False):
    def tool(args: list[str]) -> int:
        if as_file:
            (STATE / name).write_text(" ".join(args))
        else:
            _append(name, " ".join(args))
        return 0

    return tool


TOOLS = {
    "juju-log": _recording("logs.jsonl"),
    "status-set": _status_set,
    "status-get": _printing({"status": "unknown", "message": ""}),
    "is-leader": _printing(lambda: (STATE / "leader").exists()),
    "config-get": _printing(lambda: _read("config.json", {})),
    "relation-ids": _printing([]),
    "action-get": _printing(lambda: _read("params.json", {})),
    "action-set": _action_set,
    "action-log": _recording("action-logs.jsonl"),
    "action-fail": _recording("failed", as_file=True),
    "application-version-set": lambda _: 0,
}


def main() -> int:
    """Act as the tool named by argv[0]."""
    tool, argv = Path(sys.argv[0]).name, sys.argv[1:]
    _append("calls.jsonl", [tool, *argv])
    if tool not in TOOLS:
        print(f"stand-in hook tools: {tool} is not implemented", file=sys.stderr)
        return 1
    return TOOLS[tool](_args(argv))


if __name__ == "__main__":
    sys.exit(main())
