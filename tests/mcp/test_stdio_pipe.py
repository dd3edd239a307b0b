"""The stdio pipe between in-memory streams: what it forwards, answers, and reports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.message import SessionMessage
from mcp_types import (
    JSONRPCError,
    JSONRPCMessage,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
)

from agentwatch.mcp.gate import ToolCallGate
from agentwatch.mcp.policy import ToolPolicy
from agentwatch.mcp.stdio import StdioPipe, server_environment
from tests.mcp.conftest import RecordingMonitor


class FakeClient:
    """The client's end: messages the test feeds, answers the pipe sends."""

    def __init__(self) -> None:
        self.feed: MemoryObjectSendStream[SessionMessage | Exception]
        self._in: MemoryObjectReceiveStream[SessionMessage | Exception]
        self.feed, self._in = anyio.create_memory_object_stream(100)
        self.received: list[JSONRPCMessage] = []
        self.got_one = anyio.Event()

    async def messages(self) -> AsyncIterator[SessionMessage | Exception]:
        async with self._in:
            async for item in self._in:
                yield item

    async def send(self, message: SessionMessage) -> None:
        self.received.append(message.message)
        self.got_one.set()


def request(i: int, method: str, **params: Any) -> SessionMessage:
    return SessionMessage(JSONRPCRequest(jsonrpc="2.0", id=i, method=method, params=params))


async def settle() -> None:
    for _ in range(20):
        await anyio.sleep(0)


async def test_pipe_forwards_everything_but_refused_calls(monitor: RecordingMonitor) -> None:
    gate = ToolCallGate(monitor, ToolPolicy(), "stdio")
    client = FakeClient()
    pipe = StdioPipe(gate, client)
    up_write, server_in = anyio.create_memory_object_stream[SessionMessage](100)
    server_out, up_read = anyio.create_memory_object_stream[SessionMessage | Exception](100)
    monitor.set_control(1, revoked=["rm"], reason="too risky")
    async with anyio.create_task_group() as tg:
        result: list[str] = []

        async def run() -> None:
            result.append(await pipe.run(up_read, up_write))

        tg.start_soon(run)
        await client.feed.send(request(1, "initialize", protocolVersion="2025-11-25"))
        await client.feed.send(request(2, "tools/call", name="rm", arguments={"path": "/"}))
        await client.feed.send(request(3, "tools/call", name="ls", arguments={"path": "/"}))
        await client.feed.send(ValueError("not JSON"))
        await client.feed.send(
            SessionMessage(
                JSONRPCNotification(
                    jsonrpc="2.0", method="notifications/progress", params={"progress": 1}
                )
            )
        )
        forwarded = [(await server_in.receive()).message for _ in range(3)]
        assert [getattr(m, "method", None) for m in forwarded] == [
            "initialize",
            "tools/call",
            "notifications/progress",
        ]
        assert getattr(forwarded[1], "id", None) == 3  # the refused call 2 never went up
        refusal = client.received[0]
        assert isinstance(refusal, JSONRPCResponse) and refusal.id == 2
        assert refusal.result["isError"] is True
        # the server answers initialize and the admitted call; a server request passes down
        await server_out.send(
            SessionMessage(
                JSONRPCResponse(
                    jsonrpc="2.0", id=1, result={"serverInfo": {"name": "fs", "version": "1"}}
                )
            )
        )
        await server_out.send(
            SessionMessage(JSONRPCRequest(jsonrpc="2.0", id=1, method="roots/list"))
        )
        await server_out.send(
            SessionMessage(JSONRPCResponse(jsonrpc="2.0", id=3, result={"content": []}))
        )
        await settle()
        assert gate.server_name == "fs"
        assert [type(m).__name__ for m in client.received] == [
            "JSONRPCResponse",
            "JSONRPCResponse",
            "JSONRPCRequest",
            "JSONRPCResponse",
        ]
        client.feed.close()  # the client leaves
    assert result == ["client"]
    assert [(e.action, e.status) for e in monitor.events] == [("rm", "denied"), ("ls", "ok")]
    assert monitor.events[1].attributes["mcp.server"] == "fs"
    assert pipe.outstanding == {} and pipe.pending == {}


async def test_cancellation_and_server_exit(monitor: RecordingMonitor) -> None:
    gate = ToolCallGate(monitor, ToolPolicy(), "stdio")
    client = FakeClient()
    pipe = StdioPipe(gate, client)
    up_write, server_in = anyio.create_memory_object_stream[SessionMessage](100)
    server_out, up_read = anyio.create_memory_object_stream[SessionMessage | Exception](100)
    result: list[str] = []
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            result.append(await pipe.run(up_read, up_write))

        tg.start_soon(run)
        await client.feed.send(request(1, "tools/call", name="slow", arguments={}))
        await client.feed.send(request(2, "tools/call", name="stuck", arguments={}))
        await client.feed.send(request(3, "resources/read", uri="x://y"))
        await client.feed.send(
            SessionMessage(
                JSONRPCNotification(
                    jsonrpc="2.0",
                    method="notifications/cancelled",
                    params={"requestId": 1, "reason": "user pressed stop"},
                )
            )
        )
        for _ in range(4):
            await server_in.receive()
        assert pipe.pending.keys() == {2}
        server_out.close()  # the server exits with requests 1 (cancelled), 2 and 3 unanswered
    assert result == ["server"]
    errors = [m for m in client.received if isinstance(m, JSONRPCError)]
    assert sorted(e.id for e in errors) == [1, 2, 3]  # type: ignore[type-var]
    assert all("exited" in e.error.message for e in errors)
    assert [(e.action, e.error) for e in monitor.events] == [
        ("slow", "cancelled by the MCP client: user pressed stop"),
        ("stuck", "the MCP server exited before answering"),
    ]


def test_the_server_does_not_inherit_agentwatch_settings() -> None:
    env = server_environment({"HOME": "/h", "AGENTWATCH_KAFKA_SASL_PASSWORD": "s3cret"})
    assert env == {"HOME": "/h"}
