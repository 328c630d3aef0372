"""Per-image RBD work for a whole pool in one process, through librbd (python3-rbd).

The charm's own interpreter is a venv without the Ceph bindings, so `CephClient` runs this file
with /usr/bin/python3 (which has python3-rbd). One process per pool replaces one `rbd` process per
image: journaling on 200 images goes from ~12 s (serial CLI) to ~3 s. Standard library plus
rados/rbd only; reads a JSON request on stdin, writes a JSON answer on stdout.

Request: {"cluster", "client_id", "connect_timeout", "op", "pool", "images", "workers"}, and
optionally "conffile" (default: the standard search path for the cluster name).
ops:
- "enable-journaling": enable exclusive-lock (if missing) and journaling on `images`;
  answers {"changed": {name: "journaling"|"exclusive-lock,journaling"}, "failed": {name: error}}.
- "disable-journaling": the reverse, for teardown's leftovers; answers like enable-journaling.
- "enable-snapshot-mirroring": snapshot mirroring on `images` (refused for one mirrored in
  journal mode); "mirror-snapshot": a mirror snapshot of each of `images` that is primary and
  snapshot mirrored; "promote-demoted": snapshot mode's cutover, each image promoted once the
  source's demotion is copied whole (`_promote_demoted`; failures starting "pending: " are
  "not yet"). All answer like enable-journaling.
- "rewind-before-start" ("pools", no "pool"): on each of `pools` mirrored in image mode, each
  interrupted snapshot copy steps back one object (`_rewind_copy_progress`); answers like
  enable-journaling, names as `pool/image`. Run as `rbd_bulk.py --pre-start --cluster C --id
  ID --pools P,Q` by the daemon's systemd unit before each start (`pre_start`).
- "disable-mirroring": mirroring off on the images of `levels` (lists of names, clones' level
  first), one level at a time, each in the thread pool; stops after a level with failures;
  answers {"changed": [name], "failed": {name: error}}.
- "pool-state": mirror mode, peers (never their keys), image names, and for every mirrored image
  its status (`up+replaying` etc., description, last update), primary flag and mirroring mode
  ("journal" or "snapshot"); with
  "watchers": true, also {"watchers": {name: ["address (client.<id>)"]}} for every image that
  has any (one read-only open per image, which adds no watch of its own).
- "daemon-callouts" (no "pool"): what every rbd-mirror daemon of this cluster publishes in the
  mgr's `service status`: {"daemons": [{"gid", "last_beacon", "pools": {pool: [{level,
  text}]}}]}; e.g. "unable to connect to remote cluster" while it cannot reach the source.
- "mirrored-pools" ("pools": names, no "pool"): {"pools": [{name, mode, peers}], "site_name":
  this cluster's mirroring site name (what its daemons register as on a peer)} for each pool
  that exists, in one connection.
- "versions" (no "pool"): {"versions": `ceph versions`'s mon and osd maps, "rbd_mirror": [each
  rbd-mirror daemon's ceph_version from the mgr's `service dump`] with "daemons": true, else
  null, and null with "unread" saying why when the mgr refuses or does not answer}; empty maps
  from a mon older than Luminous (EINVAL). Its mon and mgr commands, like daemon-callouts',
  are bounded by "connect_timeout" (rados_mon_op_timeout).
- "journal-status": for every mirrored image of `pool`, what its journal keeps (the bytes of its
  data objects not trimmed yet) and each registered peer's state, entries behind the writer
  (within one tag) and bytes behind (the objects after its last committed one), from the
  journal's header object (no image opened): {"images": [{name, bytes, objects, clients: [{id,
  state, entries_behind, bytes_behind}]}], "failed": {...}}.
- "cutover-snapshots" ("snapshot", "action", optionally "images": only those): create the
  snapshot on every primary image that lacks it, remove it wherever it is, or check what
  changed since it on every image that has it (extents written, size, later snapshots) and
  which primary images lack it: {"changed": [name], "written": {name: what}, "missing":
  [name], "failed": {...}}.
- "delete-images" ("levels"): like disable-mirroring, but each image is deleted: mirroring off
  by force (a non-primary copy), its snapshots unprotected and removed, the image removed; a
  primary image is refused.
- "resync" ("images"): flag each non-primary image for resync; answers like disable-mirroring.
- "sizes" ("images"): {"sizes": {name: bytes its sync copies (rbd_preflight.sync_bytes)},
  "failed": {...}}.
- "image-states": for every image of `pool`: features, parent, mirroring state and primary flag;
  answers {"images": [{name, features, parent, mirroring_state, primary}], "failed": {...}}.
- "digests" and "extent": what `verify` compares, in rbd_digest.py (its docstring).
- "space" and "fsid" (no "pool"), "preflight-images", "journal-probe": what the preflight and
  teardown's next steps read, in rbd_preflight.py (its docstring).
- "pools" (no "pool"): `osd pool ls detail` as a mon command; answers {"pools": [...]} as the
  CLI prints it, plus "holds_rbd_images" on each pool without application rbd. The `ceph`
  CLI costs ~0.3 s of Python start-up; this costs one connect.
"""

from __future__ import annotations

import argparse
import errno
import json
import struct
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import cast

import rados  # type: ignore[import-not-found]
import rbd  # type: ignore[import-not-found]

from bulk_schema import (
    CutoverSnapshotsAnswer,
    DaemonAnswer,
    DaemonCalloutsAnswer,
    DisabledAnswer,
    FeatureChangesAnswer,
    ImageStateAnswer,
    ImageStatesAnswer,
    ImageStatusAnswer,
    JournalAnswer,
    JournalClientAnswer,
    JournalStatusAnswer,
    MirroredPoolAnswer,
    MirroredPoolsAnswer,
    PeerAnswer,
    PoolsAnswer,
    PoolStateAnswer,
    SizesAnswer,
    VersionsAnswer,
)
from journal_codec import journal_client
from rbd_digest import extent, image_digests, parent_link
from rbd_preflight import journal_probe, preflight_images, space, sync_bytes

FEATURE_NAMES = {
    getattr(rbd, "RBD_FEATURE_" + n.upper().replace("-", "_")): n
    for n in (
        "layering",
        "striping",
        "exclusive-lock",
        "object-map",
        "fast-diff",
        "deep-flatten",
        "journaling",
        "data-pool",
        "operations",
        "migrating",
        "non-primary",
    )
    if hasattr(rbd, "RBD_FEATURE_" + n.upper().replace("-", "_"))
}


def _enable_journaling(ioctx, name: str) -> str:
    with rbd.Image(ioctx, name) as image:
        features = image.features()
        if features & rbd.RBD_FEATURE_JOURNALING:
            return ""
        changed = []
        if not features & rbd.RBD_FEATURE_EXCLUSIVE_LOCK:
            image.update_features(rbd.RBD_FEATURE_EXCLUSIVE_LOCK, True)
            changed.append("exclusive-lock")
        image.update_features(rbd.RBD_FEATURE_JOURNALING, True)
        changed.append("journaling")
        return ",".join(changed)


def _disable_journaling(ioctx, name: str) -> str:
    try:
        image = rbd.Image(ioctx, name)
    except rbd.ImageNotFound:
        return ""  # deleted since it was journaled (by the cloud): no journaling left to remove
    with image:
        if not image.features() & rbd.RBD_FEATURE_JOURNALING:
            return ""
        image.update_features(rbd.RBD_FEATURE_JOURNALING, False)
        return "journaling"


def _disable_mirroring(ioctx, name: str) -> str:
    with rbd.Image(ioctx, name) as image:
        if image.mirror_image_get_info().get("state") != rbd.RBD_MIRROR_IMAGE_ENABLED:
            return ""
        image.mirror_image_disable(False)
        return "disabled"


def _enable_snapshot_mirroring(ioctx, name: str) -> str:
    """Snapshot mirroring on an image (its first mirror snapshot comes with it); "" if on.

    With exclusive-lock first where it lacks it: the destination's copy inherits the source's
    features, and without the lock nothing stops a promote while the daemon still writes
    to it. An image mirrored in journal mode is refused, never converted.
    """
    with rbd.Image(ioctx, name) as image:
        if image.mirror_image_get_info().get("state") == rbd.RBD_MIRROR_IMAGE_ENABLED:
            if image.mirror_image_get_mode() != rbd.RBD_MIRROR_IMAGE_MODE_SNAPSHOT:
                raise ValueError("mirrored in journal mode: not converted")
            return ""
        changed = []
        if not image.features() & rbd.RBD_FEATURE_EXCLUSIVE_LOCK:
            image.update_features(rbd.RBD_FEATURE_EXCLUSIVE_LOCK, True)
            changed.append("exclusive-lock")
        image.mirror_image_enable(rbd.RBD_MIRROR_IMAGE_MODE_SNAPSHOT)
        return ",".join([*changed, "snapshot"])


def _mirror_snapshot(ioctx, name: str) -> str:
    """A mirror snapshot of a primary snapshot-mirrored image ("" for any other image)."""
    with rbd.Image(ioctx, name) as image:
        info = image.mirror_image_get_info()
        if info.get("state") != rbd.RBD_MIRROR_IMAGE_ENABLED or not info.get("primary"):
            return ""
        if image.mirror_image_get_mode() != rbd.RBD_MIRROR_IMAGE_MODE_SNAPSHOT:
            return ""
        return str(image.mirror_image_create_snapshot())


def _demote(ioctx, name: str) -> str:
    """Demote a primary mirrored image ("" for any other): snapshot mode's cutover.

    `rbd mirror pool demote` demotes one image after the other, and in snapshot mode each
    demotion is a mirror snapshot (a mon round); here they run side by side.
    """
    with rbd.Image(ioctx, name) as image:
        info = image.mirror_image_get_info()
        if info.get("state") != rbd.RBD_MIRROR_IMAGE_ENABLED or not info.get("primary"):
            return ""
        image.mirror_image_demote()
        return "demoted"


def _newest_mirror_snapshot_of_a_copy(image) -> tuple[int, dict] | None:
    """(id, mirror namespace) of a non-primary snapshot-mirrored image's newest mirror snapshot.

    None for an image primary, not mirrored or journal mirrored; (0, {}) for one without any
    mirror snapshot yet.
    """
    info = image.mirror_image_get_info()
    if info.get("state") != rbd.RBD_MIRROR_IMAGE_ENABLED or info.get("primary"):
        return None
    if image.mirror_image_get_mode() != rbd.RBD_MIRROR_IMAGE_MODE_SNAPSHOT:
        return None
    mirror = [
        s["id"] for s in image.list_snaps()
        if s.get("namespace") == rbd.RBD_SNAP_NAMESPACE_TYPE_MIRROR
    ]  # fmt: skip
    if not mirror:
        return 0, {}
    return max(mirror), image.snap_get_mirror_namespace(max(mirror))


def _promote_demoted(ioctx, name: str) -> str:
    """Snapshot mode: promote (not forced) a non-primary image once the demotion is copied.

    librbd itself lets a non-forced promote through as soon as the newest mirror snapshot is
    the source's demotion, copied or not (an "orphan"); only the daemon's lock on the image
    (EROFS) stops it, and an image without exclusive-lock, or no daemon, has none. So the
    image is promoted only when its newest mirror snapshot is non-primary-demoted and
    complete, as Ceph's own tests wait for. "promoted", "" when it is primary already (or
    not snapshot mirrored), else ValueError naming what is still awaited (the caller
    retries those).
    """
    with rbd.Image(ioctx, name) as image:
        found = _newest_mirror_snapshot_of_a_copy(image)
        if found is None:
            return ""
        _, newest = found
        if newest.get("state") != rbd.RBD_SNAP_MIRROR_STATE_NON_PRIMARY_DEMOTED:
            raise ValueError(PENDING + "the source's demotion snapshot has not arrived yet")
        if not newest.get("complete"):
            progress = _copy_progress(image, newest.get("last_copied_object_number", 0))
            raise ValueError(
                PENDING + f"the source's demotion snapshot is still being copied: {progress}"
            )
        try:
            image.mirror_image_promote(False)
        except (rbd.ReadOnlyImage, rbd.ImageBusy) as exc:  # the daemon still holds it
            raise ValueError(PENDING + f"the daemon still holds it ({exc})") from exc
        return "promoted"


# librados waits this long for the monitors before the pre-start step gives up, and the start
# fails (systemd tries again after the drop-in's RestartSec).
PRE_START_CONNECT_TIMEOUT_S = 20
PRE_START_OSD_OP_TIMEOUT_S = 30
PENDING = "pending: "  # _promote_demoted's "not yet": retried by the cutover, never an error


def _copy_progress(image, copied: int) -> str:
    """The daemon's copy of a snapshot as "object N of M" (cutover tells a stalled copy by it).

    M is the destination's object count, best effort: a refresh that fails, or an image grown
    on the source since, gives "object N" alone; never an error (the answer is a "not yet").
    """
    try:
        total = image.stat()["num_objs"]
    except rbd.Error:
        total = 0
    return f"object {copied}" + (f" of {total}" if total >= copied else "")


def _rewind_copy_progress(ioctx, name: str) -> str:
    """Snapshot mode, the daemon stopped: step an interrupted copy's progress back one object.

    rbd-mirror records a snapshot copy's progress as the count of objects copied, but resumes
    it from the object after that count (snapshot `Replayer::copy_image` hands the count to
    `ImageCopyRequest` as the last object copied). The object at that index is never copied and
    the snapshot is then marked complete: shown on the lab with the Tentacle 20.2.4 daemon,
    every byte of it but one object (tests/functional/test_snapshot_mode.py). One object
    back, the resumed copy starts at the first object not known copied. "rewound" (the new
    count), or "" when the image has no interrupted copy or is gone. Watchers are not a sign
    of another daemon: a killed daemon's watch outlives it by up to 30 s (the OSDs' watch
    timeout), exactly when systemd restarts it. Another unit's daemon copying the image
    meanwhile could race the rewind: the README asks for one unit in snapshot mode.
    """
    try:
        image = rbd.Image(ioctx, name, read_only=True)
    except rbd.ImageNotFound:
        return ""
    with image:
        found = _newest_mirror_snapshot_of_a_copy(image)
        if found is None or not found[0]:
            return ""
        snap_id, newest = found
        copied = int(newest.get("last_copied_object_number", 0))
        non_primary = (
            rbd.RBD_SNAP_MIRROR_STATE_NON_PRIMARY,
            rbd.RBD_SNAP_MIRROR_STATE_NON_PRIMARY_DEMOTED,
        )
        if newest.get("complete") or copied == 0 or newest.get("state") not in non_primary:
            return ""
        header = f"rbd_header.{image.id()}"
    # cls_rbd's mirror_image_snapshot_set_copy_progress: snap id, complete, objects copied
    ioctx.execute(header, "rbd", "mirror_image_snapshot_set_copy_progress",
                  struct.pack("<QBQ", snap_id, 0, copied - 1))  # fmt: skip
    return f"rewound to {copied - 1}"


def _rewind_before_start(cluster, pools: list[str], workers: int) -> FeatureChangesAnswer:
    """Each interrupted snapshot copy of `pools` (the migrated ones) back one object.

    A pool in image mode (snapshot mirroring) is rewound image by image; one in pool mode is
    journal mirroring, which has no snapshot copies; one deleted meanwhile has nothing to
    rewind. Anything unread is a failure: the daemon must not resume that copy.
    """
    api = rbd.RBD()
    answer: FeatureChangesAnswer = {"changed": {}, "failed": {}}
    for pool in pools:
        try:
            ioctx = cluster.open_ioctx(pool)
        except rados.ObjectNotFound:
            continue
        with ioctx:
            try:
                if api.mirror_mode_get(ioctx) != rbd.RBD_MIRROR_MODE_IMAGE:
                    continue
                names = api.list(ioctx)
            except (rbd.Error, rados.Error) as exc:
                answer["failed"][pool] = f"{type(exc).__name__}: {exc}"
                continue
            done, failed = _each(ioctx, _rewind_copy_progress, names, workers)
        answer["changed"].update({f"{pool}/{k}": v for k, v in done.items() if v})
        answer["failed"].update({f"{pool}/{k}": v for k, v in failed.items()})
    return answer


def pre_start(argv: list[str]) -> int:
    """`--pre-start --cluster C --id ID --pools P,Q [--workers N]`: the rewind before a start.

    The ExecStartPre of the daemon's unit (daemon.py's drop-in), run by systemd as root before
    every start, whoever asks for it: the charm, systemd's own Restart=on-failure after a crash,
    the boot, an operator. Prints what it rewound (the unit's journal keeps it); exits non-zero
    when any pool or image could not be read, so that systemd does not start a daemon that
    would resume such a copy one object too far.
    """
    parser = argparse.ArgumentParser(prog="rbd_bulk.py --pre-start")
    parser.add_argument("--cluster", required=True)
    parser.add_argument("--id", required=True, dest="client_id")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--pools", default="", help="comma-separated; none: nothing to do")
    args = parser.parse_args(argv)
    pools = [p for p in args.pools.split(",") if p]
    if not pools:
        return 0
    request = {
        "op": "rewind-before-start",
        "cluster": args.cluster,
        "client_id": args.client_id,
        "connect_timeout": PRE_START_CONNECT_TIMEOUT_S,
        "workers": max(1, args.workers),
        "pools": pools,
    }
    try:
        answer = cast(FeatureChangesAnswer, handle(request))
    except (rados.Error, rbd.Error) as exc:
        print(f"not starting rbd-mirror: the cluster was not read ({exc})", file=sys.stderr)
        raise
    for name, how in sorted(answer["changed"].items()):
        print(f"{name}: interrupted snapshot copy {how}: rbd-mirror resumes one object too far")
    for name, error in sorted(answer["failed"].items()):
        print(f"{name}: could not be rewound: {error}", file=sys.stderr)
    if answer["failed"]:
        print("not starting rbd-mirror: a copy it would resume could lose an object",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


FEATURE_OPS = {
    "enable-journaling": _enable_journaling,
    "disable-journaling": _disable_journaling,
    "enable-snapshot-mirroring": _enable_snapshot_mirroring,
    "mirror-snapshot": _mirror_snapshot,
    "demote": _demote,
    "promote-demoted": _promote_demoted,
}


def _image_state(ioctx, name: str) -> ImageStateAnswer:
    with rbd.Image(ioctx, name, read_only=True) as image:
        features = image.features()
        link = parent_link(image)
        try:
            info = image.mirror_image_get_info()
        except rbd.Error:
            info = {}
    state = info.get("state")
    enabled = state == rbd.RBD_MIRROR_IMAGE_ENABLED
    return {
        "name": name,
        "features": [n for bit, n in FEATURE_NAMES.items() if features & bit],
        "parent": link,
        "mirroring_state": "enabled" if enabled else "disabled",
        "primary": bool(info.get("primary")) if enabled else None,
    }


JOURNAL_HEADER_KEYS = ("splay_width", "pool_id", "minimum_set", "active_set")


def _journal(cluster, ioctx, name: str, journal_id: str) -> JournalAnswer:
    """What the journal of image `name` keeps: its objects' bytes and each peer's lag.

    Reads the journal's header object (omap) and stats its data objects between the minimum
    and the active object set: those are what trimming has not removed yet, because some
    registered client has not committed them. The journal's id is the image's id.
    """
    header_oid = f"journal.{journal_id}"
    with rados.ReadOpCtx() as op:  # the header's fixed keys (its tags can be many: not read)
        values, _ = ioctx.get_omap_vals_by_keys(op, JOURNAL_HEADER_KEYS)
        ioctx.operate_read_op(op, header_oid)
        header = dict(values)
    start = ""
    while True:  # its registered clients, a page at a time
        with rados.ReadOpCtx() as op:
            values, _ = ioctx.get_omap_vals(op, start, "client_", 256)
            ioctx.operate_read_op(op, header_oid)
            page = dict(values)
        header.update(page)
        if len(page) < 256:
            break
        start = max(page)
    try:
        splay = struct.unpack("<B", header["splay_width"])[0]
        pool_id = struct.unpack("<q", header["pool_id"])[0]
        minimum = struct.unpack("<Q", header["minimum_set"])[0]
        active = struct.unpack("<Q", header["active_set"])[0]
        clients = [journal_client(v) for k, v in header.items() if k.startswith("client_")]
    except (KeyError, struct.error, UnicodeDecodeError) as exc:
        raise ValueError(f"journal header unreadable: {type(exc).__name__}: {exc}") from exc
    data_ioctx = ioctx if pool_id < 0 else cluster.open_ioctx2(pool_id)
    sizes: dict[int, int] = {}  # object number -> bytes, for the objects not trimmed
    try:
        prefix = f"journal_data.{data_ioctx.get_pool_id()}.{journal_id}."
        for number in range(minimum * splay, (active + 1) * splay):
            try:
                sizes[number] = data_ioctx.stat(f"{prefix}{number}")[0]
            except rados.ObjectNotFound:
                continue
    finally:
        if data_ioctx is not ioctx:
            data_ioctx.close()
    writer = next((positions for cid, positions, _ in clients if cid == ""), [])
    peers: list[JournalClientAnswer] = []
    for client_id, positions, state in clients:
        if client_id == "":
            continue
        # Entry tids count within a tag: a new lock owner (the writer reopening the image)
        # starts a new tag, and then only the bytes tell how far behind the peer is.
        behind = None
        if writer and positions and writer[0][1] == positions[0][1]:
            behind = max(0, writer[0][2] - positions[0][2])
        # Journal objects are numbered in write order: every object after the last one the
        # peer committed in holds entries it has not committed (a lower bound).
        last = max((n for n, _, _ in positions), default=-1)
        peers.append(
            {
                "id": client_id,
                "state": "disconnected" if state else "connected",
                "entries_behind": behind,
                "bytes_behind": sum(size for n, size in sizes.items() if n > last),
            }
        )
    return {
        "name": name,
        "bytes": sum(sizes.values()),
        "objects": len(sizes),
        "clients": peers,
    }


def _journal_status(cluster, ioctx, workers: int) -> JournalStatusAnswer:
    """The journal of every journal-mirrored image (`_journal`), in the thread pool; none opened.

    Snapshot-mirrored images have no journal: left out.
    """
    api = rbd.RBD()
    if api.mirror_mode_get(ioctx) == rbd.RBD_MIRROR_MODE_DISABLED:
        return {"images": [], "failed": {}}
    names = {i["id"]: i["name"] for i in api.list2(ioctx)}
    journaled = api.mirror_image_info_list(ioctx, rbd.RBD_MIRROR_IMAGE_MODE_JOURNAL)
    ids = {names[image_id]: image_id for image_id, _ in journaled if image_id in names}
    done, failed = _each(
        ioctx, lambda io, n: _journal(cluster, io, n, ids[n]), sorted(ids), workers
    )
    return {"images": [done[n] for n in sorted(done)], "failed": failed}


def _cutover_snapshot(ioctx, name: str, snapshot: str, action: str) -> tuple[str, str]:
    """One image: (what changed, what was written since the snapshot) for `action`.

    create: the snapshot, on a primary image that lacks it. remove: it, where it exists.
    check: on an image that has it, whether anything changed since (data, size, snapshots
    taken after it); "missing" for a primary image without one. promote-back: promote (not
    forced) a mirrored, non-primary image that has it, i.e. one the cutover had promoted
    (rollback undoing its own demotion); an image the cutover never promoted stays as it is.
    The image is opened read-only to decide, read-write only to change it (a write takes its
    exclusive lock).
    """
    with rbd.Image(ioctx, name, read_only=True) as image:
        snaps = list(image.list_snaps())
        has = snapshot in [s["name"] for s in snaps]
        try:
            info = image.mirror_image_get_info()
        except rbd.Error:
            info = {}
        primary = bool(info.get("primary"))
        if action == "check":
            if not has:
                return "", ("missing" if primary else "")
            return "", _changed_since(image, snaps, snapshot)
    if action == "remove" and has:
        with rbd.Image(ioctx, name) as image:
            image.remove_snap(snapshot)
        return "removed", ""
    mirrored = info.get("state") == rbd.RBD_MIRROR_IMAGE_ENABLED
    if action == "promote-back" and has and mirrored and not primary:
        with rbd.Image(ioctx, name) as image:
            image.mirror_image_promote(False)
        return "promoted", ""
    if action == "create" and primary and not has:
        with rbd.Image(ioctx, name) as image:
            image.create_snap(snapshot)
        return "created", ""
    return "", ""


def _changed_since(image, snaps: list[dict], snapshot: str) -> str:
    """What changed on `image` since `snapshot`: size, later snapshots, extents written."""
    ours = next(s for s in snaps if s["name"] == snapshot)
    changed = []
    if image.size() != ours["size"]:
        changed.append(f"size {ours['size']} -> {image.size()}")
    # not mirror snapshots: a demotion (rollback's own, snapshot mode) adds one
    later = [
        s["name"]
        for s in snaps
        if s["id"] > ours["id"] and s.get("namespace") != rbd.RBD_SNAP_NAMESPACE_TYPE_MIRROR
    ]
    if later:
        changed.append(f"snapshot(s) {', '.join(later)} taken since")
    extents: list[int] = []

    def seen(offset, length, exists):
        if not extents:
            extents.append(offset)

    image.diff_iterate(0, image.size(), snapshot, seen)
    if extents:
        changed.append(f"written since the cutover (first at offset {extents[0]})")
    return "; ".join(changed)


def _cutover_snapshots(
    ioctx, snapshot: str, action: str, workers: int, only: list[str] | None
) -> CutoverSnapshotsAnswer:
    """`_cutover_snapshot` on every image of the pool (or those `only`), in the thread pool."""
    names = rbd.RBD().list(ioctx) if only is None else only
    done, failed = _each(
        ioctx, lambda io, n: _cutover_snapshot(io, n, snapshot, action), names, workers
    )
    return {
        "changed": sorted(n for n, (c, _) in done.items() if c),
        "written": {n: w for n, (_, w) in done.items() if w and w != "missing"},
        "missing": sorted(n for n, (_, w) in done.items() if w == "missing"),
        "failed": failed,
    }


def _resync(ioctx, name: str) -> str:
    """Flag a non-primary image for resync: its daemon deletes it and copies it again."""
    with rbd.Image(ioctx, name) as image:
        info = image.mirror_image_get_info()
        if info.get("state") != rbd.RBD_MIRROR_IMAGE_ENABLED or info.get("primary"):
            return ""
        image.mirror_image_resync()
        return "resync"


def _delete_image(ioctx, name: str) -> str:
    """Delete an image this migration created: mirroring off (forced), snapshots, the image.

    Only for a destination image that is not primary (the caller checks): a copy of a source
    image, complete or not.
    """
    with rbd.Image(ioctx, name) as image:
        info = image.mirror_image_get_info()
        if info.get("state") == rbd.RBD_MIRROR_IMAGE_ENABLED:
            if info.get("primary"):
                raise ValueError("primary on this cluster: not deleted")
            image.mirror_image_disable(True)
    with rbd.Image(ioctx, name) as image:
        for snap in list(image.list_snaps()):
            if image.is_protected_snap(snap["name"]):
                image.unprotect_snap(snap["name"])
            image.remove_snap(snap["name"])
    rbd.RBD().remove(ioctx, name)
    return "deleted"


# Ops on images level by level (clones' level first); each level in the thread pool.
LEVEL_OPS = {"disable-mirroring": _disable_mirroring, "delete-images": _delete_image}
IMAGE_OPS = {"resync": _resync}


def _size(ioctx, name: str) -> int:
    with rbd.Image(ioctx, name, read_only=True) as image:
        return sync_bytes(image)


def _sizes(ioctx, req: dict) -> SizesAnswer:
    """The "sizes" op: the bytes each of `images`' sync copies (the progress's denominator)."""
    done, failed = _each(ioctx, _size, list(req["images"]), int(req.get("workers", 4)))
    return {"sizes": done, "failed": failed}


STATUS_STATES = {
    getattr(rbd, f"MIRROR_IMAGE_STATUS_STATE_{n.upper()}"): n
    for n in (
        "unknown",
        "error",
        "syncing",
        "starting_replay",
        "replaying",
        "stopping_replay",
        "stopped",
    )
}
MODES = {
    rbd.RBD_MIRROR_MODE_DISABLED: "disabled",
    rbd.RBD_MIRROR_MODE_IMAGE: "image",
    rbd.RBD_MIRROR_MODE_POOL: "pool",
}


def _peers(api, ioctx) -> list[PeerAnswer]:
    """The pool's mirror peers as {uuid, site_name, client_name, direction}; never a key."""
    return [
        {
            "uuid": p.get("uuid", ""),
            "site_name": p.get("site_name") or p.get("cluster_name", ""),
            "client_name": p.get("client_name", ""),
            "direction": str(p.get("direction", "")),
        }
        for p in api.mirror_peer_list(ioctx)
    ]


def _pool_state(ioctx) -> PoolStateAnswer:
    """Mode, peers, image names and every mirrored image's status and primary flag."""
    api = rbd.RBD()
    mode = MODES.get(api.mirror_mode_get(ioctx), "unknown")
    peers = _peers(api, ioctx)
    statuses: list[ImageStatusAnswer] = []
    if mode != "disabled":
        primary = {
            image_id: bool(info.get("primary"))
            for image_id, info in api.mirror_image_info_list(ioctx)
        }
        snapshot_mode = {
            image_id
            for image_id, _ in api.mirror_image_info_list(
                ioctx, rbd.RBD_MIRROR_IMAGE_MODE_SNAPSHOT
            )
        }
        for entry in api.mirror_image_status_list(ioctx):  # this cluster's own daemon's view
            statuses.append(
                {
                    "name": entry.get("name", ""),
                    "global_id": (entry.get("info") or {}).get("global_id", ""),
                    "primary": primary.get(entry.get("id"), False),
                    "mode": "snapshot" if entry.get("id") in snapshot_mode else "journal",
                    "state": f"{'up' if entry.get('up') else 'down'}+"
                    f"{STATUS_STATES.get(entry.get('state'), 'unknown')}",
                    "description": entry.get("description", ""),
                    "last_update": str(entry.get("last_update", "")),
                }
            )
    return {"mode": mode, "peers": peers, "images": api.list(ioctx), "statuses": statuses}


def _watchers(ioctx, name: str) -> list[str]:
    with rbd.Image(ioctx, name, read_only=True) as image:
        return [f"{w.get('addr', '')} (client.{w.get('id', '')})" for w in image.watchers_list()]


def _daemon_callouts(cluster, timeout: int) -> DaemonCalloutsAnswer:
    """Each rbd-mirror daemon's published per-pool callouts (`ceph service status`)."""
    command = {"prefix": "service status", "format": "json"}
    rc, out, err = cluster.mgr_command(json.dumps(command), b"", timeout=timeout)
    if rc != 0:
        raise rados.Error(f"service status: {err} (rc={rc})")
    daemons: list[DaemonAnswer] = []
    for gid, entry in (json.loads(out or b"{}").get("rbd-mirror") or {}).items():
        pools = json.loads((entry.get("status") or {}).get("json") or "{}")
        daemons.append(
            {
                "gid": gid,
                "last_beacon": entry.get("last_beacon", ""),
                "pools": {
                    p.get("name", ""): [
                        {"level": c.get("level", ""), "text": c.get("text", "")}
                        for c in (p.get("callouts") or {}).values()
                    ]
                    for p in pools.values()
                },
            }
        )
    return {"daemons": daemons}


def _versions(cluster, timeout: int, daemons: bool) -> VersionsAnswer:
    """The mons' and OSDs' versions (`versions`) and the rbd-mirror daemons' (`service dump`).

    The daemons' are for display only: a mgr that refuses (ceph-proxy's key has no mgr caps) or
    does not answer leaves them unread, never fails the op.
    """
    rc, out, err = cluster.mon_command(json.dumps({"prefix": "versions", "format": "json"}), b"")
    if rc == -errno.EINVAL:  # before Luminous: no `versions`; the charm refuses an unknown release
        out = b"{}"
    elif rc != 0:
        raise rados.Error(f"versions: {err} (rc={rc})")
    found = json.loads(out or b"{}")
    versions = {k: found.get(k) or {} for k in ("mon", "osd")}
    if not daemons:
        return {"versions": versions, "rbd_mirror": None, "unread": "not read"}
    command = {"prefix": "service dump", "format": "json"}
    rc, out, err = cluster.mgr_command(json.dumps(command), b"", timeout=timeout)
    if rc != 0:
        why = "not readable with this key" if rc == -errno.EACCES else "the mgr did not answer"
        return {"versions": versions, "rbd_mirror": None, "unread": f"{why} (rc={rc})"}
    service = (json.loads(out or b"{}").get("services") or {}).get("rbd-mirror") or {}
    running = [
        d["metadata"]["ceph_version"]
        for d in (service.get("daemons") or {}).values()
        if isinstance(d, dict) and (d.get("metadata") or {}).get("ceph_version")
    ]
    return {"versions": versions, "rbd_mirror": running, "unread": ""}


def _mirrored_pools(cluster, names: list[str]) -> MirroredPoolsAnswer:
    """Mirror mode and peers of each existing pool of `names`."""
    api, out = rbd.RBD(), list[MirroredPoolAnswer]()
    for name in names:
        try:
            ioctx = cluster.open_ioctx(name)
        except rados.ObjectNotFound:
            continue
        with ioctx:
            mode = MODES.get(api.mirror_mode_get(ioctx), "unknown")
            out.append({"name": name, "mode": mode, "peers": _peers(api, ioctx)})
    return {"pools": out, "site_name": api.mirror_site_name_get(cluster)}


def _each(ioctx, fn, names: list[str], workers: int) -> tuple[dict, dict]:
    done, failed = {}, {}

    def one(name: str):
        try:
            return name, fn(ioctx, name), None
        except (rbd.Error, rados.Error, ValueError) as exc:
            return name, None, f"{type(exc).__name__}: {exc}"

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for name, value, error in pool.map(one, names):
            if error is None:
                done[name] = value
            else:
                failed[name] = error
    return done, failed


def _pools(cluster) -> PoolsAnswer:
    """Every pool, as `ceph osd pool ls detail --format json` lists them."""
    command = {"prefix": "osd pool ls", "detail": "detail", "format": "json"}
    rc, out, err = cluster.mon_command(json.dumps(command), b"")
    if rc != 0:
        raise rados.Error(f"osd pool ls detail: {err} (rc={rc})")
    pools = json.loads(out or b"[]")
    for pool in pools:  # an RBD pool nobody tagged: the charm must not skip it silently
        if "rbd" not in (pool.get("application_metadata") or {}):
            pool["holds_rbd_images"] = _holds_rbd_images(cluster, pool["pool_name"])
    return {"pools": pools}


def _holds_rbd_images(cluster, name: str) -> bool:
    """The pool has an RBD directory object (librbd creates it with the first image).

    Only "no such object" says no: a pool this key cannot read may hold images, and counts.
    """
    try:
        with cluster.open_ioctx(name) as ioctx:
            ioctx.stat("rbd_directory")
    except rados.ObjectNotFound:
        return False
    except rados.Error:
        return True
    return True


COMMAND_ONLY_OPS = ("versions", "daemon-callouts")  # mon and mgr commands, no pool opened
READ_ONCE_OPS = ("digests", "extent")


def handle(req: dict) -> Mapping[str, object]:
    """Connect, run one op (on one pool, except "pools"), answer."""
    timeout = str(req.get("connect_timeout", 10))
    conf = {"client_mount_timeout": timeout}
    if req["op"] in COMMAND_ONLY_OPS:
        # Their mgr commands wait this long at most: without it a mgr that is down makes them
        # wait for good (the binding's own timeout does nothing). Only for ops that open no
        # pool: librados also bounds the wait for the first osdmap with it, and that ETIMEDOUT
        # (errno 110, the exit code of a lost cluster) must not come from a slow one.
        conf["rados_mon_op_timeout"] = timeout
    if req["op"] in READ_ONCE_OPS:
        conf["rbd_cache"] = "false"  # each byte is read once: a cache only costs memory
    if req["op"] == "rewind-before-start":  # a hung OSD must not hold the daemon's start
        conf["rados_osd_op_timeout"] = str(PRE_START_OSD_OP_TIMEOUT_S)
    # conffile="" makes librados read the default search path (/etc/ceph/$cluster.conf).
    with rados.Rados(
        clustername=req["cluster"],
        name=f"client.{req['client_id']}",
        conffile=req.get("conffile", ""),
        conf=conf,
    ) as cluster:
        if req["op"] in CLUSTER_OPS:
            return CLUSTER_OPS[req["op"]](cluster, req)
        with cluster.open_ioctx(req["pool"]) as ioctx:
            return _pool_op(req, cluster, ioctx)


# Ops on the cluster, no pool opened: each a function of the connection and the request.
CLUSTER_OPS = {
    "pools": lambda cluster, req: _pools(cluster),
    "space": lambda cluster, req: space(cluster),
    "fsid": lambda cluster, req: {"fsid": cluster.get_fsid()},
    "daemon-callouts": lambda cluster, req: _daemon_callouts(
        cluster, int(req.get("connect_timeout", 10))
    ),
    "mirrored-pools": lambda cluster, req: _mirrored_pools(cluster, list(req["pools"])),
    "versions": lambda cluster, req: _versions(
        cluster, int(req.get("connect_timeout", 10)), bool(req["daemons"])
    ),
    "rewind-before-start": lambda cluster, req: _rewind_before_start(
        cluster, list(req["pools"]), int(req.get("workers", 4))
    ),
}


def _pool_op(req: dict, cluster, ioctx) -> Mapping[str, object]:
    """One op on one pool."""
    workers = int(req.get("workers", 4))
    if req["op"] in FEATURE_OPS:
        done, failed = _each(ioctx, FEATURE_OPS[req["op"]], list(req["images"]), workers)
        features: FeatureChangesAnswer = {
            "changed": {k: v for k, v in done.items() if v},
            "failed": failed,
        }
        return features
    if req["op"] in LEVEL_OPS:
        disabled: DisabledAnswer = {"changed": [], "failed": {}}
        for level in req["levels"]:  # clones before their parents: librbd insists
            done, failed = _each(ioctx, LEVEL_OPS[req["op"]], list(level), workers)
            disabled["changed"] += sorted(k for k, v in done.items() if v)
            if failed:
                disabled["failed"] = failed
                break
        return disabled
    if req["op"] in IMAGE_OPS:
        done, failed = _each(ioctx, IMAGE_OPS[req["op"]], list(req["images"]), workers)
        resynced: DisabledAnswer = {
            "changed": sorted(k for k, v in done.items() if v),
            "failed": failed,
        }
        return resynced
    return _pool_read(req, cluster, ioctx, workers)


# Ops of other modules, each a function of the pool's ioctx and the request.
REQUEST_OPS = {
    "digests": image_digests,
    "extent": extent,
    "preflight-images": lambda ioctx, req: preflight_images(ioctx, int(req.get("workers", 4))),
    "journal-probe": lambda ioctx, req: journal_probe(ioctx, str(req["image"]), str(req["tag"])),
    "sizes": _sizes,
}


def _pool_read(req: dict, cluster, ioctx, workers: int) -> Mapping[str, object]:
    """The pool-wide reads, and the ops of rbd_digest.py and rbd_preflight.py."""
    if req["op"] == "journal-status":
        return _journal_status(cluster, ioctx, workers)
    if req["op"] in REQUEST_OPS:
        return REQUEST_OPS[req["op"]](ioctx, req)
    if req["op"] == "cutover-snapshots":
        only = req.get("images")
        return _cutover_snapshots(ioctx, req["snapshot"], req["action"], workers, only)
    if req["op"] == "pool-state":
        state = _pool_state(ioctx)
        if req.get("watchers"):
            found, failed = _each(ioctx, _watchers, state["images"], workers)
            if failed:
                name, error = next(iter(failed.items()))
                raise ValueError(f"watchers of {len(failed)} image(s) unreadable, {name}: {error}")
            state["watchers"] = {k: v for k, v in found.items() if v}
        return state
    if req["op"] == "image-states":
        names = rbd.RBD().list(ioctx)
        done, failed = _each(ioctx, _image_state, names, workers)
        images: ImageStatesAnswer = {
            "images": [done[n] for n in names if n in done],
            "failed": failed,
        }
        return images
    raise ValueError(f"unknown op {req['op']!r}")


def main(argv: list[str] | None = None) -> int:
    """Read the request from stdin, print the answer; errors go to stderr.

    The exit code of a librados/librbd error is its errno (110 for a connection that timed
    out), as the `rbd` CLI does: the charm decides on that number, never on the wording.
    Any other error exits 1. With `--pre-start`, the daemon unit's pre-start step instead.
    """
    args = sys.argv[1:] if argv is None else argv
    try:
        if args[:1] == ["--pre-start"]:
            return pre_start(args[1:])
        print(json.dumps(handle(json.load(sys.stdin))))
    except (rados.Error, rbd.Error, ValueError, KeyError) as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        errno = getattr(exc, "errno", None)
        return errno if isinstance(errno, int) and 1 < errno < 256 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
