"""The packed charm's layout run through `./dispatch`, on each base's Python, as Juju runs it.

These are the tests that would have caught a charm that cannot start: `src/charm.py` not
executable in git (every hook rc 126), and charmhelpers' `distutils` import on Python 3.12
(ubuntu@24.04), where the venv is on PYTHONPATH and setuptools' .pth shim never runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dispatch.unit_dir import Unit, build_venv, required_python

# charmcraft.yaml declares ubuntu@24.04 (Python 3.12); 3.10 (ubuntu@22.04's, the oldest Python
# ops 3 supports) is an extra check that nothing newer than 3.10 creeps into the charm.
BASES = {"ubuntu@22.04": "3.10", "ubuntu@24.04": "3.12"}


def pytest_generate_tests(metafunc):
    """Every test runs on the declared base's Python and on 3.10."""
    if "base" in metafunc.fixturenames:
        metafunc.parametrize("base", sorted(BASES))


@pytest.fixture
def unit(base: str, tmp_path: Path) -> Iterator[Unit]:
    """A fresh unit directory of the packed charm, on `base`'s Python."""
    if os.geteuid() != 0:
        pytest.skip("dispatch tests need root (a private mount namespace per hook)")
    python = required_python(BASES[base])
    yield Unit(tmp_path, python, build_venv(python)).build()


def _ok(unit: Unit, run) -> None:
    assert run.rc == 0, f"{run.name} failed (rc {run.rc}):\n{run.output[-3000:]}"


def test_artifact_runs_every_lifecycle_hook_and_an_action(unit: Unit, base: str):
    for hook in ("install", "config-changed", "update-status"):
        _ok(unit, unit.hook(hook))
    assert unit.statuses()[-1] == {
        "status": "blocked",
        "message": "Missing relation: source (relate to ceph-proxy:client)",
    }
    run = unit.action("status")
    _ok(unit, run)
    assert (unit.failure() or "").startswith("not ready: Missing relation: source")
    for hook in ("stop", "remove"):
        _ok(unit, unit.hook(hook))
    assert any(call.startswith("stop ceph-rbd-mirror@") for call in unit.systemctl())
    for run in unit.runs:
        print(f"dispatch {base} {run.name}: rc {run.rc} in {run.seconds:.2f} s")


def test_src_charm_py_is_executable_in_git(unit: Unit):
    mode = (unit.charm_dir / "src" / "charm.py").stat().st_mode
    assert mode & 0o111, "dispatch execs ./src/charm.py: without x every hook fails with rc 126"


def test_install_on_a_fresh_machine_installs_the_packages_through_charmhelpers(unit: Unit):
    """The first hook of a real deploy: nothing installed, charmhelpers' apt_install runs."""
    unit.fresh_machine = True
    run = unit.hook("install")
    _ok(unit, run)
    (call,) = unit.apt_get()
    assert call.endswith("install rbd-mirror ceph-common python3-rbd"), call
    assert "DPkg::Lock::Timeout=300" in call, "apt waits for its lock a bounded time"


SRC_KEY = "AQBsrcsrcsrcsrcsrcsrcsrcsrcsrcsrcsrcsrc0=="  # made-up cephx-shaped keys
DST_KEY = "AQBdstdstdstdstdstdstdstdstdstdstdstdst0=="


def _relation(endpoint: str, app: str, bag: dict[str, str]) -> dict:
    return {
        "endpoint": endpoint,
        "remote-app": app,
        "units": {f"{app}/0": bag},
        "local": {},
        "app": {},
        "remote-app-data": {},
    }


def test_a_removed_relation_takes_its_files_and_the_next_hook_does_not_bring_them_back(
    unit: Unit,
):
    """Review finding (issue 11): the next hook rewrote the removed source's key.

    The stand-in kept listing a broken relation; relation-ids now drops it as Juju 3.4+ does.
    """
    unit.hostname = "unit-x"
    unit.set_config({"command-timeout": 5})
    unit.set_relations(
        {
            "source:1": _relation(
                "source",
                "ceph-proxy",
                {"auth": "cephx", "key": SRC_KEY, "ceph-public-address": "127.0.0.1:1"},
            ),
            "destination:2": _relation(
                "destination",
                "ceph-mon",
                {"ceph-public-address": "127.0.0.1", "unit-x_key": DST_KEY, "pools": "{}"},
            ),
        }
    )
    for hook in ("install", "config-changed"):
        _ok(unit, unit.hook(hook))
    written = sorted(p.name for p in unit.etc_ceph.iterdir())
    assert "source.conf" in written and "source.client.rbd-mirror-migration.keyring" in written
    (drop_in,) = unit.systemd_dir.glob("ceph-rbd-mirror@rbd-mirror.unit-x.service.d/*.conf")
    script = unit.charm_dir / "src" / "rbd_bulk.py"
    assert f"ExecStartPre=/usr/bin/python3 {script} --pre-start " in drop_in.read_text()
    assert script.is_file(), "the artifact carries the pre-start step's script"

    unit.depart_and_break("source:1")
    left = sorted(p.name for p in unit.etc_ceph.iterdir())
    assert not [name for name in left if name.startswith("source.")], left
    _ok(unit, unit.hook("update-status"))
    assert sorted(p.name for p in unit.etc_ceph.iterdir()) == left
    assert unit.statuses()[-1]["message"].startswith("Missing relation: source")
    seen = "\n".join(run.output for run in unit.runs) + (unit.state / "calls.jsonl").read_text()
    assert SRC_KEY not in seen and DST_KEY not in seen
