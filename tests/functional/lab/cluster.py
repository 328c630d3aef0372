"""One single-host Ceph cluster on 127.0.0.1: 1 mon, 1 mgr, 1 memstore OSD, in one dir.

A cluster runs one Ceph release (releases.py): the host's own Pacific packages, or a newer
release's Debian root; every daemon and CLI of the cluster goes through `Cluster.command`, which
says where its binaries come from. The two lab clusters differ otherwise only in their
`ClusterSpec`. `dst` listens on the default mon ports
(3300/6789) because ceph-mon's relation data carries addresses without ports; `src` uses its own
ports, which ceph-proxy's `ceph-public-address` carries.
"""

from __future__ import annotations

import json
import shutil
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

from . import procs
from .procs import LabError, pid_alive, read_pid, stop_pid, wait_for
from .releases import HOST_RELEASE, Release, ensure_root, wrap

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[3]  # lab helpers (rbd_write.py) run from the root too
DAEMON_WAIT_S = 60.0
MEMSTORE_BYTES = 8 * 1024**3


@dataclass(frozen=True)
class ClusterSpec:
    """Name and ports of one lab cluster."""

    name: str
    mon_v2: int
    mon_v1: int
    port_min: int
    port_max: int

    @property
    def mon_host(self) -> str:
        """The `mon host` value, both protocols."""
        return f"[v2:{HOST}:{self.mon_v2},v1:{HOST}:{self.mon_v1}]"


SRC = ClusterSpec("src", mon_v2=13300, mon_v1=16789, port_min=6800, port_max=6849)
DST = ClusterSpec("dst", mon_v2=3300, mon_v1=6789, port_min=6850, port_max=6899)

CONF_TEMPLATE = """\
[global]
fsid = {fsid}
mon host = {mon_host}
public addr = {host}
cluster addr = {host}
ms bind ipv4 = true
ms bind ipv6 = false
ms bind port min = {port_min}
ms bind port max = {port_max}
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
run dir = {d}/run
crash dir = {d}/crash
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 2
mon data avail crit = 1
mgr initial modules = iostat
[mon]
mon data = {d}/mon/$cluster-$id
keyring = {d}/mon/$cluster-$id/keyring
log file = {d}/log/$cluster-$name.log
mon cluster log file = {d}/log/$cluster.log
admin socket = {d}/run/$cluster-$name.asok
pid file = {d}/run/$cluster-$name.pid
[mgr]
mgr data = {d}/mgr/$cluster-$id
keyring = {d}/mgr/$cluster-$id/keyring
log file = {d}/log/$cluster-$name.log
admin socket = {d}/run/$cluster-$name.asok
pid file = {d}/run/$cluster-$name.pid
[osd]
osd data = {d}/osd/$cluster-$id
keyring = {d}/osd/$cluster-$id/keyring
osd objectstore = memstore
memstore device bytes = {memstore}
osd crush update on start = true
osd fast shutdown = false
log file = {d}/log/$cluster-$name.log
admin socket = {d}/run/$cluster-$name.asok
pid file = {d}/run/$cluster-$name.pid
[client]
keyring = {d}/$cluster.$name.keyring
admin socket = {d}/run/$cluster-$name.$pid.asok
log file = {d}/log/$cluster-$name.log
"""

DAEMONS = ("mon.a", "mgr.x", "osd.0")


class Cluster:
    """A lab cluster under `base/<name>`: bootstrap, start, stop, and admin CLI access."""

    def __init__(self, spec: ClusterSpec, base: Path, release: Release = HOST_RELEASE):
        self.spec = spec
        self.name = spec.name
        self.base = base
        self.release = release
        self.dir = base / spec.name
        self.conf = self.dir / f"{self.name}.conf"
        self.admin_keyring = self.dir / f"{self.name}.client.admin.keyring"

    # --- where the binaries come from ------------------------------------------------------
    def command(self, argv: list[str]) -> list[str]:
        """`argv` as this cluster's release runs it: from its root, or from the host's packages.

        Once a test has put another release's tools over the host's /usr/bin (charm_host.py),
        the host's own Pacific commands run in the mount namespace saved before that.
        """
        if not self.release.on_host:
            return wrap(ensure_root(self.release), argv, binds=(self.base, REPO))
        if procs.HOST_MOUNT_NS:
            return ["/usr/bin/nsenter", f"--mount={procs.HOST_MOUNT_NS}", "--", *argv]
        return argv

    def run(self, argv: list[str], **kw):
        """Run `argv` (bounded, LabError on failure) with this cluster's release."""
        return procs.run(self.command(argv), **kw)

    # --- CLI -------------------------------------------------------------------------------
    def _cli(self, tool: str, args: list[str], **kw) -> bytes:
        return self.run([tool, "--cluster", self.name, "-c", str(self.conf), *args], **kw).stdout

    def ceph(self, *args: str, timeout: float = 60.0) -> str:
        """Run `ceph` as client.admin on this cluster and return stdout."""
        return self._cli("ceph", list(args), timeout=timeout).decode()

    def ceph_json(self, *args: str, timeout: float = 60.0):
        """Run `ceph ... --format json` and parse it."""
        return json.loads(self.ceph(*args, "--format", "json", timeout=timeout) or "null")

    def rbd(self, *args: str, input: bytes | None = None, timeout: float = 120.0) -> str:
        """Run `rbd` as client.admin on this cluster and return stdout."""
        return self._cli("rbd", list(args), input=input, timeout=timeout).decode()

    def rbd_json(self, *args: str, timeout: float = 120.0):
        """Run `rbd ... --format json` and parse it."""
        return json.loads(self.rbd(*args, "--format", "json", timeout=timeout) or "null")

    def rados(self, *args: str, timeout: float = 60.0) -> str:
        """Run `rados` as client.admin on this cluster and return stdout."""
        return self._cli("rados", list(args), timeout=timeout).decode()

    def rbd_bytes(self, *args: str, timeout: float = 300.0) -> bytes:
        """Run `rbd` and return raw stdout (for `export -`)."""
        return self._cli("rbd", list(args), timeout=timeout)

    # --- state -----------------------------------------------------------------------------
    def pid_file(self, daemon: str) -> Path:
        """Where `daemon` (e.g. `mon.a`) writes its PID."""
        return self.dir / "run" / f"{self.name}-{daemon}.pid"

    def running_pids(self) -> dict[str, int]:
        """The live daemons of this cluster, by name."""
        out = {}
        for daemon in DAEMONS:
            pid = read_pid(self.pid_file(daemon))
            if pid is not None and pid_alive(pid):
                out[daemon] = pid
        return out

    @property
    def bootstrapped(self) -> bool:
        """True once mkfs has been done for all three daemons."""
        return (self.dir / "osd" / f"{self.name}-0" / "keyring").exists() and self.conf.exists()

    @property
    def fsid(self) -> str:
        """The cluster's fsid."""
        return (self.dir / "fsid").read_text().strip()

    def version(self) -> str:
        """The mon's Ceph version as `ceph versions` reports it, e.g. `16.2.15`."""
        (text,) = self.ceph_json("versions")["mon"]
        return text.split()[2]

    def health(self) -> str:
        """`HEALTH_OK`, `HEALTH_WARN ...` etc."""
        return self.ceph("health", timeout=15).strip()

    # --- lifecycle -------------------------------------------------------------------------
    def up(self) -> bool:
        """Bootstrap or restart the cluster; return False if it was already fully running."""
        if len(self.running_pids()) == len(DAEMONS):
            return False
        if not self.bootstrapped:
            self._check_ports_free()
            self._bootstrap()
        else:
            self._start_missing()
        self._wait_healthy()
        return True

    def down(self) -> None:
        """Stop this cluster's daemons by PID: OSD, then mgr, then mon."""
        for daemon in reversed(DAEMONS):
            pid = read_pid(self.pid_file(daemon))
            if pid is not None:
                stop_pid(pid, timeout=30)

    def _check_ports_free(self) -> None:
        for port in (self.spec.mon_v2, self.spec.mon_v1):
            with socket.socket() as sock:
                if sock.connect_ex((HOST, port)) == 0:
                    raise LabError(
                        f"{self.name}: mon port {HOST}:{port} is already in use "
                        "(another lab running?)"
                    )

    def _bootstrap(self) -> None:
        d = self.dir
        for sub in ("run", "log", "crash", "mon", "mgr", "osd"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        fsid = str(uuid.uuid4())
        (d / "fsid").write_text(fsid + "\n")
        self.conf.write_text(
            CONF_TEMPLATE.format(
                fsid=fsid,
                mon_host=self.spec.mon_host,
                host=HOST,
                port_min=self.spec.port_min,
                port_max=self.spec.port_max,
                d=d,
                memstore=MEMSTORE_BYTES,
            )
        )
        mon_keyring = d / "mon.keyring"
        self.run(
            [
                "ceph-authtool",
                "--create-keyring",
                str(mon_keyring),
                "--gen-key",
                "-n",
                "mon.",
                "--cap",
                "mon",
                "allow *",
            ]
        )
        self.run(
            [
                "ceph-authtool",
                "--create-keyring",
                str(self.admin_keyring),
                "--gen-key",
                "-n",
                "client.admin",
                "--cap",
                "mon",
                "allow *",
                "--cap",
                "osd",
                "allow *",
                "--cap",
                "mgr",
                "allow *",
                "--cap",
                "mds",
                "allow *",
            ]
        )
        self.admin_keyring.chmod(0o600)
        self.run(["ceph-authtool", str(mon_keyring), "--import-keyring", str(self.admin_keyring)])
        monmap = d / "monmap"
        self.run(
            [
                "monmaptool",
                "--create",
                "--clobber",
                "--fsid",
                fsid,
                "--addv",
                "a",
                self.spec.mon_host,
                str(monmap),
            ]
        )
        base = ["--cluster", self.name, "-c", str(self.conf)]
        self.run(
            [
                "ceph-mon",
                *base,
                "--mkfs",
                "-i",
                "a",
                "--monmap",
                str(monmap),
                "--keyring",
                str(mon_keyring),
            ]
        )
        self._start("mon.a")
        mgr_dir = d / "mgr" / f"{self.name}-x"
        mgr_dir.mkdir(parents=True, exist_ok=True)
        self.ceph(
            "auth",
            "get-or-create",
            "mgr.x",
            "mon",
            "allow profile mgr",
            "osd",
            "allow *",
            "mds",
            "allow *",
            "-o",
            str(mgr_dir / "keyring"),
        )
        self._start("mgr.x")
        secret = self.run(["ceph-authtool", "--gen-print-key"]).stdout.decode().strip()
        osd_uuid = str(uuid.uuid4())
        new_json = d / "osd-new.json"
        new_json.touch(mode=0o600)
        new_json.write_text(json.dumps({"cephx_secret": secret}))
        osd_id = self.ceph("osd", "new", osd_uuid, "-i", str(new_json)).strip()
        new_json.unlink()
        if osd_id != "0":
            raise LabError(f"{self.name}: expected osd id 0, got {osd_id!r}")
        osd_dir = d / "osd" / f"{self.name}-0"
        osd_dir.mkdir(parents=True, exist_ok=True)
        keyring = osd_dir / "keyring"
        keyring.touch(mode=0o600)
        keyring.write_text(f"[osd.0]\n\tkey = {secret}\n")
        self.run(["ceph-osd", *base, "-i", "0", "--mkfs", "--key", secret, "--osd-uuid", osd_uuid])
        self._start("osd.0")

    def _start(self, daemon: str) -> None:
        kind, ident = daemon.split(".")
        self.run(
            [f"ceph-{kind}", "--cluster", self.name, "-c", str(self.conf), "-i", ident],
            timeout=DAEMON_WAIT_S,
        )
        if not wait_for(lambda: self._daemon_up(daemon), timeout=DAEMON_WAIT_S):
            raise LabError(
                f"{self.name}: {daemon} not up within {DAEMON_WAIT_S:.0f}s; "
                f"see {self.dir}/log/{self.name}-{daemon}.log"
            )

    def _daemon_up(self, daemon: str) -> bool:
        pid = read_pid(self.pid_file(daemon))
        if pid is None or not pid_alive(pid):
            return False
        if daemon.startswith("osd"):
            return self.ceph_json("osd", "stat", timeout=10)["num_up_osds"] >= 1
        if daemon.startswith("mgr"):
            return bool(self.ceph_json("mgr", "stat", timeout=10).get("available"))
        return bool(self.ceph("mon", "stat", timeout=10))

    def _start_missing(self) -> None:
        running = self.running_pids()
        for daemon in DAEMONS:
            if daemon not in running:
                self._start(daemon)

    def pgs_active(self) -> bool:
        """True when the OSD is up and every PG is active+clean (a new pool can be written)."""
        if self.ceph_json("osd", "stat", timeout=10)["num_up_osds"] < 1:
            return False
        pgs = self.ceph_json("pg", "stat", timeout=10)["pg_summary"]
        return {s["name"] for s in pgs["num_pg_by_state"]} <= {"active+clean"}

    def osd_full(self) -> bool:
        """The OSD counts itself full: memstore's used-bytes counter wrapped below zero.

        Seen in CI after many pools were deleted: `16 EiB used, 8.0 GiB / 8 GiB avail`, the OSD
        log "full status failsafe engaged, dropping updates, now -2147483648% full", and every
        later `rbd pool init` hanging. A restart did not cure it (the OSD did not come back up
        within 60 s): `settle` rebuilds such a cluster.
        """
        checks = self.ceph_json("health", timeout=15).get("checks") or {}
        nodes = self.ceph_json("osd", "df", timeout=15).get("nodes") or []
        return "OSD_FULL" in checks or any(n.get("kb_used", 0) > n.get("kb", 0) for n in nodes)

    def restart_osd(self) -> None:
        """Stop the OSD by PID (a clean stop: memstore saves its data, G9) and start it again."""
        pid = read_pid(self.pid_file("osd.0"))
        if pid is not None:
            stop_pid(pid, timeout=30)
        self._start("osd.0")

    def settled(self) -> bool:
        """Every PG active+clean and the OSD not full: a new pool can be written."""
        return self.pgs_active() and not self.osd_full()

    def settle(self, timeout: float = DAEMON_WAIT_S) -> None:
        """Wait until `settled`; otherwise restart a wedged OSD, and rebuild what stays wrong.

        Seen in CI: every later `rbd pool init` hung, from memstore's counter wrapping below zero
        (`osd_full`), and that OSD failed to come back up after a restart. A full OSD, or one a
        restart does not settle, gets a new cluster (`rebuild`: same ports and names, empty,
        about 15 s).
        """
        if not self.osd_full() and wait_for(self.settled, timeout=timeout, interval=1.0):
            return
        if not self.osd_full():  # wedged: a restart by PID is enough (G9 keeps the data)
            try:
                self.restart_osd()
                if wait_for(self.settled, timeout=timeout, interval=1.0):
                    return
            except LabError as exc:
                print(f"lab: {self.name}'s OSD restart failed: {exc}", flush=True)
        print(f"lab: {self.name} does not settle; rebuilding it\n{self.diagnose()}", flush=True)
        self.rebuild()

    def rebuild(self) -> None:
        """Stop this cluster by PID, delete its directory and bootstrap it again (empty)."""
        self.down()
        shutil.rmtree(self.dir)
        self.up()

    def diagnose(self) -> str:
        """What an operator would look at first: status, stuck PGs, daemons, the OSD log's tail."""
        out = [f"daemons alive: {self.running_pids()}"]
        for args in (("-s",), ("health", "detail"), ("pg", "dump_stuck")):
            try:
                out.append(f"$ ceph {' '.join(args)}\n{self.ceph(*args, timeout=15)}")
            except LabError as exc:
                out.append(f"$ ceph {' '.join(args)}: {exc}")
        log = self.dir / "log" / f"{self.name}-osd.0.log"
        if log.exists():
            tail = log.read_text(errors="replace").splitlines()[-30:]
            out.append(f"$ tail {log}\n" + "\n".join(tail))
        return "\n".join(out)

    def _wait_healthy(self) -> None:
        def ok() -> bool:
            # The mgr creates its own pool (Pacific: device_health_metrics, later: .mgr); wait
            # for it: the cluster is then in the same settled state after every `up`, and no PG
            # is unknown (memstore G9).
            if self.release.mgr_pool not in self.ceph("osd", "pool", "ls", timeout=10).split():
                return False
            pgs = self.ceph_json("pg", "stat", timeout=10)["pg_summary"]
            states = {s["name"] for s in pgs["num_pg_by_state"]}
            return states == {"active+clean"} and self.health() == "HEALTH_OK"

        if not wait_for(ok, timeout=DAEMON_WAIT_S, interval=1.0):
            raise LabError(
                f"{self.name}: not HEALTH_OK with all PGs active+clean within "
                f"{DAEMON_WAIT_S:.0f}s: {self.health()}"
            )
