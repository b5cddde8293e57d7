"""Kernel NVMe/TCP end to end between two guests: nvmet on one, the Linux initiator on the other."""

from __future__ import annotations

import hashlib
import os
import uuid

import pytest

from meshblock.testbed.nvme import (
    controllers,
    find_namespace,
    nvme_connect,
    nvme_disconnect,
    nvmet_export,
    nvmet_remove,
    wait_gone,
)

pytestmark = pytest.mark.vm

MNT = "/mnt/nvmetcp"


def test_kernel_target_to_kernel_initiator(testbed):
    a, b = testbed.guests(2)
    nqn = f"nqn.2026-11.io.meshblock:testbed:{uuid.uuid4().hex[:12]}"
    exp = nvmet_export(a, nqn=nqn, address=a.address, ports=[4420, 4421], hosts=[b.hostnqn], size=256 << 20)
    data = os.urandom(6 << 20)
    digest = hashlib.sha256(data).hexdigest()
    try:
        # Two paths (two ports) to one subsystem: native NVMe multipath makes one head device.
        for port in exp.ports:
            nvme_connect(b, nqn, a.address, port).check()
        ns = find_namespace(b, exp.ns_uuid)
        assert ns.uuid == exp.ns_uuid
        assert ns.nguid.replace("-", "") == exp.ns_nguid.replace("-", "")
        assert ns.wwid == f"uuid.{exp.ns_uuid}"
        paths = controllers(b, nqn)
        assert sorted(paths.values()) == ["live", "live"], paths

        b.check(f"mkfs.ext4 -q -F {ns.device} && mkdir -p {MNT} && mount {ns.device} {MNT}", timeout=120)
        b.write_file(f"{MNT}/data.bin", data)
        b.check(f"cd {MNT} && sha256sum data.bin > data.sha256 && sync")
        assert b.check(f"cut -d' ' -f1 {MNT}/data.sha256").strip() == digest

        # Lose one path: I/O goes on over the other.
        b.check(f"nvme disconnect -d {min(paths)}")
        b.check("sync; echo 3 > /proc/sys/vm/drop_caches")
        assert b.check(f"cd {MNT} && sha256sum -c data.sha256").strip() == "data.bin: OK"
        b.check(f"umount {MNT}")
        assert "disconnected 1 controller" in nvme_disconnect(b, nqn).check().stdout
        wait_gone(b, ns.device)

        # Someone not on the allowlist is refused.
        other = str(uuid.uuid4())
        refused = nvme_connect(b, nqn, a.address, 4420, hostnqn=f"nqn.2014-08.org.nvmexpress:uuid:{other}",
                               hostid=other)
        assert not refused.ok, refused.describe()
        assert controllers(b, nqn) == {}
        assert "not allowed" in a.check("dmesg | grep nvmet | tail -5")

        # The allowed host again: same namespace, same data.
        nvme_connect(b, nqn, a.address, 4420).check()
        ns2 = find_namespace(b, exp.ns_uuid)
        b.check(f"mount {ns2.device} {MNT}")
        assert b.check(f"cd {MNT} && sha256sum -c data.sha256").strip() == "data.bin: OK"
        assert b.read_file(f"{MNT}/data.bin") == data
    finally:
        b.run(f"umount {MNT}; nvme disconnect -n {nqn}")
        nvmet_remove(a, exp)
    assert controllers(b, nqn) == {}
    assert not a.run(f"test -e /sys/kernel/config/nvmet/subsystems/{nqn}").ok
