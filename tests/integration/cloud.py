"""The model the integration suite builds, as bundles: what a user's OpenStack bundle holds.

`clusters_bundle()` is the two Ceph clusters (the old one, which ceph-proxy will front, and the
new ceph-mon/ceph-osd); `cloud_bundle(...)` is what the user's bundle says once ceph-proxy
points at the old cluster; `bundles/migration-overlay.yaml` (the one the README shows) goes on
top of it, with the artifact `tox -e pack` built copied next to it. The offline tests check
that the overlay merged onto this bundle names only applications and endpoints that exist.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
OVERLAY = REPO / "bundles" / "migration-overlay.yaml"
CEPH = {"channel": "squid/stable", "base": "ubuntu@24.04"}
OSD_STORAGE = {"osd-devices": "8G,1"}  # one 8 GiB volume from the model's default pool


# One OSD per cluster: pools of size 1 (Ceph's default is 3 replicas on 3 hosts, and a pool
# that cannot place them never goes active: `rbd pool init` would hang). The charm asks
# ceph-mon for the source pools' size (config pool-replicas 0), hence 1 on both sides.
SINGLE_OSD_FLAGS = (
    "{'global': {'osd pool default size': 1, 'osd pool default min size': 1, "
    "'mon allow pool size one': 'true', 'mon warn on pool no redundancy': 'false'}}"
)


def clusters_bundle() -> dict:
    """Old cluster (src-mon, src-osd) and new cluster (ceph-mon, ceph-osd), one unit each."""
    mon_options = {
        "monitor-count": 1,
        "expected-osd-count": 1,
        "config-flags": SINGLE_OSD_FLAGS,
    }
    return {
        "applications": {
            "src-mon": {"charm": "ceph-mon", **CEPH, "num_units": 1, "options": mon_options},
            "src-osd": {"charm": "ceph-osd", **CEPH, "num_units": 1, "storage": OSD_STORAGE},
            "ceph-mon": {"charm": "ceph-mon", **CEPH, "num_units": 1, "options": mon_options},
            "ceph-osd": {"charm": "ceph-osd", **CEPH, "num_units": 1, "storage": OSD_STORAGE},
        },
        "relations": [["src-osd:mon", "src-mon:osd"], ["ceph-osd:mon", "ceph-mon:osd"]],
    }


def cloud_bundle(fsid: str, admin_key: str, monitor_hosts: str) -> dict:
    """The clusters plus ceph-proxy in front of the old one (the user's bundle, trimmed)."""
    bundle = clusters_bundle()
    bundle["applications"]["ceph-proxy"] = {
        "charm": "ceph-proxy",
        **CEPH,
        "num_units": 1,
        "options": {"fsid": fsid, "admin-key": admin_key, "monitor-hosts": monitor_hosts},
    }
    return bundle


def write_deployment(target: Path, cloud: dict, artifact: Path) -> tuple[Path, Path]:
    """cloud.yaml, the repo's overlay and the artifact in `target`: `juju deploy` arguments."""
    target.mkdir(parents=True, exist_ok=True)
    cloud_file = target / "cloud.yaml"
    cloud_file.write_text(yaml.safe_dump(cloud))
    overlay = target / OVERLAY.name
    shutil.copyfile(OVERLAY, overlay)
    charm = yaml.safe_load(OVERLAY.read_text())["applications"]["rbd-mirror-migration"]["charm"]
    shutil.copyfile(artifact, target / charm)
    return cloud_file, overlay


def merged(cloud: dict, overlay: dict) -> dict:
    """What `juju deploy cloud --overlay overlay` deploys (applications and relations)."""
    apps = {**cloud.get("applications", {}), **overlay.get("applications", {})}
    return {"applications": apps, "relations": cloud["relations"] + overlay["relations"]}
