"""Processes, SPDK calls, spdk_nvme_perf runs and CPU accounting for bench/data_path.py.

Everything started here is recorded in a `Procs` registry and stopped by PID (SIGTERM, then
SIGKILL after a bound). CPU use is read from /proc/<pid>/stat and /proc/<pid>/task/<tid>/stat
(utime + stime), with each thread's allowed CPUs and the CPU it last ran on, so a run can be
checked for a polling process sharing a core with the host.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from meshblock.spdk.discovery import SpdkInstall

CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = len(os.sched_getaffinity(0))


def log(*a) -> None:
    import sys
    print(f"[{time.strftime('%H:%M:%S')}]", *a, file=sys.stderr, flush=True)


# --- /proc ----------------------------------------------------------------------------------------

def _stat_fields(path: str) -> tuple[str, list[str]] | None:
    try:
        raw = Path(path).read_text()
    except OSError:
        return None
    head, tail = raw.rsplit(")", 1)
    return head.split("(", 1)[1], tail.split()


def proc_ticks(pid: int) -> int | None:
    st = _stat_fields(f"/proc/{pid}/stat")
    if st is None:
        return None
    f = st[1]
    return int(f[11]) + int(f[12])


def alive(pid: int) -> bool:
    st = _stat_fields(f"/proc/{pid}/stat")
    return st is not None and st[1][0] != "Z"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def allowed_cpus(tid: int) -> str:
    try:
        cpus = sorted(os.sched_getaffinity(tid))
    except OSError:
        return "?"
    return ",".join(str(c) for c in cpus)


def threads(pid: int) -> dict[int, tuple[str, int, int]]:
    """tid -> (name, cpu ticks, last cpu)."""
    out = {}
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return out
    for tid in tids:
        st = _stat_fields(f"/proc/{pid}/task/{tid}/stat")
        if st is None:
            continue
        name, f = st
        out[tid] = (name, int(f[11]) + int(f[12]), int(f[36]))
    return out


def all_proc_ticks() -> dict[int, tuple[str, int]]:
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        st = _stat_fields(f"/proc/{d}/stat")
        if st is None:
            continue
        out[int(d)] = (st[0], int(st[1][11]) + int(st[1][12]))
    return out


def cpu_times() -> dict[str, tuple[int, int]]:
    """cpuN -> (busy, total) jiffies from /proc/stat."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if not line.startswith("cpu"):
            break
        parts = line.split()
        vals = [int(x) for x in parts[1:]]
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
        total = sum(vals[:8])
        out[parts[0]] = (total - idle, total)
    return out


class CpuWindow:
    """CPU use of labelled processes (and their busy threads), per core, and of the rest of the machine."""

    def __init__(self, pids: dict[str, int], exclude: set[int] | None = None):
        self.pids = dict(pids)
        self.exclude = set(exclude or ())
        self.t0 = time.monotonic()
        self.load0 = os.getloadavg()
        self.cpu0 = cpu_times()
        self.proc0 = {k: proc_ticks(p) for k, p in self.pids.items()}
        self.thr0 = {k: threads(p) for k, p in self.pids.items()}
        self.all0 = all_proc_ticks()
        self.extra_end: dict[str, int] = {}

    def add(self, label: str, pid: int) -> None:
        """A process started inside the window (e.g. the perf host): counted from zero."""
        self.pids[label] = pid
        self.proc0[label] = 0
        self.thr0[label] = {}

    def end_sample(self, label: str) -> None:
        """Read a process's totals now (before it is reaped)."""
        t = proc_ticks(self.pids[label])
        if t is not None:
            self.extra_end[label] = t

    def close(self) -> dict:
        wall = max(time.monotonic() - self.t0, 1e-6)
        cpu1 = cpu_times()
        all1 = all_proc_ticks()
        procs = {}
        ours = set(self.pids.values()) | self.exclude
        for label, pid in self.pids.items():
            t1 = self.extra_end.get(label, proc_ticks(pid))
            t0 = self.proc0.get(label)
            if t1 is None or t0 is None:
                continue
            entry = {"pid": pid, "cpu_percent": round(100 * (t1 - t0) / CLK_TCK / wall, 1),
                     "allowed_cpus": allowed_cpus(pid)}
            busy = []
            th1 = threads(pid)
            for tid, (name, ticks, last) in th1.items():
                before = self.thr0.get(label, {}).get(tid)
                d = ticks - (before[1] if before else 0)
                pct = 100 * d / CLK_TCK / wall
                if pct >= 5:
                    busy.append({"thread": name, "tid": tid, "cpu_percent": round(pct, 1),
                                 "allowed_cpus": allowed_cpus(tid), "last_cpu": last})
            if busy:
                entry["busy_threads"] = sorted(busy, key=lambda b: -b["cpu_percent"])
            procs[label] = entry
        per_core = {}
        for k, (b1, t1) in cpu1.items():
            b0, t0 = self.cpu0.get(k, (b1, t1))
            if t1 > t0:
                per_core[k] = round(100 * (b1 - b0) / (t1 - t0), 1)
        others = []
        for pid, (name, t1) in all1.items():
            if pid in ours or pid == os.getpid():
                continue
            t0 = self.all0.get(pid, (name, 0))[1] if pid in self.all0 else 0
            pct = 100 * (t1 - t0) / CLK_TCK / wall
            if pct >= 2:
                others.append({"pid": pid, "name": name, "cpu_percent": round(pct, 1),
                               "cmd": cmdline(pid)[:100]})
        others.sort(key=lambda o: -o["cpu_percent"])
        return {"wall_s": round(wall, 2), "loadavg_start": [round(x, 2) for x in self.load0],
                "loadavg_end": [round(x, 2) for x in os.getloadavg()], "busy_percent_per_cpu": per_core,
                "processes": procs, "other_processes": others[:6],
                "other_processes_cpu_percent": round(sum(o["cpu_percent"] for o in others), 1)}


# --- process registry -----------------------------------------------------------------------------

@dataclass
class Started:
    label: str
    pid: int
    popen: subprocess.Popen | None = None


class Procs:
    def __init__(self) -> None:
        self.items: list[Started] = []
        self.lock = threading.Lock()

    def add(self, label: str, pid: int, popen: subprocess.Popen | None = None) -> Started:
        s = Started(label, pid, popen)
        with self.lock:
            self.items.append(s)
        return s

    def spawn(self, label: str, argv: list[str], log_file: Path, env: dict | None = None,
              cwd: Path | None = None) -> Started:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "ab") as out:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True, env=env, cwd=str(cwd) if cwd else None)
        return self.add(label, p.pid, p)

    def stop(self, s: Started, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
        stop_pids([s.pid], timeout, sig)
        if s.popen is not None:
            with contextlib.suppress(Exception):
                s.popen.wait(1)
        with self.lock:
            if s in self.items:
                self.items.remove(s)

    def stop_all(self, timeout: float = 10.0) -> list[int]:
        with self.lock:
            items = list(reversed(self.items))
            self.items.clear()
        left = stop_pids([s.pid for s in items], timeout)
        for s in items:
            if s.popen is not None:
                with contextlib.suppress(Exception):
                    s.popen.wait(1)
        return left


def kill_pid(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def stop_pids(pids: list[int], timeout: float = 10.0, sig: int = signal.SIGTERM) -> list[int]:
    """Signal each pid, wait (bounded), SIGKILL what is left; returns pids still alive at the end."""
    pids = [p for p in pids if alive(p)]
    for p in pids:
        kill_pid(p, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [p for p in pids if alive(p)]
        if not pids:
            return []
        time.sleep(0.05)
    for p in pids:
        kill_pid(p, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def wait_gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.02)
    return not any(alive(p) for p in pids)


def port_free(addr: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((addr, port))
        except OSError:
            return False
    return True


def free_port_pair(addrs: list[str], start: int) -> int:
    for p in range(start, start + 2000, 2):
        if all(port_free(a, p) and port_free(a, p + 1) for a in addrs):
            return p
    raise RuntimeError("no free port pair found")


# --- SPDK -----------------------------------------------------------------------------------------

class CommandLog:
    """Every external command the bench runs, in order, for the report."""

    def __init__(self) -> None:
        self.entries: list[dict] = []

    def add(self, section: str, argv: list[str] | str, note: str = "") -> None:
        cmd = argv if isinstance(argv, str) else shlex.join(str(a) for a in argv)
        e = {"section": section, "cmd": cmd}
        if note:
            e["note"] = note
        self.entries.append(e)


class RpcError(RuntimeError):
    pass


@dataclass
class Target:
    """One nvmf_tgt started by the bench."""
    name: str
    spdk: SpdkInstall
    sock: Path
    started: Started
    argv: list[str]
    cmds: CommandLog
    section: str = ""

    def rpc(self, *args: str, timeout: float = 60.0, record: bool = True) -> str:
        argv = [str(self.spdk.program("rpc.py")), "-s", str(self.sock), "-t", str(int(timeout)), *args]
        if record:
            self.cmds.add(self.section, argv)
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 15, check=False)
        if r.returncode:
            raise RpcError(f"{self.name}: {' '.join(args)} failed: {r.stdout.strip()} {r.stderr.strip()}"[:2000])
        return r.stdout.strip()


def start_target(procs: Procs, spdk: SpdkInstall, name: str, workdir: Path, cpumask: str, interrupt: bool,
                 cmds: CommandLog, section: str, mem_mb: int = 1024, json_config: Path | None = None,
                 start_timeout: float = 45.0) -> Target:
    workdir.mkdir(parents=True, exist_ok=True)
    sock = workdir / f"{name}.sock"
    argv = [str(spdk.program("nvmf_tgt")), "--no-huge", "-s", str(mem_mb), "-m", cpumask, "--no-pci",
            "--disable-cpumask-locks", "-r", str(sock)]
    if interrupt:
        argv.append("--interrupt-mode")
    if json_config is not None:
        argv += ["--json", str(json_config)]
    cmds.add(section, argv, f"{name} (background)")
    started = procs.spawn(f"{section}/{name}", argv, workdir / f"{name}.log")
    t = Target(name, spdk, sock, started, argv, cmds, section)
    deadline = time.monotonic() + start_timeout
    while True:
        if not alive(started.pid):
            raise RuntimeError(f"{name} exited while starting: {tail(workdir / f'{name}.log')}")
        if sock.exists():
            r = subprocess.run([str(spdk.program("rpc.py")), "-s", str(sock), "-t", "2", "spdk_get_version"],
                               capture_output=True, text=True, timeout=20, check=False)
            if r.returncode == 0:
                return t
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not answer on {sock} within {start_timeout:g}s")
        time.sleep(0.2)


def tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return f"(no {path})"


# --- spdk_nvme_perf -------------------------------------------------------------------------------

_TOTAL = re.compile(r"^Total\s*:\s*(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$", re.MULTILINE)
_PCT = re.compile(r"^\s*(\d+\.\d+)%\s*:\s*([\d.]+)us", re.MULTILINE)


def trid(traddr: str, port: int | str, subnqn: str, hostnqn: str) -> str:
    return f"trtype:tcp adrfam:ipv4 traddr:{traddr} trsvcid:{port} subnqn:{subnqn} hostnqn:{hostnqn}"


@dataclass
class PerfSpec:
    rw: str            # randread | randwrite | read | write
    qd: int
    io_size: int
    seconds: int
    warmup: int = 0
    number_ios: str = ""     # -d (count or N%)
    latency_summary: bool = False

    @property
    def key(self) -> str:
        size = f"{self.io_size // 1024}k"
        return f"{self.rw}_{size}_qd{self.qd}"


def perf_argv(spdk: SpdkInstall, spec: PerfSpec, trid_s: str, cpumask: str) -> list[str]:
    argv = [str(spdk.program("spdk_nvme_perf")), "--no-huge", "-s", "1024", "-c", cpumask,
            "-q", str(spec.qd), "-o", str(spec.io_size), "-w", spec.rw, "-t", str(spec.seconds)]
    if spec.warmup:
        argv += ["-a", str(spec.warmup)]
    if spec.number_ios:
        argv += ["-d", spec.number_ios]
    if spec.latency_summary:
        argv.append("-L")
    return argv + ["-r", trid_s]


def parse_perf(out: str) -> dict:
    m = _TOTAL.search(out)
    if not m:
        return {}

    def num(s: str) -> float:
        try:
            return float(s)
        except ValueError:
            return float("nan")

    r = {"iops": round(num(m.group(1)), 1), "mib_s": round(num(m.group(2)), 1),
         "lat_avg_us": round(num(m.group(3)), 1), "lat_min_us": round(num(m.group(4)), 1),
         "lat_max_us": round(num(m.group(5)), 1)}
    pct = {float(a): float(b) for a, b in _PCT.findall(out)}
    for want, name in ((50.0, "lat_p50_us"), (99.0, "lat_p99_us"), (99.9, "lat_p99_9_us")):
        if want in pct:
            r[name] = round(pct[want], 1)
    return r


def run_perf(spdk: SpdkInstall, spec: PerfSpec, trid_s: str, cpumask: str, cmds: CommandLog, section: str,
             watch: dict[str, int] | None = None, timeout: float | None = None,
             exclude: set[int] | None = None) -> dict:
    """One spdk_nvme_perf run; CPU of `watch` processes (and of perf itself) over the run."""
    argv = perf_argv(spdk, spec, trid_s, cpumask)
    cmds.add(section, argv)
    timeout = timeout or (spec.seconds + spec.warmup + 90)
    win = CpuWindow(watch or {}, exclude)
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True)
    win.add("host/spdk_nvme_perf", p.pid)
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.append(p.stdout.read()), daemon=True)
    reader.start()
    timed_out = False
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                # wait for the exit without reaping, so its CPU totals can still be read
                info = os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
            except ChildProcessError:
                break
            if info is not None:
                break
            if time.monotonic() > deadline:
                timed_out = True
                kill_pid(p.pid, signal.SIGKILL)
                deadline = time.monotonic() + 10
            time.sleep(0.02)
        win.end_sample("host/spdk_nvme_perf")
    finally:
        with contextlib.suppress(Exception):
            p.wait(15)
        reader.join(10)
    wall = time.monotonic() - t0
    out = b"".join(chunks).decode(errors="replace")
    res = {"spec": spec.__dict__, "cmd": shlex.join(argv), "rc": p.returncode, "wall_s": round(wall, 2),
           **parse_perf(out)}
    if timed_out:
        res["error"] = f"timed out after {timeout:g}s"
    if p.returncode or "iops" not in res:
        res["output_tail"] = out[-1500:]
    res["cpu"] = win.close()
    return res


def perf_once(spdk: SpdkInstall, trid_s: str, cpumask: str, timeout: float = 20.0) -> tuple[bool, float, str]:
    """A single 4 KiB read (perf -q 1 -d 1): ok?, wall seconds, output tail."""
    spec = PerfSpec("randread", 1, 4096, 1, number_ios="1")
    argv = perf_argv(spdk, spec, trid_s, cpumask)
    t0 = time.monotonic()
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, start_new_session=True,
                           check=False)
    except subprocess.TimeoutExpired:
        return False, time.monotonic() - t0, "timeout"
    out = r.stdout + r.stderr
    ok = r.returncode == 0 and bool(_TOTAL.search(out))
    return ok, time.monotonic() - t0, out[-600:]


@dataclass
class Sampler:
    """Polls a callable every `interval` seconds in a thread; keeps (t, value) pairs."""
    fn: object
    interval: float = 0.1
    samples: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.monotonic(), self.fn()))
            except Exception as e:  # noqa: BLE001 - keep sampling
                self.samples.append((time.monotonic(), e))
            self._stop.wait(self.interval)

    def start(self) -> Sampler:
        self._t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._t.join(5)


ANALYSIS_MARK = "<!-- analysis: kept when the figures above are regenerated; check it against them -->"


def run_and_clean_up(bench, res: dict) -> int:
    """``bench.run()``, then ``bench.cleanup()`` whatever happened (a signal's SystemExit too), with
    what went wrong recorded in ``res``: the exit status (0 or 1)."""
    import traceback
    rc = 0
    try:
        bench.run()
    except BaseException as e:  # noqa: BLE001 - SystemExit from a signal too: clean up, write what we have
        res["errors"].append(f"aborted: {e!r}")
        res["traceback"] = traceback.format_exc()[-4000:]
        log("aborted:", repr(e))
        rc = 1
    finally:
        res["cleanup"] = bench.cleanup()
        log(f"cleanup: {res['cleanup']}")
    return rc


def write_report(path: Path, text: str) -> None:
    """Write a generated report, keeping the hand-written analysis under ANALYSIS_MARK of the old one."""
    if path.exists():
        old = path.read_text()
        if ANALYSIS_MARK in old:
            text += "\n" + old[old.index(ANALYSIS_MARK):]
    path.write_text(text)
