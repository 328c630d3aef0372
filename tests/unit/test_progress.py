"""The sync's progress in bytes and its ETA (pure functions, and the status action's results)."""

from __future__ import annotations

import pytest

from ceph_cli import ImageStatus
from progress import IMAGE_START_S, History, Progress, measure, published_at, sync_percent
from report import PoolReport, StatusReport
from tests.unit.conftest import World, ready_state
from tests.unit.fake_ceph import mirror

GIB = 1024**3
T0 = published_at("2026-12-05 05:12:39")


def _report(percent: int | None, at: str, *, state: str = "up+syncing") -> StatusReport:
    description = f"bootstrapping, IMAGE_SYNC/COPY_IMAGE {percent}%" if percent is not None else ""
    pool = PoolReport(
        pool="cinder-ceph",
        source_read=True,
        source_mode="pool",
        destination_mode="pool",
        source_images=["big", "small"],
        source_primary={"big": True, "small": True},
        images=[
            ImageStatus("cinder-ceph", "big", state, description, at),
            ImageStatus("cinder-ceph", "small", "up+replaying", "replaying, {}", at),
        ],
    )
    return StatusReport(pools=[pool])


SIZES = {"cinder-ceph/big": GIB, "cinder-ceph/small": GIB // 4}


def test_the_percentage_is_read_from_the_daemon_s_description():
    assert sync_percent("bootstrapping, IMAGE_SYNC/COPY_IMAGE 17%") == 17
    assert sync_percent("bootstrapping, IMAGE_SYNC/CREATE_SYNC_POINT") is None
    assert sync_percent("replaying, {}") is None
    assert published_at("1970-01-01 00:00:00") is None, "never published"


def test_bytes_copied_count_replaying_images_whole_and_syncing_ones_by_their_percentage():
    assert T0 is not None
    progress, _ = measure(_report(40, "2026-12-05 05:12:39"), History(sizes=SIZES), T0 + 5)
    assert progress.bytes_total == GIB + GIB // 4
    assert progress.bytes_done == GIB // 4 + GIB * 40 // 100
    assert progress.images_done == 1 and progress.images == 2
    assert progress.eta_s is None and "estimating the time left" in progress.line


def test_the_eta_comes_from_two_publications_and_counts_what_was_copied_since_the_last():
    assert T0 is not None
    history = History(sizes=SIZES)
    _, history = measure(_report(20, "2026-12-05 05:12:39"), history, T0 + 10)
    # polled again before the next publication: the same sample, no rate yet
    progress, history = measure(_report(20, "2026-12-05 05:12:39"), history, T0 + 20)
    assert progress.rate is None and len(history.samples["cinder-ceph/big"]) == 1
    progress, history = measure(_report(50, "2026-12-05 05:13:09"), history, T0 + 40)
    rate = GIB * 30 // 100 / 30
    assert progress.rate is not None and abs(progress.rate - rate) < 1
    # 50% of 1 GiB left at the publication, 10 s of copying since then
    expected = (GIB - GIB * 50 // 100 - rate * 10) / rate
    assert history.samples["cinder-ceph/big"][0] == (T0, GIB * 20 // 100)
    assert progress.eta_s is not None and abs(progress.eta_s - expected) < 0.01
    assert progress.line == "syncing 1/2 images, 60% of 1.2 GiB, about 40 s left"


def test_a_sync_that_starts_over_drops_the_samples_from_before():
    assert T0 is not None
    history = History(sizes=SIZES, samples={"cinder-ceph/big": [(T0 - 60, GIB // 2)]})
    progress, history = measure(_report(10, "2026-12-05 05:12:39"), history, T0 + 1)
    assert progress.rate is None
    assert history.samples == {"cinder-ceph/big": [(T0, GIB * 10 // 100)]}


def test_history_survives_a_round_trip_and_garbage_is_an_empty_history():
    history = History(samples={"p/i": [(1.0, 2)]}, sizes={"p/i": 3})
    assert History.from_json(history.to_json()) == history
    assert History.from_json("not json") == History()


def test_status_and_the_unit_status_show_bytes_while_images_sync(world: World):
    world.service["running"] = True
    state = world.run(world.ctx.on.action("enable-mirroring"), ready_state())
    mirror(world.src, world.dst)
    world.dst.states["volume-1"] = ("up+syncing", "bootstrapping, IMAGE_SYNC/COPY_IMAGE 40%")
    out = world.run(world.ctx.on.action("status"), state)
    results = world.ctx.action_results or {}
    assert results["percent-copied"] == 84  # 3 of 4 images of 1 MiB whole, one at 40% (down)
    assert results["bytes-to-go"] == 1024 * 1024 * 60 // 100 + 1
    assert results["phase"].startswith("syncing 3/4 images, 84% of 4.0 MiB")
    assert out.unit_status.message.startswith("syncing 3/4 images, 84% of 4.0 MiB")
    # the sizes enable-mirroring's preflight read are kept: never read again
    world.run(world.ctx.on.action("status"), out)
    assert not any(c.startswith("bulk sizes") for c in world.src.calls)


def test_sizes_not_known_yet_are_read_once_per_pool_and_kept(world: World):
    world.service["running"] = True
    state = world.run(world.ctx.on.action("enable-mirroring"), ready_state())
    kept = world.ctx.charm_root / "reports" / "progress.json"  # type: ignore[operator]
    assert kept.exists()
    kept.unlink()  # as on a unit that did not run enable-mirroring
    mirror(world.src, world.dst)
    world.dst.states["volume-1"] = ("up+syncing", "bootstrapping, IMAGE_SYNC/COPY_IMAGE 40%")
    out = world.run(world.ctx.on.action("status"), state)
    assert sum(c.startswith("bulk sizes") for c in world.src.calls) == 3, "once per pool"
    world.run(world.ctx.on.action("status"), out)
    assert sum(c.startswith("bulk sizes") for c in world.src.calls) == 3, "sizes are kept"


def _two_syncing_and_one_waiting() -> tuple[StatusReport, History]:
    """`a` and `b` copied at 10 bytes/s each, 600 bytes left each; `waiting` (3000) not started."""
    assert T0 is not None
    pool = PoolReport(
        pool="p",
        source_read=True,
        source_mode="pool",
        destination_mode="pool",
        source_images=["a", "b", "waiting"],
        source_primary={"a": True, "b": True, "waiting": True},
    )
    sizes = {"p/a": 1000, "p/b": 1000, "p/waiting": 3000}
    history = History(sizes=sizes, samples={"p/a": [(T0 - 30, 100)], "p/b": [(T0 - 30, 100)]})
    pool.images = [
        ImageStatus(
            "p", n, "up+syncing", "bootstrapping, IMAGE_SYNC/COPY_IMAGE 40%", "2026-12-05 05:12:39"
        )
        for n in ("a", "b")
    ]
    return StatusReport(pools=[pool]), history


def test_images_copied_at_once_add_their_rates_and_a_waiting_one_starts_in_a_free_slot():
    assert T0 is not None
    report, history = _two_syncing_and_one_waiting()
    progress, _ = measure(report, history, T0, slots=5)
    assert progress.rate == 20.0  # 10 bytes/s each
    assert progress.eta_s == IMAGE_START_S + 3000 / 10, "at the mean rate, beside the others"


def test_a_waiting_image_waits_for_the_first_slot_the_daemon_frees():
    assert T0 is not None
    report, history = _two_syncing_and_one_waiting()
    progress, _ = measure(report, history, T0, slots=2)
    assert progress.eta_s == 600 / 10 + IMAGE_START_S + 3000 / 10


def test_small_images_waiting_beside_a_big_one_do_not_stretch_its_eta():
    """CI, 2026-12-06: three waiting nova clones made a 35 s copy's ETA 47 s."""
    assert T0 is not None
    report = _report(40, "2026-12-05 05:12:39")
    pool = report.pools[0]
    pool.source_images += ["clone-1", "clone-2", "clone-3"]
    sizes = {**SIZES, **{f"cinder-ceph/clone-{n}": 48 * 2**20 for n in (1, 2, 3)}}
    history = History(sizes=sizes, samples={"cinder-ceph/big": [(T0 - 30, GIB * 10 // 100)]})
    progress, _ = measure(report, history, T0, slots=5)
    rate = GIB * 30 // 100 / 30
    assert progress.eta_s is not None
    assert abs(progress.eta_s - (GIB - GIB * 40 // 100) / rate) < 0.01, "the big one's own time"


def test_a_history_with_an_overflowing_number_is_an_empty_history():
    assert History.from_json('{"sizes": {"a": 1e400}}') == History()


def _pool(
    name: str, syncing: dict[str, str], waiting: list[str], state: str = "up+syncing"
) -> PoolReport:
    """A pool whose `syncing` images publish those descriptions; `waiting` ones nothing."""
    pool = PoolReport(
        pool=name,
        source_read=True,
        source_mode="image",
        destination_mode="image",
        source_images=[*syncing, *waiting],
        source_primary=dict.fromkeys([*syncing, *waiting], True),
    )
    pool.images = [
        ImageStatus(name, n, state, d, "2026-12-05 05:12:39") for n, d in syncing.items()
    ]
    return pool


def test_each_pool_has_its_own_slots_and_the_last_pool_sets_the_eta():
    """Review: rbd-mirror's throttler is per pool replayer, not per daemon."""
    assert T0 is not None
    copying = "bootstrapping, IMAGE_SYNC/COPY_IMAGE 50%"
    busy = _pool("a", {f"r{n}": copying for n in range(5)}, [f"w{n}" for n in range(5)])
    ending = "bootstrapping, IMAGE_SYNC/COPY_IMAGE 99%"
    idle = _pool("b", {f"r{n}": ending for n in range(5)}, [])
    sizes = {f"a/r{n}": 2000 for n in range(5)} | {f"a/w{n}": 1000 for n in range(5)}
    sizes |= {f"b/r{n}": 2000 for n in range(5)}
    samples = {f"a/r{n}": [(T0 - 30, 700)] for n in range(5)}  # 10 bytes/s each
    samples |= {f"b/r{n}": [(T0 - 30, 1680)] for n in range(5)}  # 10 bytes/s, 2 s left
    history = History(sizes=sizes, samples=samples)
    progress, _ = measure(StatusReport(pools=[busy, idle]), history, T0, slots=5)
    # pool a: 1000 bytes left each (100 s), then its 5 waiting ones (100 s each) in its own
    # slots: pool b's, free in 2 s, are not theirs
    assert progress.eta_s == 100 + IMAGE_START_S + 100


def test_snapshot_images_at_zero_beyond_the_slots_are_queued_not_copying():
    """Review: a snapshot-mode image waiting for a slot already publishes syncing_percent 0."""
    assert T0 is not None
    copying = 'replaying, {"replay_state":"syncing","syncing_percent":50}'
    queued = 'replaying, {"replay_state":"syncing","syncing_percent":0}'
    syncing = {"a": copying, "b": copying} | {f"q{n}": queued for n in range(6)}
    pool = _pool("p", syncing, [], state="up+replaying")
    sizes = {"p/a": 2000, "p/b": 2000} | {f"p/q{n}": 1000 for n in range(6)}
    samples = {"p/a": [(T0 - 30, 700)], "p/b": [(T0 - 30, 700)]}
    progress, _ = measure(StatusReport(pools=[pool]), History(samples, sizes), T0, slots=5)
    assert progress.rate == 10 * 5, "a, b and the three q in the free slots copy now"
    # a, b: 100 s; q0-q2: 100 s; q3-q5 queued: the first three slots free at 100 s
    assert progress.eta_s == 200


def test_a_thousand_small_waiting_images_cost_their_start_not_only_their_bytes():
    """Review: 1000 clones of 4 MiB waiting beside a big volume made the ETA its alone."""
    assert T0 is not None
    copying = "bootstrapping, IMAGE_SYNC/COPY_IMAGE 50%"
    pool = _pool("p", {"big": copying}, [f"c{n}" for n in range(1000)])
    sizes = {"p/big": 600 * 10} | {f"p/c{n}": 4 for n in range(1000)}
    history = History(sizes=sizes, samples={"p/big": [(T0 - 30, 2700)]})  # 10 bytes/s
    progress, _ = measure(StatusReport(pools=[pool]), history, T0, slots=5)
    assert progress.eta_s is not None
    assert progress.eta_s >= 1000 / 5 * IMAGE_START_S, "1000 starts, 5 at a time"


def test_images_of_no_data_count_by_number_not_as_all_copied():
    """Review: 200 empty volumes (0 bytes to copy) said 100% with nothing replaying."""
    assert Progress(images_done=0, images=200, bytes_done=0, bytes_total=0).percent == 0
    assert Progress(images_done=50, images=200, bytes_done=0, bytes_total=0).percent == 25


def test_an_unmeasured_image_copies_at_its_own_pools_rate_not_the_clouds():
    """Review: an SSD pool's fast copies made an HDD pool's 100 waiting volumes look quick."""
    assert T0 is not None
    copying = "bootstrapping, IMAGE_SYNC/COPY_IMAGE 50%"
    ssd = _pool("ssd", {"s": copying}, [])
    hdd = _pool("hdd", {"h": copying}, ["w"])
    sizes = {"ssd/s": 2000, "hdd/h": 2000, "hdd/w": 1000}
    samples = {"ssd/s": [(T0 - 30, 700)], "hdd/h": [(T0 - 30, 997)]}  # 10 and 0.1 bytes/s
    history = History(sizes=sizes, samples=samples)
    progress, _ = measure(StatusReport(pools=[ssd, hdd]), history, T0, slots=5)
    assert progress.eta_s == pytest.approx(IMAGE_START_S + 1000 / 0.1), "w at hdd's rate"


def test_the_eta_does_not_depend_on_the_images_names():
    """Review: queued in `rbd ls` order, a big volume named zzz ended the sync later."""
    assert T0 is not None
    copying = "bootstrapping, IMAGE_SYNC/COPY_IMAGE 50%"
    etas = []
    for big in ("aaa-db", "zzz-db"):
        pool = _pool("p", {"r": copying}, sorted([big, *(f"m{n}" for n in range(20))]))
        sizes = {"p/r": 2000, f"p/{big}": 20000} | {f"p/m{n}": 1000 for n in range(20)}
        history = History(sizes=sizes, samples={"p/r": [(T0 - 30, 700)]})
        progress, _ = measure(StatusReport(pools=[pool]), history, T0, slots=2)
        etas.append(progress.eta_s)
    assert etas[0] == etas[1]
