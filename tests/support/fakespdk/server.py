"""Entry point and JSON-RPC server of the fake SPDK target.

Usage (like SPDK's apps; unknown options are ignored)::

    nvmf_tgt [-r SOCKET] [-m MASK] [-s MB] [--no-huge] [--no-pci] [--interrupt-mode]
             [--disable-cpumask-locks] [-L FLAG] [-e MASK] [--json FILE] [--wait-for-rpc]

The wire protocol copies lib/jsonrpc: a stream of JSON values on a Unix socket (requests may
be split across reads or arrive back to back; a JSON array is a batch), one compact JSON
object plus ``"\\n"`` per answer, no answer to a successful request without ``id`` (or with a
null one), a closed connection on malformed JSON (SPDK queues ``-32700 Parse error`` but closes
before sending it), ``-32600 Invalid request`` for a value that is not a request.  Like SPDK the process holds ``<socket>.lock``
(flock) while it runs, removes the socket on SIGTERM/SIGINT/``spdk_kill_instance`` and simply
dies on SIGKILL.
"""

from __future__ import annotations

import asyncio
import codecs
import fcntl
import json
import os
import signal
import sys
import time
import traceback
from typing import Any

from .app import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    INVALID_STATE,
    METHOD_NOT_FOUND,
    METHODS,
    RUNTIME,
    STARTUP,
    RpcError,
    object_pairs,
)
from .target import VERSION_STRING, Target

DEFAULT_SOCKET = "/var/tmp/spdk.sock"
EXIT_START_FAILED = 234  # SPDK apps exit with -EINVAL & 0xff when the RPC service cannot start

# options that take a value (short and long forms), as in lib/event/app.c
_WITH_VALUE = {
    "-r": "rpc_socket", "--rpc-socket": "rpc_socket", "-m": "cpumask", "--cpumask": "cpumask",
    "-s": "mem_size", "--mem-size": "mem_size", "-L": "logflag", "--logflag": "logflag",
    "-e": "tpoint", "--tpoint-group": "tpoint", "--json": "json", "-c": "config", "--config": "config",
    "-i": "shm_id", "--shm-id": "shm_id", "-p": "main_core", "--main-core": "main_core",
    "-n": "mem_channels", "--mem-channels": "mem_channels", "-B": "pci_blocked", "--pci-blocked": "pci_blocked",
    "-A": "pci_allowed", "--pci-allowed": "pci_allowed", "-R": "huge_unlink_skip", "--iova-mode": "iova",
    "--base-virtaddr": "base_virtaddr", "--lcores": "lcores", "--num-trace-entries": "trace_entries",
    "--rpcs-allowed": "rpcs_allowed", "--vfio-vf-token": "vfio_token", "--msg-mempool-size": "mempool",
    "--huge-dir": "huge_dir", "--env-context": "env_context", "--logflag-file": "logfile",
    "--rpc-log-file": "rpc_log", "--rpc-log-level": "rpc_log_level",
}
_FLAGS = {"--no-huge": "no_huge", "--no-pci": "no_pci", "--interrupt-mode": "interrupt_mode",
          "--disable-cpumask-locks": "disable_cpumask_locks", "--wait-for-rpc": "wait_for_rpc",
          "--json-ignore-init-errors": "json_ignore_init_errors", "-u": "no_pci", "-g": "single_file_segments",
          "--single-file-segments": "single_file_segments", "-h": "help", "--help": "help"}


def parse_args(argv: list[str]) -> dict[str, Any]:
    opts: dict[str, Any] = {"rpc_socket": DEFAULT_SOCKET, "cpumask": "0x1", "mem_size": "0"}
    i = 0
    while i < len(argv):
        a = argv[i]
        i += 1
        if a.startswith("--") and "=" in a:
            k, v = a.split("=", 1)
            if k in _WITH_VALUE:
                opts[_WITH_VALUE[k]] = v
            continue
        if a in _FLAGS:
            opts[_FLAGS[a]] = True
            continue
        if a in _WITH_VALUE:
            if i < len(argv):
                opts[_WITH_VALUE[a]] = argv[i]
                i += 1
            continue
        if len(a) > 2 and a[0] == "-" and a[1] != "-" and a[:2] in _WITH_VALUE:
            opts[_WITH_VALUE[a[:2]]] = a[2:]
            continue
        # anything else is ignored, as the brief for the fake asks
    return opts


def _mem_mb(v: str) -> int:
    v = str(v).strip().upper()
    mult = 1
    if v.endswith(("G", "GB")):
        mult, v = 1024, v.rstrip("GB")
    elif v.endswith(("M", "MB")):
        v = v.rstrip("MB")
    try:
        return int(v) * mult
    except ValueError:
        return 0


# --- JSON stream -----------------------------------------------------------------------------------

class StreamParser:
    """Cuts complete JSON values out of a byte stream (``spdk_json_parse`` incremental use)."""

    def __init__(self) -> None:
        self.dec = codecs.getincrementaldecoder("utf-8")("strict")
        self.buf = ""

    def feed(self, data: bytes) -> list[Any]:
        """Return the complete values; raise ValueError on malformed input."""
        self.buf += self.dec.decode(data)
        out = []
        while True:
            raw = self._next()
            if raw is None:
                break
            out.append(json.loads(raw, object_pairs_hook=object_pairs))
        return out

    def _next(self) -> str | None:
        s = self.buf
        n = len(s)
        i = 0
        while i < n and s[i] in " \t\r\n":
            i += 1
        if i == n:
            self.buf = ""
            return None
        start = i
        c = s[i]
        if c in "{[":
            depth = 0
            in_str = esc = False
            while i < n:
                ch = s[i]
                if in_str:
                    if esc:
                        esc = False
                    elif ch == "\\":
                        esc = True
                    elif ch == '"':
                        in_str = False
                elif ch == '"':
                    in_str = True
                elif ch in "{[":
                    depth += 1
                elif ch in "}]":
                    depth -= 1
                    if depth == 0:
                        self.buf = s[i + 1:]
                        return s[start:i + 1]
                i += 1
            return None
        if c == '"':
            i += 1
            esc = False
            while i < n:
                ch = s[i]
                if esc:
                    esc = False
                elif ch == "\\":
                    esc = True
                elif ch == '"':
                    self.buf = s[i + 1:]
                    return s[start:i + 1]
                i += 1
            return None
        while i < n and s[i] not in " \t\r\n,]}[{\"":
            i += 1
        if i == n:
            return None  # a number or literal may continue in the next read
        self.buf = s[i:]
        return s[start:i]


def _encode(obj: Any) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


REQUEST_KEYS = {"jsonrpc", "method", "params", "id"}


class RpcServer:
    def __init__(self, target: Target):
        self.t = target
        self.conns: set[asyncio.StreamWriter] = set()

    async def handle_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.conns.add(writer)
        parser = StreamParser()
        lock = asyncio.Lock()
        tasks: set[asyncio.Task] = set()

        async def send(obj: Any) -> None:
            async with lock:
                if writer.is_closing():
                    return
                writer.write(_encode(obj))
                try:
                    await writer.drain()
                except (ConnectionError, OSError):
                    pass

        try:
            while True:
                try:
                    data = await reader.read(1 << 16)
                except (ConnectionError, OSError):
                    break
                if not data:
                    break
                try:
                    values = parser.feed(data)
                    err = None
                except ValueError:
                    values, err = [], True
                for v in values:
                    task = asyncio.get_running_loop().create_task(self.process(v, send))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if err:
                    # lib/jsonrpc queues a "Parse error" answer but closes the connection at once,
                    # so the answer (and any other still queued) is never sent; requests before the
                    # bad value in the same read still run
                    writer.transport.abort()
                    break
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self.conns.discard(writer)
            writer.close()

    async def process(self, value: Any, send) -> None:
        if isinstance(value, list):
            if not value:
                await send(_error(None, INVALID_REQUEST, "Invalid request"))
                return
            answers = []
            for item in value:
                a = await self.call(item)
                if a is not None:
                    answers.append(a)
            if answers:
                await send(answers)
            return
        a = await self.call(value)
        if a is not None:
            await send(a)

    async def call(self, req: Any) -> dict[str, Any] | None:
        """Handle one request object; return the answer or None (notification)."""
        if not isinstance(req, dict) or set(req) - REQUEST_KEYS or getattr(req, "dups", None):
            return _error(None, INVALID_REQUEST, "Invalid request")
        if "jsonrpc" in req and req["jsonrpc"] != "2.0":
            return _error(None, INVALID_REQUEST, "Invalid request")
        method = req.get("method")
        if not isinstance(method, str):
            return _error(None, INVALID_REQUEST, "Invalid request")
        has_id = "id" in req
        rid = req.get("id")
        if has_id and not (rid is None or isinstance(rid, (str, int, float)) and not isinstance(rid, bool)):
            return _error(None, INVALID_REQUEST, "Invalid request")
        params = req.get("params")
        if params is not None and not isinstance(params, (dict, list)):
            return _error(rid, INVALID_REQUEST, "Invalid request")  # the id is already known here
        try:
            result = await self.dispatch(method, params)
        except RpcError as e:
            return _error(rid, e.code, e.message)
        except Exception as e:  # noqa: BLE001 - a bug in the fake: say so instead of hanging the client
            traceback.print_exc()
            return _error(rid, INTERNAL_ERROR, f"fakespdk internal error: {type(e).__name__}: {e}")
        finally:
            try:
                self.t.after_call()
            except OSError:
                traceback.print_exc()  # the registry could not be written; the RPC itself is done
        if not has_id or rid is None:
            return None
        return {"jsonrpc": "2.0", "id": rid, "result": result}

    async def dispatch(self, method: str, params: Any) -> Any:
        m = METHODS.get(method)
        if m is None or not self.t.has_method(method):
            raise RpcError(METHOD_NOT_FOUND, "Method not found")
        if not (m.state_mask & self.t.state):
            if self.t.state == STARTUP:
                raise RpcError(INVALID_STATE, "Method may only be called after framework is initialized "
                                              "using framework_start_init RPC.")
            raise RpcError(INVALID_STATE, "Method may only be called before framework is initialized. "
                                          "Use --wait-for-rpc command line parameter and then issue this RPC "
                                          "before the framework_start_init RPC.")
        result = m.func(self.t, params)
        if asyncio.iscoroutine(result):
            result = await result
        return result


def _error(rid: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}


# --- application ---------------------------------------------------------------------------------

def _log(msg: str) -> None:
    ts = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"[{ts}.{int(time.time() * 1e6) % 1000000:06d}] {msg}", flush=True)


async def _load_json_config(server: RpcServer, path: str, ignore_errors: bool) -> bool:
    try:
        with open(path) as f:  # noqa: ASYNC230 - before serving, nothing else is running
            doc = json.load(f)
    except (OSError, ValueError) as e:
        _log(f"json_config.c: *ERROR*: Failed to read JSON configuration file {path}: {e}")
        return False
    entries = [e for sub in doc.get("subsystems", []) or [] for e in sub.get("config", []) or []]
    # like SPDK's loader: methods allowed before init run first, in the startup state
    startup = [e for e in entries if e.get("method") in METHODS and METHODS[e["method"]].state_mask & STARTUP]
    runtime = [e for e in entries if e not in startup]
    saved = server.t.state
    for state, batch in ((STARTUP, startup), (saved, runtime)):
        server.t.state = state
        for entry in batch:
            method = entry.get("method")
            try:
                await server.dispatch(method, entry.get("params"))
            except RpcError as e:
                _log(f"json_config.c: *ERROR*: Failed to run method {method}: {e.message} ({e.code})")
                if not ignore_errors:
                    server.t.state = saved
                    return False
    server.t.state = saved
    return True


async def serve(opts: dict[str, Any], app_name: str) -> int:
    sock_path = opts["rpc_socket"]
    lock_path = sock_path + ".lock"
    try:
        lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        _log(f"rpc.c: *ERROR*: Cannot open lock file {lock_path}: {os.strerror(e.errno or 0)}")
        _log(f"rpc.c: *ERROR*: Unable to start RPC service at {sock_path}")
        return EXIT_START_FAILED
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        _log(f"rpc.c: *ERROR*: RPC Unix domain socket path {sock_path} in use. Specify another.")
        _log(f"rpc.c: *ERROR*: Unable to start RPC service at {sock_path}")
        os.close(lock_fd)
        return EXIT_START_FAILED
    try:
        os.unlink(sock_path)
    except FileNotFoundError:
        pass
    except OSError:
        pass

    target = Target(app_name, os.path.abspath(sock_path), interrupt_mode=bool(opts.get("interrupt_mode")),
                    mem_size_mb=_mem_mb(opts.get("mem_size", "0")), cpumask=str(opts.get("cpumask", "0x1")),
                    wait_for_rpc=bool(opts.get("wait_for_rpc")))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    target.shutdown_requested = stop
    target.initialized = asyncio.Event()
    if target.state == RUNTIME:
        target.initialized.set()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    rpc = RpcServer(target)
    _log(f"Starting {VERSION_STRING} / fakespdk (no DPDK) initialization...")
    _log(f"[ fakespdk {app_name}: pid {os.getpid()}, cpumask {target.cpumask}, "
         f"{'interrupt' if target.interrupt_mode else 'polling'} mode ]")
    if opts.get("json"):
        if not await _load_json_config(rpc, opts["json"], bool(opts.get("json_ignore_init_errors"))):
            os.close(lock_fd)
            return 1
        target.after_call()
    try:
        server = await asyncio.start_unix_server(rpc.handle_conn, path=sock_path, limit=1 << 24)
    except OSError as e:
        _log(f"jsonrpc_server_tcp.c: *ERROR*: could not bind JSON-RPC server: {e}")
        _log("rpc.c: *ERROR*: spdk_jsonrpc_server_listen() failed")
        _log(f"rpc.c: *ERROR*: Unable to start RPC service at {sock_path}")
        os.close(lock_fd)
        try:
            os.unlink(lock_path)
        except OSError:
            pass
        return EXIT_START_FAILED
    _log("app.c: *NOTICE*: Total cores available: 1")
    _log("reactor.c: *NOTICE*: Reactor started on core 0")
    _log(f"rpc.c: *NOTICE*: RPC server listening on {sock_path} ({VERSION_STRING})")
    try:
        await stop.wait()
    finally:
        _log(f"app.c: *NOTICE*: shutting down {app_name}")
        server.close()
        for w in list(rpc.conns):
            w.close()
        try:
            os.unlink(sock_path)
        except OSError:
            pass
        try:
            await asyncio.wait_for(target.shutdown(), 5)
        except Exception:  # noqa: BLE001 - never keep a dying process from removing its socket
            traceback.print_exc()
        try:
            os.unlink(lock_path)
        except OSError:
            pass
        os.close(lock_fd)
    return 0


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    app_name = os.path.basename(sys.argv[0]) or "nvmf_tgt"
    if app_name not in ("nvmf_tgt", "spdk_tgt", "iscsi_tgt"):
        app_name = os.environ.get("FAKESPDK_APP", "spdk_tgt")
    opts = parse_args(argv)
    if opts.get("help"):
        print(__doc__)
        sys.exit(0)
    # make the modules register their RPCs
    from . import bdev, iscsi, lvol, nvme, nvmf, raid, target  # noqa: F401
    sys.exit(asyncio.run(serve(opts, app_name)))


if __name__ == "__main__":
    main()
