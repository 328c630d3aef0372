"""The artifact `tox -e pack` built with charmcraft, unpacked and run as Juju runs it.

The other dispatch tests lay the charm out from this checkout; these take the real `.charm`: what
it ships (and what `.jujuignore` keeps out), the modes its zip records, and its own `venv/`.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dispatch.unit_dir import Unit, required_artifact, required_python

UNIT_PYTHON = "3.12"  # ubuntu@24.04, the base charmcraft.yaml declares


@pytest.fixture
def artifact() -> Path:
    return required_artifact()


@pytest.fixture
def unit(artifact: Path, tmp_path: Path) -> Iterator[Unit]:
    if os.geteuid() != 0:
        pytest.skip("dispatch tests need root (a private mount namespace per hook)")
    python = required_python(UNIT_PYTHON)
    yield Unit(tmp_path, python, tmp_path / "unused", artifact=artifact).build()


def test_the_artifact_ships_what_a_unit_runs_and_nothing_else(artifact: Path):
    names = zipfile.ZipFile(artifact).namelist()
    tops = sorted({n.split("/", 1)[0] for n in names})
    print(f"{artifact.name}: {len(names)} entries; top level: {' '.join(tops)}")
    for needed in ("dispatch", "manifest.yaml", "metadata.yaml", "actions.yaml", "config.yaml"):
        assert needed in names, needed
    for needed in ("src/charm.py", "src/rbd_bulk.py", "src/bulk_schema.py", "templates/"):
        assert any(n.startswith(needed) for n in names), needed
    assert any(n.startswith("venv/ops/") for n in names) and any(
        n.startswith("venv/charmhelpers/") for n in names
    )
    for left_out in ("tests", "bench", "demo", "scripts", ".ci", "tox.ini", "parts", "prime"):
        assert left_out not in tops, f"{left_out} shipped: .jujuignore should keep it out"


def test_the_artifact_runs_its_lifecycle_through_dispatch(unit: Unit):
    for hook in ("install", "config-changed", "update-status"):
        run = unit.hook(hook)
        assert run.rc == 0, f"{run.name} failed (rc {run.rc}):\n{run.output[-3000:]}"
    assert unit.statuses()[-1]["message"].startswith("Missing relation: source")
    run = unit.action("status")
    assert run.rc == 0 and (unit.failure() or "").startswith("not ready: Missing relation")
    for hook in ("stop", "remove"):
        assert unit.hook(hook).rc == 0
    for run in unit.runs:
        print(f"packed artifact, Python {UNIT_PYTHON}: {run.name} rc {run.rc} {run.seconds:.2f} s")
