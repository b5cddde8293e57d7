"""Control-plane scale: a real controller (two on etcd) and a simulated cluster of --nodes storage nodes.

The nodes are tests/support/sim: the real AgentService over gRPC, registering and heartbeating
like real agents, each with an in-memory data plane, all in one child process. The bench fills the
cluster with three-replica volumes up to each checkpoint of --curve and measures there:

- create: CreateVolume -> available (the call returns once the controller has applied the volume,
  then GetVolume until it says available), for creates started at --create-rate per second over
  --window seconds; GetVolume and ListVolumes (a page of 1,000, walking the list) latency probed
  meanwhile;
- idle: controller RSS and CPU over --idle-window seconds with no API traffic (heartbeats and the
  controller's own periodic work only), and the agent calls it makes meanwhile;
- mass failover: the node heading the most volumes is killed; from the moment the controller marks
  it down (GetNode says down) until GetConnectInfo of every volume it headed names a live node as
  the optimized path; then it comes back and its replicas resync (every replica online again);
- controller failover (etcd only): the leader is killed with SIGKILL; time until the standby serves
  (GetClusterStatus answers), and until every volume is confirmed again. Confirmed, as the API shows
  it: CreateVolume repeated with the volume's own parameters is answered once the serving
  controller's reconciler has applied the volume (VolumeManager.wait_ready, bounded by the
  controller at 30 s); a new leader has applied nothing yet, so the answer marks the volume as
  confirmed by it. Alongside, from the simulated nodes: how many heads the new leader applied again
  (EnsureHead; none where the agents' listings matched the records), and how many heads stopped
  because their head lease ran out.

Fill: through the admin API at --concurrency creates in flight, or (--fill direct, for large
counts) by writing Volume and Replica records straight into the store with meshblock's own Repo
and placement (as VolumeManager.create writes them), after which the controller makes them
available; the output says which.

Every process the bench starts (etcd, controllers, the simulated cluster) is stopped by its PID at
the end, also when a step fails. --profile runs each controller under cProfile and prints where its
time went.

    .venv/bin/python bench/scale.py --nodes 50 --curve 200,1000 --out /tmp/scale.json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import io
import json
import os
import platform
import pstats
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]


def _early_path() -> None:
    """--controller-src DIR runs the controllers (and the direct fill's records) from another source
    tree, e.g. an export of a commit; it must come first on sys.path, before meshblock is imported."""
    src = next((sys.argv[i + 1] for i, a in enumerate(sys.argv[:-1]) if a == "--controller-src"), None)
    for p in ([str(REPO)] + ([str(Path(src).resolve())] if src else [])):
        if p not in sys.path:
            sys.path.insert(0, p)


_early_path()

import grpc

from meshblock.proto.meshblock.v1 import admin_pb2 as pb
from meshblock.proto.meshblock.v1 import admin_pb2_grpc as pb_grpc
from tests.support.etcd import EtcdServer, find_etcd
from tests.support.sim.serve import SimProcess, usage

MiB = 1 << 20
HOST = "nqn.2026-11.io.meshblock:host:scale-bench"
# the bench's own reads load the controller it measures: probes and polls are paced so that they
# stay a small part of what is measured
GET_PROBE_INTERVAL = 0.25
LIST_PROBE_INTERVAL = 1.0
POLL_INTERVAL = 0.5


def log(*a) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *a, file=sys.stderr, flush=True)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))]


def summary_ms(seconds: list[float]) -> dict:
    ms = [x * 1000 for x in seconds]
    if not ms:
        return {"n": 0}
    return {"n": len(ms), "p50": round(percentile(ms, 50), 1), "p90": round(percentile(ms, 90), 1),
            "p99": round(percentile(ms, 99), 1), "max": round(max(ms), 1), "mean": round(statistics.fmean(ms), 1)}


# --- processes ---------------------------------------------------------------------------------------

class Controller:
    """A controller process (`python -m meshblock controller`), stopped by its PID."""

    def __init__(self, name: str, root: Path, store_url: str, src: Path, profile: bool, node_timeout: float,
                 heartbeat: float = 1.0):
        self.name = name
        self.root = root
        self.src = src
        self.sock = root / f"{name}.sock"
        self.endpoint = f"unix:{self.sock}"
        self.profile = root / f"{name}.prof" if profile else None
        self.argv = [sys.executable, *(["-m", "cProfile", "-o", str(self.profile)] if profile else []),
                     "-m", "meshblock", "controller", "--store", store_url, "--listen", self.endpoint,
                     "--identity", name, "--node-timeout", str(node_timeout), "--log-level", "INFO",
                     *(["--heartbeat-interval", str(heartbeat)] if heartbeat != 1.0 else [])]
        self.proc: subprocess.Popen | None = None
        self.channel: grpc.aio.Channel | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(self.src))
        with open(self.log, "ab") as out:
            # the source tree is the working directory: `python -m` looks there first
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         cwd=str(self.src), env=env, start_new_session=True)

    def stubs(self):
        if self.channel is None:
            self.channel = grpc.aio.insecure_channel(self.endpoint)
        return (pb_grpc.VolumeServiceStub(self.channel), pb_grpc.NodeServiceStub(self.channel),
                pb_grpc.ClusterServiceStub(self.channel))

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def log(self) -> Path:
        return self.root / f"{self.name}.log"

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def logged_at(self, offset: int, *needles: str) -> float | None:
        """The time (epoch seconds) of the first line since ``offset`` that contains every needle."""
        with open(self.log, "rb") as f:
            f.seek(offset)
            for line in f:
                if all(n.encode() in line for n in needles):
                    stamp = line[:23].decode(errors="replace")
                    with contextlib.suppress(ValueError):
                        return time.mktime(time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S")) + int(stamp[20:23]) / 1000
        return None

    def count_in_log(self, offset: int, needle: str) -> int:
        """Lines containing ``needle`` written to the log since ``offset``."""
        with open(self.log, "rb") as f:
            f.seek(offset)
            return sum(1 for line in f if needle.encode() in line)

    def kill(self) -> None:
        if self.running:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait()

    async def stop(self, timeout: float = 60.0) -> None:
        if self.channel is not None:
            await self.channel.close()
            self.channel = None
        if self.running:
            os.kill(self.pid, signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, timeout)
            except subprocess.TimeoutExpired:
                self.kill()


def etcd_writes(endpoint: str) -> int:
    """Raft proposals the etcd server has committed (one per write transaction)."""
    import urllib.request
    with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("etcd_server_proposals_committed_total "):
                return int(float(line.split()[1]))
    raise RuntimeError("etcd does not report etcd_server_proposals_committed_total")


def cpu_seconds(pid: int) -> float:
    return usage(pid)["cpu_s"]


# --- the bench --------------------------------------------------------------------------------------

class Bench:
    def __init__(self, args, root: Path):
        self.args = args
        self.root = root
        self.etcd: EtcdServer | None = None
        self.controllers: list[Controller] = []
        self.sim: SimProcess | None = None
        self.names: list[str] = []          # volumes created, in order
        self.next_index = 0
        self.leader: Controller | None = None
        self.node_ids: dict[str, str] = {}  # node name -> id
        self.result: dict = {}

    # --- set-up ---------------------------------------------------------------------------
    async def start(self) -> None:
        a = self.args
        src = Path(a.controller_src).resolve() if a.controller_src else REPO
        if a.store == "etcd":
            exe = find_etcd()
            if exe is None:
                raise SystemExit("etcd not found ($MESHBLOCK_ETCD, PATH, /usr/bin/etcd); use --store sqlite")
            (self.root / "etcd").mkdir()
            self.etcd = EtcdServer(exe, self.root / "etcd")
            await asyncio.to_thread(self.etcd.start)
            url = self.etcd.url("/meshblock-scale")
        else:
            url = f"sqlite:///{self.root / 'state.db'}"
        self.store_url = url
        n_ctl = 2 if a.store == "etcd" else 1
        self.controllers = [Controller(f"c{i + 1}", self.root, url, src, a.profile, a.node_timeout,
                                      a.heartbeat_interval)
                            for i in range(n_ctl)]
        for c in self.controllers:
            c.start()
        self.leader = await self.find_leader(60)
        log(f"controller {self.leader.name} leads ({a.store}); starting {a.nodes} simulated nodes")
        self.sim = SimProcess(self.root / "sim", a.nodes, [c.endpoint for c in self.controllers],
                              labels={"zone": [f"z{i}" for i in range(a.zones)]},
                              rebuild_mib_s=a.rebuild_mib_s, op_delay=a.op_delay / 1000, spread=min(10.0, a.nodes / 100),
                              digest_every=a.digest_every)
        t = time.monotonic()
        await self.sim.start()
        self.node_ids = {n["name"]: n["id"] for n in self.sim.nodes}
        await self.wait_nodes(a.nodes, 300)
        self.result["setup"] = {"nodes_registered_s": round(time.monotonic() - t, 1)}
        log(f"{a.nodes} nodes up after {time.monotonic() - t:.1f} s")

    async def find_leader(self, timeout: float) -> Controller:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for c in self.controllers:
                if not c.running:
                    continue
                try:
                    await c.stubs()[2].GetClusterStatus(pb.GetClusterStatusRequest(), timeout=2)
                    return c
                except grpc.aio.AioRpcError:
                    pass
            await asyncio.sleep(0.05)
        raise RuntimeError("no controller serves")

    async def wait_nodes(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(grpc.aio.AioRpcError):
                st = await self.leader.stubs()[2].GetClusterStatus(pb.GetClusterStatusRequest(), timeout=10)
                if st.nodes_up >= n:
                    return
            await asyncio.sleep(0.5)
        raise RuntimeError(f"{n} nodes not up within {timeout} s")

    @property
    def volumes(self) -> pb_grpc.VolumeServiceStub:
        return self.leader.stubs()[0]

    async def mark(self) -> dict:
        """Where a phase starts: see ``health_since``."""
        await self.sim.call("usage")   # resets the simulation's loop-lag maximum
        return {"t": time.monotonic(), "logs": {c.name: c.log_size() for c in self.controllers}}

    async def health_since(self, mark: dict) -> dict:
        """What went wrong around a phase that the phase did not cause on purpose: nodes the controllers
        declared down (log lines), heads the simulated nodes stopped because their head lease ran out
        (the controller did not answer their heartbeats in time), and how late the simulation's event
        loop ran at worst (were it late, heartbeats would be too)."""
        losses = await self.sim.call("lease_losses", since=mark["t"])
        u = await self.sim.call("usage")
        return {"nodes_declared_down": sum(c.count_in_log(mark["logs"].get(c.name, 0), " is down\n")
                                           for c in self.controllers),
                "head_lease_expiries": len(losses), "heads_stopped_by_lease": sum(n for *_, n in losses),
                "sim_loop_lag_max_ms": u["loop_lag_max_ms"]}

    # --- creating -------------------------------------------------------------------------
    def new_name(self) -> str:
        self.next_index += 1
        return f"v{self.next_index:07d}"

    async def create(self, name: str) -> float | None:
        """Create a volume and wait until it is available: the seconds that took (None: it failed)."""
        t = time.monotonic()
        req = pb.CreateVolumeRequest(name=name, size_bytes=self.args.size_mib * MiB, replicas=3, spread="zone")
        try:
            v = await self.volumes.CreateVolume(req, timeout=120)
            while v.state != "available":
                if time.monotonic() - t > 120:
                    return None
                await asyncio.sleep(0.1)
                v = await self.volumes.GetVolume(pb.GetVolumeRequest(ref=name), timeout=30)
        except grpc.aio.AioRpcError as e:
            log(f"create {name}: {e.code().name}: {e.details()}")
            return None
        self.names.append(name)
        return time.monotonic() - t

    async def fill_api(self, target: int) -> dict:
        need = target - len(self.names)
        sem = asyncio.Semaphore(self.args.concurrency)
        took: list[float] = []
        failed = 0

        async def one() -> None:
            nonlocal failed
            async with sem:
                d = await self.create(self.new_name())
                if d is None:
                    failed += 1
                else:
                    took.append(d)
                    if len(took) % 500 == 0:
                        log(f"  {len(self.names)} volumes")

        t = time.monotonic()
        await asyncio.gather(*(one() for _ in range(need)))
        dt = time.monotonic() - t
        return {"how": "admin API", "created": len(took), "failed": failed, "seconds": round(dt, 1),
                "creates_per_s": round(len(took) / dt, 1) if dt else None, "create_ms": summary_ms(took)}

    async def fill_direct(self, target: int) -> dict:
        """Write volume and replica records into the store as VolumeManager.create does, then wait for
        the controller to make them available."""
        from meshblock import nqn
        from meshblock.control.placement import Candidate, place
        from meshblock.control.repo import Repo
        from meshblock.model import Node, Replica, ReplicaState, Volume, VolumeState
        from meshblock.store import open_store

        store = open_store(self.store_url)
        await store.open()
        repo = Repo(store)
        try:
            nodes = await repo.list(Node)
            provisioned: dict[str, int] = {}
            for r in await repo.list(Replica):
                provisioned[r.node_id] = provisioned.get(r.node_id, 0) + r.size_bytes
            size = self.args.size_mib * MiB
            need = target - len(self.names)
            t = time.monotonic()
            new: list[str] = []
            batch: list = []

            async def flush() -> None:
                if batch:
                    await repo.commit(create=batch)
                    batch.clear()

            for _ in range(need):
                cands = [Candidate(node_id=n.id, name=n.name, up=True, schedulable=not (n.cordoned or n.draining),
                                   labels=n.labels, total_bytes=n.total_bytes,
                                   provisioned_bytes=provisioned.get(n.id, 0), block_size=n.pool_block_size)
                         for n in nodes]
                chosen = place(size, 3, cands, spread="zone").node_ids
                vid, name, now = str(uuid.uuid4()), self.new_name(), time.time()
                batch.append(Volume(id=vid, name=name, size_bytes=size, replicas=3, spread="zone",
                                    state=VolumeState.CREATING, stage="placed", nqn=nqn("volume", vid),
                                    namespace_uuid=vid, created_at=now))
                for node_id in chosen:
                    batch.append(Replica(id=str(uuid.uuid4()), volume_id=vid, node_id=node_id, size_bytes=size,
                                         state=ReplicaState.CREATING, created_at=now))
                    provisioned[node_id] = provisioned.get(node_id, 0) + size
                new.append(name)
                if len(batch) >= 80:      # 20 volumes: 100 etcd operations with their names, under 128
                    await flush()
            await flush()
            written = time.monotonic() - t
        finally:
            await store.close()
        log(f"  {len(new)} volumes written into the store in {written:.1f} s; waiting for the controller")
        deadline = time.monotonic() + max(300.0, len(new) * 0.2)
        pending = -1
        while time.monotonic() < deadline:
            with contextlib.suppress(grpc.aio.AioRpcError):
                pending = 0
                for state in ("creating", "faulted", "degraded"):
                    r = await self.volumes.ListVolumes(pb.ListVolumesRequest(state=state, page_size=1000), timeout=120)
                    pending += len(r.volumes)
                if pending == 0:
                    break
            await asyncio.sleep(1.0)
        self.names.extend(new)
        dt = time.monotonic() - t
        return {"how": "records written into the store, made available by the controller", "created": len(new),
                "not_available": pending, "write_seconds": round(written, 1), "seconds": round(dt, 1),
                "volumes_per_s": round(len(new) / dt, 1)}

    async def fill_seed(self, target: int) -> dict:
        """Seed the cluster to ``target`` volumes as if the controllers had made them, then start the
        controllers on it: with the controllers stopped (and the simulated heads' leases held, so no
        head stops meanwhile), every new volume's replicas, fenced exports, head and standby heads are
        made on its nodes through their AgentServicers in-process (the calls the controller makes,
        with the specs it builds), and its records are written into the store as settled. The
        controllers then start and take the cluster over as after a restart: each agent is listed
        once and a volume that matches its records needs no call. What that cost is measured."""
        from meshblock import nqn
        from meshblock.control.replicated import ReplicatedVolumes, head_spec
        from meshblock.control.repo import Repo
        from meshblock.model import Node, Replica, ReplicaState, Volume, VolumeState
        from meshblock.proto.meshblock.v1 import agent_pb2 as apb
        from meshblock.replication.layout import raid_slots
        from meshblock.store import open_store

        a = self.args
        size = a.size_mib * MiB
        store = open_store(self.store_url)
        await store.open()
        repo = Repo(store)
        nodes = {n.id: n for n in await repo.list(Node)}
        zones: dict[str, list[Node]] = {}
        for n in sorted(nodes.values(), key=lambda n: n.name):
            zones.setdefault(n.labels.get("zone", ""), []).append(n)
        zone_list = [zones[z] for z in sorted(zones)]
        if len(zone_list) < 3:
            raise SystemExit("seeding places one replica per zone: --zones must be 3 or more")
        for c in self.controllers:
            await c.stop()
        await self.sim.call("hold_leases", held=True)
        t0 = time.monotonic()
        need = target - len(self.names)
        b64 = lambda m: base64.b64encode(m.SerializeToString()).decode()   # noqa: E731
        seeded = 0
        base = len(self.names)      # volumes there before this fill (self.names grows as it goes)
        try:
            for start in range(0, need, a.seed_chunk):
                vols: list[tuple[Volume, list[Replica], list[Node]]] = []
                for i in range(base + start, base + min(need, start + a.seed_chunk)):
                    picked = [zone_list[(i + k) % len(zone_list)] for k in range(3)]
                    members = [zn[(i // len(zone_list) + k) % len(zn)] for k, zn in enumerate(picked)]
                    if i < a.hot_node_heads:   # one node heads these (the mass failover kills it)
                        picked = zone_list[:3]
                        members = [zone_list[0][0]] + [zn[(i + k) % len(zn)] for k, zn in enumerate(picked[1:], 1)]
                    vid, now = str(uuid.uuid4()), time.time()
                    v = Volume(id=vid, name=self.new_name(), size_bytes=size, replicas=3, spread="zone",
                               state=VolumeState.AVAILABLE, nqn=nqn("volume", vid), namespace_uuid=vid, created_at=now)
                    reps = [Replica(id=str(uuid.uuid4()), volume_id=vid, node_id=n.id, size_bytes=size,
                                    state=ReplicaState.ONLINE, created_at=now) for n in members]
                    vols.append((v, reps, members))
                # the replicas and their exports, fenced to the head (first) and the standbys
                calls = [[c for r, n in zip(reps, members)
                          for c in ((n.id, "CreateReplica", b64(apb.CreateReplicaRequest(replica_id=r.id,
                                                                                         size_bytes=size))),
                                    (n.id, "ExportReplica", b64(apb.ExportReplicaRequest(
                                        replica_id=r.id, allowed_host_nqns=sorted(m.host_nqn for m in members)))))]
                         for _, reps, members in vols]
                replies = await self.sim.call("invoke", timeout=600, volumes=calls)
                heads = []
                unsealed = SimpleNamespace(secrets=None)   # the seeded cluster keeps no secrets: no link keys
                for (v, reps, members), got in zip(vols, replies):
                    legs = []
                    for k, (r, n) in enumerate(zip(reps, members)):
                        made = apb.Replica.FromString(base64.b64decode(got[2 * k]))
                        e = apb.Export.FromString(base64.b64decode(got[2 * k + 1]))
                        r.size_bytes = made.size_bytes
                        legs.append(apb.HeadLeg(replica_id=r.id, node_id=n.id, subsystem_nqn=e.nqn, address=e.address,
                                                port=e.port, slot=0))
                    v.in_sync = sorted(r.id for r in reps)
                    spec = head_spec(v, legs, in_sync_replica_ids=v.in_sync, replica_count=raid_slots(v, reps))
                    heads.append([(n.id, "EnsureHead",
                                   b64(ReplicatedVolumes._with_cntlids(unsealed, spec, n, standby=k > 0)))
                                  for k, n in enumerate(members)])
                replies = await self.sim.call("invoke", timeout=600, volumes=heads)
                batch: list = []
                for (v, reps, members), got in zip(vols, replies):
                    sts = [apb.HeadStatus.FromString(base64.b64decode(x)) for x in got]
                    v.head_node_id, v.export_address, v.export_port = members[0].id, sts[0].address, sts[0].port
                    v.standby_paths = {n.id: f"{st.address}:{st.port}" for n, st in zip(members[1:], sts[1:])}
                    batch += [v, *reps]
                    self.names.append(v.name)
                    if len(batch) >= 80:      # 20 volumes: 100 etcd operations with their names, under 128
                        await repo.commit(create=batch)
                        batch = []
                if batch:
                    await repo.commit(create=batch)
                seeded += len(vols)
                log(f"  {len(self.names)} volumes seeded ({time.monotonic() - t0:.0f} s)")
        finally:
            await store.close()
        seed_s = time.monotonic() - t0
        # the controllers start on the seeded cluster, as after a restart of both
        await self.sim.call("reset_stats")
        t = time.monotonic()
        for c in self.controllers:
            c.start()
        self.leader = await self.find_leader(300)
        serving = time.monotonic() - t
        await self.wait_nodes(a.nodes, 300)
        await self.sim.call("hold_leases", held=False)
        # taken over once the calls a volume's visit makes (other than the per-node listings and
        # sweeps) have stopped for 10 s: where the lists matched the records there were none
        per_volume = ("EnsureHead", "ExportReplica", "GetReplica", "CreateReplica", "ResizeReplica")
        deadline = time.monotonic() + 900
        last, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            load = await self.sim.call("load")
            n = sum(load["calls"].get(m, 0) for m in per_volume)
            if n != last:
                last, quiet_since = n, time.monotonic()
            elif time.monotonic() - quiet_since > 10:
                break
            await asyncio.sleep(1.0)
        load = await self.sim.call("load")
        reapplied = await self.sim.call("head_applied", since=t)
        return {"how": "seeded: data plane through the agents in-process, records written settled; "
                       "then the controllers started", "created": seeded, "seed_seconds": round(seed_s, 1),
                "controllers_start_to_serving_s": round(serving, 2),
                "takeover_s": round(quiet_since - t, 1), "heads_reapplied_after_start": len(reapplied),
                "agent_calls_after_start": load}

    # --- measurements ---------------------------------------------------------------------
    async def under_load(self) -> dict:
        """Creates at --create-rate for --window seconds; GetVolume and ListVolumes probed meanwhile."""
        a = self.args
        creates: list[float] = []
        failed = 0
        gets: list[float] = []
        lists: list[float] = []
        stop = asyncio.Event()
        await self.sim.call("reset_stats")

        async def one_create() -> None:
            nonlocal failed
            d = await self.create(self.new_name())
            if d is None:
                failed += 1
            else:
                creates.append(d)

        async def creator() -> list[asyncio.Task]:
            tasks = []
            t0 = time.monotonic()
            i = 0
            while not stop.is_set():
                tasks.append(asyncio.create_task(one_create()))
                i += 1
                await asyncio.sleep(max(0.0, t0 + i / a.create_rate - time.monotonic()))
            return tasks

        async def get_probe() -> None:
            while not stop.is_set():
                name = random.choice(self.names)
                t = time.monotonic()
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await self.volumes.GetVolume(pb.GetVolumeRequest(ref=name), timeout=30)
                    gets.append(time.monotonic() - t)
                await asyncio.sleep(GET_PROBE_INTERVAL)

        async def list_probe() -> None:
            token = ""
            while not stop.is_set():
                t = time.monotonic()
                with contextlib.suppress(grpc.aio.AioRpcError):
                    r = await self.volumes.ListVolumes(pb.ListVolumesRequest(page_size=1000, page_token=token),
                                                       timeout=60)
                    lists.append(time.monotonic() - t)
                    token = r.next_page_token
                await asyncio.sleep(LIST_PROBE_INTERVAL)

        ctask = asyncio.create_task(creator())
        probes = [asyncio.create_task(get_probe()), asyncio.create_task(list_probe())]
        c0, t0 = cpu_seconds(self.leader.pid), time.monotonic()
        await asyncio.sleep(a.window)
        stop.set()
        cpu = (cpu_seconds(self.leader.pid) - c0) / (time.monotonic() - t0)
        tasks = await ctask
        await asyncio.gather(*probes)
        await asyncio.gather(*tasks)
        load = await self.sim.call("load")
        return {"create_rate_per_s": a.create_rate, "window_s": a.window,
                "create_to_available_ms": summary_ms(creates), "create_failed": failed,
                "get_volume_ms": summary_ms(gets), "list_volumes_1000_ms": summary_ms(lists),
                "controller_cpu_percent": round(cpu * 100, 1), "agent_calls": load}

    async def idle(self) -> dict:
        a = self.args
        await asyncio.sleep(3)
        await self.sim.call("reset_stats")
        s0 = await self.sim.call("usage")
        c0, t0 = cpu_seconds(self.leader.pid), time.monotonic()
        await asyncio.sleep(a.idle_window)
        dt = time.monotonic() - t0
        c1 = usage(self.leader.pid)
        s1 = await self.sim.call("usage")
        load = await self.sim.call("load")
        return {"controller_rss_mb": c1["rss_mb"], "controller_threads": c1["threads"],
                "controller_cpu_percent": round((c1["cpu_s"] - c0) / dt * 100, 1),
                "agent_calls_per_s": round(load["total_calls"] / dt, 1), "agent_calls": load["calls"],
                "sim_rss_mb": s1["rss_mb"], "sim_threads": s1["threads"],
                "sim_cpu_percent": round((s1["cpu_s"] - s0["cpu_s"]) / dt * 100, 1)}

    async def all_volumes(self) -> list[pb.Volume]:
        out, token = [], ""
        while True:
            r = await self.volumes.ListVolumes(pb.ListVolumesRequest(page_size=1000, page_token=token), timeout=120)
            out.extend(r.volumes)
            token = r.next_page_token
            if not token:
                return out

    async def mass_failover(self) -> dict:
        counts = await self.sim.call("head_counts")
        victim_name, n_heads = max(counts.items(), key=lambda kv: kv[1])
        victim = self.node_ids[victim_name]
        affected = [v for v in await self.all_volumes() if v.head_node_id == victim]
        _, nodes, _ = self.leader.stubs()
        log(f"  killing {victim_name}: it heads {n_heads} volumes ({len(affected)} as the controller sees it)")
        down_at: list[float] = []
        offset = self.leader.log_size()

        async def watch_down() -> None:
            # the failure detector logs the moment it records the node down: read there, so that
            # watching costs the controller nothing (GetNode reads every volume and replica record);
            # GetNode once a second in case the log says nothing recognisable
            polls = 0
            while True:
                at = self.leader.logged_at(offset, f"node {victim_name} ", " is down")
                if at is not None:
                    down_at.append(at - (time.time() - time.monotonic()))
                    return
                polls += 1
                if polls % 5 == 0:
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        n = await nodes.GetNode(pb.GetNodeRequest(ref=victim_name), timeout=10)
                        if n.state == "down":
                            down_at.append(time.monotonic())
                            return
                await asyncio.sleep(0.2)

        # Watched without polling every volume: each head move is an event the controller records
        # right after committing it (the commit that names the new head and its address, which is
        # what GetConnectInfo answers from), and one listing a second of the victim's volumes tells
        # when each new head served (its stage no longer "moving-head"). A GetConnectInfo per moved
        # volume at the end checks that the connect info names a live, optimized head.
        watcher = asyncio.create_task(watch_down())
        remaining = {v.id: v for v in affected}
        moved_at: dict[str, float] = {}
        served_at: dict[str, float] = {}
        wall = time.time() - time.monotonic()
        events = pb_grpc.EventServiceStub(self.leader.channel)
        stream = events.WatchEvents(pb.ListEventsRequest(since=time.time(), node=victim, kind="volume.head"))

        async def watch_moves() -> None:
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
                async for e in stream:
                    if e.object_id in remaining and e.fields.get("from_id") == victim:
                        moved_at.setdefault(e.object_id, e.time - wall)

        mover = asyncio.create_task(watch_moves())
        await self.sim.call("reset_stats")
        s0, c0 = await self.sim.call("usage"), cpu_seconds(self.leader.pid)
        w0 = etcd_writes(self.etcd.endpoint) if self.etcd is not None else 0
        killed_at = await self.sim.call("kill", node=victim)
        timeout = 120 + len(affected) * 0.05
        while len(served_at) < len(remaining) and time.monotonic() - killed_at < timeout:
            await asyncio.sleep(1.0)
            now, token = time.monotonic(), ""
            with contextlib.suppress(grpc.aio.AioRpcError):
                while True:
                    r = await self.volumes.ListVolumes(pb.ListVolumesRequest(page_size=1000, page_token=token,
                                                                             node_id=victim), timeout=120)
                    for v in r.volumes:
                        if v.id in remaining and v.head_node_id not in ("", victim) and v.stage != "moving-head":
                            served_at.setdefault(v.id, now)
                    token = r.next_page_token
                    if not token:
                        break
        dt = time.monotonic() - killed_at
        s1, c1 = await self.sim.call("usage"), cpu_seconds(self.leader.pid)
        load = await self.sim.call("load")
        w1 = etcd_writes(self.etcd.endpoint) if self.etcd is not None else 0
        stream.cancel()
        mover.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await mover
        sem = asyncio.Semaphore(16)
        wrong: list[str] = []

        async def check(vid: str) -> None:
            async with sem:
                info = await self.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref=vid, host_nqn=HOST), timeout=30)
                if not any(p.ana_state == "optimized" and p.node_id and p.node_id != victim for p in info.paths):
                    wrong.append(vid)

        with contextlib.suppress(grpc.aio.AioRpcError):
            await asyncio.gather(*(check(vid) for vid in served_at))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(watcher, 30)
        t_down = down_at[0] if down_at else float("nan")
        after = [t - t_down for t in moved_at.values()]
        served = [t - t_down for t in served_at.values()]
        not_moved = len(remaining) - len(moved_at)
        out = {"node": victim_name, "heads": n_heads, "affected": len(affected),
               "detected_s": round(t_down - killed_at, 2),
               "all_moved_s": round(max(after), 2) if after and not not_moved else None,
               "moved_after_down_ms": summary_ms(after), "not_moved": not_moved,
               "all_served_s": round(max(served), 2) if served and len(served) == len(remaining) else None,
               "served_after_down_ms": summary_ms(served), "not_served": len(remaining) - len(served),
               "connect_info_wrong": len(wrong),
               # from the kill until every head served (or the timeout)
               "controller_cpu_percent": round((c1 - c0) / dt * 100, 1),
               "sim_cpu_percent": round((s1["cpu_s"] - s0["cpu_s"]) / dt * 100, 1),
               "agent_calls": load["calls"], "etcd_writes": w1 - w0}
        # the node comes back: its replicas resync
        t = time.monotonic()
        await self.sim.call("revive", node=victim)
        with_replica, token = [], ""
        while True:
            r = await self.volumes.ListVolumes(pb.ListVolumesRequest(page_size=1000, page_token=token,
                                                                     node_id=victim), timeout=120)
            with_replica.extend(v.name for v in r.volumes)
            token = r.next_page_token
            if not token:
                break
        pending = set(with_replica)
        deadline = t + 120 + len(pending) * 0.05
        while pending and time.monotonic() < deadline:
            await asyncio.sleep(POLL_INTERVAL)
            token = ""
            with contextlib.suppress(grpc.aio.AioRpcError):
                while True:
                    r = await self.volumes.ListVolumes(pb.ListVolumesRequest(page_size=1000, page_token=token,
                                                                             node_id=victim), timeout=120)
                    for v in r.volumes:
                        if v.state == "available" and all(x.state == "online" for x in v.replica_status):
                            pending.discard(v.name)
                    token = r.next_page_token
                    if not token:
                        break
        out.update({"resync_volumes": len(with_replica), "resync_s": round(time.monotonic() - t, 2) if not pending
                    else None, "not_resynced": len(pending)})
        await self.wait_nodes(self.args.nodes, 60)
        return out

    async def controller_failover(self) -> dict:
        a = self.args
        old = self.leader
        other = next(c for c in self.controllers if c is not old)
        sample = self.names if len(self.names) <= a.confirm_sample else random.sample(self.names, a.confirm_sample)
        log(f"  killing controller {old.name} (pid {old.pid}); {other.name} should take over")
        killed_at = time.monotonic()
        old.kill()
        # serving: the standby answers the API (it won the lease and the nodes called in)
        while True:
            try:
                await other.stubs()[2].GetClusterStatus(pb.GetClusterStatusRequest(), timeout=2)
                break
            except grpc.aio.AioRpcError:
                if time.monotonic() - killed_at > 120:
                    raise RuntimeError("the standby controller does not serve 120 s after the leader died")
                await asyncio.sleep(0.05)
        serving = time.monotonic() - killed_at
        self.leader = other
        log(f"  {other.name} serves {serving:.2f} s after the kill")
        confirmed: list[float] = []
        unconfirmed = 0
        sem = asyncio.Semaphore(32)

        async def confirm(name: str) -> None:
            nonlocal unconfirmed
            async with sem:
                t = time.monotonic()
                req = pb.CreateVolumeRequest(name=name, size_bytes=a.size_mib * MiB, replicas=3, spread="zone")
                try:
                    v = await other.stubs()[0].CreateVolume(req, timeout=60)
                except grpc.aio.AioRpcError as e:
                    log(f"  confirm {name}: {e.code().name}: {e.details()}")
                    unconfirmed += 1
                    return
                # the controller answers after at most 30 s whether or not it has applied the volume
                if v.state == "available" and time.monotonic() - t < 29.5:
                    confirmed.append(time.monotonic() - killed_at)
                else:
                    unconfirmed += 1

        await asyncio.gather(*(confirm(n) for n in sample))
        # heads the new leader had to apply again (none where the agents' listings matched the records)
        reapplied = await self.sim.call("head_applied", since=killed_at)
        losses = await self.sim.call("lease_losses", since=killed_at)
        # the old leader comes back as the standby
        old.start()
        return {"killed": old.name, "serving_s": round(serving, 2), "confirm_sample": len(sample),
                "confirmed_api_s": {"p50": round(percentile(confirmed, 50), 2), "max": round(max(confirmed), 2)}
                if confirmed else None, "unconfirmed": unconfirmed,
                "heads_reapplied": len(reapplied),
                "head_lease_expiries": {"nodes": len({n for n, _, _ in losses}), "heads_stopped": sum(k for *_, k in losses)}}

    # --- the run --------------------------------------------------------------------------
    async def run(self) -> None:
        a = self.args
        curve = [int(x) for x in a.curve.split(",") if x.strip()]
        if a.volumes and a.volumes not in curve:
            curve = sorted(set(curve + [a.volumes]))
        await self.start()
        self.result["checkpoints"] = []
        for target in curve:
            cp: dict = {"volumes_target": target}
            self.result["checkpoints"].append(cp)
            log(f"checkpoint {target}: filling from {len(self.names)} volumes")
            fill = {"direct": self.fill_direct, "seed": self.fill_seed}.get(a.fill, self.fill_api)
            steps = [("fill", functools.partial(fill, target)),
                     ("under_load", self.under_load), ("idle", self.idle), ("mass_failover", self.mass_failover)]
            if len(self.controllers) > 1:
                steps.append(("controller_failover", self.controller_failover))
            try:
                for name, step in steps:
                    m = await self.mark()
                    cp[name] = await step()
                    cp[name]["health"] = await self.health_since(m)
                    log(f"  {name}: {json.dumps(cp[name])}")
                    if name == "controller_failover":
                        self.leader = await self.find_leader(60)
                cp["volumes"] = len(self.names)
            except Exception as e:  # noqa: BLE001 - keep what was measured, say what failed
                cp["error"] = f"{type(e).__name__}: {e}"
                log(f"  checkpoint {target} failed: {traceback.format_exc()}")
                break

    async def stop(self) -> None:
        if self.sim is not None:
            with contextlib.suppress(Exception):
                await self.sim.stop()
        for c in self.controllers:
            with contextlib.suppress(Exception):
                await c.stop()
        if self.etcd is not None:
            await asyncio.to_thread(self.etcd.stop)
        if self.args.profile:
            self.result["profile"] = {}
            for c in self.controllers:
                if c.profile is not None and c.profile.exists():
                    buf = io.StringIO()
                    st = pstats.Stats(str(c.profile), stream=buf)
                    st.sort_stats("tottime").print_stats(25)
                    st.sort_stats("cumulative").print_stats(40)
                    self.result["profile"][c.name] = buf.getvalue()
                    print(f"--- profile of controller {c.name}\n{buf.getvalue()}", file=sys.stderr)


def table(result: dict) -> str:
    rows = [("volumes", "create p50/p99 ms", "Get p99 ms", "List1000 p99 ms", "ctl RSS MB", "ctl idle CPU %",
             "agent calls/s idle", "failover: heads, all moved/served s", "resync s", "ctl failover serve/confirm s")]
    for cp in result.get("checkpoints", []):
        ul, idle, mf = cp.get("under_load", {}), cp.get("idle", {}), cp.get("mass_failover", {})
        cf = cp.get("controller_failover") or {}
        cr = ul.get("create_to_available_ms", {})
        conf = cf.get("confirmed_api_s") or {}
        rows.append((str(cp.get("volumes", cp["volumes_target"])), f"{cr.get('p50', '-')}/{cr.get('p99', '-')}",
                     str(ul.get("get_volume_ms", {}).get("p99", "-")),
                     str(ul.get("list_volumes_1000_ms", {}).get("p99", "-")), str(idle.get("controller_rss_mb", "-")),
                     str(idle.get("controller_cpu_percent", "-")), str(idle.get("agent_calls_per_s", "-")),
                     f"{mf.get('affected', '-')}, {mf.get('all_moved_s', '-')}/{mf.get('all_served_s', '-')}", str(mf.get("resync_s", "-")),
                     f"{cf.get('serving_s', '-')}/{conf.get('max', '-')}" if cf else "-"))
        if cp.get("error"):
            rows.append((f"  error: {cp['error']}",) + ("",) * 9)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


async def amain(args) -> dict:
    root = Path(tempfile.mkdtemp(prefix="mbscale-"))
    bench = Bench(args, root)
    bench.result.update({"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": platform.node(),
                         "cpus": os.cpu_count(), "python": platform.python_version(),
                         "args": vars(args), "controller_src": str(args.controller_src or REPO), "work_dir": str(root),
                         "fill": "admin API" if args.fill == "api" else
                         "direct: records written into the store through meshblock's Repo, then the controller "
                         "made them available"})
    t = time.monotonic()
    # SIGTERM, and SIGINT also where a background start ignores it, end the run with the clean-up below
    loop, me = asyncio.get_running_loop(), asyncio.current_task()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, me.cancel)
    try:
        await bench.run()
    finally:
        await bench.stop()
        bench.result["seconds"] = round(time.monotonic() - t, 1)
        if not args.keep:
            import shutil
            shutil.rmtree(root, ignore_errors=True)
        else:
            log(f"logs kept in {root}")
    return bench.result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nodes", type=int, default=50)
    p.add_argument("--curve", default="200,1000", help="checkpoints: volume counts, comma-separated")
    p.add_argument("--volumes", type=int, default=0, help="a last checkpoint (added to --curve)")
    p.add_argument("--store", choices=["etcd", "sqlite"], default="etcd")
    p.add_argument("--fill", choices=["api", "direct", "seed"], default="api")
    p.add_argument("--seed-chunk", type=int, default=500, help="volumes seeded per round trip (--fill seed)")
    p.add_argument("--hot-node-heads", type=int, default=0,
                   help="--fill seed: the first N volumes are all headed by one node, the one the mass failover "
                        "kills")
    p.add_argument("--concurrency", type=int, default=16, help="creates in flight while filling through the API")
    p.add_argument("--create-rate", type=float, default=2.0, help="background creates per second while measuring")
    p.add_argument("--window", type=float, default=20.0, help="seconds of creates and probes per checkpoint")
    p.add_argument("--idle-window", type=float, default=10.0)
    p.add_argument("--size-mib", type=int, default=64)
    p.add_argument("--zones", type=int, default=3)
    p.add_argument("--node-timeout", type=float, default=3.0)
    p.add_argument("--heartbeat-interval", type=float, default=1.0,
                   help="seconds between heartbeats (large clusters: longer, with a longer --node-timeout)")
    p.add_argument("--rebuild-mib-s", type=float, default=2048, help="simulated rebuild rate of one raid member")
    p.add_argument("--op-delay", type=float, default=0.0, help="ms every simulated agent call takes")
    p.add_argument("--digest-every", type=float, default=10.0,
                   help="seconds between a simulated node's digests of its heads and replicas (all nodes share "
                        "one process here, where a real node takes its own)")
    p.add_argument("--confirm-sample", type=int, default=500,
                   help="volumes probed for confirmation after a controller failover")
    p.add_argument("--controller-src", default="", help="source tree the controllers run from (default: this one)")
    p.add_argument("--profile", action="store_true", help="run the controllers under cProfile")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, store)")
    p.add_argument("--out", default="")
    args = p.parse_args()
    try:
        result = asyncio.run(amain(args))
    except (asyncio.CancelledError, KeyboardInterrupt):
        log("stopped; every process the bench started has been stopped")
        sys.exit(130)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))


if __name__ == "__main__":
    main()
