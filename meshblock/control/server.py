"""Runs a controller: admin API, registry, reconciler and failure detector, behind a leader lease.

Every controller serves its API socket at once; a standby answers UNAVAILABLE
(and its health service says NOT_SERVING) until it wins the lease. A leader
that loses its lease exits, so two controllers never act at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
import uuid
import dataclasses
from dataclasses import dataclass

from prometheus_client import start_http_server

from ..grpcutil import client_tls, make_server, server_tls, set_serving
from ..proto.meshblock.v1 import admin_pb2_grpc as pb_grpc
from ..secretbox import SecretBox
from ..store import open_leadership, open_store
from ..util import metrics_url
from ..model.tenancy import Identity, Tenant
from .agents import AgentClients
from .audit import AUDIT_SERVICE, AuditLog, AuditServicer, Retention
from .auth import Authenticator, AuthInterceptor
from .events import EventLog, EventRecorder, default_retention
from .events_service import EVENT_SERVICE, EventServicer
from .gauges import LEADER
from .hosts import HOST_SERVICE, HostServicer
from .liveness import Liveness
from .reconciler import HEAD_RECHECK, Reconciler
from .repo import Repo
from .readiness import ReadinessCheck
from .view import ClusterView
from .service import (CLUSTER_SERVICE, NODE_SERVICE, REGISTRY_SERVICE, VOLUME_SERVICE, ClusterServicer, Gate,
                      NodeServicer, RegistryServicer, VolumeServicer)
from .tenants import TENANT_SERVICE, Quotas, TenantServicer
from .volumes import VolumeManager

log = logging.getLogger(__name__)
SERVICES = [VOLUME_SERVICE, NODE_SERVICE, CLUSTER_SERVICE, REGISTRY_SERVICE, HOST_SERVICE, TENANT_SERVICE,
            AUDIT_SERVICE, EVENT_SERVICE]


@dataclass
class ControllerConfig:
    store_url: str
    listen: str
    identity: str = ""
    node_timeout: float = 3.0
    heartbeat_ms: int = 1000
    overcommit: float = 4.0
    orphan_grace: float = 60.0
    replace_after: float = 600.0
    standby_heads: bool = True
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    metrics_port: int = 0
    metrics_address: str = "127.0.0.1"
    agent_tls_name: str = ""       # the name agents' certificates are issued to (default: their address)
    leader_ttl: float = 3.0
    head_lease: bool = True        # agents stop serving their heads when they lose the controller
    secrets_key_file: str = ""     # seals secrets kept in the store (else $MESHBLOCK_SECRETS_KEY)
    head_sweep_interval: float = HEAD_RECHECK   # seconds between two sweeps of the nodes' heads
    rebuild_visits: float = 20.0                # visits a second shared by all rebuilding volumes
    audit: Retention = dataclasses.field(default_factory=Retention)
    events: Retention = dataclasses.field(default_factory=default_retention)   # of the event log

    def head_lease_ms(self) -> int:
        """The lease agents are given: one heartbeat, at most one second, shorter than the node timeout
        (so a cut-off head has stopped serving by the time the node is declared down), but never
        shorter than one and a half heartbeats (one late heartbeat must not stop a head); 0 when those
        cannot both hold. A second is what the default settings (1 s heartbeats) leave a head to stop
        in, as tested; with longer heartbeats it leaves a controller takeover more time."""
        if not self.head_lease:
            return 0
        timeout_ms = int(self.node_timeout * 1000)
        lease = max(timeout_ms - min(self.heartbeat_ms, 1000), self.heartbeat_ms * 3 // 2)
        return lease if lease < timeout_ms else 0


class LeadershipLost(RuntimeError):
    pass


async def run_controller(cfg: ControllerConfig, stop: asyncio.Event | None = None) -> None:
    identity = cfg.identity or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    secrets = SecretBox.load(cfg.secrets_key_file)   # a bad key stops the controller here, before anything
    store = open_store(cfg.store_url)
    await store.open()
    leadership = open_leadership(cfg.store_url, identity, ttl=cfg.leader_ttl)
    # the view reads the store from the start, standbys included, so a controller that takes over
    # has the cluster in memory already and serves at once
    view = ClusterView(store)
    # tenants and identities: a view of their own, so every call is authenticated from memory
    tenancy = ClusterView(store, kinds=(Tenant, Identity))
    quotas = Quotas(view, tenancy)
    view.start()
    tenancy.start()
    repo = Repo(store, view)
    audit = AuditLog(store, cfg.audit)
    events = EventLog(store, cfg.events)
    recorder = EventRecorder(events)
    # the controller dials agents' TCP APIs with its own certificate as client identity
    agents = AgentClients(client_tls(cfg.tls_client_ca, cfg.tls_cert, cfg.tls_key) if cfg.tls_cert else None,
                          tls_name=cfg.agent_tls_name)
    gate = Gate()
    liveness = Liveness(repo, timeout=cfg.node_timeout)
    reconciler = Reconciler(repo, agents, liveness, view=view, orphan_grace=cfg.orphan_grace,
                            standby_heads=cfg.standby_heads, replace_after=cfg.replace_after, secrets=secrets,
                            head_recheck=cfg.head_sweep_interval, rebuild_visits=cfg.rebuild_visits, events=recorder)
    liveness.on_change = reconciler.node_changed

    def agent_started(node) -> None:
        agents.renew(node.endpoint)
        reconciler.agent_started(node)
    liveness.on_new_instance = agent_started
    mgr = VolumeManager(repo, liveness, reconciler, overcommit=cfg.overcommit)
    readiness = ReadinessCheck(view, liveness, reconciler)
    mgr.quotas = quotas
    mgr.secrets = secrets

    def register(server) -> None:
        pb_grpc.add_VolumeServiceServicer_to_server(VolumeServicer(mgr, gate), server)
        pb_grpc.add_NodeServiceServicer_to_server(NodeServicer(mgr, liveness, gate, readiness), server)
        pb_grpc.add_ClusterServiceServicer_to_server(
            ClusterServicer(mgr, liveness, gate, cfg.overcommit, identity,
                            metrics_url(cfg.metrics_address, cfg.metrics_port, socket.gethostname())), server)
        pb_grpc.add_NodeRegistryServicer_to_server(RegistryServicer(liveness, gate, cfg.heartbeat_ms,
                                                                                  cfg.head_lease_ms(), readiness),
                                                  server)
        pb_grpc.add_HostServiceServicer_to_server(HostServicer(repo, gate), server)
        pb_grpc.add_TenantServiceServicer_to_server(TenantServicer(Repo(store, tenancy), tenancy, quotas, gate),
                                                    server)
        pb_grpc.add_AuditServiceServicer_to_server(AuditServicer(audit, gate), server)
        pb_grpc.add_EventServiceServicer_to_server(EventServicer(events, gate, repo, recorder), server)

    tls = server_tls(cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca) if cfg.tls_cert else None
    interceptor = AuthInterceptor(Authenticator(tenancy), audit.record, active=lambda: gate.active)
    server, health = await make_server(cfg.listen, register, SERVICES, tls=tls, serving=False,
                                       interceptors=[interceptor])
    if cfg.metrics_port:
        start_http_server(cfg.metrics_port, addr=cfg.metrics_address)
    log.info("controller %s listening on %s; campaigning for leadership", identity, cfg.listen)
    tasks: list[asyncio.Task] = []
    try:
        campaign = asyncio.create_task(leadership.campaign())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({campaign, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            campaign.cancel()
            return
        stopper.cancel()
        log.info("controller %s is the leader", identity)
        gate.active = True
        LEADER.set(1)
        # nodes are given a node timeout to call in from when this controller can admit them: once
        # its view holds the store (a controller that started as the leader reads it first)
        await view.ready.wait()
        liveness.started = time.monotonic()
        await liveness.settle()
        gate.settled = True
        set_serving(health, SERVICES, True)

        tasks = [asyncio.create_task(reconciler.run()), asyncio.create_task(liveness.run()),
                 asyncio.create_task(audit.run_pruner()), asyncio.create_task(recorder.run()),
                 asyncio.create_task(events.run_pruner())]
        lost = asyncio.create_task(leadership.lost.wait())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({lost, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if leadership.lost.is_set() and not stop.is_set():
            gate.active = False
            log.error("controller %s lost its leadership; exiting", identity)
            raise LeadershipLost(identity)
    finally:
        gate.active = gate.settled = False
        LEADER.set(0)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if tasks and not leadership.lost.is_set():
            # a leader that stops writes the events it still holds (bounded: the store may be gone)
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(recorder.flush(), 2.0)
        await server.stop(grace=1.0)
        with contextlib.suppress(Exception):
            await leadership.resign()
        await agents.close()
        await view.stop()
        await tenancy.stop()
        await store.close()
        log.info("controller %s stopped", identity)
