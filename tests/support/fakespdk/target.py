"""The state of one fake SPDK application and the application-level RPCs."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from . import bdev as bdev_mod
from . import iscsi as iscsi_mod
from . import keyring as keyring_mod
from . import lvol as lvol_mod
from . import nvme as nvme_mod
from . import nvmf as nvmf_mod
from . import raid as raid_mod
from .app import DECODE_INVALID, INVALID_PARAMS, METHODS, RUNTIME, STARTUP, F, RpcError, decode, rpc
from .registry import Registry

VERSION_MAJOR, VERSION_MINOR, VERSION_PATCH, VERSION_SUFFIX = 26, 9, 0, "-pre"
VERSION_STRING = f"SPDK v{VERSION_MAJOR}.{VERSION_MINOR:02d}{VERSION_SUFFIX} fake"


class Target:
    def __init__(self, app_name: str, rpc_socket: str, *, interrupt_mode: bool = False, mem_size_mb: int = 0,
                 cpumask: str = "0x1", wait_for_rpc: bool = False):
        self.app_name = app_name
        self.rpc_socket = rpc_socket
        self.interrupt_mode = interrupt_mode
        self.mem_size_mb = mem_size_mb or 2048
        self.cpumask = cpumask
        self.state = STARTUP if wait_for_rpc else RUNTIME
        self.raid5f = os.environ.get("FAKESPDK_RAID5F", "1") != "0"
        self.shutdown_requested: asyncio.Event | None = None
        self.initialized: asyncio.Event | None = None
        self.registry = Registry()
        self.bdev = bdev_mod.BdevLayer(self)
        self.lvol = lvol_mod.LvolModule(self)
        self.raid = raid_mod.RaidModule(self)
        self.nvmf = nvmf_mod.NvmfTarget(self)
        self.keyring = keyring_mod.Keyring()
        self.nvme = nvme_mod.NvmeModule(self)
        self.iscsi = iscsi_mod.IscsiModule(self)
        for m in (bdev_mod, lvol_mod, raid_mod, nvme_mod):
            m.setup(self)

    def has_method(self, name: str) -> bool:
        m = METHODS.get(name)
        return m is not None and (m.apps is None or self.app_name in m.apps)

    def after_call(self) -> None:
        """Keep the published view of this target's subsystems current."""
        self.registry.publish(self.nvmf.publication())

    async def shutdown(self) -> None:
        self.lvol.shutdown()
        await self.nvme.shutdown()
        self.nvmf.shutdown()
        self.registry.cleanup()


# --- application RPCs ---------------------------------------------------------------------------

@rpc("spdk_get_version", state_mask=STARTUP | RUNTIME)
def spdk_get_version(t: Target, params: Any) -> dict[str, Any]:
    if params is not None:
        raise RpcError(INVALID_PARAMS, "spdk_get_version method requires no parameters")
    return {"version": VERSION_STRING,
            "fields": {"major": VERSION_MAJOR, "minor": VERSION_MINOR, "patch": VERSION_PATCH,
                       "suffix": VERSION_SUFFIX, "commit": "fake"}}


@rpc("rpc_get_methods", state_mask=STARTUP | RUNTIME)
def rpc_get_methods(t: Target, params: Any) -> list[str]:
    p = decode(params, {"current": F("bool"), "include_aliases": F("bool")}, DECODE_INVALID) \
        if params is not None else {}
    out = []
    for name, m in METHODS.items():
        if not t.has_method(name) or m.hidden:
            continue
        if p.get("current") and (m.state_mask & t.state) != t.state:
            continue
        out.append(name)
    return out


@rpc("framework_wait_init", state_mask=STARTUP | RUNTIME)
async def framework_wait_init(t: Target, params: Any) -> bool:
    if t.state != RUNTIME and t.initialized is not None:
        await t.initialized.wait()
    return True


@rpc("framework_start_init", state_mask=STARTUP)
def framework_start_init(t: Target, params: Any) -> bool:
    if params is not None:
        raise RpcError(INVALID_PARAMS, "framework_start_init requires no parameters")
    t.state = RUNTIME
    if t.initialized is not None:
        t.initialized.set()
    return True


SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGQUIT": signal.SIGQUIT,
           "SIGHUP": signal.SIGHUP, "SIGKILL": signal.SIGKILL, "SIGUSR1": signal.SIGUSR1}


@rpc("spdk_kill_instance")
def spdk_kill_instance(t: Target, params: Any) -> bool:
    p = decode(params, {"sig_name": F(("enum", list(SIGNALS)), True)}, DECODE_INVALID)
    sig = SIGNALS[p["sig_name"]]
    # SPDK sends the signal first and answers after; the fake answers, then acts on the signal
    # (SIGINT/SIGTERM: clean shutdown; others: their default action).
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, os.kill, os.getpid(), sig)
    return True


@rpc("framework_get_reactors")
def framework_get_reactors(t: Target, params: Any) -> dict[str, Any]:
    if params is not None:
        raise RpcError(INVALID_PARAMS, "framework_get_reactors requires no parameters")
    mask = int(t.cpumask, 16) if t.cpumask.lower().startswith("0x") else int(t.cpumask or "1", 16)
    cores = [i for i in range(64) if mask >> i & 1] or [0]
    return {"tick_rate": 1_000_000_000, "pid": os.getpid(),
            "reactors": [{"lcore": c, "busy": 0, "idle": 0, "in_interrupt": t.interrupt_mode,
                          "irq": 0, "sys": 0, "usr": 0, "lw_threads": [
                              {"name": "app_thread", "id": 1, "cpumask": hex(mask), "elapsed": 0}]
                          if c == cores[0] else []} for c in cores]}


# --- sock ----------------------------------------------------------------------------------------------

SOCK_IMPLS = ("posix", "ssl")


@rpc("sock_impl_set_options", state_mask=STARTUP)
def sock_impl_set_options(t: Target, params: Any) -> bool:
    impl = (params or {}).get("impl_name") if isinstance(params, dict) else None
    if impl not in SOCK_IMPLS:
        raise RpcError(INVALID_PARAMS, "Invalid parameters")
    opts = getattr(t, "sock_options", {})
    opts.setdefault(impl, {}).update({k: v for k, v in params.items() if k != "impl_name"})
    t.sock_options = opts
    return True


@rpc("sock_impl_get_options", state_mask=STARTUP | RUNTIME)
def sock_impl_get_options(t: Target, params: Any) -> dict[str, Any]:
    impl = (params or {}).get("impl_name") if isinstance(params, dict) else None
    if impl not in SOCK_IMPLS:
        raise RpcError(INVALID_PARAMS, "Invalid parameters")
    return {"enable_zerocopy_send_server": True, **getattr(t, "sock_options", {}).get(impl, {})}
