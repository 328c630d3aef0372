"""A typed client for one Ceph cluster, and what it answers: every Ceph call of the charm is here.

Reads and per-image work go through librbd (rbd_bulk.py, one process per pool and side, its
requests and answers typed in bulk_schema.py); pool-wide changes (mirror mode, peers, demote,
promote) through the `rbd` CLI, and the blocklist probe through the `ceph` CLI. No shell,
absolute paths, `--` before every name, and a timeout on every call (a cluster without a mgr
makes some commands hang forever). Errors are `CephError` with the exit code (the errno, from
the CLIs and from rbd_bulk.py alike) and Ceph's message, scrubbed of anything like a cephx key.

A call that times out, or a cluster whose connection times out or is refused, makes later calls
of the same dispatch fail at once. Only the connection failure makes the cluster `lost` (what
`force` needs), decided on the errno; `confirm_lost` tries one fresh connection before a forced
step. No other call is retried here: a hook must not wait on a cluster, and the next hook reads
it again. The one retry of the workflow, the promotion while librbd answers EBUSY, is a tenacity
policy in cutover.py, where its rule (what, on which error, until when) is part of the cutover.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, cast

from bulk_schema import (
    CutoverSnapshotsAnswer,
    DaemonCalloutsAnswer,
    DisabledAnswer,
    ExtentAnswer,
    FeatureChangesAnswer,
    FsidAnswer,
    ImageDigestsAnswer,
    ImageStatesAnswer,
    JournalProbeAnswer,
    JournalStatusAnswer,
    MirroredPoolsAnswer,
    PeerAnswer,
    PoolsAnswer,
    PoolStateAnswer,
    PreflightImagesAnswer,
    Request,
    SizesAnswer,
    SpaceAnswer,
    VersionsAnswer,
)
from ceph_release import CephVersion, ClusterVersions, blocklist_command, versions_from
from mirror_modes import JOURNAL, mode

PENDING = "pending: "  # rbd_bulk's "not yet" in a promote-demoted failure

logger = logging.getLogger(__name__)

CEPH = "/usr/bin/ceph"
SYSTEM_PYTHON = "/usr/bin/python3"  # has python3-rbd; the charm's venv does not
BULK_HELPER = Path(__file__).with_name("rbd_bulk.py")
RBD = "/usr/bin/rbd"
RADOS = "/usr/bin/rados"
RBD_MIRROR = "/usr/bin/rbd-mirror"
UNIT_TOOLS = {"rbd": RBD, "rbd-mirror": RBD_MIRROR}  # this unit's own, by name

# The snapshot demote-promote takes of every destination image right after promoting it: rollback
# reads from it whether anything wrote to the destination since; teardown removes it.
CUTOVER_SNAPSHOT = "rbd-mirror-migration-cutover"
# The preflight's journaling probe creates and removes an image named with this prefix and a
# random suffix, tagged with this image-metadata key: it removes only tagged leftovers (a killed
# probe's), never an image of the cloud's, and enable-mirroring never journals such a name.
JOURNAL_PROBE_IMAGE = "rbd-mirror-migration-probe"

EBUSY = 16
EACCES = 13
EINVAL = 22
ENOENT = 2
ETIMEDOUT = 110
ECONNREFUSED = 111
MOUNT_MARGIN_S = 4  # process start-up and the answer, after librados gives up connecting
# A cluster is lost only when the connection itself times out or is refused. librados says
# "error connecting to the cluster" for a denied key or a missing keyring too: those are answers.
NO_CONNECTION_ERRNOS = (ETIMEDOUT, ECONNREFUSED)
POOL_TYPE_ERASURE = 3  # `type` in `osd pool ls detail` (1 = replicated)

_CEPHX_KEY = re.compile(r"AQ[A-Za-z0-9+/]{30,}={0,2}")


def scrub(text: str) -> str:
    """Replace anything that looks like a cephx secret with `<redacted>`."""
    return _CEPHX_KEY.sub("<redacted>", text)


class CephError(Exception):
    """A Ceph command failed or timed out; `rc` is its exit code (None on timeout)."""

    def __init__(self, cluster: str, args: Sequence[str], rc: int | None, stderr: str):
        self.cluster = cluster
        self.args_ = list(args)
        self.rc = rc
        self.stderr = scrub(stderr.strip())
        last = self.stderr.splitlines()[-1] if self.stderr else ""
        what = "timed out" if rc is None else f"failed (rc={rc})"
        super().__init__(f"{cluster}: `{' '.join(self.args_)}` {what}: {last}".rstrip(": "))

    @property
    def timed_out(self) -> bool:
        """True when the command was killed by the timeout."""
        return self.rc is None


Runner = Callable[..., subprocess.CompletedProcess]


@dataclass(frozen=True)
class PoolInfo:
    """A pool as `ceph osd pool ls detail` describes it."""

    name: str
    pg_num: int
    size: int
    applications: tuple[str, ...]
    erasure: bool = False  # an erasure-coded pool (`type` 3): size is k+m, not replicas
    untagged_rbd: bool = False  # holds RBD images but has no application rbd


@dataclass(frozen=True)
class Peer:
    """A mirror peer of a pool, as librbd lists it; never carries the key."""

    uuid: str
    site_name: str
    client_name: str
    direction: str

    @property
    def tx_only(self) -> bool:
        """A peer this cluster only sends to: how a one-way daemon registers on the primary.

        librbd's RBD_MIRROR_PEER_DIRECTION_TX is 1 (rx 0, rx-tx 2).
        """
        return self.direction in ("1", "tx-only")

    @classmethod
    def from_answer(cls, peer: PeerAnswer) -> Peer:
        """From rbd_bulk.py's peer dict (the same for `pool-state` and `mirrored-pools`)."""
        return cls(
            uuid=peer["uuid"],
            site_name=peer["site_name"],
            client_name=peer["client_name"],
            direction=peer["direction"],
        )


@dataclass(frozen=True)
class MirrorPoolInfo:
    """A pool's mirror mode and peers."""

    name: str
    mode: str
    peers: tuple[Peer, ...]
    site_name: str = ""  # this cluster's own mirroring site name

    @property
    def peer_sites(self) -> tuple[str, ...]:
        """The site names of the peers, sorted."""
        return tuple(sorted(p.site_name for p in self.peers))


MIRRORING_OBJECT = (
    "rbd_mirroring"  # a pool's mirroring settings; every rbd-mirror daemon watches it
)


def without_daemons(
    watchers: Mapping[str, Sequence[str]], daemon_clients: set[str]
) -> dict[str, tuple[str, ...]]:
    """Each image's watchers (`addr (client.N)`) less those of rbd-mirror daemons.

    In snapshot mode the daemon replaying a pool watches each of its source images (for new
    mirror snapshots), through the same connection with which it watches the pool's
    `rbd_mirroring` object; no cloud client watches that object. So a client id that watches
    it is a daemon's, not an instance's (`daemon_clients`: those ids).
    """
    kept = {}
    for image, seen in watchers.items():
        left = tuple(
            w for w in seen if w.rpartition("(client.")[2].rstrip(")") not in daemon_clients
        )
        if left:
            kept[image] = left
    return kept


def parse_description(description: str) -> dict[str, object]:
    """A status description's JSON (`replaying, {json}`) -> its fields; anything else -> {}."""
    _, sep, rest = description.partition(", ")
    if not sep or not rest.startswith("{"):
        return {}
    try:
        data = json.loads(rest)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class ImageStatus:
    """One mirrored image as its cluster's daemon reports it, and librbd's primary flag."""

    pool: str
    name: str
    state: str = ""  # "up+replaying", "down+stopped", "up+error", ...
    description: str = ""
    last_update: str = ""
    global_id: str = ""
    primary: bool = False  # librbd's flag, not the status description
    mode: str = JOURNAL  # how it is mirrored (mirror_modes.py)

    @property
    def entries_behind(self) -> int | None:
        """`entries_behind_primary` from a journal-mode description, if any."""
        value = parse_description(self.description).get("entries_behind_primary")
        return int(value) if isinstance(value, (int, float)) else None

    @property
    def bytes_per_second(self) -> float | None:
        """Replay throughput from the description, if any."""
        value = parse_description(self.description).get("bytes_per_second")
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def caught_up(self) -> bool:
        """Replaying with nothing left to copy, as far as the lagging status knows (per mode)."""
        return mode(self.mode).caught_up(self.state, parse_description(self.description))

    @property
    def snapshot_copied_at(self) -> float | None:
        """Snapshot mode: when the newest source snapshot copied was taken (unix seconds)."""
        value = parse_description(self.description).get("local_snapshot_timestamp")
        return float(value) if isinstance(value, (int, float)) and value else None

    @property
    def in_error(self) -> bool:
        """The daemon reports an error for this image."""
        return self.state.endswith("+error")

    @property
    def reported(self) -> bool:
        """A running daemon publishes this image's state (`up+...`, not `down+...`)."""
        return self.state.startswith("up+")

    @property
    def summary(self) -> str:
        """`pool/name: state (first words of the description)`."""
        return f"{self.pool}/{self.name}: {self.state} ({self.description.split(',')[0]})"

    def as_dict(self) -> dict[str, object]:
        """For action results."""
        return {
            "pool": self.pool,
            "image": self.name,
            "state": self.state,
            "primary": self.primary,
            "entries-behind-primary": self.entries_behind,
            "bytes-per-second": self.bytes_per_second,
            "description": self.description.split(",")[0],
            "last-update": self.last_update,
        }


@dataclass(frozen=True)
class PoolState:
    """A pool's mirroring as librbd reports it in one call: mode, peers, images, statuses."""

    mode: str
    peers: tuple[Peer, ...]
    images: tuple[str, ...]
    statuses: tuple[ImageStatus, ...]
    # Only when asked for: each image's watchers, as "address (client.<id>)". On the source in
    # journal mode these are the cloud's clients: the replaying rbd-mirror daemon holds no
    # watch on a source image (sampled on the lab through a whole fault test).
    watchers: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Callout:
    """A problem an rbd-mirror daemon publishes for a pool (`ceph service status`)."""

    pool: str
    level: str  # "error", "warning", "info"
    text: str


@dataclass(frozen=True)
class ImageInfo:
    """The parts of `rbd ls -l` and `rbd info` this charm uses."""

    name: str
    parent: str = ""  # "pool/image@snap" for a clone
    features: tuple[str, ...] = ()
    mirroring_state: str = ""
    primary: bool | None = None


@dataclass(frozen=True)
class JournalPeer:
    """A client registered with an image's journal other than its writer: a mirror peer."""

    id: str  # the peer's mirror uuid
    connected: bool  # False once the writer disconnected it (past the journal cap)
    entries_behind: int | None  # None when its position is in another tag than the writer's
    bytes_behind: int  # at least this much journal data it has not committed


@dataclass(frozen=True)
class JournalInfo:
    """What one journaled image's journal keeps on its cluster, and how far each peer is behind.

    `bytes`: its data objects not trimmed yet (trimming waits for every connected client).
    """

    image: str
    bytes: int
    objects: int
    peers: tuple[JournalPeer, ...] = ()

    @property
    def entries_behind(self) -> int | None:
        """The most entries any peer has not committed (None when none can be told)."""
        known = [p.entries_behind for p in self.peers if p.entries_behind is not None]
        return max(known) if known else None

    @property
    def bytes_behind(self) -> int:
        """The most journal bytes any connected peer has not committed: the backlog."""
        return max((p.bytes_behind for p in self.peers if p.connected), default=0)

    @property
    def disconnected(self) -> bool:
        """A peer was disconnected (past rbd_journal_max_concurrent_object_sets)."""
        return any(not p.connected for p in self.peers)


@dataclass(frozen=True)
class SnapshotCheck:
    """Each image's cutover snapshot: created or removed, or what changed since it."""

    changed: tuple[str, ...] = ()
    written: dict[str, str] = field(default_factory=dict)
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class Layer:
    """One snapshot (`snap`; "" for the head) of an image, as `verify` read it.

    `chunks`: chunk offset -> digest ("" for a chunk of zeros) of the chunks that changed since
    the layer before, or, for a layer read `whole` (the first, the head, a snapshot whose parent
    overlap changed), of every allocated chunk: such a layer replaces what the layers before
    gave. Applied in order, the layers give each snapshot's whole content; a chunk no layer
    names is a hole.
    """

    snap: str
    size: int
    chunks: dict[int, str]
    whole: bool = False


@dataclass(frozen=True)
class ImageDigest:
    """One side of one image as `verify` compares it: metadata and its layers' chunk digests."""

    size: int
    snaps: tuple[tuple[str, int], ...]
    parent: str
    layers: tuple[Layer, ...]
    bytes_read: int


@dataclass(frozen=True)
class PoolSpace:
    """One pool's bytes, as `ceph df` and `osd pool ls detail` give them."""

    name: str
    stored: int  # what clients stored, before replication
    max_avail: int  # what it may still take (replicas and full ratio counted)
    size: int  # replicas
    quota_max_bytes: int = 0  # 0: no quota
    crush_rule: int = -1  # pools of one rule share their OSDs' raw space (-1: unknown)
    osds: tuple[int, ...] = ()  # the OSDs its rule may place data on (): unknown)


@dataclass(frozen=True)
class Space:
    """A cluster's pools' bytes and its raw bytes available."""

    pools: dict[str, PoolSpace]
    total_avail_bytes: int


@dataclass(frozen=True)
class PreflightImage:
    """What enable-mirroring's preflight needs of one image."""

    name: str
    old_format: bool = False
    features: tuple[str, ...] = ()
    parent: str = ""  # "pool/image@snap" for a clone
    mirror_mode: str = ""  # "journal" or "snapshot" when mirroring is on
    head: str = ""  # a non-clone's first 4 bytes, as hex
    snaps: tuple[str, ...] = ()  # its snapshots' names
    size: int = 0  # bytes


@dataclass(frozen=True)
class Digests:
    """What one side answered for a pool's images: each image read, and those that failed."""

    images: dict[str, ImageDigest]
    failed: dict[str, str]


class CephCluster(Protocol):
    """What the workflow asks of a cluster: `CephClient` here, the in-memory fake in unit tests.

    pyright checks that both satisfy it (tests/unit/fake_ceph.py), so the fake cannot drift.
    """

    @property
    def lost(self) -> bool:
        """The cluster did not answer the connection at all in this run."""
        ...

    def confirm_lost(self) -> bool:
        """Still lost on a fresh connection."""
        ...

    def pools(self) -> list[PoolInfo]:
        """Every pool of the cluster."""
        ...

    def daemon_callouts(self) -> list[Callout]:
        """What this cluster's rbd-mirror daemons publish per pool."""
        ...

    def versions(self, *, daemons: bool) -> ClusterVersions:
        """The mons' and OSDs' Ceph versions; with `daemons`, the rbd-mirror daemons' too."""
        ...

    def mirror_pools(self, pools: Sequence[str]) -> list[MirrorPoolInfo]:
        """Mirror mode and peers of each of `pools` that exists."""
        ...

    def mirror_pool_info(self, pool: str) -> MirrorPoolInfo:
        """Mirror mode and peers of `pool`."""
        ...

    def pool_state(self, pool: str, *, watchers: bool = False, workers: int = 4) -> PoolState:
        """Mode, peers, images and every mirrored image's status and primary flag."""
        ...

    def image_states(self, pool: str, *, workers: int = 4) -> list[ImageInfo]:
        """Features, parent, mirroring state and primary flag of every image."""
        ...

    def enable_journaling_all(
        self, pool: str, images: Sequence[str], *, workers: int = 4
    ) -> tuple[dict[str, str], dict[str, str]]:
        """Journaling on `images`: ({image: what changed}, {image: error})."""
        ...

    def disable_journaling_all(
        self, pool: str, images: Sequence[str], *, workers: int = 4
    ) -> tuple[list[str], dict[str, str]]:
        """Journaling off on `images`: (changed, {image: error})."""
        ...

    def mirror_pool_enable(self, pool: str, mode: str = "pool") -> None:
        """Enable mirroring of `pool` in `mode`."""
        ...

    def mirror_pool_disable(self, pool: str) -> None:
        """Disable mirroring of `pool`."""
        ...

    def mirror_image_disable_all(
        self, pool: str, levels: Sequence[Sequence[str]], *, workers: int = 4
    ) -> tuple[list[str], dict[str, str]]:
        """Disable mirroring of images level by level (clones first)."""
        ...

    def peer_add(self, pool: str, client_name: str, site_name: str) -> str:
        """Add an rx-only peer; its uuid."""
        ...

    def peer_remove(self, pool: str, uuid: str) -> None:
        """Remove a peer by uuid."""
        ...

    def remove_peer_omap(self, pool: str, uuid: str) -> None:
        """Drop a peer from the pool's rbd_mirroring object."""
        ...

    def pool_demote(self, pool: str) -> int:
        """Demote every primary image of `pool`; how many."""
        ...

    def journal_status(self, pool: str, *, workers: int = 4) -> list[JournalInfo]:
        """The journal of every journaled image of `pool`."""
        ...

    def cutover_snapshots(
        self,
        pool: str,
        action: str,
        *,
        workers: int = 4,
        images: Sequence[str] | None = None,
    ) -> SnapshotCheck:
        """Create, check, remove or promote-back by the cutover snapshot: see the CLI's."""
        ...

    def delete_images(
        self, pool: str, levels: Sequence[Sequence[str]], *, workers: int = 4
    ) -> tuple[list[str], dict[str, str]]:
        """Delete non-primary images level by level (clones first): (deleted, {image: error})."""
        ...

    def enable_snapshot_mirroring_all(
        self, pool: str, images: Sequence[str], *, workers: int = 4
    ) -> tuple[dict[str, str], dict[str, str]]:
        """Snapshot mirroring on `images`: ({image: "snapshot"}, {image: error})."""
        ...

    def mirror_snapshot_all(
        self, pool: str, images: Sequence[str], *, workers: int = 4
    ) -> tuple[dict[str, str], dict[str, str]]:
        """A mirror snapshot of each primary snapshot-mirrored image: ({image: id}, errors)."""
        ...

    def demote_images(
        self, pool: str, images: Sequence[str], *, workers: int = 4
    ) -> tuple[list[str], dict[str, str]]:
        """Demote each primary mirrored image of `images`, side by side: (demoted, errors)."""
        ...

    def promote_demoted(
        self, pool: str, images: Sequence[str], *, workers: int = 4
    ) -> tuple[list[str], dict[str, str]]:
        """Snapshot mode: promote each image whose demotion is copied: (promoted, {image: why}).

        A why containing `PENDING` is "not yet" (rbd_bulk `_promote_demoted`).
        """
        ...

    def snapshot_schedules(self, pool: str) -> list[str]:
        """The pool-level mirror snapshot schedules' intervals (the mgr's rbd_support)."""
        ...

    def snapshot_schedule(self, pool: str, interval: str, *, add: bool) -> None:
        """Add (or remove) a pool-level mirror snapshot schedule of `interval`."""
        ...

    def resync_images(
        self, pool: str, images: Sequence[str], *, workers: int = 4
    ) -> tuple[list[str], dict[str, str]]:
        """Flag non-primary images for resync: (flagged, {image: error})."""
        ...

    def pool_config_set(self, pool: str, key: str, value: str | None) -> None:
        """Set a pool-level librbd option (`rbd config pool set`); None removes it."""
        ...

    def pool_promote(self, pool: str, *, force: bool = False) -> int:
        """Promote every non-primary image of `pool`; how many."""
        ...

    def can_blocklist(self, release: CephVersion | None = None) -> bool:
        """Whether this key may blocklist (on a cluster of `release`)."""
        ...

    def image_digests(
        self,
        pool: str,
        images: Sequence[str],
        *,
        chunk: int,
        sample: int | None = None,
        seed: str = "",
        workers: int = 4,
        timeout: float | None = None,
    ) -> Digests:
        """What `verify` compares of `images`: metadata and chunk digests (all, or a sample)."""
        ...

    def extent_digests(
        self, pool: str, image: str, offset: int, length: int, block: int, snap: str = ""
    ) -> list[str]:
        """The digest of each `block` bytes of one extent of `image` (at snapshot `snap`)."""
        ...

    def extent_bytes(
        self, pool: str, image: str, offset: int, length: int, snap: str = ""
    ) -> bytes:
        """The bytes of one small extent (at most 64 KiB) of `image` (at snapshot `snap`)."""
        ...

    def space(self) -> Space:
        """Every pool's stored bytes, what it may still take, replicas, quota; raw available."""
        ...

    def preflight_images(self, pool: str, *, workers: int = 4) -> list[PreflightImage]:
        """Format, features, parent, mirror mode and first bytes of every image of `pool`."""
        ...

    def journal_probe(self, pool: str) -> str:
        """Whether this key may journal an image in `pool` ("" yes, else the error)."""
        ...

    def fsid(self) -> str:
        """The cluster's fsid."""
        ...

    def image_sizes(self, pool: str, images: Sequence[str], *, workers: int = 4) -> dict[str, int]:
        """The bytes the sync copies of each of `images` that could be read (sync_bytes)."""
        ...


@dataclass
class CephClient:
    """One cluster, reached as `--cluster <cluster> --id <client_id>` (default conf paths)."""

    cluster: str
    client_id: str
    timeout: float = 60.0
    runner: Runner = field(default=subprocess.run, repr=False)
    # Give up on an unreachable cluster after this long (librados would wait 300 s).
    connect_timeout: float = 10.0
    # Set once a call timed out or could not connect: later calls fail at once instead of
    # waiting again.
    unreachable: CephError | None = field(default=None, repr=False)
    # Set once the connection itself timed out or was refused (see NO_CONNECTION_ERRNOS).
    no_connection: CephError | None = field(default=None, repr=False)

    @property
    def lost(self) -> bool:
        """The cluster did not answer the connection at all in this run (timed out or refused).

        A command killed by its timeout after connecting, or an error the cluster answered
        with (permission denied, no keyring, no such pool), is not this.
        """
        return self.no_connection is not None

    def confirm_lost(self) -> bool:
        """Whether a lost cluster is still lost on a fresh connection (one more attempt).

        What a forced cutover relies on: one connection that timed out may be a blip.
        """
        if not self.lost:
            return False
        self.unreachable = self.no_connection = None
        try:
            self.pools()
        except CephError:
            return self.lost
        return False

    # --- plumbing --------------------------------------------------------------------------
    def _check(self, exc: CephError) -> CephError:
        """Remember a cluster that did not answer; return the error to raise."""
        refused = exc.rc in NO_CONNECTION_ERRNOS  # the errno, never the message's wording
        if refused:
            self.no_connection = exc
        if refused or exc.timed_out:
            self.unreachable = exc
        return exc

    def _run(
        self,
        tool: str,
        args: Sequence[str],
        names: Sequence[str] = (),
        timeout: float | None = None,
    ) -> str:
        """Run `tool` with `args` (options first), then `--` and the pool and image `names`.

        `--` ends the options (the rbd CLI accepts it): a pool named `--force` would otherwise
        turn `rbd mirror pool promote <pool>` into a forced promotion of the default pool.
        """
        mount = str(self._mount_timeout(timeout or self.timeout))
        argv = [
            tool,
            "--cluster",
            self.cluster,
            "--id",
            self.client_id,
            "--client_mount_timeout",
            mount,
            *args,
            *(["--", *names] if names else []),
        ]
        return self._exec(argv, argv[:1] + list(args), timeout=timeout)

    def _mount_timeout(self, timeout: float) -> int:
        """How long librados waits for the cluster: well inside the command's own timeout.

        So that a dead cluster is reported by librados (ETIMEDOUT: `lost`) before the command
        is killed (a timeout, which is not proof of a lost cluster).
        """
        return max(1, int(min(self.connect_timeout, timeout - MOUNT_MARGIN_S)))

    def _bulk(self, request: Request, timeout: float | None = None) -> dict:
        """Run rbd_bulk.py (librbd, one process for a pool) under the system Python.

        The answer's shape is the op's type in bulk_schema.py; each caller casts to it.
        """
        full: Request = {
            "cluster": self.cluster,
            "client_id": self.client_id,
            "connect_timeout": self._mount_timeout(self.timeout),
        }
        full.update(request)
        what = [f"rbd_bulk {full.get('op', '')} {full.get('pool', '')}".rstrip()]
        out = self._exec(
            [SYSTEM_PYTHON, str(BULK_HELPER)], what, stdin=json.dumps(full), timeout=timeout
        )
        try:
            return json.loads(out)
        except ValueError as exc:
            raise CephError(self.cluster, what, -1, f"unparsable JSON: {exc}") from exc

    def _refuse_failed(self, what: str, failed: dict[str, str] | None, verb: str) -> None:
        """CephError naming one of the images an rbd_bulk op could not handle, if any."""
        if failed:
            name, error = next(iter(failed.items()))
            raise CephError(
                self.cluster,
                [f"rbd_bulk {what}"],
                -1,
                f"{len(failed)} image(s) {verb}, e.g. {name}: {scrub(error)}",
            )

    def _exec(
        self,
        argv: list[str],
        what: list[str],
        *,
        stdin: str | None = None,
        timeout: float | None = None,
    ) -> str:
        """Run `argv`; its stdout, or CephError naming `what` (never the whole argv)."""
        if self.unreachable is not None:
            raise self.unreachable
        started = time.monotonic()
        try:
            proc = self.runner(
                argv,
                input=stdin,
                capture_output=True,
                text=True,
                check=False,
                timeout=timeout or self.timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise self._check(CephError(self.cluster, what, None, "")) from exc
        except OSError as exc:
            raise CephError(self.cluster, what, -1, str(exc)) from exc
        finally:
            # what was run and how long it took: op and pool names only, never the argv
            logger.debug(
                "%s: %s in %.2f s", self.cluster, " ".join(what), time.monotonic() - started
            )
        if proc.returncode != 0:
            raise self._check(CephError(self.cluster, what, proc.returncode, proc.stderr))
        return proc.stdout

    # --- pools -----------------------------------------------------------------------------
    def pools(self) -> list[PoolInfo]:
        """Every pool of the cluster (`osd pool ls detail` as a mon command, in rbd_bulk.py).

        The same command through the `ceph` CLI costs ~0.3 s of Python start-up per call.
        """
        return [
            PoolInfo(
                name=p["pool_name"],
                pg_num=int(p["pg_num"]),
                size=int(p["size"]),
                applications=tuple(sorted(p.get("application_metadata") or {})),
                erasure=p.get("type") == POOL_TYPE_ERASURE,
                untagged_rbd=bool(p.get("holds_rbd_images")),
            )
            for p in cast(PoolsAnswer, self._bulk({"op": "pools"})).get("pools") or []
        ]

    def daemon_callouts(self) -> list[Callout]:
        """What this cluster's rbd-mirror daemons publish per pool (the mgr's `service status`).

        E.g. "unable to connect to remote cluster" while the daemon cannot reach the source.
        """
        answer = cast(DaemonCalloutsAnswer, self._bulk({"op": "daemon-callouts"}))
        return [
            Callout(pool=pool, level=c["level"], text=c["text"])
            for daemon in answer["daemons"]
            for pool, callouts in daemon["pools"].items()
            for c in callouts
        ]

    def versions(self, *, daemons: bool) -> ClusterVersions:
        """The mons' and OSDs' versions, with `daemons` the rbd-mirror daemons', in one process.

        From `ceph versions` and the mgr's service map; the daemons' are left unread (with the
        reason) when the mgr refuses or does not answer within `connect_timeout`.
        """
        answer = cast(VersionsAnswer, self._bulk({"op": "versions", "daemons": daemons}))
        return versions_from(answer["versions"], answer["rbd_mirror"], answer["unread"])

    def mirror_pools(self, pools: Sequence[str]) -> list[MirrorPoolInfo]:
        """Mirror mode and peers of each of `pools` that exists, in one process (librbd)."""
        answer = cast(
            MirroredPoolsAnswer, self._bulk({"op": "mirrored-pools", "pools": list(pools)})
        )
        return [
            MirrorPoolInfo(
                name=p["name"],
                mode=p["mode"],
                peers=tuple(Peer.from_answer(q) for q in p["peers"]),
                site_name=answer.get("site_name", ""),
            )
            for p in answer["pools"]
        ]

    def mirror_pool_info(self, pool: str) -> MirrorPoolInfo:
        """Mode and peers of `pool` (librbd lists no peer key); CephError if it does not exist."""
        for info in self.mirror_pools([pool]):
            return info
        raise CephError(self.cluster, [f"rbd_bulk mirrored-pools {pool}"], ENOENT, "no such pool")

    def pool_state(self, pool: str, *, watchers: bool = False, workers: int = 4) -> PoolState:
        """Mode, peers, image names, and each mirrored image's status and primary flag.

        One process for the pool whatever its size (`rbd mirror pool status` + `rbd ls` +
        `rbd mirror pool info` + an `rbd info` per image for the primary flags otherwise).
        With `watchers`, also each image's watchers (one read-only open per image, in threads).
        """
        request: Request = {"op": "pool-state", "pool": pool}
        if watchers:
            request.update(watchers=True, workers=workers)
        answer = cast(
            PoolStateAnswer, self._bulk(request, timeout=self.timeout * (5 if watchers else 1))
        )
        return PoolState(
            mode=answer["mode"],
            peers=tuple(Peer.from_answer(p) for p in answer["peers"]),
            images=tuple(answer["images"]),
            statuses=tuple(
                ImageStatus(
                    pool=pool,
                    name=i["name"],
                    global_id=i["global_id"],
                    state=i["state"],
                    description=i["description"],
                    last_update=i["last_update"],
                    primary=bool(i["primary"]),
                    mode=i.get("mode") or JOURNAL,
                )
                for i in answer["statuses"]
            ),
            watchers=self._not_daemons(pool, answer.get("watchers") or {}),
        )

    def _not_daemons(self, pool: str, watchers: Mapping[str, Sequence[str]]) -> dict:
        """Each image's watchers, less the rbd-mirror daemons' (see `without_daemons`)."""
        if not watchers:
            return {}
        try:
            listed = self._run(RADOS, [f"--pool={pool}", "listwatchers", MIRRORING_OBJECT])
        except CephError as exc:  # no mirroring object (mirroring off): no daemon watches
            logger.debug("%s: %s not read: %s", pool, MIRRORING_OBJECT, exc)
            listed = ""
        return without_daemons(watchers, set(re.findall(r"\bclient\.(\d+)\b", listed)))

    def image_states(self, pool: str, *, workers: int = 4) -> list[ImageInfo]:
        """Features, parent, mirroring state and primary flag of every image: one process."""
        answer = cast(
            ImageStatesAnswer,
            self._bulk(
                {"op": "image-states", "pool": pool, "workers": workers}, timeout=self.timeout * 5
            ),
        )
        self._refuse_failed(f"image-states {pool}", answer.get("failed"), "unreadable")
        return [
            ImageInfo(
                name=i["name"],
                parent=i["parent"],
                features=tuple(i["features"]),
                mirroring_state=i["mirroring_state"],
                primary=i["primary"],
            )
            for i in answer["images"]
        ]

    # --- features --------------------------------------------------------------------------
    def enable_journaling_all(
        self, pool: str, images: Sequence[str], *, workers: int = 4
    ) -> tuple[dict[str, str], dict[str, str]]:
        """Journaling (and exclusive-lock where missing) on `images`, in one librbd process.

        Returns ({image: what changed}, {image: error}); images that had it are in neither.
        """
        answer = self._features("enable-journaling", pool, images, workers)
        return dict(answer.get("changed", {})), _failures(answer)

    def disable_journaling_all(
        self, pool: str, images: Sequence[str], *, workers: int = 4
    ) -> tuple[list[str], dict[str, str]]:
        """Journaling off on `images` in one librbd process; return (changed, {image: error})."""
        answer = self._features("disable-journaling", pool, images, workers)
        return sorted(answer.get("changed", {})), _failures(answer)

    def enable_snapshot_mirroring_all(
        self, pool: str, images: Sequence[str], *, workers: int = 4
    ) -> tuple[dict[str, str], dict[str, str]]:
        """Snapshot mirroring on `images`, in one librbd process.

        Images mirrored already are in neither result; one mirrored in journal mode fails
        (never converted).
        """
        answer = self._features("enable-snapshot-mirroring", pool, images, workers)
        return dict(answer.get("changed", {})), _failures(answer)

    def mirror_snapshot_all(
        self, pool: str, images: Sequence[str], *, workers: int = 4
    ) -> tuple[dict[str, str], dict[str, str]]:
        """A mirror snapshot of each of `images` that is primary and snapshot mirrored.

        Each takes a snapshot id from the mons (one Paxos round for a batch): run them wide.
        """
        answer = self._features("mirror-snapshot", pool, images, workers)
        return dict(answer.get("changed", {})), _failures(answer)

    def demote_images(
        self, pool: str, images: Sequence[str], *, workers: int = 4
    ) -> tuple[list[str], dict[str, str]]:
        """Snapshot mode's demotion, `workers` images at once, in one librbd process.

        Images not mirrored or not primary are in neither result.
        """
        answer = self._features("demote", pool, images, workers)
        return sorted(answer.get("changed", {})), _failures(answer)

    def promote_demoted(
        self, pool: str, images: Sequence[str], *, workers: int = 4
    ) -> tuple[list[str], dict[str, str]]:
        """Snapshot mode's promotion, image by image, in one librbd process (`_promote_demoted`).

        Images primary already, or not snapshot mirrored, are in neither result.
        """
        answer = self._features("promote-demoted", pool, images, workers)
        return sorted(answer.get("changed", {})), _failures(answer)

    def snapshot_schedules(self, pool: str) -> list[str]:
        """`rbd mirror snapshot schedule ls --pool P`: the pool-level schedules' intervals."""
        args = ["mirror", "snapshot", "schedule", "ls", f"--pool={pool}", "--format=json"]
        try:
            out = self._run(RBD, args)
        except CephError as exc:
            if exc.rc != ENOENT:  # Pacific answers ENOENT for a pool without a schedule
                raise
            return []
        entries = json.loads(out or "[]")
        return [str(e.get("interval", "")) for e in entries if isinstance(e, dict)]

    def snapshot_schedule(self, pool: str, interval: str, *, add: bool) -> None:
        """`rbd mirror snapshot schedule add|remove --pool P INTERVAL` (the mgr keeps them)."""
        verb = "add" if add else "remove"
        self._run(RBD, ["mirror", "snapshot", "schedule", verb, f"--pool={pool}", interval])

    def _features(
        self, op: str, pool: str, images: Sequence[str], workers: int
    ) -> FeatureChangesAnswer:
        request: Request = {"op": op, "pool": pool, "images": list(images), "workers": workers}
        return cast(FeatureChangesAnswer, self._bulk(request, timeout=self.timeout * 5))

    # --- mirroring -------------------------------------------------------------------------
    def mirror_pool_enable(self, pool: str, mode: str = "pool") -> None:
        """Enable mirroring of `pool` in `mode`."""
        self._run(RBD, ["mirror", "pool", "enable"], [pool, mode])

    def mirror_pool_disable(self, pool: str) -> None:
        """Disable mirroring of `pool` (librbd also drops journaling from its images)."""
        self._run(RBD, ["mirror", "pool", "disable"], [pool])

    def mirror_image_disable_all(
        self, pool: str, levels: Sequence[Sequence[str]], *, workers: int = 4
    ) -> tuple[list[str], dict[str, str]]:
        """Disable mirroring of images level by level (clones first), in one librbd process.

        Returns (disabled, {image: error}); it stops after the first level with an error.
        """
        return self._levels("disable-mirroring", pool, levels, workers)

    def delete_images(
        self, pool: str, levels: Sequence[Sequence[str]], *, workers: int = 4
    ) -> tuple[list[str], dict[str, str]]:
        """Delete images level by level (clones first), in one librbd process.

        Each: mirroring disabled by force, its snapshots removed, the image removed; an image
        that is primary is refused. Returns (deleted, {image: error}); it stops after the first
        level with an error.
        """
        return self._levels("delete-images", pool, levels, workers)

    def _levels(
        self, op: str, pool: str, levels: Sequence[Sequence[str]], workers: int
    ) -> tuple[list[str], dict[str, str]]:
        request: Request = {
            "op": op,
            "pool": pool,
            "levels": [list(level) for level in levels],
            "workers": workers,
        }
        answer = cast(DisabledAnswer, self._bulk(request, timeout=self.timeout * 5))
        return list(answer.get("changed", [])), _failures(answer)

    def resync_images(
        self, pool: str, images: Sequence[str], *, workers: int = 4
    ) -> tuple[list[str], dict[str, str]]:
        """Flag non-primary `images` for resync (the daemon copies them again), one process."""
        request: Request = {
            "op": "resync",
            "pool": pool,
            "images": list(images),
            "workers": workers,
        }
        answer = cast(DisabledAnswer, self._bulk(request, timeout=self.timeout * 5))
        return list(answer.get("changed", [])), _failures(answer)

    # --- journals and the cutover snapshot --------------------------------------------------
    def journal_status(self, pool: str, *, workers: int = 4) -> list[JournalInfo]:
        """The journal of every journaled image of `pool`, in one librbd process.

        From each journal's header object and the sizes of its data objects (no `rbd journal`
        process per image).
        """
        request: Request = {"op": "journal-status", "pool": pool, "workers": workers}
        answer = cast(JournalStatusAnswer, self._bulk(request, timeout=self.timeout * 5))
        if answer.get("failed"):
            name, error = next(iter(answer["failed"].items()))
            raise CephError(
                self.cluster,
                [f"rbd_bulk journal-status {pool}"],
                -1,
                f"{len(answer['failed'])} journal(s) unreadable, e.g. {name}: {error}",
            )
        return [
            JournalInfo(
                image=i["name"],
                bytes=int(i["bytes"]),
                objects=int(i["objects"]),
                peers=tuple(
                    JournalPeer(
                        id=c["id"],
                        connected=c["state"] == "connected",
                        entries_behind=c["entries_behind"],
                        bytes_behind=int(c["bytes_behind"]),
                    )
                    for c in i["clients"]
                ),
            )
            for i in answer["images"]
        ]

    def cutover_snapshots(
        self,
        pool: str,
        action: str,
        *,
        workers: int = 4,
        images: Sequence[str] | None = None,
    ) -> SnapshotCheck:
        """`create`, `check` or `remove` the cutover snapshot on every image of `pool`.

        create: on each primary image without it; check: what changed on each image since it,
        and which primary images lack it; remove: wherever it is; promote-back: promote each
        non-primary image that has it (the cutover promoted it; rollback demoted it). One
        librbd process. With `images`, only those.
        """
        request: Request = {
            "op": "cutover-snapshots",
            "pool": pool,
            "snapshot": CUTOVER_SNAPSHOT,
            "action": action,
            "workers": workers,
        }
        if images is not None:
            request["images"] = list(images)
        answer = cast(CutoverSnapshotsAnswer, self._bulk(request, timeout=self.timeout * 5))
        self._refuse_failed(f"cutover-snapshots {action} {pool}", answer.get("failed"), "failed")
        return SnapshotCheck(
            changed=tuple(answer["changed"]),
            written=dict(answer["written"]),
            missing=tuple(answer["missing"]),
        )

    def pool_config_set(self, pool: str, key: str, value: str | None) -> None:
        """`rbd config pool set <pool> <key> <value>`; with None, `rbd config pool remove`.

        Removing a key that is not set answers ENOENT: that is done already.
        """
        if value is None:
            try:
                self._run(RBD, ["config", "pool", "remove"], [pool, key])
            except CephError as exc:
                if exc.rc != ENOENT:
                    raise
            return
        self._run(RBD, ["config", "pool", "set"], [pool, key, value])

    def peer_add(self, pool: str, client_name: str, site_name: str) -> str:
        """Add an rx-only peer `client_name@site_name`; return its uuid."""
        return self._run(
            RBD,
            ["mirror", "pool", "peer", "add", "--direction", "rx-only"],
            [pool, f"{client_name}@{site_name}"],
        ).strip()

    def peer_remove(self, pool: str, uuid: str) -> None:
        """Remove a peer by uuid."""
        self._run(RBD, ["mirror", "pool", "peer", "remove"], [pool, uuid])

    def remove_peer_omap(self, pool: str, uuid: str) -> None:
        """Drop peer `uuid` from the pool's `rbd_mirroring` object (needs osd caps only)."""
        self._run(RADOS, [f"--pool={pool}", "rmomapkey", "rbd_mirroring", f"mirror_peer_{uuid}"])

    def pool_demote(self, pool: str) -> int:
        """Demote every primary image of `pool`; return how many were demoted (0 = none left)."""
        return _count(self._run(RBD, ["mirror", "pool", "demote"], [pool]))

    def can_blocklist(self, release: CephVersion | None = None) -> bool:
        """Can this key blocklist? rbd-mirror needs it to break a dead instance's lock.

        Probes with a 1-second entry for an address no client has (port 0, random nonce), with
        the command's name on a cluster of `release` (ceph_release.blocklist_command).
        """
        probe = f"127.255.255.254:0/{secrets.randbelow(2**31) + 1}"
        try:
            self._run(CEPH, [*blocklist_command(release), "add", probe, "1"])
        except CephError as exc:
            if exc.rc == EACCES:
                return False
            raise
        return True

    def pool_promote(self, pool: str, *, force: bool = False) -> int:
        """Promote every non-primary image of `pool`; return how many were promoted."""
        args = ["mirror", "pool", "promote"] + (["--force"] if force else [])
        return _count(self._run(RBD, args, [pool]))

    # --- preflight -------------------------------------------------------------------------
    def space(self) -> Space:
        """`ceph df` and `osd pool ls detail` as mon commands, in one process (rbd_preflight)."""
        answer = cast(SpaceAnswer, self._bulk({"op": "space"}))
        return Space(
            pools={
                p["name"]: PoolSpace(
                    name=p["name"],
                    stored=int(p["stored"]),
                    max_avail=int(p["max_avail"]),
                    size=int(p["size"]),
                    quota_max_bytes=int(p["quota_max_bytes"]),
                    crush_rule=int(p["crush_rule"]),
                    osds=tuple(int(o) for o in p.get("osds", [])),
                )
                for p in answer["pools"]
            },
            total_avail_bytes=int(answer["total_avail_bytes"]),
        )

    def preflight_images(self, pool: str, *, workers: int = 4) -> list[PreflightImage]:
        """Every image's format, features, parent, mirror mode and first 4 bytes: one process.

        An image that cannot be read raises CephError naming it: the preflight cannot pass it.
        """
        request: Request = {"op": "preflight-images", "pool": pool, "workers": workers}
        answer = cast(PreflightImagesAnswer, self._bulk(request, timeout=self.timeout * 5))
        self._refuse_failed(f"preflight-images {pool}", answer.get("failed"), "unreadable")
        return [
            PreflightImage(
                name=i["name"],
                old_format=i["old_format"],
                features=tuple(i["features"]),
                parent=i["parent"],
                mirror_mode=i["mirror_mode"],
                head=i["head"],
                snaps=tuple(i["snaps"]),
                size=int(i.get("size", 0)),
            )
            for i in answer["images"]
        ]

    def image_sizes(self, pool: str, images: Sequence[str], *, workers: int = 4) -> dict[str, int]:
        """The bytes the sync copies of each readable one of `images` (one librbd process).

        rbd_preflight.sync_bytes says which bytes; unreadable images are left out.
        """
        request: Request = {
            "op": "sizes",
            "pool": pool,
            "images": list(images),
            "workers": workers,
        }
        answer = cast(SizesAnswer, self._bulk(request, timeout=self.timeout * 5))
        return {k: int(v) for k, v in answer["sizes"].items()}

    def fsid(self) -> str:
        """The cluster's fsid (what glance's image locations name)."""
        return cast(FsidAnswer, self._bulk({"op": "fsid"}))["fsid"]

    def journal_probe(self, pool: str) -> str:
        """Create, journal and remove a probe image in `pool`: "" when allowed, else why not."""
        probe = f"{JOURNAL_PROBE_IMAGE}-{secrets.token_hex(4)}"
        request: Request = {
            "op": "journal-probe",
            "pool": pool,
            "image": probe,
            "tag": JOURNAL_PROBE_IMAGE,
        }
        answer = cast(JournalProbeAnswer, self._bulk(request))
        return "" if answer["ok"] else scrub(answer["error"])

    # --- verify ----------------------------------------------------------------------------
    def image_digests(
        self,
        pool: str,
        images: Sequence[str],
        *,
        chunk: int,
        sample: int | None = None,
        seed: str = "",
        workers: int = 4,
        timeout: float | None = None,
    ) -> Digests:
        """Each image's size, the cloud's snapshots, parent and chunk digests: one process.

        Full (no `sample`): every chunk librbd reports allocated; `sample`: that many chunks
        per image, picked with `seed` (the same on both sides). The cutover snapshot is the
        migration's own and is left out (rbd_digest.py).
        """
        request: Request = {
            "op": "digests",
            "pool": pool,
            "images": list(images),
            "chunk": chunk,
            "workers": workers,
            "ignore_snaps": [CUTOVER_SNAPSHOT],
        }
        if sample is not None:
            request.update(sample=sample, seed=seed)
        answer = cast(ImageDigestsAnswer, self._bulk(request, timeout=timeout))
        return Digests(
            images={
                name: ImageDigest(
                    size=int(a["size"]),
                    snaps=tuple((str(n), int(z)) for n, z in a["snaps"]),
                    parent=a["parent"],
                    layers=tuple(
                        Layer(
                            str(snap),
                            int(size),
                            {int(k): str(v) for k, v in chunks.items()},
                            whole=bool(whole),
                        )
                        for snap, size, chunks, whole in a["layers"]
                    ),
                    bytes_read=int(a["bytes_read"]),
                )
                for name, a in answer["images"].items()
            },
            failed={k: scrub(v) for k, v in answer["failed"].items()},
        )

    def _extent(
        self, pool: str, image: str, offset: int, length: int, block: int, snap: str
    ) -> ExtentAnswer:
        request: Request = {
            "op": "extent",
            "pool": pool,
            "image": image,
            "offset": offset,
            "length": length,
            "block": block,
            "snap": snap,
        }
        return cast(ExtentAnswer, self._bulk(request))

    def extent_digests(
        self, pool: str, image: str, offset: int, length: int, block: int, snap: str = ""
    ) -> list[str]:
        """The digest of each `block` bytes of `image` (at `snap`) in [offset, offset + length)."""
        return list(self._extent(pool, image, offset, length, block, snap)["digests"])

    def extent_bytes(
        self, pool: str, image: str, offset: int, length: int, snap: str = ""
    ) -> bytes:
        """The bytes of `image` (at `snap`) in [offset, offset + length), at most 64 KiB."""
        return bytes.fromhex(self._extent(pool, image, offset, length, 0, snap)["hex"])


def unit_tool_versions(
    runner: Runner = subprocess.run, timeout: float = 15.0
) -> dict[str, CephVersion | None]:
    """The release of this unit's own `rbd` (and the librbd with it) and `rbd-mirror`.

    `--version` reads no conf and asks no cluster; None for a tool that does not answer with a
    version (not installed yet, not runnable, or a non-zero exit).
    """
    out: dict[str, CephVersion | None] = {}
    for name, path in UNIT_TOOLS.items():
        try:
            proc = runner(
                [path, "--version"], capture_output=True, text=True, check=False, timeout=timeout
            )
        except (OSError, subprocess.TimeoutExpired):
            out[name] = None
            continue
        out[name] = CephVersion.parse(proc.stdout or "") if proc.returncode == 0 else None
    return out


def _failures(answer: FeatureChangesAnswer | DisabledAnswer) -> dict[str, str]:
    """{image: error} of a bulk answer, scrubbed of anything that looks like a key."""
    return {k: scrub(v) for k, v in answer.get("failed", {}).items()}


def _count(out: str) -> int:
    match = re.search(r"(\d+) mirrored images", out)
    return int(match.group(1)) if match else 0
