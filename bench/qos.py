"""Per-volume QoS: a limited volume holds its IOPS limit while a neighbour on the same node keeps
its throughput. One run, one machine; the load comes from SPDK's spdk_nvme_perf, outside meshblock.

A `meshblock up` cluster (--nodes, default 1, so both volumes share a node and its SPDK target)
in a temporary MESHBLOCK_HOME holds two volumes of --replicas replicas: "noisy" and "quiet",
written end to end first (128 KiB sequential writes) so reads hit allocated data. One
spdk_nvme_perf process on the last core drives both at once (one -r per volume, --qd each, 4 KiB
--workload), so both meet the same host; it reports each namespace's IOPS. Steps, --seconds each
after --warmup seconds, repeated --rounds times (the limit set and lifted again in every round, so a
drift of the machine's load shows as a spread between rounds), medians reported:

  quiet-alone      quiet only
  noisy-alone      noisy only, no limit
  both-unlimited   both at once, no limit
  noisy-limited    noisy only, after `meshblock volume set-qos noisy --max-iops LIMIT`
  both-limited     both at once, noisy limited

LIMIT is --limit, or a quarter of noisy-alone's IOPS rounded down to SPDK's steps of 1000. The
checks: noisy-limited and noisy in both-limited within 5 % of LIMIT (SPDK enforces limits per 1 ms
timeslice; a limit is a ceiling, so the error is how far below it the volume stays), and quiet in
both-limited against quiet-alone less what LIMIT takes from the shared target.

    .venv/bin/python bench/qos.py --seconds 10 --out docs/performance/qos.json \\
        --markdown docs/performance/qos.md

Every process the bench starts is stopped by PID at the end, also on failure or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for p in (REPO, Path(__file__).resolve().parent):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from _dp_cluster import MeshCluster  # noqa: E402
from _dp_proc import (CLK_TCK, NCPU, CommandLog, PerfSpec, Procs, free_port_pair, log, perf_argv, run_and_clean_up,  # noqa: E402
                      perf_once, proc_ticks, trid, write_report)

from meshblock.qos import IOPS_STEP  # noqa: E402
from meshblock.spdk.discovery import find_spdk  # noqa: E402

HOST_NQN = "nqn.2026-11.io.meshblock.bench:qos-host"
GiB = 1 << 30
TOLERANCE = 0.05
_NS = re.compile(r"subnqn:(\S+?)\)\s+NSID\s+\d+\s+from core\s+\d+:\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)")


def per_namespace(out: str) -> dict[str, dict]:
    """spdk_nvme_perf's per-namespace rows: subsystem NQN -> IOPS, MiB/s, average latency (us)."""
    return {m.group(1): {"iops": round(float(m.group(2)), 1), "mib_s": round(float(m.group(3)), 1),
                         "lat_avg_us": round(float(m.group(4)), 1)} for m in _NS.finditer(out)}


class QosBench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.spdk = find_spdk()
        self.work = Path(tempfile.mkdtemp(prefix="mb-qos-bench-"))
        self.procs = Procs()
        self.cmds = CommandLog()
        self.cluster: MeshCluster | None = None
        self.mask = hex(1 << (NCPU - 1))
        self.trids: dict[str, str] = {}
        self.nqns: dict[str, str] = {}
        self.result: dict = {"errors": [], "steps": {}}

    def perf(self, step: str, volumes: list[str], spec: PerfSpec) -> dict:
        argv = perf_argv(self.spdk, spec, self.trids[volumes[0]], self.mask)
        for v in volumes[1:]:
            argv += ["-r", self.trids[v]]
        self.cmds.add(step, argv)
        log(f"{step}: {' + '.join(volumes)}")
        r = subprocess.run(argv, capture_output=True, text=True, timeout=spec.seconds + spec.warmup + 120,
                           start_new_session=True, check=False)
        rows = per_namespace(r.stdout)
        by_volume = {v: rows.get(self.nqns[v], {}) for v in volumes}
        if r.returncode or not all(by_volume.values()):
            raise RuntimeError(f"{step}: spdk_nvme_perf failed ({r.returncode}): {(r.stdout + r.stderr)[-1500:]}")
        log(f"{step}: " + ", ".join(f"{v} {x['iops']:.0f} IOPS" for v, x in by_volume.items()))
        return {"cmd": shlex.join(argv), **by_volume}

    def volume(self, name: str) -> None:
        cl = self.cluster
        assert cl is not None
        cl.cli_json("volume", "create", name, "--size", f"{self.args.size_gib}GiB", "--replicas",
                    str(self.args.replicas))
        cl.cli_json("volume", "publish", name, "--host-nqn", HOST_NQN)
        info = cl.wait(f"volume {name} exported", lambda: cl.connect_info(name, HOST_NQN).paths, 60)
        ci = cl.connect_info(name, HOST_NQN)
        self.nqns[name] = ci.subnqn
        self.trids[name] = trid(info[0].traddr, info[0].trsvcid, ci.subnqn, HOST_NQN)
        cl.wait(f"a read through {name}", lambda: perf_once(self.spdk, self.trids[name], self.mask)[0], 60, 0.3)

    def idle_cpu(self, seconds: float = 5.0) -> dict[str, float]:
        """CPU (% of one core) of the cluster's SPDK targets while no I/O runs: SPDK's QoS adds a 1 ms
        poller to a limited bdev's thread, which wakes a target that otherwise sleeps."""
        assert self.cluster is not None
        targets = {k: v for k, v in self.cluster.pids().items() if k.endswith("target")}
        t0, before = time.monotonic(), {k: proc_ticks(p) or 0 for k, p in targets.items()}
        time.sleep(seconds)
        wall = time.monotonic() - t0
        return {k: round(100.0 * ((proc_ticks(p) or 0) - before[k]) / CLK_TCK / wall, 1) for k, p in targets.items()}

    def set_limit(self, iops: int) -> dict:
        assert self.cluster is not None
        v = self.cluster.cli_json("volume", "set-qos", "noisy", "--max-iops", str(iops))
        return v["qos"]

    def run(self) -> None:
        a = self.args
        addrs = [f"127.0.0.{11 + i}" for i in range(a.nodes)]
        port = free_port_pair(addrs, 25720)
        self.cluster = cl = MeshCluster(self.work / "cluster", port, self.procs, self.cmds, "cluster")
        log(f"meshblock up --nodes {a.nodes} --port {port} (MESHBLOCK_HOME={cl.home})")
        cl.up(a.nodes)
        cl.wait_nodes_up(a.nodes, 120)
        for name in ("noisy", "quiet"):
            self.volume(name)
        heads = {name: cl.name_of(cl.volume(name).head_node_id) for name in ("noisy", "quiet")}
        self.result["heads"] = heads
        self.result["layout"] = cl.layout()
        if len(set(heads.values())) != 1:
            self.result["errors"].append(f"the volumes' heads are on different nodes: {heads}")
        fill = PerfSpec("write", 16, 128 * 1024, 300, number_ios="100%")
        for name in ("noisy", "quiet"):
            self.perf(f"fill-{name}", [name], fill)
        self.result["idle_cpu_percent_no_limit"] = self.idle_cpu()
        spec = PerfSpec(a.workload, a.qd, 4096, a.seconds, a.warmup)
        self.result["spec"] = spec.__dict__
        rounds: list[dict] = []
        self.result["rounds"] = rounds
        limit = a.limit
        # unlimited and limited steps alternate round after round, so a drift of the machine's load
        # (other processes) shows as a spread between rounds instead of as a QoS effect
        for i in range(a.rounds):
            r: dict = {}
            rounds.append(r)
            if i:
                self.set_limit(0)
                time.sleep(1)
            r["quiet-alone"] = self.perf(f"quiet-alone/{i}", ["quiet"], spec)
            r["noisy-alone"] = self.perf(f"noisy-alone/{i}", ["noisy"], spec)
            r["both-unlimited"] = self.perf(f"both-unlimited/{i}", ["noisy", "quiet"], spec)
            if not limit:
                limit = max(IOPS_STEP, int(r["noisy-alone"]["noisy"]["iops"] / 4) // IOPS_STEP * IOPS_STEP)
                self.result["limit_iops"] = limit
            self.result["qos_after_set"] = self.set_limit(limit)
            if not i:
                self.result["idle_cpu_percent_limited"] = self.idle_cpu()
            else:
                time.sleep(1)
            r["noisy-limited"] = self.perf(f"noisy-limited/{i}", ["noisy"], spec)
            r["both-limited"] = self.perf(f"both-limited/{i}", ["noisy", "quiet"], spec)
        self.result["limit_iops"] = limit
        self.result["qos_after_lift"] = self.set_limit(0)
        steps = self.result["steps"]
        for step in rounds[0]:
            steps[step] = {v: {"iops": statistics.median(r[step][v]["iops"] for r in rounds)}
                           for v in ("noisy", "quiet") if v in rounds[0][step]}

    def cleanup(self) -> dict:
        out: dict = {}
        if self.cluster is not None:
            try:
                out = self.cluster.down()
            except Exception as e:  # noqa: BLE001 - still stop what is left
                out = {"down_error": repr(e)}
        out["left_after_cleanup"] = self.procs.stop_all()
        return out


def summarize(res: dict) -> dict:
    s = res.get("steps", {})
    limit = res.get("limit_iops")
    if not limit or "both-limited" not in s:
        return {}

    def iops(step: str, vol: str) -> float:
        return s[step][vol]["iops"]

    alone = iops("quiet-alone", "quiet")
    out = {
        "limit_iops": limit,
        "noisy_alone_iops": iops("noisy-alone", "noisy"),
        "noisy_limited_iops": iops("noisy-limited", "noisy"),
        "noisy_limited_vs_limit": round(iops("noisy-limited", "noisy") / limit, 3),
        "noisy_limited_with_neighbour_vs_limit": round(iops("both-limited", "noisy") / limit, 3),
        "quiet_alone_iops": iops("quiet-alone", "quiet"),
        "quiet_with_unlimited_neighbour_iops": iops("both-unlimited", "quiet"),
        "quiet_with_limited_neighbour_iops": iops("both-limited", "quiet"),
        "quiet_with_unlimited_neighbour_vs_alone": round(iops("both-unlimited", "quiet") / alone, 3),
        "quiet_with_limited_neighbour_vs_alone": round(iops("both-limited", "quiet") / alone, 3),
    }
    # the neighbour's share of what the node served together, limited and not
    total_unlimited = iops("both-unlimited", "noisy") + iops("both-unlimited", "quiet")
    out["quiet_with_limited_neighbour_vs_node_unlimited_total_minus_limit"] = round(
        iops("both-limited", "quiet") / max(total_unlimited - limit, 1.0), 3)
    # with noisy held at its limit the node keeps serving as much as it serves one volume alone: the
    # neighbour gets everything the limit leaves, nothing is lost to the limit itself
    out["node_total_limited_vs_quiet_alone"] = round(
        (iops("both-limited", "noisy") + iops("both-limited", "quiet")) / alone, 3)
    ratios = [r[step]["noisy"]["iops"] / limit for r in res.get("rounds", [])
              for step in ("noisy-limited", "both-limited") if step in r]
    if ratios:
        out["noisy_limited_vs_limit_range_over_rounds"] = [round(min(ratios), 3), round(max(ratios), 3)]
    out["limit_held_within_5_percent"] = all(
        1 - TOLERANCE <= x <= 1 + TOLERANCE for x in (out["noisy_limited_vs_limit"],
                                                     out["noisy_limited_with_neighbour_vs_limit"]))
    return out


def markdown(res: dict) -> str:
    s = res.get("summary") or {}
    spec = res.get("spec") or {}
    lines = ["# Per-volume QoS: a limited volume and its neighbour", "",
             f"Measured {res.get('date', '')} on {res['machine']['cores']} cores (kernel {res['machine']['kernel']}), "
             f"SPDK {res.get('spdk_version', '?')}. Command:", "", "```sh", res["command_line"], "```", "",
             f"`meshblock up --nodes {res['args']['nodes']}`, two {res['args']['size_gib']} GiB volumes of "
             f"{res['args']['replicas']} replica(s), heads on {res.get('heads')}; spdk_nvme_perf "
             f"{spec.get('rw')} 4 KiB, QD{spec.get('qd')} per volume, {spec.get('seconds')} s after "
             f"{spec.get('warmup')} s warm-up, one perf process on the last core driving both volumes.", "",
             "| step | noisy IOPS | quiet IOPS |", "|---|---:|---:|"]
    for step, r in res.get("steps", {}).items():
        if step.startswith("fill"):
            continue
        lines.append(f"| {step} | {r.get('noisy', {}).get('iops', '-')} | {r.get('quiet', {}).get('iops', '-')} |")
    if s:
        lines += ["", f"Limit: {s['limit_iops']} IOPS on noisy (`meshblock volume set-qos noisy --max-iops "
                      f"{s['limit_iops']}`).", "",
                  f"- noisy alone, limited: {s['noisy_limited_iops']:.0f} IOPS = {s['noisy_limited_vs_limit']:.3f} "
                  f"of the limit; with the neighbour busy: {s['noisy_limited_with_neighbour_vs_limit']:.3f} "
                  f"(within 5 %: {'yes' if s['limit_held_within_5_percent'] else 'no'}).",
                  f"- quiet alone {s['quiet_alone_iops']:.0f} IOPS; beside the unlimited noisy volume "
                  f"{s['quiet_with_unlimited_neighbour_iops']:.0f} "
                  f"({s['quiet_with_unlimited_neighbour_vs_alone']:.3f} of alone); beside the limited one "
                  f"{s['quiet_with_limited_neighbour_iops']:.0f} ({s['quiet_with_limited_neighbour_vs_alone']:.3f} "
                  "of alone).",
                  f"- the node's total with noisy limited: {s['node_total_limited_vs_quiet_alone']:.3f} of what it "
                  "serves quiet alone (the neighbour gets what the limit leaves)."]
        if "noisy_limited_vs_limit_range_over_rounds" in s:
            lo, hi = s["noisy_limited_vs_limit_range_over_rounds"]
            lines.append(f"- the limited volume over every round and step: {lo:.3f} to {hi:.3f} of the limit.")
        lines += ["",
                  "Each figure is the median of the rounds; every round's figures are in the JSON file beside "
                  "this one, with the machine's load average before and after the run."]
    if "idle_cpu_percent_limited" in res:
        lines += ["", f"SPDK targets' CPU with no I/O (% of a core): {res['idle_cpu_percent_no_limit']} without a "
                      f"limit, {res['idle_cpu_percent_limited']} with noisy limited."]
    if res.get("errors"):
        lines += ["", "Errors: " + "; ".join(res["errors"])]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=1)
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument("--size-gib", type=int, default=1)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--qd", type=int, default=32)
    ap.add_argument("--workload", default="randread", choices=("randread", "randwrite"))
    ap.add_argument("--limit", type=int, default=0, help="IOPS limit of the noisy volume (default: a quarter "
                                                         "of what it does alone)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--markdown", type=Path)
    ap.add_argument("--keep-work", action="store_true")
    args = ap.parse_args()
    if args.limit % IOPS_STEP:
        ap.error(f"--limit must be a multiple of {IOPS_STEP}")

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)

    bench = QosBench(args)
    # SPDK's programs the bench starts need a shared build's libraries, as meshblock's do
    os.environ.update(bench.spdk.env())
    res = bench.result
    res["command_line"] = shlex.join([".venv/bin/python", "bench/qos.py", *sys.argv[1:]])
    res["args"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    res["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    res["machine"] = {"cores": NCPU, "kernel": platform.release(), "python": platform.python_version()}
    res["spdk_version"] = bench.spdk.version()
    res["load_average_before"] = os.getloadavg()
    rc = run_and_clean_up(bench, res)
    res["load_average_after"] = os.getloadavg()
    res["summary"] = summarize(res)
    res["commands"] = bench.cmds.entries
    if args.out:
        args.out.write_text(json.dumps(res, indent=2) + "\n")
    if args.markdown:
        write_report(args.markdown, markdown(res))
    print(json.dumps({"summary": res["summary"], "errors": res["errors"]}, indent=1))
    if not args.keep_work and not res["cleanup"].get("left_after_cleanup"):
        shutil.rmtree(bench.work, ignore_errors=True)
    return rc if not res["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
