"""One simulated storage node: the real AgentServicer on a gRPC socket, registration and heartbeats
as the real agent does them, and a data plane in the fabric."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from meshblock.agent.config import AgentConfig
from meshblock.agent.registration import DIGEST_EVERY, Digests, Lease, _register_loop, watch_digests
from meshblock.agent.service import AgentServicer
from meshblock.proto.meshblock.v1 import agent_pb2, agent_pb2_grpc

from .agent import SimAgent
from .fabric import Fabric, SimDisk, SimTarget

log = logging.getLogger(__name__)

RPCS = [m.name for m in agent_pb2.DESCRIPTOR.services_by_name["AgentService"].methods]


@dataclass
class CallStats:
    """Calls a node's agent has served, by method, and how many ran at once."""
    calls: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    inflight: int = 0
    max_inflight: int = 0
    inflight_by_method: Counter = field(default_factory=Counter)
    max_inflight_by_method: Counter = field(default_factory=Counter)

    def begin(self, method: str) -> None:
        self.calls[method] += 1
        self.inflight += 1
        self.inflight_by_method[method] += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        self.max_inflight_by_method[method] = max(self.max_inflight_by_method[method], self.inflight_by_method[method])

    def end(self, method: str, ok: bool) -> None:
        self.inflight -= 1
        self.inflight_by_method[method] -= 1
        if not ok:
            self.failed[method] += 1

    def reset(self) -> None:
        self.calls.clear()
        self.failed.clear()
        self.max_inflight = self.inflight
        self.max_inflight_by_method = Counter({k: v for k, v in self.inflight_by_method.items() if v})

    def as_dict(self) -> dict:
        return {"calls": dict(self.calls), "failed": dict(self.failed), "max_inflight": self.max_inflight,
                "max_inflight_by_method": {k: v for k, v in self.max_inflight_by_method.items() if v}}


def _counted(name: str, fn):
    async def call(self, request, context):
        self.stats.begin(name)
        ok = False
        try:
            reply = await fn(self, request, context)
            ok = True
            return reply
        finally:
            # the servicer answers errors with context.abort, which raises
            self.stats.end(name, ok)
    call.__name__ = name
    return call


class CountingServicer(AgentServicer):
    """The real AgentServicer (validation, conversion, status codes), counting its calls."""

    def __init__(self, agent, stats: CallStats):
        super().__init__(agent)
        self.stats = stats


for _name in RPCS:
    setattr(CountingServicer, _name, _counted(_name, getattr(AgentServicer, _name)))


class HeartbeatLoop:
    """Registration and heartbeats of every node on an event loop of their own, in a thread. Real
    agents each have a process: a controller call keeping one agent busy never delays another's
    heartbeat. Here all nodes share one process; on a loop of their own the heartbeats wait at most
    for the interpreter to switch threads, not for every call the nodes have queued."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="sim-heartbeats", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def register(self, agent, endpoints: list[str], lease: Lease, digests: Digests) -> concurrent.futures.Future:
        """Start a node's registration loop; the future holds its task."""
        async def start() -> asyncio.Task:
            return asyncio.create_task(_register_loop(agent, endpoints, asyncio.Event(), lease, digests))
        return asyncio.run_coroutine_threadsafe(start(), self.loop)

    async def cancel(self, started: concurrent.futures.Future) -> None:
        """End a registration loop and wait until it has ended."""
        async def stop() -> None:
            # never started.result() here: its result reaches it through this very loop
            task = await asyncio.wrap_future(started)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(stop(), self.loop))

    def close(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


class SimNode:
    """A storage node of a SimCluster. ``kill``, ``revive`` and ``restart_agent`` are what happen to a
    real node: the whole node dies; it boots again (SPDK finds its lvols, nothing else); only the
    agent process restarts (the target and everything in it keeps running)."""

    def __init__(self, fabric: Fabric, index: int, node_id: str, name: str, socket: Path, address: str, port: int,
                 labels: dict[str, str], controllers: list[str], pool_bytes: int, op_delay: float = 0.0,
                 on_head=None, heartbeats: HeartbeatLoop | None = None, digest_every: float = DIGEST_EVERY):
        self.fabric = fabric
        self.index = index
        self.socket = socket
        self.controllers = controllers
        self.op_delay = op_delay
        self.on_head = on_head
        self.heartbeats = heartbeats          # None: registration runs on the caller's loop
        self.digest_every = digest_every      # seconds between the digests its heartbeats carry
        self.config = AgentConfig(name=name, data_dir=socket.parent, node_id=node_id, nvmf_address=address,
                                  nvmf_port=port, head_port=port + 1, iscsi_port=port + 2,
                                  listen=f"unix:{socket}", labels=dict(labels), controller=",".join(controllers))
        fabric.claim(node_id, (address, port), (address, port + 1), (address, port + 2))
        self.disk = SimDisk(pool_bytes)
        self.stats = CallStats()
        self.target: SimTarget | None = None
        self.agent: SimAgent | None = None
        self.lease: Lease | None = None
        self.server: grpc.aio.Server | None = None
        self._registration: asyncio.Task | concurrent.futures.Future | None = None
        self._digests: asyncio.Task | None = None
        self.restarts = 0
        self.killed_at: float | None = None

    @property
    def node_id(self) -> str:
        return self.config.node_id

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def host_nqn(self) -> str:
        return self.config.host_nqn

    @property
    def endpoint(self) -> str:
        return self.config.listen

    @property
    def alive(self) -> bool:
        return self.target is not None and self.target.running

    @property
    def instance_id(self) -> str:
        return self.lease.instance if self.lease is not None else ""

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self, register: bool = True) -> None:
        """Boot the node: its target (loading the lvols on its pool), then its agent."""
        if self.alive:
            return
        self.target = self.fabric.start_target(self.node_id, self.host_nqn, self.disk)
        self.killed_at = None
        await self._start_agent(register)

    async def _start_agent(self, register: bool) -> None:
        assert self.target is not None
        self.agent = SimAgent(self.config, self.target, op_delay=self.op_delay, on_head=self.on_head)
        self.server = grpc.aio.server()
        agent_pb2_grpc.add_AgentServiceServicer_to_server(CountingServicer(self.agent, self.stats), self.server)
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        self.server.add_insecure_port(self.endpoint)
        await self.server.start()
        self.lease = Lease()
        if register and self.controllers:
            # as the real agent: its digests are taken on the agent's loop, heartbeats carry them
            digests = Digests()
            self._digests = asyncio.create_task(watch_digests(self.agent, digests, asyncio.Event(), self.digest_every),
                                                name=f"digests-{self.name}")
            if self.heartbeats is not None:
                self._registration = self.heartbeats.register(self.agent, self.controllers, self.lease, digests)
            else:
                self._registration = asyncio.create_task(
                    _register_loop(self.agent, self.controllers, asyncio.Event(), self.lease, digests),
                    name=f"register-{self.name}")

    async def _stop_agent(self) -> None:
        digests, self._digests = self._digests, None
        if digests is not None:
            digests.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await digests
        reg, self._registration = self._registration, None
        if isinstance(reg, concurrent.futures.Future):
            await self.heartbeats.cancel(reg)
        elif reg is not None:
            reg.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reg
        if self.agent is not None:
            self.agent.stop()
        if self.server is not None:
            await self.server.stop(None)
        self.server = None
        self.lease = None

    async def kill(self) -> None:
        """The node dies: agent and target at once (calls in flight fail, heartbeats stop, other
        nodes' paths to its replicas fail)."""
        self.fabric.stop_target(self.node_id)
        await self._stop_agent()
        self.agent = None
        self.target = None
        self.killed_at = time.monotonic()
        log.info("sim node killed name=%s node_id=%s", self.name, self.node_id)

    async def revive(self) -> None:
        """The node boots again: a new target that finds the lvols SPDK persisted (no exports, no
        heads, no attachments) and a new agent instance."""
        if self.alive:
            await self.kill()
        self.restarts += 1
        await self.start()
        log.info("sim node revived name=%s node_id=%s", self.name, self.node_id)

    async def restart_agent(self, downtime: float = 0.0) -> None:
        """Only the agent process restarts: the target keeps every export and head; the agent comes
        back with an empty memory and a new instance id."""
        if not self.alive:
            raise RuntimeError(f"node {self.name} is down")
        await self._stop_agent()
        if downtime:
            await asyncio.sleep(downtime)
        self.restarts += 1
        await self._start_agent(register=bool(self.controllers))

    async def stop(self) -> None:
        await self._stop_agent()
        self.fabric.stop_target(self.node_id)
        self.target = None
        self.agent = None

    async def check_lease(self, now: float) -> list[str] | None:
        """registration.watch_lease, one tick of it (the cluster runs one watchdog for all nodes): the
        volumes whose heads stopped because the lease ran out, or None while it holds."""
        lease, agent = self.lease, self.agent
        if lease is None or agent is None or not lease.expired(now):
            return None
        lease.lost()
        stopped = await agent.lease_lost()
        log.warning("node %s: no answer from the controller within the head lease: stopped serving %d head(s)",
                    self.name, len(stopped))
        return stopped

    # --- what the node holds ---------------------------------------------------------------
    def holdings(self, volume_ids: set[str] | None = None, replica_ids: set[str] | None = None) -> dict:
        """The node's data-plane objects (all, or those of the given volumes / replicas): lvols,
        subsystems, raids, heads (as the agent knows them) and attachments."""
        out: dict[str, list[str]] = {"lvols": [], "subsystems": [], "raids": [], "heads": [], "attachments": []}
        for name in self.disk.lvols:
            oid = name.split("-", 1)[1]
            if replica_ids is None or oid in replica_ids:
                out["lvols"].append(name)
        t = self.target
        if t is not None:
            for sub in t.subsystems.values():
                oid = sub.nqn.rsplit(":", 1)[-1]
                if (volume_ids is None and replica_ids is None) or (volume_ids and oid in volume_ids) or \
                        (replica_ids and oid in replica_ids):
                    out["subsystems"].append(sub.nqn)
            for vid in t.raids:
                if volume_ids is None or vid in volume_ids:
                    out["raids"].append(vid)
            for name in t.attachments:
                rid = name.removeprefix("att-leg-")
                if (volume_ids is None and replica_ids is None) or (replica_ids and rid in replica_ids):
                    out["attachments"].append(name)
        if self.agent is not None:
            out["heads"] = [vid for vid in self.agent.heads if volume_ids is None or vid in volume_ids]
        return {k: sorted(v) for k, v in out.items() if v}
