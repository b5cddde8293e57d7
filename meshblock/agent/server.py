"""Runs a node agent until SIGTERM/SIGINT: its SPDK target(s), its gRPC API, its metrics."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from prometheus_client import REGISTRY, Gauge

from ..grpcutil import make_server, server_tls
from ..proto.meshblock.v1 import agent_pb2_grpc
from ..spdk import find_spdk
from ..util import metrics_url
from .config import AgentConfig
from .iostat import VolumeIoCollector
from .node import NodeAgent
from .readiness import Readiness, serve_http
from .registration import register_forever
from .service import SERVICE, AgentServicer

log = logging.getLogger(__name__)

TARGET_UP = Gauge("meshblock_agent_target_up", "1 while the node's SPDK target answers")
TARGET_RESTARTS = Gauge("meshblock_agent_target_restarts", "SPDK target restarts since the agent started")


async def run_agent(config: AgentConfig, *, metrics_port: int = 0, metrics_address: str = "127.0.0.1",
                    stop: asyncio.Event | None = None) -> None:
    install = None if config.spdk_external else find_spdk()
    agent = NodeAgent(config, install)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    pid_file = config.data_dir / "agent.pid"
    pid_file.write_text(f"{os.getpid()}\n")
    await agent.start()
    tls = server_tls(config.tls_cert, config.tls_key, config.tls_ca) if config.tls_cert else None
    server, _health = await make_server(
        config.listen, lambda s: agent_pb2_grpc.add_AgentServiceServicer_to_server(AgentServicer(agent), s),
        [SERVICE], tls=tls)
    collector = httpd = None
    # /readyz: whether the controller says this node could go down now (served with the metrics)
    readiness = Readiness(local=lambda: "" if agent.target.ready.is_set() else "the node's SPDK target is not up")
    if not config.controller:
        readiness.local = lambda: "the agent has no controller (--controller) to tell whether the node is ready"
    if metrics_port:
        collector = VolumeIoCollector(agent.iostat, loop)
        REGISTRY.register(collector)
        httpd = serve_http(metrics_port, metrics_address, readiness)
    log.info("agent ready node_id=%s name=%s listen=%s nvmf=%s:%d", agent.node_id, config.name, config.listen,
             config.nvmf_address, config.nvmf_port)
    registration = None
    if config.controller:
        registration = asyncio.create_task(
            register_forever(agent, [e.strip() for e in config.controller.split(",") if e.strip()], stop,
                             metrics_url=metrics_url(metrics_address, metrics_port, config.nvmf_address),
                             readiness=readiness))
    try:
        while not stop.is_set():
            TARGET_UP.set(1 if agent.target.ready.is_set() else 0)
            TARGET_RESTARTS.set(agent.target.restarts)
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
    finally:
        log.info("agent stopping node_id=%s", agent.node_id)
        if registration is not None:
            registration.cancel()
        if httpd is not None:
            await asyncio.to_thread(httpd.shutdown)
            httpd.server_close()
        await server.stop(grace=2.0)
        await agent.stop()
        if collector is not None:
            REGISTRY.unregister(collector)
        pid_file.unlink(missing_ok=True)
