"""The HTTP gateway against a scripted loopback upstream: refusals, batches, resumed streams,
orphans, an unreachable server, and the Host check."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from agentwatch.mcp.gate import ToolCallGate
from agentwatch.mcp.http import HttpProxy, parse_listen
from agentwatch.mcp.policy import ToolPolicy
from agentwatch.streams.broker import free_port
from tests.mcp.conftest import RecordingMonitor

SESSION = "sess-1"


class Upstream:
    """An MCP-ish server: answers tools/call on an SSE stream, except ``slow``, whose stream
    closes after a priming event; its answer comes on a GET resuming that stream."""

    def __init__(self) -> None:
        self.posts: list[Any] = []
        self.headers: list[dict[str, str]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/mcp", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/mcp"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.headers.append(dict(request.headers))
        if request.method == "GET":
            resume = request.headers.get("Last-Event-ID")
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            if resume == "slow-1":
                body = {"jsonrpc": "2.0", "id": 7, "result": {"content": [], "isError": False}}
                await response.write(f"id: slow-2\ndata: {json.dumps(body)}\n\n".encode())
            await response.write_eof()
            return response
        doc = await request.json()
        self.posts.append(doc)
        name = doc.get("params", {}).get("name")
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Mcp-Session-Id": SESSION}
        )
        await response.prepare(request)
        if name == "slow":
            await response.write(b"id: slow-1\ndata: \n\n")
        elif name == "lost":  # no event ids: nothing can resume this stream
            await response.write(b": working\n\n")
        else:
            body = {"jsonrpc": "2.0", "id": doc["id"], "result": {"content": []}}
            await response.write(f"data: {json.dumps(body)}\n\n".encode())
        await response.write_eof()
        return response


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = Upstream()
    await server.start()
    yield server
    assert server.runner is not None
    await server.runner.cleanup()


def tool_call(i: int, name: str) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": i,
        "method": "tools/call",
        "params": {"name": name, "arguments": {}},
    }


async def started(monitor: RecordingMonitor, url: str, **kwargs: Any) -> HttpProxy:
    proxy = HttpProxy(ToolCallGate(monitor, ToolPolicy(), "http"), url, **kwargs)
    await proxy.start()
    return proxy


HEADERS = {"Accept": "application/json, text/event-stream", "Mcp-Session-Id": SESSION}


async def test_a_resumed_stream_settles_the_call(
    monitor: RecordingMonitor, upstream: Upstream
) -> None:
    proxy = await started(monitor, upstream.url)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(proxy.url, json=tool_call(7, "slow"), headers=HEADERS) as r:
                assert r.status == 200
                assert await r.text() == "id: slow-1\ndata: \n\n"  # passed through unchanged
            assert monitor.events == []  # no answer yet: the call waits for a resumption
            resume = {**HEADERS, "Last-Event-ID": "slow-1"}
            async with http.get(proxy.url, headers=resume) as r:
                assert '"id": 7' in await r.text()
        assert [(e.action, e.status, e.session_id) for e in monitor.events] == [
            ("slow", "ok", SESSION)
        ]
        forwarded = upstream.headers[-1]
        assert forwarded["Last-Event-ID"] == "slow-1"
        assert forwarded["Mcp-Session-Id"] == SESSION
    finally:
        await proxy.stop()


async def test_a_stream_that_cannot_resume_settles_at_once(
    monitor: RecordingMonitor, upstream: Upstream
) -> None:
    proxy = await started(monitor, upstream.url)
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.post(proxy.url, json=tool_call(8, "lost"), headers=HEADERS) as r,
        ):
            assert await r.text() == ": working\n\n"
        (event,) = monitor.events
        assert (event.action, event.status) == ("lost", "error")
        assert event.error == "the MCP server closed the stream without answering"
    finally:
        await proxy.stop()


async def test_an_orphan_is_reported_after_its_ttl(
    monitor: RecordingMonitor, upstream: Upstream
) -> None:
    proxy = await started(monitor, upstream.url, orphan_ttl_s=0.2)
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.post(proxy.url, json=tool_call(7, "slow"), headers=HEADERS) as r,
        ):
            await r.read()
        deadline = time.monotonic() + 5
        while not monitor.events:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        (event,) = monitor.events
        assert event.status == "error" and "no answer within 0.2s" in (event.error or "")
    finally:
        await proxy.stop()


async def test_a_batch_with_a_refused_call_is_not_forwarded(
    monitor: RecordingMonitor, upstream: Upstream
) -> None:
    monitor.set_control(1, revoked=["rm"], reason="no")
    proxy = await started(monitor, upstream.url)
    try:
        batch = [tool_call(1, "ls"), tool_call(2, "rm"), {"jsonrpc": "2.0", "method": "x/y"}]
        async with aiohttp.ClientSession() as http, http.post(proxy.url, json=batch) as r:
            assert r.status == 200
            answers = {a["id"]: a for a in await r.json()}
        assert answers[2]["result"]["isError"] is True
        assert "not forwarded by agentwatch" in answers[1]["error"]["message"]
        assert upstream.posts == []
        single = tool_call(3, "rm")
        async with aiohttp.ClientSession() as http, http.post(proxy.url, json=single) as r:
            doc = await r.json()
        assert doc["id"] == 3 and doc["result"]["content"][0]["text"].startswith("revoked by")
        assert upstream.posts == []
        assert [(e.action, e.status) for e in monitor.events] == [
            ("rm", "denied"),
            ("rm", "denied"),
        ]
    finally:
        await proxy.stop()


async def test_an_unreachable_server_gives_a_jsonrpc_error(monitor: RecordingMonitor) -> None:
    proxy = await started(monitor, f"http://127.0.0.1:{free_port()}/mcp")
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.post(proxy.url, json=tool_call(4, "ls")) as r,
        ):
            assert r.status == 502
            doc = await r.json()
        assert doc["id"] == 4 and "cannot reach the MCP server" in doc["error"]["message"]
        (event,) = monitor.events
        assert event.status == "error" and "cannot reach" in (event.error or "")
    finally:
        await proxy.stop()


async def test_a_foreign_host_header_is_refused(
    monitor: RecordingMonitor, upstream: Upstream
) -> None:
    proxy = await started(monitor, upstream.url)
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.post(proxy.url, json=tool_call(1, "ls"), headers={"Host": "evil.example"}) as r,
        ):
            assert r.status == 421
        assert upstream.posts == []
    finally:
        await proxy.stop()


def test_parse_listen() -> None:
    assert parse_listen("0.0.0.0:80") == ("0.0.0.0", 80)
    for bad in ("8765", "host:", "h:99999", ":80"):
        with pytest.raises(ValueError, match="expected HOST:PORT"):
            parse_listen(bad)
