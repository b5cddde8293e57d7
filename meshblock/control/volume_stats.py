"""GetVolumeStats: the I/O counters of volumes, as their heads' SPDK targets report them.

A read on the side of the reconciler: one GetVolumeIostat per head node, all at once, each bounded
by a short timeout, so a slow or unreachable node costs the caller that timeout and no more; its
volumes are named in the reply's ``unreachable``. Nothing is written to the store.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import grpc

from ..errors import Unavailable
from ..model import Volume
from ..model.tenancy import tenant_of
from ..proto.meshblock.v1 import admin_pb2 as pb
from ..proto.meshblock.v1 import agent_pb2 as apb
from ..util import all_of
from . import auth

if TYPE_CHECKING:
    from .volumes import VolumeManager

log = logging.getLogger(__name__)

CALL_TIMEOUT = 5.0
PAGE = 500


async def visible_volumes(mgr: VolumeManager, refs: list[str]) -> list[Volume]:
    """The volumes ``refs`` names (each must exist for the caller), or every volume the caller sees."""
    if refs:
        return [await mgr.require(r) for r in dict.fromkeys(refs)]
    caller = auth.current()
    out: list[Volume] = []
    cursor = None
    while True:
        batch = await mgr.volumes_after(cursor, PAGE)
        out += [v for v in batch if caller.sees(v.tenant)]
        if len(batch) < PAGE:
            return out
        cursor = batch[-1].name


async def volume_stats(mgr: VolumeManager, refs: list[str], timeout: float = CALL_TIMEOUT) -> pb.GetVolumeStatsReply:
    volumes = await visible_volumes(mgr, refs)
    nodes = await mgr.nodes()
    by_node: dict[str, list[Volume]] = {}
    unreachable: list[str] = []
    for v in volumes:
        if v.head_node_id in nodes:
            by_node.setdefault(v.head_node_id, []).append(v)
        elif v.head_node_id:
            unreachable.append(v.name)
        # a volume with no head yet has done no I/O to report

    async def ask(node_id: str) -> apb.GetVolumeIostatReply | None:
        node = nodes[node_id]
        try:
            stub = mgr.reconciler.agents.stub(node.endpoint)
            return await stub.GetVolumeIostat(apb.GetVolumeIostatRequest(), timeout=timeout)
        except grpc.aio.AioRpcError as e:
            log.warning("I/O statistics of node %s not read: %s", node.name, e.details())
        except Unavailable as e:
            log.warning("I/O statistics of node %s not read: %s", node.name, e)
        return None

    order = sorted(by_node)
    replies = await all_of(*(ask(n) for n in order))
    out: list[pb.VolumeStats] = []
    for node_id, reply in zip(order, replies):
        mine = by_node[node_id]
        if reply is None:
            unreachable += [v.name for v in mine]
            continue
        got = {s.volume_id: s for s in reply.volumes}
        for v in mine:
            s = got.get(v.id)
            if s is None:
                continue   # the node does not head it (any more), or its raid is not made yet
            out.append(pb.VolumeStats(volume_id=v.id, name=v.name, node_id=node_id, read_ops=s.read_ops,
                                      write_ops=s.write_ops, read_bytes=s.read_bytes, write_bytes=s.write_bytes,
                                      read_latency_seconds=s.read_latency_seconds,
                                      write_latency_seconds=s.write_latency_seconds, sampled_at=s.sampled_at,
                                      tenant=tenant_of(v.tenant)))
    out.sort(key=lambda s: s.name)
    return pb.GetVolumeStatsReply(volumes=out, unreachable=sorted(unreachable))
