"""CSI Node service: attach a volume over NVMe/TCP (every path) or iSCSI, make and mount its file
system at the staging path, bind it into pods; undo exactly that. Calls for one volume run one at a
time."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import grpc

from .. import iqn
from ..errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from ..proto.csi.v1 import csi_pb2 as csi
from ..proto.csi.v1 import csi_pb2_grpc as csi_grpc
from ..proto.meshblock.v1 import admin_pb2 as admin
from . import TOPOLOGY_NODE_KEY, caps
from .admin import AdminClient, csi_method
from .host import fs, iscsi, nvme
from .host.nvme import NvmePath

log = logging.getLogger(__name__)
SERVICE = "csi.v1.Node"
NRPC = csi.NodeServiceCapability.RPC
CAPABILITIES = (NRPC.STAGE_UNSTAGE_VOLUME, NRPC.GET_VOLUME_STATS, NRPC.EXPAND_VOLUME, NRPC.VOLUME_CONDITION,
                NRPC.SINGLE_NODE_MULTI_WRITER)


@dataclass
class NodeConfig:
    node_id: str
    host_nqn: str
    max_volumes: int = 0
    labels: dict[str, str] | None = None
    initiator_iqn: str = ""          # "": this node attaches no iSCSI volumes


def _required(field: str, value: str) -> str:
    if not value:
        raise InvalidArgument(field, "required")
    return value


def _cap(request, field: str = "volume_capability") -> csi.VolumeCapability:
    if not request.HasField(field):
        raise InvalidArgument(field, "required")
    cap = getattr(request, field)
    caps.require_capabilities([cap], field)
    return cap


class NodeServicer(csi_grpc.NodeServicer):
    def __init__(self, cfg: NodeConfig, admin_client: AdminClient | None):
        self.cfg = cfg
        self.admin = admin_client
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, volume_id: str) -> asyncio.Lock:
        return self._locks.setdefault(volume_id, asyncio.Lock())

    async def _paths(self, volume_id: str, ctx: dict[str, str]) -> tuple[str, list[NvmePath], dict[str, str]]:
        """The volume's subsystem, paths and this host's DH-HMAC-CHAP secrets (if it authenticates):
        fresh from the controller when it answers (a head may have moved since ControllerPublish),
        else the subsystem and paths from the publish context, which never holds secrets."""
        if self.admin is not None:
            try:
                info = await self.admin.volumes.GetConnectInfo(admin.GetConnectInfoRequest(
                    ref=volume_id, host_nqn=self.cfg.host_nqn), timeout=15)
                keys = {k: v for k, v in (("dhchap_secret", info.dhchap_secret),
                                          ("dhchap_ctrl_secret", info.dhchap_ctrl_secret)) if v}
                return info.subnqn, [NvmePath(p.transport, p.traddr, p.trsvcid) for p in info.paths], keys
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.NOT_FOUND:
                    raise NotFound(f"volume {volume_id} does not exist") from None
                log.warning("controller unreachable for connect info of %s (%s); using the publish context",
                            volume_id, e.details())
        nqn = ctx.get("nqn", "")
        if not nqn or not ctx.get("paths"):
            raise FailedPrecondition(f"volume {volume_id} has no publish context (is it published to this node?)")
        try:
            return nqn, [NvmePath.parse(p) for p in ctx["paths"].split(",") if p], {}
        except ValueError as e:
            raise InvalidArgument("publish_context", str(e)) from None

    async def _attach(self, volume_id: str, ctx: dict[str, str], secrets: dict[str, str]) -> str:
        if ctx.get("protocol") == "iscsi":
            return await self._attach_iscsi(volume_id, ctx, secrets)
        nqn, paths, keys = await self._paths(volume_id, ctx)
        if not paths:
            raise Unavailable(f"volume {volume_id} has no path to connect to yet")
        errors = []
        for p in paths:
            try:
                if await nvme.connect(nqn, p, self.cfg.host_nqn, **keys):
                    log.info("connected volume_id=%s nqn=%s path=%s:%s", volume_id, nqn, p.traddr, p.trsvcid)
            except ConnectionError as e:
                errors.append(str(e))
        if len(errors) == len(paths):
            raise Unavailable("; ".join(errors))
        ns_uuid = ctx.get("namespaceUUID") or volume_id
        try:
            return await nvme.find_device(ns_uuid)
        except TimeoutError as e:
            raise Unavailable(str(e)) from None

    async def _iscsi_target(self, volume_id: str, ctx: dict[str, str]) -> tuple[str, list[str], str]:
        """(target IQN, portals, CHAP user): fresh from the controller when it answers, else from the
        publish context."""
        if self.admin is not None:
            try:
                info = await self.admin.volumes.GetConnectInfo(admin.GetConnectInfoRequest(
                    ref=volume_id, initiator_iqn=self.cfg.initiator_iqn), timeout=15)
                return info.target_iqn, [iscsi.portal(p.traddr, p.trsvcid) for p in info.paths], info.chap_user
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.NOT_FOUND:
                    raise NotFound(f"volume {volume_id} does not exist") from None
                log.warning("controller unreachable for connect info of %s (%s); using the publish context",
                            volume_id, e.details())
        target, portals = ctx.get("targetIQN", ""), [p for p in ctx.get("portals", "").split(",") if p]
        if not target or not portals:
            raise FailedPrecondition(f"volume {volume_id} has no publish context (is it published to this node?)")
        return target, portals, ctx.get("chapUser", "")

    async def _attach_iscsi(self, volume_id: str, ctx: dict[str, str], secrets: dict[str, str]) -> str:
        if not self.cfg.initiator_iqn:
            raise FailedPrecondition(f"volume {volume_id} is exported over iSCSI and this node has no initiator "
                                     f"name ({iscsi.INITIATOR_FILE} is missing; the plugin takes --initiator-iqn)")
        target, portals, chap_user = await self._iscsi_target(volume_id, ctx)
        if not portals:
            raise Unavailable(f"volume {volume_id} has no iSCSI portal yet")
        user, secret = caps.chap_from_secrets(secrets)
        chap = None
        if chap_user:
            if not secret:
                raise FailedPrecondition(f"volume {volume_id} requires CHAP as {chap_user!r}: give the node-stage "
                                         f"secret with {caps.CHAP_USER_KEY} and {caps.CHAP_SECRET_KEY}")
            if user != chap_user:
                raise FailedPrecondition(f"volume {volume_id} requires CHAP as {chap_user!r}, the node-stage "
                                         f"secret names {user!r}")
            chap = iscsi.Chap(user, secret)
        errors = []
        for where in portals:
            try:
                if await iscsi.login(target, where, self.cfg.initiator_iqn, chap):
                    log.info("logged in volume_id=%s target=%s portal=%s", volume_id, target, where)
            except PermissionError as e:
                raise FailedPrecondition(str(e)) from None
            except ConnectionError as e:
                errors.append(str(e))
        if len(errors) == len(portals):
            raise Unavailable("; ".join(errors))
        try:
            return await iscsi.find_device(target)
        except TimeoutError as e:
            raise Unavailable(str(e)) from None

    async def _attached_device(self, vid: str, timeout: float) -> str | None:
        """The block device volume ``vid`` has on this node, over NVMe/TCP or iSCSI (None: not attached)."""
        try:
            if await asyncio.to_thread(nvme.subsystem_of_namespace, vid):
                return await nvme.find_device(vid, timeout=timeout)
            if await asyncio.to_thread(iscsi.sessions, iqn("volume", vid)):
                return await iscsi.find_device(iqn("volume", vid), timeout=timeout)
        except TimeoutError:
            pass
        return None

    # --- stage / unstage ------------------------------------------------------------------------
    @csi_method(SERVICE)
    async def NodeStageVolume(self, request: csi.NodeStageVolumeRequest, context) -> csi.NodeStageVolumeResponse:
        vid = _required("volume_id", request.volume_id)
        staging = _required("staging_target_path", request.staging_target_path)
        cap = _cap(request)
        async with self._lock(vid):
            device = await self._attach(vid, dict(request.publish_context), dict(request.secrets))
            if cap.WhichOneof("access_type") == "block":
                return csi.NodeStageVolumeResponse()
            os.makedirs(staging, exist_ok=True)
            current = await asyncio.to_thread(fs.mounts_at, staging)
            if current:
                if current[-1].major_minor != await asyncio.to_thread(fs.major_minor, device):
                    raise FailedPrecondition(f"{staging} is already a mount of another device "
                                             f"({current[-1].source})")
                return csi.NodeStageVolumeResponse()
            want = cap.mount.fs_type or caps.DEFAULT_FS
            found = await fs.probe(device)
            if found is None:
                log.info("making %s on %s volume_id=%s", want, device, vid)
                # erasure-coded volumes take whole 4 KiB writes only (docs/erasure-coding.md)
                await fs.mkfs(device, want, sector=4096 if request.volume_context.get("erasure") else 0)
                found = want
            elif found not in caps.FS_TYPES:
                raise FailedPrecondition(f"volume {vid} holds {found}, not a file system this driver mounts")
            await fs.mount(device, staging, fstype=found, options=list(cap.mount.mount_flags))
            log.info("staged volume_id=%s device=%s fs=%s at %s", vid, device, found, staging)
        return csi.NodeStageVolumeResponse()

    @csi_method(SERVICE)
    async def NodeUnstageVolume(self, request: csi.NodeUnstageVolumeRequest,
                                context) -> csi.NodeUnstageVolumeResponse:
        vid = _required("volume_id", request.volume_id)
        staging = _required("staging_target_path", request.staging_target_path)
        async with self._lock(vid):
            await fs.umount(staging)
            nqn = await asyncio.to_thread(nvme.subsystem_of_namespace, vid)
            target = iqn("volume", vid)
            iscsi_sessions = await asyncio.to_thread(iscsi.sessions, target)
            if nqn or iscsi_sessions:
                device = await self._attached_device(vid, timeout=0)
                try:
                    users = await asyncio.to_thread(fs.users_of, device) if device else []
                except OSError:
                    users = []
                if users:
                    raise FailedPrecondition(f"volume {vid} is still mounted at {', '.join(m.target for m in users)}")
            if nqn:
                await nvme.disconnect(nqn)
                log.info("unstaged volume_id=%s; disconnected %s", vid, nqn)
            if iscsi_sessions:
                try:
                    await iscsi.logout(target)
                except ConnectionError as e:
                    raise Unavailable(str(e)) from None
                log.info("unstaged volume_id=%s; logged out of %s", vid, target)
        return csi.NodeUnstageVolumeResponse()

    # --- publish / unpublish --------------------------------------------------------------------
    @csi_method(SERVICE)
    async def NodePublishVolume(self, request: csi.NodePublishVolumeRequest,
                                context) -> csi.NodePublishVolumeResponse:
        vid = _required("volume_id", request.volume_id)
        target = _required("target_path", request.target_path)
        staging = _required("staging_target_path", request.staging_target_path)
        cap = _cap(request)
        readonly = request.readonly or cap.access_mode.mode in caps.READ_ONLY_MODES
        single = cap.access_mode.mode == caps.Mode.SINGLE_NODE_SINGLE_WRITER
        async with self._lock(vid):
            if cap.WhichOneof("access_type") == "block":
                device = await self._block_device(vid)
                if await asyncio.to_thread(fs.mounts_at, target):
                    return csi.NodePublishVolumeResponse()
                if single:
                    await self._sole_publication(vid, device, {target})
                Path(target).parent.mkdir(parents=True, exist_ok=True)
                if not os.path.exists(target):
                    Path(target).touch()
                await fs.bind(device, target, readonly=readonly)
            else:
                staged = await asyncio.to_thread(fs.mounts_at, staging)
                if not staged:
                    raise FailedPrecondition(f"volume {vid} is not staged at {staging}")
                if await asyncio.to_thread(fs.mounts_at, target):
                    return csi.NodePublishVolumeResponse()
                if single:
                    await self._sole_publication(vid, staged[-1].source, {staging, target})
                os.makedirs(target, exist_ok=True)
                await fs.bind(staging, target, readonly=readonly, options=list(cap.mount.mount_flags))
            log.info("published volume_id=%s at %s readonly=%s", vid, target, readonly)
        return csi.NodePublishVolumeResponse()

    @staticmethod
    async def _sole_publication(vid: str, device: str, own: set[str]) -> None:
        """A single-writer volume is published at one target path on the node at a time."""
        own |= {os.path.realpath(p) for p in own}
        others = sorted({m.target for m in await asyncio.to_thread(fs.users_of, device) if m.target not in own})
        if others:
            raise FailedPrecondition(f"volume {vid} has access mode SINGLE_NODE_SINGLE_WRITER and is already "
                                     f"published at {others[0]}")

    async def _block_device(self, vid: str) -> str:
        device = await self._attached_device(vid, timeout=5)
        if device is None:
            raise FailedPrecondition(f"volume {vid} is not staged on this node (no NVMe namespace or iSCSI LUN)")
        return device

    @csi_method(SERVICE)
    async def NodeUnpublishVolume(self, request: csi.NodeUnpublishVolumeRequest,
                                  context) -> csi.NodeUnpublishVolumeResponse:
        vid = _required("volume_id", request.volume_id)
        target = _required("target_path", request.target_path)
        async with self._lock(vid):
            await fs.umount(target)
            p = Path(target)
            if p.is_dir():
                p.rmdir()
            elif p.exists():
                p.unlink()
        return csi.NodeUnpublishVolumeResponse()

    # --- stats and expansion --------------------------------------------------------------------
    def _condition(self, vid: str) -> csi.VolumeCondition:
        nqn = nvme.subsystem_of_namespace(vid)
        iscsi_states = iscsi.session_states(iqn("volume", vid)) if not nqn else []
        if not nqn and not iscsi_states:
            return csi.VolumeCondition(abnormal=True, message="the volume's NVMe subsystem is not connected "
                                                              "and no iSCSI session is logged in")
        if iscsi_states:
            live = sum(1 for s in iscsi_states if s == "LOGGED_IN")
            if not live:
                return csi.VolumeCondition(abnormal=True, message=f"no iSCSI session logged in "
                                                                  f"({', '.join(iscsi_states)})")
            return csi.VolumeCondition(abnormal=False, message=f"{live} of {len(iscsi_states)} iSCSI session(s) "
                                                               "logged in")
        states = nvme.controller_states(nqn)
        live = sum(1 for s in states if s == "live")
        if not live:
            return csi.VolumeCondition(abnormal=True, message=f"no live path ({', '.join(states) or 'none'})")
        return csi.VolumeCondition(abnormal=False, message=f"{live} of {len(states)} path(s) live")

    @csi_method(SERVICE)
    async def NodeGetVolumeStats(self, request: csi.NodeGetVolumeStatsRequest,
                                 context) -> csi.NodeGetVolumeStatsResponse:
        vid = _required("volume_id", request.volume_id)
        path = _required("volume_path", request.volume_path)
        if not os.path.exists(path):
            raise NotFound(f"{path} does not exist")
        cond = await asyncio.to_thread(self._condition, vid)
        Usage = csi.VolumeUsage
        mounted = await asyncio.to_thread(fs.mounts_at, path)
        if os.path.isdir(path):
            if not mounted:
                raise NotFound(f"{path} is not a mount of volume {vid}")
            st = await asyncio.to_thread(os.statvfs, path)
            usage = [Usage(unit=Usage.BYTES, total=st.f_blocks * st.f_frsize, available=st.f_bavail * st.f_frsize,
                           used=(st.f_blocks - st.f_bfree) * st.f_frsize),
                     Usage(unit=Usage.INODES, total=st.f_files, available=st.f_favail, used=st.f_files - st.f_ffree)]
        else:
            device = await self._block_device(vid)
            usage = [Usage(unit=Usage.BYTES, total=await asyncio.to_thread(fs.device_size, device))]
        return csi.NodeGetVolumeStatsResponse(usage=usage, volume_condition=cond)

    @csi_method(SERVICE)
    async def NodeExpandVolume(self, request: csi.NodeExpandVolumeRequest, context) -> csi.NodeExpandVolumeResponse:
        vid = _required("volume_id", request.volume_id)
        path = _required("volume_path", request.volume_path)
        if not os.path.exists(path):
            raise NotFound(f"{path} does not exist")
        if request.HasField("volume_capability"):
            caps.require_capabilities([request.volume_capability], "volume_capability")
        want = request.capacity_range.required_bytes if request.HasField("capacity_range") else 0
        async with self._lock(vid):
            nqn = await asyncio.to_thread(nvme.subsystem_of_namespace, vid)
            device = await self._attached_device(vid, timeout=5)
            if device is None:
                raise NotFound(f"volume {vid} is not attached to this node")
            for _ in range(50):
                if not want or await asyncio.to_thread(fs.device_size, device) >= want:
                    break
                if nqn:
                    await nvme.rescan(nqn)
                else:
                    await iscsi.rescan(iqn("volume", vid))
                await asyncio.sleep(0.2)
            size = await asyncio.to_thread(fs.device_size, device)
            if want and size < want:
                raise Unavailable(f"the device still has {size} bytes, not {want}; the volume may not be "
                                  "expanded yet")
            block = (request.HasField("volume_capability") and request.volume_capability.WhichOneof("access_type")
                     == "block") or not os.path.isdir(path)
            if not block:
                mounted = await asyncio.to_thread(fs.mounts_at, path)
                if not mounted:
                    raise NotFound(f"{path} is not a mount of volume {vid}")
                await fs.grow(device, path, mounted[-1].fstype)
        return csi.NodeExpandVolumeResponse(capacity_bytes=size)

    # --- info -----------------------------------------------------------------------------------
    @csi_method(SERVICE)
    async def NodeGetCapabilities(self, request, context) -> csi.NodeGetCapabilitiesResponse:
        return csi.NodeGetCapabilitiesResponse(capabilities=[
            csi.NodeServiceCapability(rpc=NRPC(type=t)) for t in CAPABILITIES])

    @csi_method(SERVICE)
    async def NodeGetInfo(self, request, context) -> csi.NodeGetInfoResponse:
        return csi.NodeGetInfoResponse(node_id=self.cfg.node_id, max_volumes_per_node=self.cfg.max_volumes,
                                       accessible_topology=csi.Topology(segments={TOPOLOGY_NODE_KEY:
                                                                                  self.cfg.node_id}))
