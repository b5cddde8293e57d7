"""A guest boots, runs commands, has identities of its own and the kernel modules the project needs."""

from __future__ import annotations

import hashlib
import os
import shlex
import sys

import pytest

pytestmark = pytest.mark.vm

MODULES = ("nvme-tcp", "nvme-fabrics", "nvmet", "nvmet-tcp", "target_core_mod", "target_core_file",
           "iscsi_tcp", "iscsi_target_mod", "dm-multipath", "raid1")


def test_guest_runs_commands(testbed):
    a = testbed.guest("a")
    r = a.run("echo out; echo err >&2; exit 3")
    assert (r.rc, r.stdout, r.stderr) == (3, "out\n", "err\n")
    assert a.run(["printf", "%s|", "one arg", "two"]).stdout == "one arg|two|"
    assert a.run("cat", input=b"\x00\x01binary\xff").stdout_bytes == b"\x00\x01binary\xff"
    assert a.run("echo $MBTB_X", env={"MBTB_X": "set"}).stdout == "set\n"
    assert a.check("hostname").strip() == "a"
    assert a.check("uname -m").strip() == "x86_64"


def test_command_timeout_kills_the_command(testbed):
    a = testbed.guest("a")
    r = a.run("echo started; sleep 60", timeout=2)
    assert r.timed_out and not r.ok
    assert r.stdout == "started\n"
    assert r.duration < 20
    assert not a.run(["pgrep", "-f", "^sleep 60$"]).ok
    # A background daemon that keeps the pipes open does not hold the reply back.
    r = a.run("sleep 30 & echo bg", timeout=20)
    assert r.ok and r.stdout == "bg\n" and r.duration < 10
    a.run(["pkill", "-f", "^sleep 30$"])


def test_files_in_and_out(testbed, tmp_path):
    a = testbed.guest("a")
    data = os.urandom(9 << 20)  # larger than one transfer chunk
    src = tmp_path / "in.bin"
    src.write_bytes(data)
    a.copy_in(src, "/tmp/sub/in.bin")
    assert a.check("sha256sum /tmp/sub/in.bin").split()[0] == hashlib.sha256(data).hexdigest()
    a.copy_out("/tmp/sub/in.bin", tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == data
    a.write_file("/tmp/small", "hello\n", mode=0o600)
    assert a.check("stat -c %a /tmp/small").strip() == "600"
    assert a.read_file("/tmp/small") == b"hello\n"
    a.run("rm -rf /tmp/sub /tmp/small")


def test_own_identities(testbed):
    a = testbed.guest("a")
    stock = "nqn.2014-08.org.nvmexpress:uuid:"
    assert a.hostnqn.startswith(stock) and a.hostnqn[len(stock):] == a.hostid
    assert a.check("cat /etc/nvme/hostnqn").strip() == a.hostnqn
    assert a.iqn.startswith("iqn.") and "mbtb-a-" in a.iqn


def test_kernel_modules_load(testbed):
    a = testbed.guest("a")
    a.check(["modprobe", "-a", *MODULES])
    loaded = {line.split()[0] for line in a.check("cat /proc/modules").splitlines()}
    for m in MODULES:
        assert m.replace("-", "_") in loaded, f"{m} did not load"
    assert a.check("cat /sys/module/nvme_core/parameters/multipath").strip() == "Y"
    assert {"nvmet", "target"} <= set(a.check("ls /sys/kernel/config").split())


def test_project_checkout_is_shared_read_only(testbed):
    a = testbed.guest("a")
    r = a.python("import meshblock.spdk.discovery as d, sys; print(d.ENV_VAR, sys.version_info[:2])")
    assert r.ok, r.describe()
    assert r.stdout.startswith("MESHBLOCK_SPDK_DIR (3, ")
    assert not a.run("touch /meshblock/should-not-exist").ok


def test_guest_and_host_meet_on_the_bridge(testbed):
    a, b = testbed.guests(2)
    assert a.check("ip -4 -o addr show dev eth0").split()[3] == f"{a.address}/24"
    server = ("import socket; s = socket.create_server((%r, 7077)); c, _ = s.accept(); "
              "c.sendall(socket.gethostname().encode() + b' hello'); c.close()")
    # A host program inside the namespace, reached by a guest.
    p = testbed.popen([sys.executable, "-c", server % testbed.host_address], log="bridge-check.log")
    client = ("import socket, time\n"
              "for i in range(100):\n"
              "    try:\n"
              "        print(socket.create_connection((%r, 7077), timeout=5).recv(100).decode()); break\n"
              "    except ConnectionRefusedError: time.sleep(0.1)\n")
    r = a.run(["python3", "-c", client % testbed.host_address], timeout=60)
    testbed.stop(p)
    assert r.ok and r.stdout.strip().endswith(" hello"), r.describe()
    # Guest to guest.
    b.run("pkill -f mbtb-bridge-check; true")
    b.check(f"python3 -c {shlex.quote(server % b.address)} mbtb-bridge-check >/dev/null 2>&1 &")
    r = a.run(["python3", "-c", client % b.address], timeout=60)
    assert r.ok and r.stdout.strip() == "b hello", r.describe()
