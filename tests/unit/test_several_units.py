"""Several units: the record shared through the peer relation, non-leaders, leaving.

Where a test closes a finding of the issue 11 review, its docstring says which.
"""

from __future__ import annotations

import dataclasses

import pytest
from ops import testing

import charm
from daemon import ServiceError
from record import Record
from tests.unit.conftest import World, ready_state
from tests.unit.fake_ceph import mirror


def _peers(app_data: dict[str, str] | None = None, others: int = 1) -> testing.PeerRelation:
    return testing.PeerRelation(
        endpoint="peers",
        local_app_data=app_data or {},
        peers_data={n + 1: {} for n in range(others)},
    )


def _with_peers(state: testing.State, peers: testing.PeerRelation) -> testing.State:
    others = [r for r in state.relations if r.endpoint != "peers"]
    return dataclasses.replace(state, relations=[*others, peers])


def _shared(state: testing.State) -> dict[str, str]:
    peers = next(r for r in state.relations if r.endpoint == "peers")
    return dict(peers.local_app_data)


def _record(state: testing.State) -> Record:
    for stored in state.stored_states:
        if "record" in stored.content:
            return Record.from_json(stored.content["record"])
    return Record()


def _act(world: World, state: testing.State, name: str, *, leader: bool = True, **params):
    world.leader = leader
    return world.run(world.ctx.on.action(name, params=params), state)


def _hook(world: World, state: testing.State, *, leader: bool, event=None):
    world.leader = leader
    return world.run(event or world.ctx.on.update_status(), state)


def _migrated_and_torn_down(world: World) -> testing.State:
    world.service["running"] = True
    lead = _act(world, _with_peers(ready_state(), _peers()), "enable-mirroring")
    mirror(world.src, world.dst)
    lead = _act(world, lead, "demote-promote")
    lead = _act(world, lead, "teardown")
    assert (world.ctx.action_results or {})["daemon-stopped"] == "true"
    return lead


def test_the_leader_publishes_the_migrations_facts_but_not_its_pause(world):
    world.service["running"] = True
    state = _act(world, _with_peers(ready_state(), _peers()), "enable-mirroring")
    state = _act(world, state, "pause")
    shared = Record.from_json(_shared(state)["record"])
    assert shared.pools == ("cinder-ceph", "glance", "nova")
    assert shared.source_cluster_name == "source"
    assert "paused" not in _shared(state)["record"]


def test_a_new_leader_keeps_the_pools_guard_its_predecessor_set_up(world):
    """Finding 2: a new leader with pools narrowed tore down one pool and called it finished."""
    world.service["running"] = True
    old = _act(world, _with_peers(ready_state(), _peers()), "enable-mirroring")
    mirror(world.src, world.dst)
    new = _with_peers(ready_state(config={"pools": "glance"}), _peers(_shared(old)))
    new = _hook(world, new, leader=True)
    assert new.unit_status.name == "blocked", new.unit_status
    assert "nova" in new.unit_status.message
    for action in ("demote-promote", "teardown"):
        with pytest.raises(testing.ActionFailed, match="leaves out cinder-ceph, nova"):
            _act(world, new, action)
        assert world.dst.modes["nova"] == "pool" and world.src.modes["nova"] == "pool", action
    assert world.service["running"], "the new leader did not call the migration finished"


def test_a_new_leader_refuses_a_changed_source_cluster_name(world):
    """Finding 2: a new leader accepted a renamed source and added a second peer."""
    world.service["running"] = True
    old = _act(world, _with_peers(ready_state(), _peers()), "enable-mirroring")
    renamed = ready_state(config={"source-cluster-name": "old-cloud"})
    new = _hook(world, _with_peers(renamed, _peers(_shared(old))), leader=True)
    assert new.unit_status.name == "blocked" and "source-cluster-name" in new.unit_status.message
    with pytest.raises(testing.ActionFailed, match="source-cluster-name"):
        _act(world, new, "enable-mirroring")
    assert len(world.dst.peers["glance"]) == 1
    assert not (world.etc / "old-cloud.conf").exists()


def test_a_non_leader_runs_its_daemon_again_when_the_leader_restarts_a_migration(world):
    """Finding 1: a non-leader's `finished` was permanent: its daemon never ran again."""
    lead = _migrated_and_torn_down(world)
    world.service["running"] = True
    other = _hook(world, _with_peers(ready_state(), _peers(_shared(lead))), leader=False)
    assert not world.service["running"], "torn down: the non-leader's daemon stops too"

    for pool in world.dst.pool_images:  # the operator removed the last migration's copies
        world.dst.pool_images[pool] = []
    lead = _act(world, lead, "enable-mirroring", restart=True)
    assert world.src.modes["glance"] == "pool"
    other = _hook(world, _with_peers(other, _peers(_shared(lead))), leader=False)
    assert world.service["running"], "a new migration: the non-leader's daemon runs again"
    assert other.unit_status.name == "active", other.unit_status


def test_a_non_leader_says_its_daemon_replays_only_while_it_runs(world):
    """Finding 5: after teardown a non-leader claimed its stopped daemon replayed."""
    lead = _migrated_and_torn_down(world)
    world.service["running"] = True
    other = _with_peers(ready_state(), _peers(_shared(lead)))
    other = _hook(world, _hook(world, other, leader=False), leader=False)
    assert not world.service["running"]
    assert "its daemon replays" not in other.unit_status.message, other.unit_status


def test_pause_and_resume_act_on_a_non_leader_unit(world):
    world.service["running"] = True
    state = _act(world, ready_state(), "pause", leader=False)
    assert not world.service["running"] and (world.ctx.action_results or {})["paused"] == "true"
    _act(world, state, "resume", leader=False)
    assert world.service["running"]


def test_a_unit_that_goes_while_others_stay_says_they_keep_replaying(world, monkeypatch):
    monkeypatch.setattr(charm, "units_that_stay", lambda unit: 2)
    world.service["running"] = True
    state = _act(world, _with_peers(ready_state(), _peers(others=2)), "enable-mirroring")
    state = _hook(
        world,
        state,
        leader=True,
        event=world.ctx.on.relation_changed(
            next(r for r in state.relations if r.endpoint == "peers"), remote_unit=1
        ),
    )
    gone = _hook(world, state, leader=True, event=world.ctx.on.stop())
    assert gone.unit_status == testing.MaintenanceStatus(
        "leaving: this unit's daemon stopped; 2 other unit(s) keep replaying the migration of "
        "cinder-ceph, glance, nova"
    )


def test_a_unit_that_goes_says_so_when_its_daemon_did_not_stop(world, monkeypatch):
    """Finding 4: "stopped and disabled" was claimed when the stop failed."""
    world.service["running"] = True

    def stop(self):
        raise ServiceError("systemctl stop timed out")

    monkeypatch.setattr(charm.RbdMirrorDaemon, "stop", stop)
    gone = _hook(world, ready_state(), leader=True, event=world.ctx.on.stop())
    assert gone.unit_status.name == "maintenance"
    assert gone.unit_status.message.startswith("leaving, but ceph-rbd-mirror@"), gone.unit_status
    assert "did not stop" in gone.unit_status.message


def test_remove_application_mid_migration_says_no_unit_replays_it(world, monkeypatch, caplog):
    """Second review, finding 4: every unit claimed the others kept replaying."""
    monkeypatch.setattr(charm, "units_that_stay", lambda unit: 0)  # goal-state: all dying
    world.service["running"] = True
    state = _act(world, _with_peers(ready_state(), _peers(others=2)), "enable-mirroring")
    gone = _hook(world, state, leader=True, event=world.ctx.on.stop())
    assert "no other unit replaying it" in gone.unit_status.message, gone.unit_status
    assert any("stay mirrored" in r.getMessage() for r in caplog.records)


def test_without_goal_state_a_leaving_unit_does_not_guess(world):
    world.service["running"] = True  # ops.testing has no goal-state tool: unknown
    state = _act(world, _with_peers(ready_state(), _peers()), "enable-mirroring")
    gone = _hook(world, state, leader=True, event=world.ctx.on.stop())
    assert "unless another unit replays it" in gone.unit_status.message, gone.unit_status


def test_a_new_leader_keeps_the_pools_its_predecessor_committed_but_never_published(world):
    """Second review, finding 1: a new leader lost the pools the old one never published.

    The hook died after StoredState's commit, Juju dropped its relation data, leadership moved;
    the old leader's next hook publishes what it knows in its own bag.
    """
    world.service["running"] = True
    old = _act(world, _with_peers(ready_state(), _peers()), "enable-mirroring")
    lost = _with_peers(old, _peers())  # the app bag write was dropped with the failed hook
    old = _hook(world, lost, leader=False)  # now a non-leader: publishes what it knows
    seen = next(r for r in old.relations if r.endpoint == "peers").local_unit_data["seen"]
    mirror(world.src, world.dst)
    new = testing.PeerRelation(endpoint="peers", peers_data={1: {"seen": seen}})
    new_state = _hook(
        world, _with_peers(ready_state(config={"pools": "glance"}), new), leader=True
    )
    assert new_state.unit_status.name == "blocked" and "nova" in new_state.unit_status.message
    with pytest.raises(testing.ActionFailed, match="leaves out cinder-ceph, nova"):
        _act(world, new_state, "teardown")


def test_the_leaders_newer_record_beats_a_stale_application_bag(world):
    """Second review, finding 2: a restart committed locally lost to the bag's finished."""
    own = Record(pools=("glance",), source_cluster_name="source", generation=5)
    stale = dataclasses.replace(own, finished=True, torn_down=("glance",), generation=4)
    merged = own.with_shared(stale)
    assert not merged.finished and merged.torn_down == ()
    assert Record(generation=3).with_shared(stale).finished, "a newer bag wins"


def test_junk_in_the_peer_bag_fails_no_hook_and_counts_as_nothing(world):
    """Second review, finding 3: {"pools": 5} failed every hook, stop included."""
    world.service["running"] = True
    for junk in ('{"pools": 5}', '{"pools": null}', '{"pools": ["a", 1]}', "[]", "not json"):
        state = _with_peers(ready_state(), _peers({"record": junk}))
        _hook(world, state, leader=False)
        gone = _hook(world, state, leader=False, event=world.ctx.on.stop())
        assert gone.unit_status.name == "maintenance", junk
    assert not Record.from_json('{"finished": "false"}').finished


def test_the_leader_publishes_even_when_its_hook_returns_early(world):
    """Second review, finding 6: a blocked leader never published (upgrade without peers)."""
    world.service["running"] = True
    old = _act(world, ready_state(), "enable-mirroring")  # no peer relation yet
    upgraded = _with_peers(dataclasses.replace(old, config={"source-cluster-name": "x"}), _peers())
    state = _hook(world, upgraded, leader=True, event=world.ctx.on.upgrade_charm())
    assert state.unit_status.name == "blocked"
    shared = Record.from_json(_shared(state)["record"])
    assert shared.pools == ("cinder-ceph", "glance", "nova")
