"""iSCSI data path: 4 KiB random reads at queue depth 32 with libiscsi's iscsi-perf, in one run.

Three measurements against the same kind of storage (AIO on sparse files, 4 KiB blocks):
  plain   a hand-built spdk_tgt (polling, core 0) exporting one AIO bdev as LUN 0 of a target node
  mb-1    a meshblock volume with one replica, protocol iscsi
  mb-3    a meshblock volume with three replicas, protocol iscsi
Each volume is filled first (reads of unwritten thin clusters cost nothing). The meshblock cluster
runs in a temporary MESHBLOCK_HOME on 127.0.0.71-73 (port 14420), so it does not meet a cluster
someone else runs on the default addresses. Results go to stdout as JSON.

    .venv/bin/python bench/iscsi_perf.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meshblock.cli.local import down, up  # noqa: E402
from meshblock.spdk import SpdkClient, SpdkRpc, find_spdk  # noqa: E402
from tests.support import iscsi_host as host  # noqa: E402

INIT = "iqn.2026-11.io.meshblock:bench"
MiB = 1 << 20
SIZE = 1024 * MiB


def perf_argv(url: str, seconds: int) -> list[str]:
    return ["iscsi-perf", "-i", INIT, "-m", "32", "-b", "1", "-t", str(seconds), "-r", url]


async def perf(url: str, seconds: int) -> float:
    r = await host.tool(*perf_argv(url, seconds), timeout=seconds + 60)
    m = re.findall(r"iops average (\d+)", r.output)
    if r.returncode != 0 or not m:
        raise RuntimeError(f"iscsi-perf failed: {r.output[-500:]}")
    return float(m[-1])


async def fill(portal: str, target: str) -> None:
    chunk = os.urandom(4 * MiB)
    for off in range(0, SIZE, len(chunk)):
        await host.write(portal, target, INIT, off, chunk, block_size=4096)


async def plain(workdir: Path, seconds: int) -> float:
    install = find_spdk()
    sock = workdir / "plain.sock"
    img = workdir / "plain.img"
    with open(img, "wb") as f:
        f.truncate(SIZE)
    p = subprocess.Popen([str(install.program("spdk_tgt")), "--no-huge", "-s", "1024", "--no-pci", "-m", "0x1",
                          "--disable-cpumask-locks", "-r", str(sock)], stdout=open(workdir / "plain.log", "wb"),
                         stderr=subprocess.STDOUT, env=install.env(), start_new_session=True)
    rpc = SpdkRpc(SpdkClient(str(sock)))
    try:
        await rpc.client.wait_ready(timeout=30)
        await rpc.bdev_aio_create(str(img), "aio0", block_size=4096)
        await rpc.iscsi_create_portal_group(1, [{"host": "127.0.0.74", "port": "3260"}])
        await rpc.iscsi_create_initiator_group(1, [INIT], ["ANY"])
        target = "iqn.2026-11.io.meshblock:plain"
        await rpc.iscsi_create_target_node(target, "plain", [{"bdev_name": "aio0", "lun_id": 0}],
                                           [{"pg_tag": 1, "ig_tag": 1}], 64, disable_chap=True)
        await fill("127.0.0.74:3260", target)
        return await perf(host.url("127.0.0.74:3260", target), seconds)
    finally:
        await rpc.client.close()
        p.terminate()
        p.wait(30)


def mb(home: Path, *args: str) -> str:
    return subprocess.run([sys.executable, "-m", "meshblock", *args], env=dict(os.environ, MESHBLOCK_HOME=str(home)),
                          check=True, capture_output=True, text=True, timeout=300).stdout


async def meshblock(home: Path, replicas: int, seconds: int) -> float:
    name = f"b{replicas}"
    mb(home, "volume", "create", name, "--size", f"{SIZE}", "--replicas", str(replicas), "--protocol", "iscsi")
    mb(home, "volume", "publish", name, "--initiator", INIT)
    info = json.loads(mb(home, "volume", "connect", name, "--initiator", INIT, "-o", "json"))
    p = info["paths"][0]
    portal = f"{p['traddr']}:{p['trsvcid']}"
    await fill(portal, info["target_iqn"])
    if replicas > 1:   # the replicas added after the first are rebuilt at create; wait until whole
        for _ in range(600):
            if json.loads(mb(home, "volume", "get", name, "-o", "json"))["state"] == "available":
                break
            time.sleep(0.5)
    return await perf(host.url(portal, info["target_iqn"]), seconds)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mb-iscsi-bench-") as d:
        work = Path(d)
        results = {"plain": await plain(work, args.seconds)}
        home = work / "home"
        await up(home, 3, 4 << 30, base_octet=71, port=14420)
        try:
            results["mb-1"] = await meshblock(home, 1, args.seconds)
            results["mb-3"] = await meshblock(home, 3, args.seconds)
        finally:
            await down(home, log=lambda *_: None)
    print(json.dumps({"iops": results, "ratio_to_plain": {k: round(v / results["plain"], 3)
                                                           for k, v in results.items()},
                      "command": " ".join(perf_argv("iscsi://<portal>/<target>/0", args.seconds))}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
