"""The test bed's own parts that need no guest: mirror lookup, initramfs archive, agent protocol.

The agent is plain standard-library Python, so its protocol is checked here on
the host, served over a Unix socket exactly as QEMU would hand it to the host.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from meshblock.testbed import GuestError, image_key
from meshblock.testbed.guest import AgentClient, CommandResult, GuestSpec
from meshblock.testbed.image import MIRROR_ENV, find_mirror
from meshblock.testbed.initramfs import GUEST_DIR, _Cpio


def _apt_etc(tmp_path: Path) -> Path:
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list").write_text(
        "# deb http://example.invalid/old bookworm main\n"
        "deb [arch=amd64 signed-by=/x.gpg] https://packages.example.invalid/apt cloud-sdk-bookworm main\n")
    (etc / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://mirror.example.invalid/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n\n"
        "Types: deb deb-src\nURIs: http://mirror.example.invalid/debian/\n"
        "Suites: bookworm bookworm-updates\nComponents: main contrib\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    (etc / "sources.list.d" / "other.sources").write_text(
        "Types: deb\nURIs: https://deb.example.invalid/node\nSuites: nodistro\nComponents: main\n")
    return etc


def test_mirror_comes_from_apt_sources(tmp_path, monkeypatch):
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    etc = _apt_etc(tmp_path)
    assert find_mirror("bookworm", etc) == "http://mirror.example.invalid/debian"
    monkeypatch.setenv(MIRROR_ENV, "http://override.example.invalid/debian/")
    assert find_mirror("bookworm", etc) == "http://override.example.invalid/debian"


def test_image_key_follows_the_package_list():
    assert image_key(("a", "b")) == image_key(("b", "a", "a"))
    assert image_key(("a", "b")) != image_key(("a", "b", "c"))


def _parse_cpio(data: bytes) -> dict[str, tuple[int, bytes]]:
    out, pos = {}, 0
    while True:
        assert data[pos:pos + 6] == b"070701"
        f = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = f[1], f[6], f[11]
        name = data[pos + 110: pos + 110 + namesize - 1].decode()
        pos += 110 + namesize
        pos += -pos % 4
        if name == "TRAILER!!!":
            return out
        out[name] = (mode, data[pos:pos + size])
        pos += size
        pos += -pos % 4


def test_cpio_archive_is_newc():
    c = _Cpio()
    c.dir("bin")
    c.file("bin/x", b"abc", 0o755)
    c.chardev("dev/console", 5, 1)
    entries = _parse_cpio(c.finish())
    assert entries["bin/x"] == (stat.S_IFREG | 0o755, b"abc")
    assert stat.S_ISDIR(entries["bin"][0]) and stat.S_ISCHR(entries["dev/console"][0])


def test_guest_macs_differ():
    assert GuestSpec("a", 0, "10.99.0.11").mac != GuestSpec("b", 1, "10.99.0.12").mac


@pytest.fixture
def agent(tmp_path):
    """The guest agent serving a Unix socket on this host, and a client for it."""
    spec = importlib.util.spec_from_file_location("mbtb_agent", GUEST_DIR / "agent.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.EXIT_GRACE = 0.5
    path = str(tmp_path / "agent.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    conns = []

    def accept():
        c, _ = srv.accept()
        conns.append(c)
        try:
            mod.serve(c.fileno())
        except OSError:
            pass

    threading.Thread(target=accept, daemon=True).start()
    client = AgentClient(Path(path), "local")
    client.wait_ready(10)
    yield client
    mod.log = lambda msg: None  # replies still in flight after the test are of no interest
    client.close()
    for c in conns:
        c.close()
    srv.close()


def _run(client: AgentClient, **params) -> dict:
    return client.call("run", 30, **params)


def test_agent_runs_commands(agent):
    r = _run(agent, shell="echo out; echo err >&2; exit 4")
    res = CommandResult("x", r["rc"], __import__("base64").b64decode(r["stdout"]),
                        __import__("base64").b64decode(r["stderr"]), r["timed_out"], r["duration"])
    assert (res.rc, res.stdout, res.stderr, res.timed_out) == (4, "out\n", "err\n", False)
    r = _run(agent, argv=["/bin/cat"], stdin="aGk=")  # "hi"
    assert r["rc"] == 0 and r["stdout"] == "aGk="
    r = _run(agent, argv=["/nonexistent/program"])
    assert r["rc"] == 127


def test_agent_timeout_kills_group_and_background_does_not_block(agent):
    t0 = time.monotonic()
    r = _run(agent, shell="sleep 30 & sleep 30; echo never", timeout=1)
    assert r["timed_out"] and r["rc"] == -9 and time.monotonic() - t0 < 10
    t0 = time.monotonic()
    r = _run(agent, shell="sleep 5 & echo bg")
    assert r["rc"] == 0 and not r["timed_out"] and time.monotonic() - t0 < 4


def test_agent_files_and_errors(agent, tmp_path):
    target = str(tmp_path / "d" / "f")
    agent.call("write", 10, path=target, data="AAEC", truncate=True, parents=True, mode=0o600)  # 00 01 02
    agent.call("write", 10, path=target, data="Aw==", offset=3)  # 03
    assert Path(target).read_bytes() == b"\x00\x01\x02\x03"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    r = agent.call("read", 10, path=target, offset=1, length=2)
    assert r["data"] == "AQI=" and r["size"] == 4 and not r["eof"]
    with pytest.raises(GuestError, match="FileNotFoundError"):
        agent.call("read", 10, path=str(tmp_path / "missing"))
    with pytest.raises(GuestError, match="unknown op"):
        agent.call("frobnicate", 10)


def test_agent_survives_garbage_and_lost_replies(agent):
    agent._send_raw(b'{"id": 1, "op": "run", "shell": "echo cut off')  # never finished...
    agent._send_raw(b"\nnot json\n")                                      # ...and garbage
    assert _run(agent, shell="echo fine")["stdout"] == "ZmluZQo="
    # A call the client gave up on: its late reply must not be taken for the next one's.
    from meshblock.testbed import AgentTimeout
    with pytest.raises(AgentTimeout):
        agent.call("run", 0.5, shell="sleep 1; echo late")
    assert _run(agent, shell="echo next")["stdout"] == "bmV4dAo="


def _elf_with_note(name: bytes, ntype: int) -> bytes:
    import struct
    padded = name + b"\0" * (4 - len(name) % 4)       # NUL-terminated, padded to 4 bytes
    note = struct.pack("<III", len(name) + 1, 4, ntype) + padded + b"\x00\x00\x00\x80"
    ehdr = bytearray(64)
    ehdr[:5] = b"\x7fELF\x02"
    struct.pack_into("<Q", ehdr, 0x20, 64)          # e_phoff
    struct.pack_into("<HH", ehdr, 0x36, 56, 1)      # e_phentsize, e_phnum
    phdr = struct.pack("<IIQQQQQQ", 4, 0, 64 + 56, 0, 0, len(note), len(note), 4)
    return bytes(ehdr) + phdr + note


def test_direct_boot_kernel_is_found_in_a_bzimage():
    import gzip
    import lzma

    from meshblock.testbed.image import _has_pvh_entry, extract_vmlinux
    pvh = _elf_with_note(b"Xen", 18)
    assert _has_pvh_entry(pvh)
    assert not _has_pvh_entry(_elf_with_note(b"Xen", 17))
    assert not _has_pvh_entry(_elf_with_note(b"GNU", 18))
    setup = b"\x00" * 512 + b"HdrS" + b"\x00" * 100
    assert extract_vmlinux(setup + lzma.compress(pvh, format=lzma.FORMAT_XZ) + b"trailer") == pvh
    assert extract_vmlinux(setup + gzip.compress(pvh) + b"\x00" * 16) == pvh
    assert extract_vmlinux(setup + gzip.compress(_elf_with_note(b"Xen", 17))) is None
