"""What this unit remembers because the clusters cannot tell it. No ops here.

The charm derives the migration's state from the two clusters on every hook. A few facts cannot
be read back from them, and only those are kept (in the unit's StoredState, as JSON):
- `pools`, `source_cluster_name`: what `enable-mirroring` set up. With the source gone and config
  `pools` empty, the disaster path still knows which pools to promote; a later change of
  `source-cluster-name` would orphan the peers and the daemon's source files, so it is refused.
- `torn_down`, `finished`: a teardown that completed. Once the relations are removed the
  clusters cannot be read at all, and the unit must still say "finished", not "relate me".
- `paused`: the operator stopped the daemon on purpose; hooks must not restart it.
- `journaled`, `locked`: per pool, the source images `enable-mirroring` gave journaling (and
  exclusive-lock): `abort` takes journaling off exactly those. Saved before the change.
- `aborting`, `aborted`: an `abort` under way on those pools (its next run finishes it, deleting
  what the migration left on the destination), and one that completed on every pool (the
  daemon stays stopped until `enable-mirroring`).
- `rolling_back`, `rolled_back`: a `rollback` under way on those pools, and ones it completed.
- `self_scheduled`, `snapshotted_at`: snapshot mode, pools whose source mgr would not take
  the mirror snapshot schedule (ceph-proxy's key has no mgr caps): the leader takes their
  snapshots on update-status, and when it last did.
- `down_since`: when this unit first saw its daemon down (not running, or silent), for the
  journal guard's `daemon-down-limit`; 0 while it runs.
With several units, the migration's facts (every field but `paused`) are the application's: the
leader also publishes them in the peer relation, and every unit reads them from there
(`with_shared`), so a new leader keeps the guards its predecessor set up.
(A pending restart of the daemon is not here but on disk beside its files, daemon.py: the
files are written at once, StoredState only when the hook ends well.)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import TypeGuard


@dataclass(frozen=True)
class Record:
    """The unit's memory of the migration (see the module docstring for why each field)."""

    pools: tuple[str, ...] = ()
    source_cluster_name: str = ""
    torn_down: tuple[str, ...] = ()
    finished: bool = False
    paused: bool = False
    journaled: dict[str, tuple[str, ...]] = field(default_factory=dict)
    locked: dict[str, tuple[str, ...]] = field(default_factory=dict)
    aborting: tuple[str, ...] = ()
    aborted: bool = False
    rolling_back: tuple[str, ...] = ()
    rolled_back: tuple[str, ...] = ()
    down_since: float = 0.0
    self_scheduled: tuple[str, ...] = ()
    snapshotted_at: float = 0.0
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
        return cls(**_known_fields(data))

    def to_json(self) -> str:
        """A stable JSON text of the record."""
        return json.dumps(asdict(self), sort_keys=True)

    def enabled(
        self,
        pools: list[str],
        source_cluster_name: str,
        journaled: dict[str, list[str]] | None = None,
    ) -> Record:
        """`enable-mirroring` set up `pools` from `source_cluster_name`, journaling `journaled`.

        A new run after an abort or a rollback starts over: those marks are dropped.
        """
        merged = tuple(sorted(set(self.pools) | set(pools)))
        return replace(
            self,
            pools=merged,
            source_cluster_name=source_cluster_name,
            journaled=_merged(self.journaled, journaled or {}),
            aborted=False,
            aborting=tuple(p for p in self.aborting if p not in pools),
            rolling_back=tuple(p for p in self.rolling_back if p not in pools),
            rolled_back=tuple(p for p in self.rolled_back if p not in pools),
        )

    def locked_too(
        self, locked: dict[str, list[str]], not_ours: dict[str, list[str]] | None = None
    ) -> Record:
        """What `enable-mirroring` found: `locked` got exclusive-lock from it too.

        `not_ours` had journaling already: recorded before the change, dropped now.
        """
        journaled = {
            pool: tuple(n for n in names if n not in (not_ours or {}).get(pool, ()))
            for pool, names in self.journaled.items()
        }
        return replace(self, locked=_merged(self.locked, locked), journaled=journaled)

    def abort_started(self, pools: list[str]) -> Record:
        """`abort` is about to change `pools`."""
        return replace(self, aborting=tuple(sorted(set(self.aborting) | set(pools))))

    def aborted_pools(self, pools: list[str]) -> Record:
        """`abort` completed on `pools`: they are no longer migrated (the rest goes on)."""
        left = tuple(p for p in self.pools if p not in pools)
        return replace(
            self,
            pools=left,
            journaled={p: v for p, v in self.journaled.items() if p not in pools},
            locked={p: v for p, v in self.locked.items() if p not in pools},
            self_scheduled=tuple(p for p in self.self_scheduled if p not in pools),
            aborting=tuple(p for p in self.aborting if p not in pools),
            rolling_back=tuple(p for p in self.rolling_back if p not in pools),
            rolled_back=tuple(p for p in self.rolled_back if p not in pools),
            aborted=not left,
        )

    def rollback_started(self, pools: list[str]) -> Record:
        """`rollback` is about to change `pools`."""
        return replace(self, rolling_back=tuple(sorted(set(self.rolling_back) | set(pools))))

    def rollback_undone(self, pools: list[str]) -> Record:
        """`rollback` put the cutover back as it was (a late write): no longer under way."""
        return replace(self, rolling_back=tuple(p for p in self.rolling_back if p not in pools))

    def rolled_back_pools(self, pools: list[str]) -> Record:
        """`rollback` completed on `pools`."""
        return replace(
            self,
            rolling_back=tuple(p for p in self.rolling_back if p not in pools),
            rolled_back=tuple(sorted(set(self.rolled_back) | set(pools))),
        )

    def cut_over(self, pools: list[str]) -> Record:
        """`demote-promote` ran on `pools`: an earlier rollback of them no longer counts."""
        return replace(self, rolled_back=tuple(p for p in self.rolled_back if p not in pools))

    def daemon_seen(self, *, down: bool, now: float) -> Record:
        """The daemon seen down (keep the first time) or up (forget it)."""
        if not down:
            return replace(self, down_since=0.0)
        return self if self.down_since else replace(self, down_since=now)

    def tore_down(self, pools: list[str], *, finished: bool) -> Record:
        """`teardown` completed on `pools`; `finished` once every migrated pool is."""
        merged = tuple(sorted(set(self.torn_down) | set(pools)))
        scheduled = tuple(p for p in self.self_scheduled if p not in pools)
        return replace(self, torn_down=merged, finished=finished, self_scheduled=scheduled)

    def scheduled_by_charm(self, pools: list[str], others: list[str]) -> Record:
        """Snapshot mode: the charm snapshots `pools` itself; the mgr schedules `others`."""
        kept = set(self.self_scheduled) - set(others)
        return replace(self, self_scheduled=tuple(sorted(kept | set(pools))))

    def snapshots_taken(self, now: float) -> Record:
        """The charm took the mirror snapshots of its self-scheduled pools at `now`."""
        return replace(self, snapshotted_at=now)

    def restarted_migration(self) -> Record:
        """`enable-mirroring restart=true`: a new migration; the old one's record is dropped."""
        return replace(self, torn_down=(), finished=False)

    def shared_json(self) -> str:
        """The migration's facts, as the leader publishes them to the other units."""
        shared = asdict(self)
        shared.pop("paused")
        shared.pop("down_since")
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
            down_since=self.down_since,
        )

    def saved_by_leader(self) -> Record:
        """The record the leader saves: one generation newer than any it read."""
        return replace(self, generation=self.generation + 1)


def _names(value: object) -> TypeGuard[list[str] | tuple[str, ...]]:
    """A JSON list of strings."""
    return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)


def _merged(
    old: dict[str, tuple[str, ...]], new: dict[str, list[str]]
) -> dict[str, tuple[str, ...]]:
    """Per pool, the union of both."""
    out = dict(old)
    for pool, names in new.items():
        out[pool] = tuple(sorted(set(out.get(pool, ())) | set(names)))
    return out


def _known_fields(data: dict) -> dict:
    """The fields of a parsed record that have the right type; the rest is dropped."""
    known = _known_names(data)
    for key in ("journaled", "locked"):
        value = data.get(key)
        if isinstance(value, dict) and all(_names(v) for v in value.values()):
            known[key] = {str(k): tuple(v) for k, v in value.items()}
    for key, kind in (
        ("source_cluster_name", str),
        ("finished", bool),
        ("paused", bool),
        ("aborted", bool),
    ):
        if isinstance(data.get(key), kind):
            known[key] = data[key]
    for key, kinds in (
        ("down_since", (int, float)),
        ("snapshotted_at", (int, float)),
        ("generation", (int,)),
    ):
        value = data.get(key)
        if isinstance(value, kinds) and not isinstance(value, bool):
            known[key] = value
    for key in ("down_since", "snapshotted_at"):
        if key in known:
            known[key] = float(known[key])
    return known


def _known_names(data: dict) -> dict:
    """The fields that are lists of names, where they are."""
    known: dict = {}
    for key in ("pools", "torn_down", "aborting", "rolling_back", "rolled_back", "self_scheduled"):
        value = data.get(key)
        if _names(value):
            known[key] = tuple(value)
    return known
