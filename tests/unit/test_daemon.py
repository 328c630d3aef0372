"""The daemon files: rendered from templates, keys never readable by others, foreign confs kept."""

from __future__ import annotations

import os
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
