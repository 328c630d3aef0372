"""Ceph releases: each release's real output parsed, the pair rules, and the actions using them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from ops import testing

from ceph_cli import UNIT_TOOLS, CephClient, unit_tool_versions
from ceph_release import (
    PROVEN_PAIRS,
    RELEASE_RULES,
    CephVersion,
    ClusterVersions,
    ReleasePair,
    blocklist_command,
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


def _pair(source: ClusterVersions, destination: ClusterVersions, tools: int | None = None):
    """The pair, with this unit's rbd and rbd-mirror on `tools` (default: the destination's)."""
    major = tools if tools is not None else _major(destination.oldest)
    return ReleasePair(source, destination, dict.fromkeys(UNIT_TOOLS, CephVersion(major, 2, 0)))


def _major(v: CephVersion | None) -> int:
    assert v is not None
    return v.major


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
    assert "source reported versions the charm cannot read: ceph version Development" in (
        refusal(_pair(unknown, _cv(18)))
    )
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

    def __init__(self, versions: dict, dump: tuple[int, dict], mon_rc: int = 0):
        self.versions, self.dump, self.mon_rc = versions, dump, mon_rc
        self.mgr_calls = 0

    def mon_command(self, command, inbuf):
        assert json.loads(command)["prefix"] == "versions"
        if self.mon_rc:
            return self.mon_rc, b"", "mon error"
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
    with pytest.raises((KeyError, AttributeError)):  # a pool op gets no such bound:
        rbd_bulk.handle(
            {"cluster": "c", "client_id": "x", "connect_timeout": 7, "op": "pool-state"}
        )
    assert "rados_mon_op_timeout" not in seen["conf"], "its first-osdmap wait would exit 110"
    request = {"cluster": "ceph", "client_id": "x", "connect_timeout": 7, "op": "versions"}
    answer = rbd_bulk.handle({**request, "daemons": False})
    assert seen["conf"]["rados_mon_op_timeout"] == "7", "a missing mgr cannot hang it"
    assert versions_from(answer["versions"], None).describe() == "20.2.4 (tentacle)"
    assert cluster.mgr_calls == 0
    answer = rbd_bulk.handle({**request, "daemons": True})
    assert cluster.mgr_calls == 1 and answer["unread"].startswith("not readable")


def test_versions_op_skips_a_daemon_without_a_version_and_fails_when_the_mon_does(rbd_bulk):
    reef = _sample("reef-18.2.7/versions.json")
    dump = {"services": {"rbd-mirror": {"daemons": {"summary": "", "7": {"gid": 7}}}}}
    assert rbd_bulk._versions(_Cluster(reef, (0, dump)), 10, daemons=True)["rbd_mirror"] == []
    denied = _Cluster(reef, (0, dump), mon_rc=-1)
    with pytest.raises(rbd_bulk.rados.Error):
        rbd_bulk._versions(denied, 10, daemons=False)
    older = _Cluster(reef, (0, dump), mon_rc=-22)  # before Luminous: no `versions` command
    answer = rbd_bulk._versions(older, 10, daemons=False)
    assert "no mon" in refusal(_pair(versions_from(answer["versions"], None), _cv(18)))


@pytest.mark.parametrize("daemons", [False, True])
def test_ceph_client_asks_for_the_daemons_only_when_told(daemons):
    sent = {}

    def runner(argv, **kw):
        sent.update(json.loads(kw["input"]))
        answer = {"versions": _sample("pacific-16.2.15/versions.json"), "rbd_mirror": None}
        return subprocess.CompletedProcess(argv, 0, json.dumps({**answer, "unread": "why"}), "")

    versions = CephClient("source", "app", runner=runner).versions(daemons=daemons)
    assert sent["daemons"] is daemons
    assert versions.describe_daemons() == "why"


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
    assert support(_pair(_cv(pair[0]), _cv(pair[1]))) == "proven in the lab"


def _mixed(*majors: int) -> ClusterVersions:
    """A cluster mid-upgrade: one mon on each of `majors`, OSDs on the first."""
    return ClusterVersions(
        mons=tuple(CephVersion(m, 2, 0) for m in majors), osds=(CephVersion(majors[0], 2, 0),)
    )


@pytest.mark.parametrize(
    "pair, rule",
    [
        (_pair(_cv(11), _cv(16)), "source-luminous"),
        (_pair(_mixed(11, 16), _cv(16)), "source-luminous"),  # its oldest mon counts
        (_pair(_cv(14), _cv(14)), "destination-octopus"),
        (_pair(_cv(16), _mixed(14, 16), tools=16), "destination-octopus"),  # its oldest counts
        (_pair(_cv(18), _cv(16)), "no-downgrade"),
        (_pair(_cv(17), _cv(18, osd=16), tools=18), "no-downgrade"),  # OSDs not yet upgraded
        (_pair(_mixed(16, 18), _cv(17)), "no-downgrade"),  # the source's newest mon counts
        (_pair(_cv(20), _cv(20), tools=19), "unit-tools-not-older"),  # Squid's daemon
        (
            ReleasePair(
                _cv(18), _cv(18), {"rbd": CephVersion(16, 2, 0), "rbd-mirror": _cv(18).newest}
            ),
            "unit-tools-not-older",  # the unit's rbd (its librbd) counts as much as its daemon
        ),
        (_pair(_cv(20), _cv(20, daemons=(18, 20))), "registered-daemons-not-older"),
        (_pair(_mixed(16, 20), _cv(20), tools=19), "unit-tools-not-older"),  # newest again
        (_pair(_cv(16), _cv(21), tools=20), "known-releases"),
        (_pair(_mixed(16, 21), _cv(21)), "known-releases"),  # the source's newest
        (_pair(_cv(16), _cv(20), tools=21), "known-releases"),  # the unit's tools
    ],
)
def test_each_rule_refuses_its_pair_naming_the_versions_and_what_is_supported(pair, rule):
    broken = [r.name for r in RELEASE_RULES if r.broken(pair)]
    assert rule in broken
    message = refusal(pair)
    assert f"from {pair.source.describe()} to {pair.destination.describe()}" in message
    assert all(r.why in message for r in RELEASE_RULES if r.name in broken)
    assert "Supported: a source of Luminous (12)" in message


@pytest.mark.parametrize(
    "pair, words",
    [
        (
            _pair(_cv(16), ClusterVersions(mons=(CephVersion(16, 2, 0),))),
            "destination reported no",
        ),
        (
            _pair(
                versions_from(
                    {"mon": {PACIFIC: 2, "ceph version dev": 1}, "osd": {PACIFIC: 1}}, None
                ),
                _cv(18),
            ),
            "source reported versions the charm cannot read: ceph version dev",
        ),
        (
            ReleasePair(_cv(16), _cv(18), {"rbd": CephVersion(18, 2, 0), "rbd-mirror": None}),
            "this unit's rbd-mirror did not tell its version",
        ),
    ],
)
def test_a_version_that_cannot_be_read_is_refused(pair, words):
    assert words in refusal(pair)


def test_a_supported_pair_the_lab_has_not_run_says_so():
    assert support(_pair(_cv(15), _cv(19))) == "supported, not proven in the lab"
    two_points = ClusterVersions(
        mons=(CephVersion(16, 2, 0), CephVersion(16, 2, 15)), osds=(CephVersion(16, 2, 15),)
    )
    assert support(_pair(two_points, _cv(18))) == "supported, not proven in the lab"
    mixed_destination = ClusterVersions(
        mons=(CephVersion(18, 2, 0),), osds=(CephVersion(20, 2, 0),)
    )
    assert support(_pair(_cv(16), mixed_destination)) == "supported, not proven in the lab"
    squid_tools = _pair(_cv(16), _cv(18), tools=19)  # the lab ran the destination's tools
    assert support(squid_tools) == "supported, not proven in the lab"


def test_the_blocklist_command_follows_the_oldest_mon():
    assert blocklist_command(CephVersion(15, 2, 17)) == ("osd", "blacklist")
    assert blocklist_command(CephVersion(16, 2, 0)) == ("osd", "blocklist")
    assert blocklist_command(None) == ("osd", "blocklist")
    pacific_mons_octopus_osds = ClusterVersions(
        mons=(CephVersion(16, 2, 0),), osds=(CephVersion(15, 2, 0),)
    )
    assert pacific_mons_octopus_osds.oldest_mon == CephVersion(16, 2, 0)


def test_version_strings_parse_only_from_their_start():
    assert CephVersion.parse("ceph version 16.2.15 (x) pacific (stable)") == CephVersion(16, 2, 15)
    assert CephVersion.parse("  20.2.4") == CephVersion(20, 2, 4)
    assert CephVersion.parse("not ceph version 16.2.15") is None


@pytest.mark.parametrize(
    "failure", [FileNotFoundError("/usr/bin/rbd-mirror"), (127, ""), (0, "garbage")]
)
def test_unit_tool_versions_runs_each_tool_bounded_and_reads_what_it_says(failure):
    calls = []

    def runner(argv, **kw):
        calls.append((argv, kw["timeout"]))
        if argv[0].endswith("rbd-mirror"):
            if isinstance(failure, Exception):
                raise failure
            rc, out = failure
            return subprocess.CompletedProcess(argv, rc, out, "librbd.so: cannot open")
        return subprocess.CompletedProcess(argv, 0, f"{TENTACLE}\n", "")

    assert unit_tool_versions(runner, timeout=5) == {
        "rbd": CephVersion(20, 2, 4),
        "rbd-mirror": None,
    }
    assert calls == [(["/usr/bin/rbd", "--version"], 5), (["/usr/bin/rbd-mirror", "--version"], 5)]


# --- The actions ----------------------------------------------------------------------------


def _run(world: World, action: str, **params):
    world.service["running"] = True
    return world.run(world.ctx.on.action(action, params=params), ready_state())


@pytest.mark.parametrize("dry_run", [False, True])
@pytest.mark.parametrize(
    "source, destination, tools, words",
    [
        ({REEF: 1}, {PACIFIC: 1}, 16, "from 18.2.7 (reef) to 16.2.15 (pacific) with this unit's"),
        ({"ceph version dev (x)": 1}, {PACIFIC: 1}, 16, "cannot read: ceph version dev"),
        ({}, {PACIFIC: 1}, 16, "source reported no mon"),  # a mon older than Luminous
        ({PACIFIC: 1}, {"ceph version 21.2.0 (x) u (stable)": 1}, 16, "upgrade the charm"),
        ({REEF: 1}, {REEF: 1}, 16, "rbd-mirror and rbd (its librbd) must not run an older"),
    ],
)
def test_enable_mirroring_refuses_a_pair_it_cannot_support_and_changes_nothing(
    world, dry_run, source, destination, tools, words
):
    world.src.mon_versions, world.dst.mon_versions = source, destination
    world.unit_tools = dict.fromkeys(UNIT_TOOLS, CephVersion(tools, 2, 15))
    with pytest.raises(testing.ActionFailed) as exc:
        _run(world, "enable-mirroring", **{"dry-run": dry_run})
    assert words in exc.value.message and "nothing changed" in exc.value.message
    assert world.src.modes == {} and world.dst.modes == {} and world.dst.peers == {}
    assert not any("journaling" in i.features for p in world.src.pool_images.values() for i in p)
    assert not any("blocklist" in c or "blacklist" in c for c in world.src.calls)


@pytest.mark.parametrize("source, command", [(16, "osd blocklist"), (15, "osd blacklist")])
def test_enable_mirroring_probes_with_the_source_mons_release(world, source, command):
    world.src.mon_versions = {f"ceph version {source}.2.17 (x) name (stable)": 1}
    world.src.osd_versions = {f"ceph version {31 - source}.2.17 (x) name (stable)": 1}
    world.dst.osd_versions = {PACIFIC: 1}
    _run(world, "enable-mirroring")
    assert f"{command} add" in world.src.calls
    assert world.ctx.action_results["source-key-can-blocklist"] == "true"


def test_enable_mirroring_logs_the_releases_and_never_asks_the_sources_mgr(world):
    world.dst.mon_versions = {TENTACLE: 3}
    world.dst.daemon_versions = [REEF]  # another unit's daemon, registered with the mgr
    world.unit_tools = dict.fromkeys(UNIT_TOOLS, CephVersion(20, 2, 4))
    _run(world, "enable-mirroring")
    assert (
        "releases: source 16.2.15 (pacific), destination 20.2.4 (tentacle), "
        "this unit's rbd 20.2.4 (tentacle), rbd-mirror 20.2.4 (tentacle), "
        "daemons registered 18.2.7 (reef): proven in the lab"
    ) in world.ctx.action_logs
    assert world.src.version_reads == [False] and world.dst.version_reads == [True]


def test_status_reports_each_clusters_release_the_units_tools_and_the_daemons(world):
    world.dst.mon_versions = {REEF: 1}
    world.dst.daemon_versions = [TENTACLE, REEF]
    world.unit_tools = dict.fromkeys(UNIT_TOOLS, CephVersion(18, 2, 7))
    state = _run(world, "enable-mirroring")
    mirror(world.src, world.dst)
    world.run(world.ctx.on.action("status"), state)
    results = world.ctx.action_results
    assert results["source-release"] == "16.2.15 (pacific)"
    assert results["destination-release"] == "18.2.7 (reef)"
    assert results["daemon-release"] == "18.2.7 (reef), 20.2.4 (tentacle)"
    assert results["unit-tools-release"] == "rbd 18.2.7 (reef), rbd-mirror 18.2.7 (reef)"
    assert results["release-support"] == "proven in the lab"
    assert world.src.version_reads[-1] is False, "the source's mgr is never asked"


def test_status_with_the_source_down_still_shows_the_destinations_release(world):
    state = _run(world, "enable-mirroring")
    world.src.unreachable = True
    world.run(world.ctx.on.action("status"), state)
    results = world.ctx.action_results
    assert results["source-reachable"] == "false"
    assert results["source-release"].startswith("unknown: source:")
    assert results["destination-release"] == "16.2.15 (pacific)"
    assert results["release-support"] == "unknown: a cluster did not answer"
