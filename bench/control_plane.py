"""Control-plane latency and controller failover on a 3-node local cluster with real SPDK.

Part 1 (`meshblock up`, SQLite store): CreateVolume latency (1 replica, 64 MiB; the call returns
once the volume is available) over --creates sequential creates, then DeleteVolume latency.
Part 2 (same cluster): fills the store to --volumes volumes (8 MiB, thin, 1 replica) through the
API, then times full ListVolumes calls (page_size 1000) and paginated walks (page_size 100), and a
few creates and GetClusterStatus calls at that size.
Part 3 (etcd store): a private etcd, two controllers and 3 agents registered with both; the
active controller is killed with SIGKILL --failovers times, and the bench measures how long until
the standby answers GetClusterStatus with every node up, and until a CreateVolume succeeds.
Volumes created before each failover must all still be listed afterwards, once each.

Every process the bench starts is stopped by its PID (`meshblock down` for the local cluster),
also when a part fails. Goals are reported next to the figures, not asserted.

    .venv/bin/python bench/control_plane.py --creates 200 --volumes 1000 --failovers 5 \\
        --out docs/performance/control-plane.json
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import grpc

from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from meshblock.proto.meshblock.v1 import admin_pb2_grpc as pb_grpc

MiB = 1 << 20
GOALS = {"create_p50_ms": 100.0, "create_p99_ms": 500.0, "list_1000_ms": 200.0, "failover_s": 5.0}
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- small helpers --------------------------------------------------------------------------------

def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


def summary_ms(seconds: list[float]) -> dict:
    ms = [x * 1000 for x in seconds]
    if not ms:
        return {"n": 0}
    return {"n": len(ms), "p50": round(percentile(ms, 50), 1), "p90": round(percentile(ms, 90), 1),
            "p99": round(percentile(ms, 99), 1), "max": round(max(ms), 1), "min": round(min(ms), 1),
            "mean": round(statistics.fmean(ms), 1)}


def log(*a) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *a, file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def kill_pid(pid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def port_free(addr: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((addr, port))
        except OSError:
            return False
    return True


def free_port_pair(addrs: list[str], start: int) -> int:
    """A port p such that p and p+1 are free on every address (NVMe/TCP export + head port)."""
    for p in range(start, start + 2000, 2):
        if all(port_free(a, p) and port_free(a, p + 1) for a in addrs):
            return p
    raise RuntimeError("no free port pair found")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine_info() -> dict:
    others = []
    me = os.getpid()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == me:
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if any(k in cmd for k in ("pytest", "nvmf_tgt", "meshblock controller", "meshblock agent", "etcd")):
            others.append(cmd[:160])
    return {"cores": os.cpu_count(), "affinity_cores": len(os.sched_getaffinity(0)),
            "loadavg": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version(),
            "kernel": platform.release(), "other_relevant_processes": len(others),
            "other_relevant_process_samples": sorted(others)[:12]}


def source_state() -> dict:
    """Which code is measured: the commit, files differing from it, and a hash of meshblock/*.py
    (compared at the end: others may change the tree while the bench runs)."""
    import hashlib

    def git(*a: str) -> str:
        try:   # read-only git calls; --no-optional-locks keeps git from refreshing the index
            return subprocess.run(["git", "--no-optional-locks", *a], cwd=REPO, capture_output=True, text=True,
                                  timeout=20, check=False).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    h = hashlib.sha256()
    for f in sorted((REPO / "meshblock").rglob("*.py")):
        h.update(str(f.relative_to(REPO)).encode())
        with contextlib.suppress(OSError):
            h.update(f.read_bytes())
    return {"git_head": git("rev-parse", "HEAD"),
            "uncommitted_changes": git("diff", "--name-only", "HEAD", "--", "meshblock", "proto").splitlines(),
            "meshblock_sources_sha256": h.hexdigest()[:16]}


def volume_stubs(channel: grpc.aio.Channel):
    return pb_grpc.VolumeServiceStub(channel), pb_grpc.ClusterServiceStub(channel)


async def list_all(vs: pb_grpc.VolumeServiceStub, page_size: int = 1000, timeout: float = 60.0) -> list[pb.Volume]:
    out: list[pb.Volume] = []
    token = ""
    while True:
        r = await vs.ListVolumes(pb.ListVolumesRequest(page_size=page_size, page_token=token), timeout=timeout)
        out.extend(r.volumes)
        token = r.next_page_token
        if not token:
            return out


def log_times(path: Path) -> dict[str, dict[str, float]]:
    """From a controller log: per volume name, when it was recorded and when it became available."""
    pat_created = re.compile(r"^(\S+ \S+) INFO .*volume created name=(\S+) volume_id=")
    pat_avail = re.compile(r"^(\S+ \S+) INFO .*volume (\S+) volume_id=\S+ creating -> available")
    out: dict[str, dict[str, float]] = collections.defaultdict(dict)
    if not path.exists():
        return out

    def ts(s: str) -> float:
        return datetime.datetime.strptime(s, "%Y-%m-%d %H:%M:%S,%f").timestamp()

    for line in path.read_text(errors="replace").splitlines():
        m = pat_created.match(line)
        if m:
            out[m.group(2)]["created"] = ts(m.group(1))
            continue
        m = pat_avail.match(line)
        if m:
            out[m.group(2)]["available"] = ts(m.group(1))
    return out


def create_breakdown(home: Path, names: list[str]) -> dict:
    """Per sequential create, from the controller's and agents' logs (ms resolution): recorded in the
    store -> the agent logged the replica lvol created -> the agent logged the volume's subsystem
    created -> the controller logged the volume available."""
    import bisect

    times = log_times(home / "controller" / "controller.log")
    ids: dict[str, str] = {}
    pat_id = re.compile(r"volume created name=(\S+) volume_id=(\S+)")
    with contextlib.suppress(OSError):
        for line in (home / "controller" / "controller.log").read_text(errors="replace").splitlines():
            m = pat_id.search(line)
            if m:
                ids[m.group(1)] = m.group(2)
    reps: list[float] = []
    subs: dict[str, float] = {}
    pat_rep = re.compile(r"^(\S+ \S+) INFO .*replica created replica_id=")
    pat_sub = re.compile(r"^(\S+ \S+) INFO .*subsystem created nqn=\S+:volume:(\S+)")
    for f in (home / "nodes").glob("node-*/agent.log"):
        for line in f.read_text(errors="replace").splitlines():
            m = pat_rep.match(line)
            if m:
                reps.append(datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp())
                continue
            m = pat_sub.match(line)
            if m:
                subs.setdefault(m.group(2), datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp())
    reps.sort()
    a, b, c = [], [], []
    for n in names:
        t = times.get(n, {})
        vid = ids.get(n)
        if "created" not in t or "available" not in t or vid not in subs:
            continue
        i = bisect.bisect_left(reps, t["created"])
        if i >= len(reps):
            continue
        t1, t2 = reps[i], subs[vid]
        if t["created"] <= t1 <= t2 <= t["available"]:
            a.append(t1 - t["created"])
            b.append(t2 - t1)
            c.append(t["available"] - t2)
    return {"recorded_to_replica_lvol_created": summary_ms(a), "lvol_created_to_subsystem_created": summary_ms(b),
            "subsystem_created_to_available": summary_ms(c)}


# --- part 1 and 2: `meshblock up` --------------------------------------------------------------

class LocalCluster:
    def __init__(self, nodes: int, pool_size: str):
        self.nodes = nodes
        self.pool_size = pool_size
        self.home = Path(tempfile.mkdtemp(prefix="mb-cp-bench-"))
        self.env = dict(os.environ, MESHBLOCK_HOME=str(self.home))
        self.mb = [sys.executable, "-m", "meshblock"]
        self.port = free_port_pair([f"127.0.0.{11 + i}" for i in range(nodes)], 24420)
        self.pids: list[int] = []
        self.up_seconds = 0.0

    @property
    def endpoint(self) -> str:
        return f"unix:{self.home / 'controller.sock'}"

    @property
    def controller_log(self) -> Path:
        return self.home / "controller" / "controller.log"

    def _record_pids(self) -> None:
        f = self.home / "cluster.json"
        if not f.exists():
            return
        for n in json.loads(f.read_text()).get("nodes", []):
            self.pids.append(n["pid"])
            for name in ("spdk.pid", "spdk-head.pid"):
                p = Path(n["data_dir"]) / name
                with contextlib.suppress(OSError, ValueError):
                    self.pids.append(int(p.read_text().strip()))
        self.pids = sorted(set(self.pids))

    def controller_pid(self) -> int | None:
        f = self.home / "cluster.json"
        if not f.exists():
            return None
        for n in json.loads(f.read_text()).get("nodes", []):
            if n["name"] == "controller":
                return n["pid"]
        return None

    def up(self) -> None:
        t0 = time.monotonic()
        p = subprocess.run(self.mb + ["up", "--nodes", str(self.nodes), "--pool-size", self.pool_size, "--port",
                                      str(self.port), "-o", "json"], env=self.env, capture_output=True, text=True,
                           timeout=240, check=False)
        self.up_seconds = time.monotonic() - t0
        self._record_pids()
        if p.returncode:
            raise RuntimeError(f"meshblock up failed ({p.returncode}): {p.stderr[-3000:]}")

    def down(self) -> dict:
        self._record_pids()
        rc = None
        try:
            p = subprocess.run(self.mb + ["down"], env=self.env, capture_output=True, text=True, timeout=120,
                               check=False)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        left = [pid for pid in self.pids if alive(pid)]
        for pid in left:   # only what this cluster started (recorded from its cluster.json and pid files)
            kill_pid(pid)
        return {"down_rc": rc, "left_after_down": left}

    def remove(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)


async def timed_creates(vs, names: list[str], size: int, timeout: float = 90.0) -> tuple[list[float], list[dict]]:
    lat, bad = [], []
    for name in names:
        t = time.perf_counter()
        try:
            v = await vs.CreateVolume(pb.CreateVolumeRequest(name=name, size_bytes=size, replicas=1), timeout=timeout)
            dt = time.perf_counter() - t
            lat.append(dt)
            if v.state != "available":
                bad.append({"name": name, "state": v.state, "stage": v.stage, "message": v.message})
        except grpc.aio.AioRpcError as e:
            lat.append(time.perf_counter() - t)
            bad.append({"name": name, "error": f"{e.code().name}: {e.details()}"})
    return lat, bad


async def spdk_round_trips(socket_path: Path, n: int = 20) -> dict:
    """Latency of a trivial SPDK JSON-RPC call (bdev_lvol_get_lvstores) on one of the cluster's targets,
    one at a time and 5 sent together: the floor under every agent call that talks to SPDK."""
    from meshblock.spdk import SpdkClient, SpdkRpc

    client = SpdkClient(str(socket_path))
    rpc = SpdkRpc(client)
    one, batch = [], []
    try:
        for _ in range(n):
            t = time.perf_counter()
            await rpc.bdev_lvol_get_lvstores()
            one.append(time.perf_counter() - t)
        for _ in range(n):
            t = time.perf_counter()
            await asyncio.gather(*(rpc.bdev_lvol_get_lvstores() for _ in range(5)))
            batch.append(time.perf_counter() - t)
    finally:
        await client.close()
    return {"sequential_call_ms": summary_ms(one), "five_concurrent_calls_ms": summary_ms(batch)}


async def part_local(args, result: dict) -> None:
    cl = LocalCluster(3, args.pool_size)
    result["local_cluster"] = {"home": str(cl.home), "nvmf_port": cl.port, "pool_size": args.pool_size,
                               "store": "sqlite"}
    try:
        log(f"meshblock up --nodes 3 --pool-size {args.pool_size} --port {cl.port} (MESHBLOCK_HOME={cl.home})")
        cl.up()
        result["local_cluster"]["up_seconds"] = round(cl.up_seconds, 2)
        cpid = cl.controller_pid()
        async with grpc.aio.insecure_channel(cl.endpoint) as ch:
            vs, cs = volume_stubs(ch)
            await cs.GetClusterStatus(pb.GetClusterStatusRequest(), timeout=5)
            # warm-up: the first call pays channel set-up, not counted
            await vs.CreateVolume(pb.CreateVolumeRequest(name="warmup", size_bytes=64 * MiB, replicas=1), timeout=60)
            await vs.DeleteVolume(pb.DeleteVolumeRequest(ref="warmup"), timeout=60)
            try:
                result["spdk_rpc"] = await spdk_round_trips(cl.home / "nodes" / "node-1" / "spdk.sock")
                log(f"SPDK JSON-RPC round trip: {result['spdk_rpc']}")
            except Exception as e:  # noqa: BLE001 - a diagnostic only
                result["spdk_rpc"] = {"error": f"{type(e).__name__}: {e}"}

            # --- 1. create -> available, then delete
            names = [f"bench-create-{i:04d}" for i in range(args.creates)]
            log(f"part 1: {args.creates} sequential creates of 64 MiB volumes")
            cpu0, w0 = cpu_seconds(cpid), time.monotonic()
            lat, bad = await timed_creates(vs, names, 64 * MiB)
            cpu1, w1 = cpu_seconds(cpid), time.monotonic()
            times = log_times(cl.controller_log)
            server = [times[n]["available"] - times[n]["created"] for n in names
                      if "available" in times.get(n, {}) and "created" in times.get(n, {})]
            log(f"creates: {summary_ms(lat)}; not available: {len(bad)}")
            try:
                breakdown = create_breakdown(cl.home, names)
            except Exception as e:  # noqa: BLE001 - a diagnostic only
                breakdown = {"error": f"{type(e).__name__}: {e}"}
            log(f"part 1: {len(names)} deletes")
            dlat, dbad = [], []
            for n in names:
                t = time.perf_counter()
                try:
                    r = await vs.DeleteVolume(pb.DeleteVolumeRequest(ref=n), timeout=90)
                    if not r.existed:
                        dbad.append({"name": n, "error": "existed=false"})
                except grpc.aio.AioRpcError as e:
                    dbad.append({"name": n, "error": f"{e.code().name}: {e.details()}"})
                dlat.append(time.perf_counter() - t)
            w2 = time.monotonic()
            left = await list_all(vs)
            log(f"deletes: {summary_ms(dlat)}; failed: {len(dbad)}; volumes left: {len(left)}")
            result["create"] = {
                "volumes": args.creates, "size_bytes": 64 * MiB, "replicas": 1, "sequential": True,
                "latency_ms": summary_ms(lat), "not_available": len(bad), "not_available_detail": bad[:10],
                "controller_log_created_to_available_ms": summary_ms(server),
                "log_breakdown_ms": breakdown,
                "controller_cpu_percent_of_one_core": round(100 * (cpu1 - cpu0) / (w1 - w0), 1)
                if cpu0 is not None and cpu1 is not None else None,
                "wall_s": round(w1 - w0, 1)}
            result["delete"] = {"latency_ms": summary_ms(dlat), "failed": len(dbad), "failed_detail": dbad[:10],
                                "volumes_left": len(left), "wall_s": round(w2 - w1, 1)}

            # --- 2. 1,000 volumes in the store: listing
            n = args.volumes
            log(f"part 2: filling the store with {n} volumes of 8 MiB ({args.fill_concurrency} at a time)")
            fill_names = [f"bench-list-{i:05d}" for i in range(n)]
            sem = asyncio.Semaphore(args.fill_concurrency)
            fill_lat: list[float] = []
            fill_bad: list[dict] = []

            async def one(name: str) -> None:
                async with sem:
                    t = time.perf_counter()
                    last = ""
                    for _attempt in range(3):   # a create is idempotent by name: retrying is safe
                        try:
                            v = await vs.CreateVolume(pb.CreateVolumeRequest(name=name, size_bytes=8 * MiB,
                                                                             replicas=1), timeout=120)
                            if v.state == "available":
                                last = ""
                                break
                            last = f"state {v.state}: {v.message}"
                        except grpc.aio.AioRpcError as e:
                            last = f"{e.code().name}: {e.details()}"
                    if last:
                        fill_bad.append({"name": name, "error": last})
                    fill_lat.append(time.perf_counter() - t)

            cpu3, w3 = cpu_seconds(cpid), time.monotonic()
            progress_task = asyncio.create_task(_progress(fill_lat, n))
            await asyncio.gather(*(one(x) for x in fill_names))
            progress_task.cancel()
            cpu4, w4 = cpu_seconds(cpid), time.monotonic()
            listed = await list_all(vs)
            states = collections.Counter(v.state for v in listed)
            log(f"filled in {w4 - w3:.1f}s; states {dict(states)}")
            await asyncio.sleep(args.settle)

            full, full_counts = [], []
            for _ in range(args.list_repeats):
                t = time.perf_counter()
                r = await vs.ListVolumes(pb.ListVolumesRequest(page_size=1000), timeout=60)
                full.append(time.perf_counter() - t)
                full_counts.append((len(r.volumes), bool(r.next_page_token)))
            log(f"ListVolumes(page_size=1000): {summary_ms(full)}")
            walks, pages, walk_counts = [], [], []
            for _ in range(args.walk_repeats):
                t = time.perf_counter()
                token, count, npages = "", 0, 0
                while True:
                    tp = time.perf_counter()
                    r = await vs.ListVolumes(pb.ListVolumesRequest(page_size=100, page_token=token), timeout=60)
                    pages.append(time.perf_counter() - tp)
                    count += len(r.volumes)
                    npages += 1
                    token = r.next_page_token
                    if not token:
                        break
                walks.append(time.perf_counter() - t)
                walk_counts.append((count, npages))
            log(f"paginated walk (page_size=100): {summary_ms(walks)}; per page {summary_ms(pages)}")
            status = []
            for _ in range(10):
                t = time.perf_counter()
                await cs.GetClusterStatus(pb.GetClusterStatusRequest(), timeout=30)
                status.append(time.perf_counter() - t)
            extra_names = [f"bench-at-{n}-{i:03d}" for i in range(args.creates_at_scale)]
            cpu5, w5 = cpu_seconds(cpid), time.monotonic()
            at_scale, at_scale_bad = await timed_creates(vs, extra_names, 64 * MiB)
            cpu6, w6 = cpu_seconds(cpid), time.monotonic()
            log(f"creates with {n} volumes present: {summary_ms(at_scale)}")
            # an idle window at that size: what the reconciler's periodic passes cost by themselves
            cpu7, w7 = cpu_seconds(cpid), time.monotonic()
            await asyncio.sleep(args.idle)
            cpu8, w8 = cpu_seconds(cpid), time.monotonic()

            def pct(a, b, wa, wb):
                return round(100 * (b - a) / (wb - wa), 1) if a is not None and b is not None else None

            result["list"] = {
                "volumes_in_store": len(listed), "states": dict(states),
                "fill": {"volumes": n, "size_bytes": 8 * MiB, "concurrency": args.fill_concurrency,
                         "wall_s": round(w4 - w3, 1), "per_second": round(n / (w4 - w3), 1),
                         "per_call_latency_ms": summary_ms(fill_lat), "failed": len(fill_bad),
                         "failed_detail": fill_bad[:10],
                         "controller_cpu_percent_of_one_core": pct(cpu3, cpu4, w3, w4)},
                "full_page_1000_ms": summary_ms(full),
                "full_page_results": sorted(set(full_counts)),
                "paginated_walk_page_100_ms": summary_ms(walks),
                "paginated_page_100_per_page_ms": summary_ms(pages),
                "paginated_walk_results": sorted(set(walk_counts)),
                "get_cluster_status_ms": summary_ms(status),
                "create_with_store_full": {"volumes": len(extra_names), "latency_ms": summary_ms(at_scale),
                                           "not_available": len(at_scale_bad),
                                           "controller_cpu_percent_of_one_core": pct(cpu5, cpu6, w5, w6)},
                "controller_idle_cpu_percent_of_one_core": pct(cpu7, cpu8, w7, w8),
                "idle_window_s": args.idle,
            }
    finally:
        log("meshblock down")
        result["local_cluster"].update(cl.down())
        if args.keep_logs:
            keep = args.keep_logs / "local"
            keep.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                shutil.copy(cl.controller_log, keep / "controller.log")
            for i in range(1, 4):
                with contextlib.suppress(OSError):
                    shutil.copy(cl.home / "nodes" / f"node-{i}" / "agent.log", keep / f"agent-{i}.log")
        cl.remove()


async def _progress(done: list, total: int) -> None:
    while True:
        await asyncio.sleep(30)
        log(f"  ... {len(done)}/{total}")


# --- part 3: controller failover with etcd -----------------------------------------------------

class Etcd:
    def __init__(self, base: Path):
        self.exe = shutil.which("etcd") or "/usr/bin/etcd"
        self.base = base
        self.client_port, self.peer_port = free_port(), free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def start(self) -> None:
        client, peer = f"http://{self.endpoint}", f"http://127.0.0.1:{self.peer_port}"
        with open(self.base / "etcd.log", "ab") as out:
            self.proc = subprocess.Popen(
                [self.exe, "--name", "bench", "--data-dir", str(self.base / "etcd-data"),
                 "--listen-client-urls", client, "--advertise-client-urls", client, "--listen-peer-urls", peer,
                 "--initial-advertise-peer-urls", peer, "--initial-cluster", f"bench={peer}",
                 "--initial-cluster-state", "new"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://{self.endpoint}/health", timeout=1) as r:
                    if json.loads(r.read()).get("health") == "true":
                        return
            except (OSError, ValueError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("etcd did not start: " + (self.base / "etcd.log").read_text()[-2000:])
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        kill_pid(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            kill_pid(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


async def status_or_error(listen: str, timeout: float = 1.0):
    async with grpc.aio.insecure_channel(listen) as ch:
        try:
            return await pb_grpc.ClusterServiceStub(ch).GetClusterStatus(pb.GetClusterStatusRequest(),
                                                                          timeout=timeout)
        except grpc.aio.AioRpcError as e:
            return e


async def watch_status(listen: str, t0: float, marks: dict) -> None:
    """Poll GetClusterStatus until it answers with every node up; note when it first answered."""
    async with grpc.aio.insecure_channel(listen) as ch:
        stub = pb_grpc.ClusterServiceStub(ch)
        while True:
            try:
                st = await stub.GetClusterStatus(pb.GetClusterStatusRequest(), timeout=1.0)
                marks.setdefault("first_answer_s", time.monotonic() - t0)
                marks.setdefault("first_answer_nodes_up", st.nodes_up)
                if st.nodes_up >= 3:
                    marks["nodes_up_3_s"] = time.monotonic() - t0
                    marks["leader"] = st.leader
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.02)


async def try_create(listen: str, name: str, t0: float, marks: dict) -> None:
    """Retry one CreateVolume (idempotent by name) until it returns the volume available."""
    async with grpc.aio.insecure_channel(listen) as ch:
        vs = pb_grpc.VolumeServiceStub(ch)
        attempts = 0
        while True:
            attempts += 1
            try:
                v = await vs.CreateVolume(pb.CreateVolumeRequest(name=name, size_bytes=64 * MiB, replicas=1),
                                          timeout=60)
                if v.state == "available":
                    marks["create_ok_s"] = time.monotonic() - t0
                    marks["create_attempts"] = attempts
                    return
            except grpc.aio.AioRpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE:   # UNAVAILABLE: still a standby
                    marks["create_non_unavailable_errors"] = marks.get("create_non_unavailable_errors", 0) + 1
                    marks["create_last_error"] = f"{e.code().name}: {e.details()}"[:200]
            await asyncio.sleep(0.05)


def state_changes(log_path: Path, after: float) -> dict[str, int]:
    """Counts of 'volume X ... A -> B' transitions a controller logged after ``after`` (wall time)."""
    pat = re.compile(r"^(\S+ \S+) INFO .*volume \S+ volume_id=\S+ (\w+) -> (\w+)")
    out: dict[str, int] = collections.Counter()
    if not log_path.exists():
        return {}
    for line in log_path.read_text(errors="replace").splitlines():
        m = pat.match(line)
        if m and m.group(2) != "creating":
            t = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if t >= after - 0.001:
                out[f"{m.group(2)} -> {m.group(3)}"] += 1
    return dict(out)


def leader_line_time(log_path: Path, identity: str, after: float) -> float | None:
    """Wall time of the first 'controller X is the leader' line written after ``after``."""
    pat = re.compile(r"^(\S+ \S+) INFO .*controller (\S+) is the leader")
    if not log_path.exists():
        return None
    for line in log_path.read_text(errors="replace").splitlines():
        m = pat.match(line)
        if m and m.group(2) == identity:
            t = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if t >= after - 0.001:
                return t
    return None


async def part_failover(args, result: dict) -> None:
    from tests.support.agents import AgentProc
    from tests.support.backends import real_backend
    from tests.support.cluster import ControllerProc

    backend = real_backend()
    if backend is None:
        raise RuntimeError("no real SPDK found")
    base = Path(tempfile.mkdtemp(prefix="mb-cp-fo-"))
    etcd = Etcd(base)
    ctls: dict[str, ControllerProc] = {}
    agents: list[AgentProc] = []
    fo: dict = {"store": "etcd", "leader_ttl_s": 3.0, "node_timeout_s": args.node_timeout, "rounds": []}
    result["failover"] = fo
    try:
        etcd.start()
        url = f"etcd://{etcd.endpoint}?prefix=/bench"
        fo["etcd_url"] = url
        for ident in ("c1", "c2"):
            ctls[ident] = ControllerProc(backend, base / ident, store_url=url, identity=ident,
                                         node_timeout=args.node_timeout, listen=f"unix:{base / ident / f'{ident}.sock'}")
        ctls["c1"].start()
        await asyncio.sleep(1.0)   # c1 first, so it is the initial leader
        ctls["c2"].start()
        endpoints = ",".join(c.listen for c in ctls.values())
        prefix = f"127.{200 + os.getpid() % 50}.0."
        port = free_port_pair([f"{prefix}{i + 2}" for i in range(3)], 25420)
        for i in range(1, 4):
            agents.append(AgentProc(backend, base / f"node-{i}", f"node-{i}", pool_size=args.fo_pool_size,
                                    address=f"{prefix}{i + 1}", port=port, controller=endpoints,
                                    labels={"zone": f"z{i}"}))
        for a in agents:
            a.start()
        for a in agents:
            await a.wait_healthy(90)
        await ctls["c1"].wait_nodes(3, 60)
        log("failover: etcd, c1 (leader), c2 (standby) and 3 agents up")
        created: list[str] = []
        for rnd in range(args.failovers):
            # the active one: the controller whose GetClusterStatus answers
            active = None
            for ident, c in ctls.items():
                st = await status_or_error(c.listen, 2.0)
                if isinstance(st, pb.ClusterStatus) and st.nodes_up == 3:
                    active = ident
            if active is None:
                raise RuntimeError("no active controller with 3 nodes up before failover")
            standby = next(i for i in ctls if i != active)
            s_st = await status_or_error(ctls[standby].listen)
            standby_ok = (isinstance(s_st, grpc.aio.AioRpcError) and s_st.code() == grpc.StatusCode.UNAVAILABLE)
            # volumes created before this failover
            async with grpc.aio.insecure_channel(ctls[active].listen) as ch:
                vs, _ = volume_stubs(ch)
                for j in range(args.pre_volumes):
                    name = f"fo-{rnd}-pre-{j}"
                    v = await vs.CreateVolume(pb.CreateVolumeRequest(name=name, size_bytes=64 * MiB, replicas=1),
                                              timeout=60)
                    if v.state != "available":
                        raise RuntimeError(f"pre-failover volume {name} is {v.state}: {v.message}")
                    created.append(name)
                before = await list_all(vs)
            await asyncio.sleep(1.0)
            victim = ctls[active]
            assert victim.proc is not None
            target = ctls[standby]
            probe = f"fo-{rnd}-after"
            wall0 = time.time()
            t0 = time.monotonic()
            os.kill(victim.proc.pid, signal.SIGKILL)
            marks: dict[str, float] = {}

            try:
                await asyncio.wait_for(asyncio.gather(watch_status(target.listen, t0, marks),
                                                      try_create(target.listen, probe, t0, marks)),
                                       args.failover_timeout)
            except TimeoutError:
                marks["timed_out"] = True
            victim.proc.wait(10)
            created.append(probe)
            # existing volumes: how long until every one is listed as available again
            async with grpc.aio.insecure_channel(target.listen) as ch:
                vs, _ = volume_stubs(ch)
                while True:
                    cur = await list_all(vs)
                    if all(v.state == "available" for v in cur) or time.monotonic() - t0 > args.failover_timeout:
                        marks["all_available_s"] = time.monotonic() - t0
                        break
                    await asyncio.sleep(0.05)
            flapped = state_changes(target.log, wall0)
            # what the new leader's log says about when it won the lease
            won = leader_line_time(target.log, standby, wall0)
            # nothing lost: every volume created before is still listed, once
            async with grpc.aio.insecure_channel(target.listen) as ch:
                vs, _ = volume_stubs(ch)
                after = await list_all(vs)
            names = [v.name for v in after]
            ids = [v.id for v in after]
            dup_names = sorted(n for n, k in collections.Counter(names).items() if k > 1)
            dup_ids = sorted(i for i, k in collections.Counter(ids).items() if k > 1)
            missing = sorted({v.name for v in before} - set(names))
            missing_created = sorted(set(created) - set(names))
            changed_id = sorted(v.name for v in before if any(a.name == v.name and a.id != v.id for a in after))
            not_avail = sorted(v.name for v in after if v.state != "available")
            rnd_out = {"round": rnd + 1, "killed": active, "new_leader": marks.get("leader", ""),
                       "standby_was_answering_unavailable": standby_ok,
                       "leader_elected_s": round(won - wall0, 3) if won else None,
                       "first_status_answer_s": round(marks["first_answer_s"], 3) if "first_answer_s" in marks else None,
                       "first_status_nodes_up": marks.get("first_answer_nodes_up"),
                       "status_nodes_up_3_s": round(marks["nodes_up_3_s"], 3) if "nodes_up_3_s" in marks else None,
                       "create_available_s": round(marks["create_ok_s"], 3) if "create_ok_s" in marks else None,
                       "all_volumes_available_again_s": round(marks["all_available_s"], 3),
                       "state_changes_of_existing_volumes": flapped,
                       "create_attempts": marks.get("create_attempts"),
                       "create_non_unavailable_errors": marks.get("create_non_unavailable_errors", 0),
                       "create_last_error": marks.get("create_last_error", ""),
                       "timed_out": marks.get("timed_out", False),
                       "volumes_before": len(before), "volumes_after": len(after), "missing": missing,
                       "missing_of_all_created": missing_created, "duplicate_names": dup_names,
                       "duplicate_ids": dup_ids, "id_changed": changed_id, "not_available_after": not_avail}
            fo["rounds"].append(rnd_out)
            log(f"failover {rnd + 1}: killed {active}; {rnd_out['new_leader']} elected at "
                f"{rnd_out['leader_elected_s']}s, answers with 3 nodes at {rnd_out['status_nodes_up_3_s']}s, "
                f"create ok at {rnd_out['create_available_s']}s; missing {missing}, duplicates {dup_names}")
            # restart the killed controller: it comes back as the standby
            await victim.stop()   # closes its client channel; the process is already gone
            victim.start()
            deadline = time.monotonic() + 30
            while True:
                st = await status_or_error(victim.listen)
                if isinstance(st, grpc.aio.AioRpcError) and st.code() == grpc.StatusCode.UNAVAILABLE \
                        and "standby" in (st.details() or ""):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"restarted {active} is not a standby: {st}\n{victim.tail()}")
                await asyncio.sleep(0.1)
            await asyncio.sleep(args.between)

        def med(key):
            vals = [r[key] for r in fo["rounds"] if r.get(key) is not None]
            return round(statistics.median(vals), 3) if vals else None

        fo["median_leader_elected_s"] = med("leader_elected_s")
        fo["median_first_status_answer_s"] = med("first_status_answer_s")
        fo["median_status_nodes_up_3_s"] = med("status_nodes_up_3_s")
        fo["median_create_available_s"] = med("create_available_s")
        fo["median_all_volumes_available_again_s"] = med("all_volumes_available_again_s")
        fo["max_status_nodes_up_3_s"] = max((r["status_nodes_up_3_s"] or 0) for r in fo["rounds"])
        fo["max_create_available_s"] = max((r["create_available_s"] or 0) for r in fo["rounds"])
        fo["lost_volumes"] = sorted({m for r in fo["rounds"] for m in r["missing_of_all_created"]})
        fo["duplicates"] = sorted({m for r in fo["rounds"] for m in r["duplicate_names"] + r["duplicate_ids"]})
    finally:
        log("failover: stopping controllers, agents and etcd")
        pids = []
        for c in ctls.values():
            if c.proc is not None:
                pids.append(c.proc.pid)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(c.stop(), 30)
        for a in agents:
            if a.proc is not None:
                pids.append(a.proc.pid)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(a.stop(timeout=20), 30)
            for f in ("spdk.pid", "spdk-head.pid"):
                with contextlib.suppress(OSError, ValueError):
                    pids.append(int((a.data_dir / f).read_text().strip()))
            with contextlib.suppress(Exception):
                a.kill_targets()
        etcd.stop()
        if etcd.proc is not None:
            pids.append(etcd.proc.pid)
        await asyncio.sleep(0.5)
        left = [p for p in pids if alive(p)]
        for p in left:
            kill_pid(p)
        fo["left_after_stop"] = left
        if args.keep_logs:
            keep = args.keep_logs / "failover"
            keep.mkdir(parents=True, exist_ok=True)
            for c in ctls.values():
                with contextlib.suppress(OSError):
                    shutil.copy(c.log, keep / f"{c.data_dir.name}.log")
            for a in agents:
                with contextlib.suppress(OSError):
                    shutil.copy(a.log, keep / f"{a.name}.log")
        shutil.rmtree(base, ignore_errors=True)


# --- main --------------------------------------------------------------------------------------

def compare(result: dict) -> dict:
    out = {}
    c = result.get("create", {}).get("latency_ms", {})
    if c.get("n"):
        out["create_p50_ms"] = {"goal": GOALS["create_p50_ms"], "measured": c["p50"], "met": c["p50"] <= 100}
        out["create_p99_ms"] = {"goal": GOALS["create_p99_ms"], "measured": c["p99"], "met": c["p99"] <= 500}
    lst = result.get("list", {}).get("full_page_1000_ms", {})
    if lst.get("n"):
        out["list_1000_p50_ms"] = {"goal": GOALS["list_1000_ms"], "measured": lst["p50"], "met": lst["p50"] <= 200}
        out["list_1000_p99_ms"] = {"goal": GOALS["list_1000_ms"], "measured": lst["p99"], "met": lst["p99"] <= 200}
    fo = result.get("failover", {})
    for key in ("median_status_nodes_up_3_s", "median_create_available_s"):
        if fo.get(key) is not None:
            out[f"failover_{key}"] = {"goal": GOALS["failover_s"], "measured": fo[key], "met": fo[key] <= 5.0}
    return out


async def amain(args) -> int:
    result: dict = {"command": " ".join([".venv/bin/python", "bench/control_plane.py"] + sys.argv[1:]),
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "goals": GOALS, "code": source_state(), "machine_start": machine_info(),
                    "errors": []}
    t0 = time.monotonic()
    # SIGTERM cancels the run; every part stops what it started in its finally block
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    parts = set(args.parts.split(","))
    for name, fn in (("local", part_local), ("failover", part_failover)):
        if name not in parts:
            continue
        try:
            await fn(args, result)
        except Exception as e:  # noqa: BLE001 - report and go on to the next part
            result["errors"].append({"part": name, "error": f"{type(e).__name__}: {e}",
                                     "traceback": traceback.format_exc()[-3000:]})
            log(f"part {name} failed: {e}")
    result["machine_end"] = machine_info()
    end = source_state()
    result["code"]["changed_during_run"] = end["meshblock_sources_sha256"] != result["code"]["meshblock_sources_sha256"]
    if result["code"]["changed_during_run"]:
        result["code"]["at_end"] = end
    result["wall_s"] = round(time.monotonic() - t0, 1)
    result["vs_goals"] = compare(result)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    left = result.get("local_cluster", {}).get("left_after_down", []) + result.get("failover", {}).get(
        "left_after_stop", [])
    return 1 if result["errors"] or left else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--creates", type=int, default=200, help="sequential creates timed in part 1")
    ap.add_argument("--volumes", type=int, default=1000, help="volumes in the store for the listing part")
    ap.add_argument("--failovers", type=int, default=5, help="controller kills in part 3")
    ap.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    ap.add_argument("--parts", default="local,failover", help="comma-separated: local, failover")
    ap.add_argument("--pool-size", default="8GiB", help="pool per node of the local cluster")
    ap.add_argument("--fill-concurrency", type=int, default=16, help="concurrent creates while filling the store")
    ap.add_argument("--list-repeats", type=int, default=20)
    ap.add_argument("--walk-repeats", type=int, default=5)
    ap.add_argument("--creates-at-scale", type=int, default=20, help="creates timed with the store full")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds to wait after filling before listing")
    ap.add_argument("--idle", type=float, default=20.0, help="idle window with the store full (controller CPU)")
    ap.add_argument("--node-timeout", type=float, default=5.0, help="controllers' --node-timeout in part 3")
    ap.add_argument("--fo-pool-size", default="2GiB", help="pool per node in part 3")
    ap.add_argument("--pre-volumes", type=int, default=3, help="volumes created before each failover")
    ap.add_argument("--between", type=float, default=3.0, help="seconds between failovers")
    ap.add_argument("--failover-timeout", type=float, default=90.0)
    ap.add_argument("--keep-logs", type=Path, default=None, help="copy controller and agent logs here")
    args = ap.parse_args()
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
