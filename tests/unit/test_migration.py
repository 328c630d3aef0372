"""The workflow without the charm: pure parts, then each phase over the in-memory clusters."""

from __future__ import annotations

import pytest

import migration
from ceph_cli import CephError, ImageInfo, ImageStatus, PoolInfo
from migration import MigrationError, Options, PeerSpec, parse_description, select_pools
from teardown import clone_levels, disable_order
from tests.unit.fake_ceph import FakeCluster, make_pair, mirror

SOURCE = [
    PoolInfo("nova", 8, 1, ("rbd",)),
    PoolInfo("glance", 8, 1, ("rbd",)),
    PoolInfo("metrics", 1, 1, ("mgr_devicehealth",)),
]


def test_empty_config_means_every_rbd_pool():
    assert select_pools((), SOURCE, None) == ["glance", "nova"]


def test_subset_must_be_configured():
    with pytest.raises(MigrationError, match="unknown pool"):
        select_pools(("nova",), SOURCE, "glance")


def test_no_rbd_pool_on_source_is_an_error():
    with pytest.raises(MigrationError, match="no pool with application rbd"):
        select_pools((), [PoolInfo("x", 1, 1, ())], None)


def test_description_json_is_parsed_and_junk_ignored():
    desc = 'replaying, {"bytes_per_second":17.5,"entries_behind_primary":3}'
    assert parse_description(desc)["entries_behind_primary"] == 3
    assert parse_description("starting replay") == {}
    assert parse_description("replaying, {broken") == {}
    assert parse_description("replaying, master_position=[...], entries_behind_master=0") == {}


def test_lagging_replay_is_not_caught_up():
    report = ImageStatus(
        "nova", "a", "up+replaying", 'replaying, {"entries_behind_primary":4}', ""
    )
    assert not report.caught_up and report.entries_behind == 4


def test_clone_pools_are_disabled_before_parent_pools():
    images = {
        "glance": [ImageInfo("img")],
        "nova": [ImageInfo("a", parent="glance/img@snap")],
        "cinder-ceph": [ImageInfo("v", parent="glance/img@snap"), ImageInfo("w")],
    }
    order = disable_order(images)
    assert order.index("nova") < order.index("glance")
    assert order.index("cinder-ceph") < order.index("glance")


def test_pool_cycle_still_orders_every_pool():
    images = {"a": [ImageInfo("x", parent="b/y@s")], "b": [ImageInfo("y", parent="a/x@s")]}
    assert sorted(disable_order(images)) == ["a", "b"]


def test_clones_inside_a_pool_come_before_their_parents():
    imgs = [
        ImageInfo("base"),
        ImageInfo("snapclone", parent="cinder/base@s"),
        ImageInfo("deeper", parent="cinder/snapclone@s"),
    ]
    assert clone_levels("cinder", imgs) == [["deeper"], ["snapclone"], ["base"]]


def test_images_of_the_same_clone_depth_share_a_level():
    imgs = [ImageInfo("b"), ImageInfo("a"), ImageInfo("c1", parent="p/b@s"), ImageInfo("c2")]
    assert clone_levels("p", imgs) == [["c1"], ["a", "b", "c2"]]


# --- the workflow driven directly, over the in-memory fake (no charm, no ops) ---------------

PEER = PeerSpec(client_name="client.rbd-mirror-migration", site_name="source")
POOLS = ("glance", "nova", "cinder-ceph")


def _enabled_and_synced() -> tuple[FakeCluster, FakeCluster]:
    src, dst = make_pair()
    migration.enable_mirroring(src, dst, POOLS, PEER, Options())
    mirror(src, dst)
    return src, dst


def _cut_over(src: FakeCluster, dst: FakeCluster, **kwargs) -> migration.CutoverResult:
    return migration.demote_promote(
        src, dst, POOLS, Options(), timeout=60, force=False, daemon_running=True, **kwargs
    )


def test_enable_mirroring_dry_run_lists_every_change_and_makes_none():
    src, dst = make_pair()
    results = migration.enable_mirroring(src, dst, POOLS, PEER, Options(dry_run=True))
    assert {r.pool for r in results} == set(POOLS)
    assert all(r.changes for r in results)
    assert not src.modes and not dst.modes and not dst.peers


def test_enable_mirroring_twice_changes_nothing_the_second_time():
    src, dst = _enabled_and_synced()
    again = migration.enable_mirroring(src, dst, POOLS, PEER, Options())
    assert all(r.changes == [] for r in again)


def test_enable_mirroring_records_before_its_first_change_and_not_in_a_dry_run():
    src, dst = make_pair()
    seen = []
    migration.enable_mirroring(
        src, dst, POOLS, PEER, Options(dry_run=True), before_changes=lambda _: seen.append(1)
    )
    assert seen == []
    migration.enable_mirroring(
        src, dst, POOLS, PEER, Options(), before_changes=lambda _: seen.append(src.modes.copy())
    )
    assert seen == [{}], "called once, before the source was changed"


def test_the_promotion_is_retried_while_librbd_answers_ebusy():
    src, dst = _enabled_and_synced()
    dst.promote_busy = 2  # two EBUSY answers in the first round, across pools
    sleeps = []
    result = _cut_over(src, dst, sleep=sleeps.append)
    assert result.attempts == 2 and sleeps == [1.0]
    assert all(i.primary for imgs in dst.pool_images.values() for i in imgs)
    assert not any(i.primary for imgs in src.pool_images.values() for i in imgs)


def test_an_error_other_than_ebusy_ends_the_promotion_at_once():
    src, dst = _enabled_and_synced()

    def denied(pool, *, force=False):
        raise CephError("ceph", ["promote"], 13, "permission denied")

    dst.pool_promote = denied  # type: ignore[method-assign]
    with pytest.raises(CephError, match="permission denied"):
        _cut_over(src, dst, sleep=lambda s: pytest.fail("no retry after a non-EBUSY error"))


def test_teardown_falls_back_to_image_by_image_clones_first_when_the_pool_is_busy():
    src, dst = _enabled_and_synced()
    _cut_over(src, dst)
    dst.busy_pools.add("glance")
    result = migration.teardown(src, dst, POOLS, PEER, Options())
    assert result.order.index("nova") < result.order.index("glance")
    assert set(dst.modes.values()) == {"disabled"}
    assert not any(i.mirror_enabled for imgs in dst.pool_images.values() for i in imgs)


def test_teardown_removes_journaling_left_behind_by_the_pool_disable():
    src, dst = _enabled_and_synced()
    _cut_over(src, dst)
    dst.sticky_journaling.add("volume-1")
    result = migration.teardown(src, dst, POOLS, PEER, Options())
    assert "cinder-ceph/volume-1" in str(result.journaling_removed)
    assert "journaling" not in dst.image("cinder-ceph", "volume-1").features


def test_every_phase_refuses_a_split_brain_and_changes_nothing():
    src, dst = _enabled_and_synced()
    dst.image("cinder-ceph", "volume-1").primary = True  # promoted by force, source back
    calls = len(src.calls), len(dst.calls)
    for phase in (
        lambda: migration.enable_mirroring(src, dst, POOLS, PEER, Options()),
        lambda: _cut_over(src, dst),
        lambda: migration.teardown(src, dst, POOLS, PEER, Options()),
    ):
        with pytest.raises(MigrationError, match="SPLIT-BRAIN"):
            phase()
    changing = [c for c in src.calls[calls[0] :] + dst.calls[calls[1] :] if not _is_read(c)]
    assert changing == [], "only reads"


def _is_read(call: str) -> bool:
    return call.startswith(("bulk pool-state", "osd pool ls", "bulk mirrored", "mirror pool info"))


def test_teardown_of_the_parents_pool_alone_is_refused_while_its_clones_are_mirrored():
    """Review finding: teardown pools=glance removed the peers, then librbd said EBUSY."""
    src, dst = _enabled_and_synced()
    _cut_over(src, dst)
    calls = len(dst.calls)
    with pytest.raises(MigrationError, match="nothing changed.*nova/.*clone of glance/"):
        migration.teardown(src, dst, ["glance"], PEER, Options(), all_pools=POOLS)
    assert not [c for c in dst.calls[calls:] if "peer remove" in c or "disable" in c]
    migration.teardown(src, dst, ["nova"], PEER, Options(), all_pools=POOLS)
    migration.teardown(src, dst, ["glance"], PEER, Options(), all_pools=POOLS)
    assert dst.modes["glance"] == "disabled" and dst.modes["nova"] == "disabled"
