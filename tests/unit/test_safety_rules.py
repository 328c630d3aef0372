"""One test (or a few) per safety rule of the hostile review; each failed on the code before it.

Rule numbers are those of the review: 1 teardown checks the source, 2 split brain is the
operator's decision, 3 force only for a dead source, 4 the disaster path with default config,
5 no restart without a change, 6 errors are not "syncing", 7 never send the operator backwards,
8 torn down means torn down, 9 teardown in parts finishes, 10 discovered names are checked,
11 the daemon can be paused, 12 no cutover while the cloud uses the source, 13 a restart is
never lost, 14 credentials do not outlive the migration, 15 no crash on bad config, 16 large
pools through Juju, 17 the smaller ones. Rule 0 (the packed charm starts) is tests/dispatch.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import cast

import pytest
from ops import testing
from ops.model import _ModelBackend

import charm
import daemon
import relations
import session
from daemon import DaemonFiles, ServiceError
from tests.unit.conftest import (
    DST_KEY,
    HOST,
    SRC_KEY,
    World,
    destination_relation,
    ready_state,
    source_relation,
)
from tests.unit.fake_ceph import FakeImage, mirror

APP = "rbd-mirror-migration"


def _act(world: World, state, name: str, **params):
    return world.run(world.ctx.on.action(name, params=params), state)


def _migrated(world: World):
    """Mirroring enabled and every image copied; the output state carries the unit's record."""
    world.service["running"] = True
    state = _act(world, ready_state(), "enable-mirroring")
    mirror(world.src, world.dst)
    return state


def _cut_over(world: World):
    return _act(world, _migrated(world), "demote-promote")


def _modes(cluster) -> set[str]:
    return set(cluster.modes.values())


# --- 1. teardown checks the source ---------------------------------------------------------


def test_rule1_teardown_refuses_while_a_source_image_is_not_on_the_destination(world):
    state = _cut_over(world)
    world.src.pool_images["cinder-ceph"].append(FakeImage("volume-late"))  # APIs not frozen
    peers = {p: list(v) for p, v in world.dst.peers.items()}
    with pytest.raises(testing.ActionFailed) as exc:
        _act(world, state, "teardown")
    assert "cinder-ceph/volume-late: on the source but not on the destination" in exc.value.message
    assert "nothing changed" in exc.value.message
    assert _modes(world.dst) == {"pool"} and world.dst.peers == peers
    assert world.service["running"] and world.service["stops"] == 0
    out = world.run(world.ctx.on.update_status(), state)
    assert "cutover done" not in out.unit_status.message


def test_rule1_teardown_finishes_once_the_stray_image_is_mirrored_and_cut_over(world):
    state = _cut_over(world)
    world.src.pool_images["cinder-ceph"].append(FakeImage("volume-late"))
    state = _act(world, state, "enable-mirroring")  # journals the late volume
    assert world.ctx.action_results["changes"] == 1
    mirror(world.src, world.dst)
    state = _act(world, state, "demote-promote")
    assert json.loads(world.ctx.action_results["promoted"]) == {
        "glance": 0,
        "nova": 0,
        "cinder-ceph": 1,
    }
    _act(world, state, "teardown")
    assert world.ctx.action_results["daemon-stopped"] == "true"


def test_rule1_teardown_refuses_before_the_cutover_naming_both_sides(world):
    state = _migrated(world)
    with pytest.raises(testing.ActionFailed) as exc:
        _act(world, state, "teardown")
    assert "nova/a_disk: not primary on the destination" in exc.value.message
    assert "nova/a_disk: still primary on the source" in exc.value.message


def test_rule1_teardown_refuses_when_the_source_does_not_answer_unless_forced(world):
    state = _cut_over(world)
    world.src.unreachable = True
    with pytest.raises(testing.ActionFailed) as exc:
        _act(world, state, "teardown")
    assert "does not answer" in exc.value.message and _modes(world.dst) == {"pool"}
    _act(world, state, "teardown", force=True)
    assert _modes(world.dst) == {"disabled"}


# --- 2. split brain -------------------------------------------------------------------------


def _split_brain(world: World):
    state = _migrated(world)
    world.src.unreachable = True
    state = _act(world, state, "demote-promote", force=True)
    world.src.unreachable = False  # the source is back, its images still primary
    return state


@pytest.mark.parametrize("action", ["demote-promote", "teardown", "enable-mirroring"])
def test_rule2_split_brain_refuses_and_names_the_operator_commands(world, action):
    state = _split_brain(world)
    modes, peers = dict(world.dst.modes), {p: list(v) for p, v in world.dst.peers.items()}
    with pytest.raises(testing.ActionFailed) as exc:
        _act(world, state, action)
    message = exc.value.message
    assert "SPLIT-BRAIN" in message and "nova/a_disk" in message
    assert "mirror image demote" in message and "mirror image resync" in message
    assert all(i.primary for imgs in world.src.pool_images.values() for i in imgs)
    assert world.dst.modes == modes and world.dst.peers == peers


def test_rule2_status_and_unit_status_say_split_brain(world):
    state = _split_brain(world)
    out = _act(world, state, "status")
    assert out.unit_status.name == "blocked" and "SPLIT-BRAIN" in out.unit_status.message
    results = world.ctx.action_results
    assert "SPLIT-BRAIN" in results["phase"] and results["split-brain-count"] == 4
    assert "mirror image demote" in results["split-brain-advice"]


# --- 3. force is for a dead source ---------------------------------------------------------


def test_rule3_force_with_a_source_that_answers_refuses_and_changes_nothing(world):
    state = _migrated(world)
    world.dst.states["volume-1"] = ("up+syncing", "bootstrapping, IMAGE_SYNC 40%")
    with pytest.raises(testing.ActionFailed) as exc:
        _act(world, state, "demote-promote", force=True)
    assert "source answers" in exc.value.message
    assert all(i.primary for imgs in world.src.pool_images.values() for i in imgs)
    assert not any(i.primary for imgs in world.dst.pool_images.values() for i in imgs)


def test_rule3_force_with_a_dead_source_promotes_every_pool_alike(world):
    state = _migrated(world)
    world.src.unreachable = True
    world.src.calls.clear()
    _act(world, state, "demote-promote", force=True)
    assert not any(c.startswith("demote") for c in world.src.calls)
    assert all(i.primary for imgs in world.dst.pool_images.values() for i in imgs)
    assert set(json.loads(world.ctx.action_results["promoted"])) == {
        "glance",
        "nova",
        "cinder-ceph",
    }


# --- 4. the disaster path with the default config -----------------------------------------


def test_rule4_status_and_force_work_with_empty_pools_from_the_record(world):
    state = _migrated(world)  # enable-mirroring recorded the pools
    world.src.unreachable = True
    out = _act(world, state, "status")
    assert set(json.loads(world.ctx.action_results["pools"])) == {"glance", "nova", "cinder-ceph"}
    assert world.ctx.action_results["source-reachable"] == "false"
    _act(world, out, "demote-promote", force=True)
    assert all(i.primary for imgs in world.dst.pool_images.values() for i in imgs)


def test_rule4_without_a_record_the_pools_come_from_the_destination_peers(world):
    _migrated(world)
    world.src.unreachable = True
    _act(world, ready_state(), "demote-promote", force=True)  # a fresh unit: no record
    assert all(i.primary for imgs in world.dst.pool_images.values() for i in imgs)


# --- 5. no daemon restart without a change -------------------------------------------------


def _three_mons() -> testing.Relation:
    data = destination_relation().remote_units_data[0]
    units = {n: dict(data, **{"ceph-public-address": f"10.0.1.{n + 1}"}) for n in range(3)}
    return testing.Relation(
        endpoint="destination", interface="ceph-rbd-mirror", remote_units_data=units
    )


def test_rule5_three_mons_ten_update_status_hooks_one_daemon_start(world):
    state = testing.State(relations=[source_relation(), _three_mons()])
    for _ in range(10):
        state = world.run(world.ctx.on.update_status(), state)
    assert world.service["starts"] == 1, "the daemon restarted without a change"
    conf = (world.etc / "ceph.conf").read_text()
    assert "mon host = 10.0.1.1 10.0.1.2 10.0.1.3" in conf


def test_rule5_mon_order_does_not_depend_on_unit_order():
    units = [{"ceph-public-address": a, "h_key": DST_KEY} for a in ("10.0.0.3", "10.0.0.1")]
    forward = relations.parse_destination(units, "h", "u/0")
    backward = relations.parse_destination(list(reversed(units)), "h", "u/0")
    assert forward and backward and forward.mon_hosts == backward.mon_hosts


# --- 6. errors are not "syncing" -------------------------------------------------------------


def test_rule6_images_in_error_block_the_unit_naming_them(world):
    state = _migrated(world)
    world.dst.states["volume-1"] = ("up+error", "error bootstrapping replay")
    out = world.run(world.ctx.on.update_status(), state)
    assert out.unit_status.name == "blocked"
    assert "cinder-ceph/volume-1" in out.unit_status.message


def test_rule6_a_daemon_that_cannot_reach_the_source_blocks_the_unit(world):
    from ceph_cli import Callout

    state = _migrated(world)
    world.dst.callouts = [Callout("nova", "error", "unable to connect to remote cluster")]
    out = world.run(world.ctx.on.update_status(), state)
    assert out.unit_status.name == "blocked"
    assert "nova: unable to connect to remote cluster" in out.unit_status.message
    _act(world, out, "status")
    assert "unable to connect" in world.ctx.action_results["daemon-errors"]


# --- 7. the unit status never sends the operator backwards ----------------------------------


def _torn_down(world: World):
    state = _act(world, _cut_over(world), "teardown")
    assert (world.ctx.action_results or {})["daemon-stopped"] == "true"
    return state


def test_rule7_after_teardown_and_relation_removal_the_unit_says_finished(world):
    state = _torn_down(world)
    dst = next(r for r in state.relations if r.endpoint == "destination")
    out = world.run(world.ctx.on.relation_broken(dst), state)
    out = world.run(
        world.ctx.on.update_status(),
        testing.State(relations=[source_relation()], stored_states=out.stored_states),
    )
    assert out.unit_status.name == "active"
    assert "migration finished" in out.unit_status.message
    assert "Missing relation" not in out.unit_status.message
    assert "remove-application" in out.unit_status.message


def test_rule7_finished_with_the_destination_still_related_says_remove_it_first(world):
    state = _torn_down(world)
    src = next(r for r in state.relations if r.endpoint == "source")
    out = world.run(world.ctx.on.relation_broken(src), state)
    out = world.run(
        world.ctx.on.update_status(),
        testing.State(relations=[destination_relation()], stored_states=out.stored_states),
    )
    assert out.unit_status.name == "active"
    assert f"remove-relation {APP}:destination first" in out.unit_status.message


def test_rule7_enable_mirroring_after_teardown_needs_restart(world):
    state = _torn_down(world)
    with pytest.raises(testing.ActionFailed) as exc:
        _act(world, state, "enable-mirroring")
    assert "restart=true" in exc.value.message and _modes(world.dst) == {"disabled"}
    assert not any(
        "journaling" in i.features for imgs in world.dst.pool_images.values() for i in imgs
    )


# --- 8. "torn down" means torn down -------------------------------------------------------


def test_rule8_preexisting_destination_images_are_not_a_finished_migration(world):
    for pool, images in world.dst.pool_images.items():  # there before the migration
        images.append(FakeImage(f"old-{pool}"))
    out = world.run(world.ctx.on.update_status(), ready_state())
    assert world.service["starts"] == 1, "the daemon is started"
    assert out.unit_status.message.startswith("ready: 3 pools; run enable-mirroring")


# --- 9. teardown in parts ---------------------------------------------------------------------


def test_rule9_teardown_in_parts_stops_the_daemon_after_the_last_pool(world):
    state = _cut_over(world)
    state = _act(world, state, "teardown", pools="nova")
    assert world.ctx.action_results["daemon-stopped"] == "false" and world.service["running"]
    out = world.run(world.ctx.on.update_status(), state)
    assert "partly torn down (1/3 pools)" in out.unit_status.message
    _act(world, out, "teardown", pools="glance,cinder-ceph")
    assert world.ctx.action_results["daemon-stopped"] == "true"
    assert not world.service["running"]


# --- 10. every name is checked ------------------------------------------------------------


def test_rule10_a_discovered_pool_named_like_a_flag_is_refused(world):
    world.src.pool_images["--force"] = []
    world.dst.pool_images["--force"] = []
    out = world.run(world.ctx.on.update_status(), ready_state())
    assert out.unit_status.name == "blocked" and "invalid pool name" in out.unit_status.message
    assert not any("--force" in c for c in world.src.calls + world.dst.calls)


@pytest.mark.parametrize("name", ["-rf", "two words", "a\nb"])
def test_rule10_odd_image_names_are_refused_before_any_change(world, name):
    world.service["running"] = True
    world.src.pool_images["glance"].append(FakeImage(name))
    with pytest.raises(testing.ActionFailed) as exc:
        _act(world, ready_state(), "enable-mirroring")
    assert "image name(s) this charm will not handle" in exc.value.message
    assert world.src.modes == {} and world.dst.modes == {}


# --- 11. the daemon can be paused --------------------------------------------------------


def test_rule11_pause_keeps_the_daemon_stopped_until_resume(world):
    state = _migrated(world)
    state = _act(world, state, "pause")
    assert not world.service["running"]
    for _ in range(3):
        state = world.run(world.ctx.on.update_status(), state)
    assert not world.service["running"], "a hook restarted a paused daemon"
    assert "paused" in state.unit_status.message and state.unit_status.name == "blocked"
    state = _act(world, state, "resume")
    assert world.service["running"] and world.ctx.action_results["daemon-running"] == "true"


# --- 12. no cutover while the cloud still uses the source --------------------------------


def test_rule12_watchers_on_source_images_refuse_the_cutover(world):
    state = _migrated(world)
    world.src.watchers["volume-1"] = ("10.0.0.9:0/77 (client.4242)",)
    with pytest.raises(testing.ActionFailed) as exc:
        _act(world, state, "demote-promote")
    assert "cinder-ceph/volume-1: still in use on the source" in exc.value.message
    assert "client.4242" in exc.value.message
    assert all(i.primary for imgs in world.src.pool_images.values() for i in imgs)
    _act(world, state, "demote-promote", **{"ignore-watchers": True})
    assert all(i.primary for imgs in world.dst.pool_images.values() for i in imgs)


def test_rule12_a_watcher_on_an_image_still_being_copied_may_be_rbd_mirror_and_says_so(world):
    """Seen on the lab: rbd-mirror watches a source image while it copies it (bootstrap)."""
    state = _migrated(world)
    world.src.watchers["volume-1"] = ("127.0.0.1:0/3378628165 (client.14316)",)
    world.dst.states["volume-1"] = ("up+syncing", "bootstrapping, IMAGE_SYNC 60%")
    with pytest.raises(testing.ActionFailed) as exc:
        _act(world, state, "demote-promote")
    assert "rbd-mirror watches an image while it copies it" in exc.value.message
    world.src.watchers["a_disk"] = ("10.0.0.9:0/77 (client.4242)",)  # caught up: the cloud's
    with pytest.raises(testing.ActionFailed) as exc:
        _act(world, state, "demote-promote")
    message = exc.value.message
    assert (
        "nova/a_disk: still in use on the source (watchers 10.0.0.9:0/77 (client.4242)): stop"
        in message
    )


# --- 13. a restart is never lost ----------------------------------------------------------


def test_rule13_a_failed_restart_after_new_files_is_retried_by_the_next_hook(world, monkeypatch):
    world.service["running"] = True
    state = world.run(world.ctx.on.update_status(), ready_state())  # files written, restarted
    starts = world.service["starts"]
    attempts = {"n": 0}
    start = charm.RbdMirrorDaemon.start

    def flaky_start(self, *, restart):
        attempts["n"] += 1
        if attempts["n"] == 1:  # the old daemon keeps running on the old files
            raise ServiceError("could not restart")
        start(self, restart=restart)

    monkeypatch.setattr(charm.RbdMirrorDaemon, "start", flaky_start)
    state = world.run(
        world.ctx.on.config_changed(),
        testing.State(
            relations=state.relations,
            config={"rbd-mirror-concurrent-image-syncs": 7},
            stored_states=state.stored_states,
        ),
    )
    assert world.service["starts"] == starts and attempts["n"] == 1
    world.run(world.ctx.on.update_status(), state)
    assert world.service["starts"] == starts + 1, "the pending restart was done"


# --- 14. credentials do not outlive the migration -------------------------------------------


def test_rule14_no_object_holding_a_key_shows_it_in_its_repr():
    files = DaemonFiles(
        destination_mon_hosts=("10.0.0.1",),
        destination_key=DST_KEY,
        source_cluster="source",
        source_mon_hosts=("10.0.0.2",),
        source_key=SRC_KEY,
    )
    shown = (
        repr(files)
        + repr(relations.SourceData(SRC_KEY, ()))
        + repr(relations.DestinationData(DST_KEY, (), frozenset(), None))
    )
    assert SRC_KEY not in shown and DST_KEY not in shown


@pytest.mark.parametrize("hook", ["stop", "remove"])
def test_rule14_leaving_removes_every_file_and_stops_the_daemon(world, hook):
    state = world.run(world.ctx.on.update_status(), ready_state())
    assert sorted(p.name for p in world.etc.iterdir()) == [
        f"ceph.client.rbd-mirror.{HOST}.keyring",
        "ceph.conf",
        f"source.client.{APP}.keyring",
        "source.conf",
    ]
    world.run(getattr(world.ctx.on, hook)(), state)
    assert list(world.etc.iterdir()) == [] and not world.service["running"]


@pytest.mark.parametrize(
    "endpoint, left",
    [
        ("source", [f"ceph.client.rbd-mirror.{HOST}.keyring", "ceph.conf"]),
        ("destination", [f"source.client.{APP}.keyring", "source.conf"]),
    ],
)
def test_rule14_a_removed_relation_takes_its_files_and_the_daemon(world, endpoint, left):
    state = world.run(world.ctx.on.update_status(), ready_state())
    rel = next(r for r in state.relations if r.endpoint == endpoint)
    out = world.run(world.ctx.on.relation_broken(rel), state)
    assert sorted(p.name for p in world.etc.iterdir()) == left
    assert not world.service["running"] and out.unit_status.name == "blocked"


def test_rule14_teardown_says_how_to_revoke_the_source_key(world):
    _torn_down(world)
    assert f"ceph auth del client.{APP}" in world.ctx.action_results["next-steps"]


# --- 15. no hook crashes on bad config -----------------------------------------------------


def test_rule15_a_bad_pool_list_with_the_source_down_is_a_status_not_a_crash(world):
    world.src.unreachable = True
    out = world.run(world.ctx.on.update_status(), ready_state(config={"pools": "nova;x"}))
    assert out.unit_status.name == "blocked" and "invalid pool name" in out.unit_status.message


# --- 16. large pools through Juju --------------------------------------------------------------


def test_rule16_verbose_status_of_1000_images_fits_through_action_set(
    world, tmp_path, monkeypatch
):
    world.src.pool_images["cinder-ceph"] = [FakeImage(f"volume-{n:05d}") for n in range(1000)]
    state = _migrated(world)
    _act(world, state, "status", verbose=True)
    results = dict(world.ctx.action_results or {})
    # Through ops' own action-set call, exec'd as Juju's hook tool is: the kernel refuses an
    # argument over 128 KiB (E2BIG), which is what broke the packed charm at ~550 images.
    tool = tmp_path / "bin" / "action-set"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\nexit 0\n")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tool.parent}:{os.environ['PATH']}")
    _ModelBackend(unit_name=f"{APP}/0", model_name="m", model_uuid="u").action_set(results)
    assert results["image-status-total"] == 1003 and results["image-status-shown"] == 100
    assert len(json.loads(Path(results["image-status-file"]).read_text())) == 1003


# --- 17. the smaller ones ------------------------------------------------------------------


def test_rule17_dry_run_results_are_lowercase_words(world):
    world.service["running"] = True
    _act(world, ready_state(), "enable-mirroring", **{"dry-run": True})
    assert world.ctx.action_results["dry-run"] == "true"


def test_rule17_a_stale_failed_broker_reply_does_not_block(world):
    stale = json.dumps({"exit-code": 1, "stderr": "old failure", "request-id": "older"})
    state = testing.State(
        relations=[source_relation(**{f"broker-rsp-{APP}-0": stale}), destination_relation()]
    )
    out = world.run(world.ctx.on.update_status(), state)
    assert "old failure" not in out.unit_status.message


def test_rule17_a_failed_reply_to_our_own_request_is_shown(world):
    request_id, body = relations.source_key_request(APP)
    fresh = json.dumps({"exit-code": 1, "stderr": "new failure", "request-id": request_id})
    state = testing.State(
        relations=[
            testing.Relation(
                endpoint="source",
                interface="ceph-client",
                local_unit_data={"broker_req": body},
                remote_units_data={
                    0: dict(
                        source_relation().remote_units_data[0], **{f"broker-rsp-{APP}-0": fresh}
                    )
                },
            ),
            destination_relation(),
        ]
    )
    out = world.run(world.ctx.on.update_status(), state)
    assert out.unit_status.name == "blocked" and "new failure" in out.unit_status.message


def test_rule17_systemctl_calls_are_bounded(tmp_path, monkeypatch):
    slow = tmp_path / "systemctl"
    slow.write_text("#!/bin/sh\nsleep 30\n")
    slow.chmod(0o755)
    monkeypatch.setattr(daemon, "SYSTEMCTL", str(slow))
    monkeypatch.setattr(daemon, "SERVICE_TIMEOUT_S", 0.5)
    with pytest.raises(ServiceError, match="did not answer"):
        daemon.RbdMirrorDaemon(tmp_path, "h", "client.app").running()


@pytest.mark.parametrize("timeout", [0, 3601, 100000])
def test_rule17_demote_promote_timeout_has_a_maximum(world, timeout):
    with pytest.raises(testing.ActionFailed) as exc:
        _act(world, ready_state(), "demote-promote", timeout=timeout)
    assert "timeout" in exc.value.message


def test_rule17_command_timeout_has_a_maximum(world):
    out = world.run(world.ctx.on.update_status(), ready_state(config={"command-timeout": 3600}))
    assert out.unit_status.name == "blocked" and "command-timeout" in out.unit_status.message


def test_rule17_rerun_after_partial_demotion_names_the_dead_daemon(world):
    state = _migrated(world)
    world.src.pool_demote("nova")  # an earlier run got this far
    world.service["running"] = False
    with pytest.raises(testing.ActionFailed) as exc:
        _act(world, state, "demote-promote", timeout=5)
    assert "rbd-mirror daemon is not running" in exc.value.message


def test_rule17_source_cluster_name_change_mid_migration_is_refused(world):
    state = _migrated(world)
    out = world.run(
        world.ctx.on.config_changed(),
        testing.State(
            relations=state.relations,
            config={"source-cluster-name": "other"},
            stored_states=state.stored_states,
        ),
    )
    assert out.unit_status.name == "blocked" and "changed mid-migration" in out.unit_status.message
    assert not (world.etc / "other.conf").exists()


def test_rule17_erasure_coded_source_pools_are_refused(world, monkeypatch):
    from ceph_cli import PoolInfo

    pools = world.src.pools

    def with_ec():
        return [*pools(), PoolInfo("ec-data", 8, 3, ("rbd",), erasure=True)]

    monkeypatch.setattr(world.src, "pools", with_ec)
    out = world.run(world.ctx.on.update_status(), ready_state())
    assert out.unit_status.name == "blocked" and "erasure-coded" in out.unit_status.message


# --- found by the hostile review of these rules ----------------------------------------------


def test_rule3_force_refused_when_the_source_answers_with_errors(world, monkeypatch):
    from ceph_cli import CephError

    state = _migrated(world)

    def denied(pool, **kwargs):
        raise CephError("source", ["rbd_bulk pool-state"], 1, "PermissionError: [errno 13]")

    monkeypatch.setattr(world.src, "pool_state", denied)  # an answer, not a lost cluster
    with pytest.raises(testing.ActionFailed) as exc:
        _act(world, state, "demote-promote", force=True)
    assert "the source answers" in exc.value.message
    assert not any(i.primary for imgs in world.dst.pool_images.values() for i in imgs)


def test_rule2_split_brain_after_a_forced_teardown_is_reported(world):
    state = _split_brain(world)  # forced promotion, source back and primary
    world.src.unreachable = True
    state = _act(world, state, "teardown", force=True)
    world.src.unreachable = False
    out = world.run(world.ctx.on.update_status(), state)
    assert out.unit_status.name == "blocked" and "SPLIT-BRAIN" in out.unit_status.message


def test_rule7_a_volume_created_after_teardown_is_named(world):
    state = _torn_down(world)
    world.src.pool_images["cinder-ceph"].append(FakeImage("volume-after"))
    out = world.run(world.ctx.on.update_status(), state)
    assert out.unit_status.name == "blocked"
    assert "cinder-ceph/volume-after" in out.unit_status.message


def test_rule4_a_dot_mgr_pool_on_the_destination_does_not_crash_the_disaster_path(world):
    _migrated(world)
    world.dst.pool_images[".mgr"] = []
    world.src.unreachable = True
    state = testing.State(
        relations=[source_relation(), destination_relation(pools=(*world.dst.pool_images,))]
    )
    _act(world, state, "demote-promote", force=True)
    assert all(i.primary for p in ("glance", "nova") for i in world.dst.pool_images[p])


def test_rule13_a_restart_survives_a_hook_that_crashes_after_writing_files(world, monkeypatch):
    world.service["running"] = True
    state = world.run(world.ctx.on.update_status(), ready_state())
    starts = world.service["starts"]

    def crash(self, config):
        raise RuntimeError("the hook dies after the files were written")

    original = session.Session.pool_requests
    monkeypatch.setattr(session.Session, "pool_requests", crash)
    changed = testing.State(
        relations=state.relations,
        config={"rbd-mirror-concurrent-image-syncs": 7},
        stored_states=state.stored_states,
    )
    with pytest.raises(testing.errors.UncaughtCharmError):
        world.run(world.ctx.on.config_changed(), changed)
    monkeypatch.setattr(session.Session, "pool_requests", original)
    world.run(world.ctx.on.update_status(), changed)
    assert world.service["starts"] == starts + 1, "the restart was done by the next hook"


def test_rule9_narrowing_config_pools_mid_migration_is_refused(world):
    state = _migrated(world)
    narrowed = testing.State(
        relations=state.relations, config={"pools": "nova"}, stored_states=state.stored_states
    )
    out = world.run(world.ctx.on.config_changed(), narrowed)
    assert out.unit_status.name == "blocked" and "leaves out cinder-ceph, glance" in (
        out.unit_status.message
    )
    with pytest.raises(testing.ActionFailed):
        _act(world, out, "teardown")
    assert world.service["running"] and _modes(world.dst) == {"pool"}


def test_rule9_a_staged_migration_pool_by_pool_runs_to_the_end(world):
    state = _migrated(world)
    state = _act(world, state, "demote-promote", pools="nova")
    state = _act(world, state, "teardown", pools="nova")
    out = world.run(world.ctx.on.update_status(), state)
    assert out.unit_status.message.endswith("ready for cutover"), out.unit_status
    state = _act(world, out, "demote-promote")
    assert set(json.loads((world.ctx.action_results or {})["promoted"])) == {
        "glance",
        "cinder-ceph",
    }
    _act(world, state, "teardown")
    assert (world.ctx.action_results or {})["daemon-stopped"] == "true"


def test_rule8_an_interrupted_enable_on_an_empty_pool_is_not_torn_down(world, monkeypatch):
    from ceph_cli import CephError

    world.service["running"] = True
    world.src.pool_images["cinder-ceph"] = []
    real = world.dst.mirror_pool_enable

    def dies_once(pool, mode="pool"):
        monkeypatch.setattr(world.dst, "mirror_pool_enable", real)
        raise CephError("ceph", ["mirror pool enable"], None, "")

    monkeypatch.setattr(world.dst, "mirror_pool_enable", dies_once)
    with pytest.raises(testing.ActionFailed):
        _act(world, ready_state(), "enable-mirroring")
    _act(world, ready_state(), "enable-mirroring")  # the re-run finishes the job
    assert _modes(world.dst) == {"pool"}


def test_rule14_files_written_under_an_earlier_source_name_are_removed(world):
    state = world.run(
        world.ctx.on.update_status(), ready_state(config={"source-cluster-name": "old"})
    )
    renamed = testing.State(
        relations=state.relations,
        config={"source-cluster-name": "new"},
        stored_states=state.stored_states,
    )
    world.run(world.ctx.on.remove(), renamed)
    assert list(world.etc.iterdir()) == []


def test_rule6_a_running_daemon_that_publishes_nothing_blocks_the_unit(world):
    state = _migrated(world)
    for name in ("img", "a_disk", "b_disk", "volume-1"):
        world.dst.states[name] = ("down+unknown", "status not found")
    out = world.run(world.ctx.on.update_status(), state)
    assert out.unit_status.name == "blocked" and "down+" in out.unit_status.message


def test_rule10_a_stopped_replayer_is_not_read_as_a_cutover_from_its_wording(world):
    state = _migrated(world)
    world.dst.states["volume-1"] = ("up+stopped", "stopped")
    _act(world, state, "status")
    assert (world.ctx.action_results or {})["ready-for-cutover"] == "false"
    with pytest.raises(testing.ActionFailed) as exc:
        _act(world, state, "demote-promote")
    assert "cinder-ceph/volume-1: up+stopped" in exc.value.message
    assert all(i.primary for imgs in world.src.pool_images.values() for i in imgs)


def test_rule3_force_refused_when_a_fresh_connection_reaches_the_source(world, monkeypatch):
    """Review finding: one connection that timed out is not a lost source."""
    state = _migrated(world)
    world.src.unreachable = True
    monkeypatch.setattr(world.src, "confirm_lost", lambda: False)  # the second attempt answers
    with pytest.raises(testing.ActionFailed) as exc:
        _act(world, state, "demote-promote", force=True)
    assert "the source answers" in exc.value.message
    assert not any(i.primary for imgs in world.dst.pool_images.values() for i in imgs)
    with pytest.raises(testing.ActionFailed) as exc:
        _act(world, state, "teardown", force=True)
    assert "refusing teardown" in exc.value.message and _modes(world.dst) == {"pool"}


def test_rule9_an_enable_mirroring_that_fails_part_way_still_guards_its_pools(world):
    """Review finding: the record was saved only after a complete run."""
    world.service["running"] = True
    world.src.fail_images.add("volume-1")
    with pytest.raises(testing.ActionFailed) as exc:
        _act(world, ready_state(), "enable-mirroring")
    assert "journaling could not be enabled" in exc.value.message
    state = cast(testing.State, exc.value.state)  # the output state, with the unit's record
    narrowed = testing.State(
        relations=state.relations, config={"pools": "nova"}, stored_states=state.stored_states
    )
    out = world.run(world.ctx.on.config_changed(), narrowed)
    assert out.unit_status.name == "blocked" and "leaves out cinder-ceph, glance" in (
        out.unit_status.message
    )


def test_rule17_a_failed_broker_reply_is_shown_but_stops_neither_actions_nor_the_daemon(world):
    """Review finding: ceph-mon failing to create a new pool made every action refuse."""
    state = world.run(world.ctx.on.update_status(), _migrated(world))
    world.src.pool_images["backups"] = [FakeImage("vol-b")]  # a new rbd pool on the source
    state = world.run(world.ctx.on.update_status(), state)  # asks ceph-mon for it
    sent = next(r for r in state.relations if r.endpoint == "destination").local_unit_data
    request_id = json.loads(sent["broker_req"])["request-id"]
    rsp = json.dumps({"exit-code": 1, "stderr": "ERANGE: pg_num", "request-id": request_id})
    failed = destination_relation(**{"broker-rsp-rbd-mirror-migration-0": rsp})
    state = testing.State(relations=[source_relation(), failed], stored_states=state.stored_states)
    world.service["running"] = False
    out = world.run(world.ctx.on.update_status(), state)
    assert out.unit_status.name == "blocked" and "could not create the pools" in (
        out.unit_status.message
    )
    assert world.service["running"], "the daemon is started all the same"
    migrated = "glance,nova,cinder-ceph"
    _act(world, out, "status", pools=migrated)
    assert world.ctx.action_results["ready-for-cutover"] == "true"
    out = _act(world, out, "demote-promote", pools=migrated)
    assert all(
        i.primary for p in ("glance", "nova", "cinder-ceph") for i in world.dst.pool_images[p]
    )
    with pytest.raises(testing.ActionFailed) as exc:
        _act(world, out, "enable-mirroring", pools="backups")
    assert "waiting for destination pools: backups" in exc.value.message


def test_rule10_an_untagged_pool_holding_images_blocks_the_default_selection(world):
    """Review finding: with config pools empty, cinder-ceph without its tag was left behind."""
    world.src.untagged.add("cinder-ceph")
    out = world.run(world.ctx.on.update_status(), ready_state())
    assert out.unit_status.name == "blocked" and "cinder-ceph hold RBD images" in (
        out.unit_status.message
    )
    with pytest.raises(testing.ActionFailed):
        _act(world, out, "enable-mirroring")
    assert _modes(world.src) == {"disabled"} or not world.src.modes
    configured = testing.State(relations=out.relations, config={"pools": "glance,nova"})
    assert world.run(world.ctx.on.update_status(), configured).unit_status.name == "active"


def test_rule3_force_names_the_images_not_caught_up_and_the_unit_says_teardown_next(world):
    """Review finding: force promoted a half-synced volume without naming it."""
    state = _migrated(world)
    world.dst.states["volume-1"] = ("up+syncing", "bootstrapping, IMAGE_SYNC 40%")
    world.src.unreachable = True
    out = _act(world, state, "demote-promote", force=True)
    results = world.ctx.action_results
    assert results["forced"] == "true" and results["at-risk-count"] == 1
    assert json.loads(results["at-risk"]) == ["cinder-ceph/volume-1: up+syncing"]
    assert any("volume-1" in line for line in world.ctx.action_logs)
    status = world.run(world.ctx.on.update_status(), out).unit_status
    assert status.name == "blocked" and "teardown force=true" in status.message


def test_rule17_a_dry_run_teardown_says_nothing_changed(world):
    state = _act(world, _migrated(world), "demote-promote")
    _act(world, state, "teardown", **{"dry-run": True})
    results = world.ctx.action_results
    assert results["dry-run"] == "true" and "nothing changed" in results["next-steps"]
    assert _modes(world.dst) == {"pool"}


def test_rule9_leaving_an_unfinished_migration_says_the_source_stays_journaled(world, caplog):
    state = _migrated(world)
    state = world.run(world.ctx.on.remove(), state)
    assert any("stay mirrored" in r.getMessage() for r in caplog.records)
    assert not world.service["running"]
    status = state.unit_status
    assert status.name == "maintenance", status
    assert status.message.startswith("leaving with the migration of cinder-ceph, glance, nova")
    assert "Leaving a migration unfinished" in status.message


def test_rule9_a_unit_that_leaves_before_any_migration_says_what_it_removed(world):
    state = world.run(world.ctx.on.stop(), ready_state())
    assert state.unit_status.name == "maintenance"
    assert state.unit_status.message == (
        "leaving: rbd-mirror stopped and disabled, this unit's files removed"
    )


def test_rule9_enable_mirroring_commits_its_record_before_its_first_change(world, monkeypatch):
    """Review finding: StoredState was committed only when the dispatch ended well."""
    import ops

    seen = []
    real = ops.Framework.commit

    def commit(self):
        seen.append(dict(world.src.modes))
        real(self)

    monkeypatch.setattr(ops.Framework, "commit", commit)
    world.service["running"] = True
    _act(world, ready_state(), "enable-mirroring")
    assert seen[0] == {}, "the record was committed before the source changed"
    assert seen[-1] and set(seen[-1].values()) == {"pool"}


def test_rule2_split_brain_outranks_a_failed_broker_reply_in_the_unit_status(world):
    """Review finding: a stale broker failure hid SPLIT-BRAIN and every later phase."""
    state = _split_brain(world)
    world.src.pool_images["backups"] = [FakeImage("vol-b")]  # ceph-mon cannot create it
    state = world.run(world.ctx.on.update_status(), state)
    sent = next(r for r in state.relations if r.endpoint == "destination").local_unit_data
    request_id = json.loads(sent["broker_req"])["request-id"]
    rsp = json.dumps({"exit-code": 1, "stderr": "ERANGE: pg_num", "request-id": request_id})
    failed = destination_relation(**{"broker-rsp-rbd-mirror-migration-0": rsp})
    state = testing.State(relations=[source_relation(), failed], stored_states=state.stored_states)
    status = world.run(world.ctx.on.update_status(), state).unit_status
    assert status.name == "blocked" and "SPLIT-BRAIN" in status.message
    del world.src.pool_images["backups"]  # every pool to migrate exists: the failure is old news
    world.dst.image("cinder-ceph", "volume-1").primary = False  # the operator kept the source's
    world.dst.image("glance", "img").primary = False
    for image in world.dst.pool_images["nova"]:
        image.primary = False
    status = world.run(world.ctx.on.update_status(), state).unit_status
    assert "could not create the pools" not in status.message and "SPLIT-BRAIN" not in (
        status.message
    )


def test_rule2_a_subset_run_refuses_a_split_brain_in_another_pool(world):
    state = _split_brain(world)
    for action in ("enable-mirroring", "demote-promote", "teardown"):
        with pytest.raises(testing.ActionFailed) as exc:
            _act(world, state, action, pools="glance")
        assert "SPLIT-BRAIN" in exc.value.message, action


def test_rule7_the_unit_status_after_a_subset_action_reads_the_clusters_again(world):
    """Review finding: the report read before the changes was shown after them."""
    out = _act(world, _migrated(world), "demote-promote", pools="nova")
    assert "ready for cutover" not in out.unit_status.message
    assert "cutover in progress" in out.unit_status.message


def test_rule17_a_finished_teardown_whose_stop_failed_gives_the_next_steps(world, monkeypatch):
    state = _cut_over(world)

    def failing_stop(self):
        raise ServiceError("could not stop")

    monkeypatch.setattr(charm.RbdMirrorDaemon, "stop", failing_stop)
    _act(world, state, "teardown")
    results = world.ctx.action_results
    assert results["daemon-stopped"] == "false"
    assert (
        "next hook stops it" in results["next-steps"]
        and "remove-relation" in (results["next-steps"])
    )
