"""Data-path ratios of meshblock against hand-built SPDK, measured in one run on one machine.

Host: SPDK's spdk_nvme_perf over NVMe/TCP on the last core (`-c <last core>`), 4 KiB random
read and random write, QD32 (IOPS) and QD1 (latency), --seconds each after --warmup seconds, on
1 GiB volumes written once end to end (128 KiB sequential writes) before they are measured, so
reads hit allocated data.

Cases (every SPDK target with --no-huge -s 1024 --no-pci --disable-cpumask-locks):
  A          plain SPDK with SPDK's defaults: one nvmf_tgt in interrupt mode on core 0: AIO bdev
             (blocks of meshblock's pool block size) on a sparse 8 GiB file -> lvstore (4 MiB clusters) -> thin 1 GiB lvol,
             exported directly.
  A-nozc     A with the posix sock option enable_zerocopy_send_server=false (a --json config at
             start-up), the setting meshblock's targets start with.
  A2         a second target identical to A: A2/A is the noise floor of the A-M1 comparison.
  M1         meshblock 1-replica volume on `meshblock up --nodes 3` (exported straight from the data
             target). Measured interleaved with A, A2 and A-nozc (same pattern back to back).
  B          hand-built composition of meshblock's 3-replica layout: three interrupt-mode data targets
             (core 0) each exporting a thin lvol, a polling head nvmf_tgt on core 0 attaching all three
             over NVMe/TCP (bdev_nvme_attach_controller) with a raid1 of them (no superblock) exported
             on its own port. SPDK's defaults.
  B-last     B with the head on the host's (last) core: what a head sharing the host's core costs.
  B-nozc     B with zero-copy send off in all four targets.
  M3         meshblock 3-replica volume on the same `meshblock up` cluster.
  M3-core0   only when meshblock's heads run on the host's core: M3 on a second cluster whose agents
             were restarted with head_cpumask 0x1 in their agent.json.
The twins of meshblock's cases are picked from what the cluster runs (head core mask, zero-copy
setting of the data target): A or A-nozc for M1, B, B-last or B-nozc for M3.
Then, on the same cluster: rebuild of one replica (node killed, more data written, agent restarted
from its agent.json; rebuild time from the node being up again until the replica is online)
against sequential 128 KiB read throughput from the plain export, and the same leg rebuild on the
hand-built raid1 with zero-copy on and off; failover (SIGKILL of the head node's agent and head
target until the connect info names another node and a fresh 4 KiB read through it succeeds),
--failovers times with the controller's default --node-timeout, then --failovers more after the
controller was restarted with --node-timeout --short-node-timeout.

Every process the bench starts is stopped by PID at the end, also on failure or SIGTERM.

    .venv/bin/python bench/data_path.py --seconds 10 --rounds 2 --phase1-rounds 3 \\
        --out docs/performance/data-path.json --markdown docs/performance/data-path.md \\
        --plot docs/performance/data-path.png
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
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
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for p in (REPO, Path(__file__).resolve().parent):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import grpc
from _dp_cluster import MeshCluster

from meshblock.agent.config import AgentConfig
from meshblock.control.server import ControllerConfig
from meshblock.spdk.discovery import SpdkInstall, find_spdk

DEFAULT_NODE_TIMEOUT = ControllerConfig.node_timeout     # what `meshblock up` starts its controller with
from _dp_proc import (
    CLK_TCK,
    run_and_clean_up,
    write_report,
    NCPU,
    CommandLog,
    CpuWindow,
    PerfSpec,
    Procs,
    Target,
    all_proc_ticks,
    free_port_pair,
    log,
    perf_once,
    run_perf,
    start_target,
    trid,
)

GiB = 1 << 30
MiB = 1 << 20
HOST_NQN = "nqn.2026-11.io.meshblock.bench:perf-host"
HEAD_NQN = "nqn.2026-11.io.meshblock.bench:hand-built-head"
SUB_A = "nqn.2026-11.io.meshblock.bench:plain"
SUB_LEG = "nqn.2026-11.io.meshblock.bench:leg{}"
SUB_RAID = "nqn.2026-11.io.meshblock.bench:raid"
BASE_ADDR = "127.0.77.{}"
GOALS = {"m1_vs_a": 0.95, "m3_read_vs_a": 0.90, "m3_write_vs_a": 0.50, "failover_s": 5.0,
         "rebuild_vs_link": 0.70, "meshblock_vs_hand_built": 0.95}
CASE_TITLES = {"A": "plain SPDK lvol export", "A2": "a second, identical A (noise floor)", "A-nozc": "A, zero-copy send off", "M1": "meshblock 1 replica",
               "B": "hand-built raid1 x3, head core 0", "B-last": "hand-built raid1 x3, head last core",
               "B-nozc": "B with zero-copy send off in every target",
               "B-last-nozc": "B-last with zero-copy send off in every target",
               "M3": "meshblock 3 replicas (as shipped)", "M3-core0": "meshblock 3 replicas, head_cpumask 0x1"}


def host_mask() -> str:
    return hex(1 << (NCPU - 1))


def std_specs(seconds: int, warmup: int) -> list[PerfSpec]:
    return [PerfSpec("randread", 32, 4096, seconds, warmup), PerfSpec("randwrite", 32, 4096, seconds, warmup),
            PerfSpec("randread", 1, 4096, seconds, warmup, latency_summary=True),
            PerfSpec("randwrite", 1, 4096, seconds, warmup, latency_summary=True)]


def precondition_spec() -> PerfSpec:
    return PerfSpec("write", 16, 128 * 1024, 300, number_ios="100%")


class Bench:
    def __init__(self, args: argparse.Namespace, install: SpdkInstall):
        self.args = args
        self.spdk = install
        self.work = Path(tempfile.mkdtemp(prefix="mb-dp-bench-"))
        self.procs = Procs()
        self.cmds = CommandLog()
        self.clusters: list[MeshCluster] = []
        self.cases: dict[str, dict] = {}
        self.result: dict = {"errors": []}
        self.mask = host_mask()
        self.specs = std_specs(args.seconds, args.warmup)
        self.mesh: dict = {}
        self.twin_a, self.twin_b = "A", "B"
        self.nozc_config: Path | None = None

    # --- small pieces ------------------------------------------------------------------------------
    def case(self, name: str, layout: list[dict], tr: str, section: str) -> dict:
        c = {"title": CASE_TITLES.get(name, name), "section": section, "layout": layout, "trid": tr,
             "runs": {}, "precondition": None}
        self.cases[name] = c
        return c

    def ours(self) -> set[int]:
        pids = {os.getpid()} | {st.pid for st in self.procs.items}
        for cl in self.clusters:
            pids |= cl.seen_pids
        return pids

    def quiet_wait(self) -> float:
        """Wait (at most --quiet-wait s) until processes outside the bench use less than --max-other % of a
        core over 2 s; returns the seconds waited."""
        t0 = time.monotonic()
        while True:
            a = all_proc_ticks()
            time.sleep(2.0)
            b = all_proc_ticks()
            ours = self.ours()
            other = sum(max(0, t - a.get(pid, (n, t))[1]) for pid, (n, t) in b.items() if pid not in ours and pid in a)
            pct = 100 * other / CLK_TCK / 2.0
            if pct < self.args.max_other or time.monotonic() - t0 >= self.args.quiet_wait:
                return round(time.monotonic() - t0, 1)
            log(f"  other processes use {pct:.0f} % of a core; waiting")

    def measure(self, name: str, spec: PerfSpec, watch: dict[str, int]) -> dict:
        """One run; repeated (at most --retries times, after waiting for quiet) while processes outside the
        bench used more than --max-other % of a core during it. Every attempt is kept; disturbed ones are
        marked and left out of the medians when undisturbed ones exist."""
        c = self.cases[name]
        for attempt in range(self.args.retries + 1):
            r = run_perf(self.spdk, spec, c["trid"], self.mask, self.cmds, c["section"], watch,
                         exclude=self.ours())
            other = r["cpu"]["other_processes_cpu_percent"]
            r["disturbed"] = other >= self.args.max_other
            c["runs"].setdefault(spec.key, []).append(r)
            log(f"  {name:8s} {spec.key:18s} iops={r.get('iops')} avg={r.get('lat_avg_us')}us rc={r['rc']}"
                + (f" (other processes {other:.0f} % of a core: disturbed)" if r["disturbed"] else ""))
            if not r["disturbed"] or attempt == self.args.retries:
                return r
            r["quiet_wait_s"] = self.quiet_wait()
        return r

    def precondition(self, name: str, watch: dict[str, int]) -> None:
        c = self.cases[name]
        r = run_perf(self.spdk, precondition_spec(), c["trid"], self.mask, self.cmds, c["section"], watch,
                     timeout=400)
        c["precondition"] = r
        log(f"  {name:8s} precondition 1 GiB: {r.get('mib_s')} MiB/s in {r['wall_s']}s rc={r['rc']}")
        if r["rc"] or "iops" not in r:
            raise RuntimeError(f"precondition of {name} failed: {r.get('output_tail', '')[-800:]}")

    def wait_readable(self, tr: str, timeout: float = 60.0) -> float:
        t0 = time.monotonic()
        deadline = t0 + timeout
        last = ""
        while time.monotonic() < deadline:
            ok, _, out = perf_once(self.spdk, tr, self.mask)
            if ok:
                return time.monotonic() - t0
            last = out
            time.sleep(0.3)
        raise TimeoutError(f"no successful 4 KiB read through {tr} within {timeout:g}s: {last[-600:]}")

    def cluster(self, name: str) -> MeshCluster:
        addrs = [f"127.0.0.{11 + i}" for i in range(3)]
        port = free_port_pair(addrs, 24720 + 20 * len(self.clusters))
        cl = MeshCluster(self.work / name, port, self.procs, self.cmds, name)
        self.clusters.append(cl)
        log(f"meshblock up --nodes 3 --port {port} (MESHBLOCK_HOME={cl.home})")
        cl.up()
        cl.wait_nodes_up(3, 90)
        return cl

    def mesh_volume(self, cl: MeshCluster, name: str, replicas: int) -> tuple[str, dict]:
        """Create, publish, wait until readable; returns (transport id, connect info)."""
        cl.cli_json("volume", "create", name, "--size", "1GiB", "--replicas", str(replicas))
        cl.cli_json("volume", "publish", name, "--host-nqn", HOST_NQN)
        deadline = time.monotonic() + 60
        while True:
            info = json.loads(cl.cli("volume", "connect", name, "--host-nqn", HOST_NQN, "-o", "json", check=False,
                                     record=False) or "{}")
            if info.get("paths"):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"volume {name} has no path after 60s")
            time.sleep(0.3)
        cl.cmds.add(cl.section, f"MESHBLOCK_HOME={cl.home} .venv/bin/meshblock volume connect {name} "
                    f"--host-nqn {HOST_NQN} -o json")
        p = info["paths"][0]
        tr = trid(p["traddr"], p["trsvcid"], info["subnqn"], HOST_NQN)
        self.wait_readable(tr)
        return tr, info

    # --- baselines -------------------------------------------------------------------------------
    def data_target(self, section: str, name: str, idx: int, port: int, subnqn: str, hosts: list[str],
                    json_config: Path | None = None) -> Target:
        wd = self.work / section
        t = start_target(self.procs, self.spdk, name, wd, "0x1", True, self.cmds, section, json_config=json_config)
        pool = wd / f"{name}-pool.img"
        self.cmds.add(section, ["truncate", "-s", "8G", str(pool)])
        with open(pool, "wb") as f:
            f.truncate(8 * GiB)
        # the block size meshblock's pools get, so the plain export and meshblock's replicas match
        t.rpc("bdev_aio_create", str(pool), "pool0", str(AgentConfig(name="x", data_dir=wd).pool_block_size))
        t.rpc("bdev_lvol_create_lvstore", "pool0", "lvs", "-c", str(4 * MiB))
        t.rpc("bdev_lvol_create", "-l", "lvs", "-t", "lv", "1024")
        t.rpc("nvmf_create_transport", "-t", "TCP")
        t.rpc("nvmf_create_subsystem", subnqn, "-s", f"MBBENCH{idx:013d}")
        t.rpc("nvmf_subsystem_add_ns", subnqn, "lvs/lv")
        for h in hosts:
            t.rpc("nvmf_subsystem_add_host", subnqn, h)
        t.rpc("nvmf_subsystem_add_listener", subnqn, "-t", "tcp", "-a", BASE_ADDR.format(idx), "-s", str(port),
              "-f", "ipv4")
        return t

    def head_target(self, section: str, cpumask: str, port: int, legs_port: int,
                    json_config: Path | None = None) -> Target:
        t = start_target(self.procs, self.spdk, f"head-{cpumask}", self.work / section, cpumask, False, self.cmds,
                         section, json_config=json_config)
        for i in (1, 2, 3):
            # the same reconnect and fail-fast settings meshblock's heads use for their legs
            t.rpc("bdev_nvme_attach_controller", "-b", f"leg{i}", "-t", "tcp", "-a", BASE_ADDR.format(i), "-f", "ipv4",
                  "-s", str(legs_port), "-n", SUB_LEG.format(i), "-q", HEAD_NQN, "-l", "30", "-o", "1", "-u", "2")
        t.rpc("bdev_raid_create", "-n", "raid", "-r", "raid1", "-b", "leg1n1 leg2n1 leg3n1")
        t.rpc("nvmf_create_transport", "-t", "TCP")
        t.rpc("nvmf_create_subsystem", SUB_RAID, "-s", "MBBENCH0000000000099")
        t.rpc("nvmf_subsystem_add_ns", SUB_RAID, "raid")
        t.rpc("nvmf_subsystem_add_host", SUB_RAID, HOST_NQN)
        t.rpc("nvmf_subsystem_add_listener", SUB_RAID, "-t", "tcp", "-a", BASE_ADDR.format(1), "-s", str(port),
              "-f", "ipv4")
        return t

    # --- phase 1: A, A-nozc and M1, interleaved ---------------------------------------------------
    def phase1(self) -> MeshCluster:
        port = free_port_pair([BASE_ADDR.format(i) for i in (1, 2, 3)], 24620)
        self.base_port = port
        log(f"phase 1: baseline A on {BASE_ADDR.format(1)}:{port}, A-nozc on {BASE_ADDR.format(2)}:{port}")
        a = self.data_target("A", "data-target", 1, port, SUB_A, [HOST_NQN])
        zc = self.work / "sock-nozc.json"
        zc.write_text(json.dumps({"subsystems": [{"subsystem": "sock", "config": [
            {"method": "sock_impl_set_options", "params": {"impl_name": "posix",
                                                           "enable_zerocopy_send_server": False}}]}]}))
        self.cmds.add("A-nozc", f"cat {zc}: {zc.read_text()}")
        self.nozc_config = zc
        anz = self.data_target("A-nozc", "data-target", 2, port, SUB_A + "-nozc", [HOST_NQN], json_config=zc)
        a2 = self.data_target("A2", "data-target", 3, port, SUB_A + "-2", [HOST_NQN])
        host = {"process": "spdk_nvme_perf (host)", "cpumask": self.mask, "mode": "polling"}
        self.case("A", [{"process": "nvmf_tgt data target", "cpumask": "0x1", "mode": "interrupt",
                         "pid": a.started.pid}, host], trid(BASE_ADDR.format(1), port, SUB_A, HOST_NQN), "A")
        self.case("A2", [{"process": "nvmf_tgt data target (a second, identical A)", "cpumask": "0x1",
                          "mode": "interrupt", "pid": a2.started.pid}, host],
                  trid(BASE_ADDR.format(3), port, SUB_A + "-2", HOST_NQN), "A2")
        self.case("A-nozc", [{"process": "nvmf_tgt data target, zero-copy send off", "cpumask": "0x1",
                              "mode": "interrupt", "pid": anz.started.pid}, host],
                  trid(BASE_ADDR.format(2), port, SUB_A + "-nozc", HOST_NQN), "A-nozc")
        cl = self.cluster("C1")
        self.mesh = cl.settings()
        self.result["meshblock_settings"] = self.mesh
        self.twin_a = "A-nozc" if self.mesh.get("zero_copy_send") == "off" else "A"
        self.result["twin_a"] = self.twin_a
        log(f"meshblock runs: head {self.mesh['head_cpumask']}, data target zero-copy send "
            f"{self.mesh.get('zero_copy_send')} -> same-settings plain baseline {self.twin_a}")
        tr, info = self.mesh_volume(cl, "v1", 1)
        lay = [{"process": k, **v} for k, v in cl.layout().items()]
        self.case("M1", lay + [host], tr, "C1")
        self.cases["M1"]["connect_info"] = info
        watch_a = {"A/data-target": a.started.pid}
        watch_z = {"A-nozc/data-target": anz.started.pid}
        watch_2 = {"A2/data-target": a2.started.pid}
        self.precondition("A", watch_a)
        self.precondition("A2", watch_2)
        self.precondition("A-nozc", watch_z)
        self.precondition("M1", cl.pids())
        rounds = self.args.phase1_rounds or self.args.rounds
        for rnd in range(rounds):
            log(f"phase 1 round {rnd + 1}/{rounds}")
            for spec in self.specs:
                # alternate which of A and M1 runs first, so a drift in load favours neither
                order = [("A", watch_a), ("M1", None), ("A2", watch_2)] if rnd % 2 == 0 else \
                    [("M1", None), ("A", watch_a), ("A2", watch_2)]
                for name, w in order:
                    self.measure(name, spec, w if w is not None else cl.pids())
                self.measure("A-nozc", spec, watch_z)
        # node-to-node reference for the rebuild: sequential 128 KiB reads from the plain export
        for qd in (8, 32):
            for _ in range(self.args.rounds):
                self.measure("A", PerfSpec("read", qd, 128 * 1024, self.args.seconds, self.args.warmup), watch_a)
                self.measure("A-nozc", PerfSpec("read", qd, 128 * 1024, self.args.seconds, self.args.warmup),
                             watch_z)
        for t in (a, anz, a2):
            self.procs.stop(t.started)
        return cl

    # --- phase 2: B, B-last, M3 ------------------------------------------------------------------
    def hand_built(self, section: str, heads: list[tuple[str, str]], json_config: Path | None) -> None:
        """Three interrupt-mode data targets and, one after the other, a polling head per (case, core mask)."""
        port = self.base_port
        legs = [self.data_target(section, f"data-target-{i}", i, port, SUB_LEG.format(i), [HEAD_NQN],
                                 json_config=json_config) for i in (1, 2, 3)]
        host = {"process": "spdk_nvme_perf (host)", "cpumask": self.mask, "mode": "polling"}
        watch = {f"{section}/data-target-{i}": t.started.pid for i, t in zip((1, 2, 3), legs)}
        first = True
        for name, mask in heads:
            head = self.head_target(section, mask, port + 1, port, json_config)
            extra = ", zero-copy send off" if json_config else ""
            lay = [{"process": f"nvmf_tgt data target {i}{extra}", "cpumask": "0x1", "mode": "interrupt",
                    "pid": t.started.pid} for i, t in zip((1, 2, 3), legs)]
            lay.append({"process": f"nvmf_tgt head (raid1 over 3 NVMe/TCP legs){extra}", "cpumask": mask,
                        "mode": "polling", "pid": head.started.pid})
            c = self.case(name, lay + [host], trid(BASE_ADDR.format(1), port + 1, SUB_RAID, HOST_NQN), section)
            w = dict(watch, **{f"{section}/head": head.started.pid})
            self.wait_readable(c["trid"])
            if first:
                self.precondition(name, w)
                first = False
            else:
                c["precondition"] = {"note": f"same lvols as {heads[0][0]}, written once through its head"}
            for _ in range(self.args.rounds):
                for spec in self.specs:
                    self.measure(name, spec, w)
            self.procs.stop(head.started)
        if not self.args.skip_hand_rebuild:
            try:
                self.result.setdefault("rebuild_hand_built", {})[section] = self.hand_built_rebuild(section,
                                                                                                    json_config, watch)
            except Exception as e:  # noqa: BLE001 - report and go on
                self.result["errors"].append(f"hand-built rebuild {section}: {e!r}")
                log(f"hand-built rebuild {section} failed:", e)
        for t in legs:
            self.procs.stop(t.started)

    def hand_built_rebuild(self, section: str, json_config: Path | None, watch: dict[str, int]) -> dict:
        """Rebuild of one leg of the hand-built raid1 (1 GiB, written), no host running: leg 3 removed from the
        raid and added back (bdev_raid_add_base_bdev), once per raid process window size in
        --hand-rebuild-windows (SPDK's default is 1024 KiB), with the head on the core meshblock's heads use
        and (--hand-rebuild-last-core) on the last core, away from the data targets."""
        runs = {}
        masks = [self.mesh.get("head_cpumask") or "0x1"]
        if self.args.hand_rebuild_last_core and self.mask not in masks:
            masks.append(self.mask)
        for mask in masks:
            runs.update(self._hand_rebuild_head(section, mask, json_config, watch))
        return runs

    def _hand_rebuild_head(self, section: str, mask: str, json_config: Path | None, watch: dict[str, int]) -> dict:
        port = self.base_port
        head = self.head_target(section, mask, port + 1, port, json_config)
        runs = {}
        try:
            for window in self.args.hand_rebuild_windows:
                log(f"  {section} rebuild of one leg (head {mask}, process window {window} KiB)")
                head.rpc("bdev_raid_set_options", "-w", str(window))
                head.rpc("bdev_raid_remove_base_bdev", "leg3n1")
                win = CpuWindow(dict(watch, **{f"{section}/head": head.started.pid}))
                wall0 = time.time()
                t0 = time.monotonic()
                head.rpc("bdev_raid_add_base_bdev", "raid", "leg3n1")
                done = None
                deadline = t0 + self.args.rebuild_timeout
                while time.monotonic() < deadline:
                    raids = json.loads(head.rpc("bdev_raid_get_bdevs", "all", record=False) or "[]")
                    r = next((x for x in raids if x.get("name") == "raid"), {})
                    if r.get("state") == "online" and not r.get("process") and r.get("num_base_bdevs_discovered") == 3:
                        done = time.monotonic()
                        break
                    time.sleep(0.1)
                cpu = win.close()
                if done is None:
                    raise TimeoutError(f"rebuild not finished within {self.args.rebuild_timeout:g}s")
                out = {"head_cpumask": mask, "zero_copy_send": json_config is None, "process_window_kib": window,
                       "add_to_done_s": round(done - t0, 2), "cpu": cpu}
                spdk = spdk_rebuild_times(Path(str(head.sock)[:-5] + ".log"), wall0)
                if spdk:
                    out["spdk_log"] = spdk
                    out["spdk_rebuild_mib_s"] = round(GiB / MiB / max(spdk["seconds"], 1e-3), 1)
                log(f"  {section} rebuild: {out.get('spdk_log')} -> {out.get('spdk_rebuild_mib_s')} MiB/s")
                runs[f"{mask}/{window}"] = out
        finally:
            self.procs.stop(head.started)
        return runs

    def phase2(self, cl: MeshCluster) -> None:
        log("phase 2: hand-built 3-replica composition")
        head = self.mesh.get("head_cpumask") or "0x1"
        zc_off = self.mesh.get("zero_copy_send") == "off"
        on_host = bool(int(head, 16) & int(self.mask, 16))
        # the hand-built twin of meshblock's 3-replica layout: same head core, same socket setting
        self.twin_b = ("B-last" if on_host else "B") if not zc_off else ("B-last-nozc" if on_host else "B-nozc")
        self.result["twin_b"] = self.twin_b
        heads_on = [("B", "0x1"), ("B-last", self.mask)]
        heads_off = [("B-nozc", "0x1")] + ([("B-last-nozc", self.mask)] if on_host else [])
        self.hand_built("B", heads_on, None)
        if zc_off or not self.args.skip_nozc:
            self.hand_built("B-nozc", heads_off, self.nozc_config)
        host = {"process": "spdk_nvme_perf (host)", "cpumask": self.mask, "mode": "polling"}
        log("phase 2: meshblock 3-replica volume")
        tr, info = self.mesh_volume(cl, "v3", 3)
        lay = [{"process": k, **v} for k, v in cl.layout().items()]
        self.case("M3", lay + [host], tr, "C1")
        self.cases["M3"]["connect_info"] = info
        self.precondition("M3", cl.pids())
        for rnd in range(self.args.rounds):
            for spec in self.specs:
                self.measure("M3", spec, cl.pids())

    # --- rebuild -------------------------------------------------------------------------------
    def rebuild(self, cl: MeshCluster, vol: str = "v3") -> dict:
        log("rebuild: one replica's node down, more data, node back")
        v = cl.volume(vol)
        head = v.head_node_id
        victim_id = min((r.node_id for r in v.replica_status if r.node_id != head), key=cl.name_of)
        victim = cl.name_of(victim_id)
        rid = next(r.replica_id for r in v.replica_status if r.node_id == victim_id)
        head_name = cl.name_of(head)
        out: dict = {"volume": vol, "size_bytes": v.size_bytes, "victim_node": victim, "head_node": head_name,
                     "written_before": "1 GiB sequential (128 KiB, QD16) + the random-write runs of M3"}
        cl.pids()
        t_kill = time.monotonic()
        out["killed"] = cl.kill_node(victim, ("spdk", "spdk-head"))
        self.cmds.add("rebuild", f"kill -9 {' '.join(str(p) for p in out['killed'].values())}",
                      f"{victim}: agent + targets")

        def offline():
            st = {r.replica_id: r.state for r in cl.volume(vol).replica_status}
            return st.get(rid) not in (None, "online")
        cl.wait(f"replica {rid} offline", offline, 60)
        out["replica_offline_after_s"] = round(time.monotonic() - t_kill, 2)
        info = cl.connect_info(vol, HOST_NQN)
        p = info.paths[0]
        tr = trid(p.traddr, p.trsvcid, info.subnqn, HOST_NQN)
        r = run_perf(self.spdk, PerfSpec("randwrite", 32, 4096, 3), tr, self.mask, self.cmds, "rebuild", cl.pids())
        out["degraded_write"] = {k: r.get(k) for k in ("cmd", "rc", "iops", "mib_s", "lat_avg_us")}
        log(f"  degraded write: {r.get('iops')} IOPS rc={r['rc']}")
        samples: list[tuple[float, str, float, str]] = []
        win = None
        t_restart = time.monotonic()
        wall_restart = time.time()
        cl.restart_agent(victim)
        t_up = t_rb = t_online = None
        deadline = t_restart + self.args.rebuild_timeout
        while time.monotonic() < deadline:
            now = time.monotonic()
            try:
                if t_up is None and cl.node_state(victim_id) == "up":
                    t_up = now
                    win = CpuWindow(cl.pids())
                vv = cl.volume(vol)
                rs = next((x for x in vv.replica_status if x.replica_id == rid), None)
                if rs is not None:
                    samples.append((round(now - t_restart, 2), rs.state, round(rs.rebuild_progress, 4), vv.state))
                    if rs.state == "rebuilding" and t_rb is None:
                        t_rb = now
                    if rs.state == "online" and t_up is not None:
                        t_online = now
                        break
            except grpc.RpcError:
                pass
            time.sleep(0.1)
        if t_online is None:
            raise TimeoutError(f"replica {rid} not online within {self.args.rebuild_timeout:g}s of the restart")
        out["cpu_during_rebuild"] = win.close() if win else None
        size = v.size_bytes
        out["node_up_after_restart_s"] = round(t_up - t_restart, 2)
        out["rebuilding_seen_after_restart_s"] = round(t_rb - t_restart, 2) if t_rb else None
        out["online_after_restart_s"] = round(t_online - t_restart, 2)
        out["rebuild_time_s"] = round(t_online - t_up, 2)       # node back (up) -> replica online
        out["rebuild_mib_s"] = round(size / MiB / max(t_online - t_up, 1e-3), 1)
        out["time_to_redundancy_from_failure_s"] = round(t_online - t_kill, 2)
        out["time_to_redundancy_from_restart_s"] = round(t_online - t_restart, 2)
        spdk = spdk_rebuild_times(cl.node_dir(head_name) / "spdk-head.log", wall_restart)
        if spdk:
            out["spdk_log"] = spdk
            out["spdk_rebuild_mib_s"] = round(size / MiB / max(spdk["seconds"], 1e-3), 1)
        out["state_samples"] = compress_samples(samples)
        log(f"  rebuild: node up {out['node_up_after_restart_s']}s after restart, online after "
            f"{out['online_after_restart_s']}s; {out['rebuild_mib_s']} MiB/s (node up -> online); spdk {spdk}")
        return out

    # --- failover ------------------------------------------------------------------------------
    def failover(self, cl: MeshCluster, vol: str, rep: int, section: str) -> dict:
        cl.wait_redundant(vol, self.args.rebuild_timeout)
        info = cl.connect_info(vol, HOST_NQN)
        old = info.paths[0]
        old_node = old.node_id
        name = cl.name_of(old_node)
        old_tr = trid(old.traddr, old.trsvcid, info.subnqn, HOST_NQN)
        ok, ref_s, _ = perf_once(self.spdk, old_tr, self.mask)
        out: dict = {"rep": rep, "head_node": name, "old_path": f"{old.traddr}:{old.trsvcid}",
                     "single_read_on_healthy_volume_s": round(ref_s, 3), "healthy_read_ok": ok}
        cl.pids()
        t0 = time.monotonic()
        out["killed"] = cl.kill_node(name, ("spdk-head",))
        self.cmds.add(section, f"kill -9 {' '.join(str(p) for p in out['killed'].values())}",
                      f"{name}: agent + head target")
        t_down = t_info = t_ok = t_node_id = None
        new = None
        old_addr = (old.traddr, old.trsvcid)
        deadline = t0 + 120

        def moved():
            """The connect info's path, once it names another node AND another address."""
            nonlocal t_node_id
            ci = cl.connect_info(vol, HOST_NQN)
            if ci.paths and ci.paths[0].node_id and ci.paths[0].node_id != old_node:
                p = ci.paths[0]
                if t_node_id is None:
                    t_node_id = time.monotonic()
                    out["first_path_naming_new_node"] = f"{p.traddr}:{p.trsvcid}"
                if (p.traddr, p.trsvcid) != old_addr:
                    return p, ci.subnqn
            return None

        while time.monotonic() < deadline and t_info is None:
            now = time.monotonic()
            with contextlib.suppress(grpc.RpcError):
                if t_down is None and cl.node_state(old_node) == "down":
                    t_down = now
            with contextlib.suppress(grpc.RpcError):
                got = moved()
                if got:
                    t_info = now
                    new, subnqn = got
            time.sleep(0.05)
        attempts = []
        if new is not None:
            tr = trid(new.traddr, new.trsvcid, subnqn, HOST_NQN)
            self.cmds.add(section, shlex.join([str(self.spdk.program("spdk_nvme_perf")), "--no-huge", "-s", "1024",
                                               "-c", self.mask, "-q", "1", "-o", "4096", "-w", "randread", "-t", "1",
                                               "-d", "1", "-r", tr]), "single 4 KiB read, repeated until it succeeds")
            while time.monotonic() < deadline:
                ok, dur, tail = perf_once(self.spdk, tr, self.mask)
                attempts.append({"ok": ok, "s": round(dur, 3), "path": f"{new.traddr}:{new.trsvcid}",
                                 **({} if ok else {"tail": tail[-300:]})})
                if ok:
                    t_ok = time.monotonic()
                    break
                time.sleep(0.1)
                with contextlib.suppress(grpc.RpcError):   # follow the connect info if it changed again
                    got = moved()
                    if got:
                        new, subnqn = got
                        tr = trid(new.traddr, new.trsvcid, subnqn, HOST_NQN)
        if t_down is None:
            with contextlib.suppress(grpc.RpcError):
                if cl.node_state(old_node) == "down":
                    t_down = time.monotonic()
        out.update({"new_head_node": cl.name_of(new.node_id) if new else None,
                    "new_path": f"{new.traddr}:{new.trsvcid}" if new else None,
                    "node_down_after_s": round(t_down - t0, 2) if t_down else None,
                    "connect_info_moved_after_s": round(t_info - t0, 2) if t_info else None,
                    "read_ok_after_s": round(t_ok - t0, 2) if t_ok else None,
                    "read_attempts": attempts})
        if t_node_id is not None:
            out["connect_info_named_new_node_after_s"] = round(t_node_id - t0, 2)
        if t_info and t_down:
            out["detection_s"] = round(t_down - t0, 2)
            out["down_to_connect_info_s"] = round(t_info - t_down, 2)
        if t_ok and t_info:
            out["connect_info_to_read_ok_s"] = round(t_ok - t_info, 2)
        if t_ok is None:
            self.result["errors"].append(f"{section} #{rep}: no successful read through the new head within "
                                         f"{deadline - t0:.0f}s of the kill")
        log(f"  failover {section} #{rep}: head {name} -> {out['new_head_node']}: down {out['node_down_after_s']}s, "
            f"connect info {out['connect_info_moved_after_s']}s, read ok {out['read_ok_after_s']}s")
        # bring the node back and wait for full redundancy before the next repetition
        t_r = time.monotonic()
        cl.restart_agent(name)
        with contextlib.suppress(TimeoutError):
            cl.wait(f"{name} up", lambda: cl.node_state(old_node) == "up", 90)
            out["node_up_after_restart_s"] = round(time.monotonic() - t_r, 2)
        try:
            t_red = cl.wait_redundant(vol, self.args.rebuild_timeout)
            out["redundant_after_restart_s"] = round(t_red - t_r, 2)
            out["time_to_redundancy_from_failure_s"] = round(t_red - t0, 2)
        except TimeoutError as e:
            out["redundancy_error"] = str(e)
        return out

    # --- second cluster: head on core 0, short node timeout ---------------------------------------
    def cluster_core0(self) -> MeshCluster:
        cl = self.cluster("C2")
        for n in cl.node_names():
            cl.stop_agent(n)
            cl.set_agent_config(n, head_cpumask="0x1")
            cl.restart_agent(n)
        cl.wait_nodes_up(3, 120)
        tr, info = self.mesh_volume(cl, "v3", 3)
        host = {"process": "spdk_nvme_perf (host)", "cpumask": self.mask, "mode": "polling"}
        self.case("M3-core0", [{"process": k, **v} for k, v in cl.layout().items()] + [host], tr, "C2")
        self.cases["M3-core0"]["connect_info"] = info
        self.precondition("M3-core0", cl.pids())
        for rnd in range(self.args.rounds):
            for spec in self.specs:
                self.measure("M3-core0", spec, cl.pids())
        return cl

    # --- run -----------------------------------------------------------------------------------
    def run(self) -> dict:
        res = self.result
        res["started"] = datetime.datetime.now().isoformat(timespec="seconds")
        res["machine_before"] = machine_snapshot()
        t0 = time.monotonic()
        c1 = self.phase1()
        self.phase2(c1)
        res["layout_meshblock_up"] = c1.layout()
        try:
            res["rebuild"] = self.rebuild(c1)
        except Exception as e:  # noqa: BLE001 - report and go on with the failovers
            res["errors"].append(f"rebuild: {e!r}")
            log("rebuild failed:", e)
        res["failover_default_timeout"] = []
        for i in range(1, self.args.failovers + 1):
            try:
                res["failover_default_timeout"].append(self.failover(c1, "v3", i, f"failover-{DEFAULT_NODE_TIMEOUT:g}s"))
            except Exception as e:  # noqa: BLE001
                res["errors"].append(f"failover #{i}: {e!r}")
                log(f"failover #{i} failed:", e)
        if self.args.failovers and self.args.short_node_timeout:
            c1.restart_controller(self.args.short_node_timeout)
            res["failover_short_timeout"] = []
            tag = f"failover-{self.args.short_node_timeout:g}s"
            for i in range(1, self.args.failovers + 1):
                try:
                    res["failover_short_timeout"].append(self.failover(c1, "v3", i, tag))
                except Exception as e:  # noqa: BLE001
                    res["errors"].append(f"short-timeout failover #{i}: {e!r}")
                    log(f"short-timeout failover #{i} failed:", e)
        res["cluster_C1"] = {"home": str(c1.home), "up_s": round(c1.up_seconds, 2), **c1.down()}
        head = self.mesh.get("head_cpumask") or "0x1"
        if int(head, 16) & int(self.mask, 16) and not self.args.skip_core0:
            c2 = self.cluster_core0()
            res["layout_head_core0"] = c2.layout()
            res["cluster_C2"] = {"home": str(c2.home), "up_s": round(c2.up_seconds, 2), **c2.down()}
        res["duration_s"] = round(time.monotonic() - t0, 1)
        res["machine_after"] = machine_snapshot()
        return res

    def cleanup(self) -> dict:
        out = {}
        for cl in self.clusters:
            with contextlib.suppress(Exception):
                out[cl.section] = cl.down()
        left = self.procs.stop_all()
        out["left_after_cleanup"] = left
        return out


# --- analysis ---------------------------------------------------------------------------------

def spdk_rebuild_times(log_file: Path, after_wall: float) -> dict | None:
    """Started/Finished rebuild lines of the head target's log (SPDK timestamps, wall clock)."""
    pat = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\].*(Started|Finished) rebuild on raid bdev (\S+)")
    start = end = None
    try:
        lines = log_file.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        m = pat.match(line)
        if not m:
            continue
        ts = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        if ts < after_wall:
            continue
        if m.group(2) == "Started" and start is None:
            start = ts
        elif m.group(2) == "Finished" and start is not None:
            end = ts
            break
    if start is None or end is None:
        return None
    return {"started_after_restart_s": round(start - after_wall, 2), "seconds": round(end - start, 2)}


def compress_samples(samples: list) -> list:
    """Keep state changes and at most ~40 progress points."""
    out, last = [], None
    step = max(1, len(samples) // 40)
    for i, s in enumerate(samples):
        if last is None or s[1] != last[1] or s[3] != last[3] or i % step == 0 or i == len(samples) - 1:
            out.append(list(s))
        last = s
    return out


def machine_snapshot() -> dict:
    top = []
    try:
        r = subprocess.run(["ps", "-eo", "pid,pcpu,etime,comm", "--sort=-pcpu"], capture_output=True, text=True,
                           timeout=10, check=False)
        top = [ln.strip() for ln in r.stdout.splitlines()[1:7]]
    except (OSError, subprocess.TimeoutExpired):
        pass
    up = subprocess.run(["uptime"], capture_output=True, text=True, timeout=10, check=False).stdout.strip()
    return {"uptime": up, "loadavg": [round(x, 2) for x in os.getloadavg()], "ps_top_cpu_lifetime_avg": top}


def median(vals: list[float]) -> float | None:
    vals = [v for v in vals if v is not None and not math.isnan(v)]
    return round(statistics.median(vals), 1) if vals else None


def summarize(cases: dict) -> dict:
    out = {}
    for name, c in cases.items():
        s = {}
        for key, all_runs in c["runs"].items():
            runs = [r for r in all_runs if not r.get("disturbed")] or all_runs
            s[key] = {"iops": median([r.get("iops") for r in runs]), "mib_s": median([r.get("mib_s") for r in runs]),
                      "lat_avg_us": median([r.get("lat_avg_us") for r in runs]),
                      "lat_p99_us": median([r.get("lat_p99_us") for r in runs]), "n": len(runs),
                      "disturbed_left_out": len(all_runs) - len(runs),
                      "only_disturbed_runs": all(r.get("disturbed") for r in all_runs),
                      "other_load_max": max((r["cpu"]["other_processes_cpu_percent"] for r in runs), default=None),
                      "failed": sum(1 for r in runs if r.get("rc") or r.get("iops") is None)}
        out[name] = s
    return out


K_RR32, K_RW32, K_RR1, K_RW1 = "randread_4k_qd32", "randwrite_4k_qd32", "randread_4k_qd1", "randwrite_4k_qd1"
KEYS = (K_RR32, K_RW32, K_RR1, K_RW1)


def ratio(summary: dict, a: str, b: str, key: str) -> float | None:
    x = summary.get(a, {}).get(key, {}).get("iops")
    y = summary.get(b, {}).get(key, {}).get("iops")
    if not x or not y:
        return None
    return round(x / y, 3)


def ratios(summary: dict, twin_a: str = "A", twin_b: str = "B") -> dict:
    """IOPS ratios. Goals apply to meshblock against plain SPDK with SPDK's defaults (A, B as the brief
    defines them) and against the hand-built/plain twins that run with meshblock's own settings."""
    out = {}

    def add(num: str, den: str, goal_of, basis: str) -> None:
        for k in KEYS:
            r = ratio(summary, num, den, k)
            if r is None:
                continue
            goal = goal_of(k) if goal_of else None
            out[f"{num}/{den} {k}"] = {"ratio": r, "goal": goal, "met": (r >= goal) if goal else None,
                                       "basis": basis}

    def m3_goal(k: str) -> float:
        return GOALS["m3_read_vs_a"] if "read" in k else GOALS["m3_write_vs_a"]

    add("M1", "A", lambda k: GOALS["m1_vs_a"], "goal: 1 replica vs plain SPDK (SPDK defaults)")
    if twin_a != "A":
        add("M1", twin_a, lambda k: GOALS["m1_vs_a"], "goal: 1 replica vs plain SPDK with meshblock's settings")
    add("A2", "A", None, "noise floor: two identical plain targets")
    add("M3", twin_b, lambda k: GOALS["meshblock_vs_hand_built"],
        "goal: meshblock 3 replicas vs the hand-built composition with the same layout and settings")
    for other in ("B", "B-last", "B-nozc", "B-last-nozc"):
        if other != twin_b:
            add("M3", other, None, "meshblock 3 replicas vs another hand-built layout")
    add("M3-core0", "B", lambda k: GOALS["meshblock_vs_hand_built"], "meshblock with head_cpumask 0x1 vs B")
    add("M3", "A", m3_goal, "goal: 3 replicas vs plain SPDK (SPDK defaults)")
    if twin_a != "A":
        add("M3", twin_a, m3_goal, "goal: 3 replicas vs plain SPDK with meshblock's settings")
    add("M3-core0", "A", m3_goal, "meshblock with head_cpumask 0x1 vs A")
    for num, den, basis in (("B", "A", "hand-built 3 replicas vs plain (SPDK defaults)"),
                            ("B-nozc", "A-nozc", "hand-built 3 replicas vs plain, zero-copy send off"),
                            ("B-last", "B", "head on the host's core vs head on core 0"),
                            ("A-nozc", "A", "zero-copy send off vs on, plain"),
                            ("B-nozc", "B", "zero-copy send off vs on, hand-built 3 replicas")):
        add(num, den, None, basis)
    return out


def core_sharing(cases: dict, host_cpu: str) -> dict:
    """Per case: busy threads (>= 50 % of a core) during the QD32 random-read run, and whether a
    polling SPDK target shares the host's core."""
    out = {}
    for name, c in cases.items():
        runs = c["runs"].get(K_RR32) or []
        if not runs:
            continue
        cpu = runs[-1]["cpu"]
        busy = []
        shared = []
        for label, p in cpu["processes"].items():
            for th in p.get("busy_threads", []):
                if th["cpu_percent"] >= 20:
                    busy.append({"process": label, **th})
                    if label != "host/spdk_nvme_perf" and th["allowed_cpus"] == host_cpu and th["cpu_percent"] >= 30:
                        shared.append(f"{label} {th['thread']} ({th['cpu_percent']} % on cpu {host_cpu})")
            if label == "host/spdk_nvme_perf" and "busy_threads" not in p:
                busy.append({"process": label, "cpu_percent": p["cpu_percent"], "allowed_cpus": host_cpu})
        out[name] = {"busy": busy, "shares_host_core": shared, "busy_percent_per_cpu": cpu["busy_percent_per_cpu"],
                     "other_processes_cpu_percent": cpu["other_processes_cpu_percent"],
                     "other_processes": cpu["other_processes"][:3]}
    return out


# --- report ----------------------------------------------------------------------------------

def fmt(v, unit: str = "", nd: int = 0) -> str:
    if v is None:
        return "–"
    if isinstance(v, float) and nd == 0:
        return f"{v:,.0f}{unit}"
    return f"{v:,.{nd}f}{unit}"


def goal_rows(res: dict) -> list[tuple[str, str, str, str]]:
    """(goal, measured, verdict, basis) for the summary at the top of the report."""
    s, rat = res["summary"], res["ratios"]
    ta, tb = res.get("twin_a", "A"), res.get("twin_b", "B")
    rows = []

    def ratio_row(label: str, key: str, goal: float, basis: str) -> None:
        v = rat.get(key)
        if v is None:
            return
        noise = rat.get("A2/A " + key.split(" ", 1)[1])
        if noise is not None:
            basis += f"; noise floor A2/A = {noise['ratio']:.2f}"
        rows.append((label, f"{v['ratio']:.2f}", "met" if v["ratio"] >= goal else "**missed**", basis))

    for den in dict.fromkeys(["A", ta]):
        for k, lbl in ((K_RR32, "read QD32"), (K_RW32, "write QD32"), (K_RR1, "read QD1"), (K_RW1, "write QD1")):
            ratio_row(f"1 replica ≥ {GOALS['m1_vs_a']:.0%} of {den} ({lbl})", f"M1/{den} {k}", GOALS["m1_vs_a"],
                      "SPDK defaults" if den == "A" else "same settings as meshblock")
    for k, lbl in ((K_RR32, "read QD32"), (K_RW32, "write QD32"), (K_RR1, "read QD1"), (K_RW1, "write QD1")):
        ratio_row(f"3 replicas ≈ hand-built {tb} ({lbl})", f"M3/{tb} {k}", GOALS["meshblock_vs_hand_built"],
                  "same layout and settings")
    for den in dict.fromkeys(["A", ta]):
        for k, lbl, g in ((K_RR32, "reads QD32", GOALS["m3_read_vs_a"]), (K_RW32, "writes QD32",
                                                                           GOALS["m3_write_vs_a"])):
            ratio_row(f"3 replicas {lbl} ≥ {g:.0%} of {den}", f"M3/{den} {k}", g,
                      "SPDK defaults" if den == "A" else "same settings as meshblock")
    default_tmo = res.get("default_node_timeout", 5.0)      # results from before it was recorded: 5 s
    for key, label in (("failover_default_timeout", f"default --node-timeout {default_tmo:g} s"),
                       ("failover_short_timeout", f"--node-timeout {res['args'].get('short_node_timeout')} s")):
        fs = [f.get("read_ok_after_s") for f in res.get(key, [])]
        if fs:
            ok = all(x is not None and x <= GOALS["failover_s"] for x in fs)
            rows.append((f"failover ≤ {GOALS['failover_s']:g} s ({label})",
                         ", ".join(fmt(x, " s", 2) for x in fs), "met" if ok else "**missed**",
                         "kill -9 → connect info moved and a fresh read succeeds"))
    rb = res.get("rebuild")
    ref = s.get(ta, {}).get("read_128k_qd32", {}).get("mib_s")
    if rb and ref:
        r = rb["rebuild_mib_s"] / ref
        rows.append((f"rebuild ≥ {GOALS['rebuild_vs_link']:.0%} of node-to-node throughput",
                     f"{rb['rebuild_mib_s']:.0f} / {ref:.0f} MiB/s = {r:.2f}",
                     "met" if r >= GOALS["rebuild_vs_link"] else "**missed**",
                     f"node up → replica online; reference: {ta} 128 KiB sequential reads QD32"))
    return rows


def runs_note(x: dict) -> str:
    if not x:
        return "–"
    return f"{x.get('n')}" + (f"({x['disturbed_left_out']})" if x.get("disturbed_left_out") else "") + \
        ("!" if x.get("only_disturbed_runs") else "")


def cpu_line(cpu: dict) -> str:
    per = cpu.get("busy_percent_per_cpu", {})
    return " / ".join(f"{v:.0f}" for k, v in per.items() if k != "cpu")


def write_markdown(path: Path, res: dict) -> None:
    s = res["summary"]
    L = []
    a = res["args"]
    ta, tb = res.get("twin_a", "A"), res.get("twin_b", "B")
    ms = res.get("meshblock_settings", {})
    L.append("# Data path: meshblock against hand-built SPDK\n")
    L.append(f"Measured {res['started']} in one run of `bench/data_path.py` ({res['duration_s'] or 0:.0f} s), all "
             f"cases on the same machine with the same host. Figures, per-run CPU use and every command: "
             f"[`data-path.json`](data-path.json); plot: [`data-path.png`](data-path.png).\n")
    L.append("```sh\n" + res["command_line"] + "\n```\n")
    L.append(f"Host: `spdk_nvme_perf --no-huge -s 1024 -c {res['host_cpumask']}` over NVMe/TCP on loopback; "
             f"4 KiB random read / random write, QD32 (IOPS) and QD1 (latency), {a['seconds']} s each after "
             f"{a['warmup']} s warm-up; {a.get('phase1_rounds') or a['rounds']} rounds for A, A2, A-nozc and M1 "
             f"(interleaved, the same pattern back to back, order of A and M1 alternating), {a['rounds']} for the "
             f"others; medians shown. 1 GiB volumes written end to end once (128 KiB sequential, QD16) before "
             f"measuring.\n")
    L.append(f"meshblock as measured (`meshblock up`): data targets `{ms.get('data_cpumask')}` {ms.get('data_mode')}"
             f" mode, zero-copy send **{ms.get('zero_copy_send')}**; heads `{ms.get('head_cpumask')}` polling. "
             f"Baselines with the same settings: **{ta}** (plain) and **{tb}** (hand-built 3 replicas); A and B are "
             f"plain SPDK with SPDK's defaults as the goals define them.\n")
    m = res["machine_before"]
    L.append(f"Machine: {res['machine']['cores']} cores, {res['machine']['kernel']}, SPDK {res.get('spdk_version')}. "
             f"Load before: `{m['uptime']}`; after: `{res['machine_after']['uptime']}`. CPU used by processes "
             f"outside the bench during each run is in the 'other load' column and per run in the JSON "
             f"(`cpu.other_processes`).\n")
    L.append("## Goals\n")
    L.append("| goal | measured | verdict | basis |")
    L.append("|---|---|---|---|")
    for g, v, verdict, basis in goal_rows(res):
        L.append(f"| {g} | {v} | {verdict} | {basis} |")
    L.append("")
    L.append("## Layout per case\n")
    L.append("| case | what | processes (core mask, mode) |")
    L.append("|---|---|---|")
    for name, c in res["cases"].items():
        procs = "; ".join(f"{p['process']} `{p.get('cpumask')}` {p.get('mode', '')}"
                          + (f" zero-copy {p['zero_copy_send']}" if p.get("zero_copy_send") else "")
                          for p in c["layout"])
        L.append(f"| {name} | {c['title']} | {procs} |")
    L.append("")
    L.append("## Figures\n")
    L.append(f"Runs during which processes outside the bench used ≥ {a['max_other']:g} % of a core were repeated "
             f"(up to {a['retries']} times, after waiting for quiet) and left out of the medians when undisturbed "
             f"runs exist; 'other load' is the largest such use among the runs kept, 'runs' counts kept (left out).\n")
    L.append("| case | rand read QD32 IOPS | rand write QD32 IOPS | rand read QD1 avg / p99 µs | "
             "rand write QD1 avg / p99 µs | other load (% of a core) | runs |")
    L.append("|---|---:|---:|---:|---:|---:|---|")
    for name in res["cases"]:
        x = s.get(name, {})
        other = max((x.get(k, {}).get("other_load_max") or 0 for k in KEYS), default=None)
        L.append(f"| {name} | {fmt(x.get(K_RR32, {}).get('iops'))} | {fmt(x.get(K_RW32, {}).get('iops'))} | "
                 f"{fmt(x.get(K_RR1, {}).get('lat_avg_us'))} / {fmt(x.get(K_RR1, {}).get('lat_p99_us'))} | "
                 f"{fmt(x.get(K_RW1, {}).get('lat_avg_us'))} / {fmt(x.get(K_RW1, {}).get('lat_p99_us'))} | "
                 f"{fmt(other)} | {' '.join(runs_note(x.get(k, {})) for k in KEYS)} |")
    L.append("")
    for base in dict.fromkeys(["A", ta]):
        ref = s.get(base, {})
        L.append(f"Sequential 128 KiB reads from {base} (node-to-node NVMe/TCP reference): "
                 f"QD8 {fmt(ref.get('read_128k_qd8', {}).get('mib_s'))} MiB/s, "
                 f"QD32 {fmt(ref.get('read_128k_qd32', {}).get('mib_s'))} MiB/s.\n")
    L.append("## Ratios\n")
    L.append("| ratio (IOPS; at QD1 IOPS = 1/latency) | value | goal | met | basis |")
    L.append("|---|---:|---:|---|---|")
    for k, v in res["ratios"].items():
        g = v["goal"]
        L.append(f"| {k} | {v['ratio']:.2f} | {f'≥ {g:.2f}' if g else '–'} | "
                 f"{'' if v['met'] is None else ('yes' if v['met'] else '**no**')} | {v.get('basis', '')} |")
    L.append("")
    L.append("## Failover\n")
    L.append("The head node's agent and head target killed with SIGKILL; timed until the controller's connect info "
             "names another node with that node's address and a fresh `spdk_nvme_perf` 4 KiB read through it "
             "succeeds. The read includes perf's own start-up ('healthy read': the same command on a healthy "
             "volume). 'named new node' is when GetConnectInfo first carried the new node's id, 'moved' when its "
             "address followed.\n")
    L.append("| run | node timeout | head moved | node down | named new node | connect info moved | read ok | "
             "healthy read | 3 in-sync replicas again, after the agent restart |")
    L.append("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for key, tmo in (("failover_default_timeout", res.get("default_node_timeout", 5.0)),
                     ("failover_short_timeout", a.get("short_node_timeout"))):
        for f in res.get(key, []):
            L.append(f"| {f['rep']} | {tmo:g} s | {f['head_node']} → {f.get('new_head_node')} | "
                     f"{fmt(f.get('node_down_after_s'), ' s', 2)} | "
                     f"{fmt(f.get('connect_info_named_new_node_after_s'), ' s', 2)} | "
                     f"{fmt(f.get('connect_info_moved_after_s'), ' s', 2)} | "
                     f"**{fmt(f.get('read_ok_after_s'), ' s', 2)}** | "
                     f"{fmt(f.get('single_read_on_healthy_volume_s'), ' s', 2)} | "
                     f"{fmt(f.get('redundant_after_restart_s'), ' s', 1)} |")
    L.append("")
    rb = res.get("rebuild")
    if rb:
        L.append("## Rebuild\n")
        L.append(f"Volume {rb['volume']} (1 GiB, written: {rb['written_before']}); {rb['victim_node']} killed "
                 f"(agent + targets), replica offline after {rb['replica_offline_after_s']} s, degraded 4 KiB "
                 f"random writes QD32 for 3 s: {fmt(rb['degraded_write'].get('iops'))} IOPS; agent restarted from "
                 f"its agent.json.\n")
        L.append("| measure | value |")
        L.append("|---|---:|")
        L.append(f"| node up after restart | {rb['node_up_after_restart_s']} s |")
        L.append(f"| replica seen rebuilding after restart | {rb.get('rebuilding_seen_after_restart_s')} s |")
        L.append(f"| replica online after restart | {rb['online_after_restart_s']} s |")
        L.append(f"| rebuild time (node up → replica online) | {rb['rebuild_time_s']} s |")
        L.append(f"| rebuild throughput (1 GiB / rebuild time) | {rb['rebuild_mib_s']} MiB/s |")
        if rb.get("spdk_log"):
            L.append(f"| SPDK raid rebuild alone (head log: Started → Finished) | {rb['spdk_log']['seconds']} s, "
                     f"{rb['spdk_rebuild_mib_s']} MiB/s |")
        for base in dict.fromkeys([ta, "A"]):
            refm = s.get(base, {}).get("read_128k_qd32", {}).get("mib_s")
            if refm:
                L.append(f"| node-to-node reference ({base}, 128 KiB seq read QD32) | {fmt(refm)} MiB/s |")
                L.append(f"| rebuild / reference {base} | {rb['rebuild_mib_s'] / refm:.2f} "
                         f"(goal ≥ {GOALS['rebuild_vs_link']}) |")
        L.append(f"| time to redundancy from the failure | {rb['time_to_redundancy_from_failure_s']} s |")
        L.append(f"| time to redundancy from the agent restart | {rb['time_to_redundancy_from_restart_s']} s |")
        L.append("")
    hb = res.get("rebuild_hand_built") or {}
    if hb:
        L.append("Rebuild of one leg of the hand-built raid1 (1 GiB written; leg removed with "
                 "`bdev_raid_remove_base_bdev` and added back with `bdev_raid_add_base_bdev`; no host running; "
                 "data targets on core 0), timed from SPDK's own log:\n")
        L.append("| composition | head core mask | zero-copy send | raid process window | SPDK rebuild | throughput | "
                 "head CPU | busy % per cpu |")
        L.append("|---|---|---|---:|---:|---:|---:|---|")
        for sec, runs in hb.items():
            for x in runs.values():
                head_cpu = next((pp["cpu_percent"] for k, pp in x["cpu"]["processes"].items()
                                 if k.endswith("/head")), None)
                L.append(f"| {sec} | `{x['head_cpumask']}` | {'on (SPDK default)' if x['zero_copy_send'] else 'off'} | "
                         f"{x['process_window_kib']} KiB | {fmt((x.get('spdk_log') or {}).get('seconds'), ' s', 2)} | "
                         f"{fmt(x.get('spdk_rebuild_mib_s'), ' MiB/s', 1)} | {fmt(head_cpu, ' %')} | "
                         f"{cpu_line(x['cpu'])} |")
        if rb and rb.get("spdk_rebuild_mib_s"):
            mc = rb.get("cpu_during_rebuild") or {}
            mh = sum(pp["cpu_percent"] for k, pp in mc.get("processes", {}).items() if k.endswith("head-target"))
            L.append(f"| meshblock (above; CPU from node up to online) | `{ms.get('head_cpumask')}` | "
                     f"{ms.get('zero_copy_send')} | 1024 KiB | {rb['spdk_log']['seconds']} s | "
                     f"{rb['spdk_rebuild_mib_s']} MiB/s | {fmt(mh, ' %')} | {cpu_line(mc) if mc else ''} |")
        L.append("")
    L.append("## Where the CPU went (QD32 random-read run of each case)\n")
    L.append("| case | busy threads (≥ 20 % of a core): process thread % [allowed cpus] | polling target on the "
             "host's core | per-cpu busy % |")
    L.append("|---|---|---|---|")
    for name, cs in res["core_sharing"].items():
        busy = "; ".join(f"{b['process']} {b.get('thread', '')} {b['cpu_percent']:.0f} % [{b['allowed_cpus']}]"
                         for b in cs["busy"])
        L.append(f"| {name} | {busy} | {', '.join(cs['shares_host_core']) or 'no'} | "
                 f"{', '.join(f'{k} {v:.0f}' for k, v in cs['busy_percent_per_cpu'].items())} |")
    L.append("")
    if res.get("errors"):
        L.append("## Errors\n")
        for e in res["errors"]:
            L.append(f"- `{e}`")
        L.append("")
    write_report(path, "\n".join(L) + "\n")


def plot(path: Path, res: dict) -> str | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        return f"no plot: {e}"
    s = res["summary"]
    names = [n for n in res["cases"] if n in s]
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.2))
    x = range(len(names))
    w = 0.38
    ax = axes[0]
    rr = [s[n].get(K_RR32, {}).get("iops") or 0 for n in names]
    rw = [s[n].get(K_RW32, {}).get("iops") or 0 for n in names]
    hatch = ["//" if n.startswith("M") else "" for n in names]
    b1 = ax.bar([i - w / 2 for i in x], rr, w, label="rand read 4 KiB QD32", hatch=hatch)
    b2 = ax.bar([i + w / 2 for i in x], rw, w, label="rand write 4 KiB QD32", hatch=hatch)
    ax.bar_label(b1, labels=[f"{v / 1000:.1f}k" for v in rr], fontsize=7)
    ax.bar_label(b2, labels=[f"{v / 1000:.1f}k" for v in rw], fontsize=7)
    ax.set_xticks(list(x), names, rotation=30)
    ax.set_ylabel("IOPS")
    ax.set_title("IOPS per case (QD32; hatched: meshblock)")
    ax.legend(fontsize=8)
    ax = axes[1]
    lr = [s[n].get(K_RR1, {}).get("lat_avg_us") or 0 for n in names]
    lw = [s[n].get(K_RW1, {}).get("lat_avg_us") or 0 for n in names]
    ax.bar([i - w / 2 for i in x], lr, w, label="rand read 4 KiB QD1", hatch=hatch)
    ax.bar([i + w / 2 for i in x], lw, w, label="rand write 4 KiB QD1", hatch=hatch)
    ax.set_yscale("log")
    ax.set_xticks(list(x), names, rotation=30)
    ax.set_ylabel("average latency, µs (log)")
    ax.set_title("QD1 latency per case")
    ax.legend(fontsize=8)
    ax = axes[2]
    labels, vals = [], []
    for key, tag in (("failover_default_timeout", f"{res.get('default_node_timeout', 5.0):g}s"), ("failover_short_timeout",
                                                          f"{res['args'].get('short_node_timeout'):g}s")):
        for f in res.get(key, []):
            if f.get("read_ok_after_s") is not None:
                labels.append(f"failover {tag} #{f['rep']}")
                vals.append(f["read_ok_after_s"])
    bars = ax.bar(range(len(vals)), vals, color="tab:red")
    ax.bar_label(bars, labels=[f"{v:.1f}" for v in vals], fontsize=7)
    ax.axhline(GOALS["failover_s"], ls="--", color="gray", label="goal 5 s")
    ax.set_xticks(range(len(vals)), labels, rotation=30, fontsize=8)
    ax.set_ylabel("seconds until a read succeeds on the new head")
    rb = res.get("rebuild")
    ref = s.get(res.get("twin_a", "A"), {}).get("read_128k_qd32", {}).get("mib_s")
    title = "Failover"
    if rb and ref:
        title += f"\nrebuild {rb['rebuild_mib_s']:.0f} MiB/s vs link {ref:.0f} MiB/s"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.suptitle(f"meshblock data path vs hand-built SPDK ({res['started']}, host on cpu {res['host_cpu']})",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def wait_for_low_load(limit: float, max_wait: float) -> dict:
    t0 = time.monotonic()
    samples = []
    while True:
        la = os.getloadavg()[0]
        samples.append(round(la, 2))
        if la <= limit or time.monotonic() - t0 >= max_wait:
            return {"limit": limit, "waited_s": round(time.monotonic() - t0, 1), "load1": round(la, 2),
                    "met": la <= limit}
        log(f"load {la:.2f} > {limit:g}; waiting")
        time.sleep(min(30.0, max(1.0, max_wait - (time.monotonic() - t0))))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spdk", default=None, help="an SPDK build (default: the one meshblock finds: "
                                                 "MESHBLOCK_SPDK_DIR, else the provisioned build)")
    ap.add_argument("--seconds", type=int, default=10, help="measured seconds per perf run")
    ap.add_argument("--warmup", type=int, default=1, help="perf warm-up seconds before each run")
    ap.add_argument("--rounds", type=int, default=1, help="runs per case and pattern (median reported)")
    ap.add_argument("--failovers", type=int, default=3)
    ap.add_argument("--short-node-timeout", type=float, default=2.0,
                    help="--node-timeout of the controller for the second set of failovers (0: skip)")
    ap.add_argument("--rebuild-timeout", type=float, default=600.0)
    ap.add_argument("--skip-core0", action="store_true", help="skip the second cluster (head on core 0)")
    ap.add_argument("--skip-nozc", action="store_true", help="skip the hand-built case with zero-copy send off")
    ap.add_argument("--skip-hand-rebuild", action="store_true", help="skip the rebuilds of the hand-built raid1")
    ap.add_argument("--hand-rebuild-windows", type=lambda v: [int(x) for x in v.split(",")], default=[1024, 8192],
                    help="raid process window sizes (KiB) for the hand-built rebuilds")
    ap.add_argument("--hand-rebuild-last-core", action=argparse.BooleanOptionalAction, default=True,
                    help="also rebuild the hand-built raid1 with its head on the last core")
    ap.add_argument("--phase1-rounds", type=int, default=0, help="rounds for A, A2, A-nozc and M1 (default --rounds)")
    ap.add_argument("--wait-load", type=float, default=0.0,
                    help="wait (at most --wait-load-max s) until the 1-minute load is at most this")
    ap.add_argument("--wait-load-max", type=float, default=600.0)
    ap.add_argument("--max-other", type=float, default=20.0,
                    help="a run during which processes outside the bench used this %% of a core or more is repeated")
    ap.add_argument("--retries", type=int, default=2, help="repetitions of a disturbed run")
    ap.add_argument("--quiet-wait", type=float, default=120.0, help="longest wait for quiet before a repetition")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--markdown", type=Path, default=None)
    ap.add_argument("--plot", type=Path, default=None)
    ap.add_argument("--keep-work", action="store_true", help="keep the scratch directory (logs)")
    ap.add_argument("--render", type=Path, default=None, metavar="JSON",
                    help="only write --markdown and --plot from the JSON of an earlier run")
    args = ap.parse_args()
    if args.render:
        res = json.loads(args.render.read_text())
        res["ratios"] = ratios(res["summary"], res.get("twin_a", "A"), res.get("twin_b", "B"))
        if args.markdown:
            write_markdown(args.markdown, res)
        if args.plot:
            err = plot(args.plot, res)
            if err:
                log(err)
        return 0

    # SPDK's programs, started by the bench itself, need a shared build's libraries as meshblock's do
    if args.spdk:  # the clusters the bench starts use the same build
        os.environ["MESHBLOCK_SPDK_DIR"] = str(args.spdk)
    install = find_spdk()
    os.environ.update(install.env())

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)

    bench = Bench(args, install)
    res = bench.result
    res["command_line"] = shlex.join([".venv/bin/python", "bench/data_path.py", *sys.argv[1:]])
    res["args"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    res["host_nqn"] = HOST_NQN
    res["default_node_timeout"] = DEFAULT_NODE_TIMEOUT
    res["host_cpumask"] = bench.mask
    res["host_cpu"] = str(NCPU - 1)
    res["machine"] = {"cores": NCPU, "kernel": platform.release(), "python": platform.python_version()}
    res["spdk"] = install.describe()
    res["spdk_version"] = install.version()
    res["work_dir"] = str(bench.work)
    if args.wait_load:
        res["load_wait"] = wait_for_low_load(args.wait_load, args.wait_load_max)
    rc = run_and_clean_up(bench, res)
    res["cases"] = bench.cases
    res["summary"] = summarize(bench.cases)
    res["ratios"] = ratios(res["summary"], res.get("twin_a", "A"), res.get("twin_b", "B"))
    res["core_sharing"] = core_sharing(bench.cases, res["host_cpu"])
    res["commands"] = bench.cmds.entries
    res.setdefault("duration_s", None)
    res.setdefault("machine_after", machine_snapshot())
    res["goals"] = GOALS
    if args.out:
        args.out.write_text(json.dumps(res, indent=2) + "\n")
    if args.markdown:
        try:
            write_markdown(args.markdown, res)
        except Exception as e:  # noqa: BLE001
            log("markdown failed:", repr(e), traceback.format_exc())
            rc = 1
    if args.plot:
        try:
            err = plot(args.plot, res)
            if err:
                log(err)
        except Exception as e:  # noqa: BLE001
            log("plot failed:", repr(e), traceback.format_exc())
    print(json.dumps({"summary": res["summary"], "ratios": res["ratios"], "rebuild": {
        k: v for k, v in (res.get("rebuild") or {}).items() if not isinstance(v, (dict, list))},
        "failover": [{k: f.get(k) for k in ("rep", "node_down_after_s", "connect_info_moved_after_s",
                                            "read_ok_after_s")} for f in res.get("failover_default_timeout", [])
                     + res.get("failover_short_timeout", [])], "errors": res["errors"]}, indent=1))
    if not args.keep_work and not res["cleanup"]["left_after_cleanup"]:
        shutil.rmtree(bench.work, ignore_errors=True)
    return rc if not res["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
