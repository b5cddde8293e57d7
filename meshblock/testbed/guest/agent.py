#!/usr/bin/env python3
"""The command agent that runs inside a test-bed guest.

Standard library only: it runs under the guest's Debian python3, started (and
restarted if it dies) by the guest's init.  It talks to the host over a
virtio-serial port named ``mbtb.agent`` (a QEMU chardev on a Unix socket on the
host side), so it works whatever the guest's network is doing.

Wire format: one JSON object per line, both ways; binary data is base64.  Every
request carries an ``id`` that its reply repeats, so the host can drop replies to
requests it already gave up on.  Requests are served concurrently, each in its
own thread; a line that is not valid JSON (say, the tail of a request cut off when
the host went away) gets an error reply with ``"id": null`` and is otherwise
ignored.

Operations (``op``):

``hello``  -> ``{hostname, pid, uptime, version}``
``run``    ``argv`` (list) or ``shell`` (string for /bin/sh -c), optional ``stdin``
           (base64), ``timeout`` (seconds), ``env`` (merged into a fixed base
           environment), ``cwd`` -> ``{rc, stdout, stderr, timed_out, duration}``.
           On timeout the command's whole process group is killed (rc is then
           -9).  Background processes that keep stdout/stderr open do not hold
           the reply back longer than a short grace period after the command exits.
``read``   ``path``, ``offset``, ``length`` -> ``{data, size, eof}``
``write``  ``path``, ``data``, ``offset``, ``truncate``, ``mode``, ``parents`` -> ``{size}``
"""

from __future__ import annotations

import base64
import glob
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time

VERSION = 1
PORT_NAME = "mbtb.agent"
MAX_OUTPUT = 64 << 20          # per stream; the rest is read and dropped
MAX_READ = 8 << 20             # largest chunk one ``read`` returns
EXIT_GRACE = 2.0               # how long to wait for pipes held open by background children
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
}


def log(msg: str) -> None:
    try:
        sys.stderr.write(f"mbtb-agent: {msg}\n")
        sys.stderr.flush()
    except OSError:
        pass


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def find_port() -> str | None:
    for d in glob.glob("/sys/class/virtio-ports/*"):
        try:
            with open(os.path.join(d, "name")) as f:
                if f.read().strip() == PORT_NAME:
                    return "/dev/" + os.path.basename(d)
        except OSError:
            continue
    return None


class Channel:
    def __init__(self, fd: int):
        self.fd = fd
        self.wlock = threading.Lock()

    def send(self, obj: dict) -> None:
        data = json.dumps(obj, separators=(",", ":")).encode() + b"\n"
        view = memoryview(data)
        with self.wlock:
            while view:
                try:
                    n = os.write(self.fd, view)
                except InterruptedError:
                    continue
                except OSError as e:
                    log(f"reply {obj.get('id')} dropped: {e}")
                    return
                view = view[n:]


def op_hello(req: dict) -> dict:
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return {"hostname": socket.gethostname(), "pid": os.getpid(), "uptime": uptime, "version": VERSION}


def _collect(p: subprocess.Popen, stdin_data: bytes | None, timeout: float | None) -> tuple[bytes, bytes, bool]:
    if stdin_data is not None:
        def feed() -> None:
            try:
                p.stdin.write(stdin_data)
            except OSError:
                pass
            finally:
                try:
                    p.stdin.close()
                except OSError:
                    pass
        threading.Thread(target=feed, daemon=True).start()
    out_fd, err_fd = p.stdout.fileno(), p.stderr.fileno()
    bufs = {out_fd: bytearray(), err_fd: bytearray()}
    sel = selectors.DefaultSelector()
    for fd in bufs:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    start = time.monotonic()
    deadline = start + timeout if timeout else None
    timed_out = False
    exited_at: float | None = None
    try:
        while sel.get_map():
            now = time.monotonic()
            if exited_at is None and p.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > EXIT_GRACE:
                break
            if deadline is not None and now >= deadline and not timed_out:
                timed_out = True
                _kill_group(p)
            wait = 0.2 if exited_at is None else 0.05
            if deadline is not None and not timed_out:
                wait = max(0.0, min(wait, deadline - now))
            for key, _ in sel.select(wait):
                try:
                    chunk = os.read(key.fd, 1 << 16)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    sel.unregister(key.fd)
                    continue
                buf = bufs[key.fd]
                if len(buf) < MAX_OUTPUT:
                    buf += chunk[: MAX_OUTPUT - len(buf)]
        while True:
            remaining = None
            if deadline is not None and not timed_out:
                remaining = max(0.0, deadline - time.monotonic())
            try:
                p.wait(remaining)
                break
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(p)
    finally:
        sel.close()
        for f in (p.stdout, p.stderr):
            try:
                f.close()
            except OSError:
                pass
    return bytes(bufs[out_fd]), bytes(bufs[err_fd]), timed_out


def _kill_group(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            p.kill()
        except OSError:
            pass


def op_run(req: dict) -> dict:
    if req.get("argv"):
        argv = [str(a) for a in req["argv"]]
    elif "shell" in req:
        argv = ["/bin/sh", "-c", str(req["shell"])]
    else:
        raise ValueError("run needs argv or shell")
    env = dict(BASE_ENV)
    env.update({str(k): str(v) for k, v in (req.get("env") or {}).items()})
    stdin_data = base64.b64decode(req["stdin"]) if req.get("stdin") is not None else None
    timeout = req.get("timeout")
    start = time.monotonic()
    try:
        p = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=req.get("cwd") or "/",
                             env=env, start_new_session=True)
    except OSError as e:
        return {"rc": 127, "stdout": "", "stderr": b64(f"{argv[0]}: {e}\n".encode()), "timed_out": False,
                "duration": time.monotonic() - start}
    out, err, timed_out = _collect(p, stdin_data, float(timeout) if timeout else None)
    return {"rc": p.returncode, "stdout": b64(out), "stderr": b64(err), "timed_out": timed_out,
            "duration": time.monotonic() - start}


def op_read(req: dict) -> dict:
    path = req["path"]
    offset = int(req.get("offset") or 0)
    length = min(int(req.get("length") or MAX_READ), MAX_READ)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        f.seek(offset)
        data = f.read(length)
    return {"data": b64(data), "size": size, "eof": len(data) < length or offset + len(data) >= size}


def op_write(req: dict) -> dict:
    path = req["path"]
    if req.get("parents"):
        os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT
    if req.get("truncate"):
        flags |= os.O_TRUNC
    mode = req.get("mode")
    fd = os.open(path, flags, 0o644 if mode is None else int(mode))
    try:
        data = base64.b64decode(req.get("data") or "")
        offset = int(req.get("offset") or 0)
        view = memoryview(data)
        while view:
            n = os.pwrite(fd, view, offset)
            view = view[n:]
            offset += n
        if mode is not None:
            os.fchmod(fd, int(mode))
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    return {"size": size}


OPS = {"hello": op_hello, "run": op_run, "read": op_read, "write": op_write}


def handle(chan: Channel, req: dict) -> None:
    rid = req.get("id")
    try:
        fn = OPS.get(req.get("op"))
        if fn is None:
            raise ValueError(f"unknown op {req.get('op')!r}")
        reply = fn(req)
        reply.update(id=rid, ok=True)
    except Exception as e:  # every failure goes back to the host as an error reply
        reply = {"id": rid, "ok": False, "error": f"{type(e).__name__}: {e}"}
    chan.send(reply)


def serve(fd: int) -> None:
    chan = Channel(fd)
    buf = bytearray()
    scanned = 0  # bytes of buf known to hold no newline
    while True:
        try:
            chunk = os.read(fd, 1 << 20)
        except InterruptedError:
            continue
        if not chunk:
            # The host side is not connected: read() returns 0 at once until it is.
            buf.clear()
            scanned = 0
            time.sleep(0.05)
            continue
        buf += chunk
        while True:
            nl = buf.find(b"\n", scanned)
            if nl < 0:
                scanned = len(buf)
                break
            line = bytes(buf[:nl]).strip()
            del buf[: nl + 1]
            scanned = 0
            if not line:
                continue
            try:
                req = json.loads(line)
                if not isinstance(req, dict):
                    raise ValueError("not an object")
            except ValueError as e:
                chan.send({"id": None, "ok": False, "error": f"bad frame: {e}"})
                continue
            if req.get("op") == "hello":
                handle(chan, req)
            else:
                threading.Thread(target=handle, args=(chan, req), daemon=True).start()


def main() -> None:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    while True:
        path = find_port()
        if path is None:
            time.sleep(0.2)
            continue
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError as e:
            log(f"cannot open {path}: {e}")
            time.sleep(0.5)
            continue
        log(f"serving on {path}")
        try:
            serve(fd)
        except OSError as e:
            log(f"channel error: {e}")
        finally:
            os.close(fd)
        time.sleep(0.2)


if __name__ == "__main__":
    main()
