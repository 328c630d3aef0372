"""Process helpers for the lab: run commands with bounds, and stop exactly the PIDs we started."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

DEFAULT_TIMEOUT = 60.0
# Set by charm_host.use_release_tools once another release's tools cover the host's /usr/bin in
# this process's mount namespace: a path to the namespace saved before, where they do not.
HOST_MOUNT_NS = ""


class LabError(RuntimeError):
    """A lab step failed; the message says which and why."""


def run(
    args: list[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    input: bytes | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run a command (no shell), bounded in time; raise LabError with its stderr on failure."""
    try:
        proc = subprocess.run(
            args, input=input, capture_output=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout:.0f}s: {' '.join(args)}") from exc
    if check and proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()[-2000:]
        raise LabError(f"rc={proc.returncode}: {' '.join(args)}\n{err}")
    return proc


def pid_alive(pid: int) -> bool:
    """True if `pid` is a live process; a zombie (state Z) counts as dead."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def read_pid(pid_file: Path) -> int | None:
    """The PID in `pid_file`, or None when the file is absent or empty."""
    try:
        text = pid_file.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def stop_pid(pid: int, *, timeout: float = 30.0) -> None:
    """SIGTERM `pid`, wait up to `timeout`, then SIGKILL; returns once it is gone."""
    if not pid_alive(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if wait_for(lambda: not pid_alive(pid), timeout=timeout, interval=0.2):
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    if not wait_for(lambda: not pid_alive(pid), timeout=10, interval=0.2):
        raise LabError(f"pid {pid} survived SIGKILL")


def wait_for(predicate, *, timeout: float, interval: float = 0.5) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds pass; return its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return True
        except LabError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
