"""Ceph releases: what each cluster runs, which pairs this charm migrates between, and why.

Everything in the charm that depends on a Ceph release is here:

- `RELEASE_RULES`: the rules that decide whether a source/destination pair is supported, each
  with its reason (Ceph's documentation and code, or this charm's own need). `enable-mirroring`
  refuses a pair that breaks one, before it changes anything.
- `blocklist_command`: the one command whose name differs by release among those the charm
  sends (the source key's blocklist probe).
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


def _parsed(counts: dict[str, int]) -> tuple[CephVersion, ...]:
    """Each version of a `ceph versions` map.

    A string that does not parse stays out; a cluster with none left is `unknown`, which
    enable-mirroring refuses.
    """
    return tuple(v for text in counts for v in [CephVersion.parse(text)] if v is not None)


def versions_from(
    versions: dict[str, dict[str, int]], daemons: list[str] | None, unread: str = "not read"
) -> ClusterVersions:
    """From `ceph versions` (its `mon` and `osd` maps) and the service map's daemon versions."""
    return ClusterVersions(
        mons=_parsed(versions.get("mon") or {}),
        osds=_parsed(versions.get("osd") or {}),
        rbd_mirror=None
        if daemons is None
        else tuple(v for v in map(CephVersion.parse, daemons) if v is not None),
        unread=unread,
    )


@dataclass(frozen=True)
class Rule:
    """One rule a release pair must keep: its name, where it comes from, and the test.

    `broken(source, destination)` takes both clusters' versions, each with at least one version.
    """

    name: str
    why: str
    broken: Callable[[ClusterVersions, ClusterVersions], bool]


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
        lambda source, destination: _major(source.oldest) < VERSIONS_SINCE,
    ),
    Rule(
        "destination-octopus",
        "the destination must run Octopus (15) or later: the charm adds its one-way peer with "
        "`--direction rx-only`, and peer directions came with Octopus",
        lambda source, destination: _major(destination.oldest) < RX_ONLY_PEERS_SINCE,
    ),
    Rule(
        "no-downgrade",
        "no mon or OSD of the destination may run an older release than any of the source's: "
        "the migrated images keep what the source's librbd gave them, and Ceph supports no "
        "downgrade",
        lambda source, destination: _major(destination.oldest) < _major(source.newest),
    ),
    Rule(
        "daemon-not-older",
        "the rbd-mirror daemon must not run an older release than the source, for the same "
        "reason (it reads the source's journals and images with its own librbd)",
        lambda source, destination: any(
            d.major < _major(source.newest) for d in destination.rbd_mirror or ()
        ),
    ),
    Rule(
        "known-releases",
        f"each cluster must run a release this charm knows, up to {RELEASE_NAMES[NEWEST_KNOWN]} "
        f"({NEWEST_KNOWN}): a later one may have changed what the charm reads; upgrade the charm",
        lambda source, destination: (
            max(_major(source.newest), _major(destination.newest)) > NEWEST_KNOWN
        ),
    ),
)
SUPPORTED = (
    "Supported: a source of Luminous (12) or later to a destination of Octopus (15) or later, "
    "of the same release or newer, with an rbd-mirror daemon not older than the source, up to "
    f"{RELEASE_NAMES[NEWEST_KNOWN]} ({NEWEST_KNOWN})"
)
PROVEN_PAIRS = ((16, 16), (16, 18), (16, 20), (18, 20))

BLOCKLIST_SINCE = 16  # Pacific renamed `osd blacklist` to `osd blocklist`; older mons know only it


def blocklist_command(source: CephVersion | None) -> tuple[str, str]:
    """The mon command that blocklists on `source`: `osd blocklist` (before Pacific: blacklist).

    The unit's newer CLI sends the name it is given, and an older mon answers EINVAL to the new
    one (librbd and rbd-mirror fall back by themselves). An unknown release gets the new name.
    """
    if source is not None and source.major < BLOCKLIST_SINCE:
        return ("osd", "blacklist")
    return ("osd", "blocklist")


# Where a release's output differs in something the charm reads (samples in tests/unit/samples).
OUTPUT_DIFFERENCES = {
    "ceph versions: empty daemon types": (
        'Pacific always prints `"mds": {}`; Reef and later omit daemon types with no daemon. '
        "The charm reads only `mon`."
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


def refusal(source: ClusterVersions, destination: ClusterVersions) -> str:
    """Why the charm refuses to migrate from `source` to `destination`, or "" if it does not."""
    unknown = [n for n, c in (("source", source), ("destination", destination)) if not c.mons]
    if unknown:
        return (
            f"refused: the {' and '.join(unknown)} reported no Ceph version the charm can read "
            f"(`ceph versions`): the release pair cannot be checked. {SUPPORTED}"
        )
    broken = [r for r in RELEASE_RULES if r.broken(source, destination)]
    if not broken:
        return ""
    return (
        f"refused: migrating from {source.describe()} to {destination.describe()} (rbd-mirror "
        f"{destination.describe_daemons()}) is not supported: {'; '.join(r.why for r in broken)}"
        f". {SUPPORTED}"
    )


def support(source: ClusterVersions, destination: ClusterVersions) -> str:
    """`proven in the lab`, `supported, not proven in the lab` or the refusal."""
    reason = refusal(source, destination)
    if reason:
        return reason
    pair = (_major(source.newest), _major(destination.oldest))
    if pair in PROVEN_PAIRS and source.oldest == source.newest:
        return "proven in the lab"
    return "supported, not proven in the lab"
