"""Mirroring modes: everything that differs between journal and snapshot mirroring. No ops here.

The phases (setup_mirroring.py, report.py, cutover.py, teardown.py) read the same for both
modes. Wherever they differ, they ask the pool's `MirrorMode`:

| | journal | snapshot |
|---|---|---|
| pools' mirroring mode, both sides | `pool` | `image` |
| an image is mirrored once | it has the journaling feature | `mirror image enable IMG snapshot` |
| the source's cost while syncing | each write twice (the journal) | a snapshot per interval |
| caught up | replaying, 0 entries behind | replaying, idle, the newest source snapshot copied |
| the cutover's demote | `pool demote` | per image, side by side (each one a snapshot) |
| the cutover's promote | `pool promote`, retried on EBUSY | per image, its demotion copied |
| clones | yes | refused (`ceph_release.SNAPSHOT_CLONE_FIX`) |
| oldest release | any supported | `ceph_release.snapshot_mode_refusal` |
| source images' journaling | added (teardown removes it) | never: refused if present |

A pool's mode is read from Ceph, never remembered: a source pool in `pool` mode is journal
mirrored, one in `image` mode snapshot mirrored (this charm uses image mode for nothing else).
So a re-run after an interruption, or another unit, finds the mode the pool was set up in, and
a pool mirrored in the other mode is refused rather than converted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

EBUSY = 16
EROFS = 30
JOURNAL = "journal"
SNAPSHOT = "snapshot"
REPLAYING = "up+replaying"
# What a non-forced promote answers in snapshot mode while the daemon still holds the image:
# EROFS (30, "Read-only file system"; python-rbd's ReadOnlyImage; `rbd mirror pool promote`
# says "Promoted 0 mirrored images" with rc 30), 5-6 s after the demote on the lab (Pacific
# 16.2), and EBUSY while an earlier snapshot is still being copied. But librbd itself lets a
# promote through once the newest mirror snapshot is the demotion's, copied or not: only the
# daemon's lock refuses it. So snapshot mode does not rely on the errno: it promotes image by
# image, each only once its demotion snapshot is complete (`promotes_per_image`).
PROMOTE_PENDING_SNAPSHOT = EROFS
# Juju's default update-status-hook-interval: where the source's mgr will not schedule mirror
# snapshots, the charm takes them on that hook, so no more often than it runs.
UPDATE_STATUS_S = 300
# A hook that comes a little early (Juju jitters update-status) still takes the snapshot: the
# period stays one hook, not two.
SNAPSHOT_DUE_FRACTION = 0.8
_INTERVAL = re.compile(r"^([1-9][0-9]*)([mhd])$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class MirrorMode:
    """What one mirroring mode does differently; the phases ask, never test the name."""

    name: str
    pool_mode: str  # the pools' mirroring mode on both sides
    journals: bool  # images are mirrored by journaling them (else by mirror snapshots)
    image_step: str  # what enable-mirroring does to each image, for its messages
    promote_pending_rc: int  # a non-forced promote's errno while the demotion is in flight
    # promoted image by image once its own demotion snapshot is copied whole (rbd_bulk
    # `_promote_demoted`), else pool-wide, retried on `promote_pending_rc`
    promotes_per_image: bool
    # demoted image by image, side by side (each demotion is a mirror snapshot, a mon round:
    # `pool demote` takes them one after the other), else with `pool demote`
    demotes_per_image: bool
    carries_clones: bool  # clones mirror safely with any release (else ceph_release decides)
    meanwhile: str  # what the source bears while the daemon does not copy, for messages

    def caught_up(self, state: str, description: Mapping[str, object]) -> bool:
        """Replaying with nothing left to copy, as far as the published status knows."""
        if state != REPLAYING:
            return False
        if self.journals:
            behind = description.get("entries_behind_primary")
            return not isinstance(behind, (int, float)) or behind == 0
        local = description.get("local_snapshot_timestamp")
        remote = description.get("remote_snapshot_timestamp")
        return description.get("replay_state") == "idle" and local is not None and local == remote

    def image_refusal(self, mirrored_as: str, features: Sequence[str]) -> str:
        """Why a source image cannot be mirrored in this mode as it is ("" when it can).

        `mirrored_as`: the image's mirroring mode ("" when off); `features`: its features.
        """
        if mirrored_as and mirrored_as != self.name:
            return (
                f"already mirrored in {mirrored_as} mode: {self.name} mode would not replace "
                "it (never converted)"
            )
        if not self.journals and "journaling" in features and not mirrored_as:
            return (
                "has the journaling feature: snapshot mode would leave every write journaled "
                "(rbd feature disable it, or use mode=journal)"
            )
        return ""


MODES: dict[str, MirrorMode] = {
    JOURNAL: MirrorMode(
        name=JOURNAL,
        pool_mode="pool",
        journals=True,
        image_step="journaling",
        promote_pending_rc=EBUSY,
        promotes_per_image=False,
        demotes_per_image=False,
        carries_clones=True,
        meanwhile="the source stays journaled and its journals grow meanwhile",
    ),
    SNAPSHOT: MirrorMode(
        name=SNAPSHOT,
        pool_mode="image",
        journals=False,
        image_step="snapshot mirroring",
        promote_pending_rc=PROMOTE_PENDING_SNAPSHOT,
        promotes_per_image=True,
        demotes_per_image=True,
        carries_clones=False,
        meanwhile="the source's mirror snapshots pile up meanwhile, and the cutover copies more",
    ),
}


def mode(name: str) -> MirrorMode:
    """The mode called `name`; ValueError naming the choices for any other."""
    if name not in MODES:
        raise ValueError(f"mirror mode must be one of {', '.join(MODES)}, not {name!r}")
    return MODES[name]


def mode_of_pool(source_pool_mode: str) -> MirrorMode | None:
    """The mode a source pool is mirrored in, from its mirroring mode; None while disabled."""
    for candidate in MODES.values():
        if candidate.pool_mode == source_pool_mode:
            return candidate
    return None


def image_mode(description: Mapping[str, object], default: str = JOURNAL) -> MirrorMode:
    """An image's mode from its status description (snapshot mode's has `replay_state`)."""
    return MODES[SNAPSHOT] if "replay_state" in description else MODES[default]


def interval_seconds(interval: str) -> int:
    """Ceph's schedule syntax (`5m`, `1h`, `1d`) in seconds; ValueError for anything else.

    Ceph's scheduler counts in minutes: it accepts nothing shorter than `1m`.
    """
    match = _INTERVAL.match(interval.strip())
    if not match:
        raise ValueError(
            f"snapshot-interval must be a whole number of minutes, hours or days, like 5m, 1h "
            f"or 1d (Ceph's schedule syntax), not {interval!r}"
        )
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def snapshot_period(interval_s: int, *, self_scheduled: bool) -> int:
    """How often each image really gets a mirror snapshot, in seconds.

    The source's mgr keeps `snapshot-interval`; the charm's own schedule (update-status) keeps
    the longer of it and the hook's interval.
    """
    return max(interval_s, UPDATE_STATUS_S) if self_scheduled else interval_s


def snapshot_max_age(interval_s: int, *, self_scheduled: bool) -> int:
    """`ready-for-cutover` needs a copied mirror snapshot younger than this: two periods."""
    return 2 * snapshot_period(interval_s, self_scheduled=self_scheduled)


def snapshot_due(interval_s: int, since_last_s: float) -> bool:
    """The charm's own schedule: whether an update-status hook takes the next snapshots."""
    return since_last_s >= interval_s * SNAPSHOT_DUE_FRACTION


def meanwhile(modes: Sequence[MirrorMode | None]) -> str:
    """What the source bears while nothing is copied, for the modes of the pools concerned."""
    said = sorted({m.meanwhile for m in modes if m is not None})
    return "; ".join(said) or MODES[JOURNAL].meanwhile
