"""Integration tests need a Juju controller: without one, every test is reported as skipped."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest


def controller_reachable() -> tuple[bool, str]:
    """Is there a `juju` client with a current controller that answers?"""
    juju = shutil.which("juju")
    if juju is None:
        return False, "no juju client on PATH"
    try:
        out = subprocess.run(
            [juju, "controllers", "--format", "json"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, "juju controllers timed out"
    if out.returncode != 0:
        return False, f"juju controllers failed: {out.stderr.strip()[:200]}"
    current = (json.loads(out.stdout or "{}") or {}).get("current-controller")
    return (bool(current), "no current Juju controller") if not current else (True, "")


def pytest_collection_modifyitems(config, items):
    """Skip the whole suite, visibly, when no controller is reachable."""
    ok, why = controller_reachable()
    if ok:
        return
    skip = pytest.mark.skip(reason=f"integration tests need a Juju controller: {why}")
    for item in items:
        if item.get_closest_marker("offline") is None:  # offline checks run anyway
            item.add_marker(skip)
