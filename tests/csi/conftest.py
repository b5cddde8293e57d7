"""A cluster (fake or real SPDK) with the CSI plugin process in front of it, on a Unix socket."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time

import grpc
import pytest

from meshblock.proto.csi.v1 import csi_pb2_grpc as csi_grpc
from tests.support.cluster import Cluster

HOST_NQN = "nqn.2014-08.org.nvmexpress:uuid:0f3c1b52-6a1e-4c35-9d7e-2b8c4a6f1e01"
NODE_ID = "worker-1"
INITIATOR = "iqn.2026-12.io.example:worker-1"
MAX_VOLUMES = 4


class Plugin:
    def __init__(self, cluster: Cluster, root, extra_args: tuple[str, ...] = ()):
        self.socket = root / "csi.sock"
        self.log = root / "csi.log"
        argv = [sys.executable, "-m", "meshblock", "csi", "--endpoint", f"unix://{self.socket}", "--controller",
                "--node", "--node-id", NODE_ID, "--host-nqn", HOST_NQN, "--initiator-iqn", INITIATOR, "--max-volumes", str(MAX_VOLUMES), "--admin-endpoint",
                cluster.controller.listen, "--log-level", "DEBUG", *extra_args]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         env=cluster.backend.env, start_new_session=True)
        deadline = time.monotonic() + 30
        while not self.socket.exists():
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.05)
        self.channel = grpc.aio.insecure_channel(f"unix:{self.socket}")
        self.identity = csi_grpc.IdentityStub(self.channel)
        self.controller = csi_grpc.ControllerStub(self.channel)
        self.node = csi_grpc.NodeStub(self.channel)
        self.groups = csi_grpc.GroupControllerStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.asynccontextmanager
async def with_plugin(c: Cluster, root):
    """Cluster ``c`` started, with the CSI plugin in front of it; both stopped afterwards."""
    plugin = None
    try:
        await c.start()
        plugin = Plugin(c, root)
        yield c, plugin
    finally:
        if plugin is not None:
            await plugin.close()
        await c.stop()


@pytest.fixture
async def csi_cluster(backend, short_tmp):
    async with with_plugin(Cluster(backend, short_tmp / "c", nodes=3), short_tmp) as both:
        yield both


def csi_sanity_binary() -> str:
    """The csi-sanity to run (the provisioned build unless $MESHBLOCK_CSI_SANITY names another); skips
    with where it looked and how to build it when there is none."""
    from meshblock.provision.csi_sanity import find_csi_sanity

    binary, looked = find_csi_sanity()
    if binary is None:
        pytest.skip(f"csi-sanity not found: {looked}")
    return binary


def sanity_node_specs(binary: str) -> int:
    """How many Node Service specs this csi-sanity build has (a dry run lists them without a driver)."""
    import re

    out = subprocess.run([binary, "--csi.endpoint", "/nonexistent.sock", "--ginkgo.dry-run", "--ginkgo.focus",
                          "Node Service", "--ginkgo.no-color"], capture_output=True, text=True, timeout=120).stdout
    m = re.search(r"Ran (\d+) of \d+ Specs", out)
    assert m, out[-2000:]
    return int(m.group(1))
