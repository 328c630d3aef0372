"""Write distinct random data into an RBD image with librbd (run by /usr/bin/python3).

`rbd bench` writes the same bytes at the same offsets every time, so two clones written with it end
up identical; this writes os.urandom blocks at random offsets instead.

usage: rbd_write.py CONF CLUSTER POOL IMAGE COUNT BLOCK [SECONDS [STOP_FILE [SHADOW [PAUSE]]]]
With SECONDS, it keeps writing for that long (COUNT blocks per round), or until STOP_FILE exists,
then flushes, closes the image cleanly and prints the round count.
With SHADOW (a local file path), it first copies the image into that file and then writes every
block to both: the file's md5 is what the image must hold afterwards, whatever happened to the
image's features meanwhile. With PAUSE, it sleeps that many seconds after each round (a steady
writer at COUNT * BLOCK_BYTES / PAUSE bytes per second at most).
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
    shadow_path = sys.argv[9] if len(sys.argv) > 9 else ""
    pause = float(sys.argv[10]) if len(sys.argv) > 10 else 0.0
    count_i, block_i = int(count), int(block)
    with rados.Rados(conffile=conf, clustername=cluster, name="client.admin") as conn:
        with conn.open_ioctx(pool) as ioctx, rbd.Image(ioctx, image) as img:
            size = img.size()
            shadow = open(shadow_path, "w+b") if shadow_path else None  # noqa: SIM115
            if shadow:
                for offset in range(0, size, 4 << 20):
                    shadow.write(img.read(offset, min(4 << 20, size - offset)))
            deadline = time.monotonic() + seconds
            rounds = 0
            while True:
                for _ in range(count_i):
                    offset = random.randrange(0, max(1, size - block_i)) // 512 * 512
                    data = os.urandom(block_i)
                    img.write(data, offset)
                    if shadow:
                        shadow.seek(offset)
                        shadow.write(data)
                rounds += 1
                if time.monotonic() >= deadline or (stop_file and os.path.exists(stop_file)):
                    break
                time.sleep(pause)
            img.flush()
            if shadow:
                shadow.close()
    print(rounds)


if __name__ == "__main__":
    main()
