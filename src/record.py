"""What this unit remembers because the clusters cannot tell it. No ops here.

The charm derives the migration's state from the two clusters on every hook. A few facts cannot
be read back from them, and only those are kept (in the unit's StoredState, as JSON):
- `pools`, `source_cluster_name`: what `enable-mirroring` set up. With the source gone and config
  `pools` empty, the disaster path still knows which pools to promote; a later change of
  `source-cluster-name` would orphan the peers and the daemon's source files, so it is refused.
- `torn_down`, `finished`: a teardown that completed. Once the relations are removed the
  clusters cannot be read at all, and the unit must still say "finished", not "relate me".
- `paused`: the operator stopped the daemon on purpose; hooks must not restart it.
With several units, the migration's facts (every field but `paused`) are the application's: the
leader also publishes them in the peer relation, and every unit reads them from there
(`with_shared`), so a new leader keeps the guards its predecessor set up.
(A pending restart of the daemon is not here but on disk beside its files, daemon.py: the
files are written at once, StoredState only when the hook ends well.)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Record:
    """The unit's memory of the migration (see the module docstring for why each field)."""

    pools: tuple[str, ...] = ()
    source_cluster_name: str = ""
    torn_down: tuple[str, ...] = ()
    finished: bool = False
    paused: bool = False
    generation: int = 0  # bumped by every save on the leader: the newer of two records wins

    @classmethod
    def from_json(cls, text: str) -> Record:
        """Parse what `to_json` wrote; unknown, missing or mistyped fields take their defaults.

        The peer bag can be written by hand (`juju exec` on the leader): a junk value must not
        fail every hook, `stop` and `remove` included.
        """
        try:
            data = json.loads(text or "{}")
        except ValueError:
            return cls()
        if not isinstance(data, dict):
            return cls()
        known: dict = {}
        for key in ("pools", "torn_down"):
            value = data.get(key)
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                known[key] = tuple(value)
        for key, kind in (("source_cluster_name", str), ("finished", bool), ("paused", bool)):
            if isinstance(data.get(key), kind):
                known[key] = data[key]
        generation = data.get("generation")
        if isinstance(generation, int) and not isinstance(generation, bool):
            known["generation"] = generation
        return cls(**known)

    def to_json(self) -> str:
        """A stable JSON text of the record."""
        return json.dumps(asdict(self), sort_keys=True)

    def enabled(self, pools: list[str], source_cluster_name: str) -> Record:
        """`enable-mirroring` set up `pools` from `source_cluster_name`."""
        merged = tuple(sorted(set(self.pools) | set(pools)))
        return replace(self, pools=merged, source_cluster_name=source_cluster_name)

    def tore_down(self, pools: list[str], *, finished: bool) -> Record:
        """`teardown` completed on `pools`; `finished` once every migrated pool is."""
        merged = tuple(sorted(set(self.torn_down) | set(pools)))
        return replace(self, torn_down=merged, finished=finished)

    def restarted_migration(self) -> Record:
        """`enable-mirroring restart=true`: a new migration; the old one's record is dropped."""
        return replace(self, torn_down=(), finished=False)

    def shared_json(self) -> str:
        """The migration's facts, as the leader publishes them to the other units."""
        shared = asdict(self)
        shared.pop("paused")
        return json.dumps(shared, sort_keys=True)

    def seen_json(self) -> str:
        """What any unit publishes in its own peer bag: the pools it knows of."""
        return json.dumps({"pools": list(self.pools)})

    def with_shared(self, shared: Record, *seen_pools: tuple[str, ...]) -> Record:
        """The application's record (`shared`, from the peer relation) over this unit's own.

        The newer of the two (`generation`) gives the migration's facts: a leader whose hook
        failed after committing its StoredState (Juju then drops the hook's relation data) keeps
        its own newer record. `pools` is the union of both and of `seen_pools` (what every unit
        published in its own peer bag), which only widens what is guarded; `paused` is the
        unit's own.
        """
        newer = self if self.generation > shared.generation else shared
        pools = set(self.pools) | set(shared.pools)
        for more in seen_pools:
            pools |= set(more)
        return replace(
            newer,
            pools=tuple(sorted(pools)),
            source_cluster_name=newer.source_cluster_name
            or shared.source_cluster_name
            or self.source_cluster_name,
            paused=self.paused,
        )

    def saved_by_leader(self) -> Record:
        """The record the leader saves: one generation newer than any it read."""
        return replace(self, generation=self.generation + 1)
