"""Run one charm action in a process of its own, as a Juju hook runs, and print what it cost.

    python -m bench.charm_action LAB_DIR CONFIG_JSON ACTION [PARAMS_JSON]

Started by `python -m bench` inside its private /etc/ceph mount namespace (children inherit it,
with the stand-in systemctl on PATH). Relates the unit first (not measured), then runs ACTION
and prints one JSON line: seconds, processes started, the process's RSS before the action, its
peak during the action (VmHWM, reset first), the largest child's peak RSS, the action's
results (or its failure message), and each Ceph call with when it ended (`calls`). The peak
is reset because Linux carries a process's high-water mark across fork and exec: without the
reset, this process would report its parent's RSS.
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import time
from pathlib import Path


class Timeline(logging.Handler):
    """The Ceph calls the action made (ceph_cli's debug lines), each with when it ended."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.start = time.monotonic()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the line, with the seconds since the action started."""
        self.lines.append(f"{time.monotonic() - self.start:6.2f} {record.getMessage()}")


class Counter:
    """Counts the processes this Python process starts (audit hook on subprocess.Popen)."""

    def __init__(self):
        self.on = False
        self.count = 0
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args) -> None:
        if self.on and event == "subprocess.Popen":
            self.count += 1

    def measure(self, fn):
        """Run fn; return (seconds, processes started, result)."""
        self.count, self.on = 0, True
        start = time.monotonic()
        try:
            result = fn()
        finally:
            self.on = False
        return time.monotonic() - start, self.count, result


def memory_mib(field: str) -> float:
    """VmRSS (resident now) or VmHWM (peak since start or since `reset_peak`) of this process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def usage(who: int) -> float:
    """Peak RSS in MiB from getrusage (RUSAGE_SELF, or the largest of RUSAGE_CHILDREN)."""
    return resource.getrusage(who).ru_maxrss / 1024


def reset_peak() -> None:
    """Restart VmHWM from the current RSS (Linux >= 4.0): the action's peak is its own."""
    Path("/proc/self/clear_refs").write_text("5")


def main(argv: list[str]) -> int:
    """Relate, run the action, print the figures."""
    from tests.functional.charm_host import CharmHost, pretend_ubuntu
    from tests.functional.lab import Lab

    lab_dir, config, action = Path(argv[0]), json.loads(argv[1]), argv[2]
    params = json.loads(argv[3]) if len(argv) > 3 else {}
    pretend_ubuntu()
    from ops import testing

    host = CharmHost(Lab(lab_dir))
    host.state = testing.State(leader=True, relations=host.state.relations, config=config)
    host.relate()
    counter = Counter()
    timeline = Timeline()
    ceph_log = logging.getLogger("ceph_cli")
    ceph_log.setLevel(logging.DEBUG)
    ceph_log.addHandler(timeline)
    reset_peak()
    before = memory_mib("VmRSS")
    out: dict[str, object] = {}
    try:
        timeline.start = time.monotonic()
        seconds, processes, (results, _) = counter.measure(lambda: host.action(action, **params))
        out.update(seconds=seconds, processes=processes, results=results)
    except testing.ActionFailed as exc:
        out["error"] = exc.message
    out.update(
        rss_before_mib=round(before, 1),
        peak_rss_mib=round(memory_mib("VmHWM"), 1),
        child_peak_rss_mib=round(usage(resource.RUSAGE_CHILDREN), 1),
        calls=timeline.lines,
    )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
