"""NVMe/TCP exports: one subsystem per exported bdev, with an exact host allowlist."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..dhchap import HostKeys, fingerprint, key_name
from ..errors import FailedPrecondition, NotFound
from ..spdk import SpdkExists, SpdkInvalidParams, SpdkNotFound, SpdkRpc, SpdkTimeout
from .keyring import Keyring, host_key_names, host_psks
from .. import tlspsk

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
    # volume exports report ANA states, so their writes can be held (see Exporter.set_ana_state);
    # SPDK fixes this when it creates the subsystem
    ana_reporting: bool = False
    ana_state: str = "optimized"      # what a new listener starts with (ana_reporting only)
    # controller ids this node hands out for the subsystem: nodes that export the same subsystem
    # (a volume's active and standby heads) must not overlap, or a host with a path to each
    # refuses the second controller
    cntlid_range: tuple[int, int] | None = None
    # False: hosts are told the namespace takes no deallocate (DSM) at all. A raid5f has no unmap,
    # yet SPDK reports a DSM range limit (DMRSL) that Linux takes as discard support, and a
    # deallocate that reaches a raid5f brings the whole target down. SPDK 26.05+ (dmrsl).
    discard: bool = True
    # hosts (of ``hosts``) that must pass DH-HMAC-CHAP, with their secrets
    host_keys: tuple[tuple[str, HostKeys], ...] = ()
    # TLS: the listener takes TLS 1.3 only (it needs a port no clear-text listener of the target
    # uses: SPDK shares one socket per address and port), and hosts (of ``hosts``) connect with
    # their PSK (interchange format, meshblock/tlspsk.py)
    secure: bool = False
    host_psks: tuple[tuple[str, str], ...] = field(default=(), repr=False)


def key_names(keys: HostKeys | None) -> tuple[str, str]:
    """The keyring names a host entry holding ``keys`` shows ("" for none)."""
    if keys is None:
        return "", ""
    return key_name(keys.key), key_name(keys.ctrl_key) if keys.ctrl_key else ""


@dataclass
class ExportState:
    nqn: str
    address: str
    port: int
    hosts: list[str]
    namespace_uuid: str
    host_keys: dict[str, str] = field(default_factory=dict)   # host NQN -> fingerprints of its secrets
    host_psks: dict[str, str] = field(default_factory=dict)   # host NQN -> fingerprint of its TLS PSK


class Exporter:
    """Makes the target's subsystems match export specs; every step is safe to repeat."""

    def __init__(self, rpc: SpdkRpc, keyring: Keyring | None = None):
        self.rpc = rpc
        self.keyring = keyring

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
                lo, hi = spec.cntlid_range or (None, None)
                await self.rpc.nvmf_create_subsystem(spec.nqn, serial_number=serial, model_number=MODEL,
                                                     ana_reporting=spec.ana_reporting, min_cntlid=lo, max_cntlid=hi,
                                                     dmrsl=None if spec.discard else 0)
                sub = {}   # new and empty: no need to read it back
                log.info("subsystem created nqn=%s", spec.nqn)
            except SpdkExists:
                sub = await self.get(spec.nqn) or {}
        namespaces = sub.get("namespaces") or []
        if not any(ns.get("bdev_name") == spec.bdev_name for ns in namespaces):
            for ns in namespaces:  # a different bdev behind our NQN: replace it
                await self.rpc.nvmf_subsystem_remove_ns(spec.nqn, int(ns["nsid"]))
            # the NGUID too: SPDK would take the bdev's UUID, which differs on every node that exports
            # the volume, and hosts refuse a path whose namespace ids do not match the others'
            await self.rpc.nvmf_subsystem_add_ns(spec.nqn, spec.bdev_name, nsid=1, uuid=spec.namespace_uuid,
                                                 nguid=spec.namespace_uuid.replace("-", "").upper())
        if sub.get("allow_any_host"):
            await self.rpc.nvmf_subsystem_allow_any_host(spec.nqn, False)
        have_psk = await self._psks(spec.nqn) if sub.get("hosts") and (spec.secure or spec.host_psks) else {}
        await self._ensure_hosts(spec, {h["nqn"]: host_key_names(h) for h in sub.get("hosts") or []}, have_psk)
        listeners = sub.get("listen_addresses") or []
        if not any(la.get("traddr") == spec.address and str(la.get("trsvcid")) == str(spec.port)
                   for la in listeners):
            try:
                await self.rpc.nvmf_subsystem_add_listener(
                    spec.nqn, spec.address, spec.port,
                    ana_state=spec.ana_state if spec.ana_reporting and spec.ana_state != "optimized" else None,
                    secure_channel=spec.secure)
            except SpdkExists:
                pass
            except SpdkInvalidParams as e:
                # SPDK says only "Invalid parameters" when it cannot bind the address
                raise FailedPrecondition(f"cannot listen on {spec.address}:{spec.port} for {spec.nqn}: the port is "
                                         "in use by another process or the address is not on this host "
                                         f"(SPDK: {e})") from e
        return ExportState(nqn=spec.nqn, address=spec.address, port=spec.port, hosts=sorted(spec.hosts),
                           namespace_uuid=spec.namespace_uuid,
                           host_keys={h: k.fingerprints for h, k in spec.host_keys},
                           host_psks={h: fingerprint(k) for h, k in spec.host_psks})

    async def _ensure_hosts(self, spec: ExportSpec, have: dict[str, tuple[str, str]],
                            have_psk: dict[str, str]) -> None:
        """The allowlist exactly ``spec.hosts``, each host with the DH-HMAC-CHAP keys the spec gives
        it (none: it connects without authenticating) and its TLS PSK. A host whose DH-HMAC-CHAP keys
        change keeps its connections; it needs the new keys for its next one. SPDK cannot change a
        host's PSK in place: a host whose PSK changes is removed (disconnected) and added again."""
        want = dict(spec.host_keys)
        psks = dict(spec.host_psks)
        if (want or psks) and self.keyring is None:
            raise FailedPrecondition("this target has no keyring for DH-HMAC-CHAP secrets or TLS PSKs")
        retired: set[str] = set()
        for host in sorted(h for h in have if h in spec.hosts and have_psk.get(h, "") !=
                           (tlspsk.key_name(psks[h]) if h in psks else "")):
            await self.rpc.nvmf_subsystem_remove_host(spec.nqn, host)
            retired.update({*have.pop(host), have_psk.get(host, "")})
            log.info("host removed to change its TLS PSK nqn=%s host=%s", spec.nqn, host)
        for host in sorted(set(have) - spec.hosts):
            await self.rpc.nvmf_subsystem_remove_host(spec.nqn, host)
            retired.update({*have[host], have_psk.get(host, "")})
            log.info("host removed nqn=%s host=%s", spec.nqn, host)
        for host in sorted(spec.hosts):
            keys = want.get(host)
            names = key_names(keys)
            if keys is not None:
                assert self.keyring is not None
                if have.get(host) == names:       # in place: only its files must be there
                    self.keyring.keep(keys.key, keys.ctrl_key)
                else:
                    names = (await self.keyring.ensure(keys.key),
                             await self.keyring.ensure(keys.ctrl_key) if keys.ctrl_key else "")
            if host not in have:
                psk = None
                if host in psks:
                    assert self.keyring is not None
                    psk = await self.keyring.ensure(psks[host], tlspsk.KEY_NAME_PREFIX)
                await self.rpc.nvmf_subsystem_add_host(spec.nqn, host, dhchap_key=names[0] or None,
                                                       dhchap_ctrlr_key=names[1] or None, psk=psk)
            elif have[host] != names:
                await self.rpc.nvmf_subsystem_set_keys(spec.nqn, host, dhchap_key=names[0] or None,
                                                       dhchap_ctrlr_key=names[1] or None)
                retired.update(set(have[host]) - set(names))
                log.info("host keys replaced nqn=%s host=%s authenticated=%s", spec.nqn, host, bool(names[0]))
        retired -= {""} | {n for keys in want.values() for n in key_names(keys)} | {
            tlspsk.key_name(k) for k in psks.values()}
        if retired and self.keyring is not None:
            await self.keyring.retire(retired)

    async def _psks(self, nqn: str) -> dict[str, str]:
        """host NQN -> the keyring name of its TLS PSK on subsystem ``nqn``."""
        return {host: name for (_, host), name in (await host_psks(self.rpc, nqn)).items()}

    async def set_ana_state(self, nqn: str, state: str, required: bool = True) -> int:
        """Put every listener of ``nqn`` in ANA state ``state``; returns how many changed.

        SPDK pauses the subsystem around the change, so when the call returns every I/O that was in
        flight has completed, and while the state is inaccessible no I/O completes through it: hosts
        get an ANA Inaccessible status, and a host with native multipath queues the I/O until the
        state is optimized again (which SPDK announces with an ANA change event)."""
        sub = await self.get(nqn)
        if sub is None:
            raise NotFound(f"subsystem {nqn} does not exist")
        if not ana_reporting(sub):
            if not required:
                return 0
            raise FailedPrecondition(f"subsystem {nqn} was created without ANA reporting, so its writes "
                                     "cannot be held; it gains it when the volume's head is created again")
        changed = 0
        lst = await self.rpc.nvmf_subsystem_get_listeners(nqn)
        for la in sub.get("listen_addresses") or []:
            cur = next((x for x in lst if _same_address(x.get("address") or {}, la)), None)
            if cur is not None and all(a.get("ana_state") == state for a in cur.get("ana_states") or []):
                continue
            await self.rpc.nvmf_subsystem_listener_set_ana_state(nqn, state, la["traddr"], la["trsvcid"],
                                                                 trtype=la.get("trtype", "TCP"),
                                                                 adrfam=la.get("adrfam"))
            changed += 1
        if changed:
            log.info("ANA state set nqn=%s state=%s listeners=%d", nqn, state, changed)
        return changed

    async def disconnect_hosts(self, nqn: str, wait: float = 1.0) -> list[str]:
        """Take every host off ``nqn``'s allowlist, which disconnects them at once: a request still in
        flight then completes without its answer reaching the host, which sends it again on another
        path. SPDK answers only when those requests are done; this waits ``wait`` seconds for it per
        host (the disconnection itself has happened by then). Returns the hosts removed."""
        sub = await self.get(nqn)
        hosts = sorted(h["nqn"] for h in (sub or {}).get("hosts") or [])
        for host in hosts:
            try:
                await self.rpc.nvmf_subsystem_remove_host(nqn, host, timeout=wait)
            except SpdkTimeout:
                log.warning("host %s of %s disconnected; its I/O in flight is still being finished", host, nqn)
        if hosts:
            log.info("hosts disconnected nqn=%s hosts=%s", nqn, ",".join(hosts))
        return hosts

    async def remove(self, nqn: str) -> bool:
        sub = await self.get(nqn)
        psks = set((await self._psks(nqn)).values()) if sub and sub.get("hosts") and self.keyring else set()
        try:
            await self.rpc.nvmf_delete_subsystem(nqn)
        except SpdkNotFound:
            return False
        log.info("subsystem deleted nqn=%s", nqn)
        keys = {n for h in (sub or {}).get("hosts") or [] for n in host_key_names(h) if n} | psks
        if keys and self.keyring is not None:
            await self.keyring.retire(keys)
        return True

    async def nqns(self) -> set[str]:
        return {s["nqn"] for s in await self.rpc.nvmf_get_subsystems() if s.get("subtype") != "Discovery"}


def ana_reporting(sub: dict) -> bool:
    """Whether a subsystem (as nvmf_get_subsystems shows it) reports ANA states: SPDK lists an
    ANA group id with each namespace only then."""
    return any("anagrpid" in ns for ns in sub.get("namespaces") or [])


def _same_address(a: dict, b: dict) -> bool:
    return a.get("traddr") == b.get("traddr") and str(a.get("trsvcid")) == str(b.get("trsvcid"))
