"""Runs inside a test-bed guest against the CSI plugin there (both roles, one socket): a volume's
whole life on a real kernel, with its data checked. Exits non-zero with the reason on any failure.

    python3 csi_guest_scenario.py unix:///run/csi/csi.sock
"""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys

import grpc

from meshblock.proto.csi.v1 import csi_pb2 as csi
from meshblock.proto.csi.v1 import csi_pb2_grpc as csi_grpc

MiB = 1 << 20
Mode = csi.VolumeCapability.AccessMode.Mode
ROOT = "/var/lib/mbcsi-scenario"


def cap(block: bool = False, mode: int = Mode.SINGLE_NODE_WRITER, fs: str = "ext4") -> csi.VolumeCapability:
    c = csi.VolumeCapability(access_mode=csi.VolumeCapability.AccessMode(mode=mode))
    if block:
        c.block.SetInParent()
    else:
        c.mount.fs_type = fs
    return c


def check(cond: bool, what: str) -> None:
    if not cond:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}", flush=True)


def write_synced(path: str, size: int) -> bytes:
    """Write ``size`` random bytes to a new file at ``path`` and fsync it; returns them."""
    data = os.urandom(size)
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return data


def mounted(path: str) -> list[str]:
    out = subprocess.run(["findmnt", "-n", "-o", "FSTYPE,OPTIONS", "--mountpoint", path], capture_output=True,
                         text=True)
    return out.stdout.split()


def main(endpoint: str) -> None:
    ch = grpc.insecure_channel(endpoint)
    ident, ctl, node = csi_grpc.IdentityStub(ch), csi_grpc.ControllerStub(ch), csi_grpc.NodeStub(ch)
    check(ident.GetPluginInfo(csi.GetPluginInfoRequest()).name == "csi.meshblock.io", "plugin name")
    node_id = node.NodeGetInfo(csi.NodeGetInfoRequest()).node_id

    # --- a replicated ext4 volume: stage makes the file system, data survives unstage/restage -----
    fs_cap = cap()
    vol = ctl.CreateVolume(csi.CreateVolumeRequest(name="scenario-fs", volume_capabilities=[fs_cap],
                                                   capacity_range=csi.CapacityRange(required_bytes=64 * MiB),
                                                   parameters={"replicas": "2"})).volume
    vid = vol.volume_id
    pub = ctl.ControllerPublishVolume(csi.ControllerPublishVolumeRequest(volume_id=vid, node_id=node_id,
                                                                         volume_capability=fs_cap))
    staging, target = f"{ROOT}/staging/{vid}", f"{ROOT}/pods/p1/{vid}"
    stage = csi.NodeStageVolumeRequest(volume_id=vid, publish_context=pub.publish_context,
                                       staging_target_path=staging, volume_capability=fs_cap)
    os.makedirs(staging, exist_ok=True)
    node.NodeStageVolume(stage)
    node.NodeStageVolume(stage)                     # idempotent
    check(mounted(staging)[:1] == ["ext4"], "staged: ext4 made and mounted at the staging path")
    publish = csi.NodePublishVolumeRequest(volume_id=vid, publish_context=pub.publish_context,
                                           staging_target_path=staging, target_path=target,
                                           volume_capability=fs_cap)
    node.NodePublishVolume(publish)
    node.NodePublishVolume(publish)                 # idempotent
    data = write_synced(f"{target}/data.bin", 6 * MiB)
    stats = node.NodeGetVolumeStats(csi.NodeGetVolumeStatsRequest(volume_id=vid, volume_path=target))
    by_unit = {u.unit: u for u in stats.usage}
    check(by_unit[csi.VolumeUsage.BYTES].used >= 6 * MiB and by_unit[csi.VolumeUsage.INODES].total > 0,
          f"stats: {by_unit[csi.VolumeUsage.BYTES].used} bytes used")
    check(not stats.volume_condition.abnormal, f"condition: {stats.volume_condition.message}")

    grown = ctl.ControllerExpandVolume(csi.ControllerExpandVolumeRequest(
        volume_id=vid, capacity_range=csi.CapacityRange(required_bytes=128 * MiB), volume_capability=fs_cap))
    check(grown.capacity_bytes >= 128 * MiB and grown.node_expansion_required, "controller expansion")
    node.NodeExpandVolume(csi.NodeExpandVolumeRequest(volume_id=vid, volume_path=target,
                                                      capacity_range=csi.CapacityRange(required_bytes=128 * MiB),
                                                      staging_target_path=staging, volume_capability=fs_cap))
    st = os.statvfs(target)
    check(st.f_blocks * st.f_frsize > 100 * MiB, f"file system grown to {st.f_blocks * st.f_frsize // MiB} MiB")

    node.NodeUnpublishVolume(csi.NodeUnpublishVolumeRequest(volume_id=vid, target_path=target))
    node.NodeUnpublishVolume(csi.NodeUnpublishVolumeRequest(volume_id=vid, target_path=target))
    check(not os.path.exists(target), "unpublish removed the target path")
    node.NodeUnstageVolume(csi.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=staging))
    node.NodeUnstageVolume(csi.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=staging))
    check(not mounted(staging), "unstaged")
    subsystems = subprocess.run(["nvme", "list-subsys"], capture_output=True, text=True).stdout
    check(pub.publish_context["nqn"] not in subsystems, "unstage disconnected the volume's subsystem")

    # stage again: the file system is found, not made again; read-only publish refuses writes
    node.NodeStageVolume(stage)
    ro = csi.NodePublishVolumeRequest()
    ro.CopyFrom(publish)
    ro.readonly = True
    node.NodePublishVolume(ro)
    with open(f"{target}/data.bin", "rb") as f:
        check(hashlib.sha256(f.read()).digest() == hashlib.sha256(data).digest(), "data identical after restage")
    try:
        open(f"{target}/new.bin", "wb").close()
        check(False, "read-only publish refuses writes")
    except OSError as e:
        check(e.errno == errno.EROFS, "read-only publish refuses writes")
    node.NodeUnpublishVolume(csi.NodeUnpublishVolumeRequest(volume_id=vid, target_path=target))
    node.NodeUnstageVolume(csi.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=staging))
    ctl.ControllerUnpublishVolume(csi.ControllerUnpublishVolumeRequest(volume_id=vid, node_id=node_id))
    ctl.DeleteVolume(csi.DeleteVolumeRequest(volume_id=vid))

    # --- a raw block volume ----------------------------------------------------------------------
    bcap = cap(block=True)
    bvol = ctl.CreateVolume(csi.CreateVolumeRequest(name="scenario-block", volume_capabilities=[bcap],
                                                    capacity_range=csi.CapacityRange(required_bytes=32 * MiB))).volume
    bid = bvol.volume_id
    bpub = ctl.ControllerPublishVolume(csi.ControllerPublishVolumeRequest(volume_id=bid, node_id=node_id,
                                                                          volume_capability=bcap))
    bstaging, btarget = f"{ROOT}/staging/{bid}", f"{ROOT}/pods/p2/{bid}"
    os.makedirs(bstaging, exist_ok=True)
    node.NodeStageVolume(csi.NodeStageVolumeRequest(volume_id=bid, publish_context=bpub.publish_context,
                                                    staging_target_path=bstaging, volume_capability=bcap))
    node.NodePublishVolume(csi.NodePublishVolumeRequest(volume_id=bid, publish_context=bpub.publish_context,
                                                        staging_target_path=bstaging, target_path=btarget,
                                                        volume_capability=bcap))
    pattern = os.urandom(MiB)
    fd = os.open(btarget, os.O_RDWR)
    try:
        os.pwrite(fd, pattern, 8 * MiB)
        os.fsync(fd)
        check(os.pread(fd, MiB, 8 * MiB) == pattern, "raw block device: written block reads back")
        check(os.lseek(fd, 0, os.SEEK_END) == 32 * MiB, "raw block device has the volume's size")
    finally:
        os.close(fd)
    node.NodeUnpublishVolume(csi.NodeUnpublishVolumeRequest(volume_id=bid, target_path=btarget))
    check(not os.path.exists(btarget), "block unpublish removed the device file")
    node.NodeUnstageVolume(csi.NodeUnstageVolumeRequest(volume_id=bid, staging_target_path=bstaging))
    ctl.ControllerUnpublishVolume(csi.ControllerUnpublishVolumeRequest(volume_id=bid, node_id=node_id))
    ctl.DeleteVolume(csi.DeleteVolumeRequest(volume_id=bid))
    print("SCENARIO OK", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
