"""The daemon files: rendered from templates, keys never readable by others, foreign confs kept."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

import daemon
from daemon import (
    MARKER,
    DaemonFiles,
    ForeignFileError,
    RbdMirrorDaemon,
    ServiceError,
    service_name,
)

REPO = Path(__file__).resolve().parents[2]
FILES = DaemonFiles(
    destination_mon_hosts=("10.0.1.1", "10.0.1.2"),
    destination_key="AQBdstdstdstdstdstdstdstdstdstdstdstdst0==",
    source_cluster="source",
    source_mon_hosts=("10.0.0.1:6789",),
    source_key="AQBsrcsrcsrcsrcsrcsrcsrcsrcsrcsrcsrcsrc0==",
    tuning=(("rbd_mirror_concurrent_image_syncs", 7), ("rbd_concurrent_management_ops", 20)),
)


@pytest.fixture
def mirror(tmp_path) -> RbdMirrorDaemon:
    return RbdMirrorDaemon(REPO / "templates", "host1", "client.app", tmp_path)


def test_write_renders_all_four_files_then_is_idempotent(mirror, tmp_path):
    assert mirror.write(FILES) is True
    conf = (tmp_path / "ceph.conf").read_text()
    assert conf.startswith(MARKER) and "mon host = 10.0.1.1 10.0.1.2" in conf
    assert (
        "[client]\nrbd_mirror_concurrent_image_syncs = 7\nrbd_concurrent_management_ops = 20\n"
        in conf
    )
    keyring = (tmp_path / "ceph.client.rbd-mirror.host1.keyring").read_text()
    assert keyring == f"[client.rbd-mirror.host1]\n\tkey = {FILES.destination_key}\n"
    assert (tmp_path / "source.client.app.keyring").exists()
    assert FILES.source_key not in (tmp_path / "source.conf").read_text()
    assert mirror.write(FILES) is False


def test_keyrings_are_0600_and_confs_0644(mirror, tmp_path):
    mirror.write(FILES)
    for path in tmp_path.iterdir():
        expected = 0o600 if path.name.endswith(".keyring") else 0o644
        assert stat.S_IMODE(path.stat().st_mode) == expected, path


def test_a_key_is_never_written_to_a_file_others_can_read(mirror, monkeypatch):
    real_fdopen = os.fdopen
    modes = []

    def checked_fdopen(fd, *args, **kwargs):
        modes.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(daemon.os, "fdopen", checked_fdopen)
    mirror.write(FILES)
    assert sorted(modes) == [0o600, 0o600, 0o644, 0o644]


def test_a_loose_mode_on_an_existing_keyring_is_tightened(mirror, tmp_path):
    mirror.write(FILES)
    path = tmp_path / "source.client.app.keyring"
    path.chmod(0o644)
    assert mirror.write(FILES) is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("name", ["ceph.conf", "source.conf"])
def test_foreign_conf_is_never_overwritten(mirror, tmp_path, name):
    (tmp_path / name).write_text("[global]\nfsid = theirs\n")
    with pytest.raises(ForeignFileError):
        mirror.write(FILES)
    assert (tmp_path / name).read_text() == "[global]\nfsid = theirs\n"
    assert not list(tmp_path.glob("*.keyring")), "nothing written"


def test_service_name_matches_the_packaged_unit():
    assert service_name("host1") == "ceph-rbd-mirror@rbd-mirror.host1"


def test_missing_packages_reads_dpkg_status(monkeypatch):
    out = "rbd-mirror installed\nceph-common installed\npython3-rbd not-installed\n"

    def fake_run(argv, **kw):
        assert argv[0] == "/usr/bin/dpkg-query" and not kw.get("shell")
        return subprocess.CompletedProcess(argv, 1, out, "")

    monkeypatch.setattr(daemon.subprocess, "run", fake_run)
    assert RbdMirrorDaemon.missing_packages() == ["python3-rbd"]


def test_install_calls_apt_only_for_what_is_missing(monkeypatch):
    calls = []
    monkeypatch.setattr(
        daemon, "_charmhelpers_apt_install", lambda: lambda *a, **k: calls.append(a)
    )
    monkeypatch.setattr(RbdMirrorDaemon, "missing_packages", staticmethod(lambda: []))
    assert RbdMirrorDaemon.install() == [] and calls == []
    monkeypatch.setattr(RbdMirrorDaemon, "missing_packages", staticmethod(lambda: ["rbd-mirror"]))
    assert RbdMirrorDaemon.install() == ["rbd-mirror"] and calls == [(["rbd-mirror"],)]


def test_a_failed_apt_install_is_a_service_error_not_a_crashed_hook(monkeypatch):
    """Review finding: charmhelpers raises CalledProcessError, which no handler caught."""

    def failing(packages, **kwargs):
        raise subprocess.CalledProcessError(100, ["apt-get", "install", *packages])

    monkeypatch.setattr(daemon, "_charmhelpers_apt_install", lambda: failing)
    monkeypatch.setattr(RbdMirrorDaemon, "missing_packages", staticmethod(lambda: ["rbd-mirror"]))
    with pytest.raises(ServiceError, match=r"apt-get install rbd-mirror failed \(rc=100\)"):
        RbdMirrorDaemon.install()


# --- the service: the pre-start drop-in, loaded whenever it changes -----------------------


@pytest.fixture
def systemd(monkeypatch, tmp_path):
    """Every systemctl call recorded; `failing` holds the verbs that exit 1 ("hang": raise).

    `show` answers as systemd would: the drop-ins it loaded at the last reload, and whether
    one changed on disk since (`shown["NeedDaemonReload"]` forces that answer).
    """
    calls: list[str] = []
    failing: dict[str, str] = {}
    shown = {"NeedDaemonReload": "no", "DropInPaths": "", "LoadState": "loaded"}

    def fake(*args, timeout=None):
        calls.append(" ".join(args))
        if failing.get(args[0]) == "hang":
            raise ServiceError(f"`systemctl {args[0]}` did not answer in 90 s")
        rc = 1 if args[0] in failing else 0
        if args[0] == "daemon-reload" and not rc:
            shown["DropInPaths"] = " ".join(map(str, (tmp_path / "sd").glob("*/*.conf")))
        out = "".join(f"{k}={v}\n" for k, v in shown.items()) if args[0] == "show" else ""
        return subprocess.CompletedProcess(args, rc, out, "")

    monkeypatch.setattr(daemon, "_systemctl", fake)
    return calls, failing, shown


@pytest.fixture
def unit(tmp_path) -> RbdMirrorDaemon:
    return RbdMirrorDaemon(REPO / "templates", "host1", "client.app", tmp_path, tmp_path / "sd")


SERVICE = "ceph-rbd-mirror@rbd-mirror.host1"
SHOW = f"show --property=NeedDaemonReload --property=DropInPaths --property=LoadState {SERVICE}"


def test_the_drop_in_runs_the_pre_start_step_over_the_migrated_pools(unit, systemd, tmp_path):
    calls, _, _ = systemd
    assert unit.ensure_pre_start(("nova", "glance")) is True
    assert calls == ["daemon-reload"]
    drop_in = tmp_path / "sd" / f"{SERVICE}.service.d" / "rbd-mirror-migration.conf"
    text = drop_in.read_text()
    assert text.startswith(MARKER) and stat.S_IMODE(drop_in.stat().st_mode) == 0o644
    script = REPO / "src" / "rbd_bulk.py"
    assert script.is_file()
    assert (
        f"\nExecStartPre=/usr/bin/python3 {script} --pre-start --cluster ${{CLUSTER}} --id %i "
        '--workers 16 --pools "glance,nova"\n' in text
    ), "the packaged unit's own cluster and instance, like its ExecStart"
    assert "\n[Unit]\nStartLimitIntervalSec=0\n" in text, "a [Unit] key: ignored elsewhere"
    assert "\n[Service]\nRestartSec=10\nTimeoutStartSec=600\n" in text
    calls.clear()
    assert unit.ensure_pre_start(("glance", "nova")) is False
    assert calls == [SHOW], "unchanged and loaded: not reloaded"
    assert unit.ensure_pre_start(("glance",)) is True and calls[-1] == "daemon-reload"


def test_a_drop_in_changed_on_disk_but_never_loaded_is_loaded(unit, systemd):
    """A hook killed between writing the drop-in and reloading systemd."""
    calls, _, shown = systemd
    unit.ensure_pre_start(("nova",))
    shown["NeedDaemonReload"] = "yes"
    calls.clear()
    assert unit.ensure_pre_start(("nova",)) is True
    assert calls == [SHOW, "daemon-reload"]


def test_a_new_drop_in_directory_systemd_never_saw_is_loaded(unit, systemd):
    """Before v257, systemd says NeedDaemonReload=no for it (systemd issue 31752)."""
    calls, _, shown = systemd
    unit.ensure_pre_start(("nova",))
    shown["DropInPaths"] = ""  # written, then the hook died before the reload
    calls.clear()
    assert unit.ensure_pre_start(("nova",)) is True
    assert calls == [SHOW, "daemon-reload"]


def test_no_unit_yet_no_reload_until_the_drop_in_changes(unit, systemd):
    """Before the package: systemd shows LoadState=not-found and no drop-ins for the unit."""
    calls, _, shown = systemd
    unit.ensure_pre_start(("nova",))
    shown.update(LoadState="not-found", DropInPaths="")
    calls.clear()
    assert unit.ensure_pre_start(("nova",)) is False and calls == [SHOW]
    assert unit.ensure_pre_start(("nova", "glance")) is True and calls[-1] == "daemon-reload"


def test_a_unit_waiting_to_be_restarted_is_not_stopped(unit, monkeypatch):
    states = iter(["activating", "active", "inactive", "failed", ""])

    def fake(*args, timeout=None):
        return subprocess.CompletedProcess(args, 3, next(states) + "\n", "")

    monkeypatch.setattr(daemon, "_systemctl", fake)
    assert [unit.stopped() for _ in range(5)] == [False, False, True, True, True]


@pytest.mark.parametrize("how", ["fails", "hang"])
def test_a_failed_reload_is_retried_by_the_next_call(unit, systemd, how):
    calls, failing, _ = systemd
    failing["daemon-reload"] = how
    with pytest.raises(ServiceError, match="daemon-reload"):
        unit.ensure_pre_start(("nova",))
    assert unit.drop_in.exists(), "kept: systemd may have loaded an earlier one, or a reboot"
    failing.clear()
    calls.clear()
    assert unit.ensure_pre_start(("nova",)) is True
    assert calls == [SHOW, "daemon-reload"]


def test_a_pool_name_systemd_would_read_otherwise_is_refused(unit, systemd):
    with pytest.raises(ServiceError, match="command line"):
        unit.ensure_pre_start(("nova", "a%i b"))
    assert not unit.drop_in.exists()


def test_start_resets_a_failed_unit_and_waits_for_the_pre_start_step(unit, monkeypatch):
    calls = []

    def fake(*args, timeout=None):
        calls.append((" ".join(args), timeout))
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(daemon, "_systemctl", fake)
    unit.start(restart=True)
    assert calls == [
        (f"reset-failed {SERVICE}", None), (f"enable {SERVICE}", None),
        (f"restart {SERVICE}", daemon.PRE_START_TIMEOUT_S + 30),
    ]  # fmt: skip


def test_a_start_that_fails_names_the_pre_start_step_and_the_journal(unit, systemd):
    _, failing, _ = systemd
    failing["restart"] = "fails"
    with pytest.raises(ServiceError, match="pre-start step rewinds interrupted snapshot copies"):
        unit.start(restart=True)


def test_the_drop_in_goes_with_the_unit_and_stays_while_one_relation_is_left(unit, systemd):
    calls, failing, _ = systemd
    unit.ensure_pre_start(("nova",))
    unit.write(FILES)
    unit.remove_files(("source",))
    assert unit.drop_in.exists(), "the daemon may still run for the destination"
    calls.clear()
    failing["daemon-reload"] = "hang"
    removed = unit.remove_files(("source", "destination"))
    assert str(unit.drop_in) in removed and not unit.drop_in.parent.exists()
    assert calls == ["daemon-reload"], "a reload that hangs does not fail the removal"


PACKAGED_UNIT = Path("/lib/systemd/system/ceph-rbd-mirror@.service")


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None or not PACKAGED_UNIT.exists(),
    reason="needs systemd-analyze and the rbd-mirror package's unit",
)
def test_systemd_reads_the_drop_in_as_a_pre_start_step_of_the_packaged_unit(unit, systemd):
    """The packaged unit with our drop-in verifies under systemd's own parser, command checked.

    The control (a drop-in naming a command that does not exist) must fail: `verify` did read
    the drop-in, not just the unit.
    """
    unit.ensure_pre_start(("glance", "nova"))
    instance = unit.unit_dir / f"{unit.service}.service"
    shutil.copyfile(PACKAGED_UNIT, instance)

    def verify() -> subprocess.CompletedProcess:
        return subprocess.run(
            ["systemd-analyze", "verify", str(instance)],
            env={**os.environ, "SYSTEMD_UNIT_PATH": f"{unit.unit_dir}:"},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    checked = verify()
    assert checked.returncode == 0, checked.stderr
    text = unit.drop_in.read_text()
    unit.drop_in.write_text(text.replace("=/usr/bin/python3 ", "=/usr/bin/python3-missing "))
    control = verify()
    assert control.returncode != 0 and "/usr/bin/python3-missing" in control.stderr
