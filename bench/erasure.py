"""Erasure-coded volumes (2+1, 4+1) against a 3-replica volume, measured in one run on one machine.

Each case runs on its own fresh `meshblock up --nodes 5` cluster (so no other volume's polling head
target shares the cores), with one 1 GiB volume written end to end first (128 KiB sequential writes,
QD16). Host: SPDK's spdk_nvme_perf over NVMe/TCP on the last core: 4 KiB random read and write at
QD32, 1 MiB sequential read and write at QD8, --seconds each after --warmup seconds.

Then, for each erasure-coded case: a node holding a shard (not the head) is killed (agent and
targets): 4 KiB random reads and 1 MiB sequential reads while degraded (every read that touches the
lost shard is rebuilt from the others); its agent is restarted from its agent.json and the time
from the node being up again until every shard is online is the rebuild (the returning shard is
re-added and rewritten whole). Capacity: the pool bytes the volume's replicas or shards take per
byte of volume, from the API.

Every process the bench starts is stopped by PID at the end, also on failure or SIGTERM.

    .venv/bin/python bench/erasure.py --out docs/performance/erasure.json \\
        --markdown docs/performance/erasure.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for p in (REPO, Path(__file__).resolve().parent):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from _dp_cluster import MeshCluster  # noqa: E402
from _dp_proc import NCPU, CommandLog, PerfSpec, Procs, log, run_perf, trid, write_report  # noqa: E402

from meshblock.spdk.discovery import find_spdk  # noqa: E402

HOST_NQN = "nqn.2026-11.io.meshblock.bench:ec-host"
GiB = 1 << 30
CASES = {"R3": ["--replicas", "3"], "E2+1": ["--ec", "2+1"], "E4+1": ["--ec", "4+1"]}


def specs(seconds: int, warmup: int) -> list[PerfSpec]:
    return [PerfSpec("randread", 32, 4096, seconds, warmup), PerfSpec("randwrite", 32, 4096, seconds, warmup),
            PerfSpec("read", 8, 1 << 20, seconds, warmup), PerfSpec("write", 8, 1 << 20, seconds, warmup)]


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.spdk = find_spdk()
        self.procs = Procs()
        self.cmds = CommandLog()
        self.work = Path(tempfile.mkdtemp(prefix="mb-ec-bench-"))
        self.mask = hex(1 << (NCPU - 1))
        self.result: dict = {"errors": [], "cases": {}, "started": datetime.datetime.now().isoformat(timespec="seconds")}

    def perf(self, section: str, spec: PerfSpec, tr: str) -> dict:
        r = run_perf(self.spdk, spec, tr, self.mask, self.cmds, section)
        r.pop("cpu", None)
        if r.get("rc") or "iops" not in r:
            self.result["errors"].append(f"{section} {spec.key}: {r.get('error') or r.get('output_tail', '')[-300:]}")
        log(f"  {section} {spec.key}: {r.get('iops')} IOPS, {r.get('mib_s')} MiB/s")
        return r

    def case(self, name: str, port: int) -> dict:
        cl = MeshCluster(self.work / name, port, self.procs, self.cmds, name)
        out: dict = {"create": CASES[name]}
        try:
            cl.up(nodes=5)
            cl.cli("volume", "create", "v", "--size", "1GiB", *CASES[name], "-o", "json")
            cl.cli("volume", "publish", "v", "--host-nqn", HOST_NQN, "-o", "json")
            v = cl.volume("v")
            out["volume_bytes"] = v.size_bytes
            out["pool_bytes"] = len(v.replica_status) * self.replica_bytes(v)   # thin: what may be allocated
            out["pool_bytes_per_volume_byte"] = round(out["pool_bytes"] / v.size_bytes, 3)
            info = cl.connect_info("v", HOST_NQN)
            p = info.paths[0]
            tr = trid(p.traddr, p.trsvcid, info.subnqn, HOST_NQN)
            self.perf(name, PerfSpec("write", 16, 128 << 10, 300, number_ios="100%"), tr)
            out["healthy"] = {s.key: self.perf(name, s, tr) for s in specs(self.args.seconds, self.args.warmup)}
            if name.startswith("E"):
                out.update(self.degraded_and_rebuild(cl, name, tr))
        except Exception as e:  # noqa: BLE001 - recorded; the other cases still run
            self.result["errors"].append(f"{name}: {e!r}")
            log(traceback.format_exc())
        finally:
            out["cleanup"] = cl.down()
        return out

    @staticmethod
    def replica_bytes(v) -> int:
        k = v.erasure.data if v.HasField("erasure") else 1
        return v.size_bytes // k

    def degraded_and_rebuild(self, cl: MeshCluster, name: str, tr: str) -> dict:
        v = cl.volume("v")
        head = cl.name_of(v.head_node_id)
        victim = next(cl.name_of(r.node_id) for r in v.replica_status if r.node_id != v.head_node_id)
        t0 = time.monotonic()
        cl.kill_node(victim, ("spdk", "spdk-head"))
        cl.wait("degraded", lambda: cl.volume("v").state == "degraded", 60)
        out: dict = {"killed": victim, "head": head, "degraded_after_s": round(time.monotonic() - t0, 2)}
        out["degraded"] = {s.key: self.perf(name + "/degraded", s, tr)
                           for s in specs(self.args.seconds, self.args.warmup) if "read" in s.rw}
        t_r = time.monotonic()
        cl.restart_agent(victim)
        node_id = cl.node_id(victim)
        cl.wait(f"{victim} up", lambda: cl.node_state(node_id) == "up", 90)
        t_up = time.monotonic()
        t_red = cl.wait_redundant("v", 600)
        shard = self.replica_bytes(cl.volume("v"))
        out["rebuild"] = {"node_up_after_restart_s": round(t_up - t_r, 2),
                          "rebuild_s": round(t_red - t_up, 2), "shard_bytes": shard,
                          "shard_mib_s": round(shard / (1 << 20) / max(t_red - t_up, 1e-6), 1),
                          "volume_mib_s": round(cl.volume("v").size_bytes / (1 << 20) / max(t_red - t_up, 1e-6), 1)}
        log(f"  {name} rebuild: {out['rebuild']}")
        return out

    def run(self) -> dict:
        t0 = time.monotonic()
        for i, name in enumerate(CASES):
            log(f"case {name}")
            self.result["cases"][name] = self.case(name, 24800 + 20 * i)
        self.result["duration_s"] = round(time.monotonic() - t0, 1)
        self.result["commands"] = self.cmds.entries
        self.result["command_line"] = shlex.join([".venv/bin/python", "bench/erasure.py", *sys.argv[1:]])
        self.result["machine"] = {"cpus": NCPU, "kernel": os.uname().release}
        return self.result


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "–"


def write_markdown(path: Path, res: dict) -> None:
    cases = res["cases"]
    keys = ["randread_4k_qd32", "randwrite_4k_qd32", "read_1024k_qd8", "write_1024k_qd8"]
    L = ["# Erasure-coded volumes against 3 replicas\n",
         f"Measured {res['started']} in one run of `bench/erasure.py` ({res.get('duration_s', 0):.0f} s) on "
         f"{res['machine']['cpus']} cores; figures and every command: [`erasure.json`](erasure.json).\n",
         "```sh\n" + res["command_line"] + "\n```\n",
         "Each case on a fresh `meshblock up --nodes 5` cluster, one 1 GiB volume written end to end first; host "
         "`spdk_nvme_perf` over NVMe/TCP on the last core. See docs/erasure-coding.md for the design.\n",
         "## Healthy\n",
         "| case | pool bytes per volume byte | 4 KiB rand read QD32 IOPS | 4 KiB rand write QD32 IOPS | "
         "1 MiB seq read QD8 MiB/s | 1 MiB seq write QD8 MiB/s |", "|---|---:|---:|---:|---:|---:|"]
    for name, c in cases.items():
        h = c.get("healthy", {})
        L.append(f"| {name} | {c.get('pool_bytes_per_volume_byte', '–')} | "
                 f"{h.get(keys[0], {}).get('iops', 0):,.0f} | {h.get(keys[1], {}).get('iops', 0):,.0f} | "
                 f"{h.get(keys[2], {}).get('mib_s', 0):,.0f} | {h.get(keys[3], {}).get('mib_s', 0):,.0f} |")
    L += ["", "Ratios to the 3-replica volume (same run):", "",
          "| case | 4 KiB rand read | 4 KiB rand write | 1 MiB seq read | 1 MiB seq write | capacity used |",
          "|---|---:|---:|---:|---:|---:|"]
    r3 = cases.get("R3", {})
    for name, c in cases.items():
        if name == "R3":
            continue
        cells = []
        for k in keys:
            field = "iops" if "4k" in k else "mib_s"
            cells.append(ratio(c.get("healthy", {}).get(k, {}).get(field), r3.get("healthy", {}).get(k, {}).get(field)))
        L.append(f"| {name} | {' | '.join(cells)} | "
                 f"{ratio(c.get('pool_bytes_per_volume_byte'), r3.get('pool_bytes_per_volume_byte'))} |")
    L += ["", "## One node lost, and its rebuild\n",
          "| case | 4 KiB rand read QD32 IOPS (degraded / healthy) | 1 MiB seq read MiB/s (degraded / healthy) | "
          "rebuild (node up → all shards online) | shard rewritten | MiB/s of shard | MiB/s of volume |",
          "|---|---:|---:|---:|---:|---:|---:|"]
    for name, c in cases.items():
        if "rebuild" not in c:
            continue
        d, h, rb = c.get("degraded", {}), c.get("healthy", {}), c["rebuild"]
        L.append(f"| {name} | {d.get(keys[0], {}).get('iops', 0):,.0f} / {h.get(keys[0], {}).get('iops', 0):,.0f} | "
                 f"{d.get(keys[2], {}).get('mib_s', 0):,.0f} / {h.get(keys[2], {}).get('mib_s', 0):,.0f} | "
                 f"{rb['rebuild_s']} s | {rb['shard_bytes'] >> 20} MiB | {rb['shard_mib_s']} | {rb['volume_mib_s']} |")
    if res["errors"]:
        L += ["", "## Errors", ""] + [f"- {e}" for e in res["errors"]]
    write_report(path, "\n".join(L) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--markdown", type=Path, default=None)
    ap.add_argument("--render", type=Path, default=None, metavar="JSON", help="only write --markdown from a JSON")
    args = ap.parse_args()
    if args.render:
        write_markdown(args.markdown, json.loads(args.render.read_text()))
        return 0
    os.environ.update(find_spdk().env())

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    bench = Bench(args)
    try:
        res = bench.run()
    finally:
        left = bench.procs.stop_all()
        if left:
            log("left running after stop:", left)
    if args.out:
        args.out.write_text(json.dumps(res, indent=2) + "\n")
    if args.markdown:
        write_markdown(args.markdown, res)
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
