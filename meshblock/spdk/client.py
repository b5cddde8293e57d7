"""Asyncio JSON-RPC 2.0 client for SPDK's Unix-domain RPC socket.

One connection carries many requests at once; answers are matched to callers by
id, so a slow call (say ``bdev_nvme_attach_controller``) does not hold up a quick
one.  The connection is opened lazily and re-opened by the next call after the
target restarts.  Every call has a timeout.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from typing import Any

from .errors import SpdkConnectionError, SpdkTimeout, error_from_response

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
_READ_CHUNK = 1 << 16


class SpdkClient:
    """A JSON-RPC client bound to one SPDK target's socket path."""

    def __init__(self, socket_path: str, *, timeout: float = DEFAULT_TIMEOUT):
        self.socket_path = str(socket_path)
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[str, Any, asyncio.Future[Any]]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._connect_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()

    async def __aenter__(self) -> "SpdkClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def call(self, method: str, params: dict[str, Any] | None = None, *,
                   timeout: float | None = None) -> Any:
        """Send one request and return its ``result``; raise a typed error otherwise."""
        if params is not None:
            params = {k: v for k, v in params.items() if v is not None}
        await self._ensure_connected()
        req_id = next(self._ids)
        request: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": req_id}
        if params:
            request["params"] = params
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = (method, params, fut)
        try:
            data = json.dumps(request).encode()
            async with self._write_lock:
                writer = self._writer
                if writer is None:
                    raise SpdkConnectionError(f"{method}: not connected to {self.socket_path}")
                writer.write(data)
                try:
                    await writer.drain()
                except (ConnectionError, OSError) as e:
                    raise SpdkConnectionError(f"{method}: {e}") from e
            limit = self.timeout if timeout is None else timeout
            try:
                return await asyncio.wait_for(asyncio.shield(fut), limit)
            except asyncio.TimeoutError:
                raise SpdkTimeout(f"{method}: no answer from {self.socket_path} in {limit:g}s") from None
        finally:
            self._pending.pop(req_id, None)

    async def wait_ready(self, timeout: float = 30.0, interval: float = 0.1) -> dict[str, Any]:
        """Retry until the target answers ``spdk_get_version``; return its answer."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                return await self.call("spdk_get_version", timeout=max(0.5, deadline - time.monotonic()))
            except (SpdkConnectionError, SpdkTimeout) as e:
                last = e
                await asyncio.sleep(interval)
        raise SpdkConnectionError(f"target at {self.socket_path} not ready after {timeout:g}s: {last}")

    async def close(self) -> None:
        writer, task = self._writer, self._reader_task
        self._writer, self._reader_task = None, None
        if task is not None:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass
        self._fail_pending(SpdkConnectionError(f"client for {self.socket_path} closed"))

    async def _ensure_connected(self) -> None:
        if self.connected:
            return
        async with self._connect_lock:
            if self.connected:
                return
            try:
                reader, writer = await asyncio.open_unix_connection(self.socket_path, limit=1 << 24)
            except (FileNotFoundError, ConnectionRefusedError, OSError) as e:
                raise SpdkConnectionError(f"cannot connect to SPDK at {self.socket_path}: {e}") from e
            self._writer = writer
            self._reader_task = asyncio.create_task(self._read_loop(reader, writer))
            log.debug("connected to %s", self.socket_path)

    async def _read_loop(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = json.JSONDecoder()
        buf = ""
        reason: Exception = SpdkConnectionError(f"connection to {self.socket_path} closed by the target")
        try:
            while True:
                chunk = await reader.read(_READ_CHUNK)
                if not chunk:
                    break
                buf += chunk.decode()
                while True:
                    buf = buf.lstrip()
                    if not buf:
                        break
                    try:
                        obj, end = decoder.raw_decode(buf)
                    except json.JSONDecodeError:
                        break  # incomplete object: wait for more bytes
                    buf = buf[end:]
                    self._dispatch(obj)
        except asyncio.CancelledError:
            raise
        except (ConnectionError, OSError) as e:
            reason = SpdkConnectionError(f"connection to {self.socket_path} lost: {e}")
        finally:
            if self._writer is writer:
                self._writer = None
                self._reader_task = None
            writer.close()
        self._fail_pending(reason)

    def _dispatch(self, obj: Any) -> None:
        if not isinstance(obj, dict):
            log.warning("ignoring non-object JSON-RPC message from %s", self.socket_path)
            return
        entry = self._pending.get(obj.get("id"))  # type: ignore[arg-type]
        if entry is None:
            log.debug("dropping answer to unknown or timed-out id %r", obj.get("id"))
            return
        method, params, fut = entry
        if fut.done():
            return
        if "error" in obj:
            fut.set_exception(error_from_response(method, obj["error"] or {}, params))
        else:
            fut.set_result(obj.get("result"))

    def _fail_pending(self, exc: Exception) -> None:
        for _method, _params, fut in list(self._pending.values()):
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # mark retrieved: a caller that already timed out never awaits it
