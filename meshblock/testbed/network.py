"""The test bed's private network: a bridge inside a network namespace of its own.

The namespace (``mbtb-<pid>``) holds a bridge with the host-side address (by
default 10.99.0.1/24) and one tap device per guest.  The subnet exists only
inside the namespace; host programs reach the guests by running inside it
(``ip netns exec``; see :meth:`Netns.argv`).
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess

from .errors import TestbedError

BRIDGE = "mbtbbr0"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and p.returncode != 0:
        raise TestbedError(f"ip {' '.join(args)}: {p.stderr.strip()}")
    return p


def cleanup_stale() -> list[str]:
    """Delete namespaces ``mbtb-<pid>[-n]`` left by test-bed processes that no longer exist."""
    removed = []
    out = _ip("netns", "list", check=False).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.fullmatch(r"mbtb-(\d+)(?:-\d+)?", name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            _ip("netns", "del", name, check=False)
            removed.append(name)
    return removed


class Netns:
    """A network namespace with a bridge, a host address on it and taps for guests."""

    _count = 0

    def __init__(self, subnet: str = "10.99.0.0/24", name: str | None = None):
        self.subnet = ipaddress.ip_network(subnet)
        if name is None:
            name = f"mbtb-{os.getpid()}" + (f"-{Netns._count}" if Netns._count else "")
            Netns._count += 1
        self.name = name
        self.host_address = str(self.subnet.network_address + 1)
        self.prefix = self.subnet.prefixlen
        self.created = False
        self.taps: list[str] = []

    def argv(self) -> list[str]:
        """The argv prefix that runs a program inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def exec(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run(self.argv() + list(argv), capture_output=True, text=True, check=False)
        if check and p.returncode != 0:
            raise TestbedError(f"in {self.name}: {' '.join(argv)}: {p.stderr.strip()}")
        return p

    def guest_address(self, index: int) -> str:
        """Address of guest number ``index`` (0-based): .11, .12, ..."""
        return str(self.subnet.network_address + 11 + index)

    def create(self) -> None:
        cleanup_stale()
        _ip("netns", "add", self.name)
        self.created = True
        try:
            self.exec("ip", "link", "set", "lo", "up")
            self.exec("ip", "link", "add", BRIDGE, "type", "bridge", "stp_state", "0", "forward_delay", "0")
            self.exec("ip", "addr", "add", f"{self.host_address}/{self.prefix}", "dev", BRIDGE)
            self.exec("ip", "link", "set", BRIDGE, "up")
        except BaseException:
            self.delete()
            raise

    def add_tap(self, name: str) -> str:
        self.exec("ip", "tuntap", "add", "dev", name, "mode", "tap")
        self.taps.append(name)
        self.exec("ip", "link", "set", name, "master", BRIDGE)
        self.exec("ip", "link", "set", name, "up")
        return name

    def delete(self) -> None:
        if self.created:
            for tap in self.taps:
                self.exec("ip", "link", "del", tap, check=False)
            self.taps.clear()
            _ip("netns", "del", self.name, check=False)
            self.created = False
