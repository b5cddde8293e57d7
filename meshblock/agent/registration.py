"""Registering the node with the controller and sending heartbeats."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
import uuid
from dataclasses import dataclass, field

import grpc

from ..grpcutil import client_tls
from ..proto.meshblock.v1 import admin_pb2 as pb
from ..proto.meshblock.v1 import admin_pb2_grpc as pb_grpc
from .node import NodeAgent
from .readiness import Readiness

log = logging.getLogger(__name__)


async def _capacity(agent: NodeAgent) -> tuple[int, int, bool]:
    try:
        info = await agent.pool.info()
        return info.total_bytes, info.free_bytes, True
    except Exception:  # noqa: BLE001 - an unhealthy node still heartbeats, as unhealthy
        return 0, 0, False


@dataclass
class Lease:
    """The head lease the controller grants: it runs from the sending of the last heartbeat (or
    registration) the controller answered, which is no later than the controller's receiving it."""
    instance: str = field(default_factory=lambda: str(uuid.uuid4()))
    until: float | None = None        # monotonic deadline; None: no lease in force

    def renew(self, instance: str, sent_at: float, lease_ms: int) -> None:
        if instance == self.instance:  # an answer to the instance that lost the lease renews nothing
            self.until = sent_at + lease_ms / 1000 if lease_ms else None

    def expired(self, now: float) -> bool:
        return self.until is not None and now > self.until

    def lost(self) -> None:
        """From now on this agent is a new instance to the controller, which will give it its heads
        again; heartbeats of the old instance are refused, so it registers again."""
        self.until = None
        self.instance = str(uuid.uuid4())


async def watch_lease(agent: NodeAgent, lease: Lease, stop: asyncio.Event, tick: float = 0.05) -> None:
    while not stop.is_set():
        if lease.expired(time.monotonic()):
            lease.lost()
            stopped = await agent.lease_lost()
            log.warning("no answer from the controller within the head lease: stopped serving %d head(s)%s",
                        len(stopped), f" ({', '.join(stopped)})" if stopped else "")
        try:
            await asyncio.wait_for(stop.wait(), tick)
        except asyncio.TimeoutError:
            pass


DIGEST_EVERY = 10.0   # seconds between two looks at what the node holds, for the heartbeat's digests


@dataclass
class Digests:
    """Short digests of what ListHeads and ListReplicas would answer, sent with every heartbeat: the
    controller lists a node's heads or replicas only when its digest has changed, not every few
    seconds on every node ("": not known, the controller lists)."""
    heads: str = ""
    replicas: str = ""


def heads_digest(views) -> str:
    """Of what the controller's head sweep looks at: each head's role, access, raid and leg states
    and the QoS limits SPDK enforces."""
    h = hashlib.blake2b(digest_size=8)
    for v in sorted(views, key=lambda v: v.head.volume_id):
        h.update(repr((v.head.volume_id, v.head.standby, v.head.ana_state, v.raid_state,
                       [(leg.replica_id, leg.state) for leg in v.legs], v.enforced.astuple())).encode())
    return h.hexdigest()


def replicas_digest(views) -> str:
    """Of the replicas the node holds (what the orphan sweep looks for)."""
    return hashlib.blake2b("\n".join(sorted(v.lvol.object_id for v in views)).encode(), digest_size=8).hexdigest()


async def watch_digests(agent, digests: Digests, stop: asyncio.Event, every: float = DIGEST_EVERY) -> None:
    """Keep ``digests`` current, every ``every`` seconds, starting at a random point of the period so
    that many nodes do not all look at once."""
    delay = random.uniform(0, every)
    while True:
        try:
            await asyncio.wait_for(stop.wait(), delay)
            return
        except asyncio.TimeoutError:
            pass
        delay = every
        try:
            digests.heads = heads_digest(await agent.list_heads())
            digests.replicas = replicas_digest(await agent.list_replicas())
        except Exception as e:  # noqa: BLE001 - unknown for now: the controller lists instead
            log.debug("digests not taken: %s", e)
            digests.heads = digests.replicas = ""


async def register_forever(agent: NodeAgent, endpoints: list[str], stop: asyncio.Event, *,
                           metrics_url: str = "", readiness: Readiness | None = None) -> None:
    """Register with whichever controller answers, then heartbeat; re-register when told to. While a
    lease is in force, a watchdog stops the node's heads when it runs out. ``metrics_url``: where
    this agent serves Prometheus metrics, for the controller to list ("": nowhere); ``readiness``:
    where /readyz asks for the node's readiness and finds the controller's answer."""
    lease = Lease()
    digests = Digests()
    watchdog = asyncio.create_task(watch_lease(agent, lease, stop))
    looker = asyncio.create_task(watch_digests(agent, digests, stop))
    try:
        await _register_loop(agent, endpoints, stop, lease, digests, metrics_url=metrics_url,
                             readiness=readiness)
    finally:
        watchdog.cancel()
        looker.cancel()


HEARTBEAT_TIMEOUT = 5     # seconds an answer to a heartbeat may take before the agent tries again


class _Beats:
    """Heartbeats to one controller on one stream (Heartbeats), or one call each (Heartbeat) where
    the controller does not serve the stream. A heartbeat not answered within HEARTBEAT_TIMEOUT
    raises asyncio.TimeoutError, as a call's deadline would."""

    def __init__(self, stub: pb_grpc.NodeRegistryStub):
        self.stub = stub
        self.stream = stub.Heartbeats()

    async def send(self, request: pb.HeartbeatRequest) -> pb.HeartbeatReply:
        if self.stream is not None:
            try:
                return await asyncio.wait_for(self._exchange(request), HEARTBEAT_TIMEOUT)
            except grpc.aio.AioRpcError as e:
                if e.code() != grpc.StatusCode.UNIMPLEMENTED:
                    raise
                log.info("controller without heartbeat streams: one call per heartbeat")
                self.close()
        return await self.stub.Heartbeat(request, timeout=HEARTBEAT_TIMEOUT)

    async def _exchange(self, request: pb.HeartbeatRequest) -> pb.HeartbeatReply:
        assert self.stream is not None
        try:
            await self.stream.write(request)
            reply = await self.stream.read()
        except asyncio.InvalidStateError:    # what writing to a stream that has ended raises
            reply = grpc.aio.EOF
        if reply is grpc.aio.EOF:            # the stream ended: its status says why
            code = await self.stream.code()
            raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE if code == grpc.StatusCode.OK else code,
                                       grpc.aio.Metadata(), grpc.aio.Metadata(),
                                       await self.stream.details() or "the controller ended the heartbeat stream")
        return reply

    def close(self) -> None:
        if self.stream is not None:
            self.stream.cancel()
            self.stream = None


async def _pause(stop: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
    """Until ``stop`` or ``wake`` is set, or ``seconds`` have passed."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
    wake.clear()


async def _register_loop(agent: NodeAgent, endpoints: list[str], stop: asyncio.Event, lease: Lease,
                         digests: Digests | None = None, *, metrics_url: str = "",
                         readiness: Readiness | None = None) -> None:
    digests = digests or Digests()
    cfg = agent.config
    wake = asyncio.Event()      # a /readyz probe asks for a heartbeat now
    if readiness is not None:
        loop = asyncio.get_running_loop()
        readiness.wake = lambda: loop.call_soon_threadsafe(wake.set)
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
                instance, sent = lease.instance, time.monotonic()
                reply = await stub.Register(pb.RegisterRequest(
                    node_id=agent.node_id, name=cfg.name, endpoint=cfg.advertise, host_nqn=cfg.host_nqn,
                    nvmf_address=cfg.nvmf_address, nvmf_port=cfg.nvmf_port, labels=cfg.labels, total_bytes=total,
                    free_bytes=free, instance_id=instance, pool_block_size=agent.pool.lvol_block_size,
                    heads_digest=digests.heads, replicas_digest=digests.replicas, metrics_url=metrics_url),
                    timeout=10)
                lease.renew(instance, sent, reply.head_lease_ms)
                if readiness is not None:
                    readiness.registered = True
                interval = max(reply.heartbeat_interval_ms, 100) / 1000
                log.info("registered with controller %s (head lease %d ms)", endpoint, reply.head_lease_ms)
                beats = _Beats(stub)
                try:
                    while not stop.is_set():
                        total, free, healthy = await _capacity(agent)
                        healthy = healthy and (await agent.health())["healthy"]
                        instance, sent = lease.instance, time.monotonic()
                        beat = await beats.send(pb.HeartbeatRequest(
                            node_id=agent.node_id, total_bytes=total, free_bytes=free, healthy=healthy,
                            instance_id=instance, heads_digest=digests.heads, replicas_digest=digests.replicas,
                            want_readiness=readiness is not None and readiness.wanted()))
                        if beat.known:
                            lease.renew(instance, sent, reply.head_lease_ms)
                            if readiness is not None and beat.HasField("readiness"):
                                readiness.answered(beat.readiness.ready, beat.readiness.reason)
                        else:
                            log.info("controller %s does not know this agent instance; registering again", endpoint)
                            break
                        if readiness is not None:
                            await _pause(stop, wake, interval)
                        else:
                            try:
                                await asyncio.wait_for(stop.wait(), interval)
                            except asyncio.TimeoutError:
                                pass
                finally:
                    beats.close()
                    if readiness is not None:
                        readiness.registered = False
        except Exception as e:  # noqa: BLE001 - whatever went wrong, the agent calls in again
            if isinstance(e, grpc.aio.AioRpcError):
                log.debug("controller %s: %s: %s", endpoint, e.code().name, e.details())
            elif isinstance(e, asyncio.TimeoutError):
                log.debug("controller %s: no answer to a heartbeat within %d s", endpoint, HEARTBEAT_TIMEOUT)
            else:
                log.warning("controller %s: %s: %r; calling in again", endpoint, type(e).__name__, e)
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except asyncio.TimeoutError:
                pass
