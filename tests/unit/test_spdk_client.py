"""The JSON-RPC client against a minimal in-process server on a real Unix socket."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from meshblock.spdk import (SpdkBusy, SpdkClient, SpdkConnectionError, SpdkExists, SpdkInvalidParams,
                            SpdkMethodNotFound, SpdkNoSpace, SpdkNotFound, SpdkNotPermitted, SpdkRpcError,
                            SpdkTimeout)
from meshblock.spdk.errors import error_from_response


class MiniServer:
    """Answers requests the way SPDK does: JSON objects on a stream, possibly out of order."""

    def __init__(self, path: str):
        self.path = path
        self.server: asyncio.base_events.Server | None = None
        self.requests: list[dict] = []
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._conn, self.path)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.close()
        await self.server.wait_closed()

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        dec = json.JSONDecoder()
        buf = ""
        while data := await reader.read(4096):
            buf += data.decode()
            while buf.strip():
                try:
                    obj, end = dec.raw_decode(buf.lstrip())
                except json.JSONDecodeError:
                    break
                buf = buf.lstrip()[end:]
                self.requests.append(obj)
                asyncio.create_task(self._answer(obj, writer))

    async def _answer(self, req: dict, writer: asyncio.StreamWriter) -> None:
        m, p = req["method"], req.get("params") or {}
        if m == "sleep":
            await asyncio.sleep(p["s"])
            res: dict = {"result": p["s"]}
        elif m == "echo":
            res = {"result": p}
        elif m == "fail":
            res = {"error": {"code": p["code"], "message": p["message"]}}
        elif m == "split":
            # answer in two writes, split in the middle of the JSON text
            text = json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": "x" * 1000})
            writer.write(text[:10].encode())
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write((text[10:] + "\n").encode())
            await writer.drain()
            return
        elif m == "hang":
            return
        else:
            res = {"error": {"code": -32601, "message": "Method not found"}}
        writer.write((json.dumps({"jsonrpc": "2.0", "id": req["id"], **res}) + "\n").encode())
        await writer.drain()


@pytest.fixture
async def server(tmp_path):
    s = MiniServer(str(tmp_path / "rpc.sock"))
    await s.start()
    yield s
    await s.stop()


async def test_concurrent_calls_are_matched_by_id(server):
    async with SpdkClient(server.path) as c:
        # the slow call is sent first but answered last; each caller gets its own answer
        results = await asyncio.gather(c.call("sleep", {"s": 0.3}), c.call("echo", {"v": 1}),
                                       c.call("sleep", {"s": 0.1}), c.call("echo", {"v": 2}))
    assert results == [0.3, {"v": 1}, 0.1, {"v": 2}]
    ids = [r["id"] for r in server.requests]
    assert len(set(ids)) == 4


async def test_none_params_are_dropped_and_answer_split_across_reads(server):
    async with SpdkClient(server.path) as c:
        assert await c.call("echo", {"a": 1, "b": None}) == {"a": 1}
        assert await c.call("split") == "x" * 1000


async def test_timeout_then_client_still_usable(server):
    async with SpdkClient(server.path) as c:
        with pytest.raises(SpdkTimeout, match="hang"):
            await c.call("hang", timeout=0.2)
        assert await c.call("echo", {"ok": True}) == {"ok": True}


async def test_unknown_method_is_typed(server):
    async with SpdkClient(server.path) as c:
        with pytest.raises(SpdkMethodNotFound) as ei:
            await c.call("no_such_method")
    assert ei.value.code == -32601


async def test_connect_failure_is_connection_error(tmp_path):
    c = SpdkClient(str(tmp_path / "absent.sock"))
    with pytest.raises(SpdkConnectionError, match="absent.sock"):
        await c.call("spdk_get_version")


async def test_reconnects_after_the_target_restarts(server, tmp_path):
    c = SpdkClient(server.path)
    assert await c.call("echo", {"n": 1}) == {"n": 1}
    pending = asyncio.create_task(c.call("hang", timeout=5))
    await asyncio.sleep(0.05)
    await server.stop()
    # the call under way when the target went away fails fast, not after its timeout
    with pytest.raises(SpdkConnectionError):
        await asyncio.wait_for(pending, 2)
    with pytest.raises(SpdkConnectionError):
        await c.call("echo", {"n": 2})
    restarted = MiniServer(server.path)
    os.unlink(server.path)
    await restarted.start()
    try:
        assert await c.call("echo", {"n": 3}) == {"n": 3}
    finally:
        await c.close()
        await restarted.stop()
        server.server = restarted.server  # fixture teardown closes it again harmlessly


async def test_wait_ready_gives_up_with_reason(tmp_path):
    c = SpdkClient(str(tmp_path / "never.sock"))
    with pytest.raises(SpdkConnectionError, match="not ready after"):
        await c.wait_ready(timeout=0.3)


async def test_server_errors_map_to_types(server):
    async with SpdkClient(server.path) as c:
        with pytest.raises(SpdkExists) as ei:
            await c.call("fail", {"code": -17, "message": "File exists"})
    assert ei.value.code == -17 and ei.value.method == "fail"


@pytest.mark.parametrize("code,message,cls", [
    (-17, "File exists", SpdkExists),
    (-19, "No such device", SpdkNotFound),
    (-2, "No such file or directory", SpdkNotFound),
    (-28, "No space left on device", SpdkNoSpace),
    (-16, "Device or resource busy", SpdkBusy),
    (-32601, "Method not found", SpdkMethodNotFound),
    (-32602, "Subsystem with NQN 'nqn.x' not found", SpdkNotFound),
    (-32602, "Invalid parameters", SpdkInvalidParams),
    (-32603, "bdev lvs/x already exists", SpdkExists),
    (-22, "Invalid argument", SpdkInvalidParams),
    (-32602, "Unable to find bdev with name: foo", SpdkNotFound),
    (-32603, "something odd", SpdkRpcError),
    (-32603, "Operation not permitted", SpdkNotPermitted),
    (-1, "Operation not permitted", SpdkNotPermitted),
])
def test_error_mapping(code, message, cls):
    err = error_from_response("m", {"code": code, "message": message})
    assert type(err) is cls
    assert err.code == code and err.message == message
