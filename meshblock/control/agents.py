"""gRPC clients of the node agents, one channel per agent endpoint.

Calls to one agent are bounded (``per_agent`` at once): when hundreds of volumes move to the
surviving nodes after a node fails, each surviving agent sees a steady stream of calls, not a
burst of hundreds; the others wait their turn in the controller.
"""

from __future__ import annotations

import asyncio

import grpc

from ..errors import Unavailable
from ..proto.meshblock.v1 import agent_pb2_grpc


class AgentClients:
    def __init__(self, credentials: grpc.ChannelCredentials | None = None, tls_name: str = "",
                 per_agent: int = 16):
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._stubs: dict[str, _Bounded] = {}
        self.per_agent = per_agent
        self.credentials = credentials
        # A channel to an agent that was down keeps backing off between connection attempts (up to
        # 120 s by gRPC's defaults), so the first calls after the agent is back would still fail:
        # cap the backoff at a second, and start a new channel when the agent registers again.
        self.options: list[tuple[str, object]] = [("grpc.initial_reconnect_backoff_ms", 200),
                                                  ("grpc.max_reconnect_backoff_ms", 1000)]
        # agents may share one certificate issued to a name rather than to each node's address
        if tls_name:
            self.options.append(("grpc.ssl_target_name_override", tls_name))

    def stub(self, endpoint: str) -> "_Bounded":
        if not endpoint:
            raise Unavailable("node has no agent endpoint")
        cached = self._stubs.get(endpoint)
        if cached is not None:
            return cached
        ch = self._channels.get(endpoint)
        if ch is None:
            if endpoint.startswith("unix:") or self.credentials is None:
                ch = grpc.aio.insecure_channel(endpoint, options=self.options)
            else:
                ch = grpc.aio.secure_channel(endpoint, self.credentials, options=self.options)
            self._channels[endpoint] = ch
        limit = self._limits.get(endpoint)
        if limit is None:
            limit = self._limits[endpoint] = asyncio.Semaphore(self.per_agent)
        stub = self._stubs[endpoint] = _Bounded(agent_pb2_grpc.AgentServiceStub(ch), limit)
        return stub

    def renew(self, endpoint: str, grace: float = 30.0) -> None:
        """Dial ``endpoint`` afresh from now on (its agent restarted); the old channel is closed after
        ``grace`` seconds, so calls already on it end as they would have."""
        self._stubs.pop(endpoint, None)
        ch = self._channels.pop(endpoint, None)
        if ch is not None:
            asyncio.get_running_loop().call_later(grace, lambda: asyncio.ensure_future(ch.close()))

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()
        self._stubs.clear()


class _Bounded:
    """An AgentService stub whose calls hold one of the agent's slots while they run."""

    def __init__(self, stub: agent_pb2_grpc.AgentServiceStub, limit: asyncio.Semaphore):
        self._stub = stub
        self._limit = limit

    def __getattr__(self, method: str):
        call = getattr(self._stub, method)
        limit = self._limit

        async def bounded(request, **kw):
            async with limit:
                return await call(request, **kw)
        setattr(self, method, bounded)    # made once per method and agent
        return bounded
