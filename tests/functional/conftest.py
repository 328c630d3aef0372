"""Session fixture: one two-cluster lab for the functional tests, stopped by PID at the end."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.functional.lab import Lab
from tests.functional.lab.procs import pid_alive
from tests.functional.lab.seed import seed


def pytest_collection_modifyitems(config, items):
    """Functional tests need root (Ceph daemons, mount namespaces): say so instead of failing."""
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="functional tests need root for the Ceph lab")
        for item in items:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """Both clusters up and `src` seeded with the OpenStack layout; everything stopped after."""
    base = Path(tempfile.mkdtemp(prefix="rbd-mirror-lab-"))
    lab = Lab(base)
    try:
        lab.up()
        seed(lab.src)
        yield lab
    finally:
        started = lab.all_pids()
        lab.down()
        left = [pid for pid in started if pid_alive(pid)]
        if not left and not os.environ.get("KEEP_LAB"):
            shutil.rmtree(base, ignore_errors=True)
        assert not left, f"lab processes still running after down: {left}"


@pytest.fixture(scope="session")
def charm_host(lab: Lab):
    """The charm's handlers on this host, in a private mount namespace with the lab's /etc/ceph."""
    from tests.functional.charm_host import CharmHost, enter_private_etc_ceph

    enter_private_etc_ceph(lab)
    return CharmHost(lab)
