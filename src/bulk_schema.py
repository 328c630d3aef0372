"""The requests and answers of rbd_bulk.py, typed once for both sides. Standard library only.

rbd_bulk.py runs under the system Python and imports this file from its own directory; ceph_cli.py
builds the requests and reads the answers with the same types, so pyright checks that the two
sides agree. Every answer is one JSON object on stdout; an error is a message on stderr, rc 1.
"""

from __future__ import annotations

from typing import TypedDict


class Request(TypedDict, total=False):
    """One request on stdin (built by CephClient). `cluster`, `client_id`, `op`; the rest by op.

    rbd_bulk.py reads it as plain JSON: a missing key is a KeyError, answered on stderr.
    """

    cluster: str
    client_id: str
    connect_timeout: int
    conffile: str  # default: the standard search path for the cluster name
    op: str  # see rbd_bulk.py's module docstring for each op
    pool: str  # every op but "pools", "daemon-callouts", "mirrored-pools" and "versions"
    pools: list[str]  # "mirrored-pools"
    images: list[str]  # "enable-journaling", "disable-journaling", "demotions", ...
    levels: list[list[str]]  # "disable-mirroring": clones' level first
    workers: int
    watchers: bool  # "pool-state"
    daemons: bool  # "versions": also the rbd-mirror daemons' (a mgr command)
    snapshot: str  # "cutover-snapshots": the snapshot's name
    action: str  # "cutover-snapshots": "create", "check", "remove" or "promote-back"
    chunk: int  # "digests": the extent each digest covers
    sample: int  # "digests": this many random chunks per image instead of every allocated one
    seed: str  # "digests": with "sample", the same picks on both sides
    ignore_snaps: list[str]  # "digests": snapshots that are the migration's own
    image: str  # "extent"; "journal-probe": the probe image's name
    tag: str  # "journal-probe": the metadata key (and name prefix) that marks probe images
    offset: int  # "extent"
    length: int  # "extent"
    block: int  # "extent": a digest per this many bytes; 0: the bytes as hex
    snap: str  # "extent": read this snapshot ("": the head)


class PeerAnswer(TypedDict):
    """A mirror peer; never its key."""

    uuid: str
    site_name: str
    client_name: str
    direction: str


class ImageStatusAnswer(TypedDict):
    """One mirrored image as this cluster's daemon reports it, and librbd's primary flag."""

    name: str
    global_id: str
    primary: bool
    state: str  # "up+replaying", "down+stopped", ...
    description: str
    last_update: str
    mode: str  # "journal" or "snapshot" (mirror_modes.py)


class _PoolState(TypedDict):
    mode: str
    peers: list[PeerAnswer]
    images: list[str]
    statuses: list[ImageStatusAnswer]


class PoolStateAnswer(_PoolState, total=False):
    """The answer to pool-state: mode, peers, images, statuses; watchers only when asked."""

    watchers: dict[str, list[str]]


class MirroredPoolAnswer(TypedDict):
    """One pool of "mirrored-pools"."""

    name: str
    mode: str
    peers: list[PeerAnswer]


class MirroredPoolsAnswer(TypedDict):
    """The answer to mirrored-pools: each requested pool that exists, and the site name."""

    pools: list[MirroredPoolAnswer]
    site_name: str


class ImageStateAnswer(TypedDict):
    """One image of "image-states"."""

    name: str
    features: list[str]
    parent: str  # "pool/image@snap" for a clone
    mirroring_state: str  # "enabled" or "disabled"
    primary: bool | None  # None when mirroring is disabled


class ImageStatesAnswer(TypedDict):
    """The answer to image-states: every image, and those that could not be read."""

    images: list[ImageStateAnswer]
    failed: dict[str, str]


class FeatureChangesAnswer(TypedDict):
    """The answer to enable-/disable-journaling: {image: what changed}, {image: error}."""

    changed: dict[str, str]
    failed: dict[str, str]


class DisabledAnswer(TypedDict):
    """The answer to disable-mirroring: images disabled, errors of the level that failed."""

    changed: list[str]
    failed: dict[str, str]


class CalloutAnswer(TypedDict):
    """One problem a daemon publishes for a pool."""

    level: str
    text: str


class DaemonAnswer(TypedDict):
    """One rbd-mirror daemon of "daemon-callouts"."""

    gid: str
    last_beacon: str
    pools: dict[str, list[CalloutAnswer]]


class DaemonCalloutsAnswer(TypedDict):
    """The answer to daemon-callouts: every rbd-mirror daemon the mgr knows."""

    daemons: list[DaemonAnswer]


class VersionsAnswer(TypedDict):
    """The answer to versions: the mons' and OSDs' versions, and the rbd-mirror daemons'.

    `versions` is `ceph versions`'s `mon` and `osd` maps ({version string: count}); `rbd_mirror`
    each daemon's `ceph_version` from the mgr's service map, or None with `unread` saying why
    (not asked, no mgr caps, the mgr did not answer).
    """

    versions: dict[str, dict[str, int]]
    rbd_mirror: list[str] | None
    unread: str


class PoolsAnswer(TypedDict):
    """The answer to pools: `osd pool ls detail` as the CLI prints it.

    Plus `holds_rbd_images` on each pool without application rbd.
    """

    pools: list[dict]


class JournalClientAnswer(TypedDict):
    """One client registered with an image's journal other than librbd's own (a mirror peer)."""

    id: str  # the peer's mirror uuid
    state: str  # "connected" or "disconnected"
    entries_behind: int | None  # None when its position is in another tag than the writer's
    bytes_behind: int  # the journal objects wholly after its last committed one


class JournalAnswer(TypedDict):
    """One journaled image of "journal-status": what its journal keeps on the cluster."""

    name: str
    bytes: int  # the journal's data objects that still exist (not trimmed)
    objects: int
    clients: list[JournalClientAnswer]


class JournalStatusAnswer(TypedDict):
    """The answer to journal-status: every journaled image, and those that could not be read."""

    images: list[JournalAnswer]
    failed: dict[str, str]


class CutoverSnapshotsAnswer(TypedDict):
    """The answer to cutover-snapshots.

    `changed`: images whose snapshot was created or removed; `written` (check): images changed
    since their snapshot, with what changed; `missing` (check): primary images without one.
    """

    changed: list[str]
    written: dict[str, str]
    missing: list[str]
    failed: dict[str, str]


class ImageDigestAnswer(TypedDict):
    """One image of "digests": its metadata and the digest of each chunk read, by layer."""

    size: int
    snaps: list[list]  # [name, size] of each snapshot that is the cloud's, sorted
    parent: str  # "pool/image@snap" for a clone
    # [snapshot ("" for the head), its size, {chunk offset (text: JSON keys): digest, "" for
    # zeros}, read whole]: the snapshots oldest first, then the head; each holds what changed
    # since the one before, or, read whole, every allocated chunk (rbd_digest.py)
    layers: list[list]
    bytes_read: int


class ImageDigestsAnswer(TypedDict):
    """The answer to digests: every image read, and those that could not be."""

    images: dict[str, ImageDigestAnswer]
    failed: dict[str, str]


class ExtentAnswer(TypedDict):
    """The answer to extent: a digest per block, or (block 0) the bytes as hex."""

    digests: list[str]
    hex: str


class SpacePoolAnswer(TypedDict):
    """One pool of "space"."""

    name: str
    stored: int  # bytes clients stored (before replication)
    max_avail: int  # what it may still take (replicas and full ratio counted)
    size: int  # replicas
    quota_max_bytes: int  # 0: no quota
    crush_rule: int  # pools of one rule share their OSDs (-1: unknown)
    osds: list[int]  # the OSDs its rule may place data on ([]: unknown)


class SpaceAnswer(TypedDict):
    """The answer to space: every pool, and the cluster's raw bytes available."""

    pools: list[SpacePoolAnswer]
    total_avail_bytes: int


class PreflightImageAnswer(TypedDict):
    """One image of "preflight-images"."""

    name: str
    old_format: bool
    features: list[str]  # of exclusive-lock, journaling, migrating, non-primary
    parent: str  # "pool/image@snap" for a clone
    mirroring: str  # "enabled" or ""
    mirror_mode: str  # "journal", "snapshot" or "" (mirroring off)
    head: str  # a non-clone's first 4 bytes, as hex
    snaps: list[str]  # its snapshots' names (user namespace)
    size: int  # bytes its sync copies (sync_bytes: the progress's denominator, kept)


class PreflightImagesAnswer(TypedDict):
    """The answer to preflight-images."""

    images: list[PreflightImageAnswer]
    failed: dict[str, str]


class JournalProbeAnswer(TypedDict):
    """The answer to journal-probe: whether the key may journal an image in the pool."""

    ok: bool
    error: str


class FsidAnswer(TypedDict):
    """The answer to fsid."""

    fsid: str


class SizesAnswer(TypedDict):
    """The answer to sizes."""

    sizes: dict[str, int]
    failed: dict[str, str]
