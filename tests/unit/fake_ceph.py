"""An in-memory stand-in for `CephClient`, for unit tests of the charm's branches only.

It models just enough of RBD mirroring (modes, peers, journaling, primary flags, daemon states) to
drive every branch of the charm; Ceph's real behaviour is proven by the functional tests.
"""

from __future__ import annotations

import hashlib
import random
import time
from dataclasses import dataclass, field

from ceph_cli import (
    EBUSY,
    EINVAL,
    Callout,
    CephCluster,
    CephError,
    Digests,
    ImageDigest,
    ImageInfo,
    ImageStatus,
    JournalInfo,
    Layer,
    MirrorPoolInfo,
    Peer,
    PoolInfo,
    PoolSpace,
    PoolState,
    PreflightImage,
    SnapshotCheck,
    Space,
)
from ceph_release import CephVersion, ClusterVersions, blocklist_command, versions_from
from mirror_modes import EROFS


def _digest(data: bytes) -> str:
    """rbd_digest's digest of a chunk, "" for zeros."""
    return hashlib.sha256(data).hexdigest()[:32] if data.strip(b"\0") else ""


@dataclass
class FakeImage:
    name: str
    parent: str = ""
    features: set[str] = field(default_factory=lambda: {"layering", "exclusive-lock"})
    primary: bool = True
    mirror_enabled: bool = False
    snaps: list[str] = field(default_factory=list)
    written_since_snap: bool = False  # a write after the cutover snapshot
    data: bytes = b""  # the image's content (verify); its size is the data's length
    snap_data: dict[str, bytes] = field(default_factory=dict)  # a snapshot's, when not `data`
    old_format: bool = False
    mirror_mode: str = ""  # "snapshot" once snapshot mirrored (preflight: by someone else)
    mirror_snapshots: int = 0  # mirror snapshots taken (snapshot mode)


@dataclass
class FakeCluster:
    name: str
    pool_images: dict[str, list[FakeImage]] = field(default_factory=dict)
    modes: dict[str, str] = field(default_factory=dict)
    peers: dict[str, list[Peer]] = field(default_factory=dict)
    states: dict[str, tuple[str, str]] = field(default_factory=dict)  # image -> (state, desc)
    unreachable: bool = False
    promote_busy: int = 0  # EBUSY answers before promote succeeds
    blocklist_ok: bool = True
    blocklist_error: bool = False  # the probe itself fails (not EACCES)
    sticky_journaling: set[str] = field(default_factory=set)  # survives `mirror pool disable`
    busy_pools: set[str] = field(default_factory=set)  # pool disable: EBUSY while images mirror
    fail_images: set[str] = field(default_factory=set)
    watchers: dict[str, tuple[str, ...]] = field(default_factory=dict)  # image -> watchers
    callouts: list[Callout] = field(default_factory=list)  # what the daemon publishes
    untagged: set[str] = field(default_factory=set)  # pools with images, no application rbd
    # `ceph versions`'s mon map and the service map's rbd-mirror versions (None: not readable)
    mon_versions: dict[str, int] = field(
        default_factory=lambda: {"ceph version 16.2.15 (618f4408) pacific (stable)": 1}
    )
    osd_versions: dict[str, int] = field(default_factory=dict)  # empty: the mons' versions
    daemon_versions: list[str] | None = None
    version_reads: list[bool] = field(default_factory=list)  # `daemons` of each versions()
    journals: dict[str, JournalInfo] = field(default_factory=dict)  # image -> its journal
    journal_error: bool = False
    pool_config: dict[tuple[str, str], str] = field(default_factory=dict)
    config_denied: bool = False
    resynced: list[str] = field(default_factory=list)
    site: str = ""  # the cluster's mirroring site name ("site-<name>" when empty)
    unreadable: set[str] = field(default_factory=set)  # images verify cannot read
    avail: int = 10 * 2**30  # what each pool may take, and the raw bytes available
    quotas: dict[str, int] = field(default_factory=dict)
    stored: dict[str, int] = field(default_factory=dict)  # pool -> stored bytes
    journal_denied: bool = False  # the key may not journal images (the probe)
    calls: list[str] = field(default_factory=list)
    digest_workers: list[int] = field(default_factory=list)  # reads in flight per digests call
    snapshot_workers: dict[str, int] = field(default_factory=dict)  # cutover-snapshots action
    schedules: dict[str, list[str]] = field(default_factory=dict)  # pool -> snapshot intervals
    schedule_denied: bool = False  # the key has no mgr caps (ceph-proxy's)
    snapshot_lag: set[str] = field(default_factory=set)  # snapshot images not caught up
    snapshot_age: float = 0.0  # seconds since the newest mirror snapshot was taken
    registered: set[str] = field(default_factory=set)  # pools a destination daemon is tx peer of

    @property
    def lost(self) -> bool:
        return self.unreachable

    def confirm_lost(self) -> bool:
        self.calls.append("confirm lost")
        return self.unreachable

    def _call(self, what: str) -> None:
        self.calls.append(what)
        if self.unreachable:  # what librados says when the connection times out
            raise CephError(self.name, [what], 110, "TimedOut: [errno 110] RADOS timed out")

    def _imgs(self, pool: str) -> list[FakeImage]:
        if pool not in self.pool_images:
            raise CephError(self.name, ["pool", pool], 2, f"error opening pool {pool}")
        return self.pool_images[pool]

    def image(self, pool: str, name: str) -> FakeImage:
        return next(i for i in self._imgs(pool) if i.name == name)

    # --- the CephClient surface ---
    def pools(self) -> list[PoolInfo]:
        self._call("osd pool ls detail")
        return [
            PoolInfo(name=p, pg_num=8, size=1, applications=("rbd",))
            if p not in self.untagged
            else PoolInfo(name=p, pg_num=8, size=1, applications=(), untagged_rbd=True)
            for p in self.pool_images
        ]

    def image_info(self, pool: str, image: str) -> ImageInfo:
        self._call(f"info {pool}/{image}")
        img = self.image(pool, image)
        enabled = img.mirror_enabled and self.modes.get(pool, "disabled") != "disabled"
        return ImageInfo(
            name=image,
            parent=img.parent,
            features=tuple(sorted(img.features)),
            mirroring_state="enabled" if enabled else "disabled",
            primary=img.primary if enabled else None,
        )

    def enable_journaling_all(self, pool: str, images, *, workers: int = 4):
        self._call(f"bulk enable-journaling {pool}")
        changed, failed = {}, {}
        for name in images:
            if name in self.fail_images:
                failed[name] = "PermissionError: [errno 13] denied"
                continue
            img = self.image(pool, name)
            added = [f for f in ("exclusive-lock", "journaling") if f not in img.features]
            img.features |= {"exclusive-lock", "journaling"}
            img.mirror_enabled = self.modes.get(pool) == "pool"
            if "journaling" in added:
                changed[name] = ",".join(added)
        return changed, failed

    def image_states(self, pool: str, *, workers: int = 4) -> list[ImageInfo]:
        self._call(f"bulk image-states {pool}")
        return [self.image_info(pool, i.name) for i in self._imgs(pool)]

    def disable_journaling_all(self, pool: str, images, *, workers: int = 4):
        self._call(f"bulk disable-journaling {pool}")
        changed, failed = [], {}
        for name in images:
            if name in self.fail_images:
                failed[name] = "PermissionError: [errno 13] denied"
                continue
            img = self.image(pool, name)
            if "journaling" in img.features:
                img.features.discard("journaling")
                changed.append(name)
        return changed, failed

    def mirror_pool_info(self, pool: str) -> MirrorPoolInfo:
        self._call(f"mirror pool info {pool}")
        return MirrorPoolInfo(
            name=pool, mode=self.modes.get(pool, "disabled"), peers=self._peers(pool)
        )

    def _peers(self, pool: str) -> tuple[Peer, ...]:
        """The pool's peers, with the tx-only one a destination daemon registered."""
        tx = Peer(uuid=f"tx-{pool}", site_name="site-ceph", client_name="", direction="1")
        return tuple(self.peers.get(pool, [])) + ((tx,) if pool in self.registered else ())

    def mirror_pool_enable(self, pool: str, mode: str = "pool") -> None:
        self._call(f"mirror pool enable {pool}")
        self.modes[pool] = mode
        for img in self._imgs(pool):
            if mode == "pool":
                img.mirror_enabled = "journaling" in img.features
            else:  # image mode mirrors what was enabled one by one
                img.mirror_enabled = img.mirror_enabled and img.mirror_mode == "snapshot"

    def mirror_pool_disable(self, pool: str) -> None:
        self._call(f"mirror pool disable {pool}")
        if self.peers.get(pool):
            raise CephError(self.name, ["mirror pool disable"], EBUSY, "peers")
        if pool in self.busy_pools and any(i.mirror_enabled for i in self._imgs(pool)):
            self.modes[pool] = "image"  # what librbd leaves behind
            raise CephError(self.name, ["mirror pool disable"], EBUSY, "image has clones")
        if self.modes.get(pool) == "image" and any(i.mirror_enabled for i in self._imgs(pool)):
            raise CephError(self.name, ["mirror pool disable"], EINVAL, "images enabled")
        self.modes[pool] = "disabled"
        for img in self._imgs(pool):
            if img.name not in self.sticky_journaling:
                img.features.discard("journaling")
            img.mirror_enabled = False

    def mirror_image_disable_all(self, pool: str, levels, *, workers: int = 4):
        self._call(f"bulk disable-mirroring {pool}")
        changed, failed = [], {}
        for level in levels:
            for name in level:
                if name in self.fail_images:
                    failed[name] = "ImageBusy: [errno 16] it has clones"
                    continue
                img = self.image(pool, name)
                img.mirror_enabled, img.mirror_mode, img.mirror_snapshots = False, "", 0
                changed.append(name)
            if failed:
                break
        return changed, failed

    def daemon_callouts(self) -> list[Callout]:
        self._call("bulk daemon-callouts")
        return list(self.callouts)

    def versions(self, *, daemons: bool) -> ClusterVersions:
        self._call("bulk versions")
        self.version_reads.append(daemons)
        answer = {"mon": self.mon_versions, "osd": self.osd_versions or self.mon_versions}
        return versions_from(answer, self.daemon_versions if daemons else None)

    def mirror_pools(self, pools) -> list[MirrorPoolInfo]:
        self._call("bulk mirrored-pools")
        return [
            MirrorPoolInfo(
                name=p,
                mode=self.modes.get(p, "disabled"),
                peers=self._peers(p),
                site_name=self.site or f"site-{self.name}",
            )
            for p in pools
            if p in self.pool_images
        ]

    def pool_state(self, pool: str, *, watchers: bool = False, workers: int = 4) -> PoolState:
        self._call(f"bulk pool-state {pool}" + (" watchers" if watchers else ""))
        imgs = self._imgs(pool)
        mode = self.modes.get(pool, "disabled")
        statuses = tuple(
            ImageStatus(
                pool=pool,
                name=i.name,
                global_id="g",
                state=self.states.get(i.name, ("up+replaying", ""))[0],
                description=self.states.get(i.name, ("", self._description(i)))[1],
                primary=i.primary,
                mode=i.mirror_mode or "journal",
            )
            for i in imgs
            if i.mirror_enabled and mode != "disabled"
        )
        return PoolState(
            mode=mode,
            peers=tuple(self.peers.get(pool, [])),
            images=tuple(i.name for i in imgs),
            statuses=statuses,
            watchers={
                i.name: self.watchers[i.name] for i in imgs if watchers and i.name in self.watchers
            },
        )

    def _description(self, img: FakeImage) -> str:
        """What the daemon publishes for a replaying image, in the image's mode."""
        if img.mirror_mode != "snapshot":
            return "replaying"
        remote = int(time.time() - self.snapshot_age)  # the newest source snapshot
        local = remote - 1 if img.name in self.snapshot_lag else remote
        state = "syncing" if img.name in self.snapshot_lag else "idle"
        return (
            f'replaying, {{"replay_state":"{state}","local_snapshot_timestamp":{local},'
            f'"remote_snapshot_timestamp":{remote}}}'
        )

    def enable_snapshot_mirroring_all(self, pool: str, images, *, workers: int = 4):
        self._call(f"bulk enable-snapshot-mirroring {pool}")
        changed, failed = {}, {}
        for name in images:
            img = self.image(pool, name)
            if name in self.fail_images:
                failed[name] = "PermissionError: [errno 13] denied"
            elif img.mirror_enabled and img.mirror_mode != "snapshot":
                failed[name] = "ValueError: mirrored in journal mode: not converted"
            elif not img.mirror_enabled:
                img.mirror_enabled, img.mirror_mode = True, "snapshot"
                img.mirror_snapshots += 1
                changed[name] = "snapshot"
        return changed, failed

    def mirror_snapshot_all(self, pool: str, images, *, workers: int = 4):
        self._call(f"bulk mirror-snapshot {pool}")
        taken = {}
        for name in images:
            img = self.image(pool, name)
            if img.mirror_enabled and img.primary and img.mirror_mode == "snapshot":
                img.mirror_snapshots += 1
                taken[name] = str(img.mirror_snapshots)
        return taken, {}

    def demote_images(self, pool: str, images, *, workers: int = 4):
        self._call(f"bulk demote {pool}")
        demoted, failed = [], {}
        for name in images:
            img = self.image(pool, name)
            if name in self.fail_images:
                failed[name] = "OSError: [errno 110] timed out"
            elif img.mirror_enabled and img.primary:
                img.primary = False
                demoted.append(name)
        return demoted, failed

    def promote_demoted(self, pool: str, images, *, workers: int = 4):
        self._call(f"bulk promote-demoted {pool}")
        promoted, failed = [], {}
        for name in images:
            img = self.image(pool, name)
            if img.primary or not img.mirror_enabled or img.mirror_mode != "snapshot":
                continue
            if self.promote_busy:
                self.promote_busy -= 1
                failed[name] = "ValueError: pending: the demotion snapshot is still being copied"
                continue
            img.primary = True
            self.states[img.name] = ("up+stopped", "local image is primary")
            promoted.append(name)
        return promoted, failed

    def snapshot_schedules(self, pool: str) -> list[str]:
        self._call(f"mirror snapshot schedule ls {pool}")
        if self.schedule_denied:
            raise CephError(self.name, ["schedule"], 13, "does your client key have mgr caps?")
        return list(self.schedules.get(pool, []))

    def snapshot_schedule(self, pool: str, interval: str, *, add: bool) -> None:
        self._call(f"mirror snapshot schedule {'add' if add else 'remove'} {pool} {interval}")
        if self.schedule_denied:
            raise CephError(self.name, ["schedule"], 13, "does your client key have mgr caps?")
        kept = [i for i in self.schedules.get(pool, []) if i != interval]
        self.schedules[pool] = kept + ([interval] if add else [])

    def peer_add(self, pool: str, client_name: str, site_name: str) -> str:
        self._call(f"peer add {pool}")
        self.peers.setdefault(pool, []).append(
            Peer(
                uuid=f"uuid-{pool}",
                site_name=site_name,
                client_name=client_name,
                direction="rx-only",
            )
        )
        return f"uuid-{pool}"

    def peer_remove(self, pool: str, uuid: str) -> None:
        self._call(f"peer remove {pool}")
        self.peers[pool] = [p for p in self.peers.get(pool, []) if p.uuid != uuid]
        if uuid == f"tx-{pool}":
            self.registered.discard(pool)

    def remove_peer_omap(self, pool: str, uuid: str) -> None:
        self.peer_remove(pool, uuid)

    def can_blocklist(self, release: CephVersion | None = None) -> bool:
        self._call(f"{' '.join(blocklist_command(release))} add")
        if self.blocklist_error:
            raise CephError(self.name, ["osd blocklist add"], 1, "mon command failed")
        return self.blocklist_ok

    def pool_demote(self, pool: str) -> int:
        self._call(f"demote {pool}")
        changed = [i for i in self._imgs(pool) if i.mirror_enabled and i.primary]
        for img in changed:
            img.primary = False
        return len(changed)

    def pool_promote(self, pool: str, *, force: bool = False) -> int:
        self._call(f"promote {pool}")
        if self.promote_busy and not force:
            self.promote_busy -= 1
            snapshot = any(i.mirror_mode == "snapshot" for i in self._imgs(pool))
            rc = EROFS if snapshot else EBUSY
            raise CephError(self.name, ["promote"], rc, "demotion is not propagated yet")
        changed = [i for i in self._imgs(pool) if i.mirror_enabled and not i.primary]
        for img in changed:
            img.primary = True
            self.states[img.name] = ("up+stopped", "local image is primary")
        return len(changed)

    def journal_status(self, pool: str, *, workers: int = 4) -> list[JournalInfo]:
        self._call(f"bulk journal-status {pool}")
        if self.journal_error:
            raise CephError(self.name, ["rbd_bulk journal-status"], -1, "1 journal(s) unreadable")
        mirrored = [i.name for i in self._imgs(pool) if i.mirror_enabled]
        return [
            self.journals.get(n, JournalInfo(image=n, bytes=1024, objects=1)) for n in mirrored
        ]

    def cutover_snapshots(
        self, pool: str, action: str, *, workers: int = 4, images=None
    ) -> SnapshotCheck:
        self._call(f"bulk cutover-snapshots {action} {pool}")
        self.snapshot_workers[action] = workers
        changed, written, missing = [], {}, []
        for img in self._imgs(pool):
            if images is not None and img.name not in images:
                continue
            has = "cutover" in img.snaps
            primary = img.mirror_enabled and img.primary
            if action == "create" and primary and not has:
                img.snaps.append("cutover")
                changed.append(img.name)
            elif action == "remove" and has:
                img.snaps.remove("cutover")
                changed.append(img.name)
            elif action == "check" and has and img.written_since_snap:
                written[img.name] = "written since the cutover (first at offset 0)"
            elif action == "check" and primary and not has:
                missing.append(img.name)
            elif action == "promote-back" and has and img.mirror_enabled and not img.primary:
                img.primary = True
                changed.append(img.name)
        return SnapshotCheck(changed=tuple(changed), written=written, missing=tuple(missing))

    def delete_images(self, pool: str, levels, *, workers: int = 4):
        self._call(f"bulk delete-images {pool}")
        deleted, failed = [], {}
        for level in levels:
            for name in level:
                img = self.image(pool, name)
                if name in self.fail_images or (img.mirror_enabled and img.primary):
                    failed[name] = "ValueError: primary on this cluster: not deleted"
                    continue
                self.pool_images[pool].remove(img)
                deleted.append(name)
            if failed:
                break
        return deleted, failed

    def resync_images(self, pool: str, images, *, workers: int = 4):
        self._call(f"bulk resync {pool}")
        flagged = []
        for name in images:
            img = self.image(pool, name)
            if img.mirror_enabled and not img.primary:
                self.resynced.append(f"{pool}/{name}")
                img.snaps = [s for s in img.snaps if s != "cutover"]
                flagged.append(name)
        return flagged, {}

    def pool_config_set(self, pool: str, key: str, value: str | None) -> None:
        self._call(f"config pool {'remove' if value is None else 'set'} {pool} {key}")
        if self.config_denied:
            raise CephError(self.name, ["config pool set"], 13, "Permission denied")
        if value is None:
            self.pool_config.pop((pool, key), None)
        else:
            self.pool_config[(pool, key)] = value

    def image_digests(
        self,
        pool: str,
        images,
        *,
        chunk: int,
        sample: int | None = None,
        seed: str = "",
        workers: int = 4,
        timeout: float | None = None,
    ) -> Digests:
        self._call(f"bulk digests {pool}")
        self.digest_workers.append(workers)
        found, failed = {}, {}
        for name in images:
            img = next((i for i in self._imgs(pool) if i.name == name), None)
            if img is None or name in self.unreadable:
                failed[name] = "ImageNotFound: [errno 2] not found"
                continue
            snaps = [x for x in img.snaps if x != "cutover"]
            contents = [(x, img.snap_data.get(x, img.data)) for x in snaps] + [("", img.data)]
            if sample is not None:
                offsets = list(range(0, len(img.data), chunk))
                picks = random.Random(f"{seed}/{name}").sample(offsets, min(sample, len(offsets)))
                contents, wanted = [("", img.data)], [sorted(picks)]
            else:  # what a diff reports: every chunk of the first, then the chunks that changed
                wanted, before = [], None
                for snap_name, data in contents:
                    every = range(0, len(data), chunk)
                    wanted.append(
                        [
                            o
                            for o in every
                            if before is None
                            or not snap_name  # the head is read whole
                            or data[o : o + chunk] != before[o : o + chunk]
                        ]
                    )
                    before = data
            layers = tuple(
                Layer(
                    x,
                    len(data),
                    {o: _digest(data[o : o + chunk]) for o in offsets},
                    whole=not x or k == 0,  # the first snapshot and the head are read whole
                )
                for k, ((x, data), offsets) in enumerate(zip(contents, wanted, strict=True))
            )
            found[name] = ImageDigest(
                size=len(img.data),
                snaps=tuple((x, len(img.snap_data.get(x, img.data))) for x in sorted(snaps)),
                parent=img.parent,
                layers=layers,
                bytes_read=sum(
                    len(data[o : o + chunk])
                    for (_, data), offsets in zip(contents, wanted, strict=True)
                    for o in offsets
                ),
            )
        return Digests(images=found, failed=failed)

    def extent_digests(
        self, pool: str, image: str, offset: int, length: int, block: int, snap: str = ""
    ):
        self._call(f"bulk extent {pool}/{image}")
        data = self._content(pool, image, snap)[offset : offset + length]
        return [
            hashlib.sha256(data[i : i + block]).hexdigest()[:32]
            for i in range(0, len(data), block)
        ]

    def extent_bytes(
        self, pool: str, image: str, offset: int, length: int, snap: str = ""
    ) -> bytes:
        self._call(f"bulk extent {pool}/{image}")
        return self._content(pool, image, snap)[offset : offset + length]

    def _content(self, pool: str, image: str, snap: str) -> bytes:
        img = self.image(pool, image)
        return img.snap_data.get(snap, img.data) if snap else img.data

    def space(self) -> Space:
        self._call("bulk space")
        return Space(
            pools={
                p: PoolSpace(p, self.stored.get(p, 0), self.avail, 1, self.quotas.get(p, 0))
                for p in self.pool_images
            },
            total_avail_bytes=self.avail,
        )

    def preflight_images(self, pool: str, *, workers: int = 4) -> list[PreflightImage]:
        self._call(f"bulk preflight-images {pool}")
        return [
            PreflightImage(
                name=i.name,
                old_format=i.old_format,
                features=tuple(sorted(i.features)),
                parent=i.parent,
                mirror_mode=i.mirror_mode,
                head="" if i.parent else i.data[:4].hex(),
                snaps=tuple(i.snaps),
                size=_size(i),
            )
            for i in self._imgs(pool)
        ]

    def image_sizes(self, pool: str, images, *, workers: int = 4) -> dict[str, int]:
        self._call(f"bulk sizes {pool}")
        return {i.name: _size(i) for i in self._imgs(pool) if i.name in images}

    def fsid(self) -> str:
        self._call("bulk fsid")
        return f"fsid-of-{self.name}"

    def journal_probe(self, pool: str) -> str:
        self._call(f"bulk journal-probe {pool}")
        return "PermissionError: [errno 1] denied" if self.journal_denied else ""


def make_pair() -> tuple[FakeCluster, FakeCluster]:
    """A source with the OpenStack layout and an empty destination with the same pools."""
    src = FakeCluster(
        "source",
        pool_images={
            "glance": [FakeImage("img")],
            "nova": [
                FakeImage("a_disk", parent="glance/img@snap"),
                FakeImage("b_disk", parent="glance/img@snap"),
            ],
            "cinder-ceph": [FakeImage("volume-1")],
        },
    )
    dst = FakeCluster("ceph", pool_images={p: [] for p in src.pool_images})
    return src, dst


def mirror(src: FakeCluster, dst: FakeCluster) -> None:
    """What the rbd-mirror daemon does: copy every mirror-enabled source image, non-primary.

    In snapshot mode it also registers as the source pool's tx peer, as the real one does.
    """
    for pool, imgs in src.pool_images.items():
        if dst.modes.get(pool) == "image" and dst.peers.get(pool):
            src.registered.add(pool)
        for img in imgs:
            if (
                img.mirror_enabled
                and dst.modes.get(pool) in ("pool", "image")
                and not any(i.name == img.name for i in dst.pool_images[pool])
            ):
                dst.pool_images[pool].append(
                    FakeImage(
                        img.name,
                        parent=img.parent,
                        features=set(img.features),
                        primary=False,
                        mirror_enabled=True,
                        snaps=[s for s in img.snaps if s != "cutover"],
                        data=img.data,
                        mirror_mode=img.mirror_mode,
                    )
                )


def _satisfies_the_protocol(cluster: FakeCluster) -> CephCluster:
    """Checked by pyright: the fake offers what the workflow asks of a cluster."""
    return cluster


def _size(image: FakeImage) -> int:
    """An image's size as librbd gives it: its data's, or 1 MiB for one without data."""
    return len(image.data) or 1024 * 1024
