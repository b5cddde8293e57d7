"""Runs inside a test-bed guest against the CSI plugin there: a verifying writer on a 3-replica raw
block volume while the test kills the volume's head node from outside.

Every write is a 4 KiB block that carries its own address, a sequence number and a checksum; the
writer remembers the last acknowledged sequence number of each address. After the test says stop
(it creates STOP_FILE), everything is read back: every block must hold exactly its last
acknowledged write, and the writer must have seen no I/O error (native NVMe multipath waits for
the standby head's promotion). Prints the longest write and SCENARIO OK.

    python3 csi_failover_scenario.py unix:///run/csi/csi.sock
"""

from __future__ import annotations

import glob
import mmap
import os
import random
import re
import struct
import sys
import time
import zlib

import grpc

from tests.vm.csi_group_scenario import Volumes
from tests.vm.csi_guest_scenario import check

MiB = 1 << 20
BLOCK = 4096
REGION = 16 * MiB
STOP_FILE = "/tmp/failover-stop"
MAGIC = b"MBVERIFY"


def block(addr: int, seq: int) -> bytes:
    body = MAGIC + struct.pack("<QQ", addr, seq)
    return body + struct.pack("<I", zlib.crc32(body)) + bytes(BLOCK - len(body) - 4)


def main(endpoint: str) -> None:
    vols = Volumes(grpc.insecure_channel(endpoint))
    vid = vols.create("failover", 64 * MiB, replicas="3")
    dev = vols.attach(vid)
    print(f"VOLUME {vid}", flush=True)
    rdev = os.stat(dev).st_rdev
    name = os.path.basename(os.path.realpath(f"/sys/dev/block/{os.major(rdev)}:{os.minor(rdev)}"))
    deadline = time.monotonic() + 60
    while True:   # the kernel scans the namespaces of the other paths in the background
        ctrls = sorted(d for d in os.listdir(f"/sys/block/{name}/device") if re.fullmatch(r"nvme\d+", d))
        ana = sorted(open(p).read().strip() for c in ctrls
                     for p in glob.glob(f"/sys/class/nvme/{c}/nvme*c*n*/ana_state"))
        if len(ana) == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    check(len(ctrls) == 3 and ana == ["inaccessible", "inaccessible", "optimized"],
          f"the volume's device {name} has a path to each of its 3 nodes ({', '.join(ctrls)}: {', '.join(ana)})")
    fd = os.open(dev, os.O_RDWR | os.O_DIRECT | os.O_DSYNC)
    buf = mmap.mmap(-1, BLOCK)
    acked: dict[int, int] = {}
    rng = random.Random(7)
    seq, longest, errors = 0, 0.0, []
    started = time.monotonic()
    print("WRITING", flush=True)
    while not os.path.exists(STOP_FILE) and time.monotonic() - started < 600:
        seq += 1
        addr = rng.randrange(REGION // BLOCK) * BLOCK
        buf.seek(0)
        buf.write(block(addr, seq))
        t = time.monotonic()
        try:
            os.pwritev(fd, [buf], addr)
        except OSError as e:
            errors.append(f"write {seq} at {addr}: {e}")
            break
        took = time.monotonic() - t
        if took > longest:
            longest = took
            print(f"longest write so far: {took * 1000:.0f} ms at write {seq}", flush=True)
        acked[addr] = seq
    check(not errors, f"no write failed ({seq} writes; {'; '.join(errors)})")
    print(f"LONGEST_WRITE_MS {longest * 1000:.0f}", flush=True)
    bad = []
    for addr in range(0, REGION, BLOCK):
        os.preadv(fd, [buf], addr)
        got = bytes(buf)
        want = block(addr, acked[addr]) if addr in acked else bytes(BLOCK)
        if got != want:
            bad.append(addr)
    os.close(fd)
    check(not bad, f"every block holds its last acknowledged write ({len(acked)} blocks written, "
                   f"{len(bad)} wrong: {bad[:5]})")
    vols.remove(vid)
    print("SCENARIO OK", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
