"""The initial sync's progress in bytes, and how long it will take (ETA). No ops here.

What rbd-mirror tells (Pacific, measured on the lab; snapshot mode: `sync_percent`): an image
being copied is `up+syncing` with the description `bootstrapping, IMAGE_SYNC/COPY_IMAGE 17%`
(objects copied of the image's objects, rounded down), republished every 30 s (`last_update`);
a state change is published at once. Its admin socket has no percentage. So:

- bytes copied: each source image's bytes to copy (read once, kept: a clone's own data by
  its object map, any other image's size; rbd_preflight.sync_bytes) times its published
  percentage; a replaying image counts whole, one not started yet counts nothing;
- the rate: per syncing image, from its publications, not from polls (a sample is its
  `last_update` and the bytes copied then; the slope between its oldest and newest sample of
  the last `WINDOW_S` seconds); the images the daemon copies at once share the work, so the
  whole's rate is their sum;
- the ETA: when the last pool's last image is copied if each pool's replayer copies `slots`
  images at a time (`rbd-mirror-concurrent-image-syncs`, a throttler per pool), each image at
  its own measured rate, one without a rate yet at the mean of its pool's (else of all), a
  syncing image's bytes since its last publication counted as copied, and each image not
  started `IMAGE_START_S` more. An image at 0% takes a free slot, else waits for one (snapshot
  mode publishes 0% while it waits); waiting images start largest first (the daemon's order
  is not known). Each image is copied `rbd_concurrent_management_ops` objects at a time, so a
  big image copied alone does not speed up when the small ones beside it finish, and an image
  that starts gets a rate of its own instead of sharing the others' (CI, 2026-12-06: three
  waiting nova clones counted at the big volume's rate made its ETA 47 s for 35). A clone
  waiting for its parent to be copied in another pool is counted as if it could start now.
  Without two publications of an image far enough apart it is unknown ("estimating").

`History` is what the unit keeps between dispatches (a small JSON file, session.py).
"""

from __future__ import annotations

import heapq
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ceph_cli import ImageStatus, parse_description
from report import StatusReport, human_bytes

WINDOW_S = 300.0  # the rate is measured over the last five minutes
MIN_SPAN_S = 20.0  # two publications at least this far apart
MAX_SAMPLES = 64
# The daemon's own work per image besides its bytes (image, sync point, peer registration):
# on the lab 2000 images of 1 MiB data in two pools, 5 at a time each, replayed 358-370 s after
# enable (BENCHMARKS.md): about 1.8 s per image per slot.
IMAGE_START_S = 1.8
_PERCENT = re.compile(r"^bootstrapping, IMAGE_SYNC\S* (\d+)%")


def sync_percent(description: str) -> int | None:
    """How much of an image's initial sync is done, in percent, or None (not syncing it).

    Journal mode: `bootstrapping, IMAGE_SYNC/COPY_IMAGE 17%`. Snapshot mode copies in its
    replayer (`up+replaying`): `replaying, {"replay_state":"syncing","syncing_percent":17}`,
    the first snapshot only while no `local_snapshot_timestamp` exists yet (a later
    snapshot's percentage is of its delta, not of the image).
    """
    found = _PERCENT.match(description)
    if found:
        return int(found.group(1))
    fields = parse_description(description)
    percent = fields.get("syncing_percent")
    first = fields.get("replay_state") == "syncing" and "local_snapshot_timestamp" not in fields
    return int(percent) if first and isinstance(percent, (int, float)) else None


def published_at(last_update: str) -> float | None:
    """A status's `last_update` (`2026-12-05 05:12:39`, UTC) as epoch seconds, or None."""
    try:
        when = datetime.strptime(last_update.split(".")[0], "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    return when.replace(tzinfo=timezone.utc).timestamp() if when.year > 1970 else None


Sample = tuple[float, int]  # (published at, bytes of the image copied then)


@dataclass
class History:
    """Each syncing image's latest publications, and the source images' sizes."""

    samples: dict[str, list[Sample]] = field(default_factory=dict)  # "pool/image" -> samples
    sizes: dict[str, int] = field(default_factory=dict)  # "pool/image" -> bytes

    @classmethod
    def from_json(cls, text: str) -> History:
        """Parse what `to_json` wrote; anything unreadable is an empty history."""
        try:
            data = json.loads(text)
            return cls(
                samples={
                    str(k): [(float(t), int(b)) for t, b in v]
                    for k, v in data.get("samples", {}).items()
                },
                sizes={str(k): int(v) for k, v in data.get("sizes", {}).items()},
            )
        except (ValueError, TypeError, AttributeError, OverflowError):
            return cls()

    def to_json(self) -> str:
        """For the unit's file."""
        return json.dumps({"samples": self.samples, "sizes": self.sizes})


@dataclass(frozen=True)
class Progress:
    """Where the initial sync is: images and bytes, the rate, the time left."""

    images_done: int
    images: int
    bytes_done: int
    bytes_total: int
    rate: float | None = None  # bytes per second, over the last minutes
    eta_s: float | None = None

    @property
    def percent(self) -> int:
        """Bytes copied, in percent of every source image's size (rounded down)."""
        if not self.bytes_total:  # images of no data: by the count
            return 100 * self.images_done // self.images if self.images else 100
        return 100 * self.bytes_done // self.bytes_total

    @property
    def line(self) -> str:
        """`syncing 5/7 images, 61% of 212.0 GiB, about 14 min left`."""
        head = f"syncing {self.images_done}/{self.images} images"
        if not self.bytes_total:
            return head
        left = "estimating the time left" if self.eta_s is None else f"about {_left(self.eta_s)}"
        return f"{head}, {self.percent}% of {human_bytes(self.bytes_total)}, {left}"

    def as_results(self) -> dict[str, object]:
        """For the status action."""
        return {
            "progress": self.line,
            "bytes-copied": self.bytes_done,
            "bytes-to-go": self.bytes_total - self.bytes_done,
            "percent-copied": self.percent,
            "sync-rate": "unknown" if self.rate is None else f"{human_bytes(self.rate)}/s",
            "eta-seconds": "unknown" if self.eta_s is None else round(self.eta_s),
        }


def _left(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s left"
    if seconds < 5400:
        return f"{round(seconds / 60)} min left"
    return f"{seconds / 3600:.1f} h left"


def sizes_wanted(report: StatusReport, known: Mapping[str, int]) -> dict[str, list[str]]:
    """The source images whose size the history lacks, by pool (each is read once)."""
    out: dict[str, list[str]] = {}
    for pool in report.active:
        for name in pool.source_images:
            if f"{pool.pool}/{name}" not in known:
                out.setdefault(pool.pool, []).append(name)
    return out


@dataclass
class _Queue:
    """One pool's images still to copy: each pool's replayer has its own sync slots."""

    rates: list[float] = field(default_factory=list)  # measured: bytes per second
    finish: list[float] = field(default_factory=list)  # measured: seconds to their end
    started: list[float] = field(default_factory=list)  # copying, no rate yet: bytes left
    at_zero: list[float] = field(default_factory=list)  # at 0%, no rate: copying or queued
    waiting: list[float] = field(default_factory=list)  # not started: bytes

    def last_done(self, mean: float, slots: int) -> tuple[float, float]:
        """Seconds until its last image is copied, `slots` at a time; the unmeasured ones' rate.

        An image without a rate copies at the mean of the pool's, or at `mean` when it has
        none; the second figure is the rate of those that copy now. An image at 0% takes a free
        slot, else it is queued; queued images take the first slot free, largest first; one
        not started costs `IMAGE_START_S` more.
        """
        if self.rates:
            mean = sum(self.rates) / len(self.rates)
        slots = max(1, slots)
        running = self.finish + [left / mean for left in self.started]
        free = max(0, slots - len(running))
        zero = sorted(self.at_zero, reverse=True)
        running += [left / mean for left in zero[:free]]
        queued = [left / mean for left in zero[free:]]
        queued += [IMAGE_START_S + size / mean for size in self.waiting]
        ends = running + [0.0] * max(0, slots - len(running))
        heapq.heapify(ends)
        for seconds in sorted(queued, reverse=True):
            heapq.heappush(ends, heapq.heappop(ends) + seconds)
        return max(ends, default=0.0), mean * (len(self.started) + len(zero[:free]))


@dataclass
class _Tally:
    images: int = 0
    done_images: int = 0
    copied: int = 0
    total: int = 0
    rates: list[float] = field(default_factory=list)  # each measured syncing image's rate
    queues: dict[str, _Queue] = field(default_factory=dict)  # by pool


def measure(
    report: StatusReport, history: History, now: float, *, slots: int = 5
) -> tuple[Progress, History]:
    """The progress of `report`'s active pools, and the history with this read's samples.

    Each syncing image's rate is measured between its publications of the last `WINDOW_S`
    seconds; the rate shown is the sum of the rates of the images copied now (one without a
    rate yet counts as its pool's mean). The ETA is when the last pool's `_Queue.last_done` is,
    each pool's replayer copying `slots` images at once.
    """
    tally, kept = _Tally(), History(sizes=history.sizes)
    for pool in report.active:
        statuses = {i.name: i for i in pool.images}
        queue = tally.queues.setdefault(pool.pool, _Queue())
        for name in pool.source_images:
            key = f"{pool.pool}/{name}"
            _count(tally, queue, kept, key, history, statuses.get(name), now)
    rate = eta = None
    if tally.rates:
        mean = sum(tally.rates) / len(tally.rates)
        done = [q.last_done(mean, slots) for q in tally.queues.values()]
        eta = max(seconds for seconds, _ in done)
        rate = sum(tally.rates) + sum(unmeasured for _, unmeasured in done)
    progress = Progress(tally.done_images, tally.images, tally.copied, tally.total, rate, eta)
    return progress, kept


def _count(
    tally: _Tally,
    queue: _Queue,
    kept: History,
    key: str,
    history: History,
    status: ImageStatus | None,
    now: float,
) -> None:
    """Add one source image to the tally; keep its samples while it syncs."""
    size = history.sizes.get(key, 0)
    tally.images += 1
    tally.total += size
    percent = sync_percent(status.description) if status is not None else None
    if status is not None and status.state == "up+replaying" and percent is None:
        tally.done_images += status.caught_up
        tally.copied += size
        return
    at = published_at(status.last_update) if status is not None else None
    if percent is None:  # not started, or no percentage published yet
        queue.waiting.append(size)
        return
    copied = size * percent // 100
    tally.copied += copied
    unmeasured = queue.started if percent else queue.at_zero
    if at is None:  # a percentage without a time: no rate from it
        unmeasured.append(size - copied)
        return
    samples = [s for s in history.samples.get(key, []) if now - WINDOW_S <= s[0] < at]
    samples = [s for s in samples if s[1] <= copied] + [(at, copied)]
    kept.samples[key] = samples[-MAX_SAMPLES:]
    first = samples[0]
    if at - first[0] >= MIN_SPAN_S and copied > first[1]:
        rate = (copied - first[1]) / (at - first[0])
        left = max(0.0, size - copied - rate * max(0.0, now - at))
        tally.rates.append(rate)
        queue.rates.append(rate)
        queue.finish.append(left / rate)
    else:
        unmeasured.append(size - copied)
