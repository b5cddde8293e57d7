"""A stand-in for the controller's admin API, over in-memory dicts, for the CLI tests.

It runs a real gRPC server (sync, thread pool) on a Unix socket.  Tests arrange
its state directly and can script what successive GetVolume / GetNode calls
return, to drive the CLI's wait and watch loops.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import grpc

from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from meshblock.proto.meshblock.v1 import admin_pb2_grpc as pb_grpc

GiB = 1 << 30


class FakeController:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.volumes: dict[str, pb.Volume] = {}
        self.snapshots: dict[str, pb.Snapshot] = {}
        self.nodes: dict[str, pb.Node] = {}
        self.paths: dict[str, list[pb.Path]] = {}
        self.chap_secrets: dict[str, str] = {}
        # volume name -> updates applied one per GetVolume call (dicts of fields, or callables)
        self.volume_script: dict[str, list[dict[str, Any] | Callable[[pb.Volume], None]]] = defaultdict(list)
        self.page_size = 2
        self.initial_state = "creating"
        self.calls: list[tuple[str, Any]] = []
        self.metrics_endpoints: list[pb.MetricsEndpoint] = []
        self._seq = 0

    # -- helpers for tests ---------------------------------------------------------------------------------

    def next_id(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}-{self._seq:04d}"

    def add_volume(self, name: str, size: int = GiB, state: str = "available", **fields: Any) -> pb.Volume:
        v = pb.Volume(id=self.next_id("vol"), name=name, size_bytes=size, state=state,
                      replicas=fields.pop("replicas", 1), nqn=f"nqn.2024-01.io.meshblock:vol:{name}",
                      created_at=time.time() - 300, **fields)
        self.volumes[v.id] = v
        return v

    def add_node(self, name: str, **fields: Any) -> pb.Node:
        n = pb.Node(id=f"id-{name}", name=name, state=fields.pop("state", "up"), last_seen=time.time() - 2,
                    **fields)
        self.nodes[n.id] = n
        return n

    def count(self, method: str) -> int:
        return sum(1 for m, _ in self.calls if m == method)

    def requests(self, method: str) -> list[Any]:
        return [r for m, r in self.calls if m == method]

    def volume(self, ref: str) -> pb.Volume | None:
        for v in self.volumes.values():
            if ref in (v.id, v.name):
                return v
        return None

    def snapshot(self, ref: str) -> pb.Snapshot | None:
        for s in self.snapshots.values():
            if ref in (s.id, s.name):
                return s
        return None

    def node(self, ref: str) -> pb.Node | None:
        for n in self.nodes.values():
            if ref in (n.id, n.name):
                return n
        return None


def _page(items: list[Any], token: str, size: int) -> tuple[list[Any], str]:
    start = int(token or 0)
    end = start + size
    return items[start:end], (str(end) if end < len(items) else "")


class VolumeServicer(pb_grpc.VolumeServiceServicer):
    def __init__(self, fc: FakeController) -> None:
        self.fc = fc

    def _log(self, method: str, request: Any) -> None:
        self.fc.calls.append((method, request))

    def _find(self, ref: str, context: grpc.ServicerContext) -> pb.Volume:
        v = self.fc.volume(ref)
        if v is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f'volume "{ref}" not found')
        return v

    def CreateVolume(self, request, context):
        self._log("CreateVolume", request)
        with self.fc.lock:
            existing = self.fc.volume(request.name)
            if existing is not None:
                if existing.size_bytes != request.size_bytes:
                    context.abort(grpc.StatusCode.ALREADY_EXISTS,
                                  f'volume "{request.name}" exists with different parameters')
                return existing
            v = self.fc.add_volume(request.name, request.size_bytes, state=self.fc.initial_state,
                                   replicas=request.replicas or 1, spread=request.spread,
                                   labels=dict(request.labels))
            v.created_at = time.time()
            v.qos.CopyFrom(request.qos)
            if request.protocol == "iscsi":
                v.protocol, v.nqn = "iscsi", ""
                v.target_iqn = f"iqn.2026-11.io.meshblock:volume:{v.id}"
                v.chap_user = request.iscsi.chap_user
                v.iscsi_netmasks.extend(request.iscsi.netmasks)
                self.fc.chap_secrets[v.name] = request.iscsi.chap_secret
            return v

    def SetVolumeQos(self, request, context):
        self._log("SetVolumeQos", request)
        with self.fc.lock:
            v = self._find(request.ref, context)
            for f in ("max_iops", "max_mbps", "max_read_mbps", "max_write_mbps"):
                if request.HasField(f):
                    setattr(v.qos, f, getattr(request, f))
            return v

    def GetVolume(self, request, context):
        self._log("GetVolume", request)
        with self.fc.lock:
            v = self._find(request.ref, context)
            script = self.fc.volume_script.get(v.name)
            if script:
                step = script.pop(0)
                if callable(step):
                    step(v)
                else:
                    for k, val in step.items():
                        if k == "replica_status":
                            del v.replica_status[:]
                            v.replica_status.extend(val)
                        else:
                            setattr(v, k, val)
            return v

    def ListVolumes(self, request, context):
        self._log("ListVolumes", request)
        items = sorted(self.fc.volumes.values(), key=lambda v: v.name)
        if request.label_selector:
            selector = request.label_selector
            items = [v for v in items if all(v.labels.get(k) == val for k, val in selector.items())]
        if request.state:
            items = [v for v in items if v.state == request.state]
        if request.node_id:
            items = [v for v in items if any(r.node_id == request.node_id for r in v.replica_status)]
        page, token = _page(items, request.page_token, request.page_size or self.fc.page_size)
        return pb.ListVolumesReply(volumes=page, next_page_token=token)

    def DeleteVolume(self, request, context):
        self._log("DeleteVolume", request)
        v = self.fc.volume(request.ref)
        if v is None:
            return pb.DeleteVolumeReply(existed=False)
        del self.fc.volumes[v.id]
        return pb.DeleteVolumeReply(existed=True)

    def ResizeVolume(self, request, context):
        self._log("ResizeVolume", request)
        v = self._find(request.ref, context)
        if request.size_bytes < v.size_bytes:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "volumes only grow")
        v.size_bytes = request.size_bytes
        return v

    def PublishVolume(self, request, context):
        self._log("PublishVolume", request)
        v = self._find(request.ref, context)
        host = request.initiator_iqn or request.host_nqn
        if host not in v.hosts:
            v.hosts.append(host)
        return v

    def UnpublishVolume(self, request, context):
        self._log("UnpublishVolume", request)
        v = self._find(request.ref, context)
        hosts = [h for h in v.hosts if h != (request.initiator_iqn or request.host_nqn)]
        del v.hosts[:]
        v.hosts.extend(hosts)
        return v

    def GetConnectInfo(self, request, context):
        self._log("GetConnectInfo", request)
        v = self._find(request.ref, context)
        host = request.initiator_iqn or request.host_nqn
        if host not in v.hosts:
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          f'host {host} is not allowed on volume "{v.name}"; publish it first')
        if v.protocol == "iscsi":
            return pb.ConnectInfo(protocol="iscsi", target_iqn=v.target_iqn, initiator_iqn=host,
                                  chap_user=v.chap_user, paths=self.fc.paths.get(v.name, []),
                                  namespace_uuid=v.namespace_uuid, size_bytes=v.size_bytes)
        return pb.ConnectInfo(protocol="nvmf", subnqn=v.nqn, host_nqn=request.host_nqn,
                              paths=self.fc.paths.get(v.name, []),
                              namespace_uuid=v.namespace_uuid, size_bytes=v.size_bytes)

    def CreateSnapshot(self, request, context):
        self._log("CreateSnapshot", request)
        v = self._find(request.volume_ref, context)
        s = pb.Snapshot(id=self.fc.next_id("snap"), name=request.name, volume_id=v.id,
                        size_bytes=v.size_bytes, state="ready", created_at=time.time())
        self.fc.snapshots[s.id] = s
        return s

    def GetSnapshot(self, request, context):
        self._log("GetSnapshot", request)
        s = self.fc.snapshot(request.ref)
        if s is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f'snapshot "{request.ref}" not found')
        return s

    def ListSnapshots(self, request, context):
        self._log("ListSnapshots", request)
        items = sorted(self.fc.snapshots.values(), key=lambda s: s.name)
        if request.volume_ref:
            v = self._find(request.volume_ref, context)
            items = [s for s in items if s.volume_id == v.id]
        page, token = _page(items, request.page_token, request.page_size or self.fc.page_size)
        return pb.ListSnapshotsReply(snapshots=page, next_page_token=token)

    def DeleteSnapshot(self, request, context):
        self._log("DeleteSnapshot", request)
        s = self.fc.snapshot(request.ref)
        if s is None:
            return pb.DeleteSnapshotReply(existed=False)
        del self.fc.snapshots[s.id]
        return pb.DeleteSnapshotReply(existed=True)

    def CloneVolume(self, request, context):
        self._log("CloneVolume", request)
        if request.source_snapshot_ref:
            s = self.fc.snapshot(request.source_snapshot_ref)
            if s is None:
                context.abort(grpc.StatusCode.NOT_FOUND,
                              f'snapshot "{request.source_snapshot_ref}" not found')
            size, src = s.size_bytes, {"source_snapshot_id": s.id}
        else:
            src_v = self._find(request.source_volume_ref, context)
            size, src = src_v.size_bytes, {"source_volume_id": src_v.id}
        v = self.fc.add_volume(request.name, max(size, request.size_bytes), state=self.fc.initial_state,
                               labels=dict(request.labels), **src)
        return v


class NodeServicer(pb_grpc.NodeServiceServicer):
    def __init__(self, fc: FakeController) -> None:
        self.fc = fc

    def _find(self, ref: str, context: grpc.ServicerContext) -> pb.Node:
        n = self.fc.node(ref)
        if n is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f'node "{ref}" not found')
        return n

    def ListNodes(self, request, context):
        self.fc.calls.append(("ListNodes", request))
        return pb.ListNodesReply(nodes=sorted(self.fc.nodes.values(), key=lambda n: n.name))

    def GetNode(self, request, context):
        self.fc.calls.append(("GetNode", request))
        n = self._find(request.ref, context)
        if n.draining and not n.drain.done:  # one replica moves per look
            n.drain.replicas_moved += 1
            n.replica_count -= 1
            if n.drain.replicas_moved >= n.drain.replicas_total:
                n.drain.done = True
        return n

    def CordonNode(self, request, context):
        self.fc.calls.append(("CordonNode", request))
        n = self._find(request.ref, context)
        n.cordoned = True
        return n

    def UncordonNode(self, request, context):
        self.fc.calls.append(("UncordonNode", request))
        n = self._find(request.ref, context)
        n.cordoned = False
        n.draining = False
        return n

    def DrainNode(self, request, context):
        self.fc.calls.append(("DrainNode", request))
        n = self._find(request.ref, context)
        n.cordoned = True
        n.draining = True
        n.drain.CopyFrom(pb.DrainProgress(replicas_total=n.replica_count, replicas_moved=0,
                                          done=n.replica_count == 0))
        return n


class ClusterServicer(pb_grpc.ClusterServiceServicer):
    def __init__(self, fc: FakeController) -> None:
        self.fc = fc

    def GetClusterStatus(self, request, context):
        self.fc.calls.append(("GetClusterStatus", request))
        nodes = list(self.fc.nodes.values())
        by_state: dict[str, int] = defaultdict(int)
        for v in self.fc.volumes.values():
            by_state[v.state] += 1
        return pb.ClusterStatus(
            nodes_up=sum(1 for n in nodes if n.state == "up"),
            nodes_down=sum(1 for n in nodes if n.state != "up"),
            total_bytes=sum(n.total_bytes for n in nodes), free_bytes=sum(n.free_bytes for n in nodes),
            provisioned_bytes=sum(n.provisioned_bytes for n in nodes), overcommit_ratio=2.0,
            volumes_by_state=dict(by_state), leader="controller-0", metrics_endpoints=self.fc.metrics_endpoints)


class Server:
    """The fake controller served on ``unix:<dir>/controller.sock``."""

    def __init__(self, directory: Path | None = None) -> None:
        self._own_dir = directory is None
        self.dir = Path(directory or tempfile.mkdtemp(prefix="mbcli-", dir="/tmp"))
        self.socket = self.dir / "controller.sock"
        self.endpoint = f"unix:{self.socket}"
        self.fc = FakeController()
        self._server = grpc.server(ThreadPoolExecutor(max_workers=4))
        pb_grpc.add_VolumeServiceServicer_to_server(VolumeServicer(self.fc), self._server)
        pb_grpc.add_NodeServiceServicer_to_server(NodeServicer(self.fc), self._server)
        pb_grpc.add_ClusterServiceServicer_to_server(ClusterServicer(self.fc), self._server)
        self._server.add_insecure_port(self.endpoint)

    def start(self) -> Server:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(0).wait(5)
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            self.socket.unlink(missing_ok=True)
