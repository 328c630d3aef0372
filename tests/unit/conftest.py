"""Unit-test wiring: the charm with in-memory clusters, a temp /etc/ceph, and a fake service."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ops import testing

import actions
import charm
import daemon
import session
from ceph_release import CephVersion
from daemon import RbdMirrorDaemon
from tests.unit.fake_ceph import FakeCluster, make_pair

REPO = Path(__file__).resolve().parents[2]
SRC_KEY = "AQBsrcsrcsrcsrcsrcsrcsrcsrcsrcsrcsrcsrc0=="
DST_KEY = "AQBdstdstdstdstdstdstdstdstdstdstdstdst0=="
HOST = "unit-host"


@dataclass
class World:
    """What the charm talks to in a unit test."""

    src: FakeCluster
    dst: FakeCluster
    etc: Path
    service: dict = field(
        default_factory=lambda: {"running": False, "starts": 0, "stops": 0, "systemctl": []}
    )
    ctx: testing.Context = field(default=None)  # type: ignore[assignment]  # set by the fixture

    leader: bool = True  # the unit the actions that change pools run on
    # this unit's own rbd and rbd-mirror (`--version`), by default the fake clusters' release
    unit_tools: dict = field(
        default_factory=lambda: dict.fromkeys(("rbd", "rbd-mirror"), CephVersion(16, 2, 15))
    )

    def run(self, event, state):
        return self.ctx.run(event, dataclasses.replace(state, leader=self.leader))


@pytest.fixture
def world(monkeypatch, tmp_path) -> World:
    src, dst = make_pair()
    w = World(src=src, dst=dst, etc=tmp_path / "etc-ceph")

    def client(cluster, client_id, timeout=60.0):
        return w.dst if cluster == "ceph" else w.src

    class Daemon(RbdMirrorDaemon):
        def __init__(self, templates_dir, unique_id, source_client, conf_dir=None):
            super().__init__(
                templates_dir, unique_id, source_client, w.etc, w.etc.parent / "systemd"
            )

        @classmethod
        def install(cls):
            return []

        def running(self):
            return w.service["running"]

        def stopped(self):
            return not w.service["running"]

        def start(self, *, restart):
            w.service["running"] = True
            w.service["starts"] += 1

        def stop(self):
            w.service["running"] = False
            w.service["stops"] += 1

    def systemctl(*args, timeout=None):
        """What systemd answers about the drop-in: what it loaded at the last reload."""
        w.service["systemctl"].append(" ".join(args))
        on_disk = {str(p): p.read_text() for p in (w.etc.parent / "systemd").glob("*/*.conf")}
        if args[0] == "daemon-reload":
            w.service["loaded"] = on_disk
        loaded = w.service.get("loaded", {})
        changed = any(on_disk.get(path) != text for path, text in loaded.items())
        shown = (
            f"NeedDaemonReload={'yes' if changed else 'no'}\nDropInPaths={' '.join(loaded)}\n"
            "LoadState=loaded\n"
        )
        return subprocess.CompletedProcess(args, 0, shown if args[0] == "show" else "", "")

    monkeypatch.setattr(daemon, "_systemctl", systemctl)  # only the drop-in's calls get here
    monkeypatch.setattr(session, "CephClient", client)
    monkeypatch.setattr(actions, "unit_tool_versions", lambda: dict(w.unit_tools))
    monkeypatch.setattr(charm, "RbdMirrorDaemon", Daemon)
    monkeypatch.setattr(charm.socket, "gethostname", lambda: HOST)
    root = tmp_path / "charm-root"
    root.mkdir()
    (root / "templates").symlink_to(REPO / "templates")
    w.ctx = testing.Context(
        charm.RbdMirrorMigrationCharm, app_name="rbd-mirror-migration", charm_root=root
    )
    return w


def source_relation(**overrides) -> testing.Relation:
    data = {"auth": "cephx", "key": SRC_KEY, "ceph-public-address": "10.0.0.1:6789 10.0.0.2:6789"}
    data.update(overrides)
    return testing.Relation(
        endpoint="source",
        interface="ceph-client",
        remote_units_data={0: {k: v for k, v in data.items() if v is not None}},
    )


def destination_relation(pools=("glance", "nova", "cinder-ceph"), **overrides) -> testing.Relation:
    data = {
        "auth": "cephx",
        "ceph-public-address": "10.0.1.1",
        f"{HOST}_key": DST_KEY,
        "pools": json.dumps({p: {} for p in pools}),
    }
    data.update(overrides)
    return testing.Relation(
        endpoint="destination",
        interface="ceph-rbd-mirror",
        remote_units_data={0: {k: v for k, v in data.items() if v is not None}},
    )


def ready_state(**kw) -> testing.State:
    return testing.State(relations=[source_relation(), destination_relation()], **kw)
