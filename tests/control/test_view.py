"""The controller's view of the store: it follows every change (this process's and others'), its
indexes agree with a full read, and a commit through the repo is in the view when it returns."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from meshblock.control.repo import Repo
from meshblock.control.view import ClusterView
from meshblock.model import Node, Replica, ReplicaState, Snapshot, Volume, VolumeState
from meshblock.store import open_store


def _vol(name: str, head: str = "", standby: dict | None = None) -> Volume:
    return Volume(id=str(uuid.uuid4()), name=name, size_bytes=1 << 30, replicas=2, head_node_id=head,
                  standby_paths=standby or {})


def _rep(v: Volume, node: str, size: int = 1 << 30) -> Replica:
    return Replica(id=str(uuid.uuid4()), volume_id=v.id, node_id=node, size_bytes=size,
                   state=ReplicaState.ONLINE)


async def _full_read(repo: Repo) -> dict:
    reps = await repo.list(Replica)
    vols = await repo.list(Volume)
    by_volume: dict[str, set[str]] = {}
    by_node: dict[str, set[str]] = {}
    provisioned: dict[str, int] = {}
    for r in reps:
        by_volume.setdefault(r.volume_id, set()).add(r.id)
        by_node.setdefault(r.node_id, set()).add(r.id)
        provisioned[r.node_id] = provisioned.get(r.node_id, 0) + r.size_bytes
    heads: dict[str, set[str]] = {}
    for v in vols:
        for n in set(v.standby_paths) | ({v.head_node_id} if v.head_node_id else set()):
            heads.setdefault(n, set()).add(v.id)
    states: dict[str, int] = {}
    for v in vols:
        states[v.state.value] = states.get(v.state.value, 0) + 1
    # pages in name order, as the store's name index gives them
    pages = [[v.id for v in await repo.list(Volume, start_after=after, limit=2, index="name")]
             for after in ("", *sorted(v.name for v in vols))]
    return dict(by_volume=by_volume, by_node=by_node, provisioned=provisioned, heads=heads, states=states,
                pages=pages)


def _indexes(view: ClusterView) -> dict:
    names = sorted(v.name for v in view.all(Volume))
    return dict(by_volume=dict(view.replicas_by_volume), by_node=dict(view.replicas_by_node),
                provisioned=dict(view.provisioned), heads=dict(view.volumes_by_node),
                states=dict(view.volume_states),
                pages=[[v.id for v in view.volumes_after(after, 2)] for after in ("", *names)])


@pytest.fixture
async def stores(tmp_path):
    """Two store objects on one SQLite file: the view's, and another process's stand-in."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    a, b = open_store(url), open_store(url)
    yield a, b
    await a.close()
    await b.close()


async def test_the_view_follows_own_and_foreign_changes_and_its_indexes_match_a_full_read(stores):
    a, b = stores
    view = ClusterView(a)
    repo, other = Repo(a, view), Repo(b)
    n1, n2 = Node(id=str(uuid.uuid4()), name="n1"), Node(id=str(uuid.uuid4()), name="n2")
    v1 = _vol("v1", head=n1.id, standby={n2.id: "127.0.0.1:4420"})
    await repo.commit(create=[n1, n2, v1, _rep(v1, n1.id), _rep(v1, n2.id)])   # before the view starts
    heard: list[tuple[str, str]] = []
    view.listeners.append(lambda kind, id, old, new: heard.append((kind, id)))
    view.start()
    try:
        await asyncio.wait_for(view.ready.wait(), 10)
        assert _indexes(view) == await _full_read(repo)
        assert view.volumes_on(n2.id) == {v1.id}

        # this process: in the view as soon as commit returns
        v2 = _vol("v2", head=n2.id)
        r2 = _rep(v2, n2.id, size=2 << 30)
        await repo.commit(create=[v2, r2, _vol("a0"), _vol("v10")])
        assert view.get(Volume, v2.id) is not None and [r.id for r in view.replicas_of(v2.id)] == [r2.id]
        assert ("volume", v2.id) in heard and ("replica", r2.id) in heard

        # moves, state changes and deletes keep every index right
        cur = view.get(Volume, v1.id)
        cur.head_node_id, cur.standby_paths, cur.state = n2.id, {}, VolumeState.AVAILABLE
        moved = view.get(Replica, r2.id)
        moved.node_id = n1.id
        await repo.commit(put=[cur, moved])
        assert view.volumes_on(n1.id) == {v1.id, v2.id}   # v1 by its replica, v2 by its moved one
        assert _indexes(view) == await _full_read(repo)

        # another process: arrives by the feed
        s = Snapshot(id=str(uuid.uuid4()), name="s", volume_id=v2.id)
        await other.commit(create=[s])
        gone = view.get(Volume, v1.id)
        await other.commit(delete=[gone, *view.replicas_of(v1.id)])
        for _ in range(100):
            if view.get(Volume, v1.id) is None and view.snapshots_of(v2.id):
                break
            await asyncio.sleep(0.05)
        assert view.get(Volume, v1.id) is None and view.replicas_of(v1.id) == []
        assert [x.id for x in view.snapshots_of(v2.id)] == [s.id]
        assert _indexes(view) == await _full_read(repo)
        assert view.count(Volume) == 3

        # records handed out are copies: changing one does not change the view
        copy = view.get(Volume, v2.id)
        copy.hosts.append("nqn.2014-08.org.nvmexpress:uuid:x")
        assert view.get(Volume, v2.id).hosts == []
    finally:
        await view.stop()
