"""Pure parts of the workflow: pool selection, status descriptions, teardown order."""

from __future__ import annotations

import pytest

from ceph_cli import ImageInfo, ImageStatus, PoolInfo
from migration import MigrationError, parse_description, select_pools
from teardown import _clone_levels, _disable_order

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
    order = _disable_order(images)
    assert order.index("nova") < order.index("glance")
    assert order.index("cinder-ceph") < order.index("glance")


def test_pool_cycle_still_orders_every_pool():
    images = {"a": [ImageInfo("x", parent="b/y@s")], "b": [ImageInfo("y", parent="a/x@s")]}
    assert sorted(_disable_order(images)) == ["a", "b"]


def test_clones_inside_a_pool_come_before_their_parents():
    imgs = [
        ImageInfo("base"),
        ImageInfo("snapclone", parent="cinder/base@s"),
        ImageInfo("deeper", parent="cinder/snapclone@s"),
    ]
    assert _clone_levels("cinder", imgs) == [["deeper"], ["snapclone"], ["base"]]


def test_images_of_the_same_clone_depth_share_a_level():
    imgs = [ImageInfo("b"), ImageInfo("a"), ImageInfo("c1", parent="p/b@s"), ImageInfo("c2")]
    assert _clone_levels("p", imgs) == [["c1"], ["a", "b", "c2"]]
