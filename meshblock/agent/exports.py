"""NVMe/TCP exports: one subsystem per exported bdev, with an exact host allowlist."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..spdk import SpdkExists, SpdkNotFound, SpdkRpc

log = logging.getLogger(__name__)

MODEL = "meshblock"


@dataclass(frozen=True)
class ExportSpec:
    nqn: str
    bdev_name: str          # the bdev's canonical name (an lvol's UUID): what SPDK reports back
    namespace_uuid: str
    address: str
    port: int
    hosts: frozenset[str] = field(default_factory=frozenset)
    serial: str = ""


@dataclass
class ExportState:
    nqn: str
    address: str
    port: int
    hosts: list[str]
    namespace_uuid: str


class Exporter:
    """Makes the target's subsystems match export specs; every step is safe to repeat."""

    def __init__(self, rpc: SpdkRpc):
        self.rpc = rpc

    async def ensure_transport(self) -> None:
        transports = await self.rpc.nvmf_get_transports()
        if not any(t.get("trtype", "").upper() == "TCP" for t in transports):
            try:
                await self.rpc.nvmf_create_transport("TCP")
            except SpdkExists:
                pass

    async def get(self, nqn: str) -> dict | None:
        try:
            subs = await self.rpc.nvmf_get_subsystems(nqn)
        except SpdkNotFound:
            return None
        return subs[0] if subs else None

    async def ensure(self, spec: ExportSpec) -> ExportState:
        sub = await self.get(spec.nqn)
        if sub is None:
            serial = (spec.serial or spec.namespace_uuid.replace("-", ""))[:20]
            try:
                await self.rpc.nvmf_create_subsystem(spec.nqn, serial_number=serial, model_number=MODEL)
                sub = {}   # new and empty: no need to read it back
                log.info("subsystem created nqn=%s", spec.nqn)
            except SpdkExists:
                sub = await self.get(spec.nqn) or {}
        namespaces = sub.get("namespaces") or []
        if not any(ns.get("bdev_name") == spec.bdev_name for ns in namespaces):
            for ns in namespaces:  # a different bdev behind our NQN: replace it
                await self.rpc.nvmf_subsystem_remove_ns(spec.nqn, int(ns["nsid"]))
            await self.rpc.nvmf_subsystem_add_ns(spec.nqn, spec.bdev_name, nsid=1, uuid=spec.namespace_uuid)
        if sub.get("allow_any_host"):
            await self.rpc.nvmf_subsystem_allow_any_host(spec.nqn, False)
        have = {h["nqn"] for h in sub.get("hosts") or []}
        for host in sorted(have - spec.hosts):
            await self.rpc.nvmf_subsystem_remove_host(spec.nqn, host)
            log.info("host removed nqn=%s host=%s", spec.nqn, host)
        for host in sorted(spec.hosts - have):
            await self.rpc.nvmf_subsystem_add_host(spec.nqn, host)
        listeners = sub.get("listen_addresses") or []
        if not any(la.get("traddr") == spec.address and str(la.get("trsvcid")) == str(spec.port)
                   for la in listeners):
            try:
                await self.rpc.nvmf_subsystem_add_listener(spec.nqn, spec.address, spec.port)
            except SpdkExists:
                pass
        return ExportState(nqn=spec.nqn, address=spec.address, port=spec.port, hosts=sorted(spec.hosts),
                           namespace_uuid=spec.namespace_uuid)

    async def remove(self, nqn: str) -> bool:
        try:
            await self.rpc.nvmf_delete_subsystem(nqn)
        except SpdkNotFound:
            return False
        log.info("subsystem deleted nqn=%s", nqn)
        return True

    async def nqns(self) -> set[str]:
        return {s["nqn"] for s in await self.rpc.nvmf_get_subsystems() if s.get("subtype") != "Discovery"}
