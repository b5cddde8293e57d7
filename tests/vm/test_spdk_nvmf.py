"""A real SPDK nvmf_tgt on the host side of the bridge, used by a guest's kernel NVMe/TCP initiator."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid

import pytest

from meshblock.spdk import SpdkClient
from meshblock.spdk.discovery import SpdkNotFoundError, find_spdk
from meshblock.testbed.nvme import controllers, find_namespace, nvme_connect, nvme_disconnect, wait_gone

pytestmark = [pytest.mark.vm, pytest.mark.spdk]

MNT = "/mnt/spdk"
SIZE = 512 << 20  # mkfs.xfs wants at least 300 MiB


def _nvmf_tgt():
    try:
        install = find_spdk()
        prog = install.program("nvmf_tgt")
    except SpdkNotFoundError as e:
        pytest.skip(f"real SPDK not found: {e}")
    with open(prog, "rb") as f:
        if f.read(4) != b"\x7fELF":
            pytest.skip(f"{prog} is not a real SPDK build")
    return install, prog


async def _configure(sock: str, *, nqn: str, backing: str, ns_uuid: str, hostnqn: str, address: str) -> None:
    async with SpdkClient(sock, timeout=60) as c:
        await c.wait_ready(timeout=120)
        await c.call("nvmf_create_transport", {"trtype": "TCP"})
        await c.call("bdev_aio_create", {"filename": backing, "name": "tb_aio0", "block_size": 512})
        await c.call("nvmf_create_subsystem", {"nqn": nqn, "serial_number": "MBTB00000000001",
                                               "model_number": "meshblock testbed", "allow_any_host": False})
        await c.call("nvmf_subsystem_add_ns", {"nqn": nqn, "namespace": {"bdev_name": "tb_aio0",
                                                                        "uuid": ns_uuid}})
        await c.call("nvmf_subsystem_add_host", {"nqn": nqn, "host": hostnqn})
        await c.call("nvmf_subsystem_add_listener", {"nqn": nqn, "listen_address": {
            "trtype": "TCP", "adrfam": "IPv4", "traddr": address, "trsvcid": "4420"}})


def test_spdk_target_to_kernel_initiator(testbed):
    install, prog = _nvmf_tgt()
    b = testbed.guest("b")
    sock = str(testbed.run_dir / "spdk-nvmf.sock")
    backing = testbed.run_dir / "spdk-aio.img"
    with open(backing, "wb") as f:
        f.truncate(SIZE)
    # Interrupt mode: a polling reactor would take a whole core from the emulated guests.
    tgt = testbed.popen([prog, "--no-huge", "-s", "1024", "-m", "0x1", "--no-pci", "--disable-cpumask-locks",
                         "--interrupt-mode", "-r", sock], log="nvmf_tgt.log", env=install.env())
    nqn = f"nqn.2026-11.io.meshblock:testbed-spdk:{uuid.uuid4().hex[:12]}"
    ns_uuid = str(uuid.uuid4())
    data = os.urandom(8 << 20)
    digest = hashlib.sha256(data).hexdigest()
    try:
        asyncio.run(_configure(sock, nqn=nqn, backing=str(backing), ns_uuid=ns_uuid, hostnqn=b.hostnqn,
                               address=testbed.host_address))
        nvme_connect(b, nqn, testbed.host_address).check()
        ns = find_namespace(b, ns_uuid)
        assert ns.uuid == ns_uuid
        (ctrl,) = controllers(b, nqn)
        assert b.check(f"cat /sys/class/nvme/{ctrl}/model").strip() == "meshblock testbed"
        b.check(f"mkfs.xfs -q -f {ns.device} && mkdir -p {MNT} && mount {ns.device} {MNT}", timeout=180)
        b.write_file(f"{MNT}/data.bin", data)
        b.check(f"cd {MNT} && sha256sum data.bin > data.sha256 && sync")
        b.check(f"umount {MNT}")
        nvme_disconnect(b, nqn).check()
        wait_gone(b, ns.device)

        nvme_connect(b, nqn, testbed.host_address).check()
        ns = find_namespace(b, ns_uuid)
        b.check(f"mount {ns.device} {MNT}")
        assert b.check(f"cut -d' ' -f1 {MNT}/data.sha256").strip() == digest
        assert b.check(f"cd {MNT} && sha256sum -c data.sha256").strip() == "data.bin: OK"
        assert tgt.poll() is None, "nvmf_tgt exited"
    finally:
        b.run(f"umount {MNT}; nvme disconnect -n {nqn}")
        testbed.stop(tgt)
        backing.unlink(missing_ok=True)
