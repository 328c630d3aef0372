"""Ceph releases: each release's real output parsed, the pair rules, and the actions using them."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from unittest import mock

import pytest
from ops import testing

from ceph_release import (
    PROVEN_PAIRS,
    RELEASE_RULES,
    CephVersion,
    refusal,
    support,
    versions_from,
)
from tests.unit.conftest import World, ready_state
from tests.unit.fake_ceph import mirror

SAMPLES = Path(__file__).with_name("samples")
PACIFIC = "ceph version 16.2.15 (618f4408) pacific (stable)"
REEF = "ceph version 18.2.7 (6b0e9880) reef (stable)"
TENTACLE = "ceph version 20.2.4 (7f793731) tentacle (stable - RelWithDebInfo)"


def _sample(name: str) -> dict:
    return json.loads((SAMPLES / name).read_text())


@pytest.mark.parametrize(
    "sample, expected",
    [
        ("pacific-16.2.15/versions.json", "16.2.15 (pacific)"),  # has "mds": {}
        ("reef-18.2.7/versions.json", "18.2.7 (reef)"),  # no mds, an rbd-mirror entry
        ("tentacle-20.2.4/versions.json", "20.2.4 (tentacle)"),  # "(stable - RelWithDebInfo)"
    ],
)
def test_each_releases_ceph_versions_gives_its_mon_release(sample, expected):
    versions = versions_from(_sample(sample)["mon"], None)
    assert versions.describe() == expected
    assert versions.describe_daemons() == "not readable with this key"


def test_mixed_mons_count_as_the_oldest_and_say_so():
    versions = versions_from({REEF: 2, PACIFIC: 1}, [])
    assert versions.release == CephVersion(16, 2, 15)
    assert versions.describe() == "16.2.15 (pacific), mons mixed: 16.2.15, 18.2.7"
    assert versions.describe_daemons() == "none running"


def test_unparsable_version_strings_are_left_out():
    assert versions_from({"garbage": 1}, ["nope"]).describe() == "unknown"
    assert CephVersion(21, 1, 0).name == "release 21"


@pytest.fixture
def rbd_bulk(monkeypatch):
    """rbd_bulk.py imported with stand-ins for the system Python's rados and rbd modules."""
    rados = mock.MagicMock()
    rados.Error = type("Error", (Exception,), {})
    monkeypatch.setitem(sys.modules, "rados", rados)
    monkeypatch.setitem(sys.modules, "rbd", mock.MagicMock())
    monkeypatch.delitem(sys.modules, "rbd_bulk", raising=False)
    import rbd_bulk

    return rbd_bulk


class _Cluster:
    """Answers the two commands of the `versions` op with a release's real output."""

    def __init__(self, versions: dict, dump: tuple[int, dict]):
        self.versions, self.dump = versions, dump

    def mon_command(self, command, inbuf):
        assert json.loads(command)["prefix"] == "versions"
        return 0, json.dumps(self.versions).encode(), ""

    def mgr_command(self, command, inbuf, timeout):
        assert json.loads(command)["prefix"] == "service dump"
        rc, body = self.dump
        return rc, json.dumps(body).encode(), "" if rc == 0 else "access denied"


def test_versions_op_reads_the_daemons_from_the_service_dump(rbd_bulk):
    cluster = _Cluster(
        _sample("reef-18.2.7/versions.json"), (0, _sample("reef-18.2.7/service-dump.json"))
    )
    answer = rbd_bulk._versions(cluster, 10)  # the dump's "summary": "" entry is skipped
    assert versions_from(answer["mons"], answer["rbd_mirror"]).describe_daemons() == (
        "18.2.7 (reef)"
    )


def test_versions_op_with_no_daemon_and_with_no_mgr_caps(rbd_bulk):
    pacific = _sample("pacific-16.2.15/versions.json")
    empty = _Cluster(pacific, (0, _sample("pacific-16.2.15/service-dump-no-daemon.json")))
    assert rbd_bulk._versions(empty, 10)["rbd_mirror"] == []
    denied = _Cluster(pacific, (-13, {}))  # ceph-proxy's key: no mgr caps
    assert rbd_bulk._versions(denied, 10)["rbd_mirror"] is None


@pytest.mark.parametrize("pair", PROVEN_PAIRS)
def test_the_lab_proven_pairs_are_supported(pair):
    source, destination = (CephVersion(major, 2, 0) for major in pair)
    assert support(source, destination) == "proven in the lab"


@pytest.mark.parametrize(
    "source, destination, rule",
    [
        (9, 16, "source-journal-mirroring"),
        (14, 14, "destination-rx-only-peer"),
        (18, 16, "no-downgrade"),
    ],
)
def test_each_rule_refuses_its_pair_naming_the_versions_and_what_is_supported(
    source, destination, rule
):
    src, dst = CephVersion(source, 2, 1), CephVersion(destination, 2, 1)
    (broken,) = [r for r in RELEASE_RULES if r.broken(src, dst)]
    assert broken.name == rule
    message = refusal(src, dst)
    assert f"from {src.describe()} to {dst.describe()}" in message
    assert broken.why in message and "Supported: a source of Jewel (10)" in message


@pytest.mark.parametrize(
    "source, command", [(None, "osd blocklist"), (16, "osd blocklist"), (15, "osd blacklist")]
)
def test_the_blocklist_probe_uses_the_sources_name_for_the_command(world, source, command):
    world.src.mon_versions = {f"ceph version {source}.2.17 (x) name (stable)": 1} if source else {}
    _run(world, "enable-mirroring")
    assert f"{command} add" in world.src.calls
    assert world.ctx.action_results["source-key-can-blocklist"] == "true"


def test_a_supported_pair_the_lab_has_not_run_says_so():
    assert support(CephVersion(15, 2, 17), CephVersion(19, 2, 1)) == (
        "supported, not proven in the lab"
    )


# --- The actions ----------------------------------------------------------------------------


def _run(world: World, action: str, **params):
    world.service["running"] = True
    return world.run(world.ctx.on.action(action, params=params), ready_state())


@pytest.mark.parametrize("dry_run", [False, True])
def test_enable_mirroring_refuses_a_newer_source_and_changes_nothing(world, dry_run):
    world.src.mon_versions = {REEF: 1}
    world.dst.mon_versions = {PACIFIC: 1}
    with pytest.raises(testing.ActionFailed) as exc:
        _run(world, "enable-mirroring", **{"dry-run": dry_run})
    assert "from 18.2.7 (reef) to 16.2.15 (pacific) is not supported" in exc.value.message
    assert "nothing changed" in exc.value.message
    assert world.src.modes == {} and world.dst.modes == {} and world.dst.peers == {}


def test_enable_mirroring_logs_the_releases_and_their_support(world):
    world.dst.mon_versions = {TENTACLE: 3}
    world.dst.daemon_versions = [TENTACLE]
    _run(world, "enable-mirroring")
    assert (
        "releases: source 16.2.15 (pacific), destination 20.2.4 (tentacle), "
        "rbd-mirror 20.2.4 (tentacle): proven in the lab"
    ) in world.ctx.action_logs


def test_status_reports_each_clusters_release_and_the_daemons(world):
    world.dst.mon_versions = {REEF: 1}
    world.dst.daemon_versions = [REEF, REEF]
    state = _run(world, "enable-mirroring")
    mirror(world.src, world.dst)
    world.run(world.ctx.on.action("status"), state)
    results = world.ctx.action_results
    assert results["source-release"] == "16.2.15 (pacific)"
    assert results["destination-release"] == "18.2.7 (reef)"
    assert results["daemon-release"] == "18.2.7 (reef)"
    assert results["release-support"] == "proven in the lab"


def test_status_with_the_source_down_still_answers_without_its_release(world):
    state = _run(world, "enable-mirroring")
    world.src.unreachable = True
    world.run(world.ctx.on.action("status"), state)
    results = world.ctx.action_results
    assert results["source-reachable"] is False or results["source-reachable"] == "false"
    assert results["releases"].startswith("unknown: source:")
    assert "source-release" not in results
