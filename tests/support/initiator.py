"""SPDK's own NVMe/TCP initiator (spdk_dd) acting as a host outside the cluster."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path

from meshblock.spdk import SpdkInstall


@dataclass
class DdResult:
    returncode: int
    output: str


class SpdkHost:
    """Reads and writes an exported namespace with spdk_dd, connecting as ``host_nqn``."""

    def __init__(self, install: SpdkInstall, workdir: Path, host_nqn: str, cpumask: str | None = None,
                 dhchap_secret: str = "", dhchap_ctrl_secret: str = "", tls_psk: str = ""):
        self.install = install
        self.workdir = workdir
        self.host_nqn = host_nqn
        # DH-HMAC-CHAP: what the host proves, and what it expects the target to prove ("" = none)
        self.dhchap_secret = dhchap_secret
        self.dhchap_ctrl_secret = dhchap_ctrl_secret
        self.tls_psk = tls_psk         # TLS: the PSK (interchange format) the connection opens with ("" = clear text)
        # a busy-polling host must not share a core with the (polling) head targets on core 0
        self.cpumask = cpumask or hex(1 << (len(os.sched_getaffinity(0)) - 1))
        workdir.mkdir(parents=True, exist_ok=True)
        self._n = 0

    def _config(self, subnqn: str, traddr: str, port: int) -> Path:
        self._n += 1
        attach = {"name": "Host0", "trtype": "tcp", "adrfam": "ipv4", "traddr": traddr, "trsvcid": str(port),
                  "subnqn": subnqn, "hostnqn": self.host_nqn}
        keys = []
        for param, secret in (("dhchap_key", self.dhchap_secret), ("dhchap_ctrlr_key", self.dhchap_ctrl_secret),
                              ("psk", self.tls_psk)):
            if secret:
                path = self.workdir / f"{param}-{self._n}"
                path.write_text(secret)
                path.chmod(0o600)
                keys.append({"method": "keyring_file_add_key", "params": {"name": param, "path": str(path)}})
                attach[param] = param
        cfg = {"subsystems": [{"subsystem": "keyring", "config": keys},
                              {"subsystem": "bdev", "config": [
                                  {"method": "bdev_nvme_attach_controller", "params": attach},
                                  {"method": "bdev_wait_for_examine"}]}]}
        path = self.workdir / f"host-{self._n}.json"
        path.write_text(json.dumps(cfg))
        return path

    async def _dd(self, args: list[str], subnqn: str, traddr: str, port: int) -> DdResult:
        argv = [str(self.install.program("spdk_dd")), "--json", str(self._config(subnqn, traddr, port)),
                "--no-huge", "-s", "512", "--no-pci", "-m", self.cpumask, "--disable-cpumask-locks", *args]
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT, env=self.install.env())
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), 90)
        except asyncio.TimeoutError:
            proc.kill()
            out, _ = await proc.communicate()
        return DdResult(proc.returncode if proc.returncode is not None else -9, out.decode(errors="replace"))

    async def write(self, src: Path, subnqn: str, traddr: str, port: int, bs: int = 65536) -> DdResult:
        return await self._dd(["--if", str(src), "--ob", "Host0n1", "--bs", str(bs), "--qd", "16"],
                              subnqn, traddr, port)

    async def read(self, dst: Path, nbytes: int, subnqn: str, traddr: str, port: int, bs: int = 65536) -> DdResult:
        return await self._dd(["--ib", "Host0n1", "--of", str(dst), "--bs", str(bs), "--qd", "16",
                               "--count", str(nbytes // bs)], subnqn, traddr, port)
