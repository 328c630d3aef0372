"""Write distinct random data into an RBD image with librbd (run by /usr/bin/python3).

`rbd bench` writes the same bytes at the same offsets every time, so two clones written with it end
up identical; this writes os.urandom blocks at random offsets instead.

usage: rbd_write.py CONF CLUSTER POOL IMAGE COUNT BLOCK_BYTES [SECONDS [STOP_FILE]]
With SECONDS, it keeps writing for that long (COUNT blocks per round), or until STOP_FILE exists,
then flushes, closes the image cleanly and prints the round count.
"""

import os
import random
import sys
import time

import rados  # type: ignore[import-not-found]
import rbd  # type: ignore[import-not-found]


def main() -> None:
    """Parse argv and write."""
    conf, cluster, pool, image, count, block = sys.argv[1:7]
    seconds = float(sys.argv[7]) if len(sys.argv) > 7 else 0.0
    stop_file = sys.argv[8] if len(sys.argv) > 8 else ""
    count_i, block_i = int(count), int(block)
    with rados.Rados(conffile=conf, clustername=cluster, name="client.admin") as conn:
        with conn.open_ioctx(pool) as ioctx, rbd.Image(ioctx, image) as img:
            size = img.size()
            deadline = time.monotonic() + seconds
            rounds = 0
            while True:
                for _ in range(count_i):
                    offset = random.randrange(0, max(1, size - block_i)) // 512 * 512
                    img.write(os.urandom(block_i), offset)
                rounds += 1
                if time.monotonic() >= deadline or (stop_file and os.path.exists(stop_file)):
                    break
            img.flush()
    print(rounds)


if __name__ == "__main__":
    main()
