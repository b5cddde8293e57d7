"""gRPC clients of the node agents, one channel per agent endpoint."""

from __future__ import annotations

import grpc

from ..errors import Unavailable
from ..proto.meshblock.v1 import agent_pb2_grpc


class AgentClients:
    def __init__(self, credentials: grpc.ChannelCredentials | None = None, tls_name: str = ""):
        self._channels: dict[str, grpc.aio.Channel] = {}
        self.credentials = credentials
        # agents may share one certificate issued to a name rather than to each node's address
        self.options = [("grpc.ssl_target_name_override", tls_name)] if tls_name else []

    def stub(self, endpoint: str) -> agent_pb2_grpc.AgentServiceStub:
        if not endpoint:
            raise Unavailable("node has no agent endpoint")
        ch = self._channels.get(endpoint)
        if ch is None:
            if endpoint.startswith("unix:") or self.credentials is None:
                ch = grpc.aio.insecure_channel(endpoint)
            else:
                ch = grpc.aio.secure_channel(endpoint, self.credentials, options=self.options)
            self._channels[endpoint] = ch
        return agent_pb2_grpc.AgentServiceStub(ch)

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()
