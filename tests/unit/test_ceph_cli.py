"""CephClient: argv shape (no shell, absolute paths), parsing real Pacific output, errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ceph_cli import EBUSY, CephClient, CephError, scrub

SAMPLES = Path(__file__).with_name("samples")
KEY = "AQBsrcsrcsrcsrcsrcsrcsrcsrcsrcsrcsrcsrc0=="
NO_POOLS = (0, '{"pools": []}', "")


class Runner:
    """Records argv and answers with canned (rc, stdout, stderr) by a substring of the command."""

    def __init__(self, answers: dict[str, tuple[int, str, str]]):
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(self, argv, **kw):
        assert kw.get("timeout") and not kw.get("shell")
        self.calls.append(argv)
        cmd = " ".join(argv)
        for needle, (rc, out, err) in self.answers.items():
            if needle in cmd:
                if rc == -9:
                    raise subprocess.TimeoutExpired(argv, kw["timeout"])
                return subprocess.CompletedProcess(argv, rc, out, err)
        raise AssertionError(f"unexpected command {cmd}")


def client(answers) -> tuple[CephClient, Runner]:
    runner = Runner(answers)
    return CephClient("source", "app", timeout=7, runner=runner), runner


def test_every_command_is_absolute_with_cluster_and_id():
    c, runner = client({"mirror pool demote": (0, "Demoted 0 mirrored images", "")})
    c.pool_demote("nova")
    argv = runner.calls[0]
    assert argv[:5] == ["/usr/bin/rbd", "--cluster", "source", "--id", "app"]
    assert argv[5:7] == ["--client_mount_timeout", "3"], "librados gives up before the kill"
    assert argv[-5:] == ["mirror", "pool", "demote", "--", "nova"], "options, then --, names"


def test_pools_parse_applications_and_sizes():
    detail = [
        {"pool_name": "nova", "pg_num": 32, "size": 3, "application_metadata": {"rbd": {}}},
        {"pool_name": "x", "pg_num": 1, "size": 1},
    ]
    c, runner = client({"rbd_bulk.py": (0, json.dumps({"pools": detail}), "")})
    nova, x = c.pools()
    assert runner.calls[0][0] == "/usr/bin/python3", "a mon command in the helper, not the CLI"
    assert (nova.name, nova.pg_num, nova.size, nova.applications) == ("nova", 32, 3, ("rbd",))
    assert x.applications == ()


def test_mirror_pool_info_reads_mode_and_peers_through_librbd_without_keys():
    peer = {"uuid": "u", "site_name": "src", "client_name": "client.rbd-mirror-src"}
    answer = {"pools": [{"name": "glance", "mode": "pool", "peers": [{**peer, "direction": "0"}]}]}
    c, runner = client({"rbd_bulk.py": (0, json.dumps(answer), "")})
    info = c.mirror_pool_info("glance")
    assert runner.calls[0][0] == "/usr/bin/python3", "librbd lists peers without their keys"
    assert info.mode == "pool" and info.peers[0].client_name == "client.rbd-mirror-src"
    c, _ = client({"rbd_bulk.py": NO_POOLS})
    with pytest.raises(CephError, match="no such pool") as exc:
        c.mirror_pool_info("glance")
    assert exc.value.rc == 2


def test_disable_journaling_is_one_process_and_reports_failures_without_keys():
    answer = {"changed": {"a": "journaling"}, "failed": {"b": f"PermissionError: {KEY}"}}
    c, runner = client({"rbd_bulk.py": (0, json.dumps(answer), "")})
    changed, failed = c.disable_journaling_all("nova", ["a", "b", "c"], workers=3)
    assert len(runner.calls) == 1 and changed == ["a"]
    assert KEY not in failed["b"] and "<redacted>" in failed["b"]


@pytest.mark.parametrize(
    "out, count", [("Promoted 5 mirrored images\n", 5), ("Promoted 0 mirrored images\n", 0)]
)
def test_pool_promote_returns_count(out, count):
    c, _ = client({"mirror pool promote": (0, out, "")})
    assert c.pool_promote("nova") == count


def test_pool_promote_ebusy_is_a_ceph_error_with_rc():
    c, _ = client(
        {
            "mirror pool promote": (
                16,
                "",
                "rbd: failed to promote image X: (16) Device or resource busy",
            )
        }
    )
    with pytest.raises(CephError) as exc:
        c.pool_promote("nova")
    assert exc.value.rc == EBUSY and "Device or resource busy" in str(exc.value)


def test_force_promote_passes_force():
    c, runner = client({"mirror pool promote": (0, "Promoted 1 mirrored images", "")})
    c.pool_promote("nova", force=True)
    assert runner.calls[0][-3:] == ["--force", "--", "nova"]


def test_a_pool_named_like_a_flag_can_only_be_a_name():
    """Without `--`, `rbd mirror pool promote --force` would promote the default pool `rbd`."""
    c, runner = client({"mirror pool": (0, "Promoted 0 mirrored images", "")})
    c.pool_promote("--force")
    c.pool_demote("--force")
    for argv in runner.calls:
        assert argv[-2:] == ["--", "--force"]


def test_timeout_is_reported_not_hung():
    c, _ = client({"mirror pool demote": (-9, "", "")})
    with pytest.raises(CephError) as exc:
        c.pool_demote("nova")
    assert exc.value.timed_out and "timed out" in str(exc.value)


def test_errors_never_carry_keys():
    c, _ = client({"auth": (1, "", f"bad key {KEY} in keyring")})
    with pytest.raises(CephError) as exc:
        c._run("/usr/bin/ceph", ["auth", "ls"])
    assert KEY not in str(exc.value) and "<redacted>" in str(exc.value)
    assert scrub(f"key = {KEY}") == "key = <redacted>"


def test_unparsable_json_is_a_ceph_error():
    c, _ = client({"rbd_bulk.py": (0, "{not json", "")})
    with pytest.raises(CephError, match="unparsable JSON"):
        c.mirror_pool_info("nova")


def test_missing_binary_is_a_ceph_error():
    def runner(argv, **kw):
        raise FileNotFoundError(2, "No such file", argv[0])

    c = CephClient("ceph", "x", runner=runner)
    with pytest.raises(CephError, match="No such file"):
        c.pools()


def test_peer_add_returns_uuid_and_is_rx_only():
    c, runner = client({"peer add": (0, "3b85c968-913e-49e2-9e98-cf9deedb3f0d\n", "")})
    assert c.peer_add("nova", "client.app", "source") == "3b85c968-913e-49e2-9e98-cf9deedb3f0d"
    assert runner.calls[0][-5:] == ["--direction", "rx-only", "--", "nova", "client.app@source"]


def test_remove_peer_omap_targets_only_that_peer_key():
    c, runner = client({"rmomapkey": (0, "", "")})
    c.remove_peer_omap("nova", "u1")
    assert runner.calls[0][0] == "/usr/bin/rados"
    assert runner.calls[0][-4:] == ["--pool=nova", "rmomapkey", "rbd_mirroring", "mirror_peer_u1"]


def test_bulk_helper_runs_under_system_python_with_a_json_request():
    seen = {}

    def runner(argv, **kw):
        seen["argv"], seen["input"] = argv, json.loads(kw["input"])
        return subprocess.CompletedProcess(
            argv,
            0,
            json.dumps(
                {"changed": {"a": "journaling"}, "failed": {"b": f"PermissionError: {KEY}"}}
            ),
            "",
        )

    c = CephClient("source", "app", runner=runner)
    changed, failed = c.enable_journaling_all("nova", ["a", "b"], workers=3)
    assert seen["argv"][0] == "/usr/bin/python3" and seen["argv"][1].endswith("rbd_bulk.py")
    assert seen["input"] == {
        "cluster": "source",
        "client_id": "app",
        "connect_timeout": 10,
        "op": "enable-journaling",
        "pool": "nova",
        "images": ["a", "b"],
        "workers": 3,
    }
    assert changed == {"a": "journaling"} and KEY not in failed["b"]


def test_image_states_maps_fields_and_refuses_partial_answers():
    answer = {
        "images": [
            {
                "name": "a",
                "parent": "glance/i@snap",
                "features": ["journaling"],
                "mirroring_state": "enabled",
                "primary": True,
            }
        ],
        "failed": {},
    }
    c, _ = client({"rbd_bulk.py": (0, json.dumps(answer), "")})
    (info,) = c.image_states("nova")
    assert info.primary is True and info.parent == "glance/i@snap"
    answer["failed"] = {"b": "ImageNotFound"}
    c, _ = client({"rbd_bulk.py": (0, json.dumps(answer), "")})
    with pytest.raises(CephError, match="1 image"):
        c.image_states("nova")


def test_bulk_helper_failure_is_a_ceph_error():
    c, _ = client({"rbd_bulk.py": (1, "", "ObjectNotFound: [errno 2] error opening pool")})
    with pytest.raises(CephError, match="error opening pool"):
        c.image_states("nova")


def test_pool_state_is_one_process_with_statuses_and_primary_flags():
    answer = {
        "mode": "pool",
        "images": ["a", "b"],
        "peers": [
            {"uuid": "u", "site_name": "source", "client_name": "client.app", "direction": "0"}
        ],
        "statuses": [
            {
                "name": "a",
                "global_id": "g",
                "primary": False,
                "state": "up+replaying",
                "description": "replaying, {}",
                "last_update": "2026-11-24 07:10:45",
            }
        ],
    }
    c, runner = client({"rbd_bulk.py": (0, json.dumps(answer), "")})
    state = c.pool_state("nova")
    assert len(runner.calls) == 1
    assert state.mode == "pool" and state.images == ("a", "b")
    assert state.peers[0].client_name == "client.app"
    (a,) = state.statuses
    assert a.state == "up+replaying" and a.primary is False


@pytest.mark.parametrize(
    "rc, err",
    [
        (110, "rbd: couldn't connect to the cluster!"),
        (110, "TimedOut: [errno 110] RADOS timed out (error connecting to the cluster)"),
        (-9, ""),
    ],
)
def test_an_unreachable_cluster_is_waited_for_once(rc, err):
    c, runner = client({"mirror pool demote": (rc, "", err), "rbd_bulk.py": NO_POOLS})
    with pytest.raises(CephError):
        c.pool_demote("nova")
    with pytest.raises(CephError):
        c.pools()
    assert len(runner.calls) == 1, "the second call failed at once"


def test_an_ordinary_error_does_not_mark_the_cluster_unreachable():
    c, runner = client(
        {"mirror pool demote": (2, "", "error opening pool"), "rbd_bulk.py": NO_POOLS}
    )
    with pytest.raises(CephError):
        c.pool_demote("nova")
    assert c.pools() == [] and len(runner.calls) == 2


@pytest.mark.parametrize(
    "rc, err",
    [
        (13, "rbd: couldn't connect to the cluster!"),
        (
            1,
            "PermissionDeniedError: [errno 13] RADOS permission denied "
            "(error connecting to the cluster)",
        ),
        (1, "ObjectNotFound: [errno 2] RADOS object not found (error connecting to the cluster)"),
        (-9, ""),
    ],
)
def test_a_denied_key_a_missing_keyring_or_a_slow_command_is_not_a_lost_cluster(rc, err):
    """Review finding: librados says "error connecting" for answers too; force needs a lost one."""
    c, _ = client({"mirror pool demote": (rc, "", err)})
    with pytest.raises(CephError):
        c.pool_demote("nova")
    assert not c.lost and not c.confirm_lost()


def test_a_lost_cluster_is_confirmed_on_a_fresh_connection_and_a_blip_is_not():
    c, runner = client({"mirror pool demote": (110, "", "rbd: couldn't connect to the cluster!")})
    runner.answers["rbd_bulk.py"] = (110, "", "TimedOut: [errno 110] RADOS timed out")
    with pytest.raises(CephError):
        c.pool_demote("nova")
    assert c.lost and c.confirm_lost() and len(runner.calls) == 2
    runner.answers["rbd_bulk.py"] = NO_POOLS  # it answers again
    assert not c.confirm_lost() and not c.lost


@pytest.mark.parametrize("timeout", [5, 8, 10, 11, 60])
def test_librados_gives_up_connecting_well_before_the_command_is_killed(timeout):
    """Review finding: with command-timeout <= 10 a dead source was killed, never `lost`."""
    seen = {}

    def runner(argv, **kw):
        seen["mount"] = int(argv[argv.index("--client_mount_timeout") + 1])
        seen["kill"] = kw["timeout"]
        return subprocess.CompletedProcess(argv, 0, "Demoted 0 mirrored images", "")

    CephClient("source", "app", timeout=timeout, runner=runner).pool_demote("nova")
    assert 1 <= seen["mount"] <= seen["kill"] - 4
