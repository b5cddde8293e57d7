"""gRPC clients of the node agents, one channel per agent endpoint."""

from __future__ import annotations

import asyncio

import grpc

from ..errors import Unavailable
from ..proto.meshblock.v1 import agent_pb2_grpc


class AgentClients:
    def __init__(self, credentials: grpc.ChannelCredentials | None = None, tls_name: str = ""):
        self._channels: dict[str, grpc.aio.Channel] = {}
        self.credentials = credentials
        # A channel to an agent that was down keeps backing off between connection attempts (up to
        # 120 s by gRPC's defaults), so the first calls after the agent is back would still fail:
        # cap the backoff at a second, and start a new channel when the agent registers again.
        self.options: list[tuple[str, object]] = [("grpc.initial_reconnect_backoff_ms", 200),
                                                  ("grpc.max_reconnect_backoff_ms", 1000)]
        # agents may share one certificate issued to a name rather than to each node's address
        if tls_name:
            self.options.append(("grpc.ssl_target_name_override", tls_name))

    def stub(self, endpoint: str) -> agent_pb2_grpc.AgentServiceStub:
        if not endpoint:
            raise Unavailable("node has no agent endpoint")
        ch = self._channels.get(endpoint)
        if ch is None:
            if endpoint.startswith("unix:") or self.credentials is None:
                ch = grpc.aio.insecure_channel(endpoint, options=self.options)
            else:
                ch = grpc.aio.secure_channel(endpoint, self.credentials, options=self.options)
            self._channels[endpoint] = ch
        return agent_pb2_grpc.AgentServiceStub(ch)

    def renew(self, endpoint: str, grace: float = 30.0) -> None:
        """Dial ``endpoint`` afresh from now on (its agent restarted); the old channel is closed after
        ``grace`` seconds, so calls already on it end as they would have."""
        ch = self._channels.pop(endpoint, None)
        if ch is not None:
            asyncio.get_running_loop().call_later(grace, lambda: asyncio.ensure_future(ch.close()))

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()
