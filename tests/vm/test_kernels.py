"""The image's two kernels: guests boot the stock Debian 12 kernel unless asked for the backports one,
which has what the stock one lacks on the host side, NVMe in-band authentication (DH-HMAC-CHAP) and
NVMe/TCP TLS."""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import struct
import subprocess
import uuid
import zlib

import pytest

from meshblock.testbed import TestbedError
from meshblock.testbed.image import Image, extract_vmlinux
from meshblock.testbed.initramfs import build_initramfs
from meshblock.testbed.nvme import NVMET, controllers, find_namespace, nvmet_export, nvmet_remove, wait_gone

BACKPORTS_GUEST = "bp"
PORT = 4470


def dhchap_secret(key: bytes | None = None) -> str:
    """A DH-HMAC-CHAP secret in the NVMe representation (untransformed, CRC-32 appended)."""
    key = key or os.urandom(32)
    return "DHHC-1:00:" + base64.b64encode(key + zlib.crc32(key).to_bytes(4, "little")).decode() + ":"


def _version(v: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", v)
    assert m, v
    return int(m.group(1)), int(m.group(2))


# --- the image's description of its kernels (no guest needed) ------------------------------------

def _fake_image(d, meta: dict) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "meta.json").write_text(json.dumps(meta))


def test_image_lists_both_kernels(tmp_path):
    d = tmp_path / "img"
    _fake_image(d, {"kernel_version": "6.1.0-50-amd64", "kernels": {
        "stock": {"version": "6.1.0-50-amd64", "package": "linux-image-6.1.0-50-amd64", "vmlinuz": "vmlinuz",
                  "vmlinux": "vmlinux", "initramfs_modules": "initramfs-modules"},
        "backports": {"version": "6.12.9+bpo-amd64", "package": "linux-image-6.12.9+bpo-amd64",
                      "vmlinuz": "vmlinuz-backports", "vmlinux": None,
                      "initramfs_modules": "initramfs-modules-backports"}}})
    for sub, mod in (("initramfs-modules", b"stock-ko"), ("initramfs-modules-backports", b"backports-ko")):
        (d / sub).mkdir()
        (d / sub / "virtio_blk.ko").write_bytes(mod)
        (d / sub / "order").write_text("virtio_blk.ko\n")
    (d / "busybox").write_bytes(b"bb")
    img = Image.load(d)
    assert set(img.kernels) == {"stock", "backports"}
    stock, bp = img.kernels["stock"], img.kernels["backports"]
    assert (stock.boot, stock.version) == (d / "vmlinux", "6.1.0-50-amd64")
    assert (bp.boot, bp.version) == (d / "vmlinuz-backports", "6.12.9+bpo-amd64")  # no PVH kernel: the bzImage
    # What an image had when it had one kernel is the stock one.
    assert (img.kernel, img.kernel_version, img.initramfs_modules) == (stock.boot, stock.version,
                                                                      d / "initramfs-modules")
    with pytest.raises(TestbedError, match="backports, stock"):
        img.get_kernel("mainline")
    # Each kernel's initramfs carries that kernel's modules.
    assert b"backports-ko" in build_initramfs(img, tmp_path / "bp.cpio", "backports").read_bytes()
    stock_cpio = build_initramfs(img, tmp_path / "stock.cpio").read_bytes()
    assert b"stock-ko" in stock_cpio and b"backports-ko" not in stock_cpio


def _pvh_elf() -> bytes:
    note = struct.pack("<III", 4, 4, 18) + b"Xen\0" + b"\0" * 4
    ehdr = bytearray(64)
    ehdr[:5] = b"\x7fELF\x02"
    struct.pack_into("<Q", ehdr, 0x20, 64)
    struct.pack_into("<HH", ehdr, 0x36, 56, 1)
    return bytes(ehdr) + struct.pack("<IIQQQQQQ", 4, 0, 64 + 56, 0, 0, len(note), len(note), 4) + note


@pytest.mark.skipif(shutil.which("zstd") is None, reason="no zstd program on this machine")
def test_direct_boot_kernel_is_found_in_a_zstd_bzimage():
    """Debian's 6.12 kernels are zstd compressed; the payload is where the setup header says."""
    elf = _pvh_elf()
    payload = subprocess.run(["zstd", "-q", "-c"], input=elf, stdout=subprocess.PIPE, check=True).stdout
    payload += len(elf).to_bytes(4, "little")  # the size the kernel's build appends
    setup = bytearray(2 * 512)
    setup[0x1F1] = 1                                   # setup_sects
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<II", setup, 0x248, 64, len(payload))
    assert extract_vmlinux(bytes(setup) + b"\0" * 64 + payload + b"\0" * 32) == elf


def test_image_from_before_two_kernels_has_the_stock_one(tmp_path):
    d = tmp_path / "old"
    _fake_image(d, {"kernel_version": "6.1.0-50-amd64", "kernel_package": "linux-image-6.1.0-50-amd64"})
    (d / "vmlinux").write_bytes(b"")
    img = Image.load(d)
    assert list(img.kernels) == ["stock"]
    assert (img.kernel, img.kernel_version) == (d / "vmlinux", "6.1.0-50-amd64")


# --- guests ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def backports(testbed):
    g = testbed.guest(BACKPORTS_GUEST, kernel="backports")
    yield g
    testbed.remove(BACKPORTS_GUEST)


def test_guests_boot_the_stock_kernel_by_default(testbed):
    a = testbed.guest("a")
    stock = testbed.image.kernels["stock"]
    assert a.kernel == "stock"
    assert a.check("uname -r").strip() == stock.version
    # 6.1 calls host authentication CONFIG_NVME_AUTH (6.7 renamed it CONFIG_NVME_HOST_AUTH), and has no TLS.
    config = set(a.check(f"cat /boot/config-{stock.version}").splitlines())
    assert "# CONFIG_NVME_AUTH is not set" in config
    assert not {"CONFIG_NVME_HOST_AUTH=y", "CONFIG_NVME_TCP_TLS=y"} & config
    assert not a.run("modinfo nvme-auth").ok
    with pytest.raises(TestbedError, match="runs the stock kernel"):
        testbed.guest("a", kernel="backports")


def test_backports_guest_runs_the_backports_kernel(testbed, backports):
    bp = testbed.image.kernels["backports"]
    running = backports.check("uname -r").strip()
    assert running == bp.version
    assert running != testbed.image.kernels["stock"].version
    assert _version(running) >= (6, 7), running  # host-side TLS came in 6.7
    # Its modules are in the shared root next to the stock ones, with a modules.dep of their own.
    assert backports.run(f"test -s /lib/modules/{running}/modules.dep").ok
    assert backports.run(f"test -d /lib/modules/{testbed.image.kernels['stock'].version}/kernel").ok


def test_backports_kernel_has_nvme_host_auth_and_tls(backports):
    ver = backports.check("uname -r").strip()
    config = set(backports.check(f"cat /boot/config-{ver}").splitlines())
    assert {"CONFIG_NVME_HOST_AUTH=y", "CONFIG_NVME_TCP_TLS=y"} <= config
    backports.check(["modprobe", "-a", "nvme-tcp", "nvme-fabrics", "nvme-auth", "nvme-keyring", "tls"])
    loaded = {line.split()[0] for line in backports.check("cat /proc/modules").splitlines()}
    assert {"nvme_tcp", "nvme_fabrics", "nvme_core", "nvme_auth", "nvme_keyring", "tls"} <= loaded, loaded
    assert backports.check("cat /sys/module/nvme_core/parameters/multipath").strip() == "Y"
    assert backports.run("modinfo -F filename nvme-auth").stdout.strip().startswith(f"/lib/modules/{ver}/")
    assert backports.run("test -d /sys/kernel/config/nvmet || modprobe nvmet").ok


def _connect(guest, nqn: str, address: str, secret: str = "", ctrl_secret: str = ""):
    argv = ["nvme", "connect", "-t", "tcp", "-a", address, "-s", str(PORT), "-n", nqn]
    if secret:
        argv.append(f"--dhchap-secret={secret}")
    if ctrl_secret:
        argv.append(f"--dhchap-ctrl-secret={ctrl_secret}")
    guest.check(["modprobe", "-a", "nvme-tcp", "nvme-fabrics"])
    return guest.run(argv, timeout=60)


def test_dhchap_connect_needs_the_backports_kernel(testbed, backports):
    """A subsystem that demands DH-HMAC-CHAP: the backports host authenticates (both ways) with the
    right secrets and is refused without them; the stock host cannot authenticate at all.

    (A wrong host secret is left out: against Linux nvmet the 6.12 host only gives up after its
    60-second admin timeout.)"""
    a = testbed.guest("a")
    nqn = f"nqn.2026-11.io.meshblock:testbed:auth-{uuid.uuid4().hex[:12]}"
    exp = nvmet_export(backports, nqn=nqn, address=backports.address, ports=[PORT],
                       hosts=[backports.hostnqn, a.hostnqn], size=16 << 20)
    host_key, ctrl_key, a_key = dhchap_secret(), dhchap_secret(), dhchap_secret()
    for nqn_, key, ctrl in ((backports.hostnqn, host_key, ctrl_key), (a.hostnqn, a_key, "")):
        d = shlex.quote(f"{NVMET}/hosts/{nqn_}")
        backports.check(f"echo {key} > {d}/dhchap_key" + (f" && echo {ctrl} > {d}/dhchap_ctrl_key" if ctrl else ""))
    failed_before = a.check("dmesg").count("authentication setup failed")
    try:
        refused = _connect(backports, nqn, backports.address)
        assert not refused.ok, refused.describe()
        assert controllers(backports, nqn) == {}

        _connect(backports, nqn, backports.address, host_key, ctrl_key).check()
        ns = find_namespace(backports, exp.ns_uuid)
        assert list(controllers(backports, nqn).values()) == ["live"]
        assert backports.check(f"blockdev --getsize64 {ns.device}").strip() == str(16 << 20)
        backports.check(["nvme", "disconnect", "-n", nqn])
        wait_gone(backports, ns.device)

        # The stock kernel is built without host authentication: the right secret does not help.
        stock = _connect(a, nqn, backports.address, a_key)
        assert not stock.ok, stock.describe()
        assert controllers(a, nqn) == {}
        assert a.check("dmesg").count("authentication setup failed") > failed_before
    finally:
        backports.run(["nvme", "disconnect", "-n", nqn])
        a.run(["nvme", "disconnect", "-n", nqn])
        nvmet_remove(backports, exp)
