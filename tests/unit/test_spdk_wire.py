"""Every typed SPDK call sends what SPDK's own `rpc.py` (PyPI package `spdk`) sends.

Each case pairs a call of ours with the `rpc.py` command line that means the
same; SPDK's parser builds its request with a recording client and the two
requests must match (flags left at their defaults, which rpc.py sends as
false, and list options it sends empty, are ignored).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from meshblock.spdk import SpdkRpc

spdk_rpc = pytest.importorskip("spdk.spdk_rpc", reason="the `spdk` package (test extra) is not installed")


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    async def call(self, method: str, params: dict | None = None, *, timeout: float | None = None) -> Any:
        self.calls.append((method, params or {}))
        return {}

    # the spdk package's CLI calls client.<method>(**kwargs)
    def __getattr__(self, name: str):
        def rpc(**kwargs: Any) -> dict:
            self.calls.append((name, {k: v for k, v in kwargs.items() if v is not None}))
            return {}
        return rpc


# Values rpc.py fills in that equal the target's own defaults.
RPC_PY_DEFAULTS = {("c2h_success", True)}


def _normal(params: dict) -> dict:
    out = {}
    for k, v in params.items():
        # rpc.py sends an omitted list option as []; SPDK decodes that like an absent key
        if v is None or v is False or v == [] or (isinstance(v, bool) and (k, v) in RPC_PY_DEFAULTS):
            continue
        out[k] = _normal(v) if isinstance(v, dict) else v
    return out


_parser, _ = spdk_rpc.create_parser()
spdk_rpc.suppress_cli_prints()


def spdk_request(argv: list[str]) -> tuple[str, dict]:
    args = _parser.parse_args(argv)
    args.client = Recorder()
    args.func(args)
    (method, params), = args.client.calls
    return method, _normal(params)


NQN = "nqn.2026-11.io.meshblock:replica:1"
IQN = "iqn.2026-11.io.meshblock:volume:1"
INITIATOR = "iqn.1993-08.org.debian:01:abc"
CASES = [
    (lambda r: r.bdev_aio_create("/d/pool.img", "base", block_size=4096),
     ["bdev_aio_create", "/d/pool.img", "base", "4096"]),
    (lambda r: r.bdev_aio_delete("base"), ["bdev_aio_delete", "base"]),
    (lambda r: r.bdev_malloc_create(2048, 512, name="m0"), ["bdev_malloc_create", "-b", "m0", "1", "512"]),
    (lambda r: r.bdev_malloc_delete("m0"), ["bdev_malloc_delete", "m0"]),
    (lambda r: r.bdev_get_bdevs("b0"), ["bdev_get_bdevs", "-b", "b0"]),
    (lambda r: r.bdev_null_create("ph", 2048, 4096), ["bdev_null_create", "ph", "8", "4096"]),
    (lambda r: r.bdev_null_delete("ph"), ["bdev_null_delete", "ph"]),
    (lambda r: r.bdev_get_iostat(["b0", "b1"]), ["bdev_get_iostat", "--names", "b0,b1"]),
    (lambda r: r.bdev_set_qos_limit("b0", rw_ios_per_sec=10000, rw_mbytes_per_sec=100),
     ["bdev_set_qos_limit", "b0", "--rw-ios-per-sec", "10000", "--rw-mbytes-per-sec", "100"]),
    (lambda r: r.bdev_nvme_attach_controller("att-x", "127.0.0.12", 4420, NQN, hostnqn="nqn.2026-11.io.meshblock:node:a",
                                             ctrlr_loss_timeout_sec=30, reconnect_delay_sec=1,
                                             fast_io_fail_timeout_sec=2),
     ["bdev_nvme_attach_controller", "-b", "att-x", "-t", "tcp", "-a", "127.0.0.12", "-f", "ipv4", "-s", "4420",
      "-n", NQN, "-q", "nqn.2026-11.io.meshblock:node:a", "-l", "30", "-o", "1", "-u", "2"]),
    (lambda r: r.bdev_nvme_detach_controller("att-x"), ["bdev_nvme_detach_controller", "att-x"]),
    (lambda r: r.bdev_nvme_get_controllers("att-x"), ["bdev_nvme_get_controllers", "-n", "att-x"]),
    (lambda r: r.bdev_lvol_create_lvstore("base", "pool", cluster_sz=4 << 20),
     ["bdev_lvol_create_lvstore", "base", "pool", "-c", str(4 << 20)]),
    (lambda r: r.bdev_lvol_get_lvstores("pool"), ["bdev_lvol_get_lvstores", "-l", "pool"]),
    (lambda r: r.bdev_lvol_delete_lvstore("pool"), ["bdev_lvol_delete_lvstore", "-l", "pool"]),
    (lambda r: r.bdev_lvol_create("replica-1", 64 << 20, "pool"),
     ["bdev_lvol_create", "replica-1", "64", "-l", "pool", "-t"]),
    (lambda r: r.bdev_lvol_delete("pool/replica-1"), ["bdev_lvol_delete", "pool/replica-1"]),
    (lambda r: r.bdev_lvol_resize("pool/replica-1", 128 << 20), ["bdev_lvol_resize", "pool/replica-1", "128"]),
    (lambda r: r.bdev_lvol_snapshot("pool/replica-1", "snap-1"), ["bdev_lvol_snapshot", "pool/replica-1", "snap-1"]),
    (lambda r: r.bdev_lvol_clone("pool/snap-1", "replica-2"), ["bdev_lvol_clone", "pool/snap-1", "replica-2"]),
    (lambda r: r.bdev_lvol_inflate("pool/replica-2"), ["bdev_lvol_inflate", "pool/replica-2"]),
    (lambda r: r.bdev_lvol_set_read_only("pool/replica-2"), ["bdev_lvol_set_read_only", "pool/replica-2"]),
    (lambda r: r.bdev_lvol_get_lvols("pool"), ["bdev_lvol_get_lvols", "-l", "pool"]),
    (lambda r: r.bdev_raid_create("raid-v", "raid1", ["a", "b"]),
     ["bdev_raid_create", "-n", "raid-v", "-r", "raid1", "-b", "a b"]),
    (lambda r: r.bdev_raid_create("raid-v", "raid1", ["a", "b"], superblock=True),
     ["bdev_raid_create", "-n", "raid-v", "-r", "raid1", "-b", "a b", "-s"]),
    (lambda r: r.bdev_raid_delete("raid-v"), ["bdev_raid_delete", "raid-v"]),
    (lambda r: r.bdev_raid_add_base_bdev("raid-v", "c"), ["bdev_raid_add_base_bdev", "raid-v", "c"]),
    (lambda r: r.bdev_raid_remove_base_bdev("c"), ["bdev_raid_remove_base_bdev", "c"]),
    (lambda r: r.bdev_raid_get_bdevs("online"), ["bdev_raid_get_bdevs", "online"]),
    (lambda r: r.nvmf_create_transport("TCP"), ["nvmf_create_transport", "-t", "TCP"]),
    (lambda r: r.nvmf_get_transports(), ["nvmf_get_transports"]),
    (lambda r: r.nvmf_create_subsystem(NQN, serial_number="abc", model_number="meshblock"),
     ["nvmf_create_subsystem", NQN, "-s", "abc", "-d", "meshblock"]),
    (lambda r: r.nvmf_create_subsystem(NQN, ana_reporting=True, allow_any_host=True),
     ["nvmf_create_subsystem", NQN, "-r", "-a"]),
    (lambda r: r.nvmf_delete_subsystem(NQN), ["nvmf_delete_subsystem", NQN]),
    (lambda r: r.nvmf_get_subsystems(NQN), ["nvmf_get_subsystems", NQN]),
    (lambda r: r.nvmf_subsystem_add_ns(NQN, "pool/replica-1", nsid=1, uuid="5e0a6f4e-0c9a-4c4e-9a38-1c1c2b1b7a01"),
     ["nvmf_subsystem_add_ns", NQN, "pool/replica-1", "-n", "1", "-u", "5e0a6f4e-0c9a-4c4e-9a38-1c1c2b1b7a01"]),
    (lambda r: r.nvmf_subsystem_remove_ns(NQN, 1), ["nvmf_subsystem_remove_ns", NQN, "1"]),
    (lambda r: r.nvmf_subsystem_add_listener(NQN, "127.0.0.11", 4420),
     ["nvmf_subsystem_add_listener", NQN, "-t", "TCP", "-a", "127.0.0.11", "-s", "4420", "-f", "ipv4"]),
    (lambda r: r.nvmf_subsystem_add_listener(NQN, "127.0.0.11", 4420, ana_state="inaccessible"),
     ["nvmf_subsystem_add_listener", NQN, "-t", "TCP", "-a", "127.0.0.11", "-s", "4420", "-f", "ipv4",
      "-n", "inaccessible"]),
    (lambda r: r.nvmf_subsystem_remove_listener(NQN, "127.0.0.11", 4420),
     ["nvmf_subsystem_remove_listener", NQN, "-t", "TCP", "-a", "127.0.0.11", "-s", "4420", "-f", "ipv4"]),
    (lambda r: r.nvmf_subsystem_get_listeners(NQN), ["nvmf_subsystem_get_listeners", NQN]),
    (lambda r: r.nvmf_subsystem_listener_set_ana_state(NQN, "optimized", "127.0.0.11", 4420),
     ["nvmf_subsystem_listener_set_ana_state", NQN, "-n", "optimized", "-t", "TCP", "-a", "127.0.0.11",
      "-s", "4420", "-f", "ipv4"]),
    (lambda r: r.nvmf_subsystem_add_host(NQN, "nqn.2026-11.io.meshblock:node:a"),
     ["nvmf_subsystem_add_host", NQN, "nqn.2026-11.io.meshblock:node:a"]),
    (lambda r: r.nvmf_subsystem_add_host(NQN, "nqn.2026-11.io.meshblock:node:a", dhchap_key="k1",
                                         dhchap_ctrlr_key="k2"),
     ["nvmf_subsystem_add_host", NQN, "nqn.2026-11.io.meshblock:node:a", "--dhchap-key", "k1",
      "--dhchap-ctrlr-key", "k2"]),
    (lambda r: r.nvmf_subsystem_set_keys(NQN, "nqn.2026-11.io.meshblock:node:a", dhchap_key="k3"),
     ["nvmf_subsystem_set_keys", NQN, "nqn.2026-11.io.meshblock:node:a", "--dhchap-key", "k3"]),
    (lambda r: r.keyring_file_add_key("k1", "/run/k1"), ["keyring_file_add_key", "k1", "/run/k1"]),
    (lambda r: r.nvmf_subsystem_add_host(NQN, "nqn.2026-11.io.meshblock:node:a", psk="k4"),
     ["nvmf_subsystem_add_host", NQN, "nqn.2026-11.io.meshblock:node:a", "--psk", "k4"]),
    (lambda r: r.nvmf_subsystem_add_listener(NQN, "127.0.0.11", 4422, secure_channel=True),
     ["nvmf_subsystem_add_listener", NQN, "-t", "TCP", "-a", "127.0.0.11", "-s", "4422", "-f", "ipv4",
      "--secure-channel"]),
    (lambda r: r.bdev_nvme_attach_controller("n1", "10.0.0.1", 4422, NQN, hostnqn="nqn.2026-11.io.meshblock:node:a",
                                             psk="k4"),
     ["bdev_nvme_attach_controller", "-b", "n1", "-t", "tcp", "-a", "10.0.0.1", "-f", "ipv4", "-s", "4422",
      "-n", NQN, "-q", "nqn.2026-11.io.meshblock:node:a", "--psk", "k4"]),
    (lambda r: r.framework_get_config("nvmf"), ["framework_get_config", "nvmf"]),
    (lambda r: r.bdev_nvme_attach_controller("n0", "10.0.0.1", 4420, NQN, hostnqn="nqn.2026-11.io.meshblock:node:a",
                                             dhchap_key="k1"),
     ["bdev_nvme_attach_controller", "-b", "n0", "-t", "tcp", "-a", "10.0.0.1", "-f", "ipv4", "-s", "4420",
      "-n", NQN, "-q", "nqn.2026-11.io.meshblock:node:a", "--dhchap-key", "k1"]),
    (lambda r: r.keyring_file_remove_key("k1"), ["keyring_file_remove_key", "k1"]),
    (lambda r: r.keyring_get_keys(), ["keyring_get_keys"]),
    (lambda r: r.nvmf_subsystem_remove_host(NQN, "nqn.2026-11.io.meshblock:node:a"),
     ["nvmf_subsystem_remove_host", NQN, "nqn.2026-11.io.meshblock:node:a"]),
    (lambda r: r.nvmf_subsystem_allow_any_host(NQN, True), ["nvmf_subsystem_allow_any_host", NQN, "--allow-any-host"]),
    (lambda r: r.nvmf_subsystem_get_controllers(NQN), ["nvmf_subsystem_get_controllers", NQN]),
    (lambda r: r.iscsi_create_portal_group(1, [{"host": "127.0.0.11", "port": "3260"}]),
     ["iscsi_create_portal_group", "1", "127.0.0.11:3260"]),
    (lambda r: r.iscsi_create_initiator_group(2, ["ANY"], ["127.0.0.1/32"]),
     ["iscsi_create_initiator_group", "2", "ANY", "127.0.0.1/32"]),
    (lambda r: r.iscsi_create_target_node("disk1", "disk1", [{"bdev_name": "b0", "lun_id": 0}],
                                          [{"pg_tag": 1, "ig_tag": 2}], 64, disable_chap=True),
     ["iscsi_create_target_node", "disk1", "disk1", "b0:0", "1:2", "64", "-d"]),
    (lambda r: r.iscsi_delete_target_node("iqn.x"), ["iscsi_delete_target_node", "iqn.x"]),
    (lambda r: r.iscsi_create_target_node(IQN, "v1", [{"bdev_name": "vol-1", "lun_id": 0}],
                                          [{"pg_tag": 1, "ig_tag": 7}], 64, require_chap=True, chap_group=7),
     ["iscsi_create_target_node", IQN, "v1", "vol-1:0", "1:7", "64", "-r", "-g", "7"]),
    (lambda r: r.iscsi_get_portal_groups(), ["iscsi_get_portal_groups"]),
    (lambda r: r.iscsi_get_initiator_groups(), ["iscsi_get_initiator_groups"]),
    (lambda r: r.iscsi_initiator_group_add_initiators(7, [INITIATOR]),
     ["iscsi_initiator_group_add_initiators", "7", "-n", INITIATOR]),
    (lambda r: r.iscsi_initiator_group_add_initiators(7, netmasks=["10.0.0.0/8"]),
     ["iscsi_initiator_group_add_initiators", "7", "-m", "10.0.0.0/8"]),
    (lambda r: r.iscsi_initiator_group_remove_initiators(7, [INITIATOR], ["ANY"]),
     ["iscsi_initiator_group_remove_initiators", "7", "-n", INITIATOR, "-m", "ANY"]),
    (lambda r: r.iscsi_create_auth_group(7, [{"user": "u1", "secret": "s1"}]),
     ["iscsi_create_auth_group", "7", "-c", "user:u1 secret:s1"]),
    (lambda r: r.iscsi_delete_auth_group(7), ["iscsi_delete_auth_group", "7"]),
    (lambda r: r.iscsi_get_auth_groups(), ["iscsi_get_auth_groups"]),
    (lambda r: r.iscsi_target_node_add_lun(IQN, "vol-1", lun_id=0),
     ["iscsi_target_node_add_lun", IQN, "vol-1", "-i", "0"]),
    (lambda r: r.iscsi_target_node_set_auth(IQN, chap_group=7, require_chap=True),
     ["iscsi_target_node_set_auth", IQN, "-g", "7", "-r"]),
    (lambda r: r.iscsi_target_node_set_auth(IQN, disable_chap=True),
     ["iscsi_target_node_set_auth", IQN, "-d"]),
    (lambda r: r.iscsi_target_node_request_logout(IQN), ["iscsi_target_node_request_logout", IQN]),
    (lambda r: r.iscsi_get_connections(), ["iscsi_get_connections"]),
]


@pytest.mark.parametrize("ours,argv", CASES, ids=[argv[0] + "-" + str(i) for i, (_, argv) in enumerate(CASES)])
async def test_request_matches_spdk_rpc_py(ours, argv):
    rec = Recorder()
    await ours(SpdkRpc(rec))
    (method, params), = rec.calls
    expected_method, expected = spdk_request(argv)
    assert method == expected_method
    assert _normal(params) == expected


def test_every_typed_call_is_covered():
    covered = set()
    for ours, _ in CASES:
        rec = Recorder()
        asyncio.run(ours(SpdkRpc(rec)))
        covered.add(rec.calls[0][0])
    calls = {n for n in dir(SpdkRpc) if not n.startswith("_") and n not in ("client",)}
    # application-level calls that rpc.py exposes with no parameters worth comparing
    trivial = {"spdk_get_version", "framework_wait_init", "rpc_get_methods", "spdk_kill_instance",
               "bdev_wait_for_examine", "iscsi_get_target_nodes", "iscsi_delete_portal_group",
               "iscsi_delete_initiator_group"}
    assert calls - trivial <= covered, sorted(calls - trivial - covered)
