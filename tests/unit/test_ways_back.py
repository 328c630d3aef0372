"""ops.testing tests of abort, rollback and the journal guard (Ceph is faked here)."""

from __future__ import annotations

import json
import struct
import time

import pytest
from ops import testing

from ceph_cli import EBUSY, CephError, JournalInfo, JournalPeer, Peer
from inputs import CharmConfig, parse_size
from journal_codec import journal_client
from record import Record
from tests.unit.conftest import World, ready_state
from tests.unit.fake_ceph import FakeImage, mirror
from workflow import SNAPSHOT_WORKERS

POOLS = ("glance", "nova", "cinder-ceph")


def _act(world: World, state, name: str, **params):
    return world.run(world.ctx.on.action(name, params=params), state)


def _migrating(world: World, **config):
    """enable-mirroring done, every image copied by the (fake) daemon."""
    world.service["running"] = True
    state = _act(world, ready_state(config=config or None), "enable-mirroring")
    mirror(world.src, world.dst)
    return state


def _cut_over(world: World):
    state = _migrating(world)
    return _act(world, state, "demote-promote")


def _stored(state: testing.State) -> testing.StoredState:
    return next(s for s in state.stored_states if "record" in s.content)


def _record(state: testing.State) -> Record:
    return Record.from_json(_stored(state).content["record"])


def _with_record(state: testing.State, record: Record) -> testing.State:
    """`state` with this record committed (what a hook that died part-way leaves behind)."""
    stored = _stored(state)
    content = {**stored.content, "record": record.to_json()}
    new = testing.StoredState(owner_path=stored.owner_path, name=stored.name, content=content)
    others = [s for s in state.stored_states if s is not stored]
    return testing.State(
        leader=True, relations=state.relations, config=state.config, stored_states=[*others, new]
    )


# --- abort ------------------------------------------------------------------------------------


def test_abort_restores_the_source_empties_the_destination_and_stops_the_daemon(world):
    state = _migrating(world)
    assert _record(state).journaled["nova"] == ("a_disk", "b_disk"), "recorded before the change"
    state = _act(world, state, "abort")
    results = world.ctx.action_results
    assert results["daemon-running"] == "false" and world.service["stops"] >= 1
    assert json.loads(results["deleted"]) == {"glance": 1, "nova": 2, "cinder-ceph": 1}
    for cluster in (world.src, world.dst):
        assert set(cluster.modes.values()) == {"disabled"}
    assert not any("journaling" in i.features for i in world.src.pool_images["nova"])
    assert all(imgs == [] for imgs in world.dst.pool_images.values())
    assert not any(world.dst.peers.values())
    calls = world.dst.calls
    nova = calls.index("bulk delete-images nova")
    assert nova < calls.index("bulk delete-images glance"), "clones' pool first"
    record = _record(state)
    assert record.aborted and record.pools == () and record.journaled == {}
    out = world.run(world.ctx.on.update_status(), state)
    assert out.unit_status.name == "active"
    assert "migration aborted" in out.unit_status.message
    assert not world.service["running"], "hooks leave the daemon stopped after an abort"


def test_abort_twice_changes_nothing_the_second_time(world):
    state = _act(world, _migrating(world), "abort")
    calls = len(world.src.calls)
    _act(world, state, "abort")
    assert world.ctx.action_results["changes-count"] == 0
    assert not [c for c in world.src.calls[calls:] if "disable" in c or "remove" in c]


def test_abort_dry_run_changes_nothing(world):
    state = _migrating(world)
    _act(world, state, "abort", **{"dry-run": True})
    assert json.loads(world.ctx.action_results["changes"])
    assert world.src.modes["nova"] == "pool" and world.service["running"]
    assert world.dst.pool_images["nova"]


@pytest.mark.parametrize("step", ["demoted", "promoted"])
def test_abort_refuses_once_the_cutover_has_begun(world, step):
    state = _migrating(world)
    for pool in POOLS:
        world.src.pool_demote(pool)
        if step == "promoted":
            world.dst.pool_promote(pool)
    with pytest.raises(testing.ActionFailed, match="the cutover has begun.*rollback"):
        _act(world, state, "abort")
    assert world.src.modes["nova"] == "pool" and world.service["running"], "nothing changed"


def test_abort_refuses_while_the_source_does_not_answer(world):
    state = _migrating(world)
    world.src.unreachable = True
    with pytest.raises(testing.ActionFailed, match="source does not answer"):
        _act(world, state, "abort")
    assert world.dst.pool_images["nova"] and world.service["running"]


def test_abort_refuses_after_teardown(world):
    state = _cut_over(world)
    state = _act(world, state, "teardown")
    with pytest.raises(testing.ActionFailed, match="torn down already"):
        _act(world, state, "abort")


def test_abort_of_a_subset_keeps_the_daemon_for_the_other_pools(world):
    state = _act(world, _migrating(world), "abort", pools="cinder-ceph")
    assert world.service["running"], "nova and glance still migrate"
    assert world.src.modes["cinder-ceph"] == "disabled" and world.src.modes["nova"] == "pool"
    assert _record(state).pools == ("glance", "nova") and not _record(state).aborted


def _interrupted_abort(world):
    """An abort that failed on cinder-ceph/volume-1, the unit's record saying so."""
    state = _migrating(world)
    world.dst.fail_images = {"volume-1"}
    with pytest.raises(testing.ActionFailed, match="could not be deleted"):
        _act(world, state, "abort")
    return _with_record(state, _record(state).abort_started(list(POOLS)))


def test_abort_interrupted_after_disabling_an_image_deletes_it_on_the_next_run(world):
    state = _interrupted_abort(world)
    out = world.run(world.ctx.on.update_status(), state)
    assert out.unit_status.name == "blocked" and "re-run abort" in out.unit_status.message
    assert not world.service["running"], "no daemon copies images back meanwhile"
    world.dst.fail_images = set()
    img = world.dst.image("cinder-ceph", "volume-1")
    img.mirror_enabled = False  # the last run disabled its mirroring, then died
    _act(world, state, "abort")
    assert world.dst.pool_images["cinder-ceph"] == []


def test_enable_mirroring_after_an_interrupted_abort_says_re_run_abort_not_remove(world):
    state = _interrupted_abort(world)
    world.dst.image("cinder-ceph", "volume-1").mirror_enabled = False  # unmirrored, then died
    world.dst.pool_images["cinder-ceph"].append(FakeImage("someone-elses", mirror_enabled=False))
    with pytest.raises(testing.ActionFailed) as refused:
        _act(world, state, "enable-mirroring")
    assert "an abort of it was interrupted" in refused.value.message
    assert "re-run abort pools=cinder-ceph" in refused.value.message
    assert "remove by hand: someone-elses" in refused.value.message, "abort leaves it"
    assert "remove them" not in refused.value.message


def test_abort_takes_journaling_off_images_the_pool_disable_left_and_names_added_locks(world):
    world.src.image("glance", "img").features.discard("exclusive-lock")
    world.src.sticky_journaling = {"volume-1"}
    state = _migrating(world)
    assert _record(state).locked == {"glance": ("img",)}
    state = _act(world, state, "abort")
    results = world.ctx.action_results
    assert results["journaling-removed"] == 1
    assert "journaling" not in world.src.image("cinder-ceph", "volume-1").features
    assert json.loads(results["exclusive-lock-added"]) == ["glance/img"]


def test_an_image_journaled_before_the_migration_is_not_recorded_as_ours(world):
    world.src.image("cinder-ceph", "volume-1").features.add("journaling")
    state = _migrating(world)
    assert "volume-1" not in _record(state).journaled.get("cinder-ceph", ())
    assert _record(state).journaled["nova"] == ("a_disk", "b_disk")


def test_abort_removes_the_destination_daemons_peer_from_the_source_and_no_other(world):
    state = _migrating(world)
    ours = Peer("u1", "site-ceph", "", "tx-only")
    world.src.peers["nova"] = [ours]
    state = _act(world, state, "abort")
    assert world.src.peers["nova"] == [] and world.src.modes["nova"] == "disabled"
    state = _migrating(world)
    world.src.peers["glance"] = [ours, Peer("u2", "backup-site", "", "tx-only")]
    with pytest.raises(testing.ActionFailed, match="glance: backup-site"):
        _act(world, state, "abort")
    assert world.src.modes["glance"] == "pool" and world.service["running"], "nothing changed"


def test_enable_mirroring_after_an_abort_starts_the_daemon_again(world):
    state = _act(world, _migrating(world), "abort")
    assert not world.service["running"]
    state = _act(world, state, "enable-mirroring")
    assert world.service["running"] and not _record(state).aborted


def test_abort_removes_the_journal_cap_that_enable_mirroring_set(world):
    state = _migrating(world, **{"journal-max-object-sets": 8})
    assert world.src.pool_config[("nova", "rbd_journal_max_concurrent_object_sets")] == "8"
    _act(world, state, "abort")
    assert world.src.pool_config == {}


def test_enable_mirroring_goes_on_when_the_source_key_may_not_set_the_cap(world):
    world.src.config_denied = True
    _migrating(world, **{"journal-max-object-sets": 8})
    assert any("not set, the source key may not" in line for line in world.ctx.action_logs)
    assert world.src.modes["nova"] == "pool"


# --- rollback -----------------------------------------------------------------------------


def test_demote_promote_takes_a_cutover_snapshot_of_every_promoted_image(world):
    _cut_over(world)
    snaps = json.loads(world.ctx.action_results["cutover-snapshots"])
    assert snaps == {"glance": 1, "nova": 2, "cinder-ceph": 1}
    # each snapshot waits for a mon round: many at once, whatever max-workers says
    assert world.dst.snapshot_workers["create"] == SNAPSHOT_WORKERS


def test_rollback_makes_the_source_primary_and_resyncs_the_destination(world):
    state = _act(world, _cut_over(world), "rollback")
    results = world.ctx.action_results
    assert json.loads(results["discarded"]) == []
    assert all(i.primary for imgs in world.src.pool_images.values() for i in imgs)
    assert not any(i.primary for imgs in world.dst.pool_images.values() for i in imgs)
    assert len(world.dst.resynced) == 4
    calls = world.dst.calls
    assert calls.index("demote nova") < world.src.calls.index("promote nova") + len(calls)
    assert set(_record(state).rolled_back) == set(POOLS)
    _act(world, state, "rollback")
    assert set(world.ctx.action_results["already-rolled-back"].split(",")) == set(POOLS)


def test_rollback_refuses_a_written_destination_naming_it_and_force_discards(world):
    state = _cut_over(world)
    world.dst.image("cinder-ceph", "volume-1").written_since_snap = True
    with pytest.raises(testing.ActionFailed, match=r"cinder-ceph/volume-1: written since"):
        _act(world, state, "rollback")
    assert world.dst.image("cinder-ceph", "volume-1").primary, "nothing changed"
    _act(world, state, "rollback", force=True)
    assert json.loads(world.ctx.action_results["discarded"])[0].startswith("cinder-ceph/volume-1")
    assert world.src.image("cinder-ceph", "volume-1").primary


def test_rollback_refuses_a_primary_image_without_its_snapshot(world):
    state = _cut_over(world)
    world.dst.image("nova", "a_disk").snaps.clear()
    with pytest.raises(testing.ActionFailed, match="nova/a_disk: primary without the cutover"):
        _act(world, state, "rollback")


def test_rollback_refuses_before_any_cutover_pointing_to_abort(world):
    with pytest.raises(testing.ActionFailed, match="has not begun.*run abort"):
        _act(world, _migrating(world), "rollback")


def test_rollback_refuses_after_teardown(world):
    state = _act(world, _cut_over(world), "teardown")
    with pytest.raises(testing.ActionFailed, match="teardown has begun"):
        _act(world, state, "rollback")


def test_rollback_refuses_while_the_source_does_not_answer(world):
    state = _cut_over(world)
    world.src.unreachable = True
    with pytest.raises(testing.ActionFailed, match="source does not answer"):
        _act(world, state, "rollback")


def test_rollback_dry_run_changes_nothing(world):
    state = _cut_over(world)
    _act(world, state, "rollback", **{"dry-run": True})
    assert json.loads(world.ctx.action_results["changes"])
    assert all(i.primary for imgs in world.dst.pool_images.values() for i in imgs)


def test_rollback_interrupted_before_the_resync_finishes_it_on_the_next_run(world):
    state = _cut_over(world)
    world.dst.fail_images = set()
    real = world.dst.resync_images

    def dies(*args, **kwargs):
        raise RuntimeError("killed")

    world.dst.resync_images = dies  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        _act(world, state, "rollback")
    world.dst.resync_images = real  # type: ignore[method-assign]
    # The hook died: the record committed before the changes says "rolling back".
    state = _with_record(state, _record(state).rollback_started(list(POOLS)))
    _act(world, state, "rollback")
    assert len(world.dst.resynced) == 4


# --- the journal guard ----------------------------------------------------------------------


def test_status_reports_each_pools_journal_backlog(world):
    state = _migrating(world)
    world.src.journals["volume-1"] = JournalInfo(
        "volume-1", 320 * 2**20, 19, (JournalPeer("peer", True, 4100, 300 * 2**20),)
    )
    _act(world, state, "status")
    journal = json.loads(world.ctx.action_results["pools"])["cinder-ceph"]["journal"]
    assert journal["largest-image"] == "volume-1" and journal["backlog-bytes"] == 300 * 2**20
    assert journal["backlog-entries"] == 4100 and journal["largest-bytes"] == 320 * 2**20
    assert journal["mirror-client-connected"] is True
    assert json.loads(world.ctx.action_results["journal-guard"]) == []


def test_unit_blocks_when_a_journal_passes_the_limit_naming_pool_image_and_remedy(world):
    state = _migrating(world, **{"journal-backlog-limit": "256M"})
    world.src.journals["volume-1"] = JournalInfo(
        "volume-1", 320 * 2**20, 19, (JournalPeer("peer", True, 4100, 300 * 2**20),)
    )
    out = world.run(world.ctx.on.update_status(), state)
    assert out.unit_status.name == "blocked"
    message = out.unit_status.message
    assert (
        "journal guard" in message and "volume-1: journal 320.0 MiB over the 256.0 MiB" in message
    )
    assert "at least 300.0 MiB not replayed, 4100 entries" in message and "abort" in message
    world.src.journals["volume-1"] = JournalInfo(
        "volume-1", 320 * 2**20, 19, (JournalPeer("peer", True, None, 300 * 2**20),)
    )
    message = world.run(world.ctx.on.update_status(), state).unit_status.message
    assert "300.0 MiB not replayed)" in message, "entries unknown across tags: not shown"
    world.src.journals.clear()
    assert world.run(world.ctx.on.update_status(), state).unit_status.name == "active"


def test_unit_blocks_when_a_mirror_client_was_disconnected(world):
    state = _migrating(world)
    world.src.journals["a_disk"] = JournalInfo(
        "a_disk", 2**20, 1, (JournalPeer("p", False, None, 0),)
    )
    out = world.run(world.ctx.on.update_status(), state)
    assert "mirror client disconnected by the journal cap: a_disk" in out.unit_status.message
    assert "resync" in out.unit_status.message


def test_an_unreadable_journal_is_reported_and_the_guard_fails_closed(world):
    state = _migrating(world)
    world.src.journal_error = True
    _act(world, state, "status")
    pools = json.loads(world.ctx.action_results["pools"])
    assert pools["nova"]["journal"]["read"] is False
    status = world.run(world.ctx.on.update_status(), state).unit_status
    assert status.name == "blocked" and "journal guard blind" in status.message


def test_unit_status_says_how_long_the_daemon_is_down_past_the_limit(world):
    state = _migrating(world, **{"daemon-down-limit": 1})
    state = _act(world, state, "pause")
    state = world.run(world.ctx.on.update_status(), state)
    assert _record(state).down_since > 0
    assert "DOWN" not in state.unit_status.message, "not past the limit yet"
    record = _record(state)
    state = _with_record(state, Record(**{**record.__dict__, "down_since": time.time() - 600}))
    out = world.run(world.ctx.on.update_status(), state)
    assert out.unit_status.message.startswith("DOWN 10 min (daemon-down-limit 1)")
    assert "abort" in out.unit_status.message
    out = _act(world, out, "resume")
    out = world.run(world.ctx.on.update_status(), out)
    assert _record(out).down_since == 0


# --- inputs and pieces ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"), [("1G", 2**30), ("512M", 2**29), ("1.5GiB", 3 * 2**29), ("2048", 2048)]
)
def test_sizes_are_parsed_in_powers_of_1024(text, size):
    assert parse_size(text, "x") == size


@pytest.mark.parametrize("bad", ["lots", "1X", "-1G", ""])
def test_a_bad_size_is_refused_naming_the_option(bad):
    with pytest.raises(ValueError, match="journal-backlog-limit"):
        CharmConfig(journal_backlog_limit=bad)


def test_a_journal_limit_under_two_object_sets_is_refused():
    with pytest.raises(ValueError, match="at least 128M"):
        CharmConfig(journal_backlog_limit="100M")


def test_the_record_keeps_the_new_fields_and_drops_junk():
    record = Record(
        pools=("nova",),
        journaled={"nova": ("a",)},
        aborting=("nova",),
        rolled_back=("glance",),
        down_since=12.5,
    )
    assert Record.from_json(record.to_json()) == record
    junk = json.dumps({"journaled": {"nova": [1]}, "down_since": True, "aborted": "yes"})
    assert Record.from_json(junk) == Record()
    assert "down_since" not in record.shared_json()


def test_the_journal_client_decoder_reads_cephs_encoding():
    def header(body: bytes) -> bytes:
        return struct.pack("<BBI", 1, 1, len(body)) + body

    def blob(data: bytes) -> bytes:
        return struct.pack("<I", len(data)) + data

    positions = b"".join(header(struct.pack("<QQQ", n, 1, 100 - n)) for n in (5, 4))
    client = header(
        blob(b"peer-uuid")
        + blob(b"\x00" * 7)
        + header(struct.pack("<I", 2) + positions)
        + struct.pack("<B", 1)
    )
    assert journal_client(client) == ("peer-uuid", [(5, 1, 95), (4, 1, 96)], 1)


def test_teardown_removes_the_journal_cap_and_the_cutover_snapshots(world):
    world.service["running"] = True
    state = _act(world, ready_state(config={"journal-max-object-sets": 8}), "enable-mirroring")
    mirror(world.src, world.dst)
    state = _act(world, state, "demote-promote")
    assert world.dst.image("nova", "a_disk").snaps == ["cutover"]
    _act(world, state, "teardown")
    assert world.src.pool_config == {}
    assert not any(i.snaps for imgs in world.dst.pool_images.values() for i in imgs)
    assert world.dst.snapshot_workers["remove"] == SNAPSHOT_WORKERS


def test_teardown_goes_on_when_the_source_key_may_not_remove_the_cap(world):
    state = _cut_over(world)
    world.src.config_denied = True
    _act(world, state, "teardown")
    assert world.ctx.action_results["daemon-stopped"] == "true"
    assert any("journal cap could not be removed" in line for line in world.ctx.action_logs)


# --- review findings, each now a rule ----------------------------------------------------------


def test_abort_of_a_parent_pool_alone_is_refused_naming_the_clones_elsewhere(world):
    state = _migrating(world)
    with pytest.raises(testing.ActionFailed, match=r"nova/a_disk \(clone of glance/img@snap\)"):
        _act(world, state, "abort", pools="glance")
    assert world.src.modes["glance"] == "pool" and world.service["running"], "nothing changed"


def test_abort_disables_a_source_pool_image_by_image_when_librbd_refuses_it_at_once(world):
    state = _migrating(world)
    world.src.busy_pools = {"nova"}  # librbd leaves it in image mode, images still mirrored
    _act(world, state, "abort")
    assert world.src.modes["nova"] == "disabled"
    assert "bulk disable-mirroring nova" in world.src.calls


def test_an_interrupted_abort_of_a_subset_lets_the_daemon_run_for_the_other_pools(world):
    state = _migrating(world)
    state = _with_record(state, _record(state).abort_started(["cinder-ceph"]))
    out = world.run(world.ctx.on.update_status(), state)
    assert world.service["running"], "glance and nova still migrate"
    assert "abort of cinder-ceph interrupted: re-run abort" in out.unit_status.message


def test_rollback_checks_again_after_the_demotion_and_undoes_it_on_a_late_write(world):
    state = _cut_over(world)
    real_demote = world.dst.pool_demote

    def demote_after_a_write(pool):
        if pool == "cinder-ceph":  # a client still running on the new cluster writes
            world.dst.image("cinder-ceph", "volume-1").written_since_snap = True
        return real_demote(pool)

    world.dst.pool_demote = demote_after_a_write  # type: ignore[method-assign]
    with pytest.raises(testing.ActionFailed, match="written while rollback ran"):
        _act(world, state, "rollback")
    assert all(i.primary for imgs in world.dst.pool_images.values() for i in imgs), "back"
    assert not any(i.primary for imgs in world.src.pool_images.values() for i in imgs)
    assert world.dst.resynced == []


def test_rollback_is_refused_once_teardown_began_even_with_force(world):
    state = _cut_over(world)
    world.dst.busy_pools = {"nova"}
    world.dst.fail_images = {"b_disk"}
    with pytest.raises(testing.ActionFailed):
        _act(world, state, "teardown")
    with pytest.raises(testing.ActionFailed, match="nova: teardown has begun"):
        _act(world, state, "rollback", pools="nova", force=True)
    assert not world.src.image("nova", "a_disk").primary, "the source stays demoted"


def test_a_re_run_cutover_snapshots_only_the_images_it_promoted_itself(world):
    state = _migrating(world)
    real = world.dst.cutover_snapshots

    def killed(pool, action, **kw):
        if action == "create":
            raise RuntimeError("hook killed")
        return real(pool, action, **kw)

    world.dst.cutover_snapshots = killed  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        _act(world, state, "demote-promote")
    world.dst.cutover_snapshots = real  # type: ignore[method-assign]
    state = _act(world, state, "demote-promote")
    assert json.loads(world.ctx.action_results["cutover-snapshots"]) == {}
    with pytest.raises(testing.ActionFailed, match="primary without the cutover snapshot"):
        _act(world, state, "rollback")


def test_an_interrupted_rollback_says_re_run_rollback(world):
    state = _cut_over(world)
    for pool in POOLS:
        world.dst.pool_demote(pool)
    state = _with_record(state, _record(state).rollback_started(list(POOLS)))
    out = world.run(world.ctx.on.update_status(), state)
    assert (
        out.unit_status.message
        == "rollback of cinder-ceph, glance, nova interrupted: re-run rollback"
    )


# --- second review's findings ---------------------------------------------------------------


def test_a_promotion_that_timed_out_still_snapshots_what_it_promoted(world):
    state = _migrating(world)
    real = world.dst.pool_promote
    stuck = {"glance"}

    def promote(pool, *, force=False):
        if pool in stuck:
            raise CephError("ceph", ["promote"], EBUSY, "demotion not propagated")
        return real(pool, force=force)

    world.dst.pool_promote = promote  # type: ignore[method-assign]
    with pytest.raises(testing.ActionFailed, match="timed out"):
        _act(world, state, "demote-promote", timeout=1)
    assert world.dst.image("nova", "a_disk").snaps == ["cutover"]
    stuck.clear()
    state = _act(world, state, "demote-promote")
    _act(world, state, "rollback")  # provable: no force needed
    assert json.loads(world.ctx.action_results["discarded"]) == []


def test_a_destination_peer_of_another_site_refuses_abort_before_anything_changes(world):
    state = _migrating(world)
    world.dst.peers["nova"].append(Peer("dr", "dr-site", "client.dr", "tx-only"))
    with pytest.raises(testing.ActionFailed, match="destination nova: dr-site"):
        _act(world, state, "abort")
    assert world.service["running"] and world.src.modes["nova"] == "pool"


def test_a_destination_peer_of_another_site_refuses_teardown_and_keeps_the_snapshots(world):
    state = _cut_over(world)
    world.dst.peers["nova"].append(Peer("dr", "dr-site", "client.dr", "tx-only"))
    with pytest.raises(testing.ActionFailed, match="peers of several sites"):
        _act(world, state, "teardown")
    assert world.dst.image("glance", "img").snaps == ["cutover"], "rollback keeps its proof"


def test_abort_and_a_new_enable_mirroring_drop_an_unfinished_rollback_mark(world):
    state = _migrating(world)
    record = _record(state).rollback_started(list(POOLS))
    assert record.aborted_pools(list(POOLS)).rolling_back == ()
    assert record.enabled(list(POOLS), "source").rolling_back == ()


def test_a_first_abort_leaves_a_destination_image_it_did_not_create(world):
    state = _migrating(world)
    world.dst.pool_images["cinder-ceph"] = [FakeImage("volume-1", primary=True)]  # a hand copy
    _act(world, state, "abort")
    assert [i.name for i in world.dst.pool_images["cinder-ceph"]] == ["volume-1"]


def test_the_guard_says_resume_when_the_daemon_is_paused(world):
    state = _migrating(world, **{"journal-backlog-limit": "256M"})
    state = _act(world, state, "pause")
    world.src.journals["volume-1"] = JournalInfo(
        "volume-1", 320 * 2**20, 19, (JournalPeer("peer", True, None, 300 * 2**20),)
    )
    message = world.run(world.ctx.on.update_status(), state).unit_status.message
    assert "run resume (paused), or abort" in message


def test_a_late_write_after_an_earlier_run_promoted_the_source_never_promotes_the_destination(
    world,
):
    state = _cut_over(world)
    for pool in POOLS:  # an earlier rollback demoted the destination and promoted the source
        world.dst.pool_demote(pool)
        world.src.pool_promote(pool)
    state = _with_record(state, _record(state).rollback_started(list(POOLS)))
    real = world.dst.cutover_snapshots
    calls = {"check": 0}

    def late_write(pool, action, **kw):
        if action == "check":
            calls["check"] += 1
            if calls["check"] > len(POOLS):  # the second check sees a write
                world.dst.image("cinder-ceph", "volume-1").written_since_snap = True
        return real(pool, action, **kw)

    world.dst.cutover_snapshots = late_write  # type: ignore[method-assign]
    with pytest.raises(testing.ActionFailed, match="source of .* is primary already"):
        _act(world, state, "rollback")
    assert not any(i.primary for imgs in world.dst.pool_images.values() for i in imgs)
