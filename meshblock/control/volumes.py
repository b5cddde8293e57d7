"""Volume, snapshot and clone operations: desired-state changes in the store.

This layer validates nothing (the servicer does) and calls no agent (the
reconciler does); it reads and writes records and waits, within bounds, for the
reconciler to act on them.
"""

from __future__ import annotations

import contextlib
import logging
import random
import uuid
from dataclasses import dataclass, field, replace

from .. import iqn, nqn
from ..faults import crash_point
from ..errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from ..model import (GroupSnapshot, GroupSnapshotState, Node, NodeState, Replica, ReplicaState, Snapshot,
                     SnapshotState, Volume, VolumeState)
from ..model.records import now
from ..qos import QosLimits
from ..store.base import Conflict, NameTaken
from ..secretbox import SecretBox
from . import auth, host_auth
from .liveness import Liveness
from ..replication.erasure import SHARD_BLOCK_BYTES, Layout
from .placement import Candidate, PlacementError, place
from .reconciler import INTERNAL_SNAPSHOT_PREFIX, Reconciler, volume_key
from .repo import Repo

log = logging.getLogger(__name__)

CLUSTER_GRANULARITY = 4 << 20      # volumes are sized in whole pool clusters
# a new volume's replicas are placed among this many nodes drawn at random, not among all of them:
# scoring every node of a 1,000-node cluster took most of a create's time, and the best of a
# random hundred is, in a large cluster, nearly as good (large schedulers bound their scoring so);
# when the sample cannot hold the volume, every node is considered
PLACEMENT_SAMPLE = 100


@dataclass
class VolumeSpec:
    name: str
    size_bytes: int
    replicas: int
    spread: str
    labels: dict[str, str]
    protocol: str = "nvmf"
    iscsi_netmasks: list[str] = field(default_factory=list)
    chap_user: str = ""
    chap_secret: str = ""
    erasure: Layout | None = None      # erasure-coded: ``replicas`` is then its k+m shard count
    qos: QosLimits = QosLimits()
    tenant: str = ""                   # the owner ("": the default tenant)
    tls: bool = False                  # NVMe/TCP over TLS only, a PSK per host


def not_erasure_coded(v: Volume, what: str) -> None:
    """Operations erasure-coded volumes do not have (docs/erasure-coding.md says why)."""
    if v.ec_data:
        raise FailedPrecondition(f"volume {v.name!r} is erasure-coded ({v.erasure}) and cannot {what}")


class VolumeManager:
    def __init__(self, repo: Repo, liveness: Liveness, reconciler: Reconciler, *, overcommit: float = 4.0,
                 wait_timeout: float = 30.0):
        self.repo = repo
        self.liveness = liveness
        self.reconciler = reconciler
        self.overcommit = overcommit
        self.wait_timeout = wait_timeout
        self.quotas = None                 # tenants.Quotas: admits changes against tenants' quotas
        self.secrets: SecretBox | None = None   # seals hosts' DH-HMAC-CHAP secrets

    def _admit(self, new: Volume, old: Volume | None = None):
        return self.quotas.admit(new, old) if self.quotas is not None else contextlib.nullcontext()

    # --- lookups -------------------------------------------------------------------------------
    async def find(self, ref: str) -> Volume | None:
        v = await self.repo.by_name(Volume, ref)
        if v is None:
            try:
                v = await self.repo.get(Volume, str(uuid.UUID(ref)))
            except ValueError:
                v = None
        return v if v is None or auth.current().sees(v.tenant) else None   # others' volumes do not exist

    async def require(self, ref: str) -> Volume:
        v = await self.find(ref)
        if v is None:
            raise NotFound(f"volume {ref!r} not found")
        return v

    @property
    def view(self):
        """The reconciler's view of the store once it has loaded (None before)."""
        view = self.reconciler.view
        return view if view is not None and view.ready.is_set() else None

    async def replicas_of(self, volume_id: str) -> list[Replica]:
        if self.view is not None:
            return self.view.replicas_of(volume_id)
        return [r for r in await self.repo.list(Replica) if r.volume_id == volume_id]

    async def volumes_after(self, name: str | None, limit: int) -> list[Volume]:
        """A page of volumes in name order, after ``name``."""
        if self.view is not None:
            return self.view.volumes_after(name, limit)
        return await self.repo.list(Volume, start_after=name, limit=limit, index="name")

    async def replicas_on(self, node_id: str) -> list[Replica]:
        if self.view is not None:
            return self.view.replicas_on(node_id)
        return [r for r in await self.repo.list(Replica) if r.node_id == node_id]

    def volume_of(self, volume_id: str) -> Volume | None:
        return self.view.get(Volume, volume_id) if self.view is not None else None

    async def totals(self) -> tuple[dict[str, int], int]:
        """Volumes by state, and the bytes all replicas provision."""
        if self.view is not None:
            return dict(self.view.volume_states), sum(self.view.provisioned.values())
        by_state: dict[str, int] = {}
        for v in await self.repo.list(Volume):
            by_state[v.state.value] = by_state.get(v.state.value, 0) + 1
        return by_state, sum(r.size_bytes for r in await self.repo.list(Replica))

    async def nodes(self) -> dict[str, Node]:
        """Every node by id (read-only)."""
        if self.view is not None:
            return self.view.nodes()
        return {n.id: n for n in await self.repo.list(Node)}

    async def candidates(self, sample: int = 0) -> tuple[list[Candidate], dict[str, Node]]:
        """Placement candidates: every node, or ``sample`` of them drawn at random."""
        nodes = await self.nodes()
        chosen = nodes.values()
        if sample and len(nodes) > sample:
            chosen = [nodes[i] for i in random.sample(list(nodes), sample)]
        if self.view is not None:
            provisioned: dict[str, int] = dict(self.view.provisioned)
        else:
            provisioned = {}
            for r in await self.repo.list(Replica):
                provisioned[r.node_id] = provisioned.get(r.node_id, 0) + r.size_bytes
        return [Candidate(node_id=n.id, name=n.name, up=n.state == NodeState.UP and self.liveness.is_up(n.id),
                          schedulable=not (n.cordoned or n.draining), labels=n.labels, total_bytes=n.total_bytes,
                          provisioned_bytes=provisioned.get(n.id, 0), block_size=n.pool_block_size)
                for n in chosen], nodes

    async def _snapshots_of(self, volume_id: str) -> list[Snapshot]:
        if self.view is not None:
            return self.view.snapshots_of(volume_id)
        return [s for s in await self.repo.list(Snapshot) if s.volume_id == volume_id]

    # --- create --------------------------------------------------------------------------------
    def _same(self, v: Volume, spec: VolumeSpec) -> bool:
        return ((v.size_bytes, v.replicas, v.spread, v.labels, v.protocol, v.iscsi_netmasks, v.chap_user,
                 v.chap_secret, v.erasure, v.qos, v.tls) == (spec.size_bytes, spec.replicas, spec.spread, spec.labels,
                                                             spec.protocol, spec.iscsi_netmasks, spec.chap_user,
                                                             spec.chap_secret, spec.erasure, spec.qos, spec.tls))

    async def create(self, spec: VolumeSpec, *, source: Snapshot | None = None) -> Volume:
        existing = await self.repo.by_name(Volume, spec.name)
        if existing is not None:
            if existing.tenant != spec.tenant:
                raise AlreadyExists(f"the volume name {spec.name!r} is taken")
            if not self._same(existing, spec) or (source and existing.source_snapshot_id != source.id):
                raise AlreadyExists(f"volume {spec.name!r} exists with different parameters (size "
                                    f"{existing.size_bytes}, replicas {existing.replicas}, spread {existing.spread!r}, "
                                    f"protocol {existing.protocol}, erasure {existing.erasure or 'none'}, "
                                    f"qos {existing.qos.describe()})")
            return existing
        vid = str(uuid.uuid4())
        ec = spec.erasure
        each = ec.shard_bytes(spec.size_bytes) if ec else spec.size_bytes
        if source is not None:
            # a clone lives where its snapshot is: lvol clones share the snapshot's blocks; a replicated
            # clone gets its other replicas from the reconciler, rebuilt from this one
            node_ids = list(source.parts)[:1]
            if not node_ids:
                raise FailedPrecondition(f"snapshot {source.name!r} is not ready")
        else:
            def placed(cands: list[Candidate]) -> list[str]:
                return place(each, spec.replicas, cands, spread=spec.spread, overcommit=self.overcommit,
                             block_size=SHARD_BLOCK_BYTES if ec else 0).node_ids
            cands, nodes = await self.candidates(sample=PLACEMENT_SAMPLE)
            try:
                node_ids = placed(cands)
            except PlacementError:
                if len(cands) == len(nodes):
                    raise
                node_ids = placed((await self.candidates())[0])
        v = Volume(id=vid, name=spec.name, size_bytes=spec.size_bytes, replicas=spec.replicas, spread=spec.spread,
                   labels=spec.labels, state=VolumeState.CREATING, stage="placed",
                   nqn=nqn("volume", vid) if spec.protocol == "nvmf" else "",
                   namespace_uuid=vid, created_at=now(), source_snapshot_id=source.id if source else "",
                   source_volume_id=source.volume_id if source else "", protocol=spec.protocol,
                   target_iqn=iqn("volume", vid) if spec.protocol == "iscsi" else "",
                   iscsi_netmasks=list(spec.iscsi_netmasks), chap_user=spec.chap_user, chap_secret=spec.chap_secret,
                   ec_data=ec.data if ec else 0, ec_parity=ec.parity if ec else 0, tenant=spec.tenant,
                   tls=spec.tls)
        v.set_qos(spec.qos)
        reps = [Replica(id=str(uuid.uuid4()), volume_id=vid, node_id=n, size_bytes=each,
                        state=ReplicaState.CREATING, created_at=now(), shard=i if ec else -1,
                        source_snapshot_replica=source.id if source else "") for i, n in enumerate(node_ids)]
        crash_point("create.placed")
        try:
            async with self._admit(v):
                await self.repo.commit(create=[v, *reps])
        except NameTaken:
            return await self.create(spec, source=source)   # lost a race with the same name: compare again
        crash_point("create.recorded")
        log.info("volume created name=%s volume_id=%s size=%d replicas=%d erasure=%s protocol=%s qos=%s nodes=%s",
                 v.name, v.id, v.size_bytes, v.replicas, ec or "none", v.protocol, v.qos.describe(),
                 ",".join(node_ids))
        self.reconciler.kick()
        return v

    async def wait_ready(self, v: Volume, timeout: float | None = None) -> Volume:
        """Wait (bounded) until the reconciler has applied the volume's current generation."""
        gen = v.generation

        async def done() -> bool:
            cur = await self.repo.get(Volume, v.id)
            return cur is None or self.reconciler.synced.get(v.id, 0) >= gen or cur.state == VolumeState.FAULTED

        await self.reconciler.wait_for(done, self.wait_timeout if timeout is None else timeout, volume_key(v.id))
        return await self.repo.get(Volume, v.id) or v

    # --- changes -------------------------------------------------------------------------------
    async def _update(self, ref: str, change) -> Volume:
        for _ in range(20):
            v = await self.require(ref)
            if v.state == VolumeState.DELETING:
                raise FailedPrecondition(f"volume {v.name!r} is being deleted")
            # a change this controller could not apply (its heads need secrets it cannot open) is
            # refused at once rather than waited for
            host_auth.check_opens(v, self.secrets)
            old = replace(v)
            if not change(v):
                return v
            v.generation += 1
            try:
                async with self._admit(v, old):
                    await self.repo.commit(put=[v])
            except Conflict:
                continue
            self.reconciler.kick()
            return v
        raise FailedPrecondition(f"volume {ref!r} kept changing; try again")

    async def delete(self, ref: str) -> bool:
        for _ in range(20):
            v = await self.find(ref)
            if v is None:
                return False
            if v.state != VolumeState.DELETING:
                clones = [s for s in await self._snapshots_of(v.id)
                          if not s.name.startswith(INTERNAL_SNAPSHOT_PREFIX)]
                if clones:
                    raise FailedPrecondition(f"volume {v.name!r} has {len(clones)} snapshot(s); delete them first")
                v.move_to(VolumeState.DELETING)
                v.stage = "deleting"
                try:
                    await self.repo.commit(put=[v])
                except Conflict:
                    continue
                crash_point("delete.recorded")
                log.info("volume delete requested name=%s volume_id=%s", v.name, v.id)
            self.reconciler.kick()

            async def gone() -> bool:
                return await self.repo.get(Volume, v.id) is None

            await self.reconciler.wait_for(gone, self.wait_timeout, volume_key(v.id))
            return True
        raise FailedPrecondition(f"volume {ref!r} kept changing; try again")

    async def resize(self, ref: str, size_bytes: int) -> Volume:
        def grow(v: Volume) -> bool:
            not_erasure_coded(v, "grow")
            if size_bytes < v.size_bytes:
                raise InvalidArgument("size_bytes", f"{size_bytes} is smaller than the volume ({v.size_bytes}); "
                                                    "volumes only grow")
            if size_bytes == v.size_bytes:
                return False
            v.size_bytes = size_bytes
            return True
        return await self.wait_ready(await self._update(ref, grow))

    async def set_replicas(self, ref: str, count: int) -> Volume:
        def change(v: Volume) -> bool:
            not_erasure_coded(v, "change its replica count (its layout is fixed at creation)")
            if v.replicas == 1:
                raise FailedPrecondition(f"volume {v.name!r} has one replica, exported straight from its node; "
                                         "the replica count of single-replica volumes cannot change online")
            if v.replicas == count:
                return False
            v.replicas = count
            return True
        return await self._update(ref, change)

    async def set_qos(self, ref: str, limits: dict[str, int]) -> Volume:
        """Change the QoS limits named in ``limits`` (the others stay); waits until the head, and the
        standby heads with it, enforce them."""
        def change(v: Volume) -> bool:
            new = replace(v.qos, **limits)
            if new == v.qos:
                return False
            log.info("volume qos name=%s volume_id=%s %s -> %s", v.name, v.id, v.qos.describe(), new.describe())
            v.set_qos(new)
            return True
        return await self.wait_ready(await self._update(ref, change))

    async def publish(self, ref: str, host: str, read_only: bool = False, *, dhchap: bool = False,
                      dhchap_bidirectional: bool = False, rotate_dhchap: bool = False) -> Volume:
        def add(v: Volume) -> bool:
            keys = host_auth.grant(v, host, self.secrets, dhchap=dhchap, bidirectional=dhchap_bidirectional,
                                   rotate=rotate_dhchap)
            keys = host_auth.grant_psk(v, host, self.secrets) or keys
            if host in v.hosts:
                if (host in v.read_only_hosts) != read_only:
                    raise AlreadyExists(f"volume {v.name!r} is published to {host} "
                                        f"{'read-only' if host in v.read_only_hosts else 'read-write'}; "
                                        "unpublish it first to change that")
                return keys
            v.hosts = sorted(set(v.hosts) | {host})
            if read_only:
                v.read_only_hosts = sorted(set(v.read_only_hosts) | {host})
            return True
        return await self.wait_ready(await self._update(ref, add))

    async def unpublish(self, ref: str, host: str) -> Volume:
        def remove(v: Volume) -> bool:
            if host not in v.hosts:
                return False
            v.hosts = [h for h in v.hosts if h != host]
            v.read_only_hosts = [h for h in v.read_only_hosts if h != host]
            host_auth.revoke(v, host)
            return True
        return await self.wait_ready(await self._update(ref, remove))

    # --- snapshots -----------------------------------------------------------------------------
    async def find_snapshot(self, ref: str) -> Snapshot | None:
        s = await self.repo.by_name(Snapshot, ref)
        if s is None:
            try:
                s = await self.repo.get(Snapshot, str(uuid.UUID(ref)))
            except ValueError:
                s = None
        return s if s is None or auth.current().sees(s.tenant) else None

    async def create_snapshot(self, volume_ref: str, name: str) -> Snapshot:
        v = await self.require(volume_ref)
        existing = await self.repo.by_name(Snapshot, name)
        if existing is not None:
            if existing.tenant != v.tenant:
                raise AlreadyExists(f"the snapshot name {name!r} is taken")
            if existing.volume_id != v.id:
                raise AlreadyExists(f"snapshot {name!r} exists for another volume")
            return existing
        not_erasure_coded(v, "be snapshotted")
        if v.state not in (VolumeState.AVAILABLE, VolumeState.DEGRADED):
            raise FailedPrecondition(f"volume {v.name!r} is {v.state.value}; snapshots need a serving volume")
        s = Snapshot(id=str(uuid.uuid4()), name=name, volume_id=v.id, size_bytes=v.size_bytes,
                     state=SnapshotState.CREATING, created_at=now(), tenant=v.tenant)
        try:
            await self.repo.commit(create=[s], check=[v])
        except NameTaken:
            return await self.create_snapshot(volume_ref, name)
        except Conflict:
            return await self.create_snapshot(volume_ref, name)
        self.reconciler.kick()

        async def ready() -> bool:
            cur = await self.repo.get(Snapshot, s.id)
            return cur is None or cur.state != SnapshotState.CREATING

        await self.reconciler.wait_for(ready, self.wait_timeout)
        return await self.repo.get(Snapshot, s.id) or s

    async def delete_snapshot(self, ref: str) -> bool:
        s = await self.find_snapshot(ref)
        if s is None:
            return False
        if s.group_id:
            g = await self.repo.get(GroupSnapshot, s.group_id)
            if g is not None:
                raise FailedPrecondition(f"snapshot {s.name!r} belongs to group snapshot {g.name!r}; "
                                         "delete the group snapshot")
        users = [v for v in await self.repo.list(Volume) if v.source_snapshot_id == s.id]
        if users:
            raise FailedPrecondition(f"snapshot {s.name!r} has {len(users)} clone volume(s) "
                                     f"({', '.join(sorted(u.name for u in users))}); delete them first")
        if s.state != SnapshotState.DELETING:
            s.state = SnapshotState.DELETING
            await self.repo.commit(put=[s])
        self.reconciler.kick()

        async def gone() -> bool:
            return await self.repo.get(Snapshot, s.id) is None

        await self.reconciler.wait_for(gone, self.wait_timeout)
        return True

    # --- group snapshots -----------------------------------------------------------------------
    async def find_group_snapshot(self, ref: str) -> GroupSnapshot | None:
        g = await self.repo.by_name(GroupSnapshot, ref)
        if g is None:
            try:
                g = await self.repo.get(GroupSnapshot, str(uuid.UUID(ref)))
            except ValueError:
                g = None
        return g if g is None or auth.current().sees(g.tenant) else None

    async def group_members(self, g: GroupSnapshot) -> list[Snapshot]:
        out = []
        for sid in g.snapshot_ids:
            s = await self.repo.get(Snapshot, sid)
            if s is not None:
                out.append(s)
        return out

    async def create_group_snapshot(self, name: str, volume_refs: list[str]) -> GroupSnapshot:
        """Snapshots of ``volume_refs`` at one instant (see control/groups.py); waits until taken."""
        volumes: list[Volume] = []
        for ref in volume_refs:
            v = await self.require(ref)
            if any(v.id == x.id for x in volumes):
                raise InvalidArgument("volume_refs", f"volume {v.name!r} is given twice")
            volumes.append(v)
        if len({v.tenant for v in volumes}) > 1:
            raise InvalidArgument("volume_refs", "the volumes of a group snapshot belong to one tenant")
        ids = [v.id for v in volumes]
        g = await self.repo.by_name(GroupSnapshot, name)
        if g is not None and g.tenant != volumes[0].tenant:
            raise AlreadyExists(f"the group snapshot name {name!r} is taken")
        if g is not None and g.state == GroupSnapshotState.DELETING:
            gid_ = g.id

            async def deleted() -> bool:
                return await self.repo.get(GroupSnapshot, gid_) is None

            if not await self.reconciler.wait_for(deleted, self.wait_timeout):
                raise FailedPrecondition(f"group snapshot {name!r} is being deleted; try again shortly")
            g = None
        if g is not None:
            if sorted(g.volume_ids) != sorted(ids):
                raise AlreadyExists(f"group snapshot {name!r} exists with other volumes")
            if g.state == GroupSnapshotState.FAILED:   # asked again: try again
                g.state, g.message = GroupSnapshotState.CREATING, ""
                await self.repo.commit(put=[g])
        else:
            for v in volumes:
                not_erasure_coded(v, "be snapshotted")
                if v.state not in (VolumeState.AVAILABLE, VolumeState.DEGRADED):
                    raise FailedPrecondition(f"volume {v.name!r} is {v.state.value}; snapshots need a serving volume")
                if v.protocol != "nvmf":
                    raise FailedPrecondition(f"volume {v.name!r} is exported over {v.protocol}: group snapshots "
                                             "hold writes with NVMe ANA states, which iSCSI does not have")
            gid = str(uuid.uuid4())
            members = [Snapshot(id=str(uuid.uuid4()), name=f"{name}.{i + 1:03d}", volume_id=v.id,
                                size_bytes=v.size_bytes, state=SnapshotState.CREATING, created_at=now(), group_id=gid,
                                tenant=v.tenant)
                       for i, v in enumerate(volumes)]
            g = GroupSnapshot(id=gid, name=name, volume_ids=ids, snapshot_ids=[m.id for m in members],
                              state=GroupSnapshotState.CREATING, created_at=now(), tenant=volumes[0].tenant)
            try:
                await self.repo.commit(create=[g, *members], check=volumes)
            except (NameTaken, Conflict):
                if await self.repo.by_name(GroupSnapshot, name) is None:
                    taken = [m.name for m in members if await self.repo.by_name(Snapshot, m.name) is not None]
                    if taken:
                        raise AlreadyExists(f"snapshot name(s) {', '.join(taken)} of the group's members are "
                                            "taken by other snapshots; choose another group name") from None
                return await self.create_group_snapshot(name, volume_refs)
        self.reconciler.kick()

        async def settled() -> bool:
            cur = await self.repo.get(GroupSnapshot, g.id)
            return cur is None or cur.state != GroupSnapshotState.CREATING

        await self.reconciler.wait_for(settled, self.wait_timeout)
        cur = await self.repo.get(GroupSnapshot, g.id) or g
        if cur.state == GroupSnapshotState.FAILED:
            # nothing of it is kept: asking again starts afresh
            cur.state = GroupSnapshotState.DELETING
            try:
                await self.repo.commit(put=[cur])
                self.reconciler.kick()
            except Conflict:
                pass
            raise FailedPrecondition(f"group snapshot {name!r} was not taken: {cur.message}")
        return cur

    async def delete_group_snapshot(self, ref: str) -> bool:
        g = await self.find_group_snapshot(ref)
        if g is None:
            return False
        users = [v for v in await self.repo.list(Volume) if v.source_snapshot_id in g.snapshot_ids]
        if users:
            raise FailedPrecondition(f"group snapshot {g.name!r} has {len(users)} clone volume(s) "
                                     f"({', '.join(sorted(u.name for u in users))}); delete them first")
        if g.state != GroupSnapshotState.DELETING:
            g.state = GroupSnapshotState.DELETING
            await self.repo.commit(put=[g])
        self.reconciler.kick()

        async def gone() -> bool:
            return await self.repo.get(GroupSnapshot, g.id) is None

        await self.reconciler.wait_for(gone, self.wait_timeout)
        return True

    async def clone(self, spec: VolumeSpec, *, snapshot_ref: str = "", volume_ref: str = "") -> Volume:
        existing = await self.repo.by_name(Volume, spec.name)
        if existing is not None and not auth.current().sees(existing.tenant):
            raise AlreadyExists(f"the volume name {spec.name!r} is taken")
        if existing is not None:
            if existing.source_snapshot_id or existing.source_volume_id:
                src = await self.repo.get(Snapshot, existing.source_snapshot_id)
                if src is not None and (src.name == snapshot_ref or src.id == snapshot_ref or
                                        (volume_ref and src.volume_id == (await self.require(volume_ref)).id)):
                    return existing
            raise AlreadyExists(f"volume {spec.name!r} exists and is not that clone")
        if snapshot_ref:
            snap = await self.find_snapshot(snapshot_ref)
            if snap is None:
                raise NotFound(f"snapshot {snapshot_ref!r} not found")
        else:
            src = await self.require(volume_ref)
            snap = await self.create_snapshot(src.id, INTERNAL_SNAPSHOT_PREFIX + spec.name)
        if snap.state != SnapshotState.READY:
            raise FailedPrecondition(f"snapshot {snap.name!r} is {snap.state.value}")
        if spec.size_bytes < snap.size_bytes:
            spec.size_bytes = snap.size_bytes
        spec.tenant = snap.tenant            # a clone belongs with its source
        source_volume = await self.repo.get(Volume, snap.volume_id)
        spec.tls = spec.tls or bool(source_volume and source_volume.tls)   # and its data stays off clear text
        v = await self.create(spec, source=snap)
        return await self.wait_ready(v)
