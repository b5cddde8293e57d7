"""The simulated pool keeps its allocation as a running total (read by every heartbeat of every
simulated node); it must equal the sum over its lvols after every kind of change."""

from __future__ import annotations

from pathlib import Path

from meshblock.agent.config import AgentConfig
from tests.support.sim.agent import SimAgent
from tests.support.sim.fabric import Fabric, SimDisk

MiB = 1 << 20


def summed(disk: SimDisk) -> int:
    return sum(lv.allocated_bytes for lv in disk.lvols.values())


async def test_allocation_total_follows_every_change(tmp_path: Path):
    disk = SimDisk(1024 * MiB)
    target = Fabric().start_target("n1", "nqn.2026-11.io.meshblock:host:n1", disk)
    agent = SimAgent(AgentConfig(name="n1", data_dir=tmp_path, node_id="n1", nvmf_address="127.0.0.1"), target)
    seen = []

    def check():
        assert disk.allocated_bytes == summed(disk)
        assert disk.free_bytes == disk.total_bytes - summed(disk)
        seen.append(disk.allocated_bytes)

    await agent.create_replica("thick", 64 * MiB, thin=False)
    check()
    await agent.create_replica("thin", 64 * MiB, thin=True)
    check()
    await agent.resize_replica("thick", 128 * MiB)
    check()
    await agent.create_snapshot("thick", "s1")        # the snapshot takes the origin's clusters
    check()
    await agent.clone_snapshot("s1", "clone")
    check()
    await agent.delete_replica("thick")
    check()
    await agent.delete_snapshot("s1")                  # merged into its one clone
    check()
    await agent.delete_replica("clone")
    await agent.delete_replica("thin")
    check()
    assert seen == [64 * MiB, 64 * MiB, 128 * MiB, 128 * MiB, 128 * MiB, 128 * MiB, 128 * MiB, 0]
    assert (await agent.pool.info()).free_bytes == disk.total_bytes
