"""Create COUNT images of 4 MiB in POOL, 1 MiB of random data each (run by /usr/bin/python3).

usage: make_images.py CONF CLUSTER POOL COUNT [SIZE_MIB [FIRST]]

Images are named img00000 on, or from imgFIRST.
"""

import os
import sys

import rados  # type: ignore[import-not-found]
import rbd  # type: ignore[import-not-found]

MiB = 1024 * 1024


def main() -> None:
    """Create the images."""
    conf, cluster, pool, count = sys.argv[1:5]
    size = int(sys.argv[5]) * MiB if len(sys.argv) > 5 else 4 * MiB
    first = int(sys.argv[6]) if len(sys.argv) > 6 else 0
    with rados.Rados(conffile=conf, clustername=cluster, name="client.admin") as conn:
        with conn.open_ioctx(pool) as ioctx:
            for n in range(first, first + int(count)):
                name = f"img{n:05d}"
                rbd.RBD().create(ioctx, name, size)
                with rbd.Image(ioctx, name) as image:
                    chunk = min(size, MiB)
                    for offset in range(0, size if size > 4 * MiB else chunk, MiB):
                        image.write(os.urandom(MiB), offset)


if __name__ == "__main__":
    main()
