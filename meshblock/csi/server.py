"""The CSI plugin process: Identity always, Controller and/or Node by role, on one gRPC socket."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from ..grpcutil import make_server
from ..proto.csi.v1 import csi_pb2_grpc as csi_grpc
from ..proto.meshblock.v1 import admin_pb2 as admin
from .admin import AdminClient
from .controller import ControllerServicer
from .groups import GroupControllerServicer
from .identity import IdentityServicer
from .node import NodeConfig, NodeServicer

log = logging.getLogger(__name__)
REGISTER_RETRY = 2.0


@dataclass
class PluginConfig:
    endpoint: str                       # unix:///path/csi.sock
    controller: bool = False
    node: bool = False
    node_id: str = ""
    host_nqn: str = ""
    admin_endpoint: str = ""
    ca: str = ""
    cert: str = ""
    key: str = ""
    token: str = ""                     # the plugin's own admin API token (calls without one in their secrets)
    max_volumes: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    initiator_iqn: str = ""


def listen_address(endpoint: str) -> str:
    """CSI endpoints are unix:///abs/path (or unix:/abs/path, or a bare absolute path)."""
    if endpoint.startswith("unix://"):
        path = endpoint[len("unix://"):]
    elif endpoint.startswith("unix:"):
        path = endpoint[len("unix:"):]
    elif endpoint.startswith("/"):
        path = endpoint
    else:
        raise ValueError(f"CSI endpoint {endpoint!r}: expected unix:///path/to/csi.sock")
    return "unix:" + path


def host_nqn_of_machine() -> str:
    try:
        return Path("/etc/nvme/hostnqn").read_text().strip()
    except OSError:
        return ""


async def register_host(client: AdminClient, cfg: PluginConfig, stop: asyncio.Event) -> None:
    """Tell the controller this node's id, host NQN and initiator IQN; retried until it answers."""
    while not stop.is_set():
        try:
            await client.hosts.RegisterHost(admin.RegisterHostRequest(
                id=cfg.node_id, host_nqn=cfg.host_nqn, labels=cfg.labels, max_volumes=cfg.max_volumes,
                initiator_iqn=cfg.initiator_iqn), timeout=10)
            log.info("registered host id=%s host_nqn=%s initiator_iqn=%s", cfg.node_id, cfg.host_nqn,
                     cfg.initiator_iqn or "-")
            return
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.INVALID_ARGUMENT:
                log.error("the controller refused this host: %s", e.details())
                return
            log.warning("registering with the controller failed (%s); retrying", e.details())
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), REGISTER_RETRY)


async def run_plugin(cfg: PluginConfig, stop: asyncio.Event | None = None) -> None:
    if not (cfg.controller or cfg.node):
        raise ValueError("give the controller role, the node role or both")
    if cfg.controller and not cfg.admin_endpoint:
        raise ValueError("the controller role needs the admin API endpoint")
    if cfg.node and not cfg.node_id:
        raise ValueError("the node role needs a node id")
    if cfg.node and not cfg.host_nqn:
        raise ValueError("the node role needs a host NQN (/etc/nvme/hostnqn is missing; give one)")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    client = AdminClient(cfg.admin_endpoint, cfg.ca, cfg.cert, cfg.key, cfg.token) if cfg.admin_endpoint else None
    names = ["csi.v1.Identity"]

    def register(server: grpc.aio.Server) -> None:
        csi_grpc.add_IdentityServicer_to_server(IdentityServicer(client, cfg.controller), server)
        if cfg.controller:
            assert client is not None
            csi_grpc.add_ControllerServicer_to_server(ControllerServicer(client), server)
            csi_grpc.add_GroupControllerServicer_to_server(GroupControllerServicer(client), server)
            names.extend(["csi.v1.Controller", "csi.v1.GroupController"])
        if cfg.node:
            node_cfg = NodeConfig(node_id=cfg.node_id, host_nqn=cfg.host_nqn, max_volumes=cfg.max_volumes,
                                  labels=cfg.labels, initiator_iqn=cfg.initiator_iqn)
            csi_grpc.add_NodeServicer_to_server(NodeServicer(node_cfg, client), server)
            names.append("csi.v1.Node")

    server, _ = await make_server(listen_address(cfg.endpoint), register, names)
    log.info("CSI plugin serving %s on %s", ", ".join(names), cfg.endpoint)
    tasks = []
    if cfg.node and client is not None:
        tasks.append(asyncio.create_task(register_host(client, cfg, stop)))
    try:
        await stop.wait()
    finally:
        for t in tasks:
            t.cancel()
        await server.stop(grace=2.0)
        if client is not None:
            await client.close()
        log.info("CSI plugin stopped")
