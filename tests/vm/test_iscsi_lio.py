"""LIO (configured with rtslib-fb) on one guest, open-iscsi on another: login, file system, ACLs."""

from __future__ import annotations

import json
import os
import uuid

import pytest

pytestmark = pytest.mark.vm

MNT = "/mnt/iscsi"

EXPORT = """
import json, sys
from rtslib_fb import FabricModule, FileIOStorageObject, LUN, MappedLUN, NetworkPortal, NodeACL, Target, TPG
a = json.loads(sys.argv[1])
so = FileIOStorageObject(a["name"], a["path"], size=a["size"], write_back=True)  # tmpfs: no O_DIRECT
t = Target(FabricModule("iscsi"), a["wwn"])
tpg = TPG(t, 1)
tpg.set_attribute("authentication", "0")
NetworkPortal(tpg, a["address"], 3260)
lun = LUN(tpg, 0, so)
MappedLUN(NodeACL(tpg, a["initiator"]), 0, lun)
tpg.enable = True
"""

UNEXPORT = """
import json, sys
from rtslib_fb import RTSRoot
a = json.loads(sys.argv[1])
root = RTSRoot()
for t in list(root.targets):
    if t.wwn == a["wwn"]:
        t.delete()
for so in list(root.storage_objects):
    if so.name == a["name"]:
        so.delete()
"""


def test_lio_target_to_open_iscsi(testbed):
    a, b = testbed.guests(2)
    tag = uuid.uuid4().hex[:8]
    args = {"name": f"tb{tag}", "path": f"/tmp/lio-{tag}.img", "size": 128 << 20,
            "wwn": f"iqn.2026-11.io.meshblock:testbed-{tag}", "address": a.address, "initiator": b.iqn}
    portal = f"{a.address}:3260"
    link = f"/dev/disk/by-path/ip-{portal}-iscsi-{args['wwn']}-lun-0"
    data = os.urandom(3 << 20)
    try:
        a.check(["modprobe", "-a", "target_core_mod", "target_core_file", "iscsi_target_mod"])
        a.check(["python3", "-c", EXPORT, json.dumps(args)], timeout=120)
        # A second interface record with an initiator name that is not in the ACL.
        b.check(f"iscsiadm -m iface -I tbother -o new >/dev/null && iscsiadm -m iface -I tbother -o update "
                f"-n iface.initiatorname -v iqn.2026-11.io.meshblock:stranger-{tag}")
        found = b.check(["iscsiadm", "-m", "discovery", "-t", "sendtargets", "-p", portal, "-I", "default",
                         "-I", "tbother"], timeout=60)
        assert args["wwn"] in found

        # The stranger is turned away.
        refused = b.run(["iscsiadm", "-m", "node", "-T", args["wwn"], "-p", portal, "-I", "tbother", "--login"],
                        timeout=60)
        assert not refused.ok, refused.describe()
        assert "authorization" in refused.stdout + refused.stderr, refused.describe()

        b.check(["iscsiadm", "-m", "node", "-T", args["wwn"], "-p", portal, "-I", "default", "--login"],
                timeout=60)
        dev = b.check(f"udevadm settle; readlink -f {link}").strip()
        assert dev.startswith("/dev/sd"), dev
        b.check(f"mkfs.ext4 -q -F {link} && mkdir -p {MNT} && mount {link} {MNT}", timeout=120)
        b.write_file(f"{MNT}/data.bin", data)
        b.check(f"(cd {MNT} && sha256sum data.bin > data.sha256) && umount {MNT}")
        b.check(["iscsiadm", "-m", "node", "-T", args["wwn"], "-p", portal, "--logout"], timeout=60)
        b.check(["iscsiadm", "-m", "node", "-T", args["wwn"], "-p", portal, "-I", "default", "--login"],
                timeout=60)
        b.check(f"udevadm settle; mount {link} {MNT}")
        assert b.check(f"cd {MNT} && sha256sum -c data.sha256").strip() == "data.bin: OK"
        assert b.read_file(f"{MNT}/data.bin") == data
    finally:
        b.run(f"umount {MNT}; iscsiadm -m node -T {args['wwn']} -p {portal} --logout; "
              f"iscsiadm -m node -o delete -T {args['wwn']}; iscsiadm -m iface -I tbother -o delete", timeout=60)
        a.run(["python3", "-c", UNEXPORT, json.dumps(args)], timeout=60)
        a.run(["rm", "-f", args["path"]])
    assert not a.run(f"ls /sys/kernel/config/target/iscsi | grep -q {tag}").ok
