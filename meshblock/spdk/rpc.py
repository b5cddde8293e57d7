"""Typed SPDK JSON-RPC calls used by meshblock.

Method and parameter names follow SPDK's JSON-RPC documentation and its own
``spdk`` Python package; ``tests/unit/test_spdk_wire.py`` checks every call here
against the request that package's ``rpc.py`` builds for the same arguments.
The ``spdk`` package has no typed definitions to import (its client resolves
method names dynamically) and is synchronous, so the calls are written out here
on top of the asyncio client.
"""

from __future__ import annotations

from typing import Any, Protocol

from .errors import SpdkInvalidParams, SpdkNotFound

MiB = 1 << 20


class Caller(Protocol):
    async def call(self, method: str, params: dict[str, Any] | None = None, *,
                   timeout: float | None = None) -> Any: ...


def listen_address(traddr: str, trsvcid: str | int, trtype: str = "TCP",
                   adrfam: str | None = None) -> dict[str, Any]:
    if adrfam is None:
        adrfam = "ipv6" if ":" in traddr else "ipv4"
    return {"trtype": trtype, "adrfam": adrfam, "traddr": traddr, "trsvcid": str(trsvcid)}


class SpdkRpc:
    """The SPDK calls meshblock needs, each a thin typed wrapper over one JSON-RPC method."""

    def __init__(self, client: Caller):
        self.client = client

    async def _call(self, method: str, timeout: float | None = None, **params: Any) -> Any:
        try:
            return await self.client.call(method, {k: v for k, v in params.items() if v is not None},
                                          timeout=timeout)
        except SpdkInvalidParams as e:
            if params.get("nqn") and (method == "nvmf_delete_subsystem" or method.startswith("nvmf_subsystem_")):
                await self._subsystem_must_exist(e, params["nqn"])
            raise

    async def _subsystem_must_exist(self, error: SpdkInvalidParams, nqn: str) -> None:
        """SPDK 26.05 answers a call naming an unknown subsystem with a bare 'Invalid parameters'
        (later versions say the subsystem was not found): tell the two apart."""
        try:
            await self.client.call("nvmf_get_subsystems", {"nqn": nqn})
        except SpdkNotFound:
            raise SpdkNotFound(error.method, error.code, f"Subsystem with NQN '{nqn}' not found",
                               error.params) from error

    # --- keyring -----------------------------------------------------------------------------
    async def keyring_file_add_key(self, name: str, path: str) -> bool:
        """A key read from ``path`` whenever it is used (the file must be readable by its owner only)."""
        return await self._call("keyring_file_add_key", name=name, path=path)

    async def keyring_file_remove_key(self, name: str) -> bool:
        return await self._call("keyring_file_remove_key", name=name)

    async def keyring_get_keys(self) -> list[dict]:
        return await self._call("keyring_get_keys")

    # --- application -------------------------------------------------------------------------
    async def spdk_get_version(self) -> dict[str, Any]:
        return await self._call("spdk_get_version")

    async def framework_wait_init(self) -> bool:
        return await self._call("framework_wait_init")

    async def rpc_get_methods(self) -> list[str]:
        return await self._call("rpc_get_methods")

    async def spdk_kill_instance(self, sig_name: str = "SIGTERM") -> Any:
        return await self._call("spdk_kill_instance", sig_name=sig_name)

    # --- bdev ----------------------------------------------------------------------------------
    async def bdev_aio_create(self, filename: str, name: str, block_size: int | None = None,
                              readonly: bool | None = None, fallocate: bool | None = None) -> str:
        return await self._call("bdev_aio_create", filename=filename, name=name, block_size=block_size,
                                readonly=readonly or None, fallocate=fallocate or None)

    async def bdev_aio_delete(self, name: str) -> bool:
        return await self._call("bdev_aio_delete", name=name)

    async def bdev_malloc_create(self, num_blocks: int, block_size: int, name: str | None = None,
                                 uuid: str | None = None) -> str:
        return await self._call("bdev_malloc_create", num_blocks=num_blocks, block_size=block_size,
                                name=name, uuid=uuid)

    async def bdev_malloc_delete(self, name: str) -> bool:
        return await self._call("bdev_malloc_delete", name=name)

    async def bdev_null_create(self, name: str, num_blocks: int, block_size: int) -> str:
        return await self._call("bdev_null_create", name=name, num_blocks=num_blocks, block_size=block_size)

    async def bdev_null_delete(self, name: str) -> bool:
        return await self._call("bdev_null_delete", name=name)

    async def bdev_get_bdevs(self, name: str | None = None, timeout_ms: int | None = None) -> list[dict]:
        return await self._call("bdev_get_bdevs", name=name, timeout=timeout_ms)

    async def bdev_get_iostat(self, names: list[str] | None = None) -> dict[str, Any]:
        return await self._call("bdev_get_iostat", names=names)

    async def bdev_wait_for_examine(self) -> bool:
        return await self._call("bdev_wait_for_examine")

    async def bdev_set_qos_limit(self, name: str, rw_ios_per_sec: int | None = None,
                                 rw_mbytes_per_sec: int | None = None, r_mbytes_per_sec: int | None = None,
                                 w_mbytes_per_sec: int | None = None) -> bool:
        return await self._call("bdev_set_qos_limit", name=name, rw_ios_per_sec=rw_ios_per_sec,
                                rw_mbytes_per_sec=rw_mbytes_per_sec, r_mbytes_per_sec=r_mbytes_per_sec,
                                w_mbytes_per_sec=w_mbytes_per_sec)

    # --- NVMe-oF initiator (remote namespaces as bdevs) ----------------------------------------
    async def bdev_nvme_attach_controller(self, name: str, traddr: str, trsvcid: str | int, subnqn: str,
                                          hostnqn: str | None = None, trtype: str = "tcp",
                                          adrfam: str | None = None, multipath: str | None = None,
                                          ctrlr_loss_timeout_sec: int | None = None,
                                          reconnect_delay_sec: int | None = None,
                                          fast_io_fail_timeout_sec: int | None = None,
                                          dhchap_key: str | None = None, dhchap_ctrlr_key: str | None = None,
                                          psk: str | None = None, timeout: float | None = None) -> list[str]:
        """``dhchap_key``: the keyring name of the DH-HMAC-CHAP secret the host proves; ``psk``: the
        keyring name of a TLS PSK (the connection is then TLS 1.3)."""
        if adrfam is None:
            adrfam = "ipv6" if ":" in traddr else "ipv4"
        return await self._call("bdev_nvme_attach_controller", timeout=timeout, name=name, trtype=trtype,
                                traddr=traddr, adrfam=adrfam, trsvcid=str(trsvcid), subnqn=subnqn,
                                hostnqn=hostnqn, multipath=multipath,
                                ctrlr_loss_timeout_sec=ctrlr_loss_timeout_sec,
                                reconnect_delay_sec=reconnect_delay_sec,
                                fast_io_fail_timeout_sec=fast_io_fail_timeout_sec, dhchap_key=dhchap_key,
                                dhchap_ctrlr_key=dhchap_ctrlr_key, psk=psk)

    async def bdev_nvme_detach_controller(self, name: str) -> bool:
        return await self._call("bdev_nvme_detach_controller", name=name)

    async def bdev_nvme_get_controllers(self, name: str | None = None) -> list[dict]:
        return await self._call("bdev_nvme_get_controllers", name=name)

    # --- logical volumes -----------------------------------------------------------------------
    async def bdev_lvol_create_lvstore(self, bdev_name: str, lvs_name: str,
                                       cluster_sz: int | None = None, clear_method: str | None = None) -> str:
        return await self._call("bdev_lvol_create_lvstore", bdev_name=bdev_name, lvs_name=lvs_name,
                                cluster_sz=cluster_sz, clear_method=clear_method)

    async def bdev_lvol_get_lvstores(self, lvs_name: str | None = None) -> list[dict]:
        return await self._call("bdev_lvol_get_lvstores", lvs_name=lvs_name)

    async def bdev_lvol_delete_lvstore(self, lvs_name: str) -> bool:
        return await self._call("bdev_lvol_delete_lvstore", lvs_name=lvs_name)

    async def bdev_lvol_create(self, lvol_name: str, size_bytes: int, lvs_name: str,
                               thin_provision: bool = True, clear_method: str | None = None) -> str:
        """Create an lvol; SPDK takes the size in MiB, so ``size_bytes`` must be a MiB multiple."""
        if size_bytes % MiB:
            raise ValueError(f"lvol size {size_bytes} is not a multiple of 1 MiB")
        return await self._call("bdev_lvol_create", lvol_name=lvol_name, size_in_mib=size_bytes // MiB,
                                lvs_name=lvs_name, thin_provision=thin_provision or None,
                                clear_method=clear_method)

    async def bdev_lvol_delete(self, name: str) -> bool:
        return await self._call("bdev_lvol_delete", name=name)

    async def bdev_lvol_resize(self, name: str, size_bytes: int) -> bool:
        if size_bytes % MiB:
            raise ValueError(f"lvol size {size_bytes} is not a multiple of 1 MiB")
        return await self._call("bdev_lvol_resize", name=name, size_in_mib=size_bytes // MiB)

    async def bdev_lvol_snapshot(self, lvol_name: str, snapshot_name: str) -> str:
        return await self._call("bdev_lvol_snapshot", lvol_name=lvol_name, snapshot_name=snapshot_name)

    async def bdev_lvol_clone(self, snapshot_name: str, clone_name: str) -> str:
        return await self._call("bdev_lvol_clone", snapshot_name=snapshot_name, clone_name=clone_name)

    async def bdev_lvol_inflate(self, name: str) -> bool:
        return await self._call("bdev_lvol_inflate", name=name)

    async def bdev_lvol_set_read_only(self, name: str) -> bool:
        return await self._call("bdev_lvol_set_read_only", name=name)

    async def bdev_lvol_get_lvols(self, lvs_name: str | None = None) -> list[dict]:
        return await self._call("bdev_lvol_get_lvols", lvs_name=lvs_name)

    # --- raid ----------------------------------------------------------------------------------
    async def bdev_raid_create(self, name: str, raid_level: str, base_bdevs: list[str],
                               strip_size_kb: int | None = None, superblock: bool | None = None,
                               uuid: str | None = None) -> bool:
        return await self._call("bdev_raid_create", name=name, raid_level=raid_level,
                                base_bdevs=list(base_bdevs), strip_size_kb=strip_size_kb,
                                superblock=superblock or None, uuid=uuid)

    async def bdev_raid_delete(self, name: str) -> bool:
        return await self._call("bdev_raid_delete", name=name)

    async def bdev_raid_add_base_bdev(self, raid_bdev: str, base_bdev: str) -> bool:
        return await self._call("bdev_raid_add_base_bdev", raid_bdev=raid_bdev, base_bdev=base_bdev)

    async def bdev_raid_remove_base_bdev(self, name: str) -> bool:
        return await self._call("bdev_raid_remove_base_bdev", name=name)

    async def bdev_raid_get_bdevs(self, category: str = "all") -> list[dict]:
        return await self._call("bdev_raid_get_bdevs", category=category)

    # --- NVMe-oF target ------------------------------------------------------------------------
    async def nvmf_create_transport(self, trtype: str = "TCP", **options: Any) -> bool:
        return await self._call("nvmf_create_transport", trtype=trtype, **options)

    async def nvmf_get_transports(self, trtype: str | None = None) -> list[dict]:
        return await self._call("nvmf_get_transports", trtype=trtype)

    async def nvmf_create_subsystem(self, nqn: str, serial_number: str | None = None,
                                    model_number: str | None = None, allow_any_host: bool = False,
                                    ana_reporting: bool = False, max_namespaces: int | None = None,
                                    min_cntlid: int | None = None, max_cntlid: int | None = None,
                                    dmrsl: int | None = None) -> bool:
        return await self._call("nvmf_create_subsystem", nqn=nqn, serial_number=serial_number,
                                model_number=model_number, allow_any_host=allow_any_host or None,
                                ana_reporting=ana_reporting or None, max_namespaces=max_namespaces,
                                min_cntlid=min_cntlid, max_cntlid=max_cntlid, dmrsl=dmrsl)

    async def nvmf_delete_subsystem(self, nqn: str) -> bool:
        return await self._call("nvmf_delete_subsystem", nqn=nqn)

    async def nvmf_get_subsystems(self, nqn: str | None = None) -> list[dict]:
        return await self._call("nvmf_get_subsystems", nqn=nqn)

    async def nvmf_subsystem_add_ns(self, nqn: str, bdev_name: str, nsid: int | None = None,
                                    uuid: str | None = None, nguid: str | None = None,
                                    anagrpid: int | None = None) -> int:
        namespace = {k: v for k, v in dict(bdev_name=bdev_name, nsid=nsid, uuid=uuid, nguid=nguid,
                                           anagrpid=anagrpid).items() if v is not None}
        return await self._call("nvmf_subsystem_add_ns", nqn=nqn, namespace=namespace)

    async def nvmf_subsystem_remove_ns(self, nqn: str, nsid: int) -> bool:
        return await self._call("nvmf_subsystem_remove_ns", nqn=nqn, nsid=nsid)

    async def nvmf_subsystem_add_listener(self, nqn: str, traddr: str, trsvcid: str | int,
                                          trtype: str = "TCP", adrfam: str | None = None,
                                          ana_state: str | None = None, secure_channel: bool = False) -> bool:
        """``secure_channel``: the listener takes TLS only (SPDK's ssl sock implementation). SPDK has one
        listening socket per address and port, shared by every subsystem: a port someone listens on
        already keeps the implementation it was opened with, whatever this says."""
        return await self._call("nvmf_subsystem_add_listener", nqn=nqn,
                                listen_address=listen_address(traddr, trsvcid, trtype, adrfam),
                                ana_state=ana_state, secure_channel=True if secure_channel else None)

    async def nvmf_subsystem_remove_listener(self, nqn: str, traddr: str, trsvcid: str | int,
                                             trtype: str = "TCP", adrfam: str | None = None) -> bool:
        return await self._call("nvmf_subsystem_remove_listener", nqn=nqn,
                                listen_address=listen_address(traddr, trsvcid, trtype, adrfam))

    async def nvmf_subsystem_get_listeners(self, nqn: str) -> list[dict]:
        return await self._call("nvmf_subsystem_get_listeners", nqn=nqn)

    async def nvmf_subsystem_listener_set_ana_state(self, nqn: str, ana_state: str, traddr: str,
                                                    trsvcid: str | int, trtype: str = "TCP",
                                                    adrfam: str | None = None,
                                                    anagrpid: int | None = None) -> bool:
        return await self._call("nvmf_subsystem_listener_set_ana_state", nqn=nqn, ana_state=ana_state,
                                listen_address=listen_address(traddr, trsvcid, trtype, adrfam),
                                anagrpid=anagrpid)

    async def framework_get_config(self, name: str) -> list[dict]:
        """One subsystem's configuration as the calls that would make it (``{"method", "params"}``)."""
        return await self._call("framework_get_config", name=name)

    async def nvmf_subsystem_add_host(self, nqn: str, host: str, dhchap_key: str | None = None,
                                      dhchap_ctrlr_key: str | None = None, psk: str | None = None) -> bool:
        """With key names (from the keyring), the host must pass DH-HMAC-CHAP to connect; with ``psk``
        it may connect over TLS (through a secure-channel listener) with that PSK."""
        return await self._call("nvmf_subsystem_add_host", nqn=nqn, host=host, dhchap_key=dhchap_key,
                                dhchap_ctrlr_key=dhchap_ctrlr_key, psk=psk)

    async def nvmf_subsystem_set_keys(self, nqn: str, host: str, dhchap_key: str | None = None,
                                      dhchap_ctrlr_key: str | None = None) -> bool:
        """Replace a host's DH-HMAC-CHAP keys: its connections stay, new ones need the new keys."""
        return await self._call("nvmf_subsystem_set_keys", nqn=nqn, host=host, dhchap_key=dhchap_key,
                                dhchap_ctrlr_key=dhchap_ctrlr_key)

    async def nvmf_subsystem_remove_host(self, nqn: str, host: str, timeout: float | None = None) -> bool:
        """Also disconnects the host; SPDK answers once its connections are gone, which waits for
        their I/O in flight."""
        return await self._call("nvmf_subsystem_remove_host", timeout=timeout, nqn=nqn, host=host)

    async def nvmf_subsystem_allow_any_host(self, nqn: str, allow_any_host: bool) -> bool:
        return await self._call("nvmf_subsystem_allow_any_host", nqn=nqn, allow_any_host=allow_any_host)

    async def nvmf_subsystem_get_controllers(self, nqn: str) -> list[dict]:
        return await self._call("nvmf_subsystem_get_controllers", nqn=nqn)

    # --- iSCSI target --------------------------------------------------------------------------
    async def iscsi_create_portal_group(self, tag: int, portals: list[dict[str, str]]) -> bool:
        return await self._call("iscsi_create_portal_group", tag=tag, portals=portals)

    async def iscsi_delete_portal_group(self, tag: int) -> bool:
        return await self._call("iscsi_delete_portal_group", tag=tag)

    async def iscsi_create_initiator_group(self, tag: int, initiators: list[str], netmasks: list[str]) -> bool:
        return await self._call("iscsi_create_initiator_group", tag=tag, initiators=initiators,
                                netmasks=netmasks)

    async def iscsi_delete_initiator_group(self, tag: int) -> bool:
        return await self._call("iscsi_delete_initiator_group", tag=tag)

    async def iscsi_create_auth_group(self, tag: int, secrets: list[dict[str, str]] | None = None) -> bool:
        return await self._call("iscsi_create_auth_group", tag=tag, secrets=secrets)

    async def iscsi_create_target_node(self, name: str, alias_name: str, luns: list[dict[str, Any]],
                                       pg_ig_maps: list[dict[str, int]], queue_depth: int,
                                       disable_chap: bool | None = None, require_chap: bool | None = None,
                                       mutual_chap: bool | None = None, chap_group: int | None = None) -> bool:
        return await self._call("iscsi_create_target_node", name=name, alias_name=alias_name, luns=luns,
                                pg_ig_maps=pg_ig_maps, queue_depth=queue_depth,
                                disable_chap=disable_chap or None, require_chap=require_chap or None,
                                mutual_chap=mutual_chap or None, chap_group=chap_group)

    async def iscsi_get_portal_groups(self) -> list[dict]:
        return await self._call("iscsi_get_portal_groups")

    async def iscsi_get_initiator_groups(self) -> list[dict]:
        return await self._call("iscsi_get_initiator_groups")

    async def iscsi_initiator_group_add_initiators(self, tag: int, initiators: list[str] | None = None,
                                                   netmasks: list[str] | None = None) -> bool:
        return await self._call("iscsi_initiator_group_add_initiators", tag=tag, initiators=initiators or None,
                                netmasks=netmasks or None)

    async def iscsi_initiator_group_remove_initiators(self, tag: int, initiators: list[str] | None = None,
                                                      netmasks: list[str] | None = None) -> bool:
        return await self._call("iscsi_initiator_group_remove_initiators", tag=tag,
                                initiators=initiators or None, netmasks=netmasks or None)

    async def iscsi_delete_auth_group(self, tag: int) -> bool:
        return await self._call("iscsi_delete_auth_group", tag=tag)

    async def iscsi_get_auth_groups(self) -> list[dict]:
        return await self._call("iscsi_get_auth_groups")

    async def iscsi_target_node_add_lun(self, name: str, bdev_name: str, lun_id: int | None = None) -> bool:
        return await self._call("iscsi_target_node_add_lun", name=name, bdev_name=bdev_name, lun_id=lun_id)

    async def iscsi_target_node_set_auth(self, name: str, chap_group: int | None = None,
                                         disable_chap: bool | None = None, require_chap: bool | None = None,
                                         mutual_chap: bool | None = None) -> bool:
        return await self._call("iscsi_target_node_set_auth", name=name, chap_group=chap_group,
                                disable_chap=disable_chap or None, require_chap=require_chap or None,
                                mutual_chap=mutual_chap or None)

    async def iscsi_target_node_request_logout(self, name: str, pg_tag: int | None = None) -> bool:
        return await self._call("iscsi_target_node_request_logout", name=name, pg_tag=pg_tag)

    async def iscsi_get_connections(self) -> list[dict]:
        return await self._call("iscsi_get_connections")

    async def iscsi_delete_target_node(self, name: str) -> bool:
        return await self._call("iscsi_delete_target_node", name=name)

    async def iscsi_get_target_nodes(self) -> list[dict]:
        return await self._call("iscsi_get_target_nodes")
