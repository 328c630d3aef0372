"""Session fixture: one two-cluster lab for the functional tests, stopped by PID at the end."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.functional.charm_host import CharmHost
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
def charm_host_env(lab: Lab) -> Lab:
    """This process in a private mount namespace with the lab's /etc/ceph (entered once)."""
    from tests.functional.charm_host import enter_private_etc_ceph

    enter_private_etc_ceph(lab)
    return lab


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        if record.exc_info:
            self.lines.append(logging.Formatter().formatException(record.exc_info))


@pytest.fixture
def fresh_host(charm_host_env: Lab, request) -> Iterator[CharmHost]:
    """A freshly seeded source, an empty destination and a new unit of the charm.

    After the test, no cephx secret may appear in anything the charm showed or logged.
    Mark a test with `@pytest.mark.big_image(MiB)` to add a large volume to the seed.
    """
    lab = charm_host_env
    lab.reset()
    marker = request.node.get_closest_marker("big_image")
    seed(lab.src, big_mib=marker.args[0] if marker else 0)
    records = _Records()
    logging.getLogger().addHandler(records)
    host = CharmHost(lab)
    try:
        yield host
    finally:
        logging.getLogger().removeHandler(records)
    shown = "\n".join(host.seen + records.lines)
    for secret in host.secrets():
        assert secret not in shown, "a cephx secret was shown or logged"
