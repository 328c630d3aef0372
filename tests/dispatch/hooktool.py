#!/usr/bin/env python3
"""Stand-in Juju hook tools for the dispatch tests: one script, linked under each tool's name.

State lives in JSON files under $HOOKTOOL_STATE: `config.json`, `params.json`, `leader`,
`calls.jsonl` (every call, argv), `statuses.jsonl`, `results.json`, `logs.jsonl`, `failed`,
and `relations.json`: `{"source:1": {"endpoint", "remote-app", "units": {unit: bag},
"local": bag, "app": bag, "remote-app-data": bag}}`, written by the test playing the other
side, read and (own bags only) written by the charm.
It rejects what Juju rejects where that is cheap to check: action result keys outside Juju's
grammar, unknown status values, relation-set on the application bag by a non-leader, a relation
id or a unit that is not in the relation; like Juju, relation-set takes effect only when the
hook exits 0 (`relations.pending.json`, applied or dropped by unit_dir.py). Unknown tools fail
loudly. Standard library only: it runs under whichever python3 is first on PATH.
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


def _relation_opts(argv: list[str]) -> tuple[str | None, bool, list[str]]:
    """(`-r` relation ref, `--app`, positional args) of a relation tool's argv."""
    ref, app, rest, it = None, False, [], iter(argv)
    for arg in it:
        if arg == "-r":
            ref = next(it)
        elif arg.startswith("-r") and len(arg) > 2:
            ref = arg[2:]
        elif arg == "--app":
            app = True
        elif arg in ("--file",):
            next(it)
        elif arg == "-" or not arg.startswith("-"):
            rest.append(arg)
    return ref, app, rest


def _relations() -> dict:
    """The relations as this hook sees them: its own writes so far, else what Juju holds."""
    pending = STATE / "relations.pending.json"
    return json.loads(pending.read_text()) if pending.exists() else _read("relations.json", {})


def _relation(ref: str | None) -> tuple[str, dict]:
    """The relation `ref` names (`endpoint:id` or `id`), or the hook's own."""
    relations = _relations()
    ref = ref or os.environ.get("JUJU_RELATION_ID")
    for key, rel in relations.items():
        if ref in (key, key.split(":", 1)[1]):
            return key, rel
    raise LookupError(f'ERROR invalid value "{ref}" for option -r: relation not found')


def _relation_ids(argv: list[str]) -> int:
    """Like Juju 3.4+: a relation being broken is no longer listed, even in its own hook."""
    _, _, rest = _relation_opts(argv)
    relations = _relations()
    listed = [k for k, r in relations.items() if r["endpoint"] == rest[0] and not r.get("broken")]
    print(json.dumps(listed))
    return 0


def _relation_list(argv: list[str]) -> int:
    """The remote units (none once broken; the departing one is gone during departed)."""
    ref, app, _ = _relation_opts(argv)
    _, rel = _relation(ref)
    units = [] if rel.get("broken") else sorted(rel["units"])
    print(json.dumps(rel["remote-app"] if app else units))
    return 0


def _relation_get(argv: list[str]) -> int:
    ref, app, rest = _relation_opts(argv)
    _, rel = _relation(ref)
    key = rest[0] if rest else "-"
    who = rest[1] if len(rest) > 1 else os.environ.get("JUJU_REMOTE_UNIT", "")
    me = os.environ["JUJU_UNIT_NAME"]
    if app:
        bag = rel["app"] if who == me.split("/")[0] else rel.get("remote-app-data", {})
    elif who == me:
        bag = rel["local"]
    elif who in rel["units"]:
        bag = rel["units"][who]
    else:
        print(f'ERROR cannot read settings for unit "{who}"', file=sys.stderr)
        return 1
    print(json.dumps(bag if key == "-" else bag.get(key)))
    return 0


def _relation_set(argv: list[str]) -> int:
    ref, app, _ = _relation_opts(argv)
    if app and not (STATE / "leader").exists():
        print("ERROR cannot write relation settings: unit is not leader", file=sys.stderr)
        return 1
    relations = _relations()
    key, rel = _relation(ref)
    bag = rel["app"] if app else rel["local"]
    for name, value in json.loads(sys.stdin.read() or "{}").items():
        if value == "":
            bag.pop(name, None)
        else:
            bag[name] = value
    relations[key] = rel
    # Like Juju: kept for this hook, applied only if the hook exits 0 (unit_dir.py does that).
    (STATE / "relations.pending.json").write_text(json.dumps(relations))
    return 0


def _goal_state(_: list[str]) -> int:
    """The application's units and their goal status (`dying` for one being removed)."""
    units = _read("goal-units.json", {os.environ["JUJU_UNIT_NAME"]: "active"})
    since = "2026-01-01T00:00:00Z"
    goal = {"units": {u: {"status": st, "since": since} for u, st in units.items()}}
    print(json.dumps({**goal, "relations": {}}))
    return 0


TOOLS = {
    "juju-log": _recording("logs.jsonl"),
    "status-set": _status_set,
    "status-get": _printing({"status": "unknown", "message": ""}),
    "is-leader": _printing(lambda: (STATE / "leader").exists()),
    "config-get": _printing(lambda: _read("config.json", {})),
    "relation-ids": _relation_ids,
    "relation-list": _relation_list,
    "relation-get": _relation_get,
    "relation-set": _relation_set,
    "action-get": _printing(lambda: _read("params.json", {})),
    "action-set": _action_set,
    "action-log": _recording("action-logs.jsonl"),
    "action-fail": _recording("failed", as_file=True),
    "application-version-set": lambda _: 0,
    "goal-state": _goal_state,
}


def main() -> int:
    """Act as the tool named by argv[0]."""
    tool, argv = Path(sys.argv[0]).name, sys.argv[1:]
    _append("calls.jsonl", [tool, *argv])
    if tool not in TOOLS:
        print(f"stand-in hook tools: {tool} is not implemented", file=sys.stderr)
        return 1
    try:
        if tool.startswith("relation-"):
            return TOOLS[tool](argv)
        return TOOLS[tool](_args(argv))
    except LookupError as exc:
        print(exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
