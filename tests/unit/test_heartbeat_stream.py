"""Agents' heartbeats over real gRPC: one stream per agent and controller, a call each where the
controller has no stream, and registration again when the controller ends the stream."""

from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace

import grpc

from meshblock.agent.readiness import Readiness, serve_http
from meshblock.agent.registration import Digests, Lease, _register_loop
from meshblock.agent.pool import PoolInfo
from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from meshblock.proto.meshblock.v1 import admin_pb2_grpc as pb_grpc
from tests.support.eventually import eventually

def _async(check):
    async def run():
        return check()
    return run


NODE_ID = "2f1c9d6e-0b5a-4c1e-9d2a-1b3c4d5e6f70"


class _Pool:
    lvol_block_size = 4096

    async def info(self) -> PoolInfo:
        return PoolInfo(name="pool", uuid="", total_bytes=1 << 30, free_bytes=1 << 29, cluster_size=1 << 20,
                        block_size=4096)


class _Agent:
    """What the registration loop reads of a NodeAgent."""
    node_id = NODE_ID
    pool = _Pool()
    config = SimpleNamespace(name="n1", advertise="unix:/nonexistent", host_nqn="nqn.2026-11.io.meshblock:host:n1",
                             nvmf_address="127.0.0.1", nvmf_port=4420, labels={}, tls_cert="", tls_ca="", tls_key="")

    async def health(self) -> dict:
        return {"healthy": True}


class Registry(pb_grpc.NodeRegistryServicer):
    """Counts what agents send; ``end_stream_after``: abort each stream after that many heartbeats."""

    def __init__(self, streams: bool = True, end_stream_after: int = 0, interval_ms: int = 100):
        self.registers: list[pb.RegisterRequest] = []
        self.interval_ms = interval_ms
        self.readiness = pb.NodeReadiness(ready=False, reason="replica 1a2b3c4d of volume db is rebuilding (40%)")
        self.readiness_asked = 0
        self.calls = 0
        self.streams = 0
        self.stream_beats = 0
        self.end_stream_after = end_stream_after
        if not streams:
            self.Heartbeats = super().Heartbeats    # the generated default: UNIMPLEMENTED

    async def Register(self, request, context):
        self.registers.append(request)
        return pb.RegisterReply(heartbeat_interval_ms=self.interval_ms, head_lease_ms=2000)

    async def Heartbeat(self, request, context):
        self.calls += 1
        return pb.HeartbeatReply(known=request.instance_id == self.registers[-1].instance_id)

    async def Heartbeats(self, requests, context):
        self.streams += 1
        n = 0
        async for request in requests:
            if self.end_stream_after and n == self.end_stream_after:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "this controller is a standby")
            n += 1
            self.stream_beats += 1
            known = request.instance_id == self.registers[-1].instance_id
            if known and request.want_readiness:
                self.readiness_asked += 1
                yield pb.HeartbeatReply(known=True, readiness=self.readiness)
            else:
                yield pb.HeartbeatReply(known=known)


@contextlib.asynccontextmanager
async def _running(tmp_path, registry: Registry):
    server = grpc.aio.server()
    pb_grpc.add_NodeRegistryServicer_to_server(registry, server)
    endpoint = f"unix:{tmp_path / 'controller.sock'}"
    server.add_insecure_port(endpoint)
    await server.start()
    stop, lease = asyncio.Event(), Lease()
    digests = Digests()
    digests.heads, digests.replicas = "h1", "r1"
    task = asyncio.create_task(_register_loop(_Agent(), [endpoint], stop, lease, digests,
                                              metrics_url="http://127.0.0.1:9101/metrics", readiness=Readiness()))
    try:
        yield lease
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await server.stop(None)


async def test_heartbeats_share_one_stream_and_registration_carries_the_digests_and_metrics_url(tmp_path):
    registry = Registry()
    async with _running(tmp_path, registry) as lease:
        await eventually(_async(lambda: registry.stream_beats >= 5), 10, "five heartbeats")
        assert lease.until is not None
    assert registry.streams == 1 and registry.calls == 0
    assert registry.readiness_asked == 0      # no /readyz probe: the controller is not asked
    assert len(registry.registers) == 1
    assert (registry.registers[0].heads_digest, registry.registers[0].replicas_digest) == ("h1", "r1")
    assert registry.registers[0].metrics_url == "http://127.0.0.1:9101/metrics"


async def test_a_controller_without_streams_gets_a_call_per_heartbeat(tmp_path):
    registry = Registry(streams=False)
    async with _running(tmp_path, registry) as lease:
        await eventually(_async(lambda: registry.calls >= 3), 10, "three heartbeat calls")
        assert lease.until is not None
    assert len(registry.registers) == 1 and registry.stream_beats == 0


async def test_a_stream_the_controller_ends_makes_the_agent_register_again(tmp_path):
    registry = Registry(end_stream_after=2)
    async with _running(tmp_path, registry):
        await eventually(_async(lambda: len(registry.registers) >= 3), 10, "three registrations")
    assert registry.streams >= 3 and registry.calls == 0


async def test_an_agent_whose_controller_dies_calls_in_at_the_next(tmp_path):
    """The controller's process ends (its stream with it): the next heartbeat goes to the other."""
    first, second = Registry(), Registry()
    servers = []
    endpoints = []
    for name, registry in (("c1", first), ("c2", second)):
        server = grpc.aio.server()
        pb_grpc.add_NodeRegistryServicer_to_server(registry, server)
        endpoints.append(f"unix:{tmp_path / (name + '.sock')}")
        server.add_insecure_port(endpoints[-1])
        await server.start()
        servers.append(server)
    stop, lease = asyncio.Event(), Lease()
    task = asyncio.create_task(_register_loop(_Agent(), endpoints, stop, lease, Digests()))
    try:
        await eventually(_async(lambda: first.stream_beats >= 2), 10, "heartbeats to the first controller")
        await servers[0].stop(None)
        await eventually(_async(lambda: second.stream_beats >= 2), 10, "heartbeats to the second controller")
        assert not task.done()
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await servers[1].stop(None)


async def test_readyz_asks_the_controller_in_a_heartbeat_sent_at_once_and_answers_what_it_says(tmp_path):
    """/readyz answers 503 with the controller's reason, then 200 once the controller says ready;
    heartbeats ask for readiness only when a probe wants it, and a probe does not wait for the
    next heartbeat (every 30 s here)."""
    import time
    import urllib.error
    import urllib.request

    registry = Registry(interval_ms=30_000)
    server = grpc.aio.server()
    pb_grpc.add_NodeRegistryServicer_to_server(registry, server)
    endpoint = f"unix:{tmp_path / 'controller.sock'}"
    server.add_insecure_port(endpoint)
    await server.start()
    readiness = Readiness(wait=1.5)
    httpd = serve_http(0, "127.0.0.1", readiness)
    url = f"http://127.0.0.1:{httpd.server_port}"

    def get(path: str) -> tuple[int, str, float]:
        t = time.monotonic()
        try:
            with urllib.request.urlopen(url + path, timeout=10) as r:
                return r.status, r.read().decode(), time.monotonic() - t
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(), time.monotonic() - t

    stop, lease = asyncio.Event(), Lease()
    # before any controller answers: not ready, with the reason
    code, body, _ = await asyncio.to_thread(get, "/readyz")
    assert (code, body) == (503, "not ready: not registered with a controller yet\n")
    task = asyncio.create_task(_register_loop(_Agent(), [endpoint], stop, lease, Digests(), readiness=readiness))
    try:
        # the first heartbeat answers the question of the probe that came too early
        await eventually(_async(lambda: registry.readiness_asked == 1), 10, "the first heartbeat")
        await asyncio.sleep(readiness.fresh + 0.1)      # that answer is no longer fresh
        code, body, took = await asyncio.to_thread(get, "/readyz")
        assert (code, body) == (503, "not ready: replica 1a2b3c4d of volume db is rebuilding (40%)\n")
        assert took < 3 and registry.readiness_asked == 2
        # a fresh answer is reused
        code, body, took = await asyncio.to_thread(get, "/readyz")
        assert code == 503 and registry.readiness_asked == 2
        registry.readiness = pb.NodeReadiness(ready=True)
        await asyncio.sleep(readiness.fresh + 0.1)      # the last answer is no longer fresh
        code, body, _ = await asyncio.to_thread(get, "/readyz")
        assert (code, body) == (200, "ready\n") and registry.readiness_asked == 3
        # the metrics are still served on the same port
        code, body, _ = await asyncio.to_thread(get, "/metrics")
        assert code == 200 and "python_info" in body
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await server.stop(None)
        httpd.shutdown()
        httpd.server_close()


async def test_readyz_says_when_the_agent_itself_knows_it_is_not_ready():
    readiness = Readiness(local=lambda: "the node's SPDK target is not up")
    readiness.answered(True, "")
    assert readiness.check() == (False, "the node's SPDK target is not up")
