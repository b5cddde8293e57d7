"""Runs inside a test-bed guest against the CSI plugin there: group snapshots of two raw block
volumes taken while a host keeps writing to both, checked for write-order consistency.

The writer alternates dependent writes: A1, then B1 once A1 is acknowledged, then A2 once B1 is,
and so on; each write puts its sequence number (with a checksum) in the volume's first block.
A snapshot pair that agrees on one instant holds A_n and B_m with n - 1 <= m <= n; snapshots taken
one after the other while writes go on drift apart (the scenario shows that too, as a control). The writer must see no I/O error
(a held write waits, native NVMe multipath queues it) and its longest wait is reported.

    python3 csi_group_scenario.py unix:///run/csi/csi.sock
"""

from __future__ import annotations

import mmap
import os
import struct
import sys
import threading
import time
import zlib

import grpc

from meshblock.proto.csi.v1 import csi_pb2 as csi
from meshblock.proto.csi.v1 import csi_pb2_grpc as csi_grpc
from tests.vm.csi_guest_scenario import cap, check

MiB = 1 << 20
ROOT = "/var/lib/mbcsi-group"
BLOCK = 4096
GROUPS = 3
MAGIC = b"MBGROUP1"


def record(tag: bytes, seq: int) -> bytes:
    body = MAGIC + tag + struct.pack("<Q", seq)
    return body + struct.pack("<I", zlib.crc32(body)) + bytes(BLOCK - len(body) - 4)


def parse(block: bytes, tag: bytes) -> int:
    body, crc = block[:17], struct.unpack("<I", block[17:21])[0]
    if block[:8] != MAGIC or block[8:9] != tag or zlib.crc32(body) != crc:
        raise SystemExit(f"FAILED: block of volume {tag!r} is not a whole record: {block[:32]!r}")
    return struct.unpack("<Q", block[9:17])[0]


class Volumes:
    """Raw block volumes created, attached and removed through the CSI plugin."""

    def __init__(self, ch: grpc.Channel):
        self.ctl, self.node = csi_grpc.ControllerStub(ch), csi_grpc.NodeStub(ch)
        self.node_id = self.node.NodeGetInfo(csi.NodeGetInfoRequest()).node_id
        self.cap = cap(block=True)
        self.attached: dict[str, tuple[str, str]] = {}

    def create(self, name: str, size: int, source_snapshot: str = "", **params: str) -> str:
        req = csi.CreateVolumeRequest(name=name, volume_capabilities=[self.cap], parameters=params,
                                      capacity_range=csi.CapacityRange(required_bytes=size))
        if source_snapshot:
            req.volume_content_source.snapshot.snapshot_id = source_snapshot
        return self.ctl.CreateVolume(req).volume.volume_id

    def attach(self, vid: str) -> str:
        pub = self.ctl.ControllerPublishVolume(csi.ControllerPublishVolumeRequest(
            volume_id=vid, node_id=self.node_id, volume_capability=self.cap))
        staging, target = f"{ROOT}/staging/{vid}", f"{ROOT}/pods/{vid}/dev"
        os.makedirs(staging, exist_ok=True)
        self.node.NodeStageVolume(csi.NodeStageVolumeRequest(volume_id=vid, publish_context=pub.publish_context,
                                                             staging_target_path=staging,
                                                             volume_capability=self.cap))
        self.node.NodePublishVolume(csi.NodePublishVolumeRequest(volume_id=vid, publish_context=pub.publish_context,
                                                                 staging_target_path=staging, target_path=target,
                                                                 volume_capability=self.cap))
        self.attached[vid] = (staging, target)
        return target

    def remove(self, vid: str) -> None:
        staging, target = self.attached.pop(vid)
        self.node.NodeUnpublishVolume(csi.NodeUnpublishVolumeRequest(volume_id=vid, target_path=target))
        self.node.NodeUnstageVolume(csi.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=staging))
        self.ctl.ControllerUnpublishVolume(csi.ControllerUnpublishVolumeRequest(volume_id=vid, node_id=self.node_id))
        self.ctl.DeleteVolume(csi.DeleteVolumeRequest(volume_id=vid))


def read_first_block(path: str) -> bytes:
    buf = mmap.mmap(-1, BLOCK)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        os.preadv(fd, [buf], 0)
        return bytes(buf)
    finally:
        os.close(fd)


class Writer(threading.Thread):
    def __init__(self, a: str, b: str):
        super().__init__(daemon=True)
        self.paths = [(a, b"A"), (b, b"B")]
        self.seq = 0
        self.errors: list[str] = []
        self.longest = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        fds = [(os.open(p, os.O_WRONLY | os.O_DIRECT | os.O_DSYNC), tag) for p, tag in self.paths]
        buf = mmap.mmap(-1, BLOCK)
        try:
            while not self.stop.is_set():
                self.seq += 1
                for fd, tag in fds:
                    buf.seek(0)
                    buf.write(record(tag, self.seq))
                    t = time.monotonic()
                    try:
                        os.pwritev(fd, [buf], 0)
                    except OSError as e:
                        self.errors.append(f"write {tag!r}{self.seq}: {e}")
                        return
                    self.longest = max(self.longest, time.monotonic() - t)
        finally:
            for fd, _ in fds:
                os.close(fd)


def main(endpoint: str) -> None:
    ch = grpc.insecure_channel(endpoint)
    vols = Volumes(ch)
    groups = csi_grpc.GroupControllerStub(ch)
    a = vols.create("group-a", 16 * MiB, replicas="2")
    b = vols.create("group-b", 16 * MiB)
    writer = Writer(vols.attach(a), vols.attach(b))
    writer.start()
    taken = []
    try:
        for k in range(GROUPS):
            time.sleep(1.0)
            before = writer.seq
            t = time.monotonic()
            g = groups.CreateVolumeGroupSnapshot(csi.CreateVolumeGroupSnapshotRequest(
                name=f"gs-{k}", source_volume_ids=[a, b])).group_snapshot
            took = time.monotonic() - t
            check(g.ready_to_use and len(g.snapshots) == 2, f"group snapshot {k} taken in {took:.2f} s "
                  f"while writing (sequence {before} -> {writer.seq})")
            taken.append(g)
        # the control: two single snapshots a moment apart do not agree (so the check below can fail)
        time.sleep(0.5)
        sa = vols.ctl.CreateSnapshot(csi.CreateSnapshotRequest(name="single-a", source_volume_id=a)).snapshot
        between = writer.seq
        while writer.seq < between + 3:
            time.sleep(0.05)
        sb = vols.ctl.CreateSnapshot(csi.CreateSnapshotRequest(name="single-b", source_volume_id=b)).snapshot
    finally:
        writer.stop.set()
        writer.join(60)
    check(not writer.errors, f"the writer saw no I/O error ({writer.seq} pairs written; "
                             f"longest write {writer.longest * 1000:.0f} ms)")
    print(f"LONGEST_WRITE_MS {writer.longest * 1000:.0f}", flush=True)
    check(writer.seq > GROUPS * 4, "the writer kept writing across the group snapshots")

    for k, g in enumerate(taken):
        snap = {s.source_volume_id: s.snapshot_id for s in g.snapshots}
        seqs = {}
        for tag, vid in ((b"A", a), (b"B", b)):
            restored = vols.create(f"restored-{k}-{tag.decode()}", 16 * MiB, source_snapshot=snap[vid])
            seqs[tag] = parse(read_first_block(vols.attach(restored)), tag)
            vols.remove(restored)
        n, m = seqs[b"A"], seqs[b"B"]
        check(n >= 1 and n - 1 <= m <= n, f"group snapshot {k}: A holds write {n}, B holds write {m} "
                                          "(one instant: n-1 <= m <= n)")
        groups.DeleteVolumeGroupSnapshot(csi.DeleteVolumeGroupSnapshotRequest(group_snapshot_id=g.group_snapshot_id))
    seqs = {}
    for tag, snap_id in ((b"A", sa.snapshot_id), (b"B", sb.snapshot_id)):
        restored = vols.create(f"restored-single-{tag.decode()}", 16 * MiB, source_snapshot=snap_id)
        seqs[tag] = parse(read_first_block(vols.attach(restored)), tag)
        vols.remove(restored)
        vols.ctl.DeleteSnapshot(csi.DeleteSnapshotRequest(snapshot_id=snap_id))
    check(seqs[b"B"] > seqs[b"A"], f"control: single snapshots taken apart disagree (A holds write "
                                    f"{seqs[b'A']}, B holds write {seqs[b'B']})")
    for vid in (a, b):
        vols.remove(vid)
    print("SCENARIO OK", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
