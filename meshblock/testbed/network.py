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
BRIDGE_MAC = "02:6d:62:74:62:01"     # locally administered


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
        m = re.fullmatch(r"mbtb-(\d+)(?:-\d+)?(?:-p\d+)?", name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            _ip("netns", "del", name, check=False)
            removed.append(name)
    return removed


class Peer:
    """A network namespace of its own on the bridge (a veth pair), for processes that must be cut off
    from the rest of the network while they run: :meth:`cut` takes its link down, :meth:`heal`
    brings it back. Traffic to its own address stays inside it either way."""

    def __init__(self, bed: "Netns", index: int):
        self.bed = bed
        self.name = f"{bed.name}-p{index}"
        self.address = str(bed.subnet.network_address + 2 + index)
        self.link = f"mbtbv{index}"              # the bridge's end of the veth pair
        self.blackholes: set[str] = set()

    def argv(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def create(self) -> None:
        _ip("netns", "add", self.name)
        inner = f"{self.link}p"
        self.bed.exec("ip", "link", "add", self.link, "type", "veth", "peer", "name", inner, "netns", self.name)
        self.bed.exec("ip", "link", "set", self.link, "master", BRIDGE)
        self.bed.exec("ip", "link", "set", self.link, "up")
        for argv in (("ip", "link", "set", "lo", "up"),
                     ("ip", "addr", "add", f"{self.address}/{self.bed.prefix}", "dev", inner),
                     ("ip", "link", "set", inner, "up")):
            self._exec(*argv)

    def cut(self, only: list[str] | None = None) -> None:
        """Cut the namespace off: from everything (its link down), or only from the addresses
        ``only`` (blackhole routes inside it, so what it sends them is lost; the rest still works)."""
        if only is None:
            self.bed.exec("ip", "link", "set", self.link, "down")
            return
        for address in only:
            self._exec("ip", "route", "replace", "blackhole", f"{address}/32")
            self.blackholes.add(address)

    def heal(self) -> None:
        self.bed.exec("ip", "link", "set", self.link, "up")
        for address in sorted(self.blackholes):
            self._exec("ip", "route", "del", "blackhole", f"{address}/32", check=False)
        self.blackholes.clear()

    def _exec(self, *argv: str, check: bool = True) -> None:
        p = subprocess.run(self.argv() + list(argv), capture_output=True, text=True, check=False)
        if check and p.returncode != 0:
            raise TestbedError(f"in {self.name}: {' '.join(argv)}: {p.stderr.strip()}")

    def delete(self) -> None:
        self.bed.exec("ip", "link", "del", self.link, check=False)
        _ip("netns", "del", self.name, check=False)


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
        self.peers: list[Peer] = []

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
            # A bridge takes the lowest MAC address of its ports unless given one: adding or removing a
            # peer would change it under the guests' ARP caches, and they would lose the host side.
            self.exec("ip", "link", "set", BRIDGE, "address", BRIDGE_MAC)
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

    def add_peer(self) -> Peer:
        """A new namespace on the bridge at .2, .3, ... (guests start at .11)."""
        if len(self.peers) >= 9:
            raise TestbedError("at most 9 peer namespaces (their addresses end below the guests')")
        peer = Peer(self, len(self.peers))
        self.peers.append(peer)
        peer.create()
        return peer

    def remove_peer(self, peer: Peer) -> None:
        peer.delete()
        self.peers.remove(peer)

    def delete(self) -> None:
        if self.created:
            for peer in self.peers:
                peer.delete()
            self.peers.clear()
            for tap in self.taps:
                self.exec("ip", "link", "del", tap, check=False)
            self.taps.clear()
            _ip("netns", "del", self.name, check=False)
            self.created = False
