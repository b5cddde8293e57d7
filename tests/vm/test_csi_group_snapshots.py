"""Group snapshots seen from a real kernel: a guest writes to two volumes (dependent writes, native
NVMe multipath) while the CSI plugin in the guest takes group snapshots of them; the restored
snapshots must agree on one instant and the writer must see a pause, never an error.
The cluster (controller, three agents, real SPDK) runs on the host side of the test bed."""

from __future__ import annotations

import pytest

from tests.vm.test_csi_node import SOCKET, csi_guest  # noqa: F401 - the fixture

pytestmark = [pytest.mark.vm, pytest.mark.spdk]


async def test_group_snapshots_agree_on_one_instant_while_a_host_writes(csi_guest):  # noqa: F811
    g, cluster, pythonpath = csi_guest
    res = g.run(["python3", "/meshblock/tests/vm/csi_group_scenario.py", f"unix://{SOCKET}"],
                env={"PYTHONPATH": pythonpath}, timeout=900)
    log = g.run("tail -40 /tmp/csi-plugin.log").stdout
    assert res.rc == 0, f"{res.stdout}\n{res.stderr}\n--- plugin log ---\n{log}\n--- controller ---\n" \
                        f"{cluster.controller.tail(30)}"
    assert "SCENARIO OK" in res.stdout
    print(res.stdout)   # the snapshots' sequence numbers and the writer's longest wait, for the record
    from meshblock.proto.meshblock.v1 import admin_pb2 as pb
    left = await cluster.volumes.ListVolumes(pb.ListVolumesRequest())
    assert not left.volumes, "the scenario's volumes were deleted"
    assert not (await cluster.volumes.ListGroupSnapshots(pb.ListGroupSnapshotsRequest())).group_snapshots
