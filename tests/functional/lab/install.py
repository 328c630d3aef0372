"""Install Debian's Ceph packages for the lab when they are missing."""

from __future__ import annotations

import os
import shutil

from .procs import LabError, run

PACKAGES = (
    "ceph-mon",
    "ceph-osd",
    "ceph-mgr",
    "rbd-mirror",
    "ceph-common",
    "python3-rbd",
    "python3-rados",
)
BINARIES = ("ceph-mon", "ceph-osd", "ceph-mgr", "rbd-mirror", "ceph", "rbd", "rados")


def missing() -> list[str]:
    """Binaries the lab needs that are not on this machine."""
    out = [b for b in BINARIES if shutil.which(b) is None]
    if not any(name.startswith("rbd.") for name in _dist_packages()):
        out.append("python3-rbd")
    return out


def _dist_packages() -> list[str]:
    try:
        return os.listdir("/usr/lib/python3/dist-packages")
    except FileNotFoundError:
        return []


def ensure_packages() -> None:
    """apt-get install the Ceph packages (no recommends) unless every binary is already there."""
    if not missing():
        return
    if os.geteuid() != 0:
        raise LabError(f"Ceph packages missing ({', '.join(missing())}) and not root to install")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-qq"], timeout=600, env=env)
    run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
        timeout=1200,
        env=env,
    )
