"""A two-cluster Ceph lab on 127.0.0.1 for the functional tests, the demo and the benchmarks.

`Lab(base).up()` brings up `src` and `dst`; `Lab(base).down()` stops exactly what it started,
rbd-mirror daemons first. Each cluster runs a Ceph release (releases.py): by default the host's
Pacific, or the one named by `Lab(base, src="pacific", dst="reef")`, $RBD_MIRROR_LAB_SRC and
$RBD_MIRROR_LAB_DST, or the command line's --src/--dst.
The command line is `python -m tests.functional.lab up|down|status|seed [--src R] [--dst R] DIR`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .cluster import DST, SRC, Cluster
from .install import ensure_packages
from .procs import LabError, pid_alive, read_pid, stop_pid
from .releases import Release, release

__all__ = ["Lab", "LabError", "default_base"]


def default_base() -> Path:
    """The lab directory: $RBD_MIRROR_LAB or /tmp/rbd-mirror-lab."""
    return Path(os.environ.get("RBD_MIRROR_LAB", "/tmp/rbd-mirror-lab"))


def releases_from_env() -> tuple[Release, Release]:
    """The source's and destination's releases: $RBD_MIRROR_LAB_SRC/_DST, default pacific."""
    return (
        release(os.environ.get("RBD_MIRROR_LAB_SRC") or "pacific"),
        release(os.environ.get("RBD_MIRROR_LAB_DST") or "pacific"),
    )


class Lab:
    """The two lab clusters and the rbd-mirror daemons started inside the lab dir."""

    def __init__(self, base: Path, src: Release | None = None, dst: Release | None = None):
        # A lab that was brought up remembers its releases (releases.json); then the environment.
        saved = base / "releases.json"
        if saved.exists():
            names = json.loads(saved.read_text())
            default_src, default_dst = release(names["src"]), release(names["dst"])
        else:
            default_src, default_dst = releases_from_env()
        self.base = base
        self.src = Cluster(SRC, base, src or default_src)
        self.dst = Cluster(DST, base, dst or default_dst)
        # Stand-in service managers record the daemons they start here, one pid file each.
        self.services_dir = base / "services"

    def up(self) -> bool:
        """Install Ceph if missing, then bring both clusters up; False if both were running."""
        ensure_packages()  # the host's own: tests and ceph-authtool for every release
        self.base.mkdir(parents=True, exist_ok=True)
        names = {"src": self.src.release.name, "dst": self.dst.release.name}
        (self.base / "releases.json").write_text(json.dumps(names) + "\n")
        started_src = self.src.up()
        started_dst = self.dst.up()
        return started_src or started_dst

    def down(self) -> None:
        """Stop rbd-mirror daemons first (G10), then dst, then src; by PID only."""
        self.stop_services()
        self.dst.down()
        self.src.down()

    def stop_services(self) -> None:
        """Stop the daemons that stand-in service managers started (by their pid files)."""
        for pid_file in sorted(self.services_dir.glob("*.pid")):
            pid = read_pid(pid_file)
            if pid is not None:
                stop_pid(pid, timeout=30)
            pid_file.unlink(missing_ok=True)

    def service_pids(self) -> dict[str, int]:
        """Live daemons started by stand-in service managers, by unit name."""
        out = {}
        for pid_file in sorted(self.services_dir.glob("*.pid")):
            pid = read_pid(pid_file)
            if pid is not None and pid_alive(pid):
                out[pid_file.stem] = pid
        return out

    def reset(self) -> None:
        """Stop rbd-mirror daemons and delete the OpenStack pools on both clusters (for reuse)."""
        from .seed import POOLS

        self.stop_services()
        for cluster in (self.src, self.dst):
            if len(cluster.running_pids()) < 3:
                cluster.up()
            existing = set(cluster.ceph("osd", "pool", "ls").split())
            for pool in POOLS:
                if pool in existing:
                    cluster.ceph("osd", "pool", "rm", pool, pool, "--yes-i-really-really-mean-it")
            (cluster.dir / "seed.json").unlink(missing_ok=True)
            cluster.settle()

    def all_pids(self) -> list[int]:
        """Every live PID the lab started."""
        return [
            *self.service_pids().values(),
            *self.src.running_pids().values(),
            *self.dst.running_pids().values(),
        ]

    def status(self) -> dict[str, object]:
        """Health and daemons of both clusters."""
        out: dict[str, object] = {}
        for cluster in (self.src, self.dst):
            pids = cluster.running_pids()
            health = cluster.health() if "mon.a" in pids else "DOWN"
            out[cluster.name] = {
                "release": cluster.release.name,
                "health": health,
                "daemons": pids,
                "mon": cluster.spec.mon_host,
            }
        out["services"] = self.service_pids()
        return out
