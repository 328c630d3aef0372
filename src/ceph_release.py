"""Ceph releases: what each cluster runs, which pairs this charm migrates between, and why.

Everything in the charm that depends on a Ceph release is here:

- `RELEASE_RULES`: the rules that decide whether a source/destination pair is supported, each
  with its reason (Ceph's documentation and code, or this charm's own need). `enable-mirroring`
  refuses a pair that breaks one, before it changes anything.
- `blocklist_command`: the one command whose name differs by release among those the charm
  sends (the source key's blocklist probe).
- `snapshot_mode_refusal`, `SNAPSHOT_CLONE_FIX`: what snapshot mirroring (mirror_modes.py) needs
  of the releases beyond the rules above: a source that can mirror by snapshots one way, and
  a release that fixed the corruption of mirrored clones, for clones.
- `OUTPUT_DIFFERENCES`: where a release's output differs in something the charm reads, and how
  the parser here reads both. The JSON samples are in tests/unit/samples/<release>/.

The pairs the lab has proven (tests/functional: the whole migration and a daemon killed mid-sync,
md5s compared, the daemon and the charm's tools of the destination's release) are
`PROVEN_PAIRS`; a supported pair outside them is reported as such. A pair is judged by the
source's newest and the destination's oldest mon or OSD, so a cluster mid-upgrade counts as the
release that makes the rule harder to meet.
Standard library only: rbd_bulk.py does not import this, the charm does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

RELEASE_NAMES = {
    9: "infernalis",
    10: "jewel",
    11: "kraken",
    12: "luminous",
    13: "mimic",
    14: "nautilus",
    15: "octopus",
    16: "pacific",
    17: "quincy",
    18: "reef",
    19: "squid",
    20: "tentacle",
}
_VERSION = re.compile(r"(?:ceph version )?(\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True, order=True)
class CephVersion:
    """A Ceph version, e.g. 16.2.15 (pacific)."""

    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> CephVersion | None:
        """From `ceph version 16.2.15 (<sha>) pacific (stable)` or `16.2.15`; None if neither.

        Tentacle's strings end `(stable - RelWithDebInfo)` (OUTPUT_DIFFERENCES): only the
        numbers are read.
        """
        match = _VERSION.match(text.strip())
        return cls(*(int(g) for g in match.groups())) if match else None

    @property
    def name(self) -> str:
        """The release's name (`pacific`), or `release <major>` for one the charm does not know."""
        return RELEASE_NAMES.get(self.major, f"release {self.major}")

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    def describe(self) -> str:
        """`16.2.15 (pacific)`."""
        return f"{self} ({self.name})"


@dataclass(frozen=True)
class ClusterVersions:
    """What a cluster runs: its mons', OSDs' and rbd-mirror daemons' versions.

    The first two from `ceph versions`, the daemons' from the mgr's service map. `rbd_mirror`
    is None when not read, and `unread` says why (not asked, no mgr caps, no answer).
    """

    mons: tuple[CephVersion, ...]
    osds: tuple[CephVersion, ...] = ()
    rbd_mirror: tuple[CephVersion, ...] | None = None
    unread: str = "not read"
    unparsed: tuple[str, ...] = ()  # version strings of mons, OSDs or daemons that did not parse

    @property
    def unknown(self) -> str:
        """Why this cluster's release cannot be judged, or "" when it can."""
        if self.unparsed:
            return (
                f"reported versions the charm cannot read: {', '.join(sorted(set(self.unparsed)))}"
            )
        if not self.mons or not self.osds:
            return "reported no mon or no OSD version (`ceph versions`, Luminous or later)"
        return ""

    @property
    def oldest_mon(self) -> CephVersion | None:
        """The oldest mon: which commands the cluster understands."""
        return min(self.mons, default=None)

    @property
    def uniform(self) -> bool:
        """Every mon and OSD on the same version."""
        return self.oldest == self.newest

    @property
    def oldest(self) -> CephVersion | None:
        """The oldest mon or OSD: what the cluster as a whole can be relied on to do."""
        return min((*self.mons, *self.osds), default=None)

    @property
    def newest(self) -> CephVersion | None:
        """The newest mon or OSD: what the cluster may already have written (mid-upgrade)."""
        return max((*self.mons, *self.osds), default=None)

    def describe(self) -> str:
        """`16.2.15 (pacific)`, or `16.2.15 (pacific), mixed: 16.2.15, 18.2.7` mid-upgrade."""
        if self.oldest is None:
            return "unknown"
        versions = sorted({str(v) for v in (*self.mons, *self.osds)})
        mixed = f", mixed: {', '.join(versions)}" if len(versions) > 1 else ""
        return self.oldest.describe() + mixed

    def describe_daemons(self) -> str:
        """The rbd-mirror daemons' versions, `none running`, or why they were not read."""
        if self.rbd_mirror is None:
            return self.unread
        if not self.rbd_mirror:
            return "none running"
        return ", ".join(sorted({v.describe() for v in self.rbd_mirror}))


def versions_from(
    versions: dict[str, dict[str, int]], daemons: list[str] | None, unread: str = "not read"
) -> ClusterVersions:
    """From `ceph versions` (its `mon` and `osd` maps) and the service map's daemon versions.

    A string that does not parse is kept in `unparsed`: enable-mirroring refuses that cluster.
    """
    texts = {k: list(versions.get(k) or {}) for k in ("mon", "osd")}
    texts["rbd-mirror"] = list(daemons or [])
    parsed = {k: [CephVersion.parse(t) for t in v] for k, v in texts.items()}
    return ClusterVersions(
        mons=tuple(v for v in parsed["mon"] if v is not None),
        osds=tuple(v for v in parsed["osd"] if v is not None),
        rbd_mirror=None
        if daemons is None
        else tuple(v for v in parsed["rbd-mirror"] if v is not None),
        unread=unread,
        unparsed=tuple(
            t for k in texts for t, v in zip(texts[k], parsed[k], strict=True) if v is None
        ),
    )


@dataclass(frozen=True)
class ReleasePair:
    """The two clusters' versions, and this unit's own `rbd` (its librbd) and `rbd-mirror`.

    `unit_tools` maps each tool to its version, or None when `--version` did not answer.
    """

    source: ClusterVersions
    destination: ClusterVersions
    unit_tools: dict[str, CephVersion | None]

    def describe_unit_tools(self) -> str:
        """`rbd 19.2.1 (squid), rbd-mirror 19.2.1 (squid)`."""
        return describe_tools(self.unit_tools)


def describe_tools(tools: dict[str, CephVersion | None]) -> str:
    """`rbd 19.2.1 (squid), rbd-mirror 19.2.1 (squid)`; `unknown` for a tool without a version."""
    return ", ".join(f"{t} {v.describe() if v else 'unknown'}" for t, v in tools.items())


@dataclass(frozen=True)
class Rule:
    """One rule a release pair must keep: its name, where it comes from, and the test.

    `broken(pair)` is only asked of a pair whose every version was read (`refusal` checks).
    """

    name: str
    why: str
    broken: Callable[[ReleasePair], bool]


def _major(version: CephVersion | None) -> int:
    assert version is not None  # refusal() checks that each cluster reported a version first
    return version.major


VERSIONS_SINCE = 12  # Luminous: `ceph versions`, how the charm reads a release
RX_ONLY_PEERS_SINCE = 15  # Octopus: peers with a direction (`--direction rx-only`)
NEWEST_KNOWN = max(RELEASE_NAMES)
RELEASE_RULES = (
    Rule(
        "source-luminous",
        "the source must run Luminous (12) or later: Ceph's rbd-mirroring documentation "
        "requires Jewel (10) for journal-based mirroring, and the charm reads each cluster's "
        "release with `ceph versions`, which came with Luminous",
        lambda p: _major(p.source.oldest) < VERSIONS_SINCE,
    ),
    Rule(
        "destination-octopus",
        "the destination must run Octopus (15) or later: the charm adds its one-way peer with "
        "`--direction rx-only`, and peer directions came with Octopus",
        lambda p: _major(p.destination.oldest) < RX_ONLY_PEERS_SINCE,
    ),
    Rule(
        "no-downgrade",
        "no mon or OSD of the destination may run an older release than any of the source's: "
        "the migrated images keep what the source's librbd gave them, and Ceph supports no "
        "downgrade",
        lambda p: _major(p.destination.oldest) < _major(p.source.newest),
    ),
    Rule(
        "unit-tools-not-older",
        "this unit's rbd-mirror and rbd (its librbd) must not run an older release than the "
        "source, for the same reason: the daemon reads the source's journals and images, and "
        "rbd_bulk.py changes the source's images, with this unit's librbd",
        lambda p: any(_major(v) < _major(p.source.newest) for v in p.unit_tools.values()),
    ),
    Rule(
        "registered-daemons-not-older",
        "no rbd-mirror daemon registered with the destination's mgr may run an older release "
        "than the source (another unit's, or this unit's not restarted since an upgrade: "
        "restart it); unread when the mgr does not answer",
        lambda p: any(d.major < _major(p.source.newest) for d in p.destination.rbd_mirror or ()),
    ),
    Rule(
        "known-releases",
        "each cluster and this unit's tools must run a release this charm knows, up to "
        f"{RELEASE_NAMES[NEWEST_KNOWN]} ({NEWEST_KNOWN}): a later one may have changed what the "
        "charm reads; upgrade the charm",
        lambda p: (
            max(_major(v) for v in (p.source.newest, p.destination.newest, *p.unit_tools.values()))
            > NEWEST_KNOWN
        ),
    ),
)
SUPPORTED = (
    "Supported: a source of Luminous (12) or later to a destination of Octopus (15) or later, "
    "of the same release or newer, from a unit whose rbd-mirror and rbd are not older than the "
    "source, up to "
    f"{RELEASE_NAMES[NEWEST_KNOWN]} ({NEWEST_KNOWN})"
)
PROVEN_PAIRS = ((16, 16), (16, 18), (16, 20), (18, 20))

# Snapshot mirroring came with Octopus; one-way snapshot mirroring (an rx-only peer, as this
# charm sets up) only works once the daemon finds its tx-only registration on the primary:
# fixed in 15.2.15 and 16.2.7 (ceph/ceph PR 43228, tracker 52675, and their backports).
SNAPSHOT_ONE_WAY_SINCE = {15: CephVersion(15, 2, 15), 16: CephVersion(16, 2, 7)}
SNAPSHOT_SINCE = 15
# Ceph tracker 61891: snapshot mirroring can corrupt a clone's copy. A write to a clone's object
# that is not there yet copies the parent's data up into it and into the clone's older
# snapshots; rbd-mirror, having copied those snapshots already, copies only the new write and
# the parent's part is lost on the destination. Its fixes (ceph/ceph PRs 55892, 60290) are in
# no release the charm knows: None (tests/functional/test_snapshot_mode.py shows the loss on the
# lab's releases). Clones are mirrored in journal mode only until a release carries it; set it
# to that release's version then, minding where the fix sits: PR 55892 changes the daemon's
# deep copy; PR 60290's description points at the copy-up itself, which runs in the writer's
# librbd (nova-compute's, cinder's), a release the charm cannot read.
SNAPSHOT_CLONE_FIX: CephVersion | None = None
SNAPSHOT_CLONE_ADVICE = ": mirror this pool with mode=journal, or flatten the clone"


def snapshot_mode_refusal(pair: ReleasePair) -> str:
    """Why snapshot mirroring is refused for this pair ("" when it is not).

    Judged by the source's oldest mon or OSD (where the mirror snapshots are taken and the
    daemon registers) and this unit's tools (its rbd-mirror copies them).
    """
    versions = [("the source", pair.source.oldest)] + [
        (f"this unit's {tool}", version) for tool, version in pair.unit_tools.items()
    ]
    too_old = []
    for who, version in versions:
        if version is None:
            continue
        floor = SNAPSHOT_ONE_WAY_SINCE.get(version.major)
        if version.major < SNAPSHOT_SINCE or (floor is not None and version < floor):
            too_old.append(f"{who} runs {version.describe()}")
    if not too_old:
        return ""
    return (
        f"snapshot mirroring refused: {', '.join(too_old)}; one-way snapshot mirroring needs "
        "Octopus 15.2.15, Pacific 16.2.7 or any later release (ceph/ceph PR 43228, tracker "
        "52675: before it the daemon never finds its peer on the source and copies nothing). "
        "Use mode=journal"
    )


def snapshot_clone_refusal(pair: ReleasePair | None = None) -> str:
    """Why clones may not be mirrored by snapshots with these releases ("" when they may)."""
    fix = SNAPSHOT_CLONE_FIX
    if fix is not None and pair is not None:
        oldest = [pair.source.oldest, pair.destination.oldest, *pair.unit_tools.values()]
        if all(v is not None and v >= fix for v in oldest):
            return ""
    where = f"fixed in {fix.describe()}" if fix else "fixed in no Ceph release yet"
    return (
        "snapshot mirroring may corrupt a clone's copy (Ceph tracker 61891, "
        f"{where}){SNAPSHOT_CLONE_ADVICE}"
    )


BLOCKLIST_SINCE = 16  # Pacific renamed `osd blacklist` to `osd blocklist`; older mons know only it


def blocklist_command(source_mon: CephVersion | None) -> tuple[str, str]:
    """The mon command that blocklists on `source`: `osd blocklist` (before Pacific: blacklist).

    The unit's newer CLI sends the name it is given, and an older mon answers EINVAL to the new
    one (librbd and rbd-mirror fall back by themselves). An unknown release gets the new name.
    """
    if source_mon is not None and source_mon.major < BLOCKLIST_SINCE:
        return ("osd", "blacklist")
    return ("osd", "blocklist")


# Where a release's output differs in something the charm reads (samples in tests/unit/samples).
OUTPUT_DIFFERENCES = {
    "ceph versions: empty daemon types": (
        'Pacific always prints `"mds": {}`; Reef and later omit daemon types with no daemon. '
        "The charm reads only `mon` and `osd`."
    ),
    "ceph versions: version strings": (
        "Tentacle ends them `(stable - RelWithDebInfo)` instead of `(stable)`. "
        "CephVersion.parse reads only the numbers."
    ),
    "service dump: rbd-mirror metadata": (
        "every release from Pacific to Tentacle publishes `metadata.ceph_version` per daemon; "
        "a daemon without it is left out of the daemon versions."
    ),
}


def refusal(pair: ReleasePair) -> str:
    """Why the charm refuses to migrate this pair, or "" if it does not."""
    unknown = [
        f"the {n} {c.unknown}"
        for n, c in (("source", pair.source), ("destination", pair.destination))
        if c.unknown
    ]
    unknown += [
        f"this unit's {t} did not tell its version (not installed yet, or not runnable)"
        for t, v in pair.unit_tools.items()
        if v is None
    ]
    if unknown:
        return f"refused: {'; '.join(unknown)}: the release pair cannot be checked. {SUPPORTED}"
    broken = [r for r in RELEASE_RULES if r.broken(pair)]
    if not broken:
        return ""
    return (
        f"refused: migrating from {pair.source.describe()} to {pair.destination.describe()} "
        f"with this unit's {pair.describe_unit_tools()} is not supported: "
        f"{'; '.join(r.why for r in broken)}. {SUPPORTED}"
    )


def support(pair: ReleasePair) -> str:
    """`proven in the lab`, `supported, not proven in the lab` or the refusal.

    Proven: a pair of PROVEN_PAIRS, each cluster on one version, this unit's tools on the
    destination's release (as the lab ran it).
    """
    reason = refusal(pair)
    if reason:
        return reason
    majors = (_major(pair.source.newest), _major(pair.destination.oldest))
    same_tools = all(_major(v) == majors[1] for v in pair.unit_tools.values())
    if majors in PROVEN_PAIRS and pair.source.uniform and pair.destination.uniform and same_tools:
        return "proven in the lab"
    return "supported, not proven in the lab"
