"""Ceph releases: each release's real output parsed, the pair rules, and the actions using them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from ops import testing

from ceph_cli import CephClient
from ceph_release import (
    PROVEN_PAIRS,
    RELEASE_RULES,
    CephVersion,
    ClusterVersions,
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


def _cv(mon: int, osd: int | None = None, daemons: tuple[int, ...] | None = None):
    """A cluster's versions: its mons on `mon`.2.0, its OSDs on `osd`, its daemons'."""
    return ClusterVersions(
        mons=(CephVersion(mon, 2, 0),),
        osds=(CephVersion(osd if osd is not None else mon, 2, 0),),
        rbd_mirror=None if daemons is None else tuple(CephVersion(d, 2, 0) for d in daemons),
    )


# --- Each release's output ----------------------------------------------------------------


@pytest.mark.parametrize(
    "sample, expected",
    [
        ("pacific-16.2.15/versions.json", "16.2.15 (pacific)"),  # has "mds": {}
        ("reef-18.2.7/versions.json", "18.2.7 (reef)"),  # no mds, an rbd-mirror entry
        ("tentacle-20.2.4/versions.json", "20.2.4 (tentacle)"),  # "(stable - RelWithDebInfo)"
    ],
)
def test_each_releases_ceph_versions_gives_its_release(sample, expected):
    versions = versions_from(_sample(sample), None, "not asked")
    assert versions.describe() == expected
    assert versions.describe_daemons() == "not asked"


def test_mixed_clusters_count_as_their_oldest_and_newest_and_say_so():
    versions = versions_from({"mon": {REEF: 2}, "osd": {PACIFIC: 1}}, [])
    assert versions.oldest == CephVersion(16, 2, 15)
    assert versions.newest == CephVersion(18, 2, 7)
    assert versions.describe() == "16.2.15 (pacific), mixed: 16.2.15, 18.2.7"
    assert versions.describe_daemons() == "none running"


def test_unparsable_version_strings_are_left_out_and_the_cluster_is_unknown():
    unknown = versions_from({"mon": {"ceph version Development (no_version) reef": 1}}, ["x"])
    assert unknown.describe() == "unknown" and unknown.rbd_mirror == ()
    assert "source reported no Ceph version" in refusal(unknown, _cv(18))
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
        self.mgr_calls = 0

    def mon_command(self, command, inbuf):
        assert json.loads(command)["prefix"] == "versions"
        return 0, json.dumps(self.versions).encode(), ""

    def mgr_command(self, command, inbuf, timeout):
        assert json.loads(command)["prefix"] == "service dump"
        self.mgr_calls += 1
        rc, body = self.dump
        return rc, json.dumps(body).encode(), "" if rc == 0 else "mgr error"


def test_versions_op_reads_the_daemons_from_the_service_dump(rbd_bulk):
    dump = _sample("reef-18.2.7/service-dump.json")  # its "summary": "" entry is skipped
    reef = _Cluster(_sample("reef-18.2.7/versions.json"), (0, dump))
    answer = rbd_bulk._versions(reef, 10, daemons=True)
    versions = versions_from(answer["versions"], answer["rbd_mirror"], answer["unread"])
    assert versions.describe_daemons() == "18.2.7 (reef)"
    assert versions.osds == (CephVersion(18, 2, 7),)


@pytest.mark.parametrize(
    "rc, unread",
    [
        (-13, "not readable with this key (rc=-13)"),  # ceph-proxy's key: no mgr caps
        (-110, "the mgr did not answer (rc=-110)"),  # rados_mon_op_timeout, no mgr
        (-2, "the mgr did not answer (rc=-2)"),
    ],
)
def test_versions_op_never_fails_on_the_mgr_and_says_why(rbd_bulk, rc, unread):
    cluster = _Cluster(_sample("pacific-16.2.15/versions.json"), (rc, {}))
    answer = rbd_bulk._versions(cluster, 10, daemons=True)
    assert answer["rbd_mirror"] is None and answer["unread"] == unread
    assert versions_from(answer["versions"], None).describe() == "16.2.15 (pacific)"


def test_versions_op_asks_no_mgr_unless_told_and_sees_no_daemon_when_none_runs(rbd_bulk):
    pacific = _sample("pacific-16.2.15/versions.json")
    empty = _Cluster(pacific, (0, _sample("pacific-16.2.15/service-dump-no-daemon.json")))
    assert rbd_bulk._versions(empty, 10, daemons=False)["rbd_mirror"] is None
    assert empty.mgr_calls == 0, "the source's mgr is never asked"
    assert rbd_bulk._versions(empty, 10, daemons=True)["rbd_mirror"] == []


def test_versions_op_is_routed_with_a_bound_on_mon_and_mgr_commands(rbd_bulk, monkeypatch):
    seen = {}
    cluster = _Cluster(_sample("tentacle-20.2.4/versions.json"), (-13, {}))

    def rados_(**kw):
        seen.update(kw)
        handle = mock.MagicMock()
        handle.__enter__.return_value = cluster
        return handle

    monkeypatch.setattr(rbd_bulk.rados, "Rados", rados_)
    request = {"cluster": "ceph", "client_id": "x", "connect_timeout": 7, "op": "versions"}
    answer = rbd_bulk.handle({**request, "daemons": True})
    assert seen["conf"]["rados_mon_op_timeout"] == "7", "a missing mgr cannot hang it"
    assert versions_from(answer["versions"], None).describe() == "20.2.4 (tentacle)"


def test_ceph_client_sends_the_versions_request_and_reads_its_answer():
    sent = {}

    def runner(argv, **kw):
        sent.update(json.loads(kw["input"]))
        answer = {"versions": _sample("reef-18.2.7/versions.json"), "rbd_mirror": [REEF]}
        return subprocess.CompletedProcess(argv, 0, json.dumps({**answer, "unread": ""}), "")

    versions = CephClient("ceph", "rbd-mirror.x", runner=runner).versions(daemons=True)
    assert sent["op"] == "versions" and sent["daemons"] is True
    assert versions.describe() == "18.2.7 (reef)"
    assert versions.describe_daemons() == "18.2.7 (reef)"


@pytest.mark.parametrize(
    "release, command",
    [(None, "blocklist"), ((16, 2, 0), "blocklist"), ((15, 2, 17), "blacklist")],
)
def test_ceph_client_probes_with_the_blocklist_command_of_the_sources_release(release, command):
    calls = []

    def runner(argv, **kw):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, "", "")

    client = CephClient("source", "app", runner=runner)
    assert client.can_blocklist(CephVersion(*release) if release else None)
    (argv,) = calls
    assert argv[0] == "/usr/bin/ceph" and argv[-5:-3] == ["osd", command]


# --- The rules ----------------------------------------------------------------------------


@pytest.mark.parametrize("pair", [(16, 16), (16, 18), (16, 20), (18, 20)])
def test_the_pairs_the_lab_runs_are_reported_proven(pair):
    # the pairs of `tox -e functional` and `tox -e matrix`; a change to either changes both
    assert PROVEN_PAIRS == ((16, 16), (16, 18), (16, 20), (18, 20))
    assert support(_cv(pair[0]), _cv(pair[1], daemons=(pair[1],))) == "proven in the lab"


MID_UPGRADE_SOURCE = ClusterVersions(mons=(CephVersion(16, 2, 0), CephVersion(18, 2, 0)))


@pytest.mark.parametrize(
    "source, destination, rule",
    [
        (_cv(11), _cv(16), "source-luminous"),
        (_cv(14), _cv(14), "destination-octopus"),
        (_cv(18), _cv(16), "no-downgrade"),
        (_cv(17), _cv(18, osd=16), "no-downgrade"),  # destination OSDs not yet upgraded
        (MID_UPGRADE_SOURCE, _cv(17), "no-downgrade"),  # its newest mon counts
        (_cv(20), _cv(20, daemons=(19,)), "daemon-not-older"),  # Squid's daemon
        (_cv(16), _cv(21), "known-releases"),
    ],
)
def test_each_rule_refuses_its_pair_naming_the_versions_and_what_is_supported(
    source, destination, rule
):
    (broken,) = [r for r in RELEASE_RULES if r.broken(source, destination)]
    assert broken.name == rule
    message = refusal(source, destination)
    assert f"from {source.describe()} to {destination.describe()}" in message
    assert broken.why in message and "Supported: a source of Luminous (12)" in message


def test_a_supported_pair_the_lab_has_not_run_says_so():
    assert support(_cv(15), _cv(19, daemons=(19,))) == "supported, not proven in the lab"
    two_points = ClusterVersions(mons=(CephVersion(16, 2, 0), CephVersion(16, 2, 15)))
    assert support(two_points, _cv(18)) == "supported, not proven in the lab"


# --- The actions ----------------------------------------------------------------------------


def _run(world: World, action: str, **params):
    world.service["running"] = True
    return world.run(world.ctx.on.action(action, params=params), ready_state())


@pytest.mark.parametrize("dry_run", [False, True])
@pytest.mark.parametrize(
    "source, destination, words",
    [
        ({REEF: 1}, {PACIFIC: 1}, "from 18.2.7 (reef) to 16.2.15 (pacific) (rbd-mirror"),
        ({"ceph version Development (no_version) reef": 1}, {PACIFIC: 1}, "no Ceph version"),
        ({PACIFIC: 1}, {"ceph version 21.2.0 (x) umbrella (stable)": 1}, "upgrade the charm"),
    ],
)
def test_enable_mirroring_refuses_a_pair_it_cannot_support_and_changes_nothing(
    world, dry_run, source, destination, words
):
    world.src.mon_versions, world.dst.mon_versions = source, destination
    with pytest.raises(testing.ActionFailed) as exc:
        _run(world, "enable-mirroring", **{"dry-run": dry_run})
    assert words in exc.value.message and "nothing changed" in exc.value.message
    assert world.src.modes == {} and world.dst.modes == {} and world.dst.peers == {}
    assert not any("journaling" in i.features for p in world.src.pool_images.values() for i in p)


@pytest.mark.parametrize("source, command", [(16, "osd blocklist"), (15, "osd blacklist")])
def test_enable_mirroring_probes_with_the_source_release_it_read(world, source, command):
    world.src.mon_versions = {f"ceph version {source}.2.17 (x) name (stable)": 1}
    _run(world, "enable-mirroring")
    assert f"{command} add" in world.src.calls
    assert world.ctx.action_results["source-key-can-blocklist"] == "true"


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
    assert results["source-reachable"] == "false"
    assert results["releases"].startswith("unknown: source:")
    assert "source-release" not in results
