"""ops.testing tests of enable-mirroring's preflight (Ceph is faked; the lab proves the reads)."""

from __future__ import annotations

import json
import sys
from unittest import mock

import pytest
from ops import testing

from ceph_cli import JOURNAL_PROBE_IMAGE, PoolSpace, Space
from preflight import space_findings
from record import Record
from tests.unit.conftest import World, ready_state
from tests.unit.fake_ceph import FakeImage

MIB = 1024 * 1024


def _dry_run(world: World) -> list[str]:
    world.run(world.ctx.on.action("enable-mirroring", params={"dry-run": True}), ready_state())
    return json.loads((world.ctx.action_results or {})["warnings"])


def _refused(world: World) -> str:
    world.service["running"] = True
    with pytest.raises(testing.ActionFailed) as exc:
        world.run(world.ctx.on.action("enable-mirroring"), ready_state())
    assert not world.dst.modes and set(world.src.modes.values()) <= {"disabled"}, "no change"
    return exc.value.message


def test_a_qcow2_image_stored_raw_is_named_and_does_not_block(world):
    world.src.image("glance", "img").data = b"QFI\xfb\x00\x00\x00\x03" + bytes(100)
    warnings = _dry_run(world)
    assert [w for w in warnings if "qcow2" in w] == [
        "glance/img: its first bytes are a qcow2 header although RBD stores it raw: clones of "
        "it never boot (convert it with qemu-img to raw and upload it again); it is copied as "
        "it is"
    ]
    world.service["running"] = True
    world.run(world.ctx.on.action("enable-mirroring"), ready_state())
    assert world.src.modes["glance"] == "pool", "a warning does not block"


def test_a_destination_too_small_blocks_with_the_figures(world):
    world.src.stored = {"cinder-ceph": 96 * MIB}
    world.dst.quotas = {"cinder-ceph": 50 * MIB}
    message = _refused(world)
    assert "space: pool cinder-ceph: does not fit: needs 96.0 MiB (100663296 bytes)" in message
    assert "may take 50.0 MiB (52428800)" in message


def test_less_than_20_percent_headroom_warns():
    src = Space({"nova": PoolSpace("nova", 90, 0, 3)}, 0)
    dst = Space({"nova": PoolSpace("nova", 0, 100, 3)}, 1000)
    found = space_findings(src, dst, ["nova"])
    assert [(f.about, f.blocks) for f in found] == [("space: pool nova", False)]
    assert "less than 20% headroom" in found[0].text
    tight = space_findings(src, Space(dst.pools, 269), ["nova"])
    assert ("space: destination", True) in [(f.about, f.blocks) for f in tight], "90 x 3 raw"


def test_pools_on_the_same_osds_must_fit_together_though_each_fits_alone():
    src = Space({p: PoolSpace(p, 70, 0, 3) for p in ("nova", "glance")}, 0)
    dst = Space(
        {p: PoolSpace(p, 0, 100, 3, crush_rule=0) for p in ("nova", "glance")}
        | {"other": PoolSpace("other", 0, 100, 3, crush_rule=1)},
        10_000,  # the whole cluster has room: only the shared rule is short
    )
    found = space_findings(src, dst, ["nova", "glance"])
    assert [(f.about, f.blocks) for f in found if f.blocks] == [
        ("space: pools nova, glance (the same CRUSH rule 0)", True)
    ]
    assert "needs 420 B (420 bytes), their OSDs may take (raw) 300 B (300)" in found[-1].text
    apart = Space({**dst.pools, "glance": PoolSpace("glance", 0, 100, 3, crush_rule=1)}, 10_000)
    assert not [f for f in space_findings(src, apart, ["nova", "glance"]) if f.blocks]


def test_pools_of_two_rules_over_the_same_osds_must_fit_together():
    src = Space({p: PoolSpace(p, 70, 0, 3) for p in ("nova", "glance", "ssd-only")}, 0)
    on = {"nova": (0, 1, 2), "glance": (0, 1, 2), "ssd-only": (2,)}
    dst = Space(
        {p: PoolSpace(p, 0, 100, 3, crush_rule=rule, osds=on[p]) for rule, p in enumerate(on)},
        10_000,
    )
    found = space_findings(src, dst, list(on))
    assert [(f.about, f.blocks) for f in found if f.blocks] == [
        ("space: pools nova, glance (the same 3 OSD(s))", True)
    ]


CRUSH = {  # `osd crush dump` of one host with hdd and ssd OSDs (shadow trees per class)
    "buckets": [
        {"id": -1, "name": "default", "items": [{"id": -2}]},
        {"id": -2, "name": "host", "items": [{"id": 0}, {"id": 1}, {"id": 2}]},
        {"id": -3, "name": "default~ssd", "items": [{"id": -4}]},
        {"id": -4, "name": "host~ssd", "items": [{"id": 2}]},
    ],
    "rules": [
        {"rule_id": 0, "steps": [{"op": "take", "item": -1}, {"op": "emit"}]},
        {"rule_id": 1, "steps": [{"op": "take", "item": -1}, {"op": "chooseleaf_firstn"}]},
        {"rule_id": 2, "steps": [{"op": "take", "item": -3}, {"op": "emit"}]},
    ],
}


def test_each_rule_s_osds_come_from_the_buckets_it_takes(monkeypatch):
    monkeypatch.setitem(sys.modules, "rados", mock.MagicMock())
    monkeypatch.setitem(sys.modules, "rbd", mock.MagicMock())
    monkeypatch.delitem(sys.modules, "rbd_preflight", raising=False)
    import rbd_preflight

    assert rbd_preflight.rule_osds(CRUSH) == {0: [0, 1, 2], 1: [0, 1, 2], 2: [2]}


def test_what_the_destination_holds_already_is_not_needed_again():
    src = Space({"nova": PoolSpace("nova", 100, 0, 1)}, 0)
    dst = Space({"nova": PoolSpace("nova", 80, 30, 1)}, 30)
    assert space_findings(src, dst, ["nova"]) == []


def test_images_that_cannot_be_mirrored_block_naming_each(world):
    world.src.image("cinder-ceph", "volume-1").old_format = True
    world.src.image("glance", "img").mirror_mode = "snapshot"
    world.src.pool_images["nova"].append(FakeImage("c_disk", parent="other/base@snap"))
    world.src.pool_images["nova"].append(
        FakeImage("d_disk", features={"layering", "exclusive-lock", "migrating"})
    )
    message = _refused(world)
    assert "cinder-ceph/volume-1: an old format 1 image" in message
    assert "glance/img: already mirrored in snapshot mode" in message
    assert "nova/c_disk: a clone of other/base@snap, in pool other that is not migrated" in message
    assert "nova/d_disk: being live-migrated" in message


def test_destination_images_not_created_by_the_migration_block(world):
    world.dst.pool_images["cinder-ceph"].append(FakeImage("volume-old", mirror_enabled=False))
    message = _refused(world)
    assert "destination pool cinder-ceph: holds 1 image(s) this migration did not create" in (
        message
    )
    assert "volume-old" in message


def test_a_source_key_that_may_not_journal_blocks_and_is_probed_only_where_mirroring_is_off(world):
    world.src.journal_denied = True
    message = _refused(world)
    assert "may not journal images (PermissionError" in message
    world.src.journal_denied = False
    world.service["running"] = True
    world.run(world.ctx.on.action("enable-mirroring"), ready_state())
    probes = len([c for c in world.src.calls if "journal-probe" in c])
    world.run(world.ctx.on.action("enable-mirroring"), ready_state())
    assert len([c for c in world.src.calls if "journal-probe" in c]) == probes, "pool mode now"


def _pool_state_reads(calls: list[str]) -> list[str]:
    return sorted(c.removeprefix("bulk pool-state ") for c in calls if "pool-state" in c)


def test_enable_mirroring_acts_on_what_its_preflight_read_once_per_pool_and_side(world):
    world.service["running"] = True
    world.run(world.ctx.on.action("enable-mirroring"), ready_state())
    pools = sorted(world.src.pool_images)
    calls = world.src.calls
    last_change = max(i for i, c in enumerate(calls) if c.startswith("bulk enable-journaling"))
    assert _pool_state_reads(calls[: last_change + 1]) == pools
    # the destination: the preflight's read, then the unit status's after the action
    assert _pool_state_reads(world.dst.calls) == sorted(pools * 2)
    assert all(i.primary for imgs in world.src.pool_images.values() for i in imgs)


def test_a_probe_image_left_by_a_killed_preflight_is_never_journaled_nor_recorded(
    world, monkeypatch
):
    src = world.src
    src.pool_images["cinder-ceph"].append(FakeImage(JOURNAL_PROBE_IMAGE))  # killed mid-probe
    real_probe = type(src).journal_probe

    def probe(self, pool):  # as rbd_preflight.journal_probe: a leftover probe removed first
        self.pool_images[pool] = [i for i in self._imgs(pool) if i.name != JOURNAL_PROBE_IMAGE]
        return real_probe(self, pool)

    monkeypatch.setattr(type(src), "journal_probe", probe)
    world.service["running"] = True
    state = world.run(world.ctx.on.action("enable-mirroring"), ready_state())
    record = Record.from_json(
        next(s for s in state.stored_states if "record" in s.content).content["record"]
    )
    assert JOURNAL_PROBE_IMAGE not in record.journaled["cinder-ceph"]
    assert record.journaled["cinder-ceph"] == ("volume-1",)


def test_taking_journaling_off_an_image_deleted_since_is_nothing_to_do(monkeypatch):
    rbd = mock.MagicMock()
    rbd.ImageNotFound = type("ImageNotFound", (Exception,), {})
    rbd.Image.side_effect = rbd.ImageNotFound("[errno 2] RBD image not found")
    monkeypatch.setitem(sys.modules, "rados", mock.MagicMock())
    monkeypatch.setitem(sys.modules, "rbd", rbd)
    monkeypatch.delitem(sys.modules, "rbd_bulk", raising=False)
    import rbd_bulk

    assert rbd_bulk._disable_journaling(mock.MagicMock(), "volume-deleted-by-cinder") == ""


def test_the_journal_probe_removes_only_tagged_leftovers_never_a_look_alike(monkeypatch):
    rbd = mock.MagicMock()
    rbd.ImageNotFound = type("ImageNotFound", (Exception,), {})
    rbd.Error = type("Error", (Exception,), {})
    rbd.PermissionError = type("PermissionError", (rbd.Error,), {})
    tags = {"rbd-mirror-migration-probe-dead": {"rbd-mirror-migration-probe": "1"}}

    class Image:
        def __init__(self, ioctx, name, read_only=False):
            self.name = name

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def metadata_get(self, key):
            return tags.get(self.name, {})[key]  # KeyError when absent, as librbd's binding

        def metadata_set(self, key, value):
            tags.setdefault(self.name, {})[key] = value

        def update_features(self, feature, on):
            pass

    rbd.Image = Image
    api = rbd.RBD.return_value
    api.list.return_value = ["rbd-mirror-migration-probe-dead", "rbd-mirror-migration-probe"]
    rados = mock.MagicMock()
    rados.PermissionError = type("PermissionError", (Exception,), {})
    monkeypatch.setitem(sys.modules, "rados", rados)
    monkeypatch.setitem(sys.modules, "rbd", rbd)
    monkeypatch.delitem(sys.modules, "rbd_preflight", raising=False)
    import rbd_preflight

    probe = "rbd-mirror-migration-probe-new"
    answer = rbd_preflight.journal_probe(mock.MagicMock(), probe, "rbd-mirror-migration-probe")
    assert answer == {"ok": True, "error": ""}
    removed = [c.args[1] for c in api.remove.call_args_list]
    assert removed == ["rbd-mirror-migration-probe-dead", probe], "the look-alike stays"
    assert tags[probe] == {"rbd-mirror-migration-probe": "1"}, "tagged before journaling"
