"""What enable-mirroring's preflight reads of one cluster, through librados/librbd.

Imported by rbd_bulk.py (system Python, python3-rbd); preflight.py decides from the answers.
Standard library plus rados/rbd only.

- "space" (no pool): `df` and `osd pool ls detail` as mon commands: each pool's stored bytes,
  what it may still take (`max_avail`, the replicas and full ratio counted), its replica count
  and byte quota, and the cluster's raw bytes available.
- "preflight-images" (pool): for every image, whether it is an old format 1 image, its features,
  its parent, its mirroring state and mode, its snapshots' names, the bytes its sync copies
  (`sync_bytes`), and (a non-clone only) its first 4 bytes as hex: the qcow2 check.
  teardown's next steps read it on the destination too (glance's images are those with a
  snapshot `snap`).
- "fsid" (no pool): the cluster's fsid.
- "journal-probe" (pool, "image"): create a 4 MiB image so named with exclusive-lock, enable
  journaling on it, remove it: whether this key may journal images in the pool. Only on a pool
  whose mirroring is off (a journaled image in a pool-mode pool would be mirrored); a probe
  image left by an interrupted run is removed first.
"""

from __future__ import annotations

import errno
import json
from concurrent.futures import ThreadPoolExecutor

import rados  # type: ignore[import-not-found]
import rbd  # type: ignore[import-not-found]

from bulk_schema import (
    JournalProbeAnswer,
    PreflightImageAnswer,
    PreflightImagesAnswer,
    SpaceAnswer,
)
from rbd_digest import parent_link

HEAD_BYTES = 4
MIRROR_MODES = {
    getattr(rbd, "RBD_MIRROR_IMAGE_MODE_JOURNAL", 0): "journal",
    getattr(rbd, "RBD_MIRROR_IMAGE_MODE_SNAPSHOT", 1): "snapshot",
}


def _mon_json(cluster, command: dict) -> object:
    rc, out, err = cluster.mon_command(json.dumps({**command, "format": "json"}), b"")
    if rc != 0:
        raise rados.Error(f"{command['prefix']}: {err} (rc={rc})", errno=-rc)
    return json.loads(out or b"null")


def rule_osds(crush: dict) -> dict[int, list[int]]:
    """Each CRUSH rule's OSDs: every device under the buckets its `take` steps start from.

    `osd crush dump` lists the device-class shadow trees too (`default~ssd`), so a rule that
    takes a class gets that class's OSDs only.
    """
    children = {
        b["id"]: [i["id"] for i in b.get("items") or []] for b in crush.get("buckets") or []
    }

    def devices(item: int, depth: int = 0) -> set[int]:
        if item >= 0:
            return {item}
        if depth > 32:  # CRUSH trees are shallow; a cycle would be a broken map
            return set()
        return set().union(*(devices(c, depth + 1) for c in children.get(item, [])))

    return {
        int(rule["rule_id"]): sorted(
            set().union(
                *(
                    devices(int(s["item"]))
                    for s in rule.get("steps") or []
                    if s.get("op") == "take"
                )
            )
        )
        for rule in crush.get("rules") or []
    }


def space(cluster) -> SpaceAnswer:
    """Each pool's stored bytes, max_avail, replicas, quota and OSDs; the raw bytes available."""
    df = _mon_json(cluster, {"prefix": "df", "detail": "detail"})
    details = _mon_json(cluster, {"prefix": "osd pool ls", "detail": "detail"})
    assert isinstance(df, dict) and isinstance(details, list)
    try:
        crush = _mon_json(cluster, {"prefix": "osd crush dump"})
        by_rule = rule_osds(crush) if isinstance(crush, dict) else {}
    except rados.Error:  # a key that may not read the CRUSH map: pools grouped by rule id
        by_rule = {}
    by_name = {p["pool_name"]: p for p in details}
    pools = []
    for pool in df.get("pools") or []:
        stats, detail = pool.get("stats") or {}, by_name.get(pool["name"]) or {}
        pools.append(
            {
                "name": pool["name"],
                "stored": int(stats.get("stored", stats.get("bytes_used", 0))),
                "max_avail": int(stats.get("max_avail", 0)),
                "size": int(detail.get("size", 1)),
                "quota_max_bytes": int(detail.get("quota_max_bytes", 0)),
                "crush_rule": int(detail.get("crush_rule", -1)),
                "osds": by_rule.get(int(detail.get("crush_rule", -1)), []),
            }
        )
    total = (df.get("stats") or {}).get("total_avail_bytes", 0)
    return {"pools": pools, "total_avail_bytes": int(total)}


def sync_bytes(image) -> int:
    """The bytes rbd-mirror's initial sync copies of `image`: the progress's denominator.

    A clone's own data by its object map, when fast-diff says the map is valid for the head
    and every snapshot: a nova disk cloned from a 40 GiB glance image may hold a few MiB of
    its own, and the daemon copies only that. Any other image, or anything unreadable (a
    snapshot removed meanwhile), counts its size. Only object maps are read, never the data;
    one Python call per object the clone holds (an image that is not a clone could hold
    millions: the preflight has a time limit).
    """
    size = image.size()
    held = [0]

    def seen(_offset: int, length: int, exists: bool) -> int:
        held[0] += length if exists else 0
        return 0

    try:
        fast_diff = getattr(rbd, "RBD_FEATURE_FAST_DIFF", 0)
        invalid = getattr(rbd, "RBD_FLAG_FAST_DIFF_INVALID", 0)
        if not size or not parent_link(image) or not image.features() & fast_diff:
            return size
        try:
            for snap in [None, *(s["id"] for s in image.list_snaps())]:
                image.set_snap_by_id(snap)  # librbd would stat each object of an invalid map
                if image.flags() & invalid:
                    return size
        finally:
            image.set_snap_by_id(None)
        image.diff_iterate(0, size, None, seen, include_parent=False, whole_object=True)
    except rbd.Error:
        return size
    return min(held[0], size)


def _image(ioctx, name: str) -> PreflightImageAnswer:
    with rbd.Image(ioctx, name, read_only=True) as image:
        old = bool(image.old_format())
        size = image.size()
        features = image.features()
        link = parent_link(image)
        head = "" if link or not size else image.read(0, HEAD_BYTES).hex()
        snaps = sorted(
            snap["name"]
            for snap in image.list_snaps()
            if snap.get("namespace", rbd.RBD_SNAP_NAMESPACE_TYPE_USER)
            == rbd.RBD_SNAP_NAMESPACE_TYPE_USER
        )
        try:
            info = image.mirror_image_get_info()
            mode = image.mirror_image_get_mode() if info.get("state") == 1 else None
        except (rbd.Error, AttributeError):
            info, mode = {}, None
        copied = sync_bytes(image)  # last: an rbd.Error in it answers the size
    return {
        "name": name,
        "old_format": old,
        "features": [n for bit, n in _feature_names().items() if features & bit],
        "parent": link,
        "mirroring": "enabled" if info.get("state") == rbd.RBD_MIRROR_IMAGE_ENABLED else "",
        "mirror_mode": MIRROR_MODES.get(mode, "") if mode is not None else "",
        "head": head,
        "snaps": snaps,
        "size": copied,
    }


def _feature_names() -> dict[int, str]:
    names = ("exclusive-lock", "journaling", "migrating", "non-primary")
    return {
        getattr(rbd, "RBD_FEATURE_" + n.upper().replace("-", "_")): n
        for n in names
        if hasattr(rbd, "RBD_FEATURE_" + n.upper().replace("-", "_"))
    }


def preflight_images(ioctx, workers: int) -> PreflightImagesAnswer:
    """`_image` of every image of the pool, in a bounded thread pool."""
    names = rbd.RBD().list(ioctx)
    found, failed = {}, {}

    def one(name: str):
        try:
            return name, _image(ioctx, name), ""
        except (rbd.Error, rados.Error) as exc:
            return name, None, f"{type(exc).__name__}: {exc}"

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for name, answer, error in pool.map(one, names):
            if answer is not None:
                found[name] = answer
            else:
                failed[name] = error
    return {"images": [found[n] for n in names if n in found], "failed": failed}


def journal_probe(ioctx, probe: str, tag: str) -> JournalProbeAnswer:
    """Create `probe` (tagged), journal it, remove it: `ok` false with the error if not allowed.

    First removes the probes a killed run left: images named with the `tag` prefix that carry
    the `tag` metadata key; an image of the cloud's that only looks like one is left alone.
    """
    api = rbd.RBD()
    for name in api.list(ioctx):
        if name.startswith(tag) and _tagged(ioctx, name, tag):
            _remove(api, ioctx, name)
    try:
        api.create(ioctx, probe, 4 << 20, features=rbd.RBD_FEATURE_LAYERING
                   | rbd.RBD_FEATURE_EXCLUSIVE_LOCK)  # fmt: skip
        with rbd.Image(ioctx, probe) as image:
            image.metadata_set(tag, "1")
            image.update_features(rbd.RBD_FEATURE_JOURNALING, True)
    except (rbd.PermissionError, rados.PermissionError) as exc:
        _remove(api, ioctx, probe)
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    except rbd.Error as exc:
        _remove(api, ioctx, probe)
        if getattr(exc, "errno", None) in (errno.EPERM, errno.EACCES):
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        raise
    _remove(api, ioctx, probe)
    return {"ok": True, "error": ""}


def _tagged(ioctx, name: str, tag: str) -> bool:
    try:
        with rbd.Image(ioctx, name, read_only=True) as image:
            return image.metadata_get(tag) == "1"
    except (rbd.ImageNotFound, KeyError):
        return False


def _remove(api, ioctx, probe: str) -> None:
    try:
        api.remove(ioctx, probe)
    except rbd.ImageNotFound:
        pass
