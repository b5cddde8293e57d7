"""DH-HMAC-CHAP secrets and TLS PSKs in an SPDK target's keyring.

SPDK's file keyring reads a key from its file each time the key is used, and takes only files
that their owner alone can read. Each secret gets a file named after its fingerprint
(meshblock/dhchap.py key_name) in a directory of the agent's, per target; the name a subsystem's
host entry reports then says which secret is in place. Files of keys no subsystem uses any more
are removed with the keys.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..dhchap import KEY_NAME_PREFIX, key_name
from ..tlspsk import KEY_NAME_PREFIX as PSK_PREFIX

# the node's own secret for attaching replica exports (initiator side): no host entry refers to it,
# so it is not pruned with the hosts' keys
LINK_KEY_PREFIX = "mb-link-"
from ..spdk import SpdkExists, SpdkNotFound, SpdkRpc

# the keys host entries refer to (pruned when no entry does)
HOST_KEY_PREFIXES = (KEY_NAME_PREFIX, PSK_PREFIX)

log = logging.getLogger(__name__)


class Keyring:
    def __init__(self, rpc: SpdkRpc, directory: Path):
        self.rpc = rpc
        self.dir = Path(directory)

    def _write(self, name: str, secret: str) -> Path:
        path = self.dir / name
        if path.exists():
            return path
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)
        tmp = self.dir / f".{name}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secret)
        os.replace(tmp, path)
        return path

    def keep(self, *secrets: str) -> None:
        """Make sure the files of keys already in the keyring are there (SPDK reads them at each use)."""
        for secret in secrets:
            if secret:
                self._write(key_name(secret), secret)

    async def ensure(self, secret: str, prefix: str = KEY_NAME_PREFIX) -> str:
        """The keyring name of ``secret``, added to the target if it is not there."""
        name = prefix + key_name(secret)[len(KEY_NAME_PREFIX):]
        path = self._write(name, secret)
        try:
            await self.rpc.keyring_file_add_key(name, str(path))
        except SpdkExists:
            pass
        return name

    async def retire(self, names: set[str]) -> None:
        """Remove keys (and their files) that no host entry of the target uses any more."""
        for name in sorted(n for n in names if n.startswith(HOST_KEY_PREFIXES)):
            try:
                await self.rpc.keyring_file_remove_key(name)
            except SpdkNotFound:
                pass
            try:
                (self.dir / name).unlink()
            except FileNotFoundError:
                pass
            log.debug("key retired name=%s", name)

    async def prune(self) -> int:
        """Remove the keys (and files) of ours that no subsystem's host entry refers to: left by a
        crash between replacing a host's keys and retiring the old ones."""
        used: set[str] = set()
        for sub in await self.rpc.nvmf_get_subsystems():
            for h in sub.get("hosts") or []:
                used.update(h[k] for k in ("dhchap_key", "dhchap_ctrlr_key") if h.get(k))
        used.update((await host_psks(self.rpc)).values())
        have = {k["name"] for k in await self.rpc.keyring_get_keys()
                if k.get("name", "").startswith(HOST_KEY_PREFIXES)}
        files = ({p.name for p in self.dir.iterdir() if p.name.startswith(HOST_KEY_PREFIXES)}
                 if self.dir.is_dir() else set())
        stale = (have | files) - used
        await self.retire(stale)
        return len(stale)


def host_key_names(host: dict) -> tuple[str, str]:
    """The key names a subsystem's host entry (nvmf_get_subsystems) has: (host key, controller key)."""
    return host.get("dhchap_key") or "", host.get("dhchap_ctrlr_key") or ""


async def host_psks(rpc: SpdkRpc, nqn: str | None = None) -> dict[tuple[str, str], str]:
    """(subsystem NQN, host NQN) -> the keyring name of the host's TLS PSK. nvmf_get_subsystems does
    not show PSKs; the nvmf configuration does (as the host entries' ``psk``)."""
    out = {}
    for call in await rpc.framework_get_config("nvmf"):
        p = call.get("params") or {}
        if call.get("method") == "nvmf_subsystem_add_host" and p.get("psk") and nqn in (None, p.get("nqn")):
            out[(p["nqn"], p["host"])] = p["psk"]
    return out
