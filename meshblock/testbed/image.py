"""Building and caching the guest image: a Debian root file system, a kernel and initramfs modules.

Everything comes from Debian's archive, through the mirror this machine's apt is
configured with: debootstrap makes a minbase root with the packages in
:data:`PACKAGES`, two kernels (:data:`KERNELS`: the stock ``linux-image-amd64`` and the
one from ``bookworm-backports``) are fetched with apt inside that root and unpacked
with ``dpkg-deb`` (their modules go into the root side by side and get a
``modules.dep`` from ``depmod``), and ``mkfs.ext4 -d`` turns the tree into a sparse
raw disk image, so no loop device or mount is needed.

The result lives under the cache directory (``$MESHBLOCK_TESTBED_CACHE``, default
``~/.cache/meshblock/testbed``) in a folder named by a hash of the inputs (suite,
architecture, package list and :data:`BUILD_VERSION`); bump ``BUILD_VERSION``
whenever the way the image is made changes.  Guests never write to it: each boots
from its own copy-on-write overlay.  A build takes a file lock, so concurrent
sessions wait for one build instead of racing.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import struct
import subprocess
import time
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from .errors import TestbedError, TestbedUnavailable

BUILD_VERSION = 3
SUITE = "bookworm"
ARCH = "amd64"
CACHE_ENV = "MESHBLOCK_TESTBED_CACHE"
MIRROR_ENV = "MESHBLOCK_TESTBED_MIRROR"

PACKAGES: tuple[str, ...] = (
    "busybox-static",      # init in the guest and in its initramfs
    "python3",             # the command agent, and the project's code over 9p
    "udev",
    "kmod",
    "iproute2",
    "procps",
    "nvme-cli",
    "open-iscsi",
    "python3-rtslib-fb",   # LIO through configfs
    "e2fsprogs",
    "xfsprogs",
    "mdadm",
)

# Modules the initramfs loads, with their dependencies, to reach and mount the
# root disk.  Built-in ones are skipped.
INITRAMFS_MODULES = ("virtio_pci", "virtio_blk", "crc32c_generic", "crc32c_intel", "ext4")

# Module trees the guest never needs; dropping them keeps the image small.
PRUNE_MODULE_DIRS = (
    "kernel/drivers/gpu", "kernel/drivers/media", "kernel/drivers/net/wireless", "kernel/sound",
    "kernel/drivers/staging", "kernel/drivers/bluetooth", "kernel/net/bluetooth", "kernel/drivers/iio",
    "kernel/drivers/isdn", "kernel/drivers/net/can", "kernel/drivers/hid", "kernel/drivers/input",
    "kernel/drivers/usb", "kernel/net/wireless", "kernel/net/mac80211",
)

# The kernels every image carries: name -> the suite suffix apt takes ``linux-image-amd64`` from
# ("" is the release itself).  "stock" is what a Debian 12 host runs and what guests boot by
# default; "backports" (6.12 and later) adds NVMe in-band authentication (DH-HMAC-CHAP) and
# NVMe/TCP TLS on the host side, which the stock 6.1 kernel is built without.
KERNELS: dict[str, str] = {"stock": "", "backports": "-backports"}
DEFAULT_KERNEL = "stock"

DEBIAN_SUITES = {"bookworm", "trixie", "forky", "sid", "unstable", "testing", "stable", "bullseye"}


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "meshblock" / "testbed"


def image_key(packages: tuple[str, ...] = PACKAGES, suite: str = SUITE) -> str:
    spec = {"build_version": BUILD_VERSION, "suite": suite, "arch": ARCH, "packages": sorted(set(packages))}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Kernel:
    """One kernel of an image: what QEMU boots and the modules its initramfs needs."""

    name: str                        # "stock", "backports"
    version: str                     # uname -r, e.g. 6.1.0-50-amd64
    package: str                     # the Debian package it came from
    boot: Path                       # what QEMU boots: vmlinux (PVH entry) when there is one, else vmlinuz
    vmlinuz: Path
    initramfs_modules: Path          # folder of .ko files plus ``order``, the load order


@dataclass(frozen=True)
class Image:
    """A built guest image in the cache: one root file system, one or more kernels to boot it with."""

    dir: Path
    rootfs: Path
    busybox: Path
    kernels: dict[str, Kernel]
    meta: dict

    @property
    def default(self) -> Kernel:
        return self.kernels[DEFAULT_KERNEL]

    # The default kernel's parts, under the names they had when an image had one kernel.
    @property
    def kernel(self) -> Path:
        return self.default.boot

    @property
    def initramfs_modules(self) -> Path:
        return self.default.initramfs_modules

    @property
    def kernel_version(self) -> str:
        return self.default.version

    def get_kernel(self, name: str) -> Kernel:
        try:
            return self.kernels[name]
        except KeyError:
            raise TestbedError(f"no kernel {name!r} in image {self.dir.name}; "
                               f"it has {', '.join(sorted(self.kernels))}") from None

    @classmethod
    def load(cls, d: Path) -> Image:
        meta = json.loads((d / "meta.json").read_text())
        entries = meta.get("kernels") or {DEFAULT_KERNEL: {   # an image built before there were two
            "version": meta["kernel_version"], "package": meta.get("kernel_package", ""),
            "vmlinuz": "vmlinuz", "vmlinux": "vmlinux" if (d / "vmlinux").exists() else None,
            "initramfs_modules": "initramfs-modules"}}
        kernels = {}
        for name, k in entries.items():
            vmlinuz = d / k["vmlinuz"]
            kernels[name] = Kernel(name=name, version=k["version"], package=k.get("package", ""),
                                   boot=d / k["vmlinux"] if k.get("vmlinux") else vmlinuz, vmlinuz=vmlinuz,
                                   initramfs_modules=d / k["initramfs_modules"])
        return cls(dir=d, rootfs=d / "rootfs.img", busybox=d / "busybox", kernels=kernels, meta=meta)


# --- the apt mirror ---------------------------------------------------------------------------------

def _apt_entries(etc: Path = Path("/etc/apt")) -> list[tuple[str, list[str], list[str]]]:
    """(uri, suites, components) of every enabled binary source apt knows."""
    entries: list[tuple[str, list[str], list[str]]] = []
    one_line = [etc / "sources.list"] + sorted((etc / "sources.list.d").glob("*.list"))
    for f in one_line:
        try:
            text = f.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            line = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
            if len(line) >= 3 and line[0] == "deb":
                entries.append((line[1], [line[2]], line[3:]))
    for f in sorted((etc / "sources.list.d").glob("*.sources")):
        try:
            text = f.read_text()
        except OSError:
            continue
        for para in re.split(r"\n\s*\n", text):
            fields: dict[str, str] = {}
            key = None
            for raw in para.splitlines():
                if raw.startswith("#"):
                    continue
                if raw[:1] in (" ", "\t") and key:
                    fields[key] += " " + raw.strip()
                    continue
                if ":" in raw:
                    key, val = raw.split(":", 1)
                    key = key.strip().lower()
                    fields[key] = val.strip()
            if "deb" not in fields.get("types", "").split():
                continue
            if fields.get("enabled", "yes").lower() == "no":
                continue
            for uri in fields.get("uris", "").split():
                entries.append((uri, fields.get("suites", "").split(), fields.get("components", "").split()))
    return entries


def find_mirror(suite: str = SUITE, etc: Path = Path("/etc/apt")) -> str:
    """The Debian mirror to debootstrap from: ``$MESHBLOCK_TESTBED_MIRROR``, else apt's own."""
    env = os.environ.get(MIRROR_ENV)
    if env:
        return env.rstrip("/")
    entries = [e for e in _apt_entries(etc) if "main" in e[2] and "security" not in e[0]]
    for uri, suites, _ in entries:
        if suite in suites:
            return uri.rstrip("/")
    for uri, suites, _ in entries:
        if any(s in DEBIAN_SUITES for s in suites):
            return uri.rstrip("/")
    raise TestbedUnavailable(
        f"no Debian mirror for {suite} found in {etc}/sources.list or sources.list.d; set {MIRROR_ENV}")


def check_mirror(mirror: str, suite: str = SUITE, timeout: float = 15.0) -> None:
    url = f"{mirror}/dists/{suite}/Release"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            r.read(64)
    except Exception as e:
        raise TestbedUnavailable(f"Debian mirror not reachable ({url}: {e})") from e


# --- building --------------------------------------------------------------------------------------

class _Log:
    def __init__(self, path: Path):
        self.path = path
        self.f = open(path, "a", buffering=1)
        self.t0 = time.monotonic()

    def note(self, msg: str) -> None:
        self.f.write(f"[{time.monotonic() - self.t0:7.1f}s] {msg}\n")

    def run(self, argv: list[str], **kw) -> str:
        self.note("$ " + " ".join(map(str, argv)))
        env = dict(os.environ, LC_ALL="C.UTF-8", DEBIAN_FRONTEND="noninteractive")
        env.update(kw.pop("env", {}))
        p = subprocess.run([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, env=env, check=False, **kw)
        self.f.write(p.stdout)
        if p.returncode != 0:
            tail = "\n".join(p.stdout.strip().splitlines()[-15:])
            raise BuildError(f"{' '.join(map(str, argv[:3]))} ... exited {p.returncode}:\n{tail}\n"
                             f"(full log: {self.path})")
        return p.stdout

    def close(self) -> None:
        self.f.close()


class BuildError(TestbedUnavailable):
    """The image could not be built."""


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = line.split()[4].replace("\\040", " ")
            if (mnt + "/").startswith(prefix):
                found.append(mnt)
    return sorted(found, key=len, reverse=True)


def safe_rmtree(path: Path) -> None:
    """Remove a build tree, first unmounting anything debootstrap may have left mounted in it."""
    if not path.exists():
        return
    for mnt in _mounts_under(path):
        subprocess.run(["umount", "-l", mnt], capture_output=True, check=False)
    left = _mounts_under(path)
    if left:
        raise BuildError(f"refusing to delete {path}: still mounted: {left}")
    shutil.rmtree(path, ignore_errors=True)


def _chroot(log: _Log, root: Path, *argv: str) -> str:
    return log.run(["chroot", str(root), *argv])


def _module_index(moddir: Path) -> dict[str, tuple[str, list[str]]]:
    """Module name -> (relative path, relative paths of its dependencies), from modules.dep."""
    index: dict[str, tuple[str, list[str]]] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        if ":" not in line:
            continue
        path, deps = line.split(":", 1)
        index[_modname(path)] = (path, deps.split())
    return index


def _modname(path: str) -> str:
    name = os.path.basename(path)
    for ext in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    return name.replace("-", "_")


def _initramfs_modules(moddir: Path, out: Path, wanted: tuple[str, ...]) -> list[str]:
    index = _module_index(moddir)
    by_path = {p: n for n, (p, _) in index.items()}
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order or name not in index:
            return
        for d in index[name][1]:
            visit(by_path.get(d, _modname(d)))
        order.append(name)

    for w in wanted:
        visit(w.replace("-", "_"))
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for name in order:
        src = moddir / index[name][0]
        data = src.read_bytes()
        if src.name.endswith(".xz"):
            data = lzma.decompress(data)
        elif not src.name.endswith(".ko"):
            raise BuildError(f"cannot unpack kernel module {src.name} for the initramfs")
        (out / f"{name}.ko").write_bytes(data)
        files.append(f"{name}.ko")
    (out / "order").write_text("\n".join(files) + "\n")
    return files


def _has_pvh_entry(elf: bytes) -> bool:
    """Whether an ELF64 kernel carries the Xen PHYS32_ENTRY note QEMU needs to boot it directly (PVH)."""
    if elf[:5] != b"\x7fELF\x02":
        return False
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", elf, phoff + i * phentsize)
        if p_type != 4:  # PT_NOTE
            continue
        pos, end = p_offset, p_offset + p_filesz
        while pos + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", elf, pos)
            name = elf[pos + 12: pos + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and ntype == 18:
                return True
            pos += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def extract_vmlinux(bzimage: bytes) -> bytes | None:
    """The uncompressed kernel inside a bzImage, if it is xz, gzip or zstd compressed and can boot by PVH.

    Booting it skips the firmware's real-mode set-up and the in-guest decompression,
    which under emulation take several seconds.  zstd (Debian's kernels from 6.12 on) needs
    the ``zstd`` program; without it the bzImage is booted.
    """
    payload = _payload(bzimage)
    if payload is not None and payload.startswith(ZSTD_MAGIC):
        # The kernel's build appends the uncompressed size (4 bytes) to the zstd frame.
        elf = _unzstd(payload[:-4])
        return elf if elf is not None and _has_pvh_entry(elf) else None
    for magic, unpack in ((b"\xfd7zXZ\x00", lambda b: lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(b)),
                          (b"\x1f\x8b\x08", lambda b: _gunzip(b))):
        off = bzimage.find(magic)
        if off < 0:
            continue
        try:
            elf = unpack(bzimage[off:])
        except (lzma.LZMAError, zlib.error, OSError, EOFError):
            continue
        if _has_pvh_entry(elf):
            return elf
    return None


def _payload(bzimage: bytes) -> bytes | None:
    """The compressed kernel a bzImage's setup header points at (boot protocol 2.08 and later)."""
    if len(bzimage) < 0x250 or bzimage[0x202:0x206] != b"HdrS":
        return None
    setup_sects = bzimage[0x1F1] or 4
    offset, length = struct.unpack_from("<II", bzimage, 0x248)
    start = (setup_sects + 1) * 512 + offset
    if not length or start + length > len(bzimage):
        return None
    return bzimage[start:start + length]


def _unzstd(data: bytes) -> bytes | None:
    if shutil.which("zstd") is None:
        return None
    p = subprocess.run(["zstd", "-dc", "-q"], input=data, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                       check=False)
    return p.stdout if p.returncode == 0 else None


def _gunzip(data: bytes) -> bytes:
    """gunzip that stops at the end of the stream (a bzImage has more bytes after it)."""
    d = gzip.GzipFile(fileobj=io.BytesIO(data))
    out = bytearray()
    try:
        while chunk := d.read(1 << 20):
            out += chunk
    except (OSError, EOFError):
        if not out:
            raise
    return bytes(out)


def _fetch_kernel(log: _Log, root: Path, work: Path, name: str, release: str, mirror: str) -> dict:
    """Fetch ``linux-image-amd64``'s kernel (from ``release``, a suite the root's apt does not have
    yet, or the root's own suite when empty), install its modules into the root, and put its boot
    files and initramfs modules into ``work``.  Returns its entry for meta.json."""
    sources = root / "etc" / "apt" / "sources.list.d" / f"mbtb-{name}.list"
    target = []
    if release:
        sources.write_text(f"deb {mirror} {release} main\n")
        _chroot(log, root, "apt-get", "-q", "update")
        target = ["-t", release]
    try:
        deps = _chroot(log, root, "apt-cache", *target, "depends", "--important", f"linux-image-{ARCH}")
        m = re.search(r"Depends:\s*(linux-image-\S+)", deps)
        if not m:
            raise BuildError(f"cannot tell which kernel linux-image-{ARCH} points to ({name}):\n{deps}")
        kpkg = m.group(1)
        dl, unpacked = f"/tmp/dl-{name}", f"/tmp/kernel-{name}"
        log.run(["chroot", str(root), "sh", "-c",
                 f"mkdir -p {dl} && cd {dl} && apt-get -q {' '.join(target)} download {kpkg} && "
                 f"dpkg-deb -x {dl}/{kpkg}_*.deb {unpacked}"])
    finally:
        sources.unlink(missing_ok=True)
    kroot = root / unpacked.lstrip("/")
    vmlinuz = sorted(glob.glob(str(kroot / "boot" / "vmlinuz-*")))
    mods = sorted(glob.glob(str(kroot / "lib" / "modules" / "*"))) or \
        sorted(glob.glob(str(kroot / "usr" / "lib" / "modules" / "*")))
    if not vmlinuz or not mods:
        raise BuildError(f"{kpkg} has no vmlinuz or modules")
    kver = os.path.basename(mods[0])
    suffix = "" if name == DEFAULT_KERNEL else f"-{name}"
    entry = {"package": kpkg, "version": kver, "release": release or "", "vmlinuz": f"vmlinuz{suffix}",
             "vmlinux": None, "initramfs_modules": f"initramfs-modules{suffix}"}
    shutil.copy2(vmlinuz[0], work / entry["vmlinuz"])
    vmlinux = extract_vmlinux(Path(vmlinuz[0]).read_bytes())
    if vmlinux is not None:
        entry["vmlinux"] = f"vmlinux{suffix}"
        (work / entry["vmlinux"]).write_bytes(vmlinux)
    log.note(f"{name} kernel {kver}: direct (PVH) boot: {'yes' if vmlinux else 'no, booting the bzImage'}")
    target_mods = root / "usr" / "lib" / "modules" / kver
    if target_mods.exists():
        raise BuildError(f"two kernels with version {kver}")
    target_mods.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(mods[0], target_mods)
    for rel in PRUNE_MODULE_DIRS:
        shutil.rmtree(target_mods / rel, ignore_errors=True)
    # Its config, so a guest can tell what its kernel was built with (/boot/config-$(uname -r)).
    for config in glob.glob(str(kroot / "boot" / "config-*")):
        (root / "boot").mkdir(exist_ok=True)
        shutil.copy2(config, root / "boot" / os.path.basename(config))
    _chroot(log, root, "depmod", "-a", kver)
    initrd_mods = _initramfs_modules(target_mods, work / entry["initramfs_modules"], INITRAMFS_MODULES)
    log.note(f"{name} kernel {kver}; initramfs modules: {' '.join(initrd_mods)}")
    return entry


def build(dest: Path, packages: tuple[str, ...], mirror: str, log: _Log, suite: str = SUITE) -> None:
    """Build an image into ``dest`` (which must not exist yet)."""
    work = dest.parent / f"{dest.name}.tmp-{os.getpid()}"
    safe_rmtree(work)
    work.mkdir(parents=True)
    root = work / "root"
    t0 = time.monotonic()
    try:
        log.note(f"building {dest.name} from {mirror} ({suite}): {' '.join(packages)}")
        log.run(["debootstrap", "--variant=minbase", f"--arch={ARCH}", "--components=main",
                 "--include=" + ",".join(packages), suite, str(root), mirror])
        t_boot = time.monotonic()

        # The kernels, fetched by the new root's apt and unpacked without their maintainer scripts
        # (which would want an initramfs generator).  The stock one first, while the root's apt
        # knows only the release; the others with their suite added for that download alone.
        _chroot(log, root, "apt-get", "-q", "update")
        kernels = {}
        for name, suffix in KERNELS.items():
            kernels[name] = _fetch_kernel(log, root, work, name, suite + suffix if suffix else "", mirror)

        busybox = root / "bin" / "busybox"
        if not busybox.exists():
            raise BuildError("busybox-static did not install /bin/busybox")
        shutil.copy2(busybox, work / "busybox")

        # Per-image settings; per-guest ones (hostname, identities) are made at boot.
        for p in ("etc/nvme/hostnqn", "etc/nvme/hostid", "etc/iscsi/initiatorname.iscsi", "etc/machine-id"):
            (root / p).unlink(missing_ok=True)
        for d in ("etc/rtslib-fb-target", "meshblock", "mnt", "etc/nvme"):
            (root / d).mkdir(parents=True, exist_ok=True)
        (root / "etc" / "fstab").write_text("# mounts are made by the test-bed init\n")
        for junk in ("var/lib/apt/lists", "var/cache/apt", "usr/share/doc", "usr/share/man",
                     "usr/share/locale", "usr/share/info", "tmp"):
            p = root / junk
            if p.is_dir():
                for child in p.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child, ignore_errors=True)
                    else:
                        child.unlink(missing_ok=True)
        (root / "tmp").chmod(0o1777)

        used = int(log.run(["du", "-sxb", str(root)]).split()[0])
        size_mib = max(2048, (used * 3 // 2) // (1 << 20) + 1024)
        log.run(["mkfs.ext4", "-q", "-F", "-L", "mbtbroot", "-E", "root_owner=0:0", "-d", str(root),
                 str(work / "rootfs.img"), f"{size_mib}M"])
        safe_rmtree(root)
        meta = {
            "key": dest.name, "suite": suite, "arch": ARCH, "mirror": mirror, "packages": list(packages),
            "build_version": BUILD_VERSION, "kernel_package": kernels[DEFAULT_KERNEL]["package"],
            "kernel_version": kernels[DEFAULT_KERNEL]["version"], "kernels": kernels,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": {"debootstrap": round(t_boot - t0, 1), "total": round(time.monotonic() - t0, 1)},
            "rootfs_used_bytes": used,
        }
        (work / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        os.rename(work, dest)
        log.note(f"done in {time.monotonic() - t0:.1f}s")
    except BaseException:
        safe_rmtree(work)
        raise


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


BOOT_TOOLS = (("qemu-system-x86_64", "qemu-system-x86"), ("qemu-img", "qemu-utils"), ("ip", "iproute2"))
BUILD_TOOLS = (("debootstrap", "debootstrap"), ("mkfs.ext4", "e2fsprogs"), ("chroot", "coreutils"))


def host_problems(build: bool = True) -> list[str]:
    """What this machine lacks to boot guests (and, with ``build``, to build the image); empty if nothing."""
    problems = []
    if os.geteuid() != 0:
        problems.append("needs root (debootstrap, chroot, network namespaces and tap devices)")
    missing = [f"{tool} (Debian package {pkg})" for tool, pkg in BOOT_TOOLS + (BUILD_TOOLS if build else ())
               if shutil.which(tool) is None]
    if missing:
        problems.append("missing " + ", ".join(missing))
    if not os.path.exists("/dev/net/tun"):
        problems.append("/dev/net/tun missing (tap devices)")
    return problems


def ensure_image(cache_dir: Path | None = None, packages: tuple[str, ...] = PACKAGES,
                 suite: str = SUITE, mirror: str | None = None) -> Image:
    """Return the cached image for these inputs, building it first if needed."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    key = image_key(packages, suite)
    dest = cache / key
    if (dest / "meta.json").exists():
        return Image.load(dest)
    problems = host_problems()
    if problems:
        raise TestbedUnavailable("cannot build the test-bed image: " + "; ".join(problems))
    with _locked(cache / f"{key}.lock"):
        if (dest / "meta.json").exists():
            return Image.load(dest)
        for stale in cache.glob(f"{key}.tmp-*"):
            pid = stale.name.rsplit("-", 1)[-1]
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                safe_rmtree(stale)
        mirror = mirror or find_mirror(suite)
        check_mirror(mirror, suite)
        log = _Log(cache / f"{key}.build.log")
        try:
            build(dest, packages, mirror, log, suite)
        finally:
            log.close()
    return Image.load(dest)
