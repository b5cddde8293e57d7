"""Registering the node with the controller and sending heartbeats."""

from __future__ import annotations

import asyncio
import logging
import uuid

import grpc

from ..grpcutil import client_tls
from ..proto.meshblock.v1 import admin_pb2 as pb
from ..proto.meshblock.v1 import admin_pb2_grpc as pb_grpc
from .node import NodeAgent

log = logging.getLogger(__name__)


async def _capacity(agent: NodeAgent) -> tuple[int, int, bool]:
    try:
        info = await agent.pool.info()
        return info.total_bytes, info.free_bytes, True
    except Exception:  # noqa: BLE001 - an unhealthy node still heartbeats, as unhealthy
        return 0, 0, False


async def register_forever(agent: NodeAgent, endpoints: list[str], stop: asyncio.Event) -> None:
    """Register with whichever controller answers, then heartbeat; re-register when told to."""
    instance = str(uuid.uuid4())
    cfg = agent.config
    i = 0
    while not stop.is_set():
        endpoint = endpoints[i % len(endpoints)]
        i += 1
        try:
            creds = None if endpoint.startswith("unix:") or not cfg.tls_cert else \
                client_tls(cfg.tls_ca, cfg.tls_cert, cfg.tls_key)
            channel = grpc.aio.secure_channel(endpoint, creds) if creds else grpc.aio.insecure_channel(endpoint)
            async with channel as ch:
                stub = pb_grpc.NodeRegistryStub(ch)
                total, free, healthy = await _capacity(agent)
                reply = await stub.Register(pb.RegisterRequest(
                    node_id=agent.node_id, name=cfg.name, endpoint=cfg.advertise, host_nqn=cfg.host_nqn,
                    nvmf_address=cfg.nvmf_address, nvmf_port=cfg.nvmf_port, labels=cfg.labels, total_bytes=total,
                    free_bytes=free, instance_id=instance), timeout=10)
                interval = max(reply.heartbeat_interval_ms, 100) / 1000
                log.info("registered with controller %s", endpoint)
                while not stop.is_set():
                    total, free, healthy = await _capacity(agent)
                    healthy = healthy and (await agent.health())["healthy"]
                    hb = await stub.Heartbeat(pb.HeartbeatRequest(node_id=agent.node_id, total_bytes=total,
                                                                  free_bytes=free, healthy=healthy,
                                                                  instance_id=instance), timeout=5)
                    if not hb.known:
                        log.info("controller %s does not know this agent instance; registering again", endpoint)
                        break
                    try:
                        await asyncio.wait_for(stop.wait(), interval)
                    except asyncio.TimeoutError:
                        pass
        except grpc.aio.AioRpcError as e:
            log.debug("controller %s: %s: %s", endpoint, e.code().name, e.details())
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except asyncio.TimeoutError:
                pass
