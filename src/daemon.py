"""The rbd-mirror daemon on this unit: packages, its conf and keyring files, and its systemd unit.

The daemon is the Ubuntu package's `ceph-rbd-mirror@rbd-mirror.<unique_id>`, which runs
`rbd-mirror --cluster ceph --id rbd-mirror.<unique_id> --setuser ceph`. It reads the destination
from /etc/ceph/ceph.conf and the source (its remote peer) from /etc/ceph/<source>.conf; both need
their keyrings beside them, readable by user ceph. A drop-in for that unit adds a pre-start step
(rbd_bulk.py's `pre_start`) that systemd runs before every start, whoever starts it: it steps
each interrupted snapshot copy back one object, which rbd-mirror would resume one object too
far. Nothing here imports ops.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from inputs import POOL_NAME

# python3-rbd: the librbd bindings of the system Python, used by rbd_bulk.py for per-image work.
PACKAGES = ("rbd-mirror", "ceph-common", "python3-rbd")
DPKG_QUERY = "/usr/bin/dpkg-query"
SYSTEMCTL = "systemctl"  # from PATH: the functional tests stand one in
MARKER = "# Written by the rbd-mirror-migration charm: changes here are overwritten."
# Every call to the service manager and to apt is bounded: a hook must never hang on them.
SERVICE_TIMEOUT_S = 90
# apt is bounded by its own lock and network timeouts rather than killed on a wall clock: a dpkg
# killed mid-install leaves the package database for a human to repair.
APT_OPTIONS = (
    "--option=Dpkg::Options::=--force-confold",
    "--option=DPkg::Lock::Timeout=300",
    "--option=Acquire::http::Timeout=60",
    "--option=Acquire::Retries=3",
)
SYSTEMCTL_NOT_LOADED = 5  # `systemctl stop` of a unit that does not exist
UNIT_DIR = Path("/etc/systemd/system")  # drop-ins here outlive a reboot (/run's do not)
DROP_IN = "rbd-mirror-migration.conf"
# The pre-start step: rbd_bulk.py beside this module, under the Python that has python3-rbd.
PRE_START = ("/usr/bin/python3", str(Path(__file__).with_name("rbd_bulk.py")), "--pre-start")
PRE_START_WORKERS = 16  # images opened at once by the pre-start step (max-workers' default)
# The unit's TimeoutStartSec in the drop-in: the pre-start step opens every image of the
# migrated pools (about 5 s per 1000 images at 16 workers on the lab), the daemon starts at once.
PRE_START_TIMEOUT_S = 600
# Written before any of the daemon's files changes, removed once it has been restarted: on disk
# beside the files, so that a hook that crashes after writing them cannot lose the restart.
RESTART_MARKER = ".rbd-mirror-migration.restart-pending"


class ForeignFileError(Exception):
    """A conf file exists that this charm did not write; we will not overwrite it."""

    def __init__(self, path: Path):
        self.path = path
        super().__init__(f"{path} exists and was not written by this charm")


class ServiceError(Exception):
    """The service manager failed to change the daemon's state."""


@dataclass(frozen=True)
class DaemonFiles:
    """Everything the daemon's files are rendered from (the entities are the daemon's)."""

    destination_mon_hosts: tuple[str, ...]
    destination_key: str = field(repr=False)
    source_cluster: str = "source"
    source_mon_hosts: tuple[str, ...] = ()
    source_key: str = field(repr=False, default="")
    tuning: tuple[tuple[str, int], ...] = ()  # Ceph options for the daemon's [client] section


def destination_client(unique_id: str) -> str:
    """The destination entity ceph-mon makes for a unit: `client.rbd-mirror.<unique_id>`."""
    return f"client.rbd-mirror.{unique_id}"


def service_name(unique_id: str) -> str:
    """The systemd unit of the daemon."""
    return f"ceph-rbd-mirror@rbd-mirror.{unique_id}"


def keyring_name(cluster: str, entity: str) -> str:
    """The keyring file the confs point at: `keyring = /etc/ceph/$cluster.$name.keyring`."""
    return f"{cluster}.{entity}.keyring"


class RbdMirrorDaemon:
    """Install, configure and run this unit's rbd-mirror daemon.

    `unique_id` names the daemon (its destination entity and its systemd unit); `source_client`
    is the source entity it connects as (`client.<app>`); `conf_dir` is /etc/ceph in production.
    """

    def __init__(
        self,
        templates_dir: Path,
        unique_id: str,
        source_client: str,
        conf_dir: Path = Path("/etc/ceph"),
        unit_dir: Path = UNIT_DIR,
    ):
        self.unique_id = unique_id
        self.source_client = source_client
        self.conf_dir = conf_dir
        self.unit_dir = unit_dir
        self._last_load_state = ""  # the unit's LoadState, as `_loaded` last read it
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(templates_dir)),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            autoescape=False,
        )

    @property
    def service(self) -> str:
        """The systemd unit of this daemon."""
        return service_name(self.unique_id)

    @property
    def destination_client(self) -> str:
        """The destination entity ceph-mon made for this unit."""
        return destination_client(self.unique_id)

    @property
    def drop_in(self) -> Path:
        """The charm's drop-in for the daemon's systemd unit (its pre-start step)."""
        return self.unit_dir / f"{self.service}.service.d" / DROP_IN

    # --- packages --------------------------------------------------------------------------
    @staticmethod
    def missing_packages() -> list[str]:
        """Packages not installed, by one `dpkg-query` (charmhelpers' apt cache takes ~5 s)."""
        try:
            proc = subprocess.run(  # noqa: S603 - fixed argv, no shell
                [DPKG_QUERY, "-W", "-f", "${Package} ${db:Status-Status}\n", *PACKAGES],
                capture_output=True,
                text=True,
                check=False,
                timeout=60,
            )
        except subprocess.TimeoutExpired:
            raise ServiceError("dpkg-query did not answer in 60 s (dpkg busy?)") from None
        installed = {
            line.split()[0] for line in proc.stdout.splitlines() if line.endswith(" installed")
        }
        return [p for p in PACKAGES if p not in installed]

    @classmethod
    def install(cls) -> list[str]:
        """apt-get install the packages that are missing; return those installed.

        charmhelpers is imported on every install, not only when a package is missing, so that
        an artifact that cannot import it fails on its first hook, not months later.
        """
        apt_install = _charmhelpers_apt_install()
        missing = cls.missing_packages()
        if missing:
            try:
                apt_install(missing, options=list(APT_OPTIONS), fatal=True)
            except subprocess.CalledProcessError as exc:
                raise ServiceError(
                    f"apt-get install {' '.join(missing)} failed (rc={exc.returncode})"
                ) from None
        return missing

    # --- files -----------------------------------------------------------------------------
    def paths(self, source_cluster: str) -> dict[str, Path]:
        """The four files, by role."""
        d = self.conf_dir
        return {
            "destination-conf": d / "ceph.conf",
            "destination-keyring": d / keyring_name("ceph", self.destination_client),
            "source-conf": d / f"{source_cluster}.conf",
            "source-keyring": d / keyring_name(source_cluster, self.source_client),
        }

    def remove_files(self, sides: tuple[str, ...]) -> list[str]:
        """Delete this charm's files of `sides` ("source", "destination"); return their paths.

        Whatever name the source was written under: every conf carrying this charm's marker,
        and the keyrings named for this charm's entities. A conf without the marker is never
        touched.
        """
        d = self.conf_dir
        doomed: list[Path] = []
        if "destination" in sides:
            doomed += [d / "ceph.conf", d / keyring_name("ceph", self.destination_client)]
        if "source" in sides:
            doomed += [c for c in d.glob("*.conf") if c.name != "ceph.conf"]
            doomed += [
                k
                for k in d.glob(keyring_name("*", self.source_client))
                if k.name != keyring_name("ceph", self.source_client)
            ]
        if set(sides) >= {"source", "destination"}:
            doomed += [d / RESTART_MARKER, self.drop_in]
        removed = []
        for path in doomed:
            if not path.is_file():
                continue
            if path.suffix == ".conf" and not path.read_text().startswith(MARKER):
                continue
            path.unlink()
            removed.append(str(path))
        if str(self.drop_in) in removed:
            if not any(self.drop_in.parent.iterdir()):
                self.drop_in.parent.rmdir()
            with contextlib.suppress(ServiceError):  # the unit is stopped: only left stale
                _systemctl("daemon-reload")
        return removed

    def restart_pending(self) -> bool:
        """The files changed since the daemon was last (re)started."""
        return (self.conf_dir / RESTART_MARKER).exists()

    def restarted(self) -> None:
        """The daemon runs on the current files."""
        (self.conf_dir / RESTART_MARKER).unlink(missing_ok=True)

    def check_foreign(self, source_cluster: str) -> None:
        """Raise ForeignFileError if a conf we would write exists and is not ours."""
        for path in (self.conf_dir / "ceph.conf", self.conf_dir / f"{source_cluster}.conf"):
            if path.exists() and not path.read_text().startswith(MARKER):
                raise ForeignFileError(path)

    def write(self, files: DaemonFiles) -> bool:
        """Render and write all four files where they changed; True if any did."""
        self.check_foreign(files.source_cluster)
        paths = self.paths(files.source_cluster)
        contents = {
            "destination-conf": self._render(
                "ceph.conf.j2",
                mon_hosts=files.destination_mon_hosts,
                tuning=files.tuning,
            ),
            "source-conf": self._render(
                "source.conf.j2",
                mon_hosts=files.source_mon_hosts,
                cluster=files.source_cluster,
                client_name=self.source_client,
            ),
            "destination-keyring": self._render(
                "keyring.j2", entity=self.destination_client, key=files.destination_key
            ),
            "source-keyring": self._render(
                "keyring.j2", entity=self.source_client, key=files.source_key
            ),
        }
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        if any(not _same(paths[role], text) for role, text in contents.items()):
            (self.conf_dir / RESTART_MARKER).touch()
        changed = False
        for role, content in contents.items():
            mode = 0o600 if role.endswith("keyring") else 0o644
            changed |= write_if_changed(paths[role], content, mode)
        return changed

    def _render(self, template: str, **context) -> str:
        return self._env.get_template(template).render(marker=MARKER, **context)

    # --- service ---------------------------------------------------------------------------
    def running(self) -> bool:
        """True if the service manager says the daemon is running."""
        return _systemctl("is-active", "--quiet", self.service).returncode == 0

    def stopped(self) -> bool:
        """Neither running nor about to run.

        A unit waiting to be restarted (its pre-start step failed, say) is `activating`, and
        systemd starts it again after RestartSec.
        """
        state = _systemctl("is-active", self.service).stdout.strip()
        return state in ("inactive", "failed", "unknown", "")

    def ensure_pre_start(self, pools: Sequence[str]) -> bool:
        """The unit's drop-in runs the pre-start step over `pools`, and systemd has loaded it.

        Written where it changed; systemd reloaded then, or whenever what it loaded is not the
        file on disk (a hook killed between the two, a reload that failed): it says so in
        NeedDaemonReload, or, for a drop-in directory it has never seen (systemd before v257,
        issue 31752), by not listing the drop-in in DropInPaths. True if systemd was reloaded;
        ServiceError when the drop-in is not in force (the file stays: the next call reloads).
        """
        if bad := [p for p in pools if not POOL_NAME.match(p)]:
            raise ServiceError(f"pool name(s) {bad!r} cannot go on the daemon unit's command line")
        content = self._render(
            "pre-start.conf.j2",
            command=PRE_START,
            workers=PRE_START_WORKERS,
            pools=",".join(sorted(pools)),
            timeout=PRE_START_TIMEOUT_S,
        )
        try:
            self.drop_in.parent.mkdir(parents=True, exist_ok=True)
            changed = write_if_changed(self.drop_in, content, 0o644, ceph_owned=False)
        except OSError as exc:
            raise ServiceError(f"could not write {self.drop_in}: {exc.strerror}") from None
        if not changed and self._loaded():
            return False
        if not changed and self._last_load_state == "not-found":
            return False  # no unit yet (packages to come): its first load reads the drop-in
        try:
            reloaded = _systemctl("daemon-reload").returncode == 0
        except ServiceError:
            reloaded = False
        if not reloaded:
            raise ServiceError(
                "`systemctl daemon-reload` failed: the pre-start step is not loaded"
            )
        return True

    def _loaded(self) -> bool:
        """Systemd runs the drop-in as it is on disk (LoadState kept for `ensure_pre_start`)."""
        props = self._show("NeedDaemonReload", "DropInPaths", "LoadState")
        self._last_load_state = props.get("LoadState", "")
        return (
            props.get("NeedDaemonReload") == "no"
            and str(self.drop_in) in props.get("DropInPaths", "").split()
        )

    def _show(self, *names: str) -> dict[str, str]:
        shown = _systemctl("show", *(f"--property={n}" for n in names), self.service)
        if shown.returncode != 0:
            return {}
        return dict(line.split("=", 1) for line in shown.stdout.splitlines() if "=" in line)

    def start(self, *, restart: bool) -> None:
        """Enable the daemon and start it (restart it when `restart`).

        systemd runs the pre-start step of the drop-in (`ensure_pre_start`, which the caller
        runs first) before the daemon, and for as long as the drop-in's TimeoutStartSec. A
        failed unit is reset first (the drop-in lifts the packaged start limit; a unit that
        hit it before the drop-in was loaded would refuse to start for 30 min).
        """
        _systemctl("reset-failed", self.service)
        _systemctl("enable", self.service)
        verb = "restart" if restart else "start"
        if _systemctl(verb, self.service, timeout=PRE_START_TIMEOUT_S + 30).returncode != 0:
            raise ServiceError(
                f"could not start {self.service} (its pre-start step rewinds interrupted "
                f"snapshot copies and fails if it cannot); see `journalctl -u {self.service}`"
            )

    def stop(self) -> None:
        """Stop and disable the daemon (a daemon that was never installed counts as stopped)."""
        if _systemctl("stop", self.service).returncode not in (0, SYSTEMCTL_NOT_LOADED):
            raise ServiceError(
                f"could not stop {self.service}; see `journalctl -u {self.service}`"
            )
        _systemctl("disable", self.service)


def _systemctl(*args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    """One bounded systemctl call (SERVICE_TIMEOUT_S unless told); a hang is a ServiceError."""
    timeout = SERVICE_TIMEOUT_S if timeout is None else timeout
    try:
        return subprocess.run(  # noqa: S603 - fixed argv, no shell
            [SYSTEMCTL, *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise ServiceError(
            f"`systemctl {' '.join(args)}` did not answer in {timeout:.0f} s"
        ) from None
    except OSError as exc:
        raise ServiceError(f"`systemctl {' '.join(args)}` failed: {exc}") from None


def _charmhelpers_apt_install():
    """The apt_install of charmhelpers, importable on Python 3.12 too.

    charmhelpers.core.hookenv imports `distutils`, which Python 3.12 no longer has. setuptools
    brings a replacement, but installs it through a .pth file that only site-packages runs, and
    the packed charm's venv/ is on PYTHONPATH instead: so the shim is added here by hand.
    """
    try:
        import distutils  # noqa: F401
    except ModuleNotFoundError:
        import _distutils_hack  # type: ignore[import-not-found]  # setuptools' shim

        _distutils_hack.add_shim()
    from charmhelpers.fetch import apt_install

    return apt_install


def _same(path: Path, content: str) -> bool:
    return path.exists() and path.read_text() == content


def write_if_changed(path: Path, content: str, mode: int, *, ceph_owned: bool = True) -> bool:
    """Atomically write `content` with `mode`, owned by ceph when that user exists.

    The temporary file is created with `mode` before anything is written to it, so a key is never
    readable by others, not even for an instant. `ceph_owned=False`: the writer's (root's).
    """
    if (
        path.exists()
        and path.read_bytes() == content.encode()
        and (path.stat().st_mode & 0o777) == mode
    ):
        return False
    fd, tmp = tempfile.mkstemp(dir=str(path.parent), prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        ids = _ceph_owner() if ceph_owned else None
        if ids is not None:
            os.fchown(fd, *ids)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def _ceph_owner() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("ceph").pw_uid, grp.getgrnam("ceph").gr_gid
    except KeyError:
        return None
