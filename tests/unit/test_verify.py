"""ops.testing tests of verify's branches (Ceph is faked here; the lab proves the comparison)."""

from __future__ import annotations

import json

import pytest
from ops import testing

from ceph_cli import CephError, ImageDigest, Layer
from tests.unit.conftest import World, ready_state
from tests.unit.fake_ceph import mirror
from verify import CHUNK, READS_IN_FLIGHT, compare_image

MIB = 1024 * 1024


def _act(world: World, state, name: str, **params):
    return world.run(world.ctx.on.action(name, params=params), state)


def _content(world: World) -> None:
    """Every source image gets 9 MiB with data in its first and last chunk."""
    for imgs in world.src.pool_images.values():
        for img in imgs:
            img.data = (
                img.name.encode() * 10
                + bytes(9 * MIB - 2 * len(img.name) * 10)
                + (img.name.encode() * 10)
            )


def _cut_over(world: World):
    world.service["running"] = True
    _content(world)
    state = _act(world, ready_state(), "enable-mirroring")
    mirror(world.src, world.dst)
    return _act(world, state, "demote-promote")


def test_verify_passes_when_every_image_is_the_same_and_reads_only_data(world):
    state = _cut_over(world)
    _act(world, state, "verify")
    results = world.ctx.action_results
    assert results["images"] == 4 and results["mismatch-count"] == 0
    assert json.loads(results["mismatches"]) == []
    assert results["bytes-read"] == 4 * 2 * 9 * MIB  # the fake reads every chunk of both sides
    assert "bulk digests nova" in world.src.calls and "bulk digests nova" in world.dst.calls


def test_verify_reads_two_chunks_at_once_per_side_unless_max_workers_says_otherwise(world):
    state = _cut_over(world)
    _act(world, state, "verify", pools="nova")
    _act(world, state, "verify", pools="nova", **{"max-workers": 12})
    assert world.src.digest_workers == world.dst.digest_workers == [READS_IN_FLIGHT, 12]
    assert READS_IN_FLIGHT == 2


def test_verify_names_the_image_and_the_first_differing_byte(world):
    state = _cut_over(world)
    img = world.dst.image("cinder-ceph", "volume-1")
    offset = CHUNK + 3 * 4096 + 17
    img.data = img.data[:offset] + b"X" + img.data[offset + 1 :]
    with pytest.raises(testing.ActionFailed) as failed:
        _act(world, state, "verify")
    assert f"cinder-ceph/volume-1: content differs at offset {offset}" in failed.value.message
    mismatches = json.loads(world.ctx.action_results["mismatches"])
    assert mismatches == [
        {"image": "cinder-ceph/volume-1", "offset": offset, "what": "content differs"}
    ]


def test_verify_refuses_before_the_cutover_and_reads_nothing(world):
    world.service["running"] = True
    _content(world)
    state = _act(world, ready_state(), "enable-mirroring")
    mirror(world.src, world.dst)
    with pytest.raises(testing.ActionFailed) as failed:
        _act(world, state, "verify")
    assert "a primary source is still being written" in failed.value.message
    assert not any("digests" in c for c in world.src.calls + world.dst.calls)


def test_verify_sample_catches_a_size_change_and_a_parent_change(world):
    state = _cut_over(world)
    world.dst.image("glance", "img").data += bytes(4096)
    world.dst.image("nova", "a_disk").parent = "glance/other@snap"
    with pytest.raises(testing.ActionFailed) as failed:
        _act(world, state, "verify", sample=4)
    message = failed.value.message
    assert "glance/img: size" in message and "nova/a_disk: parent glance/img@snap" in message
    assert world.ctx.action_results["mode"] == "sample of 4 chunk(s) per image"


def test_verify_reports_an_image_missing_on_the_destination(world):
    state = _cut_over(world)
    world.dst.unreadable.add("b_disk")
    with pytest.raises(testing.ActionFailed) as failed:
        _act(world, state, "verify", pools="nova")
    assert "nova/b_disk: not readable on the destination" in failed.value.message


def test_verify_refuses_a_source_that_does_not_answer(world):
    state = _cut_over(world)
    world.src.unreachable = True
    with pytest.raises(testing.ActionFailed) as failed:
        _act(world, state, "verify")
    assert "the source does not answer" in failed.value.message


@pytest.mark.parametrize(
    "params, error",
    [
        ({"sample": -1}, "sample"),
        ({"max-workers": 0}, "max-workers"),
        ({"timeout": 5}, "timeout"),
        ({"pools": "nope"}, "nope"),
    ],
)
def test_verify_bad_params_fail_clearly_and_read_nothing(world, params, error):
    state = _cut_over(world)
    calls = len(world.src.calls)
    with pytest.raises(testing.ActionFailed) as failed:
        _act(world, state, "verify", **params)
    assert error in failed.value.message
    assert not any("digests" in c for c in world.src.calls[calls:])


def _image(*layers: Layer, snaps=(("snap", 8),)) -> ImageDigest:
    return ImageDigest(size=layers[-1].size, snaps=snaps, parent="", layers=layers, bytes_read=0)


def test_compare_finds_a_hole_on_one_side_and_snapshot_differences():
    same = _image(Layer("snap", 8, {0: "a"}, whole=True), Layer("", 8, {}, whole=True))
    hole = _image(Layer("snap", 8, {}, whole=True), Layer("", 8, {}, whole=True))
    assert compare_image("p/i", same, same) is None
    found = compare_image("p/i", same, hole)
    assert found is not None and found.offset == 0
    assert (found.what, found.snapshot) == ("content of snapshot snap differs", "snap")
    other = _image(
        Layer("later", 8, {0: "a"}, whole=True),
        Layer("", 8, {}, whole=True),
        snaps=(("later", 8),),
    )
    found = compare_image("p/i", same, other)
    assert found is not None and found.what == "snapshots differ (later, snap)"


def test_compare_applies_each_side_s_changes_however_the_diff_split_them():
    # the destination's diff over-reports chunk 0 in the head (the same digest) and names a
    # chunk that became zeros; the source named neither: the same content, no mismatch
    ours = _image(
        Layer("snap", 8, {0: "a", 4: "b"}, whole=True), Layer("", 8, {0: "a"}, whole=True)
    )
    theirs = _image(
        Layer("snap", 8, {0: "a", 4: "b"}, whole=True), Layer("", 8, {0: "a", 4: ""}, whole=True)
    )
    assert compare_image("p/i", ours, theirs) is None
    # a snapshot whose content differs while the heads agree is still found
    changed = _image(
        Layer("snap", 8, {0: "X", 4: "b"}, whole=True), Layer("", 8, {0: "a"}, whole=True)
    )
    found = compare_image("p/i", ours, changed)
    assert found is not None and (found.snapshot, found.offset) == ("snap", 0)
    # the head: a chunk zeroed on one side only
    stale = _image(
        Layer("snap", 8, {0: "a", 4: "b"}, whole=True), Layer("", 8, {0: "a", 4: "b"}, whole=True)
    )
    found = compare_image("p/i", ours, stale)
    assert found is not None and (found.what, found.offset) == ("content differs", 4)


def test_compare_drops_what_a_shrink_cut_off():
    snaps = (("snap", 8),)
    ours = _image(
        Layer("snap", 8, {0: "a", 4: "b"}, whole=True),
        Layer("", 4, {0: "a"}, whole=True),
        snaps=snaps,
    )
    theirs = _image(
        Layer("snap", 8, {0: "a", 4: "b"}, whole=True),
        Layer("", 4, {0: "a"}, whole=True),
        snaps=snaps,
    )
    assert compare_image("p/i", ours, theirs) is None


def test_verify_names_a_snapshot_whose_content_differs_while_the_heads_agree(world):
    state = _cut_over(world)
    src = world.src.image("cinder-ceph", "volume-1")
    dst = world.dst.image("cinder-ceph", "volume-1")
    src.snaps.append("backup-1")
    dst.snaps.append("backup-1")
    offset = 2 * CHUNK + 5 * 4096 + 3
    src.snap_data["backup-1"] = src.data
    dst.snap_data["backup-1"] = dst.data[:offset] + b"Y" + dst.data[offset + 1 :]
    with pytest.raises(testing.ActionFailed) as failed:
        _act(world, state, "verify")
    assert (
        f"cinder-ceph/volume-1: content of snapshot backup-1 differs at offset {offset}"
        in failed.value.message
    )
    mismatches = json.loads(world.ctx.action_results["mismatches"])
    assert mismatches == [
        {
            "image": "cinder-ceph/volume-1",
            "offset": offset,
            "snapshot": "backup-1",
            "what": "content of snapshot backup-1 differs",
        }
    ]
    dst.snap_data["backup-1"] = dst.data
    _act(world, state, "verify")
    assert world.ctx.action_results["mismatch-count"] == 0


def test_teardown_gives_both_fsids_the_glance_sql_and_each_glance_image_s_new_location(world):
    world.src.image("glance", "img").snaps = ["snap"]
    state = _cut_over(world)
    _act(world, state, "teardown")
    results = world.ctx.action_results
    assert results["old-fsid"] == "fsid-of-source" and results["new-fsid"] == "fsid-of-ceph"
    assert json.loads(results["glance-locations"]) == ["rbd://fsid-of-ceph/glance/img/snap"]
    assert results["glance-locations-sql"] == (
        "UPDATE image_locations SET value = REPLACE(value, 'rbd://fsid-of-source/', "
        "'rbd://fsid-of-ceph/') WHERE deleted = 0 AND value LIKE 'rbd://fsid-of-source/%';"
    )
    steps = results["next-steps"]
    assert "never with `glance location-delete`" in steps
    assert "nova-manage volume_attachment refresh" in steps


def test_a_partial_teardown_gives_no_cloud_steps_yet(world):
    state = _cut_over(world)
    _act(world, state, "teardown", pools="nova")
    results = world.ctx.action_results
    assert "new-fsid" not in results and "remaining pools" in results["next-steps"]


def test_a_teardown_whose_fsid_read_fails_still_gives_the_next_steps(world, monkeypatch):
    state = _cut_over(world)

    def refuse():
        raise CephError("ceph", ["rbd_bulk fsid"], 110, "timed out")

    monkeypatch.setattr(world.dst, "fsid", refuse)
    _act(world, state, "teardown")
    results = world.ctx.action_results or {}
    assert "remove-relation" in results["next-steps"]
    assert results["glance-locations-sql"].startswith("unknown: a cluster's fsid was not read")


def test_a_chunk_whose_blocks_read_again_are_equal_still_fails_and_says_why(world):
    state = _cut_over(world)
    real = world.dst.image_digests

    def stale(pool, images, **kw):  # one digest the bytes read afterwards do not bear out
        found = real(pool, images, **kw)
        if "volume-1" in found.images:
            head = found.images["volume-1"].layers[-1]
            head.chunks[0] = "not-what-the-bytes-say"
        return found

    world.dst.image_digests = stale  # type: ignore[method-assign]
    with pytest.raises(testing.ActionFailed) as failed:
        _act(world, state, "verify", pools="cinder-ceph")
    assert "cinder-ceph/volume-1: content differs (read again" in failed.value.message
    message = failed.value.message
    assert "it was written while verify read it, or the two sides' librbd diffs" in message
    assert "`rbd object-map check cinder-ceph/volume-1` on each cluster) at offset 0" in message


def test_verify_after_teardown_warns_that_the_cloud_s_writes_would_show_as_differences(world):
    state = _act(world, _cut_over(world), "teardown")
    _act(world, state, "verify", pools="nova")
    assert world.ctx.action_results["mismatch-count"] == 0
    assert any(
        line.startswith("WARNING: nova torn down") and "show here as differences" in line
        for line in world.ctx.action_logs
    )
