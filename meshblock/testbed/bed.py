"""A test bed: cached image, private network namespace and any number of guests on it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from .errors import GuestError, TestbedError
from .guest import Guest, GuestSpec, _pdeathsig, qemu_argv, start_qemu
from .image import DEFAULT_KERNEL, Image, ensure_image
from .initramfs import build_initramfs
from .network import Netns

REPO_ROOT = Path(__file__).resolve().parents[2]
KEEP_ENV = "MESHBLOCK_TESTBED_KEEP"
DEFAULT_NAMES = ("a", "b", "c", "d", "e", "f", "g", "h")


class Testbed:
    """Guests on a private bridge, plus the host's way into that network.

    Use as a context manager, or call :meth:`start` and :meth:`close`.  Guests are
    booted on demand (:meth:`guest`, :meth:`guests`) and kept until :meth:`close`,
    each with one of the image's kernels (``kernel="stock"``, the default, or
    ``kernel="backports"``; see :data:`meshblock.testbed.image.KERNELS`).
    The checkout at ``share`` is mounted read-only in every guest at
    ``share_mount`` (9p), so ``PYTHONPATH=/meshblock python3 ...`` runs the
    project's code there.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, image: Image | None = None, *, share: Path | None = REPO_ROOT,
                 share_tag: str = "meshblock", share_mount: str = "/meshblock",
                 subnet: str = "10.99.0.0/24", memory_mb: int = 1024, boot_timeout: float = 240.0,
                 run_dir: Path | None = None):
        self.image = image
        self.share = share
        self.share_tag = share_tag
        self.share_mount = share_mount
        self.memory_mb = memory_mb
        self.boot_timeout = boot_timeout
        self.netns = Netns(subnet)
        self._run_dir_arg = run_dir
        self.run_dir: Path | None = None
        self.initrd: Path | None = None          # the default kernel's initramfs
        self._initrds: dict[str, Path] = {}
        self._guests: dict[str, Guest] = {}
        self._procs: list[subprocess.Popen] = []
        self._started = False

    # --- set-up and tear-down --------------------------------------------------------------------

    def start(self) -> Testbed:
        if self._started:
            return self
        if self.image is None:
            self.image = ensure_image()
        if self._run_dir_arg is not None:
            self.run_dir = Path(self._run_dir_arg)
            self.run_dir.mkdir(parents=True, exist_ok=True)
        else:
            # Short, because the agent sockets live here (Unix socket paths are limited to 107 bytes).
            self.run_dir = Path(tempfile.mkdtemp(prefix="mbtb-", dir="/tmp"))
        self.initrd = self.initramfs(DEFAULT_KERNEL)
        self.netns.create()
        self._started = True
        return self

    def close(self) -> None:
        for p in reversed(self._procs):
            _stop(p)
        self._procs.clear()
        for g in list(self._guests.values()):
            g.kill()
        self._guests.clear()
        self.netns.delete()
        if self.run_dir is not None and self._run_dir_arg is None and not os.environ.get(KEEP_ENV):
            shutil.rmtree(self.run_dir, ignore_errors=True)
        self._initrds.clear()
        self._started = False

    def initramfs(self, kernel: str = DEFAULT_KERNEL) -> Path:
        """The session's initramfs for one of the image's kernels (made on first use)."""
        if kernel not in self._initrds:
            self.image.get_kernel(kernel)  # an unknown name fails here, with the ones there are
            name = "initrd.cpio" if kernel == DEFAULT_KERNEL else f"initrd-{kernel}.cpio"
            self._initrds[kernel] = build_initramfs(self.image, self.run_dir / name, kernel)
        return self._initrds[kernel]

    def __enter__(self) -> Testbed:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the network ----------------------------------------------------------------------------

    @property
    def host_address(self) -> str:
        """The host's address on the guests' bridge (inside the namespace)."""
        return self.netns.host_address

    def netns_argv(self) -> list[str]:
        """argv prefix that runs a host program inside the test bed's network namespace."""
        return self.netns.argv()

    def popen(self, argv: Sequence[str], *, log: str | None = None, **kw) -> subprocess.Popen:
        """Start a host program inside the namespace; it is killed (by PID) at :meth:`close`.

        Output goes to ``<run_dir>/<log>`` (default: the program's name) unless
        ``stdout``/``stderr`` are given.
        """
        self._require_started()
        argv = [str(a) for a in argv]
        opened = None
        if "stdout" not in kw:
            path = self.run_dir / (log or f"{Path(argv[0]).name}.{len(self._procs)}.log")
            kw["stdout"] = opened = open(path, "ab")
            kw.setdefault("stderr", subprocess.STDOUT)
        kw.setdefault("stdin", subprocess.DEVNULL)
        try:
            p = subprocess.Popen(self.netns_argv() + argv, preexec_fn=_pdeathsig, **kw)
        finally:
            if opened is not None:
                opened.close()
        self._procs.append(p)
        return p

    def stop(self, p: subprocess.Popen, timeout: float = 10.0) -> int | None:
        """Stop a program started with :meth:`popen` (SIGTERM, then SIGKILL) and return its exit status."""
        _stop(p, timeout)
        if p in self._procs:
            self._procs.remove(p)
        return p.returncode

    # --- guests ---------------------------------------------------------------------------------

    def guest(self, name: str = "a", **kw) -> Guest:
        """The guest called ``name``, booted first if it is not running yet.

        ``kernel="backports"`` boots it with the image's backports kernel instead of the
        stock one; asking for a running guest with another kernel than it runs is an error.
        """
        return self.boot(name, **kw)[0]

    def guests(self, n_or_names: int | Sequence[str] = 2, **kw) -> list[Guest]:
        """Several guests (``2`` means a and b), the missing ones booted in parallel."""
        names = list(DEFAULT_NAMES[:n_or_names]) if isinstance(n_or_names, int) else list(n_or_names)
        return self.boot(*names, **kw)

    def boot(self, *names: str, memory_mb: int | None = None, disks: Sequence[int] = (),
             kernel: str = DEFAULT_KERNEL) -> list[Guest]:
        self._require_started()
        for n in names:
            g = self._guests.get(n)
            if g is not None and g.kernel != kernel:
                raise TestbedError(f"guest {n} runs the {g.kernel} kernel, not {kernel}; "
                                   f"remove it first or use another name")
        todo = [n for n in dict.fromkeys(names) if n not in self._guests]
        initrd = self.initramfs(kernel) if todo else None
        started = time.monotonic()
        pending: list[Guest] = []
        try:
            for name in todo:
                pending.append(self._launch(name, memory_mb or self.memory_mb, disks, kernel, initrd))
            for g in pending:
                g.wait_ready(self.boot_timeout, started)
                self._guests[g.name] = g
        except BaseException:
            for g in pending:
                if g.name not in self._guests:
                    g.kill()
            raise
        return [self._guests[n] for n in names]

    def running(self) -> list[Guest]:
        return list(self._guests.values())

    def remove(self, name: str) -> None:
        """Power a guest off (killed by PID); a later :meth:`guest` call boots it afresh."""
        g = self._guests.pop(name, None)
        if g is not None:
            g.kill()

    def _launch(self, name: str, memory_mb: int, disks: Sequence[int], kernel: str, initrd: Path) -> Guest:
        index = len(self.netns.taps)
        if index > 200:
            raise TestbedError("too many guests")
        spec = GuestSpec(name=name, index=index, address=self.netns.guest_address(index),
                         prefix=self.netns.prefix, memory_mb=memory_mb, disks=tuple(disks), kernel=kernel)
        tap = self.netns.add_tap(f"mbtbt{index}")
        overlay = self.run_dir / f"{name}.qcow2"
        for stale in self.run_dir.glob(f"{name}.*"):
            stale.unlink()
        _run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(self.image.rootfs), str(overlay)])
        disk_paths = []
        for i, size in enumerate(disks, 1):
            d = self.run_dir / f"{name}.disk{i}.qcow2"
            _run(["qemu-img", "create", "-q", "-f", "qcow2", str(d), str(int(size))])
            disk_paths.append(d)
        share = (self.share_tag, self.share, self.share_mount) if self.share else None
        argv = qemu_argv(spec, kernel=self.image.get_kernel(kernel).boot, initrd=initrd, overlay=overlay,
                         disks=disk_paths, run_dir=self.run_dir, tap=tap, share=share, gateway=None)
        (self.run_dir / f"{name}.cmdline").write_text(" ".join(argv) + "\n")
        proc = start_qemu(argv, self.netns_argv(), self.run_dir / f"{name}.qemu.log")
        return Guest(spec, proc, self.run_dir, tap)

    def _require_started(self) -> None:
        if not self._started:
            raise TestbedError("the test bed is not started")

    def describe(self) -> str:
        lines = [f"namespace {self.netns.name}, host {self.host_address}, run dir {self.run_dir}"]
        for g in self._guests.values():
            lines.append(f"  {g.name}: {g.address} pid {g.pid} kernel {g.kernel} hostnqn {g.hostnqn} "
                         f"boot {g.boot_seconds:.1f}s")
        return "\n".join(lines)


def _run(argv: list[str]) -> None:
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    if p.returncode != 0:
        raise GuestError(f"{' '.join(argv)}: {p.stdout.strip()}")


def _stop(p: subprocess.Popen, timeout: float = 10.0) -> None:
    if p.poll() is not None:
        return
    try:
        os.kill(p.pid, signal.SIGTERM)
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout)
    except ProcessLookupError:
        pass
