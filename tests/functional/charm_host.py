"""Run the charm's real handlers (ops.testing) on this machine, against the lab.

The charm's code runs unmodified. Around it:
- a private mount namespace where /etc/ceph, /run/ceph, /var/log/ceph and /etc/systemd/system
  are test directories, and /run/systemd/system exists (so charmhelpers uses systemctl);
- a stand-in `systemctl` first on PATH that runs rbd-mirror the way the packaged unit does,
  after the ExecStartPre of the charm's drop-in;
- charmhelpers told it runs on Ubuntu (it refuses to import core.host on Debian);
- the lab playing ceph-proxy and ceph-mon on the two relations;
- with a destination of another release than the host's, that release's `ceph`, `rbd`, `rados`,
  `rbd-mirror` and `python3` (with its librbd, behind rbd_bulk.py) over the host's /usr/bin, as
  on a unit of that release (`use_release_tools`).
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import shlex
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from tests.functional.lab import Lab, procs
from tests.functional.lab.charms import broker_rsp_key, ceph_mon_data, ceph_proxy_data
from tests.functional.lab.procs import run
from tests.functional.lab.releases import ensure_root, wrap

if TYPE_CHECKING:
    from ops.testing import Relation

REPO = Path(__file__).resolve().parents[2]
STANDIN = Path(__file__).with_name("standin")
CLONE_NEWNS = 0x00020000
APP = "rbd-mirror-migration"
UNIT = f"{APP}/0"


def pretend_ubuntu() -> None:
    """Let charmhelpers' host and fetch modules import and pick systemd on this Debian machine."""
    import charmhelpers.osplatform

    charmhelpers.osplatform.get_platform = lambda: "ubuntu"
    ubuntu = {
        "DISTRIB_ID": "Ubuntu",
        "DISTRIB_RELEASE": "24.04",
        "DISTRIB_CODENAME": "noble",
        "DISTRIB_DESCRIPTION": "Ubuntu 24.04",
    }
    import charmhelpers.core.host as host
    import charmhelpers.core.host_factory.ubuntu as host_ubuntu

    host.lsb_release = lambda: ubuntu  # type: ignore[assignment]
    host_ubuntu.lsb_release = lambda: ubuntu  # type: ignore[assignment]


def enter_private_etc_ceph(lab: Lab) -> Path:
    """Move this process into a mount namespace whose /etc/ceph etc. live in the lab dir."""
    root = lab.base / "charm-host"
    dirs = {
        "/etc/ceph": root / "etc-ceph",
        "/run/ceph": root / "run-ceph",
        "/var/log/ceph": root / "log-ceph",
        "/etc/systemd/system": root / "systemd-system",  # the daemon unit's drop-in
    }
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    for path in (dirs["/run/ceph"], dirs["/var/log/ceph"]):
        run(["chown", "ceph:ceph", str(path)])
    # Kept open for the whole session: the host's mount namespace, for use_release_tools.
    saved_ns = f"/proc/{os.getpid()}/fd/{os.open('/proc/self/ns/mnt', os.O_RDONLY)}"
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS) failed")
    run(["mount", "--make-rprivate", "/"])
    for target, source in dirs.items():
        Path(target).mkdir(parents=True, exist_ok=True)
        run(["mount", "--bind", str(source), target])
    Path("/run/systemd").mkdir(exist_ok=True)
    run(["mount", "-t", "tmpfs", "tmpfs", "/run/systemd"])
    Path("/run/systemd/system").mkdir()
    os.environ["PATH"] = f"{STANDIN}:{os.environ['PATH']}"
    os.environ["RBD_MIRROR_LAB_SERVICES"] = str(lab.services_dir)
    pretend_ubuntu()
    use_release_tools(lab, saved_ns)
    return dirs["/etc/ceph"]


RELEASE_TOOLS = ("ceph", "rbd", "rados", "rbd-mirror", "python3")


def use_release_tools(lab: Lab, saved_ns: str) -> None:
    """Put the destination release's Ceph tools over the host's /usr/bin, in this namespace.

    The charm calls /usr/bin/{ceph,rbd,rados,python3} and its service runs /usr/bin/rbd-mirror:
    each becomes a script that runs the same path from the release's root, with this unit's
    /etc/ceph, /run/ceph, /var/log/ceph, /etc/systemd/system, the lab and the repo (rbd_bulk.py)
    at the same paths.
    The host's own Pacific commands (a Pacific source) run in `saved_ns`, the mount namespace
    from before, where /usr/bin is untouched. Nothing to do for a Pacific destination.
    """
    release = lab.dst.release
    if release.on_host:
        return
    root = ensure_root(release)
    tools = lab.base / "release-tools"
    tools.mkdir(exist_ok=True)
    binds = (
        Path("/etc/ceph"), Path("/run/ceph"), Path("/var/log/ceph"), Path("/etc/systemd/system"),
        lab.base, REPO,
    )  # fmt: skip
    for tool in RELEASE_TOOLS:
        script = tools / tool
        argv = wrap(root, [f"/usr/bin/{tool}"], binds=binds)
        script.write_text(f'#!/bin/sh\n# {release.name}\'s {tool}\nexec {shlex.join(argv)} "$@"\n')
        script.chmod(0o755)
    procs.HOST_MOUNT_NS = saved_ns  # before the mounts below: the lab's host commands need it
    for tool in RELEASE_TOOLS:
        run(["mount", "--bind", str(tools / tool), f"/usr/bin/{tool}"])


def charm_root(base: Path) -> Path:
    """A charm root for ops.testing with the real templates/ (metadata is written by ops)."""
    root = base / "charm-root"
    root.mkdir(parents=True, exist_ok=True)
    link = root / "templates"
    if not link.exists():
        link.symlink_to(REPO / "templates")
    return root


class CharmHost:
    """One unit of the charm on this host, related to the lab's stand-ins for the real charms."""

    def __init__(self, lab: Lab):
        from ops import testing

        import charm  # imported after pretend_ubuntu()

        self.lab = lab
        self.testing = testing
        self.ctx = testing.Context(
            charm.RbdMirrorMigrationCharm, app_name=APP, unit_id=0, charm_root=charm_root(lab.base)
        )
        self.unique_id = socket.gethostname()
        self.seen: list[str] = []  # every result, action log, failure and unit status shown
        # More ceph-mon units on the destination relation: each sends only its address.
        self.extra_mon_addresses: tuple[str, ...] = ()
        self.state = testing.State(leader=True, relations=self._relations())

    def _relations(self, local: dict[str, dict[str, str]] | None = None):
        """Both relations as the lab's stand-ins answer what our unit has sent (`local`)."""
        t = self.testing
        local = local or {}
        src_req = local.get("source", {}).get("broker_req")
        dst_req = local.get("destination", {}).get("broker_req")
        source = t.Relation(
            endpoint="source",
            interface="ceph-client",
            local_unit_data=local.get("source", {}),
            remote_app_name="ceph-proxy",
            remote_units_data={
                0: ceph_proxy_data(self.lab.src, APP, broker_req=src_req, unit_name=UNIT)
            },
        )
        dest = t.Relation(
            endpoint="destination",
            interface="ceph-rbd-mirror",
            local_unit_data=local.get("destination", {}),
            remote_app_name="ceph-mon",
            remote_units_data={
                0: ceph_mon_data(self.lab.dst, self.unique_id, unit_name=UNIT, broker_req=dst_req),
                **{
                    n + 1: {"auth": "cephx", "ceph-public-address": address}
                    for n, address in enumerate(self.extra_mon_addresses)
                },
            },
        )
        return [source, dest]

    def relation(self, endpoint: str) -> Relation:
        """The current state of our relation on `endpoint`."""
        rel = next(r for r in self.state.relations if r.endpoint == endpoint)
        assert isinstance(rel, self.testing.Relation)
        return rel

    def hook(self, name: str, endpoint: str | None = None):
        """Run a hook (e.g. install, relation_changed on an endpoint); keep the new state."""
        on = self.ctx.on
        if endpoint:
            event = getattr(on, name)(self.relation(endpoint), remote_unit=0)
        else:
            event = getattr(on, name)()
        self.state = self.ctx.run(event, self.state)
        self.seen.append(self.state.unit_status.message)
        return self.state

    def configure(self, **config: str) -> None:
        """`juju config` on the unit: the new values, then config-changed."""
        self.state = dataclasses.replace(self.state, config={**self.state.config, **config})
        self.hook("config_changed")

    def play_remote_charms(self) -> None:
        """ceph-proxy and ceph-mon answer what we sent (broker requests), then relation-changed."""
        local = {r.endpoint: dict(r.local_unit_data) for r in self.state.relations}
        self.state = self.testing.State(
            leader=True, relations=self._relations(local), config=dict(self.state.config)
        )
        self.hook("relation_changed", "source")
        self.hook("relation_changed", "destination")

    def relate(self) -> None:
        """install, both relations joined, and the remote charms' answers: a ready unit."""
        self.hook("install")
        self.hook("relation_changed", "source")
        self.hook("relation_changed", "destination")
        self.play_remote_charms()

    def broker_response(self, endpoint: str = "destination") -> dict:
        """ceph-mon's (or ceph-proxy's) reply to our broker request."""
        data = self.relation(endpoint).remote_units_data[0]
        return json.loads(data[broker_rsp_key(UNIT)])

    def action(self, name: str, **params):
        """Run an action; return (results, logs). Raises testing.ActionFailed on event.fail."""
        try:
            self.state = self.ctx.run(self.ctx.on.action(name, params=params), self.state)
        except self.testing.ActionFailed as exc:
            self.seen += [exc.message, *self.ctx.action_logs]
            raise
        except Exception as exc:  # an injected crash: its message is output too
            self.seen.append(str(exc))
            raise
        results, logs = dict(self.ctx.action_results or {}), list(self.ctx.action_logs)
        self.seen += [json.dumps(results), *logs, self.state.unit_status.message]
        return results, logs

    def secrets(self) -> list[str]:
        """The two cephx secrets the lab handed to the charm."""
        src = self.relation("source").remote_units_data[0]["key"]
        dst = self.relation("destination").remote_units_data[0][f"{self.unique_id}_key"]
        return [src, dst]
