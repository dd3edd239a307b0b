"""stdio mode: the proxy is the MCP server its client starts, and starts the real one.

The client speaks newline-delimited JSON-RPC on the proxy's stdin and stdout
(:class:`ClientStdio`); the real server is a child process run by the ``mcp`` package's
``stdio_client`` (its stderr goes to the proxy's stderr; it is stopped, and its process tree
killed if need be, when the proxy stops). :class:`StdioPipe` copies every message both ways
unchanged (requests, responses, notifications, cancellations, server-to-client requests) and
hands ``tools/call`` requests and their answers to the :class:`~agentwatch.mcp.gate.ToolCallGate`.

While the proxy runs, file descriptor 1 points at stderr and 0 at ``/dev/null``, so nothing
in the process (a library's stray ``print``) can corrupt the protocol stream.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import IO, Any

import anyio
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.message import SessionMessage
from mcp_types import (
    INTERNAL_ERROR,
    ErrorData,
    JSONRPCError,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    RequestId,
    jsonrpc_message_adapter,
)

from agentwatch.mcp.gate import PendingCall, ToolCallGate, server_name_of
from agentwatch.sdk._support import clip

__all__ = ["MAX_LINE_BYTES", "ClientStdio", "StdioPipe", "serve_stdio", "server_environment"]

log = logging.getLogger("agentwatch.mcp")

MAX_LINE_BYTES = 64 * 1024 * 1024
"""Longest message line accepted from the client (tool arguments may carry whole files)."""


def server_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the real server: the proxy's, without ``AGENTWATCH_*`` variables
    (they may hold Kafka credentials the server has no business seeing).

    Examples
    --------
    >>> server_environment({"PATH": "/bin", "AGENTWATCH_KAFKA_SASL_PASSWORD": "x"})
    {'PATH': '/bin'}
    """
    env = dict(os.environ if environ is None else environ)
    return {k: v for k, v in env.items() if not k.startswith("AGENTWATCH_")}


class ClientStdio:
    """The MCP client's end: JSON-RPC lines on this process's stdin and stdout.

    :meth:`open` takes private duplicates of descriptors 0 and 1 and points 1 at stderr and 0
    at ``/dev/null``; :meth:`close` restores them. Pipes, sockets and terminals are read and
    written without threads; a regular file (``< requests.jsonl``) is read in a worker thread.
    """

    def __init__(self, stdin_fd: int = 0, stdout_fd: int = 1) -> None:
        self.stdin_fd = stdin_fd
        self.stdout_fd = stdout_fd
        self._saved: list[tuple[int, int]] = []
        self._in: IO[bytes] | None = None
        self._out: IO[bytes] | None = None
        self._reader: asyncio.StreamReader | None = None
        self._read_transport: asyncio.BaseTransport | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._write_lock = asyncio.Lock()

    async def open(self) -> None:
        """Claim stdin and stdout for the protocol."""
        loop = asyncio.get_running_loop()
        private_in = os.dup(self.stdin_fd)
        private_out = os.dup(self.stdout_fd)
        for fd, target in ((self.stdout_fd, 2), (self.stdin_fd, None)):
            saved = os.dup(fd)
            if target is None:
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, fd)
                os.close(devnull)
            else:
                os.dup2(target, fd)
            self._saved.append((fd, saved))
        self._in = os.fdopen(private_in, "rb", buffering=0)
        self._out = os.fdopen(private_out, "wb", buffering=0)
        try:
            reader = asyncio.StreamReader(limit=MAX_LINE_BYTES)
            self._read_transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), self._in
            )
            self._reader = reader
        except ValueError:  # a regular file: read it in a thread
            self._reader = None
        try:
            transport, protocol = await loop.connect_write_pipe(
                asyncio.streams.FlowControlMixin, self._out
            )
            self._writer = asyncio.StreamWriter(transport, protocol, None, loop)
        except ValueError:  # a regular file: plain writes
            self._writer = None

    async def messages(self) -> AsyncIterator[SessionMessage | Exception]:
        """The client's messages until its end of stdin (a line that is not JSON-RPC comes as
        the exception that rejected it)."""
        while True:
            line = await self._readline()
            if not line:
                return
            if not line.strip():
                continue
            try:
                message = jsonrpc_message_adapter.validate_json(line, by_name=False)
            except ValueError as exc:
                yield exc
                continue
            yield SessionMessage(message)

    async def _readline(self) -> bytes:
        if self._reader is not None:
            try:
                return await self._reader.readline()
            except ValueError:  # longer than MAX_LINE_BYTES: skip to the next line
                log.warning(
                    "agentwatch mcp-proxy: dropped a client message longer than %d bytes",
                    MAX_LINE_BYTES,
                )
                return b"\n"
        assert self._in is not None
        readline = self._in.readline
        return await anyio.to_thread.run_sync(readline, abandon_on_cancel=True)

    async def send(self, message: SessionMessage) -> None:
        """Write one message line to the client."""
        data = message.message.model_dump_json(by_alias=True, exclude_unset=True).encode()
        async with self._write_lock:
            if self._writer is not None:
                self._writer.write(data + b"\n")
                await self._writer.drain()
            else:
                assert self._out is not None
                self._out.write(data + b"\n")

    def close(self) -> None:
        """Release the private descriptors and restore 0 and 1."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._read_transport is not None:
            self._read_transport.close()
            self._read_transport = None
        for stream in (self._in, self._out):
            if stream is not None:
                try:
                    stream.close()
                except OSError as exc:
                    log.debug("closing a stdio stream failed: %r", exc)
        self._in = self._out = None
        for fd, saved in reversed(self._saved):
            os.dup2(saved, fd)
            os.close(saved)
        self._saved.clear()


class StdioPipe:
    """Copies messages between the client and the server, gating ``tools/call``.

    Parameters
    ----------
    gate
        Decides and reports each ``tools/call``.
    client
        The client's end (:class:`ClientStdio`, or anything with ``messages()`` and ``send()``).

    Attributes
    ----------
    outstanding
        Client requests the server has not answered yet (id to method).
    pending
        Admitted ``tools/call`` requests awaiting the server's answer.
    """

    def __init__(self, gate: ToolCallGate, client: Any) -> None:
        self.gate = gate
        self.client = client
        self.outstanding: dict[RequestId, str] = {}
        self.pending: dict[RequestId, PendingCall] = {}

    async def run(self, up_read: Any, up_write: Any) -> str:
        """Copy until one side ends; return ``"client"`` or ``"server"`` (who ended first)."""
        ended: list[str] = []
        async with anyio.create_task_group() as tg:

            async def from_client() -> None:
                await self._from_client(up_write, tg)
                ended.append("client")
                tg.cancel_scope.cancel()

            async def from_server() -> None:
                await self._from_server(up_read)
                ended.append("server")
                tg.cancel_scope.cancel()

            tg.start_soon(from_client)
            tg.start_soon(from_server)
        who = ended[0] if ended else "client"
        if who == "server":
            await self._server_gone()
        else:
            for call in self.pending.values():
                self.gate.abandon(call, "the MCP client closed the connection")
            self.pending.clear()
        return who

    async def _from_client(self, up_write: Any, tg: Any = None) -> None:
        async for item in self.client.messages():
            if isinstance(item, Exception):
                log.warning(
                    "agentwatch mcp-proxy: skipped a client line that is not JSON-RPC: %s",
                    clip(str(item).splitlines()[0] if str(item) else type(item).__name__, 300),
                )
                continue
            message = item.message
            if isinstance(message, JSONRPCRequest):
                if ToolCallGate.is_tool_call(message):
                    decision = self.gate.admit(message)
                    if isinstance(decision, JSONRPCResponse):  # refused: answer, never forward
                        await self.client.send(SessionMessage(decision))
                        continue
                    if self.gate.needs_approval(decision):
                        # waits for a person: the client's other messages keep flowing
                        if tg is None:
                            await self._approve_then_forward(item, decision, up_write)
                        else:
                            tg.start_soon(self._approve_then_forward, item, decision, up_write)
                        continue
                    self.pending[message.id] = decision
                self.outstanding[message.id] = message.method
            elif (
                isinstance(message, JSONRPCNotification)
                and message.method == "notifications/cancelled"
            ):
                self._cancelled(message)
            await up_write.send(item)

    async def _approve_then_forward(
        self, item: SessionMessage, call: PendingCall, up_write: Any
    ) -> None:
        """Forward ``item`` once approved, or answer the client with the refusal."""
        decision = await self.gate.approve(call)
        if isinstance(decision, JSONRPCResponse):
            await self.client.send(SessionMessage(decision))
            return
        self.pending[call.request_id] = decision
        self.outstanding[call.request_id] = "tools/call"
        await up_write.send(item)

    def _cancelled(self, message: JSONRPCNotification) -> None:
        request_id = (message.params or {}).get("requestId")
        if not isinstance(request_id, int | str):
            return
        call = self.pending.pop(request_id, None)
        if call is not None:
            reason = (message.params or {}).get("reason")
            text = "cancelled by the MCP client"
            if isinstance(reason, str) and reason:
                text += f": {reason}"
            self.gate.abandon(call, text)

    async def _from_server(self, up_read: Any) -> None:
        async for item in up_read:
            if isinstance(item, Exception):
                log.warning(
                    "agentwatch mcp-proxy: skipped a server line that is not JSON-RPC: %s",
                    clip(str(item).splitlines()[0] if str(item) else type(item).__name__, 300),
                )
                continue
            message = item.message
            if isinstance(message, JSONRPCResponse | JSONRPCError) and message.id is not None:
                method = self.outstanding.pop(message.id, None)
                call = self.pending.pop(message.id, None)
                if call is not None:
                    self.gate.finish(call, message)
                elif method == "initialize" and isinstance(message, JSONRPCResponse):
                    self.gate.server_name = server_name_of(message.result)
            await self.client.send(item)

    async def _server_gone(self) -> None:
        """Answer every outstanding request with an error so the client does not hang."""
        for call in self.pending.values():
            self.gate.abandon(call, "the MCP server exited before answering")
        self.pending.clear()
        for request_id in list(self.outstanding):
            error = JSONRPCError(
                jsonrpc="2.0",
                id=request_id,
                error=ErrorData(
                    code=INTERNAL_ERROR,
                    message="the MCP server behind agentwatch mcp-proxy exited",
                ),
            )
            try:
                await self.client.send(SessionMessage(error))
            except (OSError, RuntimeError) as exc:
                log.debug("cannot answer request %r: %r", request_id, exc)
                break
        self.outstanding.clear()


async def serve_stdio(
    gate: ToolCallGate,
    command: list[str],
    client: ClientStdio,
    flush: Callable[[], Awaitable[object]] | None = None,
) -> str:
    """Run ``command`` as the real server and pipe ``client`` to it until one side ends.

    ``flush`` (deliver the buffered events) is awaited as soon as the piping ends, before the
    server is stopped (which may take seconds a client does not always wait). Returns who
    ended first (``"client"`` or ``"server"``).

    Raises
    ------
    OSError
        when the server command cannot be started.
    """
    params = StdioServerParameters(
        command=command[0], args=list(command[1:]), env=server_environment()
    )
    async with stdio_client(params, errlog=sys.stderr) as (up_read, up_write):
        who = await StdioPipe(gate, client).run(up_read, up_write)
        if flush is not None:
            await flush()
        return who
