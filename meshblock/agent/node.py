"""The node agent's core: one node's targets, pool, replicas, exports and attachments.

The agent holds no state of its own beyond what SPDK persists (lvols carry the
caller's ids in their names). What SPDK forgets on a restart -- transports,
subsystems, attachments -- the agent keeps as the set it was told to hold and
re-applies each time a target comes (back) up; after an agent restart the
controller tells it again.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from dataclasses import replace
from pathlib import Path

from .. import __version__, iqn, nqn
from ..dhchap import HostKeys
from ..errors import FailedPrecondition, NotFound, Unavailable
from ..qos import QosLimits
from ..spdk import SpdkConnectionError, SpdkInstall, SpdkRpc, SpdkTimeout
from ..spdk.supervisor import TargetConfig, TargetState, TargetSupervisor, pid_alive
from ..util import KeyedLock, check_nqn
from .attachments import Attacher, AttachSpec, AttachState, check_attachment_id
from .config import AgentConfig
from .exports import Exporter, ExportSpec, ExportState
from .heads import Leg, LegState, RaidComposer, raid_name, set_rate_limits
from .iostat import IostatSampler
from .iscsi import IscsiExporter, iscsi_options
from .keyring import Keyring
from .model import Head, HeadView, ReplicaView, holdable_head
from .pool import Pool
from .replicas import REPLICA_PREFIX, SNAPSHOT_PREFIX, LvolInfo, ReplicaStore

log = logging.getLogger(__name__)


# Zero-copy send (MSG_ZEROCOPY) on the target side cost single-request reads ~44 ms on loopback in
# docs/performance/data-path.md (136 us without it) and a third of raid read throughput.
SOCK_OPTIONS = {"subsystem": "sock", "config": [
    {"method": "sock_impl_set_options", "params": {"impl_name": "posix", "enable_zerocopy_send_server": False}}]}
ISCSI_APPS = ("spdk_tgt", "iscsi_tgt")
# A raid1 rebuild copies one window at a time over NVMe/TCP; SPDK's 1 MiB default left the link
# idle between windows (hand-built raid1 rebuilds: 334 MiB/s with 1 MiB, 416 MiB/s with 8 MiB,
# docs/performance/data-path.md). The window is taken only while a rebuild runs.
RAID_OPTIONS = {"subsystem": "bdev", "config": [
    {"method": "bdev_raid_set_options", "params": {"process_window_size_kb": 8192}}]}


def startup_config(app: str) -> dict:
    """Options a target takes before init: sockets, and iSCSI pools that fit its memory (see iscsi.py)."""
    subsystems = [SOCK_OPTIONS, RAID_OPTIONS]
    if app in ISCSI_APPS:
        subsystems.append({"subsystem": "iscsi", "config": [iscsi_options()]})
    return {"subsystems": subsystems}


class NodeAgent:
    def __init__(self, config: AgentConfig, install: SpdkInstall | None):
        self.config = config
        config.ensure_node_id()
        self.install = install
        self.target = TargetSupervisor(TargetConfig(
            rpc_socket=Path(config.spdk_socket), app=config.spdk_app,
            cpumask=config.cpumask, mem_size_mb=config.mem_size_mb, no_huge=config.no_huge,
            no_pci=config.no_huge, interrupt_mode=config.interrupt_mode,
            pid_file=config.data_dir / "spdk.pid", log_file=config.data_dir / "spdk.log",
            startup_config=startup_config(config.spdk_app)),
            install, external=config.spdk_external)
        self.rpc = SpdkRpc(self.target.client)
        self.pool = Pool(self.rpc, config.pool_device, config.lvs_name, size_bytes=config.pool_size_bytes,
                         block_size=config.pool_block_size, cluster_size=config.pool_cluster_size)
        self.replicas = ReplicaStore(self.rpc, self.pool)
        self.keyring = Keyring(self.rpc, config.key_path / "data")
        self.head_keyring: Keyring | None = None
        self.exporter = Exporter(self.rpc, self.keyring)
        self.exports: dict[str, frozenset[str]] = {}   # replica id -> allowed host NQNs
        self.export_keys: dict[str, tuple[tuple[str, HostKeys], ...]] = {}   # replica id -> their link secrets
        self.attachments: dict[str, AttachSpec] = {}   # attachment id -> spec
        self.heads: dict[str, Head] = {}               # volume id -> head
        self.head_bdevs: dict[str, str] = {}           # volume id -> the bdev its head exports
        self._holds: dict[str, asyncio.TimerHandle] = {}  # volume id -> end of a write hold
        self.head: TargetSupervisor | None = None
        self.head_rpc: SpdkRpc | None = None
        self.iscsi: IscsiExporter | None = None        # iSCSI exports of the head target
        self.locks = KeyedLock()
        self._head_lock = asyncio.Lock()
        self.iostat = IostatSampler(self)
        self.target.on_ready(self._converge_data)

    @property
    def node_id(self) -> str:
        return self.config.node_id

    # --- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        await self.target.start()
        head_pid = self.config.data_dir / "spdk-head.pid"
        if self.config.interrupt_mode and head_pid.exists():
            try:
                if pid_alive(int(head_pid.read_text().strip())):
                    await self._head()  # adopt the head target a previous agent left running
            except ValueError:
                pass

    async def stop(self) -> None:
        kill = not self.config.keep_target_on_exit
        if self.head is not None:
            await self.head.stop(kill_target=kill)
        await self.target.stop(kill_target=kill)
        if kill and not self.config.spdk_external:
            # the targets that read the DH-HMAC-CHAP key files are gone: so are the files
            shutil.rmtree(self.config.key_path, ignore_errors=True)

    async def _converge_data(self) -> None:
        await self.pool.ensure()
        await self.exporter.ensure_transport()
        await self.keyring.prune()
        for rid, hosts in list(self.exports.items()):
            lv = await self.replicas.get(REPLICA_PREFIX + rid)
            if lv is None:
                log.error("export of replica %s dropped: its lvol is gone", rid)
                self.exports.pop(rid, None)
                continue
            await self.exporter.ensure(self._export_spec(rid, lv, hosts))
        for head in list(self.heads.values()):
            if not head.direct:
                continue
            try:
                await self._apply_head(head)
            except Exception as e:  # noqa: BLE001 - one broken head must not stop the others
                log.error("head of volume %s not restored: %s", head.volume_id, e)
        log.info("node converged node_id=%s exports=%d heads=%d", self.node_id, len(self.exports), len(self.heads))
        if self.head is self.target:
            await self._converge_head()

    async def _converge_head(self) -> None:
        rpc = self.head_rpc
        if rpc is None:
            return
        await Exporter(rpc).ensure_transport()
        if self.head_keyring is not None and self.head is not self.target:
            await self.head_keyring.prune()
        for head in list(self.heads.values()):
            if not head.direct:
                try:
                    await self._apply_head(head)
                except Exception as e:  # noqa: BLE001 - the controller re-applies on its next pass
                    log.error("head of volume %s not restored: %s", head.volume_id, e)
        attacher = Attacher(rpc)
        for spec in list(self.attachments.values()):
            try:
                await attacher.ensure(spec)
            except Unavailable as e:
                log.warning("re-attach of %s failed (will retry on the next call): %s", spec.attachment_id, e)

    async def _head(self) -> SpdkRpc:
        """The target that runs the NVMe/TCP initiator: the main target unless that one sleeps
        in interrupt mode, where bdev_nvme over TCP cannot run; then a polling target of its own."""
        if self.head_rpc is not None:
            return self.head_rpc
        async with self._head_lock:
            if self.head_rpc is not None:
                return self.head_rpc
            if not self.config.interrupt_mode or self.config.spdk_external:
                self.head, self.head_rpc, self.iscsi = self.target, self.rpc, IscsiExporter(self.rpc)
                self.head_keyring = self.keyring
                return self.rpc
            app = self.head_app
            head = TargetSupervisor(TargetConfig(
                rpc_socket=self.config.head_socket, app=app, cpumask=self.config.head_cpumask,
                mem_size_mb=self.config.head_mem_size_mb, no_huge=self.config.no_huge,
                no_pci=self.config.no_huge, interrupt_mode=False,
                pid_file=self.config.data_dir / "spdk-head.pid",
                log_file=self.config.data_dir / "spdk-head.log", startup_config=startup_config(app)), self.install)
            rpc = SpdkRpc(head.client)
            self.head, self.head_rpc, self.iscsi = head, rpc, IscsiExporter(rpc)
            self.head_keyring = Keyring(rpc, self.config.key_path / "head")
            head.on_ready(self._converge_head)
            try:
                await head.start()
            except Exception:
                self.head, self.head_rpc, self.iscsi = None, None, None
                raise
            return rpc

    @property
    def head_app(self) -> str:
        """The head target's program: spdk_tgt (NVMe-oF and iSCSI in one process) where the build has it."""
        if self.config.head_app:
            return self.config.head_app
        if self.install is not None and self.install.has("spdk_tgt"):
            return "spdk_tgt"
        return self.config.spdk_app

    def _require_running(self) -> None:
        if self.target.state != TargetState.RUNNING or not self.pool.ready:
            raise Unavailable(f"SPDK target is {self.target.state.value}; try again shortly")

    # --- node ----------------------------------------------------------------------------------
    def info(self) -> dict:
        c = self.config
        return dict(node_id=self.node_id, name=c.name, host_nqn=c.host_nqn, nvmf_address=c.nvmf_address,
                    nvmf_port=c.nvmf_port, labels=dict(c.labels), spdk_version=self.target.version or "",
                    agent_version=__version__, iscsi_address=c.iscsi_address, iscsi_port=c.iscsi_port,
                    tls_port=c.tls_port)

    async def pool_status(self) -> dict:
        self._require_running()
        info = await self.pool.info()
        lvols = await self.replicas.lvols()
        return dict(name=info.name, uuid=info.uuid, total_bytes=info.total_bytes, free_bytes=info.free_bytes,
                    provisioned_bytes=sum(lv.size_bytes for lv in lvols.values()), cluster_size=info.cluster_size,
                    replica_count=sum(n.startswith(REPLICA_PREFIX) for n in lvols),
                    snapshot_count=sum(n.startswith(SNAPSHOT_PREFIX) for n in lvols),
                    devices=[self.config.pool_device])

    # --- replicas ------------------------------------------------------------------------------
    def _export_spec(self, rid: str, lv: LvolInfo, hosts: frozenset[str]) -> ExportSpec:
        return ExportSpec(nqn=nqn("replica", rid), bdev_name=lv.uuid, namespace_uuid=rid,
                          address=self.config.nvmf_address, port=self.config.nvmf_port, hosts=hosts,
                          host_keys=self.export_keys.get(rid, ()))

    def _export_state(self, rid: str) -> ExportState | None:
        hosts = self.exports.get(rid)
        if hosts is None:
            return None
        return ExportState(nqn=nqn("replica", rid), address=self.config.nvmf_address, port=self.config.nvmf_port,
                           hosts=sorted(hosts), namespace_uuid=rid,
                           host_keys={h: k.fingerprints for h, k in self.export_keys.get(rid, ())})

    async def create_replica(self, rid: str, size_bytes: int, thin: bool) -> ReplicaView:
        self._require_running()
        async with self.locks(rid):
            lv = await self.replicas.create(rid, size_bytes, thin)
            return ReplicaView(lv, self._export_state(rid))

    async def resize_replica(self, rid: str, size_bytes: int) -> ReplicaView:
        self._require_running()
        async with self.locks(rid):
            lv = await self.replicas.resize(rid, size_bytes)
            return ReplicaView(lv, self._export_state(rid))

    async def get_replica(self, rid: str) -> ReplicaView:
        self._require_running()
        lv = await self.replicas.require(REPLICA_PREFIX + rid, "replica")
        return ReplicaView(lv, self._export_state(rid))

    async def list_replicas(self) -> list[ReplicaView]:
        self._require_running()
        return [ReplicaView(lv, self._export_state(lv.object_id))
                for name, lv in sorted((await self.replicas.lvols()).items()) if name.startswith(REPLICA_PREFIX)]

    async def delete_replica(self, rid: str) -> bool:
        self._require_running()
        async with self.locks(rid):
            self.exports.pop(rid, None)
            await self.exporter.remove(nqn("replica", rid))
            return await self.replicas.delete(REPLICA_PREFIX + rid)

    async def export_replica(self, rid: str, hosts: list[str],
                             host_keys: tuple[tuple[str, HostKeys], ...] = ()) -> ExportState:
        self._require_running()
        allowed = frozenset(check_nqn("allowed_host_nqns", h) for h in hosts)
        async with self.locks(rid):
            lv = await self.replicas.require(REPLICA_PREFIX + rid, "replica")
            self.exports[rid] = allowed
            self.export_keys[rid] = host_keys
            return await self.exporter.ensure(self._export_spec(rid, lv, allowed))

    async def unexport_replica(self, rid: str) -> bool:
        self._require_running()
        async with self.locks(rid):
            had = self.exports.pop(rid, None) is not None
            self.export_keys.pop(rid, None)
            return await self.exporter.remove(nqn("replica", rid)) or had

    # --- snapshots -----------------------------------------------------------------------------
    async def create_snapshot(self, rid: str, sid: str) -> LvolInfo:
        self._require_running()
        async with self.locks(rid):
            return await self.replicas.snapshot(rid, sid)

    async def delete_snapshot(self, sid: str) -> bool:
        self._require_running()
        async with self.locks(sid):
            return await self.replicas.delete(SNAPSHOT_PREFIX + sid)

    async def list_snapshots(self) -> list[LvolInfo]:
        self._require_running()
        return [lv for name, lv in sorted((await self.replicas.lvols()).items()) if name.startswith(SNAPSHOT_PREFIX)]

    async def clone_snapshot(self, sid: str, rid: str) -> ReplicaView:
        self._require_running()
        async with self.locks(rid):
            lv = await self.replicas.clone(sid, rid)
            return ReplicaView(lv, self._export_state(rid))

    # --- attachments ---------------------------------------------------------------------------
    async def attach(self, aid: str, subnqn: str, address: str, port: int, transport: str) -> AttachState:
        check_attachment_id(aid)
        check_nqn("subsystem_nqn", subnqn)
        if transport.lower() not in ("", "tcp"):
            raise FailedPrecondition(f"transport {transport!r} is not supported; use tcp")
        spec = AttachSpec(attachment_id=aid, subnqn=subnqn, address=address, port=port,
                          host_nqn=self.config.host_nqn)
        async with self.locks("att:" + aid):
            rpc = await self._head()
            state = await Attacher(rpc).ensure(spec)
            self.attachments[aid] = spec
            return state

    async def detach(self, aid: str) -> bool:
        check_attachment_id(aid)
        async with self.locks("att:" + aid):
            had = self.attachments.pop(aid, None) is not None
            if self.head_rpc is None:
                return had
            return await Attacher(self.head_rpc).remove(aid) or had

    async def list_attachments(self) -> list[AttachState]:
        if self.head_rpc is None:
            return []
        attacher = Attacher(self.head_rpc)
        out = []
        ctrls = await attacher.controllers()
        for aid, spec in sorted(self.attachments.items()):
            ctrl = ctrls.get(spec.controller)
            st = await attacher.state(spec, ctrl) if ctrl else None
            out.append(st or AttachState(spec=spec, bdev_names=[], size_bytes=0, connected=False))
        return out

    # --- heads ----------------------------------------------------------------------------------
    async def _apply_head(self, head: Head) -> HeadView:
        if head.direct:
            leg = head.legs[0]
            if leg.node_id != self.node_id:
                raise FailedPrecondition(f"replica {leg.replica_id} is not on this node; give its export")
            lv = await self.replicas.require(REPLICA_PREFIX + leg.replica_id, "replica")
            qos = await set_rate_limits(self.rpc, lv.uuid, head.qos, lv.qos, head.volume_id)  # before hosts come
            self.head_bdevs[head.volume_id] = lv.uuid   # SPDK names an lvol bdev by its UUID
            # one local replica: its lvol is exported as the volume, no raid in the data path
            await self.exporter.ensure(ExportSpec(nqn=head.nqn, bdev_name=lv.uuid,
                                                  namespace_uuid=head.namespace_uuid,
                                                  address=self.config.nvmf_address, port=self.config.nvmf_port,
                                                  hosts=head.hosts, serial=head.volume_id.replace("-", ""),
                                                  ana_reporting=True, host_keys=head.host_keys))
            return HeadView(head, self.config.nvmf_address, self.config.nvmf_port, lv.size_bytes,
                            [LegState(leg.replica_id, "in_sync")], qos=qos)
        rpc = await self._head()
        self.head_bdevs[head.volume_id] = raid_name(head.volume_id)
        composer = RaidComposer(rpc, self.config.host_nqn, head.link_key, self.head_keyring)
        view = await composer.ensure(head.volume_id, self._legs(head), set(head.in_sync),
                                     slots=max(head.replica_count, len(head.legs)), standby=head.standby,
                                     level=head.raid_level, strip_size_kb=head.strip_size_kb)
        qos = view.qos
        if view.state == "online":   # a raid is a bdev once online (a standby reaching no replica has none)
            qos = await set_rate_limits(rpc, raid_name(head.volume_id), head.qos, view.qos, head.volume_id)
        if head.iscsi is not None:
            assert self.iscsi is not None
            # LUN 0 is the raid named after the volume on every head node, so SCSI identifiers
            # (serial, NAA: SPDK derives both from the bdev name) stay the same when the head moves
            await self.iscsi.ensure(head.iscsi.spec(raid_name(head.volume_id), self.config.iscsi_address,
                                                    self.config.iscsi_port, alias=head.volume_id))
        else:
            address, port = self._head_address(head)
            await composer.export(Exporter(rpc, self.head_keyring), head.nqn, head.volume_id, head.namespace_uuid,
                                  address, port, head.hosts, ana_state=head.ana_state,
                                  cntlid_range=head.cntlid_range, host_keys=head.host_keys, secure=head.tls,
                                  host_psks=head.host_psks)
        address, port = self._head_address(head)
        return HeadView(head, address, port, view.size_bytes, view.legs, view.state, qos)

    def _head_address(self, head: Head) -> tuple[str, int]:
        if head.iscsi is not None:
            return self.config.iscsi_address, self.config.iscsi_port
        if head.direct:
            return self.config.nvmf_address, self.config.nvmf_port
        return self.config.nvmf_address, self.config.tls_port if head.tls else self.config.head_port

    @staticmethod
    def _legs(head: Head) -> list[Leg]:
        return [Leg(replica_id=leg.replica_id, subsystem_nqn=leg.subsystem_nqn, address=leg.address, port=leg.port,
                    slot=leg.slot) for leg in head.legs]

    async def ensure_head(self, head: Head) -> HeadView:
        self._require_running()
        if head.iscsi is None:
            for h in head.hosts:
                check_nqn("allowed_host_nqns", h)
            check_nqn("nqn", head.nqn)
        async with self.locks("head:" + head.volume_id):
            old = self.heads.get(head.volume_id)
            if old is not None and not old.direct and self.head_rpc is not None:
                gone = {leg.replica_id for leg in old.legs} - {leg.replica_id for leg in head.legs}
                composer = RaidComposer(self.head_rpc, self.config.host_nqn)
                for rid in sorted(gone):
                    await composer.drop_leg(rid)
            role_changed = old is not None and old.standby != head.standby
            if old is not None and old.direct == head.direct and not role_changed:
                head = replace(head, ana_state=old.ana_state)   # access is changed by set_head_access only
            if role_changed and head.standby:
                # demoted (another node heads the volume now): stop serving before anything else
                await self._set_ana(head, "inaccessible")
            if role_changed and not head.standby and self.head_rpc is not None:
                await RaidComposer(self.head_rpc, self.config.host_nqn, head.link_key, self.head_keyring).reseed(
                    head.volume_id, self._legs(head), set(head.in_sync))
            view = await self._apply_head(head)
            if (old is None or role_changed) and head.iscsi is None:
                # first word of this head since the agent started (a hold a previous agent left, or
                # the role it had, must not outlive it), or a promotion: the head's state is the spec's
                await self._set_ana(head, head.ana_state)
            self.heads[head.volume_id] = head
            return view

    async def _set_ana(self, head: Head, state: str) -> None:
        try:
            await self._exporter_of(head).set_ana_state(head.nqn, state, required=False)
        except NotFound:
            pass   # nothing exported yet (a standby that reaches no replica)

    def _exporter_of(self, head: Head) -> Exporter:
        if head.direct:
            return self.exporter
        assert self.head_rpc is not None
        return Exporter(self.head_rpc, self.head_keyring)

    async def set_head_access(self, volume_id: str, state: str, hold_s: float = 0.0) -> HeadView:
        """Hold (``inaccessible``) or release (``optimized``) the writes of a volume this node heads.

        A hold ends by itself after ``hold_s`` seconds when nobody releases it, so hosts never wait
        on a controller that died in the middle of a group snapshot."""
        self._require_running()
        async with self.locks("head:" + volume_id):
            head = holdable_head(self.heads, volume_id)
            await self._exporter_of(head).set_ana_state(head.nqn, state)
            self.heads[volume_id] = replace(head, ana_state=state)
            timer = self._holds.pop(volume_id, None)
            if timer is not None:
                timer.cancel()
            if state == "inaccessible" and hold_s > 0:
                self._holds[volume_id] = asyncio.get_running_loop().call_later(
                    hold_s, lambda: asyncio.ensure_future(self._hold_expired(volume_id, hold_s)))
        return next(v for v in await self.list_heads() if v.head.volume_id == volume_id)

    async def _hold_expired(self, volume_id: str, hold_s: float) -> None:
        self._holds.pop(volume_id, None)
        head = self.heads.get(volume_id)
        if head is None or head.ana_state != "inaccessible":
            return
        log.warning("writes of volume %s released: nobody released them within %.1f s", volume_id, hold_s)
        try:
            await self.set_head_access(volume_id, "optimized")
        except Exception as e:  # noqa: BLE001 - the next EnsureHead after a restart resets it too
            log.error("releasing the writes of volume %s failed: %s", volume_id, e)

    async def lease_lost(self) -> list[str]:
        """The controller has not answered within the head lease: stop serving every volume this node
        heads (hosts disconnected, ANA inaccessible), so that a node promoted in its place is the only one hosts can
        write through, and forget those heads as a restarted agent would. The controller gives them
        again, optimized, when it hears from this agent (it sees a new agent instance).

        Standby heads are inaccessible already; iSCSI heads have no ANA state, and single-replica
        heads cannot move, so those keep serving. Returns the volumes stopped."""
        stopped = []
        for volume_id in sorted(self.heads):
            async with self.locks("head:" + volume_id):
                head = self.heads.get(volume_id)
                if head is None or head.standby or head.direct or head.iscsi is not None:
                    continue
                timer = self._holds.pop(volume_id, None)
                if timer is not None:
                    timer.cancel()
                try:
                    # Hosts are disconnected first: turning the head inaccessible lets the I/O in
                    # flight finish, and a write waiting on replicas this node can no longer reach
                    # would end up acknowledged with this node's replica alone. Disconnected, the
                    # host never gets that answer and writes again through the new head.
                    await self._exporter_of(head).disconnect_hosts(head.nqn)
                    await self._set_ana(head, "inaccessible")
                except Exception as e:  # noqa: BLE001 - the others must still stop
                    log.error("stopping head of volume %s after the lease ran out failed: %s", volume_id, e)
                    continue
                del self.heads[volume_id]
                stopped.append(volume_id)
        return stopped

    async def delete_head(self, volume_id: str) -> bool:
        self._require_running()
        async with self.locks("head:" + volume_id):
            head = self.heads.pop(volume_id, None)
            self.head_bdevs.pop(volume_id, None)
            timer = self._holds.pop(volume_id, None)
            if timer is not None:
                timer.cancel()
            # an iSCSI head has no NVMe-oF subsystem (its nqn is empty): nothing to delete there
            volume_nqn = head.nqn if head else nqn("volume", volume_id)
            removed = False
            if volume_nqn:
                removed = await self.exporter.remove(volume_nqn)
                if self.head_rpc is not None and self.head is not self.target:
                    removed = await Exporter(self.head_rpc, self.head_keyring).remove(volume_nqn) or removed
            if self.iscsi is not None and (head is None or head.iscsi is not None):
                target_iqn = head.iscsi.target_iqn if head is not None and head.iscsi else iqn("volume", volume_id)
                removed = await self.iscsi.remove(target_iqn) or removed
            if self.head_rpc is not None and head is not None and not head.direct:
                await RaidComposer(self.head_rpc, self.config.host_nqn).remove(volume_id, self._legs(head))
            elif self.head_rpc is not None and head is None:
                # told after an agent restart, before any EnsureHead: take what SPDK still holds
                removed = await RaidComposer(self.head_rpc, self.config.host_nqn).remove_found(volume_id) or removed
            return removed or head is not None

    async def list_heads(self) -> list[HeadView]:
        self._require_running()
        out = []
        lvols = await self.replicas.lvols()
        for head in list(self.heads.values()):   # heads may change while this awaits SPDK
            if head.direct:
                lv = lvols.get(REPLICA_PREFIX + head.legs[0].replica_id)
                out.append(HeadView(head, self.config.nvmf_address, self.config.nvmf_port,
                                    lv.size_bytes if lv else 0,
                                    [LegState(head.legs[0].replica_id, "in_sync" if lv else "missing")],
                                    qos=lv.qos if lv else QosLimits()))
            elif self.head_rpc is not None:
                view = await RaidComposer(self.head_rpc, self.config.host_nqn).view(head.volume_id, self._legs(head))
                address, port = self._head_address(head)
                out.append(HeadView(head, address, port, view.size_bytes, view.legs, view.state, view.qos))
        return out

    # --- health --------------------------------------------------------------------------------
    async def health(self) -> dict:
        healthy = self.target.state == TargetState.RUNNING and self.pool.ready
        msg = ""
        if healthy:
            try:
                await self.rpc.spdk_get_version()
            except (SpdkConnectionError, SpdkTimeout) as e:
                healthy, msg = False, str(e)
        else:
            msg = f"target {self.target.state.value}" + (f" (last exit: {self.target.last_exit})"
                                                           if self.target.last_exit else "")
        return dict(healthy=healthy, target_state=self.target.state.value, target_restarts=self.target.restarts,
                    target_pid=self.target.pid or 0, spdk_version=self.target.version or "",
                    pool_ready=self.pool.ready, message=msg)

