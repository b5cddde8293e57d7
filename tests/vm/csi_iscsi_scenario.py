"""Runs inside a test-bed guest against the CSI plugin there (both roles, one socket): an iSCSI
volume's life on a real kernel with open-iscsi, its data checked. Exits non-zero with the reason on
any failure.

    python3 csi_iscsi_scenario.py unix:///run/csi/csi.sock
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grpc

from meshblock.proto.csi.v1 import csi_pb2 as csi
from meshblock.proto.csi.v1 import csi_pb2_grpc as csi_grpc
from tests.vm.csi_guest_scenario import write_synced

MiB = 1 << 20
Mode = csi.VolumeCapability.AccessMode.Mode
ROOT = "/var/lib/mbcsi-iscsi"
CHAP = {"chapUser": "podhost", "chapSecret": "pod-secret-0123"}


def cap(block: bool = False) -> csi.VolumeCapability:
    c = csi.VolumeCapability(access_mode=csi.VolumeCapability.AccessMode(mode=Mode.SINGLE_NODE_WRITER))
    if block:
        c.block.SetInParent()
    else:
        c.mount.fs_type = "ext4"
    return c


def check(cond: bool, what: str) -> None:
    if not cond:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}", flush=True)


def refused(call, code: grpc.StatusCode, words: str) -> str:
    try:
        call()
    except grpc.RpcError as e:
        check(e.code() == code and words in e.details(), f"refused with {code.name}: {e.details()}")
        return e.details()
    raise SystemExit(f"FAILED: expected {code.name} ({words})")


def sessions(target: str) -> list[str]:
    base = Path("/sys/class/iscsi_session")
    return [d.name for d in base.iterdir() if (d / "targetname").read_text().strip() == target] \
        if base.is_dir() else []


def findmnt(path: str) -> list[str]:
    return subprocess.run(["findmnt", "-n", "-o", "SOURCE,FSTYPE,OPTIONS", "--mountpoint", path],
                          capture_output=True, text=True).stdout.split()


def main(endpoint: str) -> None:
    ch = grpc.insecure_channel(endpoint)
    ctl, node = csi_grpc.ControllerStub(ch), csi_grpc.NodeStub(ch)
    node_id = node.NodeGetInfo(csi.NodeGetInfoRequest()).node_id

    # --- a replicated ext4 volume over iSCSI with CHAP --------------------------------------------
    fs_cap = cap()
    vol = ctl.CreateVolume(csi.CreateVolumeRequest(
        name="iscsi-fs", volume_capabilities=[fs_cap], capacity_range=csi.CapacityRange(required_bytes=64 * MiB),
        parameters={"protocol": "iscsi", "replicas": "2"}, secrets=CHAP)).volume
    vid, target = vol.volume_id, vol.volume_context["targetIQN"]
    check(vol.volume_context["protocol"] == "iscsi", f"created over iSCSI: {target}")
    pub = ctl.ControllerPublishVolume(csi.ControllerPublishVolumeRequest(volume_id=vid, node_id=node_id,
                                                                         volume_capability=fs_cap))
    ctx = pub.publish_context
    check(ctx["protocol"] == "iscsi" and ctx["chapUser"] == "podhost" and ctx["portals"], f"published: {dict(ctx)}")
    staging, pod = f"{ROOT}/staging/{vid}", f"{ROOT}/pods/p1/{vid}"
    os.makedirs(staging, exist_ok=True)

    def stage(secrets: dict[str, str]) -> csi.NodeStageVolumeRequest:
        return csi.NodeStageVolumeRequest(volume_id=vid, publish_context=ctx, staging_target_path=staging,
                                          volume_capability=fs_cap, secrets=secrets)

    refused(lambda: node.NodeStageVolume(stage({})), grpc.StatusCode.FAILED_PRECONDITION, "CHAP")
    refused(lambda: node.NodeStageVolume(stage({"chapUser": "podhost", "chapSecret": "wrong-secret-99"})),
            grpc.StatusCode.FAILED_PRECONDITION, "refused")
    check(not sessions(target), "no session after the refused logins")
    node.NodeStageVolume(stage(CHAP))
    node.NodeStageVolume(stage(CHAP))                     # idempotent
    mnt = findmnt(staging)
    check(mnt[1:2] == ["ext4"] and mnt[0].startswith("/dev/sd"), f"staged: ext4 on {mnt[:1]} at the staging path")
    check(len(sessions(target)) == 1, "one iSCSI session")
    publish = csi.NodePublishVolumeRequest(volume_id=vid, publish_context=ctx, staging_target_path=staging,
                                           target_path=pod, volume_capability=fs_cap)
    node.NodePublishVolume(publish)
    data = write_synced(f"{pod}/data.bin", 6 * MiB)
    stats = node.NodeGetVolumeStats(csi.NodeGetVolumeStatsRequest(volume_id=vid, volume_path=pod))
    used = {u.unit: u for u in stats.usage}[csi.VolumeUsage.BYTES].used
    check(used >= 6 * MiB and not stats.volume_condition.abnormal and "iSCSI" in stats.volume_condition.message,
          f"stats: {used} bytes used, condition {stats.volume_condition.message!r}")

    # --- expansion: the controller grows the volume, the node rescans and grows ext4 --------------
    grown = ctl.ControllerExpandVolume(csi.ControllerExpandVolumeRequest(
        volume_id=vid, capacity_range=csi.CapacityRange(required_bytes=128 * MiB), volume_capability=fs_cap))
    check(grown.capacity_bytes == 128 * MiB and grown.node_expansion_required, "controller expanded to 128 MiB")
    node.NodeExpandVolume(csi.NodeExpandVolumeRequest(volume_id=vid, volume_path=pod, staging_target_path=staging,
                                                      capacity_range=csi.CapacityRange(required_bytes=128 * MiB),
                                                      volume_capability=fs_cap))
    st = os.statvfs(pod)
    check(st.f_blocks * st.f_frsize > 100 * MiB, f"ext4 grew to {st.f_blocks * st.f_frsize} bytes")

    # --- unstage logs out and forgets the target; staging again finds the same bytes ------------
    node.NodeUnpublishVolume(csi.NodeUnpublishVolumeRequest(volume_id=vid, target_path=pod))
    node.NodeUnstageVolume(csi.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=staging))
    node.NodeUnstageVolume(csi.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=staging))
    records = subprocess.run(["iscsiadm", "-m", "node", "-T", target], capture_output=True, text=True)
    check(not sessions(target) and records.returncode != 0, "unstaged: logged out, node records deleted")
    node.NodeStageVolume(stage(CHAP))
    node.NodePublishVolume(publish)
    with open(f"{pod}/data.bin", "rb") as f:
        check(f.read() == data, "the data read back after a new login")
    node.NodeUnpublishVolume(csi.NodeUnpublishVolumeRequest(volume_id=vid, target_path=pod))
    node.NodeUnstageVolume(csi.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=staging))
    ctl.ControllerUnpublishVolume(csi.ControllerUnpublishVolumeRequest(volume_id=vid, node_id=node_id))
    ctl.DeleteVolume(csi.DeleteVolumeRequest(volume_id=vid))

    # --- a raw block volume without CHAP: the pod's device file is the LUN ----------------------
    blk = cap(block=True)
    bvol = ctl.CreateVolume(csi.CreateVolumeRequest(
        name="iscsi-block", volume_capabilities=[blk], capacity_range=csi.CapacityRange(required_bytes=32 * MiB),
        parameters={"protocol": "iscsi"})).volume
    bid = bvol.volume_id
    bctx = ctl.ControllerPublishVolume(csi.ControllerPublishVolumeRequest(volume_id=bid, node_id=node_id,
                                                                          volume_capability=blk)).publish_context
    check(bctx["chapUser"] == "", "a volume without CHAP")
    bstaging, bpod = f"{ROOT}/staging/{bid}", f"{ROOT}/pods/p2/{bid}"
    os.makedirs(bstaging, exist_ok=True)
    node.NodeStageVolume(csi.NodeStageVolumeRequest(volume_id=bid, publish_context=bctx,
                                                    staging_target_path=bstaging, volume_capability=blk))
    node.NodePublishVolume(csi.NodePublishVolumeRequest(volume_id=bid, publish_context=bctx,
                                                        staging_target_path=bstaging, target_path=bpod,
                                                        volume_capability=blk))
    block = os.urandom(MiB)
    fd = os.open(bpod, os.O_RDWR | os.O_DIRECT)
    try:
        import mmap
        buf = mmap.mmap(-1, MiB)
        buf.write(block)
        os.pwrite(fd, buf, 8 * MiB)
        os.fsync(fd)
        back = mmap.mmap(-1, MiB)
        os.preadv(fd, [back], 8 * MiB)
        check(bytes(back) == block, "raw block: 1 MiB written with O_DIRECT and read back")
    finally:
        os.close(fd)
    size = node.NodeGetVolumeStats(csi.NodeGetVolumeStatsRequest(volume_id=bid, volume_path=bpod)).usage[0].total
    check(size == 32 * MiB, f"raw block stats: {size} bytes")
    node.NodeUnpublishVolume(csi.NodeUnpublishVolumeRequest(volume_id=bid, target_path=bpod))
    node.NodeUnstageVolume(csi.NodeUnstageVolumeRequest(volume_id=bid, staging_target_path=bstaging))
    check(not sessions(bvol.volume_context["targetIQN"]), "raw block volume logged out")
    ctl.ControllerUnpublishVolume(csi.ControllerUnpublishVolumeRequest(volume_id=bid, node_id=node_id))
    ctl.DeleteVolume(csi.DeleteVolumeRequest(volume_id=bid))
    print("SCENARIO OK", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
