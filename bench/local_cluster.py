"""Local cluster start-up time and idle CPU cost.

Runs `meshblock up --nodes N`, measures the wall time it takes, then the CPU
time every process of the cluster (agents and SPDK targets) uses over an idle
window, then `meshblock down` and checks that none of them is left.

    .venv/bin/python bench/local_cluster.py --nodes 3 --idle 20
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK   # utime + stime


def cluster_pids(home: Path) -> dict[str, int]:
    state = json.loads((home / "cluster.json").read_text())
    out = {}
    for n in state["nodes"]:
        out[n["name"] if n["name"] == "controller" else f"{n['name']}/agent"] = n["pid"]
        for f in ("spdk.pid", "spdk-head.pid"):
            p = Path(n["data_dir"]) / f
            if p.exists():
                out[f"{n['name']}/{f[:-4]}"] = int(p.read_text())
    return out


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--idle", type=float, default=20.0, help="idle window in seconds")
    ap.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="meshblock-bench-"))
    env = dict(os.environ, MESHBLOCK_HOME=str(home))
    mb = [sys.executable, "-m", "meshblock"]
    t0 = time.monotonic()
    up = subprocess.run(mb + ["up", "--nodes", str(args.nodes), "-o", "json"], env=env, capture_output=True, text=True)
    up_s = time.monotonic() - t0
    if up.returncode:
        print(up.stderr, file=sys.stderr)
        return 1
    try:
        pids = cluster_pids(home)
        time.sleep(2.0)  # let start-up work finish before the idle window
        before = {k: cpu_seconds(p) for k, p in pids.items()}
        t1 = time.monotonic()
        time.sleep(args.idle)
        wall = time.monotonic() - t1
        after = {k: cpu_seconds(p) for k, p in pids.items()}
    finally:
        down = subprocess.run(mb + ["down"], env=env, capture_output=True, text=True)
    left = [k for k, p in pids.items() if alive(p)]
    per = {k: round(100 * (after[k] - before[k]) / wall, 2) for k in pids}
    result = {"nodes": args.nodes, "up_seconds": round(up_s, 2), "idle_window_s": round(wall, 1),
              "idle_cpu_percent_of_one_core_total": round(sum(per.values()), 2), "per_process_percent": per,
              "processes": len(pids), "left_after_down": left, "down_rc": down.returncode}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if not left and down.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
