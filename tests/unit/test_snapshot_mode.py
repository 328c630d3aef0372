"""Snapshot mode's branches over the in-memory clusters (Ceph's behaviour: functional tests).

Each phase in snapshot mode, what differs from journal mode (mirror_modes.py), the release
rules (ceph_release.py) and the charm's wiring: config, the action's `mode`, the refusals,
the charm's own snapshots where the source's mgr will not schedule them.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from types import SimpleNamespace

import pytest
from ops import testing

import ceph_release
import cutover
import daemon
import migration
import mirror_modes
import session
from ceph_cli import EBUSY, CephError, ImageStatus
from ceph_release import CephVersion, ClusterVersions, ReleasePair
from migration import MigrationError, Options, PeerSpec
from mirror_modes import EROFS, JOURNAL, MODES, SNAPSHOT, interval_seconds, mode
from record import Record
from tests.unit.conftest import World, ready_state
from tests.unit.fake_ceph import FakeCluster, FakeImage, make_pair, mirror

PEER = PeerSpec(client_name="client.rbd-mirror-migration", site_name="source")
POOLS = ("glance", "cinder-ceph")  # no clones: what snapshot mode carries
SNAP = MODES[SNAPSHOT]


def _pair() -> tuple[FakeCluster, FakeCluster]:
    src, dst = make_pair()
    for cluster in (src, dst):
        del cluster.pool_images["nova"]
    return src, dst


def _enable(src, dst, *, sleep=lambda _: None, interval="5m", **kw) -> list:
    src.registered |= set(POOLS) if kw.pop("registered", True) else set()
    return migration.enable_mirroring(
        src, dst, POOLS, PEER, Options(), mode=SNAP, snapshot_interval=interval, sleep=sleep, **kw
    )


def _synced() -> tuple[FakeCluster, FakeCluster]:
    src, dst = _pair()
    _enable(src, dst)
    mirror(src, dst)
    return src, dst


def _images(cluster: FakeCluster) -> list[FakeImage]:
    return [i for imgs in cluster.pool_images.values() for i in imgs]


# --- mirror_modes: the one table ---------------------------------------------------------


def test_each_mode_names_its_pool_mode_and_its_promote_pending_errno():
    assert (MODES[JOURNAL].pool_mode, MODES[JOURNAL].promote_pending_rc) == ("pool", EBUSY)
    assert (SNAP.pool_mode, SNAP.promote_pending_rc) == ("image", EROFS)
    with pytest.raises(ValueError, match="journal, snapshot"):
        mode("rsync")


@pytest.mark.parametrize(
    "description, caught_up",
    [
        ('replaying, {"replay_state":"idle","local_snapshot_timestamp":5,'
         '"remote_snapshot_timestamp":5}', True),
        ('replaying, {"replay_state":"syncing","local_snapshot_timestamp":5,'
         '"remote_snapshot_timestamp":5}', False),
        ('replaying, {"replay_state":"idle","local_snapshot_timestamp":4,'
         '"remote_snapshot_timestamp":5}', False),
        ('replaying, {"replay_state":"idle"}', False),
    ],
)  # fmt: skip
def test_a_snapshot_image_is_caught_up_only_idle_with_the_newest_snapshot_copied(
    description, caught_up
):
    image = ImageStatus("p", "i", "up+replaying", description, "", mode=SNAPSHOT)
    assert image.caught_up is caught_up


@pytest.mark.parametrize(
    "text, seconds", [("1m", 60), ("5m", 300), ("2h", 7200), ("1d", 86400), (" 3m ", 180)]
)
def test_snapshot_interval_in_ceph_schedule_syntax(text, seconds):
    assert interval_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "0m", "30s", "5", "m", "1w", "5m;rm"])
def test_a_bad_snapshot_interval_is_refused_with_the_syntax(text):
    with pytest.raises(ValueError, match="whole number of minutes"):
        interval_seconds(text)


def test_an_image_mirrored_in_the_other_mode_or_journaled_is_refused_in_snapshot_mode():
    assert "journal mode" in SNAP.image_refusal("journal", ())
    assert "journaling feature" in SNAP.image_refusal("", ("journaling",))
    assert SNAP.image_refusal("", ("layering",)) == ""
    assert SNAP.image_refusal("snapshot", ()) == ""
    assert "snapshot mode" in MODES[JOURNAL].image_refusal("snapshot", ())


# --- ceph_release: which releases may ----------------------------------------------------


def _pair_of(source: str, tools: str = "19.2.1") -> ReleasePair:
    def versions(text: str) -> ClusterVersions:
        version = CephVersion(*map(int, text.split(".")))
        return ClusterVersions(mons=(version,), osds=(version,))

    tool = CephVersion(*map(int, tools.split(".")))
    return ReleasePair(versions(source), versions("19.2.1"), {"rbd": tool, "rbd-mirror": tool})


@pytest.mark.parametrize(
    "source, refused",
    [("14.2.22", True), ("15.2.14", True), ("15.2.15", False), ("16.2.6", True),
     ("16.2.7", False), ("17.2.0", False), ("19.2.1", False)],
)  # fmt: skip
def test_snapshot_mode_needs_a_source_with_one_way_registration(source, refused):
    why = ceph_release.snapshot_mode_refusal(_pair_of(source))
    assert bool(why) is refused
    if refused:
        assert source in why and "PR 43228" in why and "mode=journal" in why


def test_clones_are_refused_in_snapshot_mode_naming_the_tracker_while_no_release_has_the_fix():
    assert ceph_release.SNAPSHOT_CLONE_FIX is None
    assert "61891" in ceph_release.snapshot_clone_refusal(_pair_of("19.2.1"))


# --- enable-mirroring --------------------------------------------------------------------


def test_enable_in_snapshot_mode_uses_image_mode_and_no_journaling_and_schedules_the_source():
    src, dst = _pair()
    results = _enable(src, dst)
    assert {src.modes[p] for p in POOLS} == {dst.modes[p] for p in POOLS} == {"image"}
    assert all(i.mirror_mode == "snapshot" and i.mirror_enabled for i in _images(src))
    assert not any("journaling" in i.features for i in _images(src))
    assert src.schedules == dict.fromkeys(POOLS, ["5m"])
    assert {r.schedule for r in results} == {"5m"}
    # the snapshot at enable time names no tx peer: a first one once the daemon registered
    assert sum(r.first_snapshots for r in results) == len(_images(src)) == 2
    assert all(i.mirror_snapshots == 2 for i in _images(src))


def test_enable_in_snapshot_mode_twice_changes_nothing_the_second_time():
    src, dst = _synced()
    again = _enable(src, dst)
    assert all(r.changes == [] for r in again)


def test_a_key_without_mgr_caps_leaves_the_snapshots_to_the_charm_and_says_so():
    src, dst = _pair()
    src.schedule_denied = True
    lines: list[str] = []
    results = migration.enable_mirroring(
        src, dst, POOLS, PEER, Options(log=lines.append), mode=SNAP, sleep=lambda _: None
    )
    assert {r.schedule for r in results} == {migration.SELF_SCHEDULED}
    assert any("mgr caps" in line and "update-status" in line for line in lines)


def test_first_snapshots_wait_bounded_for_the_daemon_then_leave_it_to_the_schedule():
    src, dst = _pair()
    sleeps: list[float] = []
    lines: list[str] = []
    results = migration.enable_mirroring(
        src, dst, POOLS, PEER, Options(log=lines.append), mode=SNAP, sleep=sleeps.append
    )
    assert sum(r.first_snapshots for r in results) == 0
    assert 0 < len(sleeps) <= 23, "bounded in count"
    assert any("has not registered on the source yet" in line for line in lines)


@pytest.mark.parametrize("asked, found", [(SNAP, "pool"), (MODES[JOURNAL], "image")])
def test_a_pool_mirrored_in_the_other_mode_is_refused_and_nothing_changes(asked, found):
    src, dst = _pair()
    src.modes["glance"] = found
    calls = len(src.calls), len(dst.calls)
    with pytest.raises(MigrationError, match="other mode, nothing changed.*never converted"):
        migration.enable_mirroring(
            src, dst, POOLS, PEER, Options(), mode=asked, sleep=lambda _: None
        )
    changing = [
        c for c in src.calls[calls[0] :] + dst.calls[calls[1] :] if not c.startswith("bulk")
    ]
    assert not [c for c in changing if "enable" in c or "peer add" in c]
    assert src.modes == {"glance": found} and dst.modes == {}


# --- status, cutover, teardown ----------------------------------------------------------


def _report(src, dst, max_age: float) -> migration.StatusReport:
    return migration.status(src, dst, POOLS, daemon_running=True, snapshot_max_age=max_age)


def test_ready_for_cutover_only_with_a_recent_snapshot_copied_by_every_image():
    src, dst = _synced()
    assert _report(src, dst, 600).ready
    dst.snapshot_lag.add("volume-1")
    assert not _report(src, dst, 600).ready, "not idle on the newest snapshot"
    dst.snapshot_lag.clear()
    stale = _report(src, dst, 600)
    stale.read_at = time.time() + 1200
    assert not stale.ready and "two snapshot periods" in " ".join(stale.reasons)
    assert "check the source's snapshot schedule" in migration.phase(stale)
    pools = _report(src, dst, 600).pools[0].as_dict()
    assert pools["mirror-mode"] == "snapshot" and "oldest-copied-snapshot" in pools


def test_the_promotion_is_retried_while_a_demotion_snapshot_is_still_being_copied():
    src, dst = _synced()
    dst.promote_busy = 2
    sleeps: list[float] = []
    result = migration.demote_promote(
        src,
        dst,
        POOLS,
        Options(),
        timeout=60,
        force=False,
        daemon_running=True,
        sleep=sleeps.append,
    )
    assert result.attempts == 2 and sleeps == [1.0]
    assert all(i.primary for i in _images(dst)) and not any(i.primary for i in _images(src))


def test_snapshot_mode_never_promotes_pool_wide_and_an_image_error_ends_the_cutover():
    src, dst = _synced()
    dst.pool_promote = lambda *a, **k: pytest.fail("pool promote in snapshot mode")  # type: ignore[method-assign]

    def broken(pool, images, *, workers=4):
        return [], {"img": "PermissionError: [errno 13] denied"}

    dst.promote_demoted = broken  # type: ignore[method-assign]
    with pytest.raises(MigrationError, match="could not be promoted.*errno 13"):
        migration.demote_promote(
            src, dst, POOLS, Options(), timeout=60, force=False, daemon_running=True,
            sleep=lambda _: pytest.fail("retried"),
        )  # fmt: skip


def test_teardown_disables_image_by_image_and_removes_the_source_schedules():
    src, dst = _synced()
    migration.demote_promote(
        src, dst, POOLS, Options(), timeout=60, force=False, daemon_running=True
    )
    lines: list[str] = []
    migration.teardown(src, dst, POOLS, PEER, Options(log=lines.append))
    assert {dst.modes[p] for p in POOLS} == {"disabled"}
    assert not any(i.mirror_enabled or i.mirror_snapshots for i in _images(dst))
    assert src.schedules == dict.fromkeys(POOLS, [])
    assert any("image by image" in line for line in lines)


def test_teardown_goes_on_when_the_source_schedule_cannot_be_removed():
    src, dst = _synced()
    migration.demote_promote(
        src, dst, POOLS, Options(), timeout=60, force=False, daemon_running=True
    )
    src.schedule_denied = True
    lines: list[str] = []
    migration.teardown(src, dst, POOLS, PEER, Options(log=lines.append))
    assert {dst.modes[p] for p in POOLS} == {"disabled"}
    assert any("no source mirror snapshot schedule to remove" in line for line in lines)


def test_abort_in_snapshot_mode_puts_the_source_back_and_removes_its_schedules():
    src, dst = _synced()
    migration.abort(src, dst, POOLS, PEER, Options(), journaled={})
    assert {src.modes[p] for p in POOLS} == {dst.modes[p] for p in POOLS} == {"disabled"}
    assert src.schedules == dict.fromkeys(POOLS, []) and not src.registered
    assert all(i.primary and not i.mirror_enabled for i in _images(src))


# --- the charm ---------------------------------------------------------------------------


def _snapshot_world(world: World) -> testing.State:
    del world.src.pool_images["nova"]
    world.src.registered |= set(POOLS)
    world.service["running"] = True
    return ready_state(config={"pools": ",".join(POOLS), "mirror-mode": "snapshot"})


def _act(world: World, state, name: str, **params):
    return world.run(world.ctx.on.action(name, params=params), state)


def test_config_mirror_mode_snapshot_runs_enable_mirroring_in_snapshot_mode(world):
    state = _act(world, _snapshot_world(world), "enable-mirroring")
    results = world.ctx.action_results
    assert results["mode"] == "snapshot"
    assert json.loads(results["pools"])["glance"]["schedule"] == "5m"
    assert {world.src.modes[p] for p in POOLS} == {"image"}
    assert any("enabling snapshot mirroring" in line for line in world.ctx.action_logs)
    assert state.unit_status.name == "active"


def test_the_mode_param_overrides_config_for_one_run(world):
    state = _snapshot_world(world)
    state = dataclasses.replace(state, config={"pools": ",".join(POOLS)})
    _act(world, state, "enable-mirroring", mode="snapshot")
    assert world.ctx.action_results["mode"] == "snapshot"


def test_a_bad_mode_param_fails_and_changes_nothing(world):
    with pytest.raises(testing.ActionFailed, match="journal, snapshot"):
        _act(world, _snapshot_world(world), "enable-mirroring", mode="rsync")
    assert world.src.modes == {} and world.dst.modes == {}


@pytest.mark.parametrize(
    "config, words",
    [({"mirror-mode": "rsync"}, "mirror mode must be one of"),
     ({"snapshot-interval": "30s"}, "snapshot-interval")],
)  # fmt: skip
def test_bad_mirror_config_blocks_the_unit_with_the_reason(world, config, words):
    status = world.run(world.ctx.on.update_status(), ready_state(config=config)).unit_status
    assert status.name == "blocked" and words in status.message


def test_clones_are_refused_in_snapshot_mode_with_the_tracker_and_nothing_changes(world):
    world.service["running"] = True
    state = ready_state(config={"mirror-mode": "snapshot"})
    with pytest.raises(testing.ActionFailed, match="61891") as exc:
        _act(world, state, "enable-mirroring")
    assert "nova/a_disk" in exc.value.message
    assert world.src.modes == {} and world.dst.modes == {}


def test_an_old_source_is_refused_snapshot_mode_with_the_release(world):
    state = _snapshot_world(world)
    world.src.mon_versions = {"ceph version 16.2.6 (abc) pacific (stable)": 1}
    with pytest.raises(testing.ActionFailed, match="16.2.6.*mode=journal"):
        _act(world, state, "enable-mirroring")
    assert world.src.modes == {}


def test_without_mgr_caps_the_charm_takes_the_snapshots_on_update_status_once_per_interval(world):
    world.src.schedule_denied = True
    state = _act(world, _snapshot_world(world), "enable-mirroring")
    assert json.loads(world.ctx.action_results["pools"])["glance"]["schedule"] == "self"
    mirror(world.src, world.dst)
    before = [i.mirror_snapshots for i in _images(world.src)]
    state = world.run(world.ctx.on.update_status(), state)
    after = [i.mirror_snapshots for i in _images(world.src)]
    assert after == [n + 1 for n in before], "one snapshot each: the interval had passed"
    world.run(world.ctx.on.update_status(), state)
    assert [i.mirror_snapshots for i in _images(world.src)] == after, "not again within 5m"


def test_rollback_in_snapshot_mode_makes_the_source_primary_again_and_resyncs():
    src, dst = _synced()
    migration.demote_promote(
        src, dst, POOLS, Options(), timeout=60, force=False, daemon_running=True
    )
    migration.rollback(src, dst, POOLS, PEER, Options())
    assert all(i.primary for i in _images(src)) and not any(i.primary for i in _images(dst))
    assert sorted(dst.resynced) == ["cinder-ceph/volume-1", "glance/img"]


def test_the_daemons_watch_on_a_source_image_is_not_an_instance_still_running():
    from ceph_cli import without_daemons

    watchers = {
        "vol-a": ("127.0.0.1:0/1 (client.4453)",),  # the daemon only
        "vol-b": ("127.0.0.1:0/1 (client.4453)", "10.0.0.9:0/7 (client.9001)"),  # and a VM
        "vol-c": ("10.0.0.9:0/7 (client.44530)",),  # a VM whose id merely starts alike
    }
    assert without_daemons(watchers, {"4453"}) == {
        "vol-b": ("10.0.0.9:0/7 (client.9001)",),
        "vol-c": ("10.0.0.9:0/7 (client.44530)",),
    }


@pytest.mark.parametrize(
    "description, percent",
    [('replaying, {"replay_state":"syncing","syncing_percent":17}', 17),
     ('replaying, {"replay_state":"syncing","syncing_percent":40,'
      '"local_snapshot_timestamp":5}', None),  # a later snapshot's delta, not the image
     ('replaying, {"replay_state":"idle","local_snapshot_timestamp":5}', None),
     ("bootstrapping, IMAGE_SYNC/COPY_IMAGE 23%", 23)],
)  # fmt: skip
def test_the_first_snapshot_sync_counts_in_the_progress_a_later_delta_does_not(
    description, percent
):
    from progress import sync_percent

    assert sync_percent(description) == percent


def test_only_the_leader_takes_the_charms_own_snapshots(world):
    world.src.schedule_denied = True
    state = _act(world, _snapshot_world(world), "enable-mirroring")
    mirror(world.src, world.dst)
    before = [i.mirror_snapshots for i in _images(world.src)]
    world.leader = False
    world.run(world.ctx.on.update_status(), state)
    assert [i.mirror_snapshots for i in _images(world.src)] == before


def test_a_clone_snapshot_mirrored_by_hand_after_enable_blocks_the_cutover():
    src, dst = _synced()
    clone = FakeImage(
        "clone-1", parent="glance/img@snap", mirror_enabled=True, mirror_mode="snapshot"
    )
    src.pool_images["cinder-ceph"].append(clone)
    mirror(src, dst)
    with pytest.raises(MigrationError, match="cinder-ceph/clone-1.*61891"):
        migration.demote_promote(
            src, dst, POOLS, Options(), timeout=60, force=False, daemon_running=True
        )
    assert all(i.primary for i in _images(src)), "nothing changed"


def test_a_forced_snapshot_cutover_names_every_image_at_risk():
    src, dst = _synced()
    src.unreachable = True
    result = migration.demote_promote(
        src, dst, POOLS, Options(), timeout=60, force=True, daemon_running=True
    )
    assert len(result.at_risk) == 2 and "last copied mirror snapshot" in result.at_risk[0]


def test_status_is_not_ready_while_a_clone_is_snapshot_mirrored(world):
    state = _act(world, _snapshot_world(world), "enable-mirroring")
    clone = FakeImage(
        "clone-1", parent="glance/img@snap", mirror_enabled=True, mirror_mode="snapshot"
    )
    world.src.pool_images["cinder-ceph"].append(clone)
    mirror(world.src, world.dst)
    _act(world, state, "status")
    results = world.ctx.action_results
    assert results["ready-for-cutover"] == "false" and "61891" in results["reasons"]


def test_a_clone_created_in_a_snapshot_pool_after_enable_is_told_to_flatten_not_to_switch(
    world,
):
    state = _act(world, _snapshot_world(world), "enable-mirroring")
    clone = FakeImage("clone-1", parent="glance/img@snap")
    world.src.pool_images["cinder-ceph"].append(clone)
    with pytest.raises(testing.ActionFailed) as exc:
        _act(world, state, "enable-mirroring")
    message = exc.value.message
    assert "61891" in message and "rbd flatten cinder-ceph/clone-1" in message, message
    assert "already mirrored in snapshot mode" in message
    assert "mirror this pool with mode=journal" not in message, "a refused way out"
    assert not clone.mirror_enabled, "nothing changed"


def _torn_down_in_journal_mode() -> tuple[FakeCluster, FakeCluster]:
    """Glance and cinder-ceph migrated in journal mode, cut over and torn down."""
    src, dst = _pair()
    migration.enable_mirroring(src, dst, POOLS, PEER, Options())
    mirror(src, dst)
    migration.demote_promote(
        src, dst, POOLS, Options(), timeout=60, force=False, daemon_running=True
    )
    migration.teardown(src, dst, POOLS, PEER, Options())
    return src, dst


def test_a_restart_while_the_finished_migration_left_the_source_demoted_says_what_to_do():
    """Review finding: a restart copied nothing, then advised removing the cloud's images."""
    src, dst = _torn_down_in_journal_mode()
    calls = len(src.calls), len(dst.calls)
    for asked in (SNAP, MODES[JOURNAL]):
        with pytest.raises(MigrationError) as exc:
            migration.enable_mirroring(src, dst, POOLS, PEER, Options(), mode=asked, restart=True)
        message = str(exc.value)
        assert "demoted" in message and "runbook step 13" in message, message
        assert "remove them" not in message
    changing = [c for c in src.calls[calls[0] :] + dst.calls[calls[1] :] if "enable" in c]
    assert changing == [], "nothing changed"


def test_the_finished_migrations_images_are_never_called_removable():
    src, dst = _torn_down_in_journal_mode()
    left_alone = migration.preflight(src, dst, POOLS, Options(), all_pools=POOLS, key_caps="c")
    assert not [f for f in left_alone.findings if f.kind == "destination"], "not a restart"
    checked = migration.preflight(
        src, dst, POOLS, Options(), all_pools=POOLS, key_caps="caps", restart=True
    )
    texts = [str(f) for f in checked.findings if f.kind == "destination"]
    assert texts and all("never remove them" in t for t in texts), texts


@pytest.mark.parametrize("asked", [SNAP, MODES[JOURNAL]])
def test_mixed_modes_are_told_one_run_per_mode_with_its_pools(asked):
    src, dst = _pair()
    _enable(src, dst)  # both pools in snapshot mode
    src.modes["cinder-ceph"] = dst.modes["cinder-ceph"] = "pool"  # as if journal-mirrored
    with pytest.raises(MigrationError) as exc:
        migration.enable_mirroring(src, dst, POOLS, PEER, Options(), mode=asked)
    message = str(exc.value)
    assert "pools=cinder-ceph mode=journal" in message, message
    assert "pools=glance mode=snapshot" in message, message


def test_the_charms_own_schedule_runs_on_update_status_so_readiness_allows_two_hooks():
    assert mirror_modes.snapshot_max_age(60, self_scheduled=False) == 120
    assert mirror_modes.snapshot_max_age(60, self_scheduled=True) == 600, "two 5 min hooks"
    assert mirror_modes.snapshot_max_age(3600, self_scheduled=True) == 7200
    assert mirror_modes.snapshot_due(300, 250), "a hook that comes a little early takes it"
    assert not mirror_modes.snapshot_due(300, 200)


@pytest.mark.parametrize("self_scheduled, ready", [(True, "true"), (False, "false")])
def test_a_4_min_old_snapshot_is_ready_only_where_update_status_takes_them(
    world, self_scheduled, ready
):
    world.src.schedule_denied = self_scheduled
    state = _snapshot_world(world)
    state = dataclasses.replace(state, config={**state.config, "snapshot-interval": "1m"})
    state = _act(world, state, "enable-mirroring")
    mirror(world.src, world.dst)
    world.dst.snapshot_age = 240
    _act(world, state, "status")
    results = world.ctx.action_results
    assert results["ready-for-cutover"] == ready, results["reasons"]
    assert ("two snapshot periods" in results["reasons"]) == (ready == "false")


def test_rollback_promoting_back_after_a_late_write_skips_an_image_the_cutover_never_promoted():
    """Review finding: a pool-wide promote-back promoted an image whose demotion was copying."""
    src, dst = _pair()
    src.pool_images["cinder-ceph"].append(FakeImage("volume-2"))
    _enable(src, dst)
    mirror(src, dst)
    real = dst.promote_demoted

    def volume_2_still_copying(pool, images, *, workers=4):
        done, failed = real(pool, [n for n in images if n != "volume-2"], workers=workers)
        if pool == "cinder-ceph":
            failed["volume-2"] = "ValueError: pending: the demotion snapshot is still copying"
        return done, failed

    dst.promote_demoted = volume_2_still_copying  # type: ignore[method-assign]
    with pytest.raises(MigrationError, match="timed out"):
        migration.demote_promote(
            src, dst, POOLS, Options(), timeout=0, force=False, daemon_running=True,
            sleep=lambda _: None,
        )  # fmt: skip
    assert not dst.image("cinder-ceph", "volume-2").primary
    real_demote = dst.pool_demote

    def a_late_write_then_demote(pool):
        if pool == "cinder-ceph":
            dst.image(pool, "volume-1").written_since_snap = True
        return real_demote(pool)

    dst.pool_demote = a_late_write_then_demote  # type: ignore[method-assign]
    with pytest.raises(MigrationError, match="written while rollback ran"):
        migration.rollback(src, dst, POOLS, PEER, Options())
    assert dst.image("cinder-ceph", "volume-1").primary, "the cutover's promotion restored"
    assert not dst.image("cinder-ceph", "volume-2").primary, "never promoted without its copy"
    assert not any(i.primary for i in _images(src)), "never two primaries"


COPYING = "ValueError: pending: the source's demotion snapshot is still being copied"


def _time_out_with(monkeypatch, answers) -> str:
    """demote-promote over 60 s of a fake clock, each image answering `answers(pool, clock)`."""
    src, dst = _synced()
    clock = [1000.0]
    monkeypatch.setattr(cutover, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    dst.promote_demoted = lambda pool, images, *, workers=4: (  # type: ignore[method-assign]
        [],
        dict.fromkeys(images, answers(pool, clock[0])),
    )
    with pytest.raises(MigrationError) as exc:
        migration.demote_promote(
            src, dst, POOLS, Options(), timeout=90, force=False, daemon_running=True,
            sleep=lambda s: clock.__setitem__(0, clock[0] + s),
        )  # fmt: skip
    assert not any(i.primary for i in _images(src)), "the source stays demoted"
    assert not any(i.primary for i in _images(dst)), "nothing promoted"
    return str(exc.value)


def test_a_demotion_copy_that_stops_moving_is_named_first_in_the_timeout(monkeypatch):
    """A restarted daemon that does not resume a demotion's copy (lab, Pacific).

    The timeout names that image first, its object count and how long it has not moved, and
    says why rollback is the way out; a copy that moves is named without the mark.
    """

    def volume_1_stuck_img_moving(pool, now):
        return f"{COPYING}: object {63 if pool == 'cinder-ceph' else int(now) % 100 + 1} of 128"

    message = _time_out_with(monkeypatch, volume_1_stuck_img_moving)
    assert (
        "(the demotion has not been replayed yet: cinder-ceph/volume-1 (the source's demotion "
        "snapshot is still being copied: object 63 of 128), not moved for the last 90 s, "
        "glance/img (the source's demotion snapshot is still being copied: object " in message
    ), message
    assert message.count("not moved for the last") == 1, message
    assert "may not resume it" in message and "run rollback" in message, message


def test_images_queued_for_a_sync_slot_or_not_arrived_are_never_named_stalled(monkeypatch):
    """Review finding: a queued image reads object 0 until the daemon has a slot for it."""

    def queued_or_not_arrived(pool, now):
        if pool == "cinder-ceph":
            return f"{COPYING}: object 0 of 128"
        return "ValueError: pending: the source's demotion snapshot has not arrived yet"

    message = _time_out_with(monkeypatch, queued_or_not_arrived)
    assert "cinder-ceph/volume-1 (the source's demotion snapshot is still being copied: " in (
        message
    )
    assert "glance/img (the source's demotion snapshot has not arrived yet)" in message
    assert "not moved" not in message and "may not resume" not in message, message
    assert "If an image stays pending run after run, run rollback" in message, message


def test_a_journal_mode_clone_of_a_snapshot_mirrored_parent_pool_is_refused():
    """Review finding: glance in snapshot mode, then nova's clones in journal mode, passed."""
    src, dst = make_pair()
    src.registered |= {"glance"}
    migration.enable_mirroring(
        src, dst, ["glance"], PEER, Options(), mode=SNAP, sleep=lambda _: None
    )
    checked = migration.preflight(
        src, dst, ["nova"], Options(), all_pools=list(src.pool_images), key_caps="caps",
        mode=MODES[JOURNAL],
    )  # fmt: skip
    blocking = [str(f) for f in checked.findings if f.blocks]
    assert blocking and all("mirrored in snapshot mode" in b for b in blocking), blocking
    assert "abort glance and mirror it with mode=journal" in blocking[0]


def _mgr_blip(src):
    real = src.snapshot_schedule

    def blip(pool, interval, *, add):
        if not add:
            raise CephError("source", ["schedule"], 110, "the mgr did not answer")
        return real(pool, interval, add=add)

    src.snapshot_schedule = blip
    return real


def test_abort_with_a_mgr_that_does_not_answer_finishes_and_names_the_schedules_left():
    """Review finding: abort logged a WARNING and left the schedules, unsaid in its result."""
    src, dst = _synced()
    _mgr_blip(src)
    result = migration.abort(src, dst, POOLS, PEER, Options(), journaled={})
    assert set(src.modes.values()) == {"disabled"}, "the abort itself is done"
    assert len(result.schedules_left) == 2
    assert "rbd mirror snapshot schedule remove --pool glance" in result.schedules_left[0]


def test_teardown_with_a_mgr_that_does_not_answer_finishes_and_its_re_run_removes_the_rest():
    src, dst = _synced()
    migration.demote_promote(
        src, dst, POOLS, Options(), timeout=60, force=False, daemon_running=True
    )
    real = _mgr_blip(src)
    result = migration.teardown(src, dst, POOLS, PEER, Options())
    assert {dst.modes[p] for p in POOLS} == {"disabled"} and len(result.schedules_left) == 2
    src.snapshot_schedule = real  # type: ignore[method-assign]
    again = migration.teardown(src, dst, POOLS, PEER, Options())
    assert again.schedules_left == [] and src.schedules == dict.fromkeys(POOLS, [])


def test_the_snapshot_cutover_demotes_image_by_image_side_by_side_journal_mode_by_pool():
    src, dst = _synced()
    migration.demote_promote(
        src, dst, POOLS, Options(), timeout=60, force=False, daemon_running=True
    )
    assert [c for c in src.calls if c.startswith("bulk demote")] == [
        f"bulk demote {p}" for p in POOLS
    ]
    assert not [c for c in src.calls if c.startswith("demote ")], "no serial pool demote"


def test_a_source_image_that_will_not_demote_fails_the_cutover_and_the_re_run_finishes():
    src, dst = _synced()
    src.fail_images.add("volume-1")
    with pytest.raises(MigrationError, match="not demoted.*re-run demote-promote.*volume-1"):
        migration.demote_promote(
            src, dst, POOLS, Options(), timeout=60, force=False, daemon_running=True
        )
    assert not any(i.primary for i in _images(dst)), "nothing promoted"
    src.fail_images.clear()
    migration.demote_promote(
        src, dst, POOLS, Options(), timeout=60, force=False, daemon_running=True
    )
    assert all(i.primary for i in _images(dst)) and not any(i.primary for i in _images(src))


def test_a_rollback_killed_after_its_demotion_flushed_a_late_write_is_put_back_by_the_re_run():
    """Re-review finding: the re-run refused (force only) with no image primary anywhere."""
    src, dst = _synced()
    migration.demote_promote(
        src, dst, POOLS, Options(), timeout=60, force=False, daemon_running=True
    )
    real = dst.pool_demote

    def flushes_a_write_then_the_unit_dies(pool):
        if pool == "cinder-ceph":
            dst.image(pool, "volume-1").written_since_snap = True
        demoted = real(pool)
        if pool == "cinder-ceph":
            raise KeyboardInterrupt("the unit died")
        return demoted

    dst.pool_demote = flushes_a_write_then_the_unit_dies  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        migration.rollback(src, dst, POOLS, PEER, Options())
    dst.pool_demote = real  # type: ignore[method-assign]
    undone = []
    with pytest.raises(MigrationError, match="written while an earlier rollback ran"):
        migration.rollback(
            src, dst, POOLS, PEER, Options(), rolling_back=POOLS, undone=lambda: undone.append(1)
        )
    assert all(i.primary for i in _images(dst)), "the cutover's state again"
    assert not any(i.primary for i in _images(src)) and undone == [1]


# --- the daemon unit's pre-start step (daemon.py's drop-in) follows the migrated pools ----


def _drop_in(world: World) -> str:
    (path,) = (world.etc.parent / "systemd").glob("*/rbd-mirror-migration.conf")
    return path.read_text()


def test_enable_mirroring_puts_its_pools_in_the_pre_start_step(world):
    _act(world, _snapshot_world(world), "enable-mirroring")
    assert '--pools "cinder-ceph,glance"' in _drop_in(world)
    assert "daemon-reload" in world.service["systemctl"]


def test_an_upgrade_finding_the_daemon_running_puts_the_pre_start_step_in_force(world):
    """A revision without the drop-in ran the daemon; systemd may restart it at any time."""
    state = _act(world, _snapshot_world(world), "enable-mirroring")
    for path in (world.etc.parent / "systemd").glob("*/*.conf"):
        path.unlink()
    world.service.update(running=True, starts=0, systemctl=[])
    world.run(world.ctx.on.upgrade_charm(), state)
    assert '--pools "cinder-ceph,glance"' in _drop_in(world)
    assert "daemon-reload" in world.service["systemctl"]


def _reload_fails(monkeypatch) -> dict:
    """`systemctl daemon-reload` exits 1 until the returned dict is cleared."""
    rc = {"daemon-reload": 1}
    real = daemon._systemctl

    def systemctl(*args, timeout=None):
        if args[0] in rc:
            return subprocess.CompletedProcess(args, rc[args[0]], "", "")
        return real(*args, timeout=timeout)

    monkeypatch.setattr(daemon, "_systemctl", systemctl)
    return rc


def test_a_daemon_is_not_started_while_its_pre_start_step_cannot_be_loaded(
    world, monkeypatch, caplog
):
    """An upgrade from a revision without the drop-in, the daemon dead, the reload failing."""
    state = _act(world, _snapshot_world(world), "enable-mirroring")
    for path in (world.etc.parent / "systemd").glob("*/*.conf"):
        path.unlink()
    world.service.update(running=False, starts=0, loaded={})  # systemd loaded none
    rc = _reload_fails(monkeypatch)
    state = world.run(world.ctx.on.update_status(), state)
    assert world.service["starts"] == 0, "never resumed without the rewind in force"
    assert "the pre-start step is not loaded" in caplog.text
    assert caplog.text.count("the pre-start step is not loaded (retried next hook") == 1
    rc.clear()
    state = world.run(world.ctx.on.update_status(), state)
    assert world.service["running"] and '--pools "cinder-ceph,glance"' in _drop_in(world)
    assert any('"cinder-ceph,glance"' in t for t in world.service["loaded"].values()), (
        "started only once systemd loaded it"
    )


def test_enable_mirroring_changes_nothing_while_the_pre_start_step_cannot_cover_its_pools(
    world, monkeypatch
):
    state = _snapshot_world(world)
    _reload_fails(monkeypatch)
    with pytest.raises(
        testing.ActionFailed, match="pre-start step is not loaded; nothing changed"
    ):
        _act(world, state, "enable-mirroring")
    images = [i for p in POOLS for i in world.src.pool_images.get(p, [])]
    assert images and not any(i.mirror_enabled or i.mirror_mode for i in images)
    assert not world.src.modes and not world.dst.modes, "no pool mirrored on either side"


def test_a_hook_that_returns_early_still_puts_the_pre_start_step_in_force(world):
    """An upgrade while the config is blocked, say: the old revision's daemon still runs."""
    state = _act(world, _snapshot_world(world), "enable-mirroring")
    for path in (world.etc.parent / "systemd").glob("*/*.conf"):
        path.unlink()
    bad = dataclasses.replace(state, config={**state.config, "source-cluster-name": "other"})
    out = world.run(world.ctx.on.upgrade_charm(), bad)
    assert out.unit_status.name == "blocked"
    assert '--pools "cinder-ceph,glance"' in _drop_in(world)


def test_junk_pool_names_in_the_record_are_left_out_of_the_pre_start_step(caplog):
    """A hand-edited peer bag: its junk must not stop the daemon from ever starting."""
    asked = []
    daemon_stub = SimpleNamespace(ensure_pre_start=lambda pools: asked.append(pools))
    records = SimpleNamespace(load=lambda: Record(pools=("glance", "bad pool;x")))
    s = session.Session(
        app="app", daemon=daemon_stub, records=records,  # type: ignore[arg-type]
        load_config=lambda: None, load_relations=lambda: None,  # type: ignore[arg-type]
    )  # fmt: skip
    s.keep_copies_protected()
    assert asked == [("glance",)]
    assert "not pool names, left out of the daemon's pre-start step" in caplog.text
