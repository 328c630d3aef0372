"""The charm laid out as `charmcraft pack` (charm plugin) lays it out, run as Juju runs it.

Layout: `dispatch` (charmcraft's charm-plugin script, below), `src/` and `templates/` with the
file modes git records (a clean clone is what gets packed, whatever this checkout's chmod),
the YAMLs, `manifest.yaml`, and `venv/`: the packages of requirements.txt and the
`charm-binary-python-packages` of charmcraft.yaml, installed with `pip install --target` by the
Python of the base under test (charmcraft copies a venv's site-packages there; the result is a
directory on PYTHONPATH, not a site-packages, so its .pth files never run).

A hook runs as Juju runs it: `./dispatch` in the charm directory with the agent's JUJU_*
variables, `python3` on PATH being the base's Python, stand-in hook tools (hooktool.py) and a
stand-in `systemctl` first on PATH, in a private mount namespace where /etc/os-release says
Ubuntu (charmhelpers refuses Debian) and /etc/ceph is the unit's own directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOOKTOOL = Path(__file__).with_name("hooktool.py")
CACHE = REPO / ".tox" / "dispatch-cache"
APP = "rbd-mirror-migration"
UNIT = f"{APP}/0"
# charmcraft's charm plugin (charmcraft/const.py DISPATCH_CONTENT, charmcraft 2.x to 4.x).
DISPATCH = """#!/bin/sh

JUJU_DISPATCH_PATH="${JUJU_DISPATCH_PATH:-$0}" PYTHONPATH=lib:venv \\
  exec ./src/charm.py
"""
HOOK_TOOLS = (
    "juju-log",
    "status-set",
    "status-get",
    "is-leader",
    "config-get",
    "relation-ids",
    "relation-list",
    "relation-get",
    "relation-set",
    "action-get",
    "action-set",
    "action-log",
    "action-fail",
    "application-version-set",
    "goal-state",
)
UBUNTU_OS_RELEASE = """PRETTY_NAME="Ubuntu 24.04 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
VERSION="24.04 LTS (Noble Numbat)"
VERSION_CODENAME=noble
ID=ubuntu
ID_LIKE=debian
UBUNTU_CODENAME=noble
"""
SYSTEMCTL = """#!/bin/sh
# Stand-in systemctl: records its arguments; the daemon is never active.
echo "$*" >> "$HOOKTOOL_STATE/systemctl.log"
[ "$1" = is-active ] && exit 3
exit 0
"""
# A fresh machine: dpkg-query knows no package, apt-get records what it was asked to install.
# Both are bound over the real ones: charmhelpers runs apt-get with PATH from /etc/environment.
NOTHING_INSTALLED = "#!/bin/sh\nexit 1\n"
APT_GET = """#!/bin/sh
echo "$*" >> {log}
exit 0
"""
# The namespace: Ubuntu's os-release, a private /etc/ceph and /etc/systemd/system (the daemon
# unit's drop-in) (and, for a fresh machine, a dpkg-query that knows nothing), then the agent's
# exec.
NAMESPACE = (
    'mount --bind "$UNIT_OS_RELEASE" /etc/os-release && '
    'mount --bind "$UNIT_ETC_CEPH" /etc/ceph && '
    'mkdir -p /etc/systemd/system && mount --bind "$UNIT_SYSTEMD" /etc/systemd/system && '
    '{ [ -z "$UNIT_FRESH" ] || { mount --bind "$UNIT_FRESH/dpkg-query" /usr/bin/dpkg-query && '
    'mount --bind "$UNIT_FRESH/apt-get" /usr/bin/apt-get; }; } && '
    '{ [ -z "$UNIT_HOSTNAME" ] || hostname "$UNIT_HOSTNAME"; } && '
    '{ [ -z "$UNIT_RUN_CEPH" ] || { mount --bind "$UNIT_RUN_CEPH" /run/ceph && '
    'mount --bind "$UNIT_LOG_CEPH" /var/log/ceph && mount -t tmpfs tmpfs /run/systemd && '
    "mkdir /run/systemd/system; }; } && "
    "exec ./dispatch"
)
# On the lab: the functional tests' stand-in systemctl runs the real rbd-mirror as the package's
# unit does, recording its PID under $RBD_MIRROR_LAB_SERVICES.
LAB_SYSTEMCTL = REPO / "tests" / "functional" / "standin" / "systemctl"


def _binary_packages() -> list[str]:
    """`charm-binary-python-packages` of charmcraft.yaml (a flat list there)."""
    text = (REPO / "charmcraft.yaml").read_text()
    for line in text.splitlines():
        if "charm-binary-python-packages:" in line:
            return [p.strip() for p in line.split("[", 1)[1].rstrip("]").split(",") if p.strip()]
    return []


def build_venv(python: Path) -> Path:
    """The unit's `venv/` for `python`, cached by Python version and requirements."""
    requirements = (REPO / "requirements.txt").read_bytes()
    extra = _binary_packages()
    version = subprocess.run(
        [str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    digest = hashlib.sha256(requirements + json.dumps(extra).encode()).hexdigest()[:12]
    venv = CACHE / f"py{version}-{digest}" / "venv"
    if not (venv.parent / "done").exists():
        shutil.rmtree(venv.parent, ignore_errors=True)
        venv.mkdir(parents=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            + ["--target", str(venv), "-r", str(REPO / "requirements.txt"), *extra],
            check=True,
            timeout=600,
        )
        (venv.parent / "done").write_text(version)
    return venv


def _git_modes(paths: tuple[str, ...]) -> dict[str, int]:
    """File -> mode, as git records them (what a clean clone, hence the artifact, has)."""
    out = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-s", "--", *paths],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    modes = {}
    for line in out.splitlines():
        meta, name = line.split("\t", 1)
        modes[name] = 0o755 if meta.split()[0] == "100755" else 0o644
    return modes


@dataclass
class HookRun:
    """One dispatch: what Juju would see."""

    name: str
    rc: int
    seconds: float
    output: str


@dataclass
class Unit:
    """A unit directory of the packed charm, with its stand-in Juju and its own /etc/ceph."""

    root: Path
    python: Path
    venv: Path
    fresh_machine: bool = False  # no Ceph package installed yet: install runs apt-get
    artifact: Path | None = None  # a packed .charm: unpacked as Juju does, instead of the tree
    # On the lab: the real rbd-mirror (pid files here), /run/ceph and /var/log/ceph of its own.
    lab_services: Path | None = None
    hostname: str = ""  # its own UTS namespace with this host name: a unit on another machine
    number: int = 0  # the unit number: rbd-mirror-migration/<number>
    runs: list[HookRun] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The Juju unit name."""
        return f"{APP}/{self.number}"

    @property
    def charm_dir(self) -> Path:
        """Where Juju unpacks the charm."""
        return self.root / "charm"

    @property
    def state(self) -> Path:
        """The stand-in hook tools' files."""
        return self.root / "juju"

    @property
    def etc_ceph(self) -> Path:
        """The unit's /etc/ceph."""
        return self.root / "etc-ceph"

    @property
    def systemd_dir(self) -> Path:
        """The unit's /etc/systemd/system (where the charm writes its drop-in)."""
        return self.root / "systemd-system"

    def build(self) -> Unit:
        """Lay the charm out as the artifact has it, and the stand-in tools beside it."""
        charm = self.charm_dir
        charm.mkdir(parents=True)
        if self.artifact is not None:
            unpack(self.artifact, charm)
        else:
            self._lay_out_the_tree(charm)
        bin_dir = self.root / "bin"
        bin_dir.mkdir()
        for tool in HOOK_TOOLS:
            (bin_dir / tool).symlink_to(HOOKTOOL)
        (bin_dir / "python3").symlink_to(self.python)
        if self.lab_services is not None:
            (bin_dir / "systemctl").symlink_to(LAB_SYSTEMCTL)
            for sub in ("run-ceph", "log-ceph"):
                (self.root / sub).mkdir()
                shutil.chown(self.root / sub, "ceph", "ceph")
        else:
            (bin_dir / "systemctl").write_text(SYSTEMCTL)
            (bin_dir / "systemctl").chmod(0o755)
        fresh = self.root / "fresh-machine"
        fresh.mkdir()
        for name, text in (
            ("dpkg-query", NOTHING_INSTALLED),
            ("apt-get", APT_GET.format(log=self.state / "apt-get.log")),
        ):
            (fresh / name).write_text(text)
            (fresh / name).chmod(0o755)
        self.state.mkdir()
        self.etc_ceph.mkdir()
        self.systemd_dir.mkdir()
        (self.root / "os-release").write_text(UBUNTU_OS_RELEASE)
        (self.state / "leader").touch()
        return self

    def _lay_out_the_tree(self, charm: Path) -> None:
        """The layout charmcraft's charm plugin makes, from this checkout."""
        for name, mode in _git_modes(("src", "templates")).items():
            target = charm / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(REPO / name, target)
            target.chmod(mode)
        for name in ("metadata.yaml", "actions.yaml", "config.yaml"):
            shutil.copyfile(REPO / name, charm / name)
        (charm / "manifest.yaml").write_text(
            "charmcraft-started-at: '2026-01-01T00:00:00Z'\ncharmcraft-version: 4.5.0\n"
        )
        (charm / "venv").symlink_to(self.venv)
        (charm / "dispatch").write_text(DISPATCH)
        (charm / "dispatch").chmod(0o755)

    def _env(self, dispatch_path: str, extra: dict[str, str]) -> dict[str, str]:
        env = {
            "PATH": f"{self.root / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOOKTOOL_STATE": str(self.state),
            "JUJU_DISPATCH_PATH": dispatch_path,
            "JUJU_UNIT_NAME": self.name,
            "JUJU_MODEL_NAME": "migration",
            "JUJU_MODEL_UUID": "00000000-0000-4000-8000-000000000000",
            "JUJU_CHARM_DIR": str(self.charm_dir),
            "JUJU_VERSION": "3.5.0",
            "JUJU_AGENT_SOCKET_NETWORK": "unix",
            "UNIT_OS_RELEASE": str(self.root / "os-release"),
            "UNIT_ETC_CEPH": str(self.etc_ceph),
            "UNIT_SYSTEMD": str(self.systemd_dir),
            "UNIT_FRESH": str(self.root / "fresh-machine") if self.fresh_machine else "",
            "UNIT_HOSTNAME": self.hostname,
            "UNIT_RUN_CEPH": str(self.root / "run-ceph") if self.lab_services else "",
            "UNIT_LOG_CEPH": str(self.root / "log-ceph"),
            "RBD_MIRROR_LAB_SERVICES": str(self.lab_services or ""),
            "LANG": "C.UTF-8",
        }
        env.update(extra)
        return env

    def dispatch(
        self, dispatch_path: str, extra: dict[str, str] | None = None, timeout: float = 120
    ) -> HookRun:
        """Run ./dispatch once, as the agent does, in the unit's namespace (bounded)."""
        name = dispatch_path  # hooks/<hook> or actions/<action>
        start = time.monotonic()
        uts = ["--uts"] if self.hostname else []
        proc = subprocess.run(
            ["unshare", "--mount", *uts, "--propagation", "private", "sh", "-c", NAMESPACE],
            cwd=self.charm_dir,
            env=self._env(dispatch_path, extra or {}),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        pending = self.state / "relations.pending.json"
        if pending.exists():  # Juju applies a hook's relation-set only when the hook succeeds
            if proc.returncode == 0:
                pending.replace(self.state / "relations.json")
            else:
                pending.unlink()
        run = HookRun(name, proc.returncode, time.monotonic() - start, proc.stdout + proc.stderr)
        self.runs.append(run)
        return run

    def hook(self, name: str) -> HookRun:
        """A hook, e.g. `install`."""
        return self.dispatch(f"hooks/{name}", {"JUJU_HOOK_NAME": name})

    def relation_hook(
        self, relation: str, kind: str, remote_unit: str = "", *, departing: str = ""
    ) -> HookRun:
        """`<endpoint>-relation-<kind>` on `relation` ("source:1"), as the agent sets it up.

        `departing`: in a departed hook, the unit that goes (this one, or the remote one).
        """
        endpoint, _ = relation.split(":", 1)
        remote_app = self.relations()[relation]["remote-app"]
        name = f"{endpoint}-relation-{kind}"
        env = {
            "JUJU_HOOK_NAME": name,
            "JUJU_RELATION": endpoint,
            "JUJU_RELATION_ID": relation,
            "JUJU_REMOTE_APP": remote_app,
            "JUJU_REMOTE_UNIT": remote_unit,
        }
        if kind == "departed":
            env["JUJU_DEPARTING_UNIT"] = departing or remote_unit
        return self.dispatch(f"hooks/{name}", env)

    def action(self, name: str, params: dict | None = None, timeout: float = 120) -> HookRun:
        """An action with `params`; results and failure land in the stand-in's files."""
        (self.state / "params.json").write_text(json.dumps(params or {}))
        for stale in ("results.json", "failed", "action-logs.jsonl"):
            (self.state / stale).unlink(missing_ok=True)
        return self.dispatch(
            f"actions/{name}",
            {"JUJU_ACTION_NAME": name, "JUJU_ACTION_UUID": str(len(self.runs) + 1)},
            timeout=timeout,
        )

    def depart_and_break(self, relation: str, departing: str = "") -> None:
        """What Juju runs when a relation goes: each remote unit departs, then broken.

        The departing unit is out of relation-list during its departed hook, and the broken
        relation out of relation-ids during its broken hook (Juju 3.4+); afterwards it is gone.
        A peer relation is never broken (Juju's resolver skips it): it stays, without units.
        """
        relations = self.relations()
        for remote_unit in sorted(relations[relation]["units"]):
            relations[relation]["units"].pop(remote_unit)
            self.set_relations(relations)
            self._expect(
                self.relation_hook(relation, "departed", remote_unit, departing=departing)
            )
            relations = self.relations()
        if relation.startswith("peers:"):
            return
        relations[relation]["broken"] = True
        self.set_relations(relations)
        self._expect(self.relation_hook(relation, "broken"))
        relations = self.relations()
        relations.pop(relation)
        self.set_relations(relations)

    @staticmethod
    def _expect(run: HookRun) -> None:
        if run.rc != 0:
            raise AssertionError(f"{run.name} failed (rc {run.rc}):\n{run.output[-3000:]}")

    def results(self) -> dict[str, str]:
        """The last action's action-set results."""
        path = self.state / "results.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def action_logs(self) -> list[str]:
        """The last action's action-log lines."""
        path = self.state / "action-logs.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def relations(self) -> dict[str, dict]:
        """The stand-in Juju's relations (see hooktool.py)."""
        path = self.state / "relations.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def set_relations(self, relations: dict[str, dict]) -> None:
        """What the other side of each relation publishes (the test plays the remote charms)."""
        (self.state / "relations.json").write_text(json.dumps(relations))

    def set_goal_units(self, units: dict[str, str]) -> None:
        """goal-state's units of the application: name -> status (`dying` while removed)."""
        (self.state / "goal-units.json").write_text(json.dumps(units))

    def set_config(self, config: dict) -> None:
        """The application's config, as config-get returns it."""
        (self.state / "config.json").write_text(json.dumps(config))

    def statuses(self) -> list[dict]:
        """Every status-set call, in order."""
        path = self.state / "statuses.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return [json.loads(line) for line in lines]

    def failure(self) -> str | None:
        """The last action's action-fail message, if any."""
        path = self.state / "failed"
        return path.read_text() if path.exists() else None

    def apt_get(self) -> list[str]:
        """Every apt-get call."""
        path = self.state / "apt-get.log"
        return path.read_text().splitlines() if path.exists() else []

    def systemctl(self) -> list[str]:
        """Every systemctl call."""
        path = self.state / "systemctl.log"
        return path.read_text().splitlines() if path.exists() else []


def unpack(artifact: Path, target: Path) -> None:
    """Unzip a .charm as Juju does: with the file modes the zip records."""
    with zipfile.ZipFile(artifact) as archive:
        for info in archive.infolist():
            path = Path(archive.extract(info, target))
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                path.chmod(mode)


def packed_charm() -> Path | None:
    """The artifact `tox -e pack` built (build/rbd-mirror-migration_*.charm), if any."""
    found = sorted((REPO / "build").glob("rbd-mirror-migration_*.charm"))
    return found[-1] if found else None


def find_python(version: str) -> Path | None:
    """The pyenv Python of `version` (e.g. "3.12"), as Ubuntu's base would have it."""
    root = Path(os.environ.get("PYENV_ROOT", "/root/.pyenv")) / "versions"
    found = sorted(root.glob(f"{version}.*/bin/python{version}"))
    return found[-1] if found else None


def _missing(message: str):
    """Fail under CI (a fresh machine must have it), skip elsewhere."""
    import pytest

    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def required_python(version: str) -> Path:
    """The pyenv Python of `version`, or the test fails under CI and is skipped elsewhere."""
    python = find_python(version)
    if python is None:
        _missing(f"no Python {version} (pyenv)")
    assert python is not None
    return python


def required_artifact() -> Path:
    """The `.charm` `tox -e pack` built, or the test fails under CI and is skipped elsewhere."""
    charm = packed_charm()
    if charm is None:
        _missing("no build/rbd-mirror-migration_*.charm: run `tox -e pack` first")
    assert charm is not None
    return charm
