"""The rbd-mirror daemon on this unit: packages, its conf and keyring files, and its systemd unit.

The daemon is the Ubuntu package's `ceph-rbd-mirror@rbd-mirror.<unique_id>`, which runs
`rbd-mirror --cluster ceph --id rbd-mirror.<unique_id> --setuser ceph`. It reads the destination
from /etc/ceph/ceph.conf and the source (its remote peer) from /etc/ceph/<source>.conf; both need
their keyrings beside them, readable by user ceph. Nothing here imports ops.
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

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
    ):
        self.unique_id = unique_id
        self.source_client = source_client
        self.conf_dir = conf_dir
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
            doomed.append(d / RESTART_MARKER)
        removed = []
        for path in doomed:
            if not path.is_file():
                continue
            if path.suffix == ".conf" and not path.read_text().startswith(MARKER):
                continue
            path.unlink()
            removed.append(str(path))
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

    def start(self, *, restart: bool) -> None:
        """Enable the daemon and start it (restart it when `restart`)."""
        _systemctl("enable", self.service)
        if _systemctl("restart" if restart else "start", self.service).returncode != 0:
            raise ServiceError(
                f"could not start {self.service}; see `journalctl -u {self.service}`"
            )

    def stop(self) -> None:
        """Stop and disable the daemon (a daemon that was never installed counts as stopped)."""
        if _systemctl("stop", self.service).returncode not in (0, SYSTEMCTL_NOT_LOADED):
            raise ServiceError(
                f"could not stop {self.service}; see `journalctl -u {self.service}`"
            )
        _systemctl("disable", self.service)


def _systemctl(*args: str) -> subprocess.CompletedProcess:
    """One bounded systemctl call; a hang becomes a ServiceError."""
    try:
        return subprocess.run(  # noqa: S603 - fixed argv, no shell
            [SYSTEMCTL, *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=SERVICE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise ServiceError(
            f"`systemctl {' '.join(args)}` did not answer in {SERVICE_TIMEOUT_S} s"
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


def write_if_changed(path: Path, content: str, mode: int) -> bool:
    """Atomically write `content` with `mode`, owned by ceph when that user exists.

    The temporary file is created with `mode` before anything is written to it, so a key is never
    readable by others, not even for an instant.
    """
    if path.exists() and path.read_text() == content and (path.stat().st_mode & 0o777) == mode:
        return False
    fd, tmp = tempfile.mkstemp(dir=str(path.parent), prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        owner = _ceph_owner()
        if owner is not None:
            os.fchown(fd, *owner)
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
