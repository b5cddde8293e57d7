"""The controller's channels to agents: a restarted agent is dialled afresh."""

from __future__ import annotations

import asyncio

from meshblock.control.agents import AgentClients
from meshblock.control.liveness import Liveness
from meshblock.model import Node


async def test_renew_gives_a_new_channel_and_closes_the_old_one_after_its_grace():
    clients = AgentClients()
    clients.stub("127.0.0.1:1")
    old = clients._channels["127.0.0.1:1"]
    clients.stub("127.0.0.1:1")
    assert clients._channels["127.0.0.1:1"] is old        # one channel per endpoint
    clients.renew("127.0.0.1:1", grace=0.05)
    clients.stub("127.0.0.1:1")
    new = clients._channels["127.0.0.1:1"]
    assert new is not old
    await asyncio.sleep(0.2)
    # a closed aio channel answers with SHUTDOWN; the new one is still usable
    from grpc import ChannelConnectivity
    assert old.get_state() == ChannelConnectivity.SHUTDOWN
    assert new.get_state() != ChannelConnectivity.SHUTDOWN
    clients.renew("127.0.0.1:9")          # never dialled: nothing to do
    await clients.close()


def test_backoff_between_connection_attempts_is_capped():
    opts = dict(AgentClients(tls_name="agents.meshblock").options)
    assert opts["grpc.max_reconnect_backoff_ms"] <= 1000
    assert opts["grpc.ssl_target_name_override"] == "agents.meshblock"


class _Repo:
    """Just enough of the repository for registrations."""

    def __init__(self):
        self.rows: dict[str, Node] = {}
        self.view = None      # no cluster view: registrations read the rows

    async def get(self, kind, key):
        return self.rows.get(key)

    async def by_name(self, kind, name):
        return next((n for n in self.rows.values() if n.name == name), None)

    async def list(self, kind):
        return list(self.rows.values())

    async def commit(self, create=(), put=()):
        for n in [*create, *put]:
            self.rows[n.id] = n


async def test_a_new_agent_instance_is_announced_once():
    seen: list[str] = []
    live = Liveness(_Repo(), on_new_instance=lambda n: seen.append(n.endpoint))
    node = dict(id="2f1c9d6e-0b5a-4c1e-9d2a-1b3c4d5e6f70", name="n1", endpoint="127.0.0.1:7444",
                host_nqn="nqn.2026-11.io.meshblock:host:n1")
    await live.register(Node(**node), "instance-a")
    await live.register(Node(**node), "instance-a")       # the same agent again: not new
    await live.register(Node(**node), "instance-b")       # restarted
    assert seen == ["127.0.0.1:7444", "127.0.0.1:7444"]


async def test_nodes_registering_at_once_get_distinct_slots(tmp_path):
    """Each slot is a range of NVMe controller ids: two nodes with one slot would give a host two
    paths with the same controller id, and Linux refuses the second."""
    from meshblock.control.repo import Repo
    from meshblock.store import open_store

    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    await store.open()
    try:
        live = Liveness(Repo(store))
        nodes = [Node(id=f"2f1c9d6e-0b5a-4c1e-9d2a-1b3c4d5e6f7{i}", name=f"n{i}", endpoint=f"127.0.0.1:{7440 + i}",
                      host_nqn=f"nqn.2026-11.io.meshblock:host:n{i}") for i in range(6)]
        got = await asyncio.gather(*(live.register(n, f"instance-{n.name}") for n in nodes))
        assert sorted(n.slot for n in got) == list(range(6))
        assert len({n.cntlid_range for n in got}) == 6
    finally:
        await store.close()


async def test_the_metrics_url_is_written_only_when_it_changes(tmp_path):
    from meshblock.control.repo import Repo
    from meshblock.store import open_store

    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    await store.open()
    try:
        repo = Repo(store)
        live = Liveness(repo)
        node = dict(id="2f1c9d6e-0b5a-4c1e-9d2a-1b3c4d5e6f70", name="n1", endpoint="127.0.0.1:7444",
                    host_nqn="nqn.2026-11.io.meshblock:host:n1", metrics_url="http://127.0.0.1:9101/metrics")
        await live.register(Node(**node), "instance-a")
        first = await repo.get(Node, node["id"])
        assert first.metrics_url == "http://127.0.0.1:9101/metrics"
        await live.register(Node(**node), "instance-b")        # restarted, same URL: no write
        assert (await repo.get(Node, node["id"])).revision == first.revision
        await live.register(Node(**dict(node, metrics_url="http://127.0.0.1:9200/metrics")), "instance-c")
        again = await repo.get(Node, node["id"])
        assert again.metrics_url == "http://127.0.0.1:9200/metrics" and again.revision > first.revision
    finally:
        await store.close()


def test_metrics_urls_name_an_address_prometheus_can_reach():
    from meshblock.util import metrics_url

    assert metrics_url("127.0.0.1", 9100) == "http://127.0.0.1:9100/metrics"
    assert metrics_url("fd00::1", 9100) == "http://[fd00::1]:9100/metrics"
    assert metrics_url("[fd00::1]", 9100) == "http://[fd00::1]:9100/metrics"
    # a wildcard is where the process listens, not where it is reached
    assert metrics_url("0.0.0.0", 9100, "10.0.0.5") == "http://10.0.0.5:9100/metrics"
    assert metrics_url("::", 9100, "fd00::5") == "http://[fd00::5]:9100/metrics"
    assert metrics_url("127.0.0.1", 0) == ""         # serves no metrics
