"""Seed a lab cluster with an OpenStack-shaped layout and record the md5 of every image.

glance: one image of random data with a protected snapshot `snap`;
nova: clones `<uuid>_disk` of `glance/<id>@snap`, each with its own random writes;
cinder-ceph: volumes `volume-<uuid>` of random data.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import uuid
from pathlib import Path

from .cluster import Cluster
from .procs import LabError

POOLS = ("glance", "nova", "cinder-ceph")
WRITER = Path(__file__).with_name("rbd_write.py")
SYSTEM_PYTHON = "/usr/bin/python3"
MiB = 1024 * 1024


def seed(
    cluster: Cluster,
    *,
    image_mib: int = 64,
    volume_mib: int = 32,
    clones: int = 3,
    volumes: int = 3,
    big_mib: int = 0,
) -> dict[str, str]:
    """Create pools and images on `cluster`; write `seed.json` with md5 by `pool/image`.

    With `big_mib`, cinder-ceph also gets `volume-big` of that many MiB of random data.
    """
    existing = set(cluster.ceph("osd", "pool", "ls").split())
    if any(p in existing for p in POOLS):
        raise LabError(f"{cluster.name} is already seeded (pools {sorted(existing)})")
    try:
        _create_pools(cluster)
    except LabError as exc:
        if not cluster.osd_full():
            raise LabError(f"{exc}\n{cluster.diagnose()}") from exc
        # memstore's counter wrapped after the reset had settled (Cluster.osd_full)
        print(f"lab: {cluster.name}'s OSD counted itself full while seeding", flush=True)
        cluster.settle()  # a new, empty cluster
        _create_pools(cluster)
    glance_id = str(uuid.uuid4())
    cluster.rbd(
        "import", "--dest-pool", "glance", "-", glance_id, input=os.urandom(image_mib * MiB)
    )
    cluster.rbd("snap", "create", f"glance/{glance_id}@snap")
    cluster.rbd("snap", "protect", f"glance/{glance_id}@snap")
    for _ in range(clones):
        disk = f"{uuid.uuid4()}_disk"
        cluster.rbd("clone", f"glance/{glance_id}@snap", f"nova/{disk}")
        write_random(cluster, "nova", disk, count=16, block=64 * 1024)
    for _ in range(volumes):
        cluster.rbd(
            "import",
            "--dest-pool",
            "cinder-ceph",
            "-",
            f"volume-{uuid.uuid4()}",
            input=os.urandom(volume_mib * MiB),
        )
    if big_mib:  # one large volume, e.g. to kill rbd-mirror in the middle of its copy
        cluster.rbd(
            "import",
            "--dest-pool",
            "cinder-ceph",
            "-",
            "volume-big",
            input=os.urandom(big_mib * MiB),
            timeout=600,
        )
    sums = md5_all(cluster)
    (cluster.dir / "seed.json").write_text(json.dumps(sums, indent=1, sort_keys=True) + "\n")
    return sums


def _create_pools(cluster: Cluster) -> None:
    """The OpenStack pools, each initialised for RBD (an existing one is left as it is)."""
    for pool in POOLS:
        cluster.ceph("osd", "pool", "create", pool, "8", "8")
        cluster.rbd("pool", "init", pool, timeout=60)


def _writer(
    cluster: Cluster,
    pool: str,
    image: str,
    count: int,
    block: int,
    seconds: float,
    stop_file: str = "",
    shadow: str = "",
    pause: float = 0.0,
) -> list[str]:
    """The command line of rbd_write.py."""
    argv = [
        SYSTEM_PYTHON,
        str(WRITER),
        str(cluster.conf),
        cluster.name,
        pool,
        image,
        str(count),
        str(block),
        str(seconds),
    ]
    if shadow or pause:
        return argv + [stop_file, shadow, str(pause)]
    return argv + [stop_file] if stop_file else argv


def write_random(
    cluster: Cluster, pool: str, image: str, *, count: int, block: int, seconds: float = 0.0
) -> None:
    """Write `count` random blocks at random offsets (repeating for `seconds`, if given)."""
    cluster.run(_writer(cluster, pool, image, count, block, seconds), timeout=120 + seconds)


def primary_sampler(src: Cluster, dst: Cluster, seconds: float) -> subprocess.Popen:
    """Start sampling both clusters for images primary on both sides; read its stdout after.

    It runs with the source's release (its librados reads the destination too).
    """
    return subprocess.Popen(
        src.command(
            [
                SYSTEM_PYTHON,
                str(Path(__file__).with_name("primary_sampler.py")),
                str(src.conf),
                str(dst.conf),
                str(seconds),
                *POOLS,
            ]
        ),
        stdout=subprocess.PIPE,
    )


def start_writer(
    cluster: Cluster,
    pool: str,
    image: str,
    stop_file: Path,
    seconds: float = 600,
    *,
    shadow: Path | None = None,
    pause: float = 0.0,
    count: int = 8,
) -> subprocess.Popen:
    """Start a background writer; it stops cleanly once `stop_file` exists (or after `seconds`).

    With `shadow`, every block also goes to that local file (its md5 is the image's expected
    one); with `pause`, the writer sleeps that long after each round of `count` 64 KiB blocks.
    """
    argv = _writer(
        cluster,
        pool,
        image,
        count,
        64 * 1024,
        seconds,
        str(stop_file),
        str(shadow or ""),
        pause,
    )
    return subprocess.Popen(cluster.command(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def file_md5(path: Path) -> str:
    """md5 of a local file (a writer's shadow)."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def images(cluster: Cluster, pool: str) -> list[str]:
    """Image names in `pool`."""
    return cluster.rbd_json("ls", pool)


def md5(cluster: Cluster, pool: str, image: str) -> str:
    """md5 of the full content of `pool/image` (`rbd export -`)."""
    return hashlib.md5(
        cluster.rbd_bytes("export", f"{pool}/{image}", "-", "--no-progress"), usedforsecurity=False
    ).hexdigest()


def md5_all(cluster: Cluster, pools: tuple[str, ...] = POOLS) -> dict[str, str]:
    """md5 of every image of `pools`, keyed `pool/image`."""
    return {f"{p}/{i}": md5(cluster, p, i) for p in pools for i in images(cluster, p)}


def recorded(cluster: Cluster) -> dict[str, str]:
    """The md5s written by `seed`."""
    return json.loads((cluster.dir / "seed.json").read_text())
