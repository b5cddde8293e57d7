"""Node registration, heartbeats and failure detection (the leader's view of which nodes are up)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from ..model import Node, NodeState
from ..model.records import now
from ..store.base import Conflict
from .repo import Repo

log = logging.getLogger(__name__)


@dataclass
class Seen:
    at: float
    instance_id: str
    total_bytes: int = 0
    free_bytes: int = 0
    healthy: bool = True
    heads_digest: str = ""       # of what the agent's ListHeads answers, as its last heartbeat said
    replicas_digest: str = ""    # of its ListReplicas


@dataclass
class Liveness:
    repo: Repo
    timeout: float = 3.0
    capacity_every: float = 30.0     # seconds between writes of a node's reported capacity
    on_change: Callable[[str], None] = lambda node_id: None         # up/down/health of a node
    on_new_instance: Callable[[Node], None] = lambda node: None     # an agent (re)started
    seen: dict[str, Seen] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    # registrations one at a time: two new nodes must never be given the same free slot (each
    # slot is a controller-id range, and hosts refuse a second path with a controller id in use)
    _registering: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def _free_slot(self) -> int:
        used = {n.slot for n in await self.repo.list(Node)}
        return next(i for i in range(len(used) + 1) if i not in used)

    async def register(self, node: Node, instance_id: str, digests: tuple[str, str] = ("", "")) -> Node:
        """Create or update a node's record from its agent's registration (``digests``: of its heads
        and replicas, as heartbeats carry them)."""
        view = self.repo.view
        if view is not None and not view.ready.is_set():
            # a controller that has just started reads the store into its view first: registrations
            # wait for that (bounded) rather than each reading the store, one at a time behind the lock
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(view.ready.wait(), 60)
        if view is not None and view.ready.is_set():
            # the common case (every agent after a controller failover): a known node whose record
            # says what it reports. No store access and no queue behind the lock, so a thousand
            # agents are all back within a heartbeat.
            cur = view.get(Node, node.id)
            if cur is not None and cur.slot >= 0 and not _differs(cur, node):
                return self._registered(cur, node, instance_id, digests)
        async with self._registering:
            return await self._register(node, instance_id, digests)

    def _registered(self, cur: Node, node: Node, instance_id: str, digests: tuple[str, str]) -> Node:
        prev = self.seen.get(node.id)
        self.seen[node.id] = Seen(time.monotonic(), instance_id, node.total_bytes, node.free_bytes,
                                  heads_digest=digests[0], replicas_digest=digests[1])
        if prev is None or prev.instance_id != instance_id:
            log.info("node registered node_id=%s name=%s instance=%s", node.id, node.name, instance_id)
            self.on_new_instance(cur)
            self.on_change(cur.id)
        return cur

    async def _register(self, node: Node, instance_id: str, digests: tuple[str, str]) -> Node:
        for _ in range(10):
            cur = await self.repo.get(Node, node.id)
            if cur is None:
                clash = await self.repo.by_name(Node, node.name)
                if clash is not None:
                    from ..errors import AlreadyExists
                    raise AlreadyExists(f"node name {node.name!r} belongs to node {clash.id}")
                node.slot = await self._free_slot()
                node.state = NodeState.UP
                node.registered_at = node.last_seen = now()
                try:
                    await self.repo.commit(create=[node])
                except Conflict:
                    continue
                cur = node
            else:
                changed = _differs(cur, node)
                if cur.slot < 0:
                    changed = True
                    cur.slot = await self._free_slot()
                if changed:
                    cur.endpoint, cur.host_nqn, cur.nvmf_address = node.endpoint, node.host_nqn, node.nvmf_address
                    cur.nvmf_port, cur.labels, cur.name = node.nvmf_port, node.labels, node.name
                    cur.total_bytes, cur.free_bytes = node.total_bytes, node.free_bytes
                    cur.pool_block_size, cur.metrics_url = node.pool_block_size, node.metrics_url
                    cur.state, cur.last_seen = NodeState.UP, now()
                    try:
                        await self.repo.commit(put=[cur])
                    except Conflict:
                        continue
            return self._registered(cur, node, instance_id, digests)
        raise Conflict(Node.KIND, node.id, None, None, "node record kept changing while registering")

    def heartbeat(self, node_id: str, instance_id: str, total: int, free: int, healthy: bool,
                  heads_digest: str = "", replicas_digest: str = "") -> bool:
        s = self.seen.get(node_id)
        if s is None or s.instance_id != instance_id:
            return False      # unknown or restarted agent: it must register again
        was_healthy = s.healthy
        s.at, s.total_bytes, s.free_bytes, s.healthy = time.monotonic(), total, free, healthy
        s.heads_digest, s.replicas_digest = heads_digest, replicas_digest
        if healthy != was_healthy:
            self.on_change(node_id)
        return True

    async def settle(self) -> None:
        """After taking over, wait until every node the store knows as up has called in, or the
        node timeout has passed: acting earlier would mark healthy replicas offline."""
        while time.monotonic() - self.started < self.timeout:
            view = self.repo.view
            nodes = view.nodes().values() if view is not None and view.ready.is_set() else await self.repo.list(Node)
            expected = {n.id for n in nodes if n.state == NodeState.UP}
            if expected <= set(self.seen):
                return
            await asyncio.sleep(0.05)

    def is_up(self, node_id: str) -> bool:
        s = self.seen.get(node_id)
        return s is not None and s.healthy and time.monotonic() - s.at <= self.timeout

    def capacity(self, node: Node) -> tuple[int, int]:
        """The pool's total and free bytes as the node's agent last reported them."""
        s = self.seen.get(node.id)
        return (s.total_bytes, s.free_bytes) if s is not None else (node.total_bytes, node.free_bytes)

    def instance(self, node_id: str) -> str | None:
        s = self.seen.get(node_id)
        return s.instance_id if s else None

    async def check(self) -> None:
        """Persist up/down transitions (a node is down after `timeout` without a heartbeat), and the
        capacity agents report, at most every ``capacity_every`` seconds per node (it changes with
        every write to a thin pool: writing it each time would rewrite every node record each second)."""
        grace = time.monotonic() - self.started < self.timeout  # just took over: give agents time to call in
        view = self.repo.view
        nodes = list(view.nodes().values()) if view is not None and view.ready.is_set() else \
            await self.repo.list(Node)
        for node in nodes:
            up = self.is_up(node.id)
            if not up and grace:
                continue
            want = NodeState.UP if up else NodeState.DOWN
            s = self.seen.get(node.id)
            moved = node.state != want
            capacity = (s is not None and up and (node.free_bytes, node.total_bytes) != (s.free_bytes, s.total_bytes)
                        and now() - node.last_seen >= self.capacity_every)
            if not (moved or capacity):
                continue
            if view is not None and view.ready.is_set():
                node = view.get(Node, node.id) or node    # the view's records are shared: change a copy
            if moved:
                log.warning("node %s node_id=%s is %s", node.name, node.id, want.value)
            node.state = want
            if s is not None:
                node.total_bytes, node.free_bytes = s.total_bytes, s.free_bytes
            node.last_seen = now()
            try:
                await self.repo.commit(put=[node])
            except Conflict:
                continue
            if moved:
                self.on_change(node.id)

    async def run(self, interval: float = 1.0) -> None:
        while True:
            try:
                await self.check()
            except Exception:  # noqa: BLE001
                log.exception("failure detector pass failed")
            await asyncio.sleep(interval)


def _differs(cur: Node, node: Node) -> bool:
    """Whether a registration reports something the node's record does not say (or the node is down)."""
    return (cur.endpoint, cur.host_nqn, cur.nvmf_address, cur.nvmf_port, cur.labels, cur.name, cur.state,
            cur.total_bytes, cur.pool_block_size, cur.metrics_url) != (
                node.endpoint, node.host_nqn, node.nvmf_address, node.nvmf_port, node.labels, node.name,
                NodeState.UP, node.total_bytes, node.pool_block_size, node.metrics_url)
