"""The NVMe-oF target (lib/nvmf/nvmf_rpc.c, subsystem.c, transport.c, tcp.c).

Listeners really bind and listen on their TCP address (with ``SO_REUSEADDR``, as SPDK's posix
sock module does), so two targets - fake or real - cannot share a port, and a port some other
process holds makes ``nvmf_subsystem_add_listener`` fail as it does in SPDK.  Subsystems that
listen somewhere are published in the shared registry (see :mod:`.registry`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .app import (
    DECODE_INVALID,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    E,
    F,
    RpcError,
    decode,
    errno_error,
    parse_uuid,
    rpc,
)
from .bdev import Bdev, Desc
from .registry import pid_alive

if TYPE_CHECKING:
    from .target import Target

DISCOVERY_NQN = "nqn.2014-08.org.nvmexpress.discovery"
NQN_UUID_PRE = "nqn.2014-08.org.nvmexpress:uuid:"
NQN_MAX_LEN = 223
NQN_MIN_LEN = 11
DEFAULT_NAMESPACES = 32
MODEL_NUMBER_DEFAULT = "SPDK bdev Controller"
MIN_CNTLID, MAX_CNTLID = 1, 0xFFEF
ANA_STATES = ["optimized", "non_optimized", "inaccessible"]
TRTYPES = {"pcie": "PCIe", "rdma": "RDMA", "fc": "FC", "tcp": "TCP", "vfiouser": "VFIOUSER"}
ADRFAMS = {"ipv4": "IPv4", "ipv6": "IPv6", "ib": "IB", "fc": "FC"}


def nqn_is_valid(nqn: str) -> bool:
    """``nvmf_nqn_is_valid``."""
    raw = nqn.encode()
    n = len(raw)
    if n > NQN_MAX_LEN or n < NQN_MIN_LEN:
        return False
    if nqn == DISCOVERY_NQN:
        return True
    if nqn.startswith(NQN_UUID_PRE):
        return n == len(NQN_UUID_PRE) + 36 and parse_uuid(nqn[len(NQN_UUID_PRE):]) is not None
    if not nqn.startswith("nqn."):
        return False
    s = raw.decode("latin-1")

    def digit(c: str) -> bool:
        return "0" <= c <= "9"

    def alpha(c: str) -> bool:
        return ("a" <= c <= "z") or ("A" <= c <= "Z")

    if not (all(digit(c) for c in s[4:8]) and s[8] == "-" and digit(s[9]) and digit(s[10]) and s[11] == "."):
        return False
    end = s.find(":")
    if end == -1 or end >= n - 1:
        return False
    state, label = "letter", 0
    for i in range(12, end):
        if label > 63:
            return False
        c = s[i]
        if state == "letter":
            if not alpha(c):
                return False
            state, label = "any", label + 1
        elif state in ("ldh", "any"):
            if alpha(c) or digit(c):
                state, label = "any", label + 1
            elif c == "-":
                if i == end - 1:
                    return False
                state, label = "ldh", label + 1
            elif c == "." and state == "any":
                state, label = "letter", 0
            else:
                return False
    return True


def valid_ascii(s: str) -> bool:
    return all(0x20 <= ord(c) <= 0x7E for c in s)


@dataclass(eq=False)
class Transport:
    trtype: str
    opts: dict[str, Any]

    def dump(self) -> dict[str, Any]:
        o = self.opts
        return {"trtype": self.trtype, "max_queue_depth": o["max_queue_depth"],
                "max_io_qpairs_per_ctrlr": o["max_io_qpairs_per_ctrlr"],
                "in_capsule_data_size": o["in_capsule_data_size"], "max_io_size": o["max_io_size"],
                "max_aq_depth": o["max_aq_depth"], "iobuf_small_cache_size": o["iobuf_small_cache_size"],
                "iobuf_large_cache_size": o["iobuf_large_cache_size"],
                "dif_insert_or_strip": o["dif_insert_or_strip"], "zcopy": o["zcopy"],
                "c2h_success": o["c2h_success"], "sock_priority": o["sock_priority"],
                "abort_timeout_sec": o["abort_timeout_sec"], "ack_timeout": o["ack_timeout"],
                "data_wr_pool_size": o["data_wr_pool_size"],
                "disable_command_passthru": o["disable_command_passthru"], "kas": o["kas"],
                "min_kato": o["min_kato"]}


TCP_DEFAULTS = {"max_queue_depth": 128, "max_io_qpairs_per_ctrlr": 127, "in_capsule_data_size": 4096,
                "max_io_size": 131072, "max_aq_depth": 128, "iobuf_small_cache_size": 0xFFFFFFFF,
                "iobuf_large_cache_size": 0xFFFFFFFF, "dif_insert_or_strip": False, "zcopy": False,
                "c2h_success": True, "sock_priority": 0, "abort_timeout_sec": 1, "ack_timeout": 0,
                "data_wr_pool_size": 0, "disable_command_passthru": False, "kas": 100, "min_kato": 10000}


@dataclass(eq=False)
class TcpListener:
    key: tuple[str, str, str, str]
    sock: socket.socket
    refs: int = 0
    # opened with the ssl sock implementation (TLS only); a later listener on the same address and
    # port shares the socket as it is, whatever it asked for (transport.c spdk_nvmf_transport_listen)
    secure: bool = False


@dataclass(eq=False)
class Namespace:
    nsid: int
    bdev: Bdev
    desc: Desc
    uuid: str
    nguid: str
    eui64: str | None
    anagrpid: int


@dataclass(eq=False)
class Controller:
    """A host's controller on this target, created by a fake host's "connect"."""

    cntlid: int
    hostnqn: str
    hostid: str
    host_pid: int
    listener: tuple[str, str, str, str]
    ns_seen: str = ""  # the namespace list this host last heard of (a change raises an AEN)


@dataclass(eq=False)
class SubListener:
    trid: dict[str, str]
    ana_states: list[str]
    secure_channel: bool = False


@dataclass(eq=False)
class Subsystem:
    nqn: str
    discovery: bool = False
    serial_number: str = "0" * 20
    model_number: str = MODEL_NUMBER_DEFAULT
    max_namespaces: int = DEFAULT_NAMESPACES
    allow_any_host: bool = False
    ana_reporting: bool = False
    min_cntlid: int = MIN_CNTLID
    max_cntlid: int = MAX_CNTLID
    dmrsl: int = 2097152
    wzsl: int = 12
    passthrough: bool = False
    admin_label: str = ""
    hosts: list[str] = field(default_factory=list)
    # host NQN -> its DH-HMAC-CHAP keys (host key, controller key), keyring entries
    host_keys: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    host_psks: dict[str, Any] = field(default_factory=dict)   # host NQN -> its TLS PSK (keyring entry)
    namespaces: dict[int, Namespace] = field(default_factory=dict)
    listeners: list[SubListener] = field(default_factory=list)
    ctrlrs: list[Controller] = field(default_factory=list)
    next_cntlid: int = MIN_CNTLID

    def host_allowed(self, hostnqn: str) -> bool:
        return self.allow_any_host or hostnqn in self.hosts

    def alloc_cntlid(self) -> int:
        if not (self.min_cntlid <= self.next_cntlid <= self.max_cntlid):
            self.next_cntlid = self.min_cntlid
        c = self.next_cntlid
        self.next_cntlid = self.next_cntlid + 1 if self.next_cntlid < self.max_cntlid else self.min_cntlid
        return c

    def ns_view(self, listener: tuple[str, str, str, str] | None = None) -> list[dict[str, Any]]:
        """The namespaces as a host sees them (through ``listener``: with its ANA states)."""
        lst = next((x for x in self.listeners if trid_key(x.trid) == listener), None) if listener else None
        out = []
        for ns in sorted(self.namespaces.values(), key=lambda n: n.nsid):
            v = {"nsid": ns.nsid, "bdev_name": ns.bdev.name, "uuid": ns.uuid, "nguid": ns.nguid,
                 "block_size": ns.bdev.block_size, "num_blocks": ns.bdev.num_blocks, "anagrpid": ns.anagrpid}
            if self.ana_reporting and lst is not None:
                v["ana_state"] = lst.ana_states[ns.anagrpid - 1]
            out.append(v)
        return out

    def _host_dump(self, host: str) -> dict[str, Any]:
        d: dict[str, Any] = {"nqn": host}
        key, ckey = self.host_keys.get(host, (None, None))
        if key is not None:
            d["dhchap_key"] = key.name
        if ckey is not None:
            d["dhchap_ctrlr_key"] = ckey.name
        return d

    @property
    def max_nsid(self) -> int:
        return self.max_namespaces

    def dump(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "nqn": self.nqn, "subtype": "Discovery" if self.discovery else "NVMe",
            "listen_addresses": [dict(lst.trid) for lst in self.listeners],
            "allow_any_host": self.allow_any_host, "hosts": [self._host_dump(h) for h in self.hosts],
        }
        if not self.discovery:
            d["serial_number"] = self.serial_number
            d["model_number"] = self.model_number
            if self.admin_label:
                d["admin_label"] = self.admin_label
            if self.max_namespaces:
                d["max_namespaces"] = self.max_namespaces
            d.update({"passthrough": self.passthrough, "min_cntlid": self.min_cntlid,
                      "max_cntlid": self.max_cntlid, "dmrsl": self.dmrsl, "wzsl": self.wzsl})
            nss = []
            for nsid in sorted(self.namespaces):
                ns = self.namespaces[nsid]
                e: dict[str, Any] = {"nsid": nsid, "bdev_name": ns.bdev.name, "name": ns.bdev.name,
                                     "nguid": ns.nguid}
                if ns.eui64:
                    e["eui64"] = ns.eui64
                e["uuid"] = ns.uuid
                if self.ana_reporting:
                    e["anagrpid"] = ns.anagrpid
                nss.append(e)
            d["namespaces"] = nss
        return d

    def find_listener(self, trid: dict[str, str]) -> SubListener | None:
        k = trid_key(trid)
        return next((lst for lst in self.listeners if trid_key(lst.trid) == k), None)


def trid_key(trid: dict[str, str]) -> tuple[str, str, str, str]:
    return (trid["trtype"].upper(), trid["adrfam"].lower(), trid["traddr"].lower(), trid["trsvcid"])


LISTEN_ADDRESS = ("object", {"trtype": F("string", True), "adrfam": F("string"), "traddr": F("string", True),
                             "trsvcid": F("string")})


def to_trid(addr: dict[str, Any]) -> dict[str, str]:
    """``rpc_listen_address_to_trid``: -32602 "Invalid parameters" on a bad address."""
    bad = RpcError(INVALID_PARAMS, "Invalid parameters")
    trtype = addr["trtype"]
    if not trtype or len(trtype) > 32:
        raise bad
    trstring = trtype.upper()
    if "adrfam" in addr:
        fam = ADRFAMS.get(addr["adrfam"].lower())
        if fam is None:
            raise bad
    elif trtype.lower() in ("tcp", "rdma"):
        fam = "IPv4"
    else:
        fam = "unknown"
    if len(addr["traddr"]) > 256 or len(addr.get("trsvcid", "")) > 32:
        raise bad
    return {"trtype": trstring, "adrfam": fam, "traddr": addr["traddr"], "trsvcid": addr.get("trsvcid", "")}


class NvmfTarget:
    def __init__(self, t: Target):
        self.t = t
        self.transports: dict[str, Transport] = {}
        self.listeners: dict[tuple[str, str, str, str], TcpListener] = {}
        self.subsystems: list[Subsystem] = [Subsystem(DISCOVERY_NQN, discovery=True, allow_any_host=True,
                                                      max_namespaces=0)]

    def sorted(self) -> list[Subsystem]:
        """Subsystems live in an RB tree keyed by NQN (strcmp order)."""
        return sorted(self.subsystems, key=lambda s: s.nqn.encode())

    def find(self, nqn: str) -> Subsystem | None:
        return next((s for s in self.subsystems if s.nqn == nqn), None)

    def get_subsystem(self, nqn: str, message: str = "Invalid parameters") -> Subsystem:
        """The subsystem; SPDK 26.05 answers most calls naming an unknown one with a bare
        'Invalid parameters'."""
        s = self.find(nqn)
        if s is None:
            raise RpcError(INVALID_PARAMS, message)
        return s

    def transport(self, name: str) -> Transport | None:
        return self.transports.get(name.upper())

    def key_in_use(self, key: Any) -> bool:
        return any(key in pair for s in self.subsystems for pair in s.host_keys.values()) or \
            any(key is k for s in self.subsystems for k in s.host_psks.values())

    def release_keys(self, pair: tuple[Any, Any]) -> None:
        """A host entry let go of its keys: removed keys nobody holds any more are gone."""
        for k in pair:
            if k is not None and k.removed and not self.key_in_use(k):
                self.t.keyring.keys.pop(k.name, None)

    # --- TCP listening ---
    def listen(self, trid: dict[str, str], secure: bool = False) -> None:
        """``spdk_nvmf_tgt_listen_ext``: share an existing listener or bind a new socket."""
        if self.transport(trid["trtype"]) is None:
            raise errno_error(E.EINVAL)
        key = trid_key(trid)
        lst = self.listeners.get(key)
        if lst is not None:
            lst.refs += 1
            return
        if trid["trtype"] != "TCP":
            raise errno_error(E.EINVAL)
        try:
            port = int(trid["trsvcid"], 10)
        except ValueError:
            raise errno_error(E.EINVAL) from None
        if port <= 0 or port > 65535:
            raise errno_error(E.EINVAL)
        family = socket.AF_INET6 if trid["adrfam"] == "IPv6" else socket.AF_INET
        try:
            infos = socket.getaddrinfo(trid["traddr"], port, family, socket.SOCK_STREAM, 0,
                                       socket.AI_NUMERICSERV | socket.AI_PASSIVE)
        except socket.gaierror:
            raise errno_error(E.EINVAL) from None
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(infos[0][4])
            sock.listen(512)
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            raise errno_error(e.errno or E.EINVAL) from None
        lst = TcpListener(key, sock, refs=1, secure=secure)
        self.listeners[key] = lst
        asyncio.get_running_loop().add_reader(sock.fileno(), self._accept, sock)

    @staticmethod
    def _accept(sock: socket.socket) -> None:
        # No NVMe/TCP here: hosts find subsystems through the registry.  Accept and hang up.
        try:
            conn, _ = sock.accept()
            conn.close()
        except OSError:
            pass

    def stop_listen(self, trid: dict[str, str]) -> None:
        key = trid_key(trid)
        lst = self.listeners.get(key)
        if lst is None:
            return
        lst.refs -= 1
        if lst.refs <= 0:
            del self.listeners[key]
            self._close(lst)

    @staticmethod
    def _close(lst: TcpListener) -> None:
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(lst.sock.fileno())
        with contextlib.suppress(OSError):
            lst.sock.close()

    def shutdown(self) -> None:
        for lst in list(self.listeners.values()):
            self._close(lst)
        self.listeners.clear()

    # --- namespaces ---
    def remove_ns(self, s: Subsystem, nsid: int) -> None:
        ns = s.namespaces.pop(nsid)
        self.t.bdev.release(ns.bdev)
        self.t.bdev.close(ns.desc)

    def _ns_removed(self, desc: Desc) -> None:
        for s in self.subsystems:
            for nsid, ns in list(s.namespaces.items()):
                if ns.desc is desc:
                    self.remove_ns(s, nsid)

    def delete_subsystem(self, s: Subsystem) -> None:
        for lst in list(s.listeners):
            s.listeners.remove(lst)
            self.stop_listen(lst.trid)
        for nsid in list(s.namespaces):
            self.remove_ns(s, nsid)
        self.subsystems.remove(s)

    # --- registry ---
    def publication(self) -> dict[tuple[str, str], dict[str, Any]]:
        """What the registry shows for each address this target listens on."""
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for key in self.listeners:
            trtype, adrfam, traddr, trsvcid = key
            subs = {}
            for s in self.subsystems:
                if s.discovery or any(trid_key(x.trid) == key for x in s.listeners):
                    subs[s.nqn] = {"allow_any_host": s.allow_any_host, "hosts": list(s.hosts),
                                   "ana_reporting": s.ana_reporting, "namespaces": [] if s.discovery else s.ns_view(key)}
            out[(traddr, trsvcid)] = {"pid": self.t.registry.pid, "rpc_socket": self.t.rpc_socket,
                                      "trtype": trtype, "adrfam": ADRFAMS.get(adrfam, adrfam),
                                      "traddr": traddr, "trsvcid": trsvcid, "subsystems": subs}
        return out


# --- RPCs ----------------------------------------------------------------------------------------

TRANSPORT_SPEC = {
    "trtype": F("string", True), "tgt_name": F("string"), "max_queue_depth": F("uint16"),
    "max_io_qpairs_per_ctrlr": F("uint16"), "in_capsule_data_size": F("uint32"), "max_io_size": F("uint32"),
    "io_unit_size": F("uint32"), "max_aq_depth": F("uint32"), "num_shared_buffers": F("uint32"),
    "buf_cache_size": F("uint32"), "iobuf_small_cache_size": F("uint32"), "iobuf_large_cache_size": F("uint32"),
    "zcopy": F("bool"), "num_cqe": F("int32"), "max_srq_depth": F("uint32"), "no_srq": F("bool"),
    "c2h_success": F("bool"), "dif_insert_or_strip": F("bool"), "sock_priority": F("uint32"),
    "acceptor_backlog": F("int32"), "abort_timeout_sec": F("uint32"), "no_wr_batching": F("bool"),
    "control_msg_num": F("uint16"), "disable_mappable_bar0": F("bool"), "disable_adaptive_irq": F("bool"),
    "disable_shadow_doorbells": F("bool"), "acceptor_poll_rate": F("uint32"), "ack_timeout": F("uint32"),
    "data_wr_pool_size": F("uint32"), "disable_command_passthru": F("bool"), "kas": F("uint16"),
    "min_kato": F("uint32"), "masked_oncs": F("uint32"), "masked_fuses": F("uint32"),
}


def _tgt(p: dict[str, Any]) -> None:
    name = p.get("tgt_name")
    if name is not None and name != "nvmf_tgt":
        raise RpcError(INVALID_PARAMS, f"NVMf target '{name}' not found")


@rpc("nvmf_create_transport")
def nvmf_create_transport(t: Target, params: Any) -> bool:
    p = decode(params, TRANSPORT_SPEC, DECODE_INVALID, relaxed=True)
    if p.get("tgt_name") not in (None, "nvmf_tgt"):
        raise RpcError(INTERNAL_ERROR, "Unable to find a target.")
    trtype = p["trtype"]
    if trtype.lower() != "tcp":
        raise RpcError(INVALID_PARAMS, f"Invalid transport type '{trtype}'")
    if t.nvmf.transport(trtype) is not None:
        raise RpcError(INTERNAL_ERROR, f"Transport type '{trtype}' already exists")
    opts = dict(TCP_DEFAULTS)
    for k in list(opts):
        if k in p:
            opts[k] = p[k]
    if p.get("buf_cache_size"):
        opts["iobuf_small_cache_size"] = p["buf_cache_size"]
    if opts["kas"] == 0 or opts["min_kato"] == 0 or not (2 <= opts["max_queue_depth"] <= 65535) or \
            not (2 <= opts["max_aq_depth"] <= 4096):
        raise RpcError(INTERNAL_ERROR, "Failed to create transport.")
    t.nvmf.transports["TCP"] = Transport("TCP", opts)
    return True


@rpc("nvmf_get_transports")
def nvmf_get_transports(t: Target, params: Any) -> list[dict[str, Any]]:
    p = decode(params, {"tgt_name": F("string"), "trtype": F("string")}, DECODE_INVALID) if params else {}
    if p.get("tgt_name") not in (None, "nvmf_tgt"):
        raise RpcError(INTERNAL_ERROR, "Unable to find a target.")
    if "trtype" in p:
        tr = t.nvmf.transport(p["trtype"])
        if tr is None:
            raise errno_error(E.ENODEV)
        return [tr.dump()]
    return [tr.dump() for tr in t.nvmf.transports.values()]


SUBSYS_CREATE = {"nqn": F("string", True), "tgt_name": F("string"), "serial_number": F("string"),
                 "model_number": F("string"), "admin_label": F("string"), "max_namespaces": F("uint32"),
                 "allow_any_host": F("bool"), "ana_reporting": F("bool"), "min_cntlid": F("uint16"),
                 "max_cntlid": F("uint16"), "dmrsl": F("uint32"), "wzsl": F("uint8"), "passthrough": F("bool"),
                 "enable_nssr": F("bool")}


@rpc("nvmf_create_subsystem")
def nvmf_create_subsystem(t: Target, params: Any) -> bool:
    p = decode(params, SUBSYS_CREATE, DECODE_INVALID)
    if p.get("tgt_name") not in (None, "nvmf_tgt"):
        raise RpcError(INTERNAL_ERROR, f"Unable to find target {p['tgt_name']}")
    sn = p.get("serial_number")
    if sn is not None and (len(sn) > 20 or not valid_ascii(sn)):
        raise RpcError(INVALID_PARAMS, "Invalid parameters")
    mn = p.get("model_number")
    if mn is not None and (len(mn) > 40 or not valid_ascii(mn)):
        raise RpcError(INVALID_PARAMS, "Invalid parameters")
    label = p.get("admin_label")
    if label is not None and (len(label) > 64 or not valid_ascii(label)):
        raise RpcError(INVALID_PARAMS, "Invalid admin_label")
    nqn = p["nqn"]
    if t.nvmf.find(nqn) is not None or not nqn_is_valid(nqn):
        raise RpcError(INTERNAL_ERROR, f"Unable to create subsystem {nqn}")
    min_c, max_c = p.get("min_cntlid", MIN_CNTLID), p.get("max_cntlid", MAX_CNTLID)
    if min_c > max_c or min_c < MIN_CNTLID or max_c > MAX_CNTLID:
        raise RpcError(INVALID_PARAMS, f"Invalid cntlid range [{min_c}-{max_c}]")
    s = Subsystem(nqn, serial_number=sn if sn is not None else "0" * 20,
                  model_number=mn if mn is not None else MODEL_NUMBER_DEFAULT,
                  max_namespaces=p.get("max_namespaces") or DEFAULT_NAMESPACES,
                  allow_any_host=p.get("allow_any_host", False), ana_reporting=p.get("ana_reporting", False),
                  min_cntlid=min_c, max_cntlid=max_c, dmrsl=p.get("dmrsl", 2097152), wzsl=p.get("wzsl", 12),
                  passthrough=p.get("passthrough", False), admin_label=label or "")
    t.nvmf.subsystems.append(s)
    return True


@rpc("nvmf_delete_subsystem")
def nvmf_delete_subsystem(t: Target, params: Any) -> bool:
    p = decode(params, {"nqn": F("string", True), "tgt_name": F("string")}, DECODE_INVALID)
    _tgt(p)
    s = t.nvmf.get_subsystem(p["nqn"])
    t.nvmf.delete_subsystem(s)
    for pair in s.host_keys.values():
        t.nvmf.release_keys(pair)
    for psk in s.host_psks.values():
        t.nvmf.release_keys((psk, None))
    return True


@rpc("framework_get_config")
def framework_get_config(t: Target, params: Any) -> list[dict[str, Any]]:
    """The nvmf subsystem's part only, and of it only the host entries (nvmf_write_subsystem_config_json):
    the one place SPDK shows which TLS PSK a host has (nvmf_tcp_subsystem_dump_host)."""
    p = decode(params, {"name": F("string", True)}, DECODE_INVALID)
    if p["name"] != "nvmf":
        raise RpcError(INVALID_PARAMS, "Subsystem not found")
    out = []
    for s in t.nvmf.sorted():
        if s.discovery:
            continue
        for h in s.hosts:
            params_: dict[str, Any] = {"nqn": s.nqn, **{k: v for k, v in s._host_dump(h).items() if k != "nqn"},
                                       "host": h}
            if h in s.host_psks:
                params_["psk"] = s.host_psks[h].name
            out.append({"method": "nvmf_subsystem_add_host", "params": params_})
    return out


@rpc("nvmf_get_subsystems")
def nvmf_get_subsystems(t: Target, params: Any) -> list[dict[str, Any]]:
    p = decode(params, {"nqn": F("string"), "tgt_name": F("string")}, DECODE_INVALID) if params else {}
    _tgt(p)
    if "nqn" in p:
        s = t.nvmf.find(p["nqn"])
        if s is None:
            raise errno_error(E.ENODEV)
        return [s.dump()]
    return [s.dump() for s in t.nvmf.sorted()]


NAMESPACE = ("object", {"nsid": F("uint32"), "bdev_name": F("string", True), "nguid": F("string"),
                        "eui64": F("string"), "uuid": F("uuid"), "ptpl_file": F("string"),
                        "anagrpid": F("uint32"), "no_auto_visible": F("bool"), "hide_metadata": F("bool")})


def _hex(s: str, n: int) -> str | None:
    if len(s) != 2 * n:
        return None
    try:
        return bytes.fromhex(s).hex().upper()
    except ValueError:
        return None


@rpc("nvmf_subsystem_add_ns")
def nvmf_subsystem_add_ns(t: Target, params: Any) -> int:
    p = decode(params, {"nqn": F("string", True), "namespace": F(NAMESPACE, True), "tgt_name": F("string")},
               DECODE_INVALID, relaxed=True)
    _tgt(p)
    s = t.nvmf.get_subsystem(p["nqn"])
    n = p["namespace"]
    invalid = RpcError(INVALID_PARAMS, "Invalid parameters")
    nguid = None
    if "nguid" in n:
        nguid = _hex(n["nguid"], 16)
        if nguid is None:
            raise RpcError(INVALID_PARAMS, "Invalid nguid")
    eui64 = None
    if "eui64" in n:
        eui64 = _hex(n["eui64"], 8)
        if eui64 is None:
            raise RpcError(INVALID_PARAMS, "Invalid eui64")
    nsid = n.get("nsid", 0)
    if nsid == 0xFFFFFFFF:
        raise invalid
    if nsid == 0:
        nsid = next((i for i in range(1, s.max_nsid + 1) if i not in s.namespaces), 0)
        if nsid == 0:
            raise invalid
    if nsid > s.max_nsid or nsid in s.namespaces:
        raise invalid
    anagrpid = n.get("anagrpid", 0) or nsid
    if anagrpid > s.max_nsid:
        raise invalid
    try:
        desc = t.bdev.open(n["bdev_name"], True, "nvmf", t.nvmf._ns_removed)
    except RpcError:
        raise invalid from None
    try:
        t.bdev.claim(desc.bdev, "NVMe-oF Target")
    except RpcError:
        t.bdev.close(desc)
        raise invalid from None
    bdev = desc.bdev
    if nguid is None or nguid == "0" * 32:
        nguid = bdev.uuid.replace("-", "").upper()
    s.namespaces[nsid] = Namespace(nsid, bdev, desc, n.get("uuid") or bdev.uuid, nguid, eui64, anagrpid)
    return nsid


@rpc("nvmf_subsystem_remove_ns")
def nvmf_subsystem_remove_ns(t: Target, params: Any) -> bool:
    p = decode(params, {"nqn": F("string", True), "nsid": F("uint32", True), "tgt_name": F("string")},
               DECODE_INVALID)
    _tgt(p)
    s = t.nvmf.get_subsystem(p["nqn"])
    if p["nsid"] not in s.namespaces:
        raise RpcError(INVALID_PARAMS, "Invalid parameters")
    t.nvmf.remove_ns(s, p["nsid"])
    return True


ADD_LISTENER = {"nqn": F("string", True), "tgt_name": F("string"), "listen_address": F(LISTEN_ADDRESS, True),
                "secure_channel": F("bool"), "ana_state": F(("enum", ANA_STATES)), "sock_impl": F("string"),
                "numa_id": F("int32")}


@rpc("nvmf_subsystem_add_listener")
def nvmf_subsystem_add_listener(t: Target, params: Any) -> bool:
    p = decode(params, ADD_LISTENER, DECODE_INVALID, relaxed=True)
    _tgt(p)
    s = t.nvmf.get_subsystem(p["nqn"])
    trid = to_trid(p["listen_address"])
    if s.allow_any_host and p.get("secure_channel"):
        raise RpcError(INTERNAL_ERROR, "Cannot establish secure channel, when 'allow_any_host' is set")
    if s.find_listener(trid) is not None:
        raise RpcError(INVALID_PARAMS, "Invalid parameters")
    try:
        t.nvmf.listen(trid, bool(p.get("secure_channel")))
    except RpcError:
        raise RpcError(INVALID_PARAMS, "Invalid parameters") from None
    state = p.get("ana_state", "optimized")
    # TAILQ_INSERT_HEAD: newest first
    s.listeners.insert(0, SubListener(trid, [state] * s.max_nsid, bool(p.get("secure_channel"))))
    return True


@rpc("nvmf_subsystem_remove_listener")
def nvmf_subsystem_remove_listener(t: Target, params: Any) -> bool:
    spec = {"nqn": F("string", True), "tgt_name": F("string"), "listen_address": F(LISTEN_ADDRESS, True)}
    p = decode(params, spec, DECODE_INVALID)
    _tgt(p)
    s = t.nvmf.get_subsystem(p["nqn"])
    trid = to_trid(p["listen_address"])
    if t.nvmf.transport(trid["trtype"]) is None:
        raise RpcError(INVALID_PARAMS, "Invalid parameters")
    lst = s.find_listener(trid)
    if lst is None:
        raise RpcError(INVALID_PARAMS, "Invalid parameters")
    s.listeners.remove(lst)
    t.nvmf.stop_listen(lst.trid)
    s.ctrlrs = [c for c in s.ctrlrs if c.listener != trid_key(lst.trid)]  # their qpairs are gone
    return True


@rpc("nvmf_subsystem_listener_set_ana_state")
def nvmf_subsystem_listener_set_ana_state(t: Target, params: Any) -> bool:
    spec = {"nqn": F("string", True), "tgt_name": F("string"), "listen_address": F(LISTEN_ADDRESS, True),
            "ana_state": F(("enum", ANA_STATES), True), "anagrpid": F("uint32")}
    p = decode(params, spec, DECODE_INVALID)
    trid = to_trid(p["listen_address"])
    _tgt(p)
    s = t.nvmf.get_subsystem(p["nqn"], f"Unable to find subsystem with NQN {p['nqn']}")
    anagrpid = p.get("anagrpid", 0)

    def fail(err: int) -> RpcError:
        return RpcError(INTERNAL_ERROR, f"error setting ANA state: {-err}")

    if not s.ana_reporting:
        raise fail(E.EINVAL)
    if anagrpid > s.max_nsid:
        raise fail(E.EINVAL)
    lst = s.find_listener(trid)
    if lst is None:
        raise fail(E.EINVAL)
    for i in range(1, s.max_nsid + 1):
        if anagrpid == 0 or i == anagrpid:
            lst.ana_states[i - 1] = p["ana_state"]
    return True


@rpc("nvmf_subsystem_get_listeners")
def nvmf_subsystem_get_listeners(t: Target, params: Any) -> list[dict[str, Any]]:
    p = decode(params, {"nqn": F("string", True), "tgt_name": F("string")}, DECODE_INVALID)
    _tgt(p)
    s = t.nvmf.get_subsystem(p["nqn"])
    out = []
    for lst in s.listeners:
        d: dict[str, Any] = {"address": dict(lst.trid)}
        if s.ana_reporting:
            d["ana_states"] = [{"ana_group": i + 1, "ana_state": st} for i, st in enumerate(lst.ana_states)]
        out.append(d)
    return out


@rpc("nvmf_subsystem_add_host")
def nvmf_subsystem_add_host(t: Target, params: Any) -> bool:
    spec = {"nqn": F("string", True), "host": F("string", True), "tgt_name": F("string"), "psk": F("string"),
            "dhchap_key": F("string"), "dhchap_ctrlr_key": F("string")}
    p = decode(params, spec, DECODE_INVALID, relaxed=True)
    _tgt(p)
    s = t.nvmf.get_subsystem(p["nqn"])
    keys = _dhchap_keys(t, p)
    if not nqn_is_valid(p["host"]) or p["host"] in s.hosts or (keys[0] is None and keys[1] is not None):
        raise RpcError(INTERNAL_ERROR, "Internal error")
    psk = None
    if "psk" in p:
        # nvmf_tcp_subsystem_add_host: a key the keyring holds, in the interchange format
        psk = t.keyring.get(p["psk"])
        text = psk.read() if psk is not None else None
        if text is None or not _psk_form(text):
            raise RpcError(INTERNAL_ERROR, "Internal error")
    s.hosts.insert(0, p["host"])  # TAILQ_INSERT_HEAD: newest first
    if keys[0] is not None:
        s.host_keys[p["host"]] = keys
    if psk is not None:
        s.host_psks[p["host"]] = psk
    return True


def _psk_form(text: str) -> bool:
    """nvme_tcp_parse_interchange_psk: NVMeTLSkey-1:<01|02>:<base64 of the PSK and its CRC-32>: ."""
    import base64
    import binascii
    import re
    import zlib
    m = re.match(r"^NVMeTLSkey-1:(0[12]):([A-Za-z0-9+/=]+):$", text.strip())
    if m is None:
        return False
    try:
        raw = base64.b64decode(m.group(2), validate=True)
    except binascii.Error:
        return False
    psk, crc = raw[:-4], raw[-4:]
    return len(psk) == (32 if m.group(1) == "01" else 48) and zlib.crc32(psk).to_bytes(4, "little") == crc


def _dhchap_keys(t: Target, p: dict[str, Any]) -> tuple[Any, Any]:
    """The keyring entries a call names; an unknown one is 'Invalid parameters'."""
    out = []
    for field_name in ("dhchap_key", "dhchap_ctrlr_key"):
        name = p.get(field_name)
        key = t.keyring.get(name) if name is not None else None
        if name is not None and key is None:
            raise RpcError(INVALID_PARAMS, "Invalid parameters")
        out.append(key)
    return out[0], out[1]


@rpc("nvmf_subsystem_set_keys")
def nvmf_subsystem_set_keys(t: Target, params: Any) -> bool:
    spec = {"nqn": F("string", True), "host": F("string", True), "tgt_name": F("string"),
            "dhchap_key": F("string"), "dhchap_ctrlr_key": F("string")}
    p = decode(params, spec, DECODE_INVALID)
    _tgt(p)
    s = t.nvmf.get_subsystem(p["nqn"])
    keys = _dhchap_keys(t, p)
    if p["host"] not in s.hosts or (keys[0] is None and keys[1] is not None):
        raise errno_error(E.EINVAL)
    old = s.host_keys.pop(p["host"], (None, None))
    if keys[0] is not None:
        s.host_keys[p["host"]] = keys      # connected hosts stay; their next connection needs these
    t.nvmf.release_keys(old)
    return True


@rpc("nvmf_subsystem_remove_host")
def nvmf_subsystem_remove_host(t: Target, params: Any) -> bool:
    spec = {"nqn": F("string", True), "host": F("string", True), "tgt_name": F("string"),
            "timeout_ms": F("uint64")}
    p = decode(params, spec, DECODE_INVALID)
    _tgt(p)
    s = t.nvmf.get_subsystem(p["nqn"])
    if p["host"] not in s.hosts:
        raise RpcError(INTERNAL_ERROR, "Internal error")
    s.hosts.remove(p["host"])
    t.nvmf.release_keys(s.host_keys.pop(p["host"], (None, None)))
    t.nvmf.release_keys((s.host_psks.pop(p["host"], None), None))
    s.ctrlrs = [c for c in s.ctrlrs if c.hostnqn != p["host"]]  # spdk_nvmf_subsystem_disconnect_host
    return True


@rpc("nvmf_subsystem_allow_any_host")
def nvmf_subsystem_allow_any_host(t: Target, params: Any) -> bool:
    spec = {"nqn": F("string", True), "allow_any_host": F("bool", True), "tgt_name": F("string")}
    p = decode(params, spec, DECODE_INVALID)
    _tgt(p)
    s = t.nvmf.get_subsystem(p["nqn"])
    s.allow_any_host = p["allow_any_host"]
    return True


@rpc("nvmf_subsystem_get_controllers")
def nvmf_subsystem_get_controllers(t: Target, params: Any) -> list[dict[str, Any]]:
    p = decode(params, {"nqn": F("string", True), "tgt_name": F("string")}, DECODE_INVALID)
    _tgt(p)
    s = t.nvmf.get_subsystem(p["nqn"])
    s.ctrlrs = [c for c in s.ctrlrs if pid_alive(c.host_pid)]
    return [{"cntlid": c.cntlid, "cntrltype": "discovery" if s.discovery else "io", "hostnqn": c.hostnqn,
             "hostid": c.hostid, "num_io_qpairs": 0 if s.discovery else 1} for c in s.ctrlrs]


@rpc("nvmf_subsystem_get_qpairs")
def nvmf_subsystem_get_qpairs(t: Target, params: Any) -> list[dict[str, Any]]:
    p = decode(params, {"nqn": F("string", True), "tgt_name": F("string")}, DECODE_INVALID)
    _tgt(p)
    t.nvmf.get_subsystem(p["nqn"])
    return []


@rpc("nvmf_get_stats")
def nvmf_get_stats(t: Target, params: Any) -> dict[str, Any]:
    return {"tick_rate": 1_000_000_000, "poll_groups": [
        {"name": "nvmf_tgt_poll_group_000", "admin_qpairs": 0, "io_qpairs": 0, "current_admin_qpairs": 0,
         "current_io_qpairs": 0, "pending_bdev_io": 0, "completed_nvme_io": 0,
         "transports": [{"trtype": tr.trtype} for tr in t.nvmf.transports.values()]}]}


@rpc("nvmf_get_targets")
def nvmf_get_targets(t: Target, params: Any) -> list[str]:
    if params is not None:
        raise RpcError(INVALID_PARAMS, "nvmf_get_targets has no parameters.")
    return ["nvmf_tgt"]


# --- the target side of a fake host's connect (not SPDK RPCs; not listed by rpc_get_methods) --------

CONNECT = {"subnqn": F("string", True), "hostnqn": F("string", True), "hostid": F("string", True),
           "host_pid": F("int32", True), "trtype": F("string", True), "adrfam": F("string", True),
           "traddr": F("string", True), "trsvcid": F("string", True), "dhchap_secret": F("string"),
           "dhchap_ctrl_secret": F("string"), "psk": F("string")}


@rpc("fakespdk_nvmf_connect", hidden=True)
def fakespdk_nvmf_connect(t: Target, params: Any) -> dict[str, Any]:
    """The Fabrics Connect command: what ``nvmf_ctrlr_connect`` checks, with this target's live state."""
    p = decode(params, CONNECT, DECODE_INVALID)
    wildcard = "::" if ":" in p["traddr"] else "0.0.0.0"
    keys = [trid_key({"trtype": p["trtype"], "adrfam": p["adrfam"], "traddr": a, "trsvcid": p["trsvcid"]})
            for a in (p["traddr"], wildcard)]
    key = next((k for k in keys if k in t.nvmf.listeners), keys[0])  # the listener the host reached
    s = t.nvmf.find(p["subnqn"])
    if s is None:
        raise RpcError(-E.ENXIO, f"Subsystem {p['subnqn']} not found")
    if key not in t.nvmf.listeners or (not s.discovery and not any(trid_key(x.trid) == key for x in s.listeners)):
        raise RpcError(-E.EACCES, "Subsystem does not listen on this address")
    # TLS: a secure socket takes only a host that opens TLS with the PSK the target holds for its
    # identity (host and subsystem NQN); a clear-text socket takes no TLS at all
    if t.nvmf.listeners[key].secure:
        psk = s.host_psks.get(p["hostnqn"])
        if not p.get("psk") or psk is None or psk.read() is None or p["psk"].strip() != psk.read().strip():
            raise RpcError(-E.ECONNRESET, "TLS handshake failed")
    elif p.get("psk"):
        raise RpcError(-E.ECONNRESET, "TLS handshake failed: the listener is not a secure channel")
    if not s.discovery and not s.host_allowed(p["hostnqn"]):
        raise RpcError(-E.EACCES, f"Subsystem {s.nqn} does not allow host {p['hostnqn']}")
    hkey, ckey = s.host_keys.get(p["hostnqn"], (None, None))
    # DH-HMAC-CHAP: the host proves the secret it holds; a bidirectional host checks ours
    if hkey is not None and (hkey.read() is None or p.get("dhchap_secret") != hkey.read()):
        raise RpcError(-E.EACCES, "authentication failed")
    if ckey is not None and (ckey.read() is None or p.get("dhchap_ctrl_secret") != ckey.read()):
        raise RpcError(-E.EACCES, "controller authentication failed")
    c = Controller(s.alloc_cntlid(), p["hostnqn"], p["hostid"], p["host_pid"], key,
                   json.dumps(s.ns_view(key)))
    s.ctrlrs.append(c)
    return {"cntlid": c.cntlid, "serial_number": s.serial_number, "model_number": s.model_number,
            "ana_reporting": s.ana_reporting, "namespaces": [] if s.discovery else s.ns_view(key)}


@rpc("fakespdk_nvmf_ctrlr", hidden=True)
def fakespdk_nvmf_ctrlr(t: Target, params: Any) -> dict[str, Any]:
    p = decode(params, {"subnqn": F("string", True), "cntlid": F("uint16", True)}, DECODE_INVALID)
    s = t.nvmf.find(p["subnqn"])
    c = next((c for c in s.ctrlrs if c.cntlid == p["cntlid"]), None) if s is not None else None
    if s is None or c is None:
        return {"connected": False}
    view = [] if s.discovery else s.ns_view(c.listener)
    sig = json.dumps(view)
    changed, c.ns_seen = sig != c.ns_seen, sig
    return {"connected": True, "changed": changed, "namespaces": view}


@rpc("fakespdk_nvmf_disconnect", hidden=True)
def fakespdk_nvmf_disconnect(t: Target, params: Any) -> bool:
    p = decode(params, {"subnqn": F("string", True), "cntlid": F("uint16", True)}, DECODE_INVALID)
    s = t.nvmf.find(p["subnqn"])
    if s is not None:
        s.ctrlrs = [c for c in s.ctrlrs if c.cntlid != p["cntlid"]]
    return True


@rpc("fakespdk_bdev_raid_sb", hidden=True)
def fakespdk_bdev_raid_sb(t: Target, params: Any) -> Any:
    """Read (``sb`` absent) or write a raid superblock on one of this target's bdevs (for a host
    that has it as a namespace: the superblock lives in the exported bdev's data)."""
    p = decode(params, {"name": F("string", True), "sb": F("any")}, DECODE_INVALID)
    b = t.bdev.get(p["name"])
    if b is None:
        raise errno_error(E.ENODEV)
    if "sb" in p:
        t.bdev.put_raid_sb(b, p["sb"])
        return True
    return b.raid_sb


@rpc("fakespdk_bdev_write", hidden=True)
def fakespdk_bdev_write(t: Target, params: Any) -> bool:
    """A host wrote to a namespace: tell the bdev below (thin lvols allocate what is written)."""
    p = decode(params, {"name": F("string", True), "offset": F("uint64", True), "length": F("uint64", True)},
               DECODE_INVALID)
    b = t.bdev.get(p["name"])
    if b is None:
        raise errno_error(E.ENODEV)
    t.bdev.write(b, p["offset"], p["length"])
    return True
