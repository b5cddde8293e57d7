"""Random 4 KiB writes into a file, with fsync, and a check of every block written (runs in a guest).

    python3 blockfile.py write PATH COUNT SEED   # writes; records each block's checksum in PATH.sums
    python3 blockfile.py check PATH               # prints "checked N bad M"; exits 1 when M > 0
"""

import hashlib
import os
import random
import sys

BLOCK = 4096
FILE_BYTES = 64 << 20


def write(path: str, count: int, seed: int) -> None:
    rnd = random.Random(seed)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.ftruncate(fd, FILE_BYTES)
    sums = {}
    for i in range(count):
        block = rnd.randrange(FILE_BYTES // BLOCK)
        data = os.urandom(BLOCK)
        os.pwrite(fd, data, block * BLOCK)
        sums[block] = hashlib.sha256(data).hexdigest()
        if i % 100 == 99:
            os.fsync(fd)
    os.fsync(fd)
    os.close(fd)
    with open(path + ".sums", "w") as f:
        f.writelines(f"{b} {h}\n" for b, h in sorted(sums.items()))
        f.flush()
        os.fsync(f.fileno())
    print("wrote", count, "distinct", len(sums))


def check(path: str) -> int:
    fd = os.open(path, os.O_RDONLY)
    n = bad = 0
    with open(path + ".sums") as f:
        for line in f:
            block, digest = line.split()
            n += 1
            if hashlib.sha256(os.pread(fd, BLOCK, int(block) * BLOCK)).hexdigest() != digest:
                bad += 1
    os.close(fd)
    print("checked", n, "bad", bad)
    return 1 if bad or not n else 0


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(check(sys.argv[2]))
