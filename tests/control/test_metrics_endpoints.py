"""Where Prometheus scrapes a cluster: the cluster status lists the controller's metrics and every
agent's, as the agents reported them when they registered, and each URL serves that process's."""

from __future__ import annotations

import asyncio
import socket
import urllib.request

from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from tests.support.backends import fake_backend
from tests.support.cluster import Cluster


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def metrics_cluster(short_tmp, tmp_path_factory, nodes: int = 2) -> tuple[Cluster, list[int]]:
    """A cluster on the fake target (no data path is involved) whose controller and agents serve
    metrics, and their ports (the controller's first)."""
    backend = fake_backend(tmp_path_factory.mktemp("fakespdk-metrics"))
    ports = free_ports(nodes + 1)
    c = Cluster(backend, short_tmp, nodes=nodes, controller_args=("--metrics-port", str(ports[0])))
    for agent, port in zip(c.agents, ports[1:]):
        agent.argv += ["--metrics-port", str(port)]
    return c, ports


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


async def test_cluster_status_lists_the_metrics_of_the_controller_and_every_agent(short_tmp, tmp_path_factory):
    c, ports = metrics_cluster(short_tmp, tmp_path_factory)
    try:
        await c.start()
        st = await c.cluster.GetClusterStatus(pb.GetClusterStatusRequest(), timeout=5)
        assert [(e.component, e.node, e.url) for e in st.metrics_endpoints] == [
            ("controller", "", f"http://127.0.0.1:{ports[0]}/metrics"),
            ("agent", "node-1", f"http://127.0.0.1:{ports[1]}/metrics"),
            ("agent", "node-2", f"http://127.0.0.1:{ports[2]}/metrics")]
        for e in st.metrics_endpoints:
            body = await asyncio.to_thread(scrape, e.url)
            if e.component == "controller":
                assert 'meshblock_grpc_requests_total{' in body and "GetClusterStatus" in body, body[:2000]
            else:
                assert "meshblock_agent_target_up 1.0" in body, body[:2000]

        # an agent started again without metrics takes its URL off the list
        await c.agents[1].stop()
        c.agents[1].argv = c.agents[1].argv[:-2]
        c.agents[1].start()
        await c.agents[1].wait_healthy()
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            st = await c.cluster.GetClusterStatus(pb.GetClusterStatusRequest(), timeout=5)
            nodes = [e.node for e in st.metrics_endpoints if e.component == "agent"]
            if nodes == ["node-1"] or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.1)
        assert nodes == ["node-1"]
    finally:
        await c.stop()
