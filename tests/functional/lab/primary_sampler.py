"""Sample, over and over, which side holds each mirrored image as primary (by librbd).

usage: primary_sampler.py SRC_CONF DST_CONF SECONDS POOL...
Prints one JSON line at the end: {"samples": N, "violations": [...]}, where a violation is an image
(by mirroring global id) that was primary on both clusters in the same sample.
"""

import json
import sys
import time

import rados  # type: ignore[import-not-found]
import rbd  # type: ignore[import-not-found]


def primaries(conn, pools):
    """Global ids of the images that are mirroring primaries on one cluster."""
    out = set()
    for pool in pools:
        with conn.open_ioctx(pool) as ioctx:
            for _image_id, info in rbd.RBD().mirror_image_info_list(ioctx):
                if info.get("primary") and info.get("state") == rbd.RBD_MIRROR_IMAGE_ENABLED:
                    out.add(info["global_id"])
    return out


def main():
    """Sample until the deadline, then print the count and any double primaries."""
    src_conf, dst_conf, seconds, *pools = sys.argv[1:]
    src = rados.Rados(conffile=src_conf, clustername="src", name="client.admin")
    dst = rados.Rados(conffile=dst_conf, clustername="dst", name="client.admin")
    src.connect(timeout=10)
    dst.connect(timeout=10)
    deadline = time.monotonic() + float(seconds)
    samples, violations = 0, []
    while time.monotonic() < deadline:
        try:
            both = primaries(src, pools) & primaries(dst, pools)
        except (rados.Error, rbd.Error):
            time.sleep(0.1)
            continue
        samples += 1
        violations += sorted(both)
        time.sleep(0.05)
    src.shutdown()
    dst.shutdown()
    print(json.dumps({"samples": samples, "violations": violations}))


if __name__ == "__main__":
    main()
