"""The agent's readiness (`/readyz`, next to its Prometheus metrics).

Only the controller can tell whether this node could go down now (control/readiness.py): the agent
asks it in its next heartbeat when /readyz is asked, and answers with what the controller said.
A probe that comes while a fresh answer is known is answered at once; otherwise it asks for the
next heartbeat to be sent now and waits for its reply, up to ``wait`` seconds.
"""

from __future__ import annotations

import socket
import threading
import time
from socketserver import ThreadingMixIn
from typing import Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, make_wsgi_app

FRESH = 1.0      # seconds an answer from the controller is reused for
WAIT = 4.0       # seconds a probe waits for the controller's answer (the chart's probe timeout is 5 s)


class Readiness:
    """What the controller last said about this node, shared between the heartbeat loop (asyncio)
    and the HTTP server's threads."""

    def __init__(self, *, fresh: float = FRESH, wait: float = WAIT, local: Callable[[], str] = lambda: ""):
        self.fresh = fresh
        self.wait = wait
        self.local = local          # a reason this agent knows itself ("": none), e.g. its target is down
        self._cond = threading.Condition()
        self._answer: tuple[bool, str] | None = None
        self._at = 0.0
        self._wanted = False
        self.wake: Callable[[], None] = lambda: None   # set by the heartbeat loop: send a heartbeat now
        self.registered = False

    # --- the heartbeat loop ---------------------------------------------------------------------
    def wanted(self) -> bool:
        return self._wanted

    def answered(self, ready: bool, reason: str) -> None:
        with self._cond:
            self._answer, self._at, self._wanted = (ready, reason), time.monotonic(), False
            self._cond.notify_all()

    # --- /readyz --------------------------------------------------------------------------------
    def check(self) -> tuple[bool, str]:
        local = self.local()
        if local:
            return False, local
        with self._cond:
            asked = time.monotonic()
            if self._answer is not None and asked - self._at <= self.fresh:
                return self._answer
            self._wanted = True
            self.wake()
            if self._cond.wait_for(lambda: self._at >= asked, self.wait):
                assert self._answer is not None
                return self._answer
        if not self.registered:
            return False, "not registered with a controller yet"
        return False, f"no answer from the controller within {self.wait:g} s"


def readyz_app(readiness: Readiness, metrics_app):
    """/readyz: 200 "ready" or 503 with the reason; anything else: the metrics."""

    def app(environ, start_response):
        if environ.get("PATH_INFO", "") != "/readyz":
            return metrics_app(environ, start_response)
        ready, reason = readiness.check()
        body = ("ready\n" if ready else f"not ready: {reason}\n").encode()
        start_response("200 OK" if ready else "503 Service Unavailable",
                       [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
        return [body]
    return app


class _Quiet(WSGIRequestHandler):
    def log_message(self, format, *args) -> None:   # a probe every few seconds is no news
        pass


def serve_http(port: int, addr: str, readiness: Readiness) -> WSGIServer:
    """Serve the metrics and /readyz on ``addr:port`` from a daemon thread; ``shutdown()`` stops it."""

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        address_family = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM)[0][0]

    httpd = make_server(addr, port, readyz_app(readiness, make_wsgi_app(REGISTRY)), Server, handler_class=_Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True, name="metrics-http").start()
    return httpd
