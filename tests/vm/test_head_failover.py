"""Faults under a verifying writer, seen from a real kernel: a guest with native NVMe multipath
writes to a 3-replica volume through the CSI plugin (connected to the head and to both standby
heads) while the test, one after the other: kills a replica node's SPDK data target, kills the
head node's agent (its targets keep serving), kills the controller, then kills the head node
(agent and both SPDK processes) and, once the volume has two in-sync replicas again, the new head
node too. The writer must see pauses and no error, and every block must hold its last
acknowledged write."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from tests.control.test_replicated import down
from tests.vm.test_csi_node import SOCKET, csi_guest  # noqa: F401 - the fixture

pytestmark = [pytest.mark.vm, pytest.mark.spdk]
OUT = "/tmp/failover.out"


async def wait_output(g, word: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        out = g.run(f"cat {OUT}").stdout
        if word in out or "FAILED" in out or "Traceback" in out:
            return out
        assert time.monotonic() < deadline, f"no {word!r} in the scenario's output:\n{out}"
        await asyncio.sleep(1)


async def start_writer(g, pythonpath: str) -> str:
    """Start the verifying writer in the guest (csi_failover_scenario.py); the volume's id once it writes."""
    g.check(f"rm -f {OUT} /tmp/failover-stop; PYTHONPATH={pythonpath} setsid python3 "
            f"/meshblock/tests/vm/csi_failover_scenario.py unix://{SOCKET} > {OUT} 2>&1 < /dev/null &")
    out = await wait_output(g, "WRITING", 600)
    assert "WRITING" in out, out + g.run("dmesg | grep -i nvme | tail -40; nvme list-subsys").stdout
    return next(line.split()[1] for line in out.splitlines() if line.startswith("VOLUME "))


async def stop_writer(g, cluster, events: list[str]) -> str:
    """Stop the writer; its output, which must say that it saw no error and read back every block."""
    g.check("touch /tmp/failover-stop")
    out = await wait_output(g, "SCENARIO OK", 600)
    log = g.run("tail -30 /tmp/csi-plugin.log").stdout
    print(out)
    print("\n".join(events))
    assert "SCENARIO OK" in out, f"{out}\n--- plugin log ---\n{log}\n--- controller ---\n{cluster.controller.tail(40)}"
    return out


async def volume(cluster, vid: str, pred, what: str, timeout: float = 180) -> pb.Volume:
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = await cluster.volumes.GetVolume(pb.GetVolumeRequest(ref=vid))
            if pred(v):
                return v
        except Exception:  # noqa: BLE001 - the controller may be restarting
            pass
        assert time.monotonic() < deadline, f"the volume never got {what}"
        await asyncio.sleep(0.3)


def node_id(agent) -> str:
    return agent.data_dir.joinpath("node-id").read_text().strip()


def online(v: pb.Volume) -> int:
    return sum(r.state == "online" for r in v.replica_status)


async def test_faults_under_a_verifying_writer(csi_guest):  # noqa: F811
    g, cluster, pythonpath = csi_guest
    vid = await start_writer(g, pythonpath)
    events = []
    await asyncio.sleep(3)
    v = await cluster.volumes.GetVolume(pb.GetVolumeRequest(ref=vid))
    head = cluster.agent_by_id(v.head_node_id)

    # a replica node's data target dies (its agent restarts it): degraded, then rebuilt
    other = next(a for a in cluster.agents if a is not head)
    os.kill(other.target_pid(), signal.SIGKILL)
    await volume(cluster, vid, lambda v: v.state == "available" and online(v) == 3, "its replica back")
    events.append("replica node's SPDK killed and rebuilt")

    # the head node's agent dies and comes back: the data path never stops
    await head.stop(signal.SIGKILL)
    head.start()
    await head.wait_healthy()
    events.append("head node's agent restarted")

    # the controller dies and comes back
    await cluster.controller.stop(signal.SIGKILL)
    cluster.controller.start()
    await cluster.controller.wait_nodes(3)
    await asyncio.sleep(2)
    events.append("controller restarted")

    # the head node dies: a standby is promoted
    t0 = time.monotonic()
    await down(cluster, head.name)
    v = await volume(cluster, vid, lambda v: v.head_node_id not in ("", node_id(head)), "a new head")
    events.append(f"head node killed; head moved after {time.monotonic() - t0:.1f} s")
    second = cluster.agent_by_id(v.head_node_id)
    # two failures in a row: once the last standby's replica is in sync, the new head dies too
    await volume(cluster, vid, lambda v: online(v) == 2, "two in-sync replicas")
    await asyncio.sleep(2)
    t0 = time.monotonic()
    await down(cluster, second.name)
    v = await volume(cluster, vid, lambda v: v.head_node_id not in ("", node_id(head), node_id(second)),
                     "a third head")
    events.append(f"new head node killed; head moved after {time.monotonic() - t0:.1f} s")
    await asyncio.sleep(5)   # the writer goes on against the last replica
    await stop_writer(g, cluster, events)
