"""Head failover seen from a real kernel: a guest with native NVMe multipath writes to a 3-replica
volume through the CSI plugin (connected to the head and to both standby heads) while the test
kills the head node (its agent and both SPDK processes). The writer must see a pause, no error,
and every block must hold its last acknowledged write."""

from __future__ import annotations

import asyncio
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


async def test_head_failover_under_a_verifying_writer(csi_guest):  # noqa: F811
    g, cluster, pythonpath = csi_guest
    g.check(f"rm -f {OUT} /tmp/failover-stop; PYTHONPATH={pythonpath} setsid python3 "
            f"/meshblock/tests/vm/csi_failover_scenario.py unix://{SOCKET} > {OUT} 2>&1 < /dev/null &")
    out = await wait_output(g, "WRITING", 600)
    assert "WRITING" in out, out + g.run("dmesg | grep -i nvme | tail -40; nvme list-subsys").stdout
    vid = next(line.split()[1] for line in out.splitlines() if line.startswith("VOLUME "))
    await asyncio.sleep(3)
    v = await cluster.volumes.GetVolume(pb.GetVolumeRequest(ref=vid))
    victim = cluster.agent_by_id(v.head_node_id)
    t0 = time.monotonic()
    await down(cluster, victim.name)
    deadline = time.monotonic() + 120
    while v.head_node_id == victim.data_dir.joinpath("node-id").read_text().strip():
        assert time.monotonic() < deadline, "the head did not move"
        await asyncio.sleep(0.2)
        v = await cluster.volumes.GetVolume(pb.GetVolumeRequest(ref=vid))
    moved = time.monotonic() - t0
    await asyncio.sleep(8)   # the writer goes on against the promoted head (rebuilding the others)
    g.check("touch /tmp/failover-stop")
    out = await wait_output(g, "SCENARIO OK", 600)
    log = g.run("tail -30 /tmp/csi-plugin.log").stdout
    print(out)
    print(f"head moved {moved:.1f} s after the kill")
    assert "SCENARIO OK" in out, f"{out}\n--- plugin log ---\n{log}\n--- controller ---\n{cluster.controller.tail(40)}"
