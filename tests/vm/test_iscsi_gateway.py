"""`meshblock gateway iscsi` on a real kernel: an NVMe/TCP-attached volume re-exported over iSCSI (LIO).

Guest b serves a namespace over NVMe/TCP (nvmet; it stands in for a meshblock
volume), guest a attaches it with the kernel initiator and re-exports the
device with the gateway (CHAP, mutual CHAP, an ACL), and guest b logs in to
that with open-iscsi.  The gateway runs as the project's own CLI inside guest
a, from the checkout and its virtualenv shared over 9p.
"""

from __future__ import annotations

import json
import os
import re
import sys
import sysconfig
import uuid
from pathlib import Path

import pytest

from meshblock.testbed import CommandResult, Guest
from meshblock.testbed.bed import REPO_ROOT
from meshblock.testbed.nvme import find_namespace, nvme_connect, nvmet_export, nvmet_remove

pytestmark = pytest.mark.vm

MNT = "/mnt/gw"
CHAP_USER, CHAP_SECRET = "gwuser", "gw-secret-0123"
MUTUAL_USER, MUTUAL_SECRET = "gwtarget", "gw-target-4567"


def unavailable(msg: str) -> None:
    if os.environ.get("MESHBLOCK_TESTBED_REQUIRE"):
        pytest.fail(msg)
    pytest.skip(msg)


def gateway(testbed, guest: Guest) -> Gateway:
    """The gateway command in ``guest``: the checkout and this virtualenv's packages, both under the 9p share.

    The environment's compiled packages (grpc) load in the guest only when its python3 has the same
    version as the one running the tests.
    """
    site = Path(sysconfig.get_paths()["platlib"]).resolve()
    try:
        rel = site.relative_to(REPO_ROOT)
    except ValueError:
        unavailable(f"the test environment's packages ({site}) are outside the checkout shared with guests, "
                    "so the meshblock command cannot run there; use the checkout's .venv (scripts/setup)")
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    there = guest.check(["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]).strip()
    if there != here:
        unavailable(f"guest {guest.name} has Python {there}, the test environment {here}: its packages "
                    "would not load there")
    return Gateway(guest, f"{testbed.share_mount}:{testbed.share_mount}/{rel}")


class Gateway:
    """`meshblock gateway iscsi ...` run inside a guest."""

    def __init__(self, guest: Guest, pythonpath: str):
        self.guest, self.pythonpath = guest, pythonpath

    def run(self, *args: str, env: dict[str, str] | None = None) -> CommandResult:
        r = self.guest.run(["python3", "-m", "meshblock", "gateway", "iscsi", *args],
                           env={"PYTHONPATH": self.pythonpath, **(env or {})}, timeout=180)
        missing = re.search(r"No module named '([^'.]+)", r.stderr) if not r.ok else None
        if missing and missing.group(1) != "meshblock":  # a package of the environment, not our own code
            unavailable(f"the meshblock command does not run in guest {self.guest.name}: "
                        f"{r.stderr.strip()[-300:]}")
        return r

    def json(self, *args: str, env: dict[str, str] | None = None):
        return json.loads(self.run(*args, "-o", "json", env=env).check().stdout)


def iscsiadm(guest: Guest, *args: str, timeout: float = 60) -> CommandResult:
    return guest.run(["iscsiadm", *args], timeout=timeout)


def login(guest: Guest, iqn: str, portal: str, iface: str) -> CommandResult:
    return iscsiadm(guest, "-m", "node", "-T", iqn, "-p", portal, "-I", iface, "--login")


def set_chap(guest: Guest, iqn: str, portal: str, iface: str, secret: str) -> None:
    for name, value in (("node.session.auth.authmethod", "CHAP"), ("node.session.auth.username", CHAP_USER),
                        ("node.session.auth.password", secret), ("node.session.auth.username_in", MUTUAL_USER),
                        ("node.session.auth.password_in", MUTUAL_SECRET)):
        iscsiadm(guest, "-m", "node", "-T", iqn, "-p", portal, "-I", iface, "-o", "update", "-n", name,
                 "-v", value).check()


def assert_refused(r: CommandResult) -> None:
    assert not r.ok, r.describe()
    assert "authorization failure" in r.stdout + r.stderr, r.describe()


def test_gateway_reexports_an_nvme_tcp_volume_over_iscsi(testbed):
    a, b = testbed.guests(2)
    gw = gateway(testbed, a)
    tag = uuid.uuid4().hex[:8]
    nqn = f"nqn.2026-11.io.meshblock:testbed:gw-{tag}"
    iqn = f"iqn.2026-11.io.meshblock:gw-{tag}"
    stranger = f"iqn.2026-11.io.meshblock:stranger-{tag}"
    portal = f"{a.address}:3260"
    link = f"/dev/disk/by-path/ip-{portal}-iscsi-{iqn}-lun-0"
    secrets = {"MESHBLOCK_CHAP_SECRET": CHAP_SECRET, "MESHBLOCK_MUTUAL_CHAP_SECRET": MUTUAL_SECRET}
    base = ["--iqn", iqn, "--chap-user", CHAP_USER, "--mutual-chap-user", MUTUAL_USER, "--portal", portal]
    data = os.urandom(3 << 20)
    vol = nvmet_export(b, nqn=nqn, address=b.address, ports=[4420], hosts=[a.hostnqn], size=128 << 20)
    try:
        # Guest a attaches the volume over NVMe/TCP: that device is what the gateway serves.
        nvme_connect(a, nqn, b.address, 4420).check()
        device = find_namespace(a, vol.ns_uuid).by_id
        export = ["export", "--device", device, *base, "--initiator", b.iqn]

        made = gw.json(*export, env=secrets)
        assert made["changed"] and "add ACL " + b.iqn in made["changes"]
        assert made["export"]["device"] == device and made["export"]["initiators"] == [b.iqn]
        assert made["export"]["chap_user"] == CHAP_USER and made["export"]["mutual_chap_user"] == MUTUAL_USER
        assert made["export"]["portals"] == [portal] and made["export"]["enabled"]
        again = gw.json(*export, env=secrets)
        assert not again["changed"] and again["changes"] == [] and again["export"] == made["export"]

        # Guest b: discovery through its own name and through one the ACL does not list.
        b.check(f"iscsiadm -m iface -I gwother -o new >/dev/null && iscsiadm -m iface -I gwother -o update "
                f"-n iface.initiatorname -v {stranger}")
        found = iscsiadm(b, "-m", "discovery", "-t", "sendtargets", "-p", portal, "-I", "default", "-I", "gwother")
        assert iqn in found.check().stdout
        set_chap(b, iqn, portal, "default", "wrong-secret-99")
        set_chap(b, iqn, portal, "gwother", CHAP_SECRET)
        assert_refused(login(b, iqn, portal, "default"))       # the right name, the wrong secret
        assert_refused(login(b, iqn, portal, "gwother"))       # the right secret, a name not in the ACL
        set_chap(b, iqn, portal, "default", CHAP_SECRET)

        # The right name and secret: a file system, data, fsync, and the session is visible on the gateway.
        login(b, iqn, portal, "default").check()
        assert b.check(f"udevadm settle; readlink -f {link}").strip().startswith("/dev/sd")
        b.check(f"mkfs.ext4 -q -F {link} && mkdir -p {MNT} && mount {link} {MNT}", timeout=120)
        b.write_file(f"{MNT}/data.bin", data)
        b.check(f"cd {MNT} && sync data.bin && sha256sum data.bin > data.sha256 && sync data.sha256 .")
        listed = gw.json("list")
        mine = [e for e in listed if e["iqn"] == iqn]
        assert len(mine) == 1 and mine[0]["sessions"] == [b.iqn], listed
        b.check(f"umount {MNT}")
        iscsiadm(b, "-m", "node", "-T", iqn, "-p", portal, "--logout").check()

        # Log in again: the same bytes.
        login(b, iqn, portal, "default").check()
        b.check(f"udevadm settle; mount {link} {MNT}")
        assert b.check(f"cd {MNT} && sha256sum -c data.sha256").strip() == "data.bin: OK"
        assert b.read_file(f"{MNT}/data.bin") == data
        b.check(f"umount {MNT}")
        iscsiadm(b, "-m", "node", "-T", iqn, "-p", portal, "--logout").check()

        # Reconciling the ACL: the stranger is let in, then out again; nothing else changes.
        wider = gw.json(*export, "--initiator", stranger, env=secrets)
        assert wider["changes"] == [f"add ACL {stranger}"]
        assert wider["export"]["initiators"] == sorted([b.iqn, stranger])
        login(b, iqn, portal, "gwother").check()
        iscsiadm(b, "-m", "node", "-T", iqn, "-p", portal, "-I", "gwother", "--logout").check()
        narrower = gw.json(*export, env=secrets)
        assert narrower["changes"] == [f"remove ACL {stranger}"]
        assert_refused(login(b, iqn, portal, "gwother"))

        # Unexport: the target is gone, and the data is on the NVMe/TCP volume underneath.
        assert gw.json("unexport", iqn) == {"iqn": iqn, "removed": True}
        assert gw.json("unexport", iqn) == {"iqn": iqn, "removed": False}
        assert iqn not in [e["iqn"] for e in gw.json("list")]
        iscsiadm(b, "-m", "node", "-T", iqn, "-p", portal, "-I", "default", "-o", "update",
                 "-n", "node.session.initial_login_retry_max", "-v", "1").check()
        gone = login(b, iqn, portal, "default")
        assert not gone.ok and not gone.timed_out, gone.describe()
        assert not a.run(f"test -e /sys/kernel/config/target/iscsi/{iqn}").ok
        a.check(f"mkdir -p {MNT} && mount -o ro {device} {MNT}")
        assert a.check(f"cd {MNT} && sha256sum -c data.sha256").strip() == "data.bin: OK"
        a.check(f"umount {MNT}")
    finally:
        b.run(f"umount {MNT}; iscsiadm -m node -T {iqn} --logout; iscsiadm -m node -o delete -T {iqn}; "
              f"iscsiadm -m iface -I gwother -o delete", timeout=60)
        gw.run("unexport", iqn)
        a.run(f"umount {MNT}; nvme disconnect -n {nqn}", timeout=60)
        nvmet_remove(b, vol)


def test_gateway_refuses_what_it_cannot_export(testbed):
    a = testbed.guest("a")
    gw = gateway(testbed, a)
    tag = uuid.uuid4().hex[:8]
    iqn = f"iqn.2026-11.io.meshblock:gw-{tag}"
    args = ["--iqn", iqn, "--initiator", "iqn.2026-11.io.meshblock:host"]

    missing = gw.run("export", "--device", "/dev/nvme99n9", *args)
    assert missing.rc == 1 and "/dev/nvme99n9 does not exist" in missing.stderr, missing.describe()
    bad = gw.run("export", "--device", "/dev/nvme99n9", "--iqn", "iqn.2026-11.io.meshblock:no_underscores",
                 "--initiator", "iqn.2026-11.io.meshblock:host")
    assert bad.rc == 2 and "--iqn" in bad.stderr and "'_'" in bad.stderr, bad.describe()

    # A device that is mounted is held by someone else: refused before LIO is touched.  A target someone
    # else made is neither listed nor removed.
    img = f"/tmp/gw-{tag}.img"
    foreign = {"name": f"other{tag}", "path": f"/tmp/other-{tag}.img", "wwn": f"iqn.2026-11.io.example:other-{tag}"}
    loop = a.check(f"modprobe loop && truncate -s 32M {img} && losetup -f --show {img}").strip()
    try:
        a.check(f"mkfs.ext4 -q {loop} && mkdir -p /mnt/gw-{tag} && mount {loop} /mnt/gw-{tag}", timeout=120)
        a.check(["python3", "-c", FOREIGN_TARGET, json.dumps(foreign)], timeout=120)
        busy = gw.run("export", "--device", loop, *args)
        assert busy.rc == 1 and "is in use" in busy.stderr, busy.describe()
        assert not {iqn, foreign["wwn"]} & {e["iqn"] for e in gw.json("list")}
        kept = gw.run("unexport", foreign["wwn"])
        assert kept.rc == 1 and "not exported by meshblock" in kept.stderr, kept.describe()
        assert a.run(f"test -d /sys/kernel/config/target/iscsi/{foreign['wwn']}").ok
    finally:
        a.run(["python3", "-c", REMOVE_FOREIGN, json.dumps(foreign)], timeout=120)
        a.run(f"umount /mnt/gw-{tag}; rmdir /mnt/gw-{tag}; losetup -d {loop}; rm -f {img} {foreign['path']}")


FOREIGN_TARGET = """
import json, sys
from rtslib_fb import FabricModule, FileIOStorageObject, LUN, Target, TPG
a = json.loads(sys.argv[1])
so = FileIOStorageObject(a["name"], a["path"], size=8 << 20, write_back=True)
LUN(TPG(Target(FabricModule("iscsi"), a["wwn"]), 1), 0, so)
"""

REMOVE_FOREIGN = """
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
