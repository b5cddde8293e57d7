"""A SimCluster in a process of its own, driven over its standard input and output.

    python -m tests.support.sim.serve --root DIR --nodes 1000 --controllers unix:/path/c.sock \\
        --label zone=a,b,c

A benchmark keeps its own event loop free for measuring this way. Once every node is started the
process prints one JSON line ``{"ready": true, "pid": ..., "nodes": [...]}``; then each line it
reads is a request ``{"id": 1, "op": "kill", "node": "sim-0003"}`` and it answers each with one
line ``{"id": 1, "ok": true, "result": ...}`` (or ``"ok": false, "error": "..."``). Operations:
kill, revive, restart_agent (node: id or name), head_counts, heads_of (node), head_applied
(since: a CLOCK_MONOTONIC time; volumes: optional list), lease_losses (since), describe (volumes),
invoke (volumes: agent calls made in-process, for seeding), hold_leases (held),
load, stats, reset_stats, usage, nodes, stop. ``SimProcess`` is the client.
"""

from __future__ import annotations

import argparse
import base64
import asyncio
import contextlib
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

from .cluster import GiB, SimCluster

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[3]


def usage(pid: int | None = None) -> dict:
    """RSS, CPU seconds and threads of a process, from /proc."""
    pid = pid or os.getpid()
    with open(f"/proc/{pid}/status") as f:
        status = dict(line.split(":", 1) for line in f if ":" in line)
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    # a process that has exited but not been reaped has no VmRSS
    return {"pid": pid, "rss_mb": round(int(status.get("VmRSS", "0 kB").split()[0]) / 1024, 1),
            "threads": int(status["Threads"]), "cpu_s": (int(fields[11]) + int(fields[12])) / tck,
            "fds": len(os.listdir(f"/proc/{pid}/fd")) if pid == os.getpid() else None}


class Server:
    def __init__(self, sim: SimCluster):
        self.sim = sim
        self.stopping = asyncio.Event()

    def nodes(self) -> list[dict]:
        return [{"id": n.node_id, "name": n.name, "endpoint": n.endpoint, "alive": n.alive,
                 "labels": n.config.labels} for n in self.sim.nodes]

    async def handle(self, req: dict):
        op = req.get("op")
        sim = self.sim
        if op == "kill":
            await sim.node(req["node"]).kill()
            return time.monotonic()
        if op == "revive":
            await sim.node(req["node"]).revive()
            return time.monotonic()
        if op == "restart_agent":
            await sim.node(req["node"]).restart_agent(float(req.get("downtime", 0)))
            return time.monotonic()
        if op == "head_counts":
            return {name: len(vids) for name, vids in sim.heads().items()}
        if op == "heads_of":
            return sim.heads().get(sim.node(req["node"]).name, [])
        if op == "head_applied":
            since = float(req.get("since", 0))
            wanted = set(req["volumes"]) if req.get("volumes") is not None else None
            return {vid: list(v) for vid, v in sim.head_applied.items()
                    if v[1] >= since and (wanted is None or vid in wanted)}
        if op == "invoke":
            # {"volumes": [[[node id, method, base64 request], ...], ...]} -> base64 replies
            got = await sim.invoke([[(n, m, base64.b64decode(b)) for n, m, b in calls] for calls in req["volumes"]])
            return [[base64.b64encode(b).decode() for b in replies] for replies in got]
        if op == "hold_leases":
            sim.leases_held = bool(req["held"])
            return sim.leases_held
        if op == "describe":
            return {vid: sim.describe(vid) for vid in req["volumes"]}
        if op == "lease_losses":
            since = float(req.get("since", 0))
            return [[name, t, len(vids)] for name, t, vids in sim.lease_losses if t >= since]
        if op == "load":
            return sim.load()
        if op == "stats":
            return sim.stats()
        if op == "reset_stats":
            sim.reset_stats()
            return True
        if op == "usage":
            return dict(usage(), loop_lag_max_ms=round(sim.take_loop_lag() * 1000, 1))
        if op == "nodes":
            return self.nodes()
        if op == "stop":
            self.stopping.set()
            return True
        raise ValueError(f"unknown op {op!r}")

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 24)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

        async def one(req: dict) -> None:
            try:
                out = {"id": req.get("id"), "ok": True, "result": await self.handle(req)}
            except Exception as e:  # noqa: BLE001 - reported to the client
                out = {"id": req.get("id"), "ok": False, "error": f"{type(e).__name__}: {e}"}
            sys.stdout.write(json.dumps(out) + "\n")
            sys.stdout.flush()

        while not self.stopping.is_set():
            reading = asyncio.ensure_future(reader.readline())
            stopping = asyncio.ensure_future(self.stopping.wait())
            await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not reading.done():
                reading.cancel()
                break
            line = reading.result()
            if not line:
                break        # the client went away
            asyncio.ensure_future(one(json.loads(line)))


def parse_labels(items: list[str]) -> dict[str, list[str]]:
    return {k: v.split(",") for k, _, v in (i.partition("=") for i in items)}


async def amain(args) -> None:
    sim = SimCluster(Path(args.root), pool_bytes=int(args.pool_gib * GiB), rebuild_rate=args.rebuild_mib_s * (1 << 20),
                     op_delay=args.op_delay, first_port=args.first_port, digest_every=args.digest_every)
    server = Server(sim)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.stopping.set)
    try:
        await sim.start(args.nodes, args.controllers, labels=parse_labels(args.label), spread=args.spread)
        sys.stdout.write(json.dumps({"ready": True, "pid": os.getpid(), "nodes": server.nodes()}) + "\n")
        sys.stdout.flush()
        await server.serve()
    finally:
        await sim.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", required=True)
    p.add_argument("--nodes", type=int, required=True)
    p.add_argument("--controllers", required=True, help="comma-separated controller endpoints")
    p.add_argument("--label", action="append", default=[], help="KEY=v1,v2,...: node i gets v[i %% n]")
    p.add_argument("--pool-gib", type=float, default=1024)
    p.add_argument("--rebuild-mib-s", type=float, default=2048)
    p.add_argument("--op-delay", type=float, default=0.0)
    p.add_argument("--digest-every", type=float, default=10.0, help="seconds between a node's digests")
    p.add_argument("--first-port", type=int, default=20000)
    p.add_argument("--spread", type=float, default=0.0, help="seconds over which nodes first register")
    p.add_argument("--log-level", default="WARNING")
    args = p.parse_args()
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s sim %(name)s: %(message)s")
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    asyncio.run(amain(args))


class SimProcess:
    """Client of a SimCluster served by ``python -m tests.support.sim.serve`` in a child process."""

    def __init__(self, root: Path, nodes: int, controllers: list[str], *, labels: dict[str, list[str]] | None = None,
                 pool_gib: float = 1024, rebuild_mib_s: float = 2048, op_delay: float = 0.0, spread: float = 0.0,
                 log_level: str = "WARNING", first_port: int = 20000, digest_every: float = 10.0):
        self.root = Path(root)
        self.argv = [sys.executable, "-m", "tests.support.sim.serve", "--root", str(self.root), "--nodes", str(nodes),
                     "--controllers", ",".join(controllers), "--pool-gib", str(pool_gib), "--rebuild-mib-s",
                     str(rebuild_mib_s), "--op-delay", str(op_delay), "--spread", str(spread), "--log-level",
                     log_level, "--first-port", str(first_port), "--digest-every", str(digest_every)]
        for k, vals in (labels or {}).items():
            self.argv += ["--label", f"{k}={','.join(vals)}"]
        self.proc: asyncio.subprocess.Process | None = None
        self.nodes: list[dict] = []
        self._next = 0
        self._waiting: dict[int, asyncio.Future] = {}
        self._reader: asyncio.Task | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def log(self) -> Path:
        return self.root / "sim.log"

    async def start(self, timeout: float = 300.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        with open(self.log, "ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, cwd=str(REPO), env=env,
                start_new_session=True, limit=1 << 26)
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except TimeoutError:
            raise RuntimeError(f"simulated cluster not ready within {timeout} s; see {self.log}") from None
        if not line:
            raise RuntimeError(f"simulated cluster exited ({await self.proc.wait()}); see {self.log}")
        self.nodes = json.loads(line)["nodes"]
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                break
            msg = json.loads(line)
            fut = self._waiting.pop(msg.get("id"), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(RuntimeError("simulated cluster process ended"))

    async def call(self, op: str, timeout: float = 120.0, **kw):
        assert self.proc is not None and self.proc.stdin is not None
        self._next += 1
        fut = asyncio.get_running_loop().create_future()
        self._waiting[self._next] = fut
        self.proc.stdin.write((json.dumps(dict(kw, id=self._next, op=op)) + "\n").encode())
        await self.proc.stdin.drain()
        msg = await asyncio.wait_for(fut, timeout)
        if not msg["ok"]:
            raise RuntimeError(f"sim {op}: {msg['error']}")
        return msg["result"]

    async def stop(self, timeout: float = 30.0) -> None:
        """Ask the process to stop its nodes and exit; SIGKILL by PID if it does not in time."""
        if self.proc is None:
            return
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                await self.call("stop", timeout=5)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGKILL)
                await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


if __name__ == "__main__":
    main()
