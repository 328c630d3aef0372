"""Ceph releases: what each cluster runs, which pairs this charm migrates between, and why.

Everything in the charm that depends on a Ceph release is here, in two tables:

- `RELEASE_RULES`: the rules that decide whether a source/destination pair is supported, each
  with its reason (Ceph's documentation and code, or this charm's own need). `enable-mirroring`
  refuses a pair that breaks one, before it changes anything.
- `blocklist_command`: the one command whose name differs by release among those the charm
  sends (the source key's blocklist probe).
- `OUTPUT_DIFFERENCES`: where a release's output differs in something the charm reads, and how
  the parser here reads both. The JSON samples are in tests/unit/samples/<release>/.

The releases the lab has proven (tests/functional, one whole migration and a killed daemon per
pair, md5s compared) are `PROVEN_PAIRS`; a supported pair outside them is reported as such.
Standard library only: rbd_bulk.py does not import this, the charm does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

RELEASE_NAMES = {
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
    """What a cluster runs, from `ceph versions` (mons) and the mgr's `service dump` (daemons).

    `mons` is every mon's version; `rbd_mirror` every rbd-mirror daemon's, or None when this key
    may not read the mgr's service map (ceph-proxy's key on the source).
    """

    mons: tuple[CephVersion, ...]
    rbd_mirror: tuple[CephVersion, ...] | None = None

    @property
    def release(self) -> CephVersion | None:
        """The oldest mon's version: what the cluster as a whole can be relied on to do."""
        return min(self.mons) if self.mons else None

    def describe(self) -> str:
        """`16.2.15 (pacific)`, or `16.2.15 (pacific), mons mixed: 16.2.15, 17.2.7` mid-upgrade."""
        if self.release is None:
            return "unknown"
        versions = sorted({str(v) for v in self.mons})
        mixed = f", mons mixed: {', '.join(versions)}" if len(versions) > 1 else ""
        return self.release.describe() + mixed

    def describe_daemons(self) -> str:
        """The rbd-mirror daemons' versions, `none running`, or `not readable with this key`."""
        if self.rbd_mirror is None:
            return "not readable with this key"
        if not self.rbd_mirror:
            return "none running"
        return ", ".join(sorted({v.describe() for v in self.rbd_mirror}))


def versions_from(
    mon_versions: dict[str, int], daemon_versions: list[str] | None
) -> ClusterVersions:
    """From `ceph versions`'s `mon` map and the service map's daemon versions (raw strings)."""
    mons = tuple(
        v
        for text, count in mon_versions.items()
        for v in [CephVersion.parse(text)] * max(1, int(count))
        if v is not None
    )
    daemons = None
    if daemon_versions is not None:
        daemons = tuple(v for v in map(CephVersion.parse, daemon_versions) if v is not None)
    return ClusterVersions(mons=mons, rbd_mirror=daemons)


@dataclass(frozen=True)
class Rule:
    """One rule a release pair must keep: its name, where it comes from, and the test."""

    name: str
    why: str
    broken: Callable[[CephVersion, CephVersion], bool]  # (source, destination)


JOURNAL_MIRRORING_SINCE = 10  # Jewel: doc/rbd/rbd-mirroring.rst
RX_ONLY_PEERS_SINCE = 15  # Octopus: peers with a direction (cls_rbd MirrorPeerDirection)
RELEASE_RULES = (
    Rule(
        "source-journal-mirroring",
        "the source must run Jewel (10) or later: Ceph's rbd-mirroring documentation requires "
        "it for journal-based mirroring (an older source's OSDs cannot answer the daemon's "
        "journal calls); rbd-mirror itself handles a remote older than Octopus without "
        "mirror_peer_ping (RemotePoolPoller)",
        lambda source, destination: source.major < JOURNAL_MIRRORING_SINCE,
    ),
    Rule(
        "destination-rx-only-peer",
        "the destination must run Octopus (15) or later: the charm adds its one-way peer with "
        "`--direction rx-only`, and the daemon's peer registration on the source, both Octopus",
        lambda source, destination: destination.major < RX_ONLY_PEERS_SINCE,
    ),
    Rule(
        "no-downgrade",
        "the destination's release must not be older than the source's: the migrated images "
        "keep the features the source's librbd gave them, and Ceph never supports going back "
        "a release",
        lambda source, destination: destination.major < source.major,
    ),
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


def refusal(source: CephVersion, destination: CephVersion) -> str:
    """Why the charm refuses to migrate from `source` to `destination`, or "" if it does not."""
    broken = [r for r in RELEASE_RULES if r.broken(source, destination)]
    if not broken:
        return ""
    return (
        f"refused: migrating from {source.describe()} to {destination.describe()} is not "
        f"supported: {'; '.join(r.why for r in broken)}. Supported: a source of Jewel (10) or "
        "later to a destination of Octopus (15) or later, of the same release or newer"
    )


def support(source: CephVersion, destination: CephVersion) -> str:
    """`proven in the lab`, `supported, not proven in the lab` or the refusal."""
    reason = refusal(source, destination)
    if reason:
        return reason
    if (source.major, destination.major) in PROVEN_PAIRS:
        return "proven in the lab"
    return "supported, not proven in the lab"
