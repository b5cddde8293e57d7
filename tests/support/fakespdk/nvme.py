"""The NVMe-oF host side (module/bdev/nvme): attach, detach and list controllers.

A fake cannot speak NVMe/TCP.  It finds the target listening on an address through the
registry (:mod:`.registry`), checks that the address accepts TCP connections, and sends the
"Fabrics Connect" to that target's RPC socket (``fakespdk_nvmf_connect``), where the target
decides with its live state (subsystem, listener, host allowlist) and hands out a controller
ID.  Bdevs ``<name>n<nsid>`` get the remote namespaces' sizes and UUIDs (the NGUID, as SPDK's
initiator takes it).  Every way a real connect fails (nothing listening, unknown subsystem,
host not allowed) ends in SPDK as ``-5 Input/output error``; a target in ``--interrupt-mode``
refuses TCP at once with ``-95 Operation not supported``.

Afterwards, as SPDK's initiator does (namespace-change AENs, keep-alive, reconnects), a poller
follows each controller: namespaces added, removed or resized on the target show up as bdevs
added, removed or resized; a controller the target dropped (host removed from the allowlist,
listener or subsystem deleted, target gone) turns "failed" with its bdevs kept, and is
reconnected (with a new controller ID) as soon as the target admits it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .app import DECODE_FAILED, E, F, RpcError, decode, errno_error, rpc
from .bdev import Bdev
from .nvmf import ADRFAMS, DISCOVERY_NQN, TRTYPES

if TYPE_CHECKING:
    from .target import Target

CONTROLLER_NAME_MAX = 512
CONNECT_TIMEOUT = 2.0
POLL_INTERVAL = 0.25
NVME_IO_TYPES = frozenset({"read", "write", "unmap", "flush", "reset", "nvme_admin", "nvme_io", "write_zeroes",
                           "compare", "compare_and_write", "abort", "copy"})


async def remote_call(sock: str, method: str, params: dict[str, Any], timeout: float = CONNECT_TIMEOUT) -> Any:
    """One JSON-RPC call to another (fake) target; raises RpcError or OSError/TimeoutError."""
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(sock), timeout)
    try:
        writer.write(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()
    if not line:
        raise ConnectionError("target closed the connection")
    resp = json.loads(line)
    if "error" in resp:
        raise RpcError(resp["error"]["code"], resp["error"]["message"])
    return resp.get("result")


@dataclass(eq=False)
class NvmePath:
    """One path of a controller: a connection (multipath) or a failover alternate (not connected)."""

    trid: dict[str, str]
    target_sock: str
    cntlid: int
    connected: bool = True
    state: str = "enabled"
    ana: dict[int, str] = field(default_factory=dict)  # nsid -> ANA state seen through this path

    def info(self, hostnqn: str, alternates: list[NvmePath] = ()) -> dict[str, Any]:  # type: ignore[assignment]
        d: dict[str, Any] = {"state": self.state, "trid": dict(self.trid)}
        if alternates:
            d["alternate_trids"] = [dict(x.trid) for x in alternates]
        d["cntlid"] = self.cntlid
        d["host"] = {"nqn": hostnqn, "addr": "", "svcid": "", "no_shn_notification": False}
        return d


@dataclass(eq=False)
class Ctrlr:
    """An nvme_bdev_ctrlr: in multipath mode one controller per path, else one with alternates."""

    name: str
    hostnqn: str
    subnqn: str
    multipath: bool
    paths: list[NvmePath]
    serial_number: str
    model_number: str
    ana_reporting: bool = False
    bdevs: dict[int, Bdev] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)   # DH-HMAC-CHAP: what it proves -> keyring name

    def connected(self) -> list[NvmePath]:
        return [p for p in self.paths if p.connected]

    def info(self) -> list[dict[str, Any]]:
        if self.multipath:
            return [p.info(self.hostnqn) for p in self.paths]
        return [self.paths[0].info(self.hostnqn, self.paths[1:])]


class NvmeModule:
    def __init__(self, t: Target):
        self.t = t
        self.ctrlrs: dict[str, Ctrlr] = {}
        self.default_hostnqn = f"nqn.2014-08.org.nvmexpress:uuid:{uuidlib.uuid4()}"
        self.hostid = str(uuidlib.uuid4())
        self.poller: asyncio.Task | None = None

    def ensure_poller(self) -> None:
        if self.poller is None or self.poller.done():
            self.poller = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        while self.ctrlrs:
            await asyncio.sleep(POLL_INTERVAL)
            for c in list(self.ctrlrs.values()):
                with contextlib.suppress(Exception):
                    await self._check(c)

    async def _check(self, c: Ctrlr) -> None:
        for p in c.connected():
            await self._check_path(c, p)

    async def _check_path(self, c: Ctrlr, p: NvmePath) -> None:
        if p.state == "enabled":
            try:
                st = await remote_call(p.target_sock, "fakespdk_nvmf_ctrlr", {"subnqn": c.subnqn, "cntlid": p.cntlid})
            except (TimeoutError, OSError, RpcError, ValueError):
                st = {"connected": False}
            if self.ctrlrs.get(c.name) is not c or p not in c.paths:
                return
            if not st.get("connected"):
                p.state = "failed"
                return
            if st.get("changed"):  # the namespace-change (or ANA-change) AEN
                p.ana = {ns["nsid"]: ns["ana_state"] for ns in st["namespaces"] if "ana_state" in ns}
                await self.sync_namespaces(c, st["namespaces"], remove=True)
            return
        # failed: try to reconnect, as bdev_nvme's reset/reconnect does
        try:
            sock, res = await self.connect(c.subnqn, c.hostnqn, p.trid, c.keys)
        except RpcError:
            return
        if self.ctrlrs.get(c.name) is not c or p not in c.paths:
            await self.disconnect(sock, c.subnqn, res["cntlid"])
            return
        p.target_sock, p.cntlid = sock, res["cntlid"]
        p.ana = {ns["nsid"]: ns["ana_state"] for ns in res["namespaces"] if "ana_state" in ns}
        p.state = "enabled"  # SPDK does not rescan namespaces on reconnect; only an AEN does

    async def sync_namespaces(self, c: Ctrlr, namespaces: list[dict[str, Any]], *, remove: bool) -> None:
        seen = set()
        for ns in namespaces:
            nsid = ns["nsid"]
            seen.add(nsid)
            b = c.bdevs.get(nsid)
            if b is None:
                await self.add_bdev(c, ns)
            elif b.num_blocks != ns["num_blocks"]:
                b.num_blocks = ns["num_blocks"]  # resize AEN: SPDK follows growth and shrink alike
        if remove:
            for nsid in [n for n in c.bdevs if n not in seen]:
                self.t.bdev.unregister(c.bdevs.pop(nsid))

    async def add_bdev(self, c: Ctrlr, ns: dict[str, Any]) -> Bdev | None:
        nguid = ns.get("nguid") or ns["uuid"].replace("-", "")
        bs = ns["block_size"]
        b = Bdev(f"{c.name}n{ns['nsid']}", bs, ns["num_blocks"], "NVMe disk", "nvme",
                 uuid=str(uuidlib.UUID(hex=nguid.lower())), io_types=NVME_IO_TYPES, numa_id=-1,
                 write_hints=(1, 1, max(1, 131072 // bs), 1, 1), memory_domains=["DMA"],
                 ctx=(c, ns["nsid"], ns.get("bdev_name")))
        # examine reads the namespace's first blocks: a raid superblock written there remotely
        with contextlib.suppress(Exception):
            b.raid_sb = await remote_call(c.paths[0].target_sock, "fakespdk_bdev_raid_sb",
                                          {"name": ns.get("bdev_name")})
        try:
            self.t.bdev.register(b)
        except RpcError:
            return None
        c.bdevs[ns["nsid"]] = b
        return b

    def put_raid_sb(self, b: Bdev, sb: dict[str, Any] | None) -> None:
        c, _, remote_name = b.ctx
        asyncio.get_running_loop().create_task(self._put_sb(c.paths[0].target_sock, remote_name, sb))

    def write(self, b: Bdev, offset: int, length: int) -> None:
        """Data written to a remote namespace lands in the exported bdev (a thin lvol allocates)."""
        c, _, remote_name = b.ctx
        asyncio.get_running_loop().create_task(self._remote(c.paths[0].target_sock, "fakespdk_bdev_write", {
            "name": remote_name, "offset": offset, "length": length}))

    @staticmethod
    async def _remote(sock: str, method: str, params: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):
            await remote_call(sock, method, params)

    @staticmethod
    async def _put_sb(sock: str, name: str, sb: dict[str, Any] | None) -> None:
        with contextlib.suppress(Exception):
            await remote_call(sock, "fakespdk_bdev_raid_sb", {"name": name, "sb": sb})

    async def connect(self, subnqn: str, hostnqn: str, trid: dict[str, str],
                      keys: dict[str, str] | None = None) -> tuple[str, dict[str, Any]]:
        """Find the target at ``trid`` and connect, proving the DH-HMAC-CHAP secrets of ``keys`` and
        opening TLS with its PSK (read from their files now, as SPDK does at each connection); every
        failure is ``-EIO``."""
        proof = {}
        for field_name, key_name in (keys or {}).items():
            key = self.t.keyring.keys.get(key_name)
            text = key.read() if key is not None else None
            if text is not None:
                proof[field_name] = text
        doc = self.t.registry.lookup(trid["traddr"], trid["trsvcid"])
        family = socket.AF_INET6 if trid["adrfam"] == "IPv6" else socket.AF_INET
        if doc is None or not await _tcp_reachable(trid["traddr"], trid["trsvcid"], family):
            raise errno_error(E.EIO)
        try:
            res = await remote_call(doc["rpc_socket"], "fakespdk_nvmf_connect", {
                "subnqn": subnqn, "hostnqn": hostnqn, "hostid": self.hostid, "host_pid": self.t.registry.pid,
                "trtype": trid["trtype"], "adrfam": trid["adrfam"], "traddr": trid["traddr"],
                "trsvcid": trid["trsvcid"], **proof})
        except (TimeoutError, OSError, RpcError, ValueError):
            raise errno_error(E.EIO) from None
        return doc["rpc_socket"], res

    async def disconnect(self, sock: str, subnqn: str, cntlid: int) -> None:
        with contextlib.suppress(Exception):
            await remote_call(sock, "fakespdk_nvmf_disconnect", {"subnqn": subnqn, "cntlid": cntlid}, timeout=1.0)

    async def detach(self, c: Ctrlr, paths: list[NvmePath] | None = None) -> None:
        paths = list(c.paths) if paths is None else paths
        for p in paths:
            if p.connected:
                await self.disconnect(p.target_sock, c.subnqn, p.cntlid)
            c.paths.remove(p)
        if c.paths and not c.connected():  # failover: the next alternate becomes the active path
            nxt = c.paths[0]
            with contextlib.suppress(RpcError):
                nxt.target_sock, res = await self.connect(c.subnqn, c.hostnqn, nxt.trid, c.keys)
                nxt.cntlid, nxt.connected = res["cntlid"], True
        if not c.paths:
            self.ctrlrs.pop(c.name, None)
            for b in list(c.bdevs.values()):
                self.t.bdev.unregister(b)
            c.bdevs.clear()

    async def shutdown(self) -> None:
        for c in list(self.ctrlrs.values()):
            for p in c.connected():
                await self.disconnect(p.target_sock, c.subnqn, p.cntlid)
        if self.poller is not None:
            self.poller.cancel()


async def _tcp_reachable(traddr: str, trsvcid: str, family: int) -> bool:
    try:
        fut = asyncio.open_connection(traddr, int(trsvcid), family=family)
        _, w = await asyncio.wait_for(fut, CONNECT_TIMEOUT)
    except (TimeoutError, OSError, ValueError):
        return False
    w.close()
    return True


ATTACH = {
    "name": F("string", True), "trtype": F("string", True), "traddr": F("string", True), "adrfam": F("string"),
    "trsvcid": F("string"), "priority": F("string"), "subnqn": F("string"), "hostnqn": F("string"),
    "hostaddr": F("string"), "hostsvcid": F("string"), "prchk_reftag": F("bool"), "prchk_guard": F("bool"),
    "hdgst": F("bool"), "ddgst": F("bool"), "fabrics_connect_timeout_us": F("uint64"),
    "multipath": F(("enum", ["failover", "multipath", "disable"])), "num_io_queues": F("uint32"),
    "ctrlr_loss_timeout_sec": F("int32"), "reconnect_delay_sec": F("uint32"),
    "fast_io_fail_timeout_sec": F("uint32"), "psk": F("string"), "max_bdevs": F("uint32"),
    "dhchap_key": F("string"), "dhchap_ctrlr_key": F("string"), "allow_unrecognized_csi": F("bool"),
    "multipath_opts": F(("object", {"policy": F(("enum", ["active_passive", "active_active"])),
                                    "selector": F(("enum", ["round_robin", "queue_depth"])),
                                    "min_io": F("uint32")})),
    "disable_sq_flow_control": F("bool"),
}


def _einval(msg: str) -> RpcError:
    return RpcError(-E.EINVAL, msg)


@rpc("bdev_nvme_attach_controller")
async def bdev_nvme_attach_controller(t: Target, params: Any) -> list[str]:
    p = decode(params, ATTACH, DECODE_FAILED)
    name = p["name"]
    if p.get("max_bdevs", 128) == 0:
        raise _einval("max_bdevs cannot be zero")
    trtype = p["trtype"]
    if not trtype or len(trtype) > 32:
        raise _einval(f"Failed to parse trtype: {trtype}")
    trstring = TRTYPES.get(trtype.lower(), "CUSTOM")
    if len(p["traddr"]) >= 256:
        raise _einval(f"traddr too long: {p['traddr']}")
    adrfam = ""
    if "adrfam" in p:
        adrfam = ADRFAMS.get(p["adrfam"].lower(), "")
        if not adrfam:
            raise _einval(f"Failed to parse adrfam: {p['adrfam']}")
    trsvcid = p.get("trsvcid", "")
    if len(trsvcid) >= 32:
        raise _einval(f"trsvcid too long: {trsvcid}")
    subnqn = p.get("subnqn") or DISCOVERY_NQN
    hostnqn = p.get("hostnqn") or t.nvme.default_hostnqn
    if len(subnqn) >= 224:
        raise _einval(f"subnqn too long: {subnqn}")
    if len(hostnqn) >= 224:
        raise _einval(f"hostnqn too long: {hostnqn}")
    multipath = p.get("multipath", "multipath")
    existing = t.nvme.ctrlrs.get(name)
    trid = {"trtype": trstring, "adrfam": adrfam or "IPv4", "traddr": p["traddr"], "trsvcid": trsvcid,
            "subnqn": subnqn}
    if existing is not None:
        if multipath == "disable":
            raise RpcError(-E.EALREADY, f"A controller named {name} already exists and multipath is disabled")
        if any(x.trid["traddr"] == trid["traddr"] and x.trid["trsvcid"] == trid["trsvcid"]
               for x in existing.paths):
            raise RpcError(-E.EALREADY,
                           f"A controller named {name} already exists with the specified network path")
        if existing.subnqn != subnqn:
            raise _einval(f"A controller named {name} already exists, but uses a different subnqn "
                          f"({existing.subnqn})")
        if existing.hostnqn != hostnqn:
            raise _einval(f"A controller named {name} already exists, but uses a different hostnqn "
                          f"({existing.hostnqn})")
    if p.get("num_io_queues", 1) == 0 or p.get("num_io_queues", 1) > 65536:
        raise _einval("num_io_queues out of bounds, min: 1 max: 65536")
    # spdk_bdev_nvme_create
    for c in t.nvme.ctrlrs.values():
        if c.hostnqn == hostnqn and c.subnqn == subnqn and any(
                x.trid["traddr"] == trid["traddr"] and x.trid["trsvcid"] == trid["trsvcid"] and
                x.trid["trtype"] == trstring for x in c.paths):
            raise errno_error(E.EEXIST)
    if not name or len(name) >= CONTROLLER_NAME_MAX:
        raise errno_error(E.EINVAL)
    if t.interrupt_mode and trstring not in ("PCIe", "RDMA"):
        # bdev_nvme: "Interrupt mode is only supported with PCIe and RDMA transports"
        raise errno_error(E.ENOTSUP)
    keys = {}
    if "psk" in p:
        # TLS 1.3 with this PSK (read from its file at each connection, as the ssl sock module does)
        key = t.keyring.get(p["psk"])
        if key is None:
            raise errno_error(E.ENOKEY)          # "Could not load PSK"
        keys["psk"] = key.name
    for field_name, secret_field in (("dhchap_key", "dhchap_secret"), ("dhchap_ctrlr_key", "dhchap_ctrl_secret")):
        if field_name in p:
            key = t.keyring.get(p[field_name])
            if key is None:
                raise errno_error(E.ENOKEY)      # "Could not load DH-HMAC-CHAP key"
            keys[secret_field] = key.name
    if "dhchap_ctrlr_key" in p and "dhchap_key" not in p:
        raise errno_error(E.EINVAL)
    if trstring != "TCP":
        raise errno_error(E.ENODEV)  # "NVMe trtype ... not available": no controller found
    multipath_on = multipath == "multipath"
    if existing is not None and existing.multipath != multipath_on:
        raise errno_error(E.EINVAL)  # all controllers of one name are multipath, or all failover
    if existing is not None and not multipath_on:
        # failover: remember the alternate path; it is connected only when it takes over
        existing.paths.append(NvmePath(trid, "", 0, connected=False))
        return []
    sock, res = await t.nvme.connect(subnqn, hostnqn, trid, keys)
    ana = {ns["nsid"]: ns["ana_state"] for ns in res["namespaces"] if "ana_state" in ns}
    if existing is not None:
        existing.paths.append(NvmePath(trid, sock, res["cntlid"], ana=ana))
        return [b.name for b in existing.bdevs.values()]
    if t.nvme.ctrlrs.get(name) is not None:  # lost a race with a concurrent attach of the same name
        await t.nvme.disconnect(sock, subnqn, res["cntlid"])
        raise RpcError(-E.EALREADY, f"A controller named {name} already exists with the specified network path")
    c = Ctrlr(name, hostnqn, subnqn, multipath_on, [NvmePath(trid, sock, res["cntlid"], ana=ana)],
              res.get("serial_number", ""), res.get("model_number", ""), bool(res.get("ana_reporting")), keys=keys)
    t.nvme.ctrlrs[name] = c
    names = []
    for ns in res["namespaces"][:p.get("max_bdevs", 128)]:
        b = await t.nvme.add_bdev(c, ns)
        if b is not None:
            names.append(b.name)
    t.nvme.ensure_poller()
    return names


@rpc("bdev_nvme_detach_controller")
async def bdev_nvme_detach_controller(t: Target, params: Any) -> bool:
    spec = {"name": F("string", True), "trtype": F("string"), "traddr": F("string"), "adrfam": F("string"),
            "trsvcid": F("string"), "subnqn": F("string"), "hostaddr": F("string"), "hostsvcid": F("string")}
    p = decode(params, spec, DECODE_FAILED)
    if "trtype" in p and (not p["trtype"] or len(p["trtype"]) > 32):
        raise _einval(f"Failed to parse trtype: {p['trtype']}")
    if "adrfam" in p and p["adrfam"].lower() not in ADRFAMS:
        raise _einval(f"Failed to parse adrfam: {p['adrfam']}")
    c = t.nvme.ctrlrs.get(p["name"])
    if c is None:
        raise errno_error(E.ENODEV)

    def match(path: NvmePath) -> bool:
        tr = path.trid
        if "trtype" in p and TRTYPES.get(p["trtype"].lower(), "CUSTOM") != tr["trtype"]:
            return False
        if "traddr" in p and p["traddr"] != tr["traddr"]:
            return False
        if "adrfam" in p and ADRFAMS[p["adrfam"].lower()] != tr["adrfam"]:
            return False
        if "trsvcid" in p and p["trsvcid"] != tr["trsvcid"]:
            return False
        return not ("subnqn" in p and p["subnqn"] != tr["subnqn"])

    hit = [x for x in c.paths if match(x)]
    if not hit:
        raise errno_error(E.ENXIO)
    await t.nvme.detach(c, hit)
    return True


@rpc("bdev_nvme_get_controllers")
def bdev_nvme_get_controllers(t: Target, params: Any) -> list[dict[str, Any]]:
    p = decode(params, {"name": F("string")}, DECODE_FAILED) if params is not None else {}
    if "name" in p:
        c = t.nvme.ctrlrs.get(p["name"])
        if c is None:
            raise _einval(f"Controller {p['name']} does not exist")
        return [{"name": c.name, "ctrlrs": c.info()}]
    return [{"name": c.name, "ctrlrs": c.info()} for c in t.nvme.ctrlrs.values()]


def _nvme_info(b: Bdev) -> dict[str, Any]:
    c, nsid, _ = b.ctx
    out = []
    for p in c.connected():
        ns_data: dict[str, Any] = {"id": nsid, "can_share": True}
        if c.ana_reporting and nsid in p.ana:
            ns_data["ana_state"] = p.ana[nsid]
        out.append({"trid": dict(p.trid),
                    "ctrlr_data": {"cntlid": p.cntlid, "vendor_id": "0x8086", "model_number": c.model_number,
                                   "serial_number": c.serial_number, "firmware_revision": "26.09",
                                   "subnqn": c.subnqn, "oacs": {"security": 0, "format": 0, "firmware": 0,
                                                                "ns_manage": 0},
                                   "multi_ctrlr": True, "ana_reporting": c.ana_reporting},
                    "vs": {"nvme_version": "2.0"}, "ns_data": ns_data})
    return {"nvme": out, "mp_policy": "active_passive"}


def _nvme_destruct(b: Bdev) -> None:
    c, nsid, _ = b.ctx
    if c.bdevs.get(nsid) is b:
        del c.bdevs[nsid]


def setup(t: Target) -> None:
    t.bdev.info_hooks["nvme"] = _nvme_info
    t.bdev.destruct_hooks["nvme"] = _nvme_destruct
    t.bdev.sb_hooks["nvme"] = t.nvme.put_raid_sb
    t.bdev.write_hooks["nvme"] = t.nvme.write
