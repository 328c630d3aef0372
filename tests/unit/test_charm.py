"""ops.testing tests of every event and action branch of the charm (Ceph is faked here)."""

from __future__ import annotations

import json

import pytest
from ops import testing

from ceph_cli import CephError
from daemon import MARKER
from relations import source_key_request
from tests.unit.conftest import (
    DST_KEY,
    HOST,
    SRC_KEY,
    World,
    destination_relation,
    ready_state,
    source_relation,
)
from tests.unit.fake_ceph import mirror

SOURCE_REQUEST_ID = source_key_request("rbd-mirror-migration")[0]

# --- Helpers ------------------------------------------------------------------------------------


def _status(world: World, state: testing.State):
    return world.run(world.ctx.on.update_status(), state).unit_status


def _enable(world: World, state, **params):
    return world.run(world.ctx.on.action("enable-mirroring", params=params), state)


def _migrated(world: World):
    world.service["running"] = True
    state = _enable(world, ready_state())
    mirror(world.src, world.dst)
    return state


def _cutover(world: World, state, **params):
    return world.run(world.ctx.on.action("demote-promote", params=params), state)


# --- Hooks: install, config-changed, upgrade-charm, update-status, relation-changed -------------


def test_reconcile_writes_files_sends_unique_id_and_broker_request(world):
    out = world.run(world.ctx.on.config_changed(), ready_state())
    dst = next(r for r in out.relations if r.endpoint == "destination")
    assert dst.local_unit_data["unique_id"] == HOST
    req = json.loads(dst.local_unit_data["broker_req"])
    assert {op["name"] for op in req["ops"]} == {"glance", "nova", "cinder-ceph"}
    assert all(op["app-name"] == "rbd" and op["replicas"] == 1 for op in req["ops"])
    conf = (world.etc / "ceph.conf").read_text()
    assert conf.startswith(MARKER) and "mon host = 10.0.1.1" in conf
    src_conf = (world.etc / "source.conf").read_text()
    assert "10.0.0.1:6789 10.0.0.2:6789" in src_conf and SRC_KEY not in src_conf
    for name, key in (
        (f"ceph.client.rbd-mirror.{HOST}.keyring", DST_KEY),
        ("source.client.rbd-mirror-migration.keyring", SRC_KEY),
    ):
        path = world.etc / name
        assert key in path.read_text() and path.stat().st_mode & 0o777 == 0o600
    assert world.service["running"] and world.service["starts"] == 1
    assert out.unit_status == testing.ActiveStatus("ready: 3 pools; run enable-mirroring")


def test_reconcile_uses_configured_replicas(world):
    out = world.run(world.ctx.on.config_changed(), ready_state(config={"pool-replicas": 3}))
    dst = next(r for r in out.relations if r.endpoint == "destination")
    assert {op["replicas"] for op in json.loads(dst.local_unit_data["broker_req"])["ops"]} == {3}


def test_reconcile_restarts_a_dead_daemon_and_not_twice(world):
    state = world.run(world.ctx.on.install(), ready_state())
    world.service["running"] = False
    state = world.run(world.ctx.on.update_status(), state)
    assert world.service["starts"] == 2
    world.run(world.ctx.on.update_status(), state)
    assert world.service["starts"] == 2


def test_reconcile_waits_without_relations(world):
    out = world.run(world.ctx.on.install(), testing.State())
    assert world.service["starts"] == 0 and out.unit_status.name == "blocked"


def test_reconcile_asks_ceph_proxy_for_rbd_profile_caps(world):
    out = world.run(world.ctx.on.config_changed(), ready_state())
    src = next(r for r in out.relations if r.endpoint == "source")
    (op,) = json.loads(src.local_unit_data["broker_req"])["ops"]
    assert op == {
        "op": "set-key-permissions",
        "client": "rbd-mirror-migration",
        "permissions": ["mon", "profile rbd", "osd", "profile rbd"],
    }


def test_upgrade_charm_reconciles(world):
    out = world.run(world.ctx.on.upgrade_charm(), ready_state())
    assert (world.etc / "ceph.conf").exists() and out.unit_status.name == "active"


def test_config_change_of_a_tuning_option_rewrites_conf_and_restarts_daemon(world):
    state = world.run(world.ctx.on.install(), ready_state())
    assert world.service["starts"] == 1
    conf = (world.etc / "ceph.conf").read_text()
    assert "rbd_mirror_pool_replayers_refresh_interval = 10" in conf
    state = testing.State(relations=state.relations, config={"rbd-concurrent-management-ops": 32})
    world.run(world.ctx.on.config_changed(), state)
    assert "rbd_concurrent_management_ops = 32" in (world.etc / "ceph.conf").read_text()
    assert world.service["starts"] == 2


# --- Hooks: relation-broken ---------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["source", "destination"])
def test_relation_broken_goes_blocked_and_keeps_files(world, endpoint):
    state = world.run(world.ctx.on.install(), ready_state())
    rel = next(r for r in state.relations if r.endpoint == endpoint)
    out = world.run(world.ctx.on.relation_broken(rel), state)
    assert out.unit_status.name == "blocked"
    assert "Missing relation: " + endpoint in out.unit_status.message


# --- collect-status: the unit status ------------------------------------------------------------


def test_collect_status_blocked_without_source(world):
    status = _status(world, testing.State(relations=[destination_relation()]))
    assert status == testing.BlockedStatus(
        "Missing relation: source (relate to ceph-proxy:client)"
    )


def test_collect_status_blocked_without_destination(world):
    status = _status(world, testing.State(relations=[source_relation()]))
    assert status == testing.BlockedStatus(
        "Missing relation: destination (relate to ceph-mon:rbd-mirror)"
    )


def test_collect_status_waits_for_source_key(world):
    state = testing.State(relations=[source_relation(key=None), destination_relation()])
    assert _status(world, state) == testing.WaitingStatus(
        "waiting for ceph-proxy to send the source key"
    )


def test_collect_status_waits_for_destination_key(world):
    state = testing.State(
        relations=[source_relation(), destination_relation(**{f"{HOST}_key": None})]
    )
    assert _status(world, state) == testing.WaitingStatus(
        "waiting for ceph-mon to send the destination key"
    )


def test_collect_status_waits_for_destination_pools(world):
    state = testing.State(relations=[source_relation(), destination_relation(pools=("nova",))])
    assert _status(world, state) == testing.WaitingStatus(
        "waiting for destination pools: cinder-ceph, glance"
    )


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"ceph-public-address": "not an address;rm -rf"}, "not a monitor address"),
        ({"ceph-public-address": "10.0.0.1:99999"}, "bad port"),
        ({"key": "$(reboot)"}, "not a cephx secret"),
        ({"auth": "none"}, "not supported"),
    ],
)
def test_collect_status_blocked_on_junk_source_data(world, overrides, words):
    state = testing.State(relations=[source_relation(**overrides), destination_relation()])
    status = _status(world, state)
    assert status.name == "blocked" and words in status.message
    assert SRC_KEY not in status.message


def test_collect_status_blocked_on_malformed_broker_response(world):
    state = testing.State(
        relations=[
            source_relation(),
            destination_relation(**{"broker-rsp-rbd-mirror-migration-0": "{not json"}),
        ]
    )
    status = _status(world, state)
    assert status.name == "blocked" and "broker response" in status.message


def test_collect_status_blocked_when_broker_failed(world):
    first = world.run(world.ctx.on.update_status(), ready_state())
    sent = next(r for r in first.relations if r.endpoint == "destination").local_unit_data
    request_id = json.loads(sent["broker_req"])["request-id"]  # the reply answers our request
    rsp = json.dumps({"exit-code": 1, "stderr": "pool quota", "request-id": request_id})
    state = testing.State(
        relations=[
            source_relation(),  # a pool is missing: the failure matters
            destination_relation(
                pools=("glance", "nova"), **{"broker-rsp-rbd-mirror-migration-0": rsp}
            ),
        ]
    )
    assert "could not create the pools: pool quota" in _status(world, state).message


@pytest.mark.parametrize(
    "config, words",
    [
        ({"source-cluster-name": "ceph"}, "source-cluster-name"),
        ({"source-cluster-name": "a b"}, "source-cluster-name"),
        ({"max-workers": 0}, "max-workers"),
        ({"command-timeout": 1}, "command-timeout"),
    ],
)
def test_collect_status_blocked_on_invalid_config(world, config, words):
    status = _status(world, ready_state(config=config))
    assert status.name == "blocked" and words in status.message


def test_collect_status_blocked_when_config_pool_is_not_on_source(world):
    status = _status(world, ready_state(config={"pools": "nova,ghost"}))
    assert status == testing.BlockedStatus("config pools: not on the source: ghost")


def test_collect_status_blocked_when_source_unreachable(world):
    world.src.unreachable = True
    status = _status(world, ready_state())
    assert status.name == "blocked" and "source unreachable" in status.message


def test_collect_status_blocked_on_foreign_ceph_conf(world):
    world.etc.mkdir()
    (world.etc / "ceph.conf").write_text("[global]\nfsid = x\n")
    status = _status(world, ready_state())
    assert status.name == "blocked" and "not written by this charm" in status.message
    assert (world.etc / "ceph.conf").read_text() == "[global]\nfsid = x\n"


def test_collect_status_blocked_when_daemon_down(world, monkeypatch):
    import charm

    monkeypatch.setattr(charm.RbdMirrorDaemon, "start", lambda self, **k: None)
    out = world.run(world.ctx.on.update_status(), ready_state())
    assert out.unit_status.name == "blocked" and "daemon not running" in out.unit_status.message


def test_collect_status_blocked_when_ceph_proxy_refused_caps(world):
    rsp = json.dumps({"exit-code": 1, "stderr": "denied", "request-id": SOURCE_REQUEST_ID})
    state = testing.State(
        relations=[
            source_relation(**{"broker-rsp-rbd-mirror-migration-0": rsp}),
            destination_relation(),
        ]
    )
    assert "could not set our key's caps: denied" in _status(world, state).message


@pytest.mark.parametrize(
    "option",
    [
        "rbd-concurrent-management-ops",
        "rbd-mirror-pool-replayers-refresh-interval",
        "rbd-mirror-image-state-check-interval",
        "rbd-mirror-concurrent-image-syncs",
    ],
)
def test_collect_status_blocked_on_out_of_range_tuning(world, option):
    status = _status(world, ready_state(config={option: 0}))
    assert status.name == "blocked" and option in status.message


# --- Action: enable-mirroring -------------------------------------------------------------------


def test_enable_mirroring_dry_run_changes_nothing(world):
    world.service["running"] = True
    _enable(world, ready_state(), **{"dry-run": True})
    results = world.ctx.action_results
    assert results["dry-run"] == "true" and results["changes"] > 0
    assert world.src.modes == {} and world.dst.modes == {} and world.dst.peers == {}


def test_enable_mirroring_sets_up_both_sides_then_is_a_noop(world):
    world.service["running"] = True
    _enable(world, ready_state())
    assert world.src.modes == dict.fromkeys(world.src.pool_images, "pool")
    assert world.dst.modes == dict.fromkeys(world.src.pool_images, "pool")
    assert all(len(p) == 1 for p in world.dst.peers.values())
    assert all("journaling" in i.features for imgs in world.src.pool_images.values() for i in imgs)
    pools = json.loads(world.ctx.action_results["pools"])
    assert pools["nova"]["peer-uuid"] == "uuid-nova" and pools["nova"]["images"] == 2
    assert any("journaling" in line for line in world.ctx.action_logs)
    _enable(world, ready_state())
    assert world.ctx.action_results["changes"] == 0


@pytest.mark.parametrize(
    "pools, words",
    [
        ("ghost", "unknown pool(s) ghost"),
        ("nova,nova", "listed twice"),
        ("nova,", "empty pool name"),
        ("nova;reboot", "invalid pool name"),
        ("a b", "invalid pool name"),
    ],
)
def test_enable_mirroring_rejects_bad_pools_and_changes_nothing(world, pools, words):
    with pytest.raises(testing.ActionFailed) as exc:
        _enable(world, ready_state(), pools=pools)
    assert words in exc.value.message
    assert world.src.modes == {} and world.dst.modes == {}


def test_enable_mirroring_fails_when_destination_pool_missing(world):
    del world.dst.pool_images["nova"]
    with pytest.raises(testing.ActionFailed) as exc:
        _enable(world, ready_state())
    assert "destination pool(s) missing: nova" in exc.value.message
    assert world.src.modes == {}


def test_enable_mirroring_fails_when_not_ready(world):
    with pytest.raises(testing.ActionFailed) as exc:
        _enable(world, testing.State(relations=[source_relation()]))
    assert exc.value.message.startswith("not ready: Missing relation: destination")


def test_enable_mirroring_reports_unreachable_source(world):
    state = ready_state()
    world.src.unreachable = True
    with pytest.raises(testing.ActionFailed) as exc:
        _enable(world, state)
    assert "source unreachable" in exc.value.message


def test_enable_mirroring_refuses_a_source_key_that_cannot_blocklist_and_changes_nothing(world):
    world.service["running"] = True
    world.src.blocklist_ok = False
    with pytest.raises(testing.ActionFailed) as exc:
        _enable(world, ready_state())
    assert "source key: may not blocklist" in exc.value.message
    assert "mon 'profile rbd' osd 'profile rbd'" in exc.value.message, "the caps to grant"
    request = (
        '{"op": "set-key-permissions", "permissions": ["mon", "profile rbd", "osd", '
        '"profile rbd"], "client": "rbd-mirror-migration"}'
    )
    assert f"the broker request {request}" in exc.value.message, "the request to send"
    assert "ceph auth caps client.rbd-mirror-migration mon 'profile rbd'" in exc.value.message
    assert set(world.src.modes.values()) <= {"disabled"} and not world.dst.modes
    assert "BLOCKS: source key" in (world.ctx.action_results or {})["warnings"]


def test_enable_mirroring_refuses_when_the_blocklist_probe_errors(world):
    world.service["running"] = True
    world.src.blocklist_error = True
    with pytest.raises(testing.ActionFailed) as exc:
        _enable(world, ready_state())
    assert "the blocklist probe failed" in exc.value.message
    assert not world.dst.modes, "nothing changed"


def test_enable_mirroring_dry_run_reports_what_the_preflight_would_block(world):
    world.src.blocklist_ok = False
    world.src.journal_denied = True
    _enable(world, ready_state(), **{"dry-run": True})
    warnings = json.loads(world.ctx.action_results["warnings"])
    assert any(w.startswith("BLOCKS: source key: may not blocklist") for w in warnings)
    assert any("may not journal images" in w for w in warnings)
    assert world.ctx.action_results["source-key-can-blocklist"] == "false"
    assert not world.dst.modes, "a dry run changes nothing"


def test_enable_mirroring_reports_per_image_failures_and_finishes_the_rest(world):
    world.service["running"] = True
    world.src.fail_images = {"b_disk"}
    with pytest.raises(testing.ActionFailed) as exc:
        _enable(world, ready_state())
    assert "nova/b_disk: PermissionError" in exc.value.message and "re-run" in exc.value.message
    assert "journaling" in world.src.image("nova", "a_disk").features
    assert world.dst.modes["cinder-ceph"] == "pool", "the other pools were set up"


def test_enable_mirroring_uses_one_bulk_call_per_pool(world):
    world.service["running"] = True
    _enable(world, ready_state())
    bulk = [c for c in world.src.calls if c.startswith("bulk enable-journaling")]
    assert sorted(bulk) == sorted(f"bulk enable-journaling {p}" for p in world.src.pool_images)


# --- Action: status -----------------------------------------------------------------------------


def test_status_reports_not_ready_before_sync_with_reasons(world):
    world.service["running"] = True
    _enable(world, ready_state())
    world.run(world.ctx.on.action("status"), ready_state())
    results = world.ctx.action_results
    assert results["ready-for-cutover"] == "false"
    assert any("not on the destination yet" in r for r in json.loads(results["reasons"]))


def test_status_ready_when_all_replaying_verbose_lists_images(world):
    state = _migrated(world)
    world.dst.states["a_disk"] = (
        "up+replaying",
        'replaying, {"entries_behind_primary":0,"bytes_per_second":12.5}',
    )
    world.run(world.ctx.on.action("status", params={"verbose": True}), state)
    results = world.ctx.action_results
    assert results["ready-for-cutover"] == "true" and results["replaying"] == 4
    nova = json.loads(results["pools"])["nova"]
    image = next(i for i in nova["image-status"] if i["image"] == "a_disk")
    assert image["entries-behind-primary"] == 0 and image["bytes-per-second"] == 12.5
    assert results["phase"] == "4/4 replaying: ready for cutover"


def test_status_not_ready_when_daemon_down(world):
    state = _migrated(world)
    world.service["running"] = False
    world.run(world.ctx.on.action("status"), state)
    assert "daemon is not running" in world.ctx.action_results["reasons"]


def test_status_never_shows_keys(world):
    state = _migrated(world)
    world.run(world.ctx.on.action("status", params={"verbose": True}), state)
    text = json.dumps(world.ctx.action_results) + " ".join(world.ctx.action_logs)
    assert SRC_KEY not in text and DST_KEY not in text


def test_status_with_source_unreachable_still_shows_destination(world):
    state = _migrated(world)
    world.src.unreachable = True
    state = testing.State(relations=state.relations, config={"pools": "glance,nova,cinder-ceph"})
    out = world.run(world.ctx.on.action("status"), state)
    results = world.ctx.action_results
    assert results["source-reachable"] == "false" and results["ready-for-cutover"] == "false"
    assert json.loads(results["pools"])["nova"]["images"] == 2
    assert out.unit_status.name == "blocked" and "source unreachable" in out.unit_status.message


def test_status_reports_split_brain_after_forced_promotion(world):
    state = _migrated(world)
    config = {"pools": "glance,nova,cinder-ceph"}
    world.src.unreachable = True
    _cutover(world, testing.State(relations=state.relations, config=config), force=True)
    world.src.unreachable = False  # the source comes back, its images still primary
    out = world.run(
        world.ctx.on.action("status"), testing.State(relations=state.relations, config=config)
    )
    split = json.loads(world.ctx.action_results["split-brain"])
    assert "nova/a_disk" in split and len(split) == 4
    assert out.unit_status.name == "blocked" and "SPLIT-BRAIN" in out.unit_status.message


def test_status_mid_cutover_is_not_ready_and_says_re_run(world):
    state = _migrated(world)
    world.src.pool_demote("nova")  # an interrupted cutover got this far
    world.run(world.ctx.on.action("status"), state)
    results = world.ctx.action_results
    assert results["ready-for-cutover"] == "false"
    assert any("nova: cutover in progress" in r for r in json.loads(results["reasons"]))


# --- Action: demote-promote ---------------------------------------------------------------------


def test_demote_promote_refuses_while_an_image_lags(world):
    state = _migrated(world)
    world.dst.states["volume-1"] = ("up+syncing", "bootstrapping, IMAGE_SYNC/COPY_IMAGE 40%")
    with pytest.raises(testing.ActionFailed) as exc:
        _cutover(world, state)
    assert "cinder-ceph/volume-1: up+syncing" in exc.value.message
    assert all(i.primary for imgs in world.src.pool_images.values() for i in imgs)


def test_demote_promote_refuses_when_daemon_down(world):
    state = _migrated(world)
    world.service["running"] = False
    with pytest.raises(testing.ActionFailed) as exc:
        _cutover(world, state)
    assert "daemon is not running" in exc.value.message


def test_demote_promote_retries_ebusy_then_verifies(world):
    state = _migrated(world)
    world.dst.promote_busy = 2
    _cutover(world, state, timeout=30)
    results = world.ctx.action_results
    assert sum(json.loads(results["promoted"]).values()) == 4
    assert not any(i.primary for imgs in world.src.pool_images.values() for i in imgs)
    assert all(i.primary for imgs in world.dst.pool_images.values() for i in imgs)


def _never_promoted(world: World, monkeypatch):
    """Migrated, with a destination that answers EBUSY to every promote and a fast clock."""
    import cutover

    state = _migrated(world)
    world.dst.promote_busy = 10**6
    clock = iter(range(0, 10**6, 10))
    monkeypatch.setattr(cutover.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(cutover.time, "sleep", lambda s: None)
    return state


def test_demote_promote_times_out_with_source_demoted_and_no_double_primary(world, monkeypatch):
    state = _never_promoted(world, monkeypatch)
    with pytest.raises(testing.ActionFailed) as exc:
        _cutover(world, state, timeout=5)
    assert "re-run demote-promote" in exc.value.message
    # journal mode gives no progress to judge: the pools are named, never marked stalled
    assert "glance/* (librbd answered 16)" in exc.value.message, exc.value.message
    assert "not moved" not in exc.value.message and "may not resume" not in exc.value.message
    assert not any(i.primary for imgs in world.src.pool_images.values() for i in imgs)


def test_a_timed_out_cutover_says_so_even_when_its_snapshots_fail_too(world, monkeypatch):
    state = _never_promoted(world, monkeypatch)

    def refused(pool, action, **kw):
        raise CephError("ceph", ["rbd_bulk cutover-snapshots"], 110, "TimedOut")

    world.dst.cutover_snapshots = refused  # type: ignore[method-assign]
    with pytest.raises(testing.ActionFailed) as exc:
        _cutover(world, state, timeout=5)
    assert "re-run demote-promote" in exc.value.message
    assert any("cutover snapshots not taken" in line for line in world.ctx.action_logs)


def test_demote_promote_rerun_after_interruption_finishes(world):
    state = _migrated(world)
    for pool in world.src.pool_images:
        world.src.pool_demote(pool)
    for imgs in world.dst.pool_images.values():
        for img in imgs:
            world.dst.states[img.name] = ("up+unknown", "remote image is not primary")
    world.dst.pool_promote("nova")
    _cutover(world, state)
    assert all(i.primary for imgs in world.dst.pool_images.values() for i in imgs)


def test_demote_promote_force_promotes_without_source(world):
    state = _migrated(world)
    world.dst.states["volume-1"] = ("up+syncing", "bootstrapping")
    world.src.unreachable = True
    state = testing.State(relations=state.relations, config={"pools": "glance,nova,cinder-ceph"})
    with pytest.raises(testing.ActionFailed):
        _cutover(world, state)
    assert not any(i.primary for imgs in world.dst.pool_images.values() for i in imgs)
    _cutover(world, state, force=True)
    assert world.ctx.action_results["forced"] == "true"
    assert all(i.primary for imgs in world.dst.pool_images.values() for i in imgs)
    assert any("FORCE" in line for line in world.ctx.action_logs)


def test_demote_promote_rejects_bad_timeout(world):
    with pytest.raises(testing.ActionFailed) as exc:
        _cutover(world, ready_state(), timeout=0)
    assert "timeout" in exc.value.message


def test_demote_promote_unit_status_reuses_the_verification_reads(world):
    state = _migrated(world)
    world.src.calls.clear()
    out = _cutover(world, state)
    reads = [c for c in world.src.calls if c.startswith("bulk pool-state")]
    assert len(reads) == 2 * 3, "preflight and verification, once per pool; none for the status"
    assert out.unit_status.name == "active"


def test_demote_promote_rerun_trusts_demoted_source_over_lagging_status(world):
    state = _migrated(world)
    for pool in world.src.pool_images:
        world.src.pool_demote(pool)  # an earlier run demoted the source, then died
    world.dst.states["a_disk"] = ("up+replaying", 'replaying, {"entries_behind_primary":12}')
    _cutover(world, state)
    assert all(i.primary for imgs in world.dst.pool_images.values() for i in imgs)


def test_demote_promote_first_run_refuses_a_lagging_image(world):
    state = _migrated(world)
    world.dst.states["a_disk"] = ("up+replaying", 'replaying, {"entries_behind_primary":12}')
    with pytest.raises(testing.ActionFailed) as exc:
        _cutover(world, state)
    assert "nova/a_disk: up+replaying" in exc.value.message


def test_demote_promote_counts_images_promoted_by_partial_rounds(world):
    state = _migrated(world)
    world.dst.promote_busy = 1
    real = world.dst.pool_promote

    def partial_then_busy(pool, *, force=False):
        if world.dst.promote_busy and pool == "nova":
            world.dst.image("nova", "a_disk").primary = True  # promoted, yet rc=16
        return real(pool, force=force)

    world.dst.pool_promote = partial_then_busy  # type: ignore[method-assign]
    _cutover(world, state)
    assert json.loads(world.ctx.action_results["promoted"])["nova"] == 2
    _cutover(world, state)
    assert sum(json.loads(world.ctx.action_results["promoted"]).values()) == 0


def test_demote_promote_verification_catches_a_source_primary(world):
    state = _migrated(world)
    real = world.dst.pool_promote

    def promote_and_break(pool, *, force=False):
        count = real(pool, force=force)
        world.src.image("glance", "img").primary = True  # someone promoted it back
        return count

    world.dst.pool_promote = promote_and_break  # type: ignore[method-assign]
    with pytest.raises(testing.ActionFailed) as exc:
        _cutover(world, state)
    assert "glance: 1 image(s) still primary on the source" in exc.value.message


# --- Action: teardown ---------------------------------------------------------------------------


def test_teardown_refuses_before_cutover(world):
    state = _migrated(world)
    with pytest.raises(testing.ActionFailed) as exc:
        world.run(world.ctx.on.action("teardown"), state)
    assert "not primary" in exc.value.message
    assert all(len(p) == 1 for p in world.dst.peers.values())


def test_teardown_after_cutover_disables_clones_first_and_stops_daemon(world):
    state = _migrated(world)
    _cutover(world, state)
    world.run(world.ctx.on.action("teardown", params={"dry-run": True}), state)
    assert world.ctx.action_results["daemon-stopped"] == "false"
    assert world.dst.modes["nova"] == "pool"
    world.run(world.ctx.on.action("teardown"), state)
    results = world.ctx.action_results
    assert results["order"].index("nova") < results["order"].index("glance")
    assert results["daemon-stopped"] == "true" and world.service["stops"] == 1
    assert "remove-relation rbd-mirror-migration:destination" in results["next-steps"]
    assert set(world.dst.modes.values()) == {"disabled"}
    assert not any(
        "journaling" in i.features for imgs in world.dst.pool_images.values() for i in imgs
    )
    out = world.run(world.ctx.on.update_status(), state)
    assert world.service["starts"] == 0 or not world.service["running"]
    assert out.unit_status.message.startswith("torn down")


def test_teardown_finishes_journaling_that_pool_disable_left(world):
    state = _migrated(world)
    _cutover(world, state)
    world.dst.sticky_journaling = {"volume-1"}
    world.run(world.ctx.on.action("teardown"), state)
    assert world.ctx.action_results["journaling-removed"] == 1
    assert "journaling" not in world.dst.image("cinder-ceph", "volume-1").features


def test_teardown_names_images_whose_journaling_cannot_be_removed(world):
    state = _migrated(world)
    _cutover(world, state)
    world.dst.sticky_journaling = {"volume-1"}
    world.dst.fail_images = {"volume-1"}
    with pytest.raises(testing.ActionFailed) as exc:
        world.run(world.ctx.on.action("teardown"), state)
    assert "journaling still on cinder-ceph/volume-1" in exc.value.message


def test_teardown_disables_image_by_image_when_the_pool_refuses(world):
    state = _migrated(world)
    _cutover(world, state)
    world.dst.busy_pools = {"glance"}
    world.run(world.ctx.on.action("teardown"), state)
    assert "bulk disable-mirroring glance" in world.dst.calls
    assert any("disabling image by image" in line for line in world.ctx.action_logs)
    assert world.dst.modes["glance"] == "disabled"


def test_teardown_names_images_whose_mirroring_cannot_be_disabled(world):
    state = _migrated(world)
    _cutover(world, state)
    world.dst.busy_pools, world.dst.fail_images = {"glance"}, {"img"}
    with pytest.raises(testing.ActionFailed) as exc:
        world.run(world.ctx.on.action("teardown"), state)
    assert "glance: mirroring could not be disabled on 1 image(s)" in exc.value.message
    assert "img: ImageBusy" in exc.value.message
    assert world.dst.modes["glance"] == "image", "left for a re-run, nothing lost"


def test_teardown_subset_keeps_daemon(world):
    state = _migrated(world)
    _cutover(world, state)
    world.run(world.ctx.on.action("teardown", params={"pools": "cinder-ceph"}), state)
    assert world.ctx.action_results["daemon-stopped"] == "false"
    assert world.dst.modes["cinder-ceph"] == "disabled" and world.dst.modes["nova"] == "pool"


def test_collect_status_waits_while_no_destination_pool_exists_yet(world):
    """CI caught it: with no pool on the destination, an empty read looked like a source error."""
    state = testing.State(relations=[source_relation(), destination_relation(pools=())])
    assert _status(world, state) == testing.WaitingStatus(
        "waiting for destination pools: cinder-ceph, glance, nova"
    )


@pytest.mark.parametrize("action", ["enable-mirroring", "demote-promote", "teardown"])
def test_actions_that_change_pools_run_on_the_leader_only(world, action):
    world.leader = False
    world.service["running"] = True
    with pytest.raises(testing.ActionFailed) as exc:
        world.run(world.ctx.on.action(action), ready_state())
    assert f"{action} changes pools: run it on the leader unit" in exc.value.message
    assert not world.src.modes and not world.dst.modes and not world.dst.peers


def test_status_runs_on_a_non_leader_whose_unit_status_points_to_the_leader(world):
    world.service["running"] = True
    world.leader = False
    out = world.run(world.ctx.on.action("status"), ready_state())
    assert world.ctx.action_results["phase"].startswith("ready")
    status = world.run(world.ctx.on.update_status(), out).unit_status
    assert status.name == "active" and status.message.endswith("on the leader)")
