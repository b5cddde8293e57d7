"""SimCluster: many simulated storage nodes in one process, registered with real controllers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from meshblock.agent.service import AgentServicer
from meshblock.proto.meshblock.v1 import agent_pb2 as apb

from .fabric import Fabric
from .node import HeartbeatLoop, SimNode

log = logging.getLogger(__name__)

GiB = 1 << 30
Labels = Callable[[int], dict[str, str]] | Mapping[str, Sequence[str]] | None


# the calls SimCluster.invoke makes, with their request types
REQUESTS = {"CreateReplica": apb.CreateReplicaRequest, "ExportReplica": apb.ExportReplicaRequest,
            "EnsureHead": apb.HeadSpec}


class _Context:
    """What an AgentServicer method needs of a gRPC context when it is called in-process."""

    async def abort(self, code, details: str = ""):
        raise RuntimeError(f"{code}: {details}")


def label_fn(labels: Labels) -> Callable[[int], dict[str, str]]:
    """Labels per node index: a function, or values per key taken in turn (node i gets value i % n)."""
    if labels is None:
        return lambda i: {}
    if callable(labels):
        return labels
    return lambda i: {k: vals[i % len(vals)] for k, vals in labels.items()}


class SimCluster:
    def __init__(self, root: Path, *, pool_bytes: int = 1024 * GiB, rebuild_rate: float = 2 * GiB,
                 op_delay: float = 0.0, address: str = "127.0.0.1", first_port: int = 20000,
                 lease_tick: float = 0.05, heartbeat_thread: bool = True, digest_every: float = 10.0):
        """``pool_bytes``: each node's pool; ``rebuild_rate``: bytes per second a raid member is rebuilt
        at; ``op_delay``: seconds every agent call that would reach SPDK takes; nodes export on
        ``address`` at ``first_port + 4 * i`` (replicas), +1 (heads), +2 (iSCSI): nothing listens;
        ``heartbeat_thread``: registration and heartbeats on a loop of their own (see HeartbeatLoop)."""
        self.root = Path(root)
        self.fabric = Fabric(rebuild_rate=rebuild_rate)
        self.pool_bytes = pool_bytes
        self.op_delay = op_delay
        self.address = address
        self.first_port = first_port
        self.lease_tick = lease_tick
        self.heartbeats = HeartbeatLoop() if heartbeat_thread else None
        # every node takes its digests in this one process: a large simulation may take them less often
        self.digest_every = digest_every
        self.nodes: list[SimNode] = []
        self._by_id: dict[str, SimNode] = {}
        self._by_name: dict[str, SimNode] = {}
        # volume id -> (node id, monotonic time) of the last EnsureHead that made a node its active head
        self.head_applied: dict[str, tuple[str, float]] = {}
        # (node name, monotonic time, volumes whose heads it stopped) each time a head lease ran out
        self.lease_losses: list[tuple[str, float, list[str]]] = []
        self._watchdog: asyncio.Task | None = None
        self._lag_monitor: asyncio.Task | None = None
        self.max_loop_lag = 0.0           # seconds: the longest this process's event loop was late
        self.leases_held = False          # seeding: no head stops while the controllers are away

    def _on_head(self, volume_id: str, node_id: str) -> None:
        self.head_applied[volume_id] = (node_id, time.monotonic())

    def add_nodes(self, n: int, controllers: list[str], labels: Labels = None, prefix: str = "sim") -> list[SimNode]:
        """Define ``n`` more nodes (not started)."""
        fn = label_fn(labels)
        new = []
        for _ in range(n):
            i = len(self.nodes)
            node = SimNode(self.fabric, i, str(uuid.uuid4()), f"{prefix}-{i:04d}", self.root / f"n{i}.sock",
                           self.address, self.first_port + 4 * i, fn(i), list(controllers), self.pool_bytes,
                           op_delay=self.op_delay, on_head=self._on_head, heartbeats=self.heartbeats,
                           digest_every=self.digest_every)
            self.nodes.append(node)
            self._by_id[node.node_id] = node
            self._by_name[node.name] = node
            new.append(node)
        return new

    async def start(self, n: int, controllers: Sequence[str] | str, labels: Labels = None,
                    spread: float = 0.0) -> list[SimNode]:
        """Start ``n`` nodes registering with ``controllers`` (endpoints; the leader answers).
        ``spread``: seconds over which their first registrations are spread."""
        if isinstance(controllers, str):
            controllers = [e.strip() for e in controllers.split(",") if e.strip()]
        self.root.mkdir(parents=True, exist_ok=True)
        new = self.add_nodes(n, list(controllers), labels)
        for i, node in enumerate(new):
            await node.start()
            if spread:
                await asyncio.sleep(spread / max(len(new), 1))
        if self._watchdog is None:
            self._watchdog = asyncio.create_task(self._watch_leases(), name="sim-lease-watchdog")
            self._lag_monitor = asyncio.create_task(self._watch_lag(), name="sim-loop-lag")
        return new

    async def _watch_lag(self, tick: float = 0.05) -> None:
        """How late the event loop runs a timer: a busy simulation delays heartbeats and calls as much."""
        while True:
            t = time.monotonic()
            await asyncio.sleep(tick)
            self.max_loop_lag = max(self.max_loop_lag, time.monotonic() - t - tick)

    def take_loop_lag(self) -> float:
        """The longest loop delay since the last call (seconds)."""
        lag, self.max_loop_lag = self.max_loop_lag, 0.0
        return lag

    async def _watch_leases(self) -> None:
        while True:
            now = time.monotonic()
            for node in [] if self.leases_held else self.nodes:
                lease = node.lease
                if lease is not None and lease.expired(now):
                    asyncio.create_task(self._lease_ran_out(node, now))
            await asyncio.sleep(self.lease_tick)

    async def _lease_ran_out(self, node: SimNode, now: float) -> None:
        stopped = await node.check_lease(now)
        if stopped is not None:
            self.lease_losses.append((node.name, now, stopped))

    async def invoke(self, volumes: list[list[tuple[str, str, bytes]]], parallel: int = 64) -> list[list[bytes]]:
        """Agent calls made in this process through each node's AgentServicer, without gRPC: a large
        cluster is seeded this way in minutes instead of hours. Each volume's calls ``(node id, method,
        serialized request)`` run in order, up to ``parallel`` volumes at once; the serialized replies
        come back in the same shape. A call that fails raises."""
        sem = asyncio.Semaphore(parallel)
        servicers: dict[str, AgentServicer] = {}

        async def one(calls: list[tuple[str, str, bytes]]) -> list[bytes]:
            out = []
            async with sem:
                for node_id, method, body in calls:
                    node = self._by_id[node_id]
                    svc = servicers.get(node_id)
                    if svc is None or svc.agent is not node.agent:
                        svc = servicers[node_id] = AgentServicer(node.agent)
                    req = REQUESTS[method].FromString(body)
                    out.append((await getattr(svc, method)(req, _Context())).SerializeToString())
            return out

        return await asyncio.gather(*(one(c) for c in volumes))

    async def stop(self) -> None:
        for task in (self._watchdog, self._lag_monitor):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._watchdog = self._lag_monitor = None
        await asyncio.gather(*(n.stop() for n in self.nodes), return_exceptions=True)
        if self.heartbeats is not None:
            await asyncio.to_thread(self.heartbeats.close)

    # --- lookups ---------------------------------------------------------------------------
    def node(self, ref: str) -> SimNode:
        """A node by id or name."""
        node = self._by_id.get(ref) or self._by_name.get(ref)
        if node is None:
            raise KeyError(ref)
        return node

    @property
    def alive(self) -> list[SimNode]:
        return [n for n in self.nodes if n.alive]

    def holdings(self, volume_ids: set[str] | None = None, replica_ids: set[str] | None = None) -> dict[str, dict]:
        """Per node name: what it holds (of the given volumes / replicas); nodes holding nothing left out."""
        out = {}
        for n in self.nodes:
            h = n.holdings(volume_ids, replica_ids)
            if h:
                out[n.name] = h
        return out

    def heads(self) -> dict[str, list[str]]:
        """Per node name: the volumes it serves as active head (standbys left out)."""
        out: dict[str, list[str]] = {}
        for n in self.nodes:
            if n.agent is not None:
                vids = sorted(vid for vid, h in n.agent.heads.items() if not h.standby)
                if vids:
                    out[n.name] = vids
        return out

    def describe(self, volume_id: str) -> dict[str, dict]:
        """Per node name, what the data plane holds of one volume: the agent's head (role, legs),
        the raid (members and their states), the volume's subsystem (ANA state, hosts)."""
        out: dict[str, dict] = {}
        for n in self.nodes:
            d: dict = {}
            head = n.agent.heads.get(volume_id) if n.agent is not None else None
            if head is not None:
                d["head"] = {"standby": head.standby, "legs": [leg.replica_id for leg in head.legs],
                             "in_sync": sorted(head.in_sync)}
            raid = n.target.raid(volume_id) if n.target is not None else None
            if raid is not None:
                d["raid"] = {"standby": raid.standby, "offline": raid.offline,
                             "members": {m.replica_id: m.state for m in raid.members()}}
            if n.target is not None:
                for sub in n.target.subsystems.values():
                    if sub.nqn.endswith(volume_id):
                        d["export"] = {"ana": sub.ana_state, "hosts": sorted(sub.hosts)}
            if d:
                out[n.name] = d
        return out

    def stats(self) -> dict[str, dict]:
        return {n.name: n.stats.as_dict() for n in self.nodes}

    def reset_stats(self) -> None:
        for n in self.nodes:
            n.stats.reset()

    def load(self) -> dict:
        """Agent load over all nodes: calls by method, the most calls one node served, and the most
        calls one node had running at once."""
        calls: dict[str, int] = {}
        for n in self.nodes:
            for m, c in n.stats.calls.items():
                calls[m] = calls.get(m, 0) + c
        busiest = max(self.nodes, key=lambda n: sum(n.stats.calls.values()), default=None)
        return {"calls": dict(sorted(calls.items())), "total_calls": sum(calls.values()),
                "max_calls_one_node": sum(busiest.stats.calls.values()) if busiest else 0,
                "max_inflight_one_node": max((n.stats.max_inflight for n in self.nodes), default=0)}
