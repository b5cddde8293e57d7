"""Placement rules, including property tests over random clusters."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshblock.control.placement import Candidate, PlacementError, domain, place

GiB = 1 << 30


def node(i, zone=None, total=100 * GiB, prov=0, up=True, sched=True):
    return Candidate(node_id=f"id{i}", name=f"n{i}", up=up, schedulable=sched,
                     labels={"zone": zone} if zone else {}, total_bytes=total, provisioned_bytes=prov)


def test_distinct_nodes_least_loaded_first():
    nodes = [node(1, prov=50 * GiB), node(2, prov=10 * GiB), node(3, prov=30 * GiB)]
    assert place(GiB, 2, nodes).node_ids == ["id2", "id3"]


def test_spread_by_zone():
    nodes = [node(1, "a"), node(2, "a"), node(3, "b")]
    assert sorted(place(GiB, 2, nodes, spread="zone").node_ids) in (["id1", "id3"], ["id2", "id3"])
    with pytest.raises(PlacementError, match="distinct zone values: 2 possible"):
        place(GiB, 3, nodes, spread="zone")


def test_reasons_name_every_refused_node():
    nodes = [node(1, up=False), node(2, sched=False), node(3, total=GiB, prov=GiB)]
    with pytest.raises(PlacementError) as ei:
        place(GiB, 1, nodes, overcommit=1.0)
    r = ei.value.reasons
    assert r["n1"] == "down" and r["n2"] == "cordoned or draining" and "overcommit" in r["n3"]
    assert "n1: down" in str(ei.value)


def test_overcommit_allows_thin_provisioning_up_to_the_ratio():
    assert place(300 * GiB, 1, [node(1)], overcommit=4.0).node_ids == ["id1"]
    with pytest.raises(PlacementError):
        place(401 * GiB, 1, [node(1)], overcommit=4.0)


def test_replacement_avoids_nodes_and_domains_in_use():
    nodes = [node(1, "a"), node(2, "b"), node(3, "b"), node(4, "c")]
    p = place(GiB, 1, nodes, spread="zone", exclude_nodes={"id1"}, taken_domains={"a", "b"})
    assert p.node_ids == ["id4"]


clusters = st.lists(
    st.builds(lambda i, z, total, prov, up, sched: node(i, z, total, prov, up, sched),
              st.integers(0, 10**6), st.sampled_from([None, "a", "b", "c", "d"]), st.integers(0, 64).map(lambda g: g * GiB),
              st.integers(0, 200).map(lambda g: g * GiB), st.booleans(), st.booleans()),
    max_size=12, unique_by=lambda c: c.node_id)


@settings(max_examples=300, deadline=None)
@given(clusters, st.integers(1, 5), st.integers(1, 50), st.sampled_from(["", "zone"]),
       st.floats(1.0, 5.0))
def test_placement_properties(nodes, count, size_gib, spread, overcommit):
    size = size_gib * GiB
    try:
        p = place(size, count, nodes, spread=spread, overcommit=overcommit)
    except PlacementError as e:
        # refused only when not enough eligible domains exist
        eligible = {domain(c, spread) for c in nodes if c.up and c.schedulable and c.total_bytes > 0
                    and c.provisioned_bytes + size <= c.total_bytes * overcommit}
        assert len(eligible) < count
        assert set(e.reasons) <= {c.name for c in nodes}
        return
    by_id = {c.node_id: c for c in nodes}
    chosen = [by_id[i] for i in p.node_ids]
    assert len(chosen) == count == len(set(p.node_ids))
    assert len({domain(c, spread) for c in chosen}) == count
    for c in chosen:
        assert c.up and c.schedulable
        assert c.provisioned_bytes + size <= c.total_bytes * overcommit


def test_one_block_size_per_volume():
    """A raid's members share a block size: a volume's replicas never mix pools of 512 and 4096."""
    nodes = [Candidate(node_id=f"id{i}", name=f"n{i}", up=True, schedulable=True, labels={}, total_bytes=100 * GiB,
                       provisioned_bytes=i, block_size=bs) for i, bs in enumerate((4096, 512, 4096, 512, 512))]
    # no size asked: the size most nodes have, all replicas alike
    got = place(GiB, 3, nodes).node_ids
    assert sorted(got) == ["id1", "id3", "id4"]
    assert sorted(place(GiB, 2, nodes[:3]).node_ids) == ["id0", "id2"]   # 4096 is the only size with two
    # a replacement goes where the volume's other replicas' size is
    assert place(GiB, 1, nodes, block_size=4096, exclude_nodes={"id0"}).node_ids == ["id2"]
    with pytest.raises(PlacementError) as ei:
        place(GiB, 3, nodes, block_size=4096)
    assert ei.value.reasons["n1"] == "its pool has 512-byte blocks; this volume needs 4096"
    # a node that reports no block size fits any
    nodes.append(Candidate(node_id="idx", name="nx", up=True, schedulable=True, labels={}, total_bytes=100 * GiB,
                           provisioned_bytes=0, block_size=0))
    assert "idx" in place(GiB, 3, nodes, block_size=4096).node_ids


async def test_large_cluster_places_among_a_sample_and_falls_back_to_every_node(tmp_path):
    """Past PLACEMENT_SAMPLE nodes a create scores a random sample of them; a volume the sample cannot
    hold is placed among every node."""
    import time
    import types
    import uuid

    from meshblock.control.liveness import Liveness, Seen
    from meshblock.control.repo import Repo
    from meshblock.control.view import ClusterView
    from meshblock.control.volumes import PLACEMENT_SAMPLE, VolumeManager, VolumeSpec
    from meshblock.model import Node, Replica
    from meshblock.store import open_store

    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    await store.open()
    view = ClusterView(store)
    view.start()
    try:
        repo = Repo(store, view)
        await view.ready.wait()
        # three nodes, one per zone, with big pools; every other node's pool is small
        nodes = [Node(id=str(uuid.uuid4()), name=f"n{i:03d}", labels={"zone": f"z{i % 3}"}, slot=i,
                      total_bytes=(10240 if i < 3 else 1) * GiB, free_bytes=(10240 if i < 3 else 1) * GiB)
                 for i in range(3 * PLACEMENT_SAMPLE)]
        for i in range(0, len(nodes), 50):
            await repo.commit(create=nodes[i:i + 50])
        liveness = Liveness(repo)
        for n in nodes:
            liveness.seen[n.id] = Seen(time.monotonic(), "instance")
        mgr = VolumeManager(repo, liveness, types.SimpleNamespace(view=view, kick=lambda *a: None))

        cands, all_nodes = await mgr.candidates(sample=PLACEMENT_SAMPLE)
        assert len(cands) == PLACEMENT_SAMPLE and len(all_nodes) == len(nodes)
        assert len({c.node_id for c in cands}) == PLACEMENT_SAMPLE

        small = await mgr.create(VolumeSpec(name="small", size_bytes=GiB, replicas=3, spread="zone", labels={}))
        big = await mgr.create(VolumeSpec(name="big", size_bytes=1024 * GiB, replicas=3, spread="zone", labels={}))
        placed = {v.id: sorted(r.node_id for r in view.replicas_of(v.id)) for v in (small, big)}
        assert len(placed[small.id]) == 3
        assert placed[big.id] == sorted(n.id for n in nodes[:3]), "only the three big pools hold 1 TiB"
        assert len(await repo.list(Replica)) == 6
    finally:
        await view.stop()
        await store.close()
