"""The initial sync's progress in bytes, and how long it will take (ETA). No ops here.

What rbd-mirror tells (Pacific, measured on the lab): an image being copied is `up+syncing`
with the description `bootstrapping, IMAGE_SYNC/COPY_IMAGE 17%` (objects copied of the image's
objects, rounded down), republished every 30 s (`last_update`); a state change is published at
once. Its admin socket has no percentage. So:

- bytes copied: each source image's size (read once, kept) times its published percentage; a
  replaying image counts whole, one not started yet counts nothing;
- the rate: from publications, not from polls: each read keeps one sample (the newest
  `last_update` of a syncing image, the bytes copied then), and the rate is the slope between
  the oldest and newest sample of the last `WINDOW_S` seconds;
- the ETA: the bytes not copied at the newest publication, less what the rate copied since, at
  that rate. Without two publications far enough apart it is unknown ("estimating").

`History` is what the unit keeps between dispatches (a small JSON file, session.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

from report import StatusReport, human_bytes

WINDOW_S = 300.0  # the rate is measured over the last five minutes
MIN_SPAN_S = 20.0  # two publications at least this far apart
MAX_SAMPLES = 64
_PERCENT = re.compile(r"^bootstrapping, IMAGE_SYNC\S* (\d+)%")


def sync_percent(description: str) -> int | None:
    """The percentage of a `bootstrapping, IMAGE_SYNC/COPY_IMAGE 17%` description, or None."""
    found = _PERCENT.match(description)
    return int(found.group(1)) if found else None


def published_at(last_update: str) -> float | None:
    """A status's `last_update` (`2026-12-05 05:12:39`, UTC) as epoch seconds, or None."""
    try:
        when = datetime.strptime(last_update.split(".")[0], "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    return when.replace(tzinfo=timezone.utc).timestamp() if when.year > 1970 else None


@dataclass
class History:
    """Samples (published at, bytes copied) of earlier reads, and the source images' sizes."""

    samples: list[tuple[float, int]] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)  # "pool/image" -> bytes

    @classmethod
    def from_json(cls, text: str) -> History:
        """Parse what `to_json` wrote; anything unreadable is an empty history."""
        try:
            data = json.loads(text)
            return cls(
                samples=[(float(t), int(b)) for t, b in data.get("samples", [])],
                sizes={str(k): int(v) for k, v in data.get("sizes", {}).items()},
            )
        except (ValueError, TypeError, AttributeError):
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
        return 100 * self.bytes_done // self.bytes_total if self.bytes_total else 100

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


def measure(report: StatusReport, history: History, now: float) -> tuple[Progress, History]:
    """The progress of `report`'s active pools, and the history with this read's sample."""
    images = done_images = copied = total = 0
    published = None
    for pool in report.active:
        statuses = {i.name: i for i in pool.images}
        for name in pool.source_images:
            size = history.sizes.get(f"{pool.pool}/{name}", 0)
            status = statuses.get(name)
            images += 1
            total += size
            if status is None:
                continue
            if status.state == "up+replaying":
                done_images += status.caught_up
                copied += size
                continue
            percent = sync_percent(status.description)
            if percent is not None:
                copied += size * percent // 100
                at = published_at(status.last_update)
                if at is not None:
                    published = at if published is None else max(published, at)
    sample = (published if published is not None else now, copied)
    samples = [s for s in history.samples if s[0] >= now - WINDOW_S and s[1] <= copied]
    samples = [s for s in samples if s[0] < sample[0]] + [sample]
    kept = History(samples=samples[-MAX_SAMPLES:], sizes=history.sizes)
    rate = eta = None
    first, last = samples[0], samples[-1]
    if last[0] - first[0] >= MIN_SPAN_S and last[1] > first[1]:
        rate = (last[1] - first[1]) / (last[0] - first[0])
        eta = max(0.0, total - last[1] - rate * max(0.0, now - last[0])) / rate
    progress = Progress(done_images, images, copied, total, rate, eta)
    return progress, kept
