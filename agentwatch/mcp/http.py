"""Streamable-HTTP mode: a transparent reverse proxy in front of an MCP server's endpoint.

The client talks to ``http://LISTEN/<path of the upstream URL>`` exactly as it would to the
server: every request (POST, GET, DELETE, OAuth discovery, any path) goes upstream with its
headers (``Mcp-Session-Id``, ``MCP-Protocol-Version``, ``Authorization``, ``Last-Event-ID``
...) and every answer comes back unchanged, SSE streams chunk by chunk. Sessions, resumption
and authentication stay between client and server, whatever the protocol revision.

A POST to the endpoint is read: each ``tools/call`` in it goes through the
:class:`~agentwatch.mcp.gate.ToolCallGate`. A refused call is answered by the proxy
(``application/json``, a tool result with ``isError: true``) and never sent upstream; an
admitted one is timed until its response appears in the upstream answer (JSON body or SSE
event). A response that comes later on a resumed stream (GET with ``Last-Event-ID``) is matched
by session; a call no answer ever reaches is reported as an error after ``orphan_ttl_s``.

The proxy binds loopback by default and refuses requests whose ``Host`` is not a loopback
name while it listens on loopback (DNS rebinding from a browser).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    ErrorData,
    JSONRPCError,
    JSONRPCMessage,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    RequestId,
    jsonrpc_message_adapter,
)
from pydantic import ValidationError
from yarl import URL

from agentwatch.mcp.gate import PendingCall, ToolCallGate, server_name_of
from agentwatch.mcp.sse import SseParser
from agentwatch.sdk._support import clip

__all__ = ["MAX_BODY_BYTES", "HttpProxy", "parse_listen"]

log = logging.getLogger("agentwatch.mcp")

MAX_BODY_BYTES = 64 * 1024 * 1024
"""Largest request body the proxy accepts (413 beyond)."""
SESSION_HEADER = "Mcp-Session-Id"
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "accept-encoding",
        "content-encoding",
    }
)
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as a pair; ``ValueError`` with the reason.

    Examples
    --------
    >>> parse_listen("127.0.0.1:8765"), parse_listen("[::1]:0")
    (('127.0.0.1', 8765), ('::1', 0))
    """
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8765")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class _Flight:
    """An admitted call between the proxy and the server; settled once."""

    call: PendingCall
    orphaned_at: float | None = None
    done: bool = False


class HttpProxy:
    """The streamable-HTTP gateway.

    Parameters
    ----------
    gate
        Decides and reports each ``tools/call``.
    upstream
        The MCP server's endpoint URL (``http://127.0.0.1:8000/mcp``); its path is also the
        proxy's endpoint path.
    host, port
        Where to listen (port 0: any free port, see :attr:`port`).
    max_body_bytes
        Largest request body accepted.
    orphan_ttl_s
        How long a call whose stream closed before the answer may still be answered on a
        resumed stream before it is reported as an error.
    connect_timeout_s
        Connecting to the server.
    """

    def __init__(
        self,
        gate: ToolCallGate,
        upstream: str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_body_bytes: int = MAX_BODY_BYTES,
        orphan_ttl_s: float = 600.0,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self.gate = gate
        self.upstream = URL(upstream)
        self.host = host
        self.port = port
        self.max_body_bytes = max_body_bytes
        self.orphan_ttl_s = orphan_ttl_s
        self.connect_timeout_s = connect_timeout_s
        self.endpoint = self.upstream.path or "/"
        self._flights: dict[tuple[str, RequestId], _Flight] = {}  # stateful sessions only
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None
        self._sweeper: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and serve; ``OSError`` when the address cannot be bound."""
        if not self.upstream.is_absolute() or self.upstream.scheme not in ("http", "https"):
            raise ValueError(f"--upstream {self.upstream}: expected an http:// or https:// URL")
        self._client = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout_s),
            connector=aiohttp.TCPConnector(limit=256),
            auto_decompress=True,
        )
        app = web.Application(client_max_size=self.max_body_bytes)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError:
            await self.stop()
            raise
        addresses = self._runner.addresses
        if addresses:
            self.port = int(addresses[0][1])
        self._sweeper = asyncio.create_task(self._sweep(), name="agentwatch-mcp-orphans")

    async def stop(self) -> None:
        """Stop serving; calls still in flight are reported as abandoned."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._client is not None:
            await self._client.close()
            self._client = None
        for flight in list(self._flights.values()):
            self._abandon(flight, "the gateway stopped before the MCP server answered")
        self._flights.clear()

    @property
    def url(self) -> str:
        """The endpoint clients use."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.endpoint}"

    # -- settling -----------------------------------------------------------------------------

    def _settle(self, flight: _Flight, answer: JSONRPCResponse | JSONRPCError) -> None:
        if flight.done:
            return
        flight.done = True
        self.gate.finish(flight.call, answer)
        self._forget(flight)

    def _abandon(self, flight: _Flight, reason: str) -> None:
        if flight.done:
            return
        flight.done = True
        self.gate.abandon(flight.call, reason)
        self._forget(flight)

    def _forget(self, flight: _Flight) -> None:
        session = flight.call.session_id
        if session is not None:
            key = (session, flight.call.request_id)
            if self._flights.get(key) is flight:
                del self._flights[key]

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(min(30.0, self.orphan_ttl_s))
            now = time.monotonic()
            for flight in list(self._flights.values()):
                if flight.orphaned_at is not None and now - flight.orphaned_at > self.orphan_ttl_s:
                    self._abandon(
                        flight,
                        f"no answer within {self.orphan_ttl_s:g}s after the MCP server closed "
                        "the stream",
                    )

    # -- requests -----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if is_loopback(self.host) and not is_loopback(request.url.host or ""):
            return web.Response(
                status=421, text="agentwatch mcp-proxy: Host must name this machine\n"
            )
        if request.method == "POST" and request.path == self.endpoint:
            return await self._post(request)
        return await self._pass(request, body=await request.read())

    def _upstream_url(self, request: web.Request) -> URL:
        return self.upstream.with_path(request.path).with_query(request.query)

    @staticmethod
    def _forward_headers(request: web.Request) -> dict[str, str]:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Accept-Encoding"] = "identity"  # bodies are read: no compression
        return headers

    async def _post(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        session = request.headers.get(SESSION_HEADER)
        messages = _parse_messages(body)
        if messages is None:  # not JSON-RPC: the server answers it
            return await self._pass(request, body=body)
        is_batch, items = messages
        local: dict[RequestId, _Flight] = {}
        refusals: dict[RequestId, JSONRPCResponse] = {}
        initialize_ids: set[RequestId] = set()
        for message in items:
            if isinstance(message, JSONRPCRequest):
                if ToolCallGate.is_tool_call(message):
                    decision = self.gate.admit(message, clip(session, 128))
                    if not isinstance(decision, JSONRPCResponse) and self.gate.needs_approval(
                        decision
                    ):  # this request waits for a person; other requests are not held up
                        decision = await self.gate.approve(decision)
                    if isinstance(decision, JSONRPCResponse):
                        refusals[message.id] = decision
                    else:
                        local[message.id] = _Flight(decision)
                elif message.method == "initialize":
                    initialize_ids.add(message.id)
            elif (
                isinstance(message, JSONRPCNotification)
                and message.method == "notifications/cancelled"
                and session is not None
            ):
                self._cancelled(session, message)
        if refusals:
            return self._refuse(is_batch, items, refusals)
        if session is not None:
            for request_id, flight in local.items():
                self._flights[(session, request_id)] = flight
        try:
            return await self._pass(
                request, body=body, local=local, initialize_ids=initialize_ids, session=session
            )
        finally:
            self._after_stream(local, session)

    def _refuse(
        self,
        is_batch: bool,
        items: list[JSONRPCMessage],
        refusals: dict[RequestId, JSONRPCResponse],
    ) -> web.Response:
        """Answer a POST holding a refused call without forwarding any of it."""
        if not is_batch:
            answer = next(iter(refusals.values()))
            return web.json_response(
                answer.model_dump(by_alias=True, mode="json", exclude_none=True)
            )
        out: list[dict[str, Any]] = []
        for message in items:
            if not isinstance(message, JSONRPCRequest):
                continue
            refused = refusals.get(message.id)
            if refused is not None:
                out.append(refused.model_dump(by_alias=True, mode="json", exclude_none=True))
                continue
            error = JSONRPCError(
                jsonrpc="2.0",
                id=message.id,
                error=ErrorData(
                    code=INVALID_REQUEST,
                    message="not forwarded by agentwatch: this batch holds a tools/call that "
                    "agentwatch refused; send the other requests again without it",
                ),
            )
            out.append(error.model_dump(by_alias=True, mode="json", exclude_none=True))
        return web.json_response(out)

    def _cancelled(self, session: str, message: JSONRPCNotification) -> None:
        request_id = (message.params or {}).get("requestId")
        if not isinstance(request_id, int | str):
            return
        flight = self._flights.get((session, request_id))
        if flight is not None:
            reason = (message.params or {}).get("reason")
            text = "cancelled by the MCP client"
            if isinstance(reason, str) and reason:
                text += f": {reason}"
            self._abandon(flight, text)

    def _unanswered(self, local: dict[RequestId, _Flight] | None, reason: str) -> None:
        """Abandon the calls of an answer that cannot be resumed and did not settle them."""
        for flight in (local or {}).values():
            self._abandon(flight, reason)

    def _after_stream(self, local: dict[RequestId, _Flight], session: str | None) -> None:
        """The POST's answer ended: calls still unanswered (their SSE stream had event ids)
        are orphans that a resumed stream of the session may settle, or, without a session,
        lost."""
        now = time.monotonic()
        for flight in local.values():
            if flight.done:
                continue
            if session is not None and flight.orphaned_at is None:
                flight.orphaned_at = now
            else:
                self._abandon(flight, "the MCP server closed the stream without answering")

    def _observe(
        self,
        data: bytes | str,
        local: dict[RequestId, _Flight] | None,
        initialize_ids: set[RequestId],
        session: str | None,
    ) -> None:
        """Settle the calls answered in one JSON body or SSE event."""
        parsed = _parse_messages(data)
        if parsed is None:
            return
        for message in parsed[1]:
            if not isinstance(message, JSONRPCResponse | JSONRPCError) or message.id is None:
                continue
            flight = local.get(message.id) if local else None
            if flight is None and session is not None:
                flight = self._flights.get((session, message.id))
            if flight is not None:
                self._settle(flight, message)
            elif message.id in initialize_ids and isinstance(message, JSONRPCResponse):
                self.gate.server_name = server_name_of(message.result)

    async def _pass(
        self,
        request: web.Request,
        *,
        body: bytes,
        local: dict[RequestId, _Flight] | None = None,
        initialize_ids: set[RequestId] | None = None,
        session: str | None = None,
    ) -> web.StreamResponse:
        """Send ``request`` upstream and its answer back, watching it for responses."""
        assert self._client is not None
        ids = initialize_ids or set()
        watch = request.path == self.endpoint
        if session is None:
            session = request.headers.get(SESSION_HEADER)
        try:
            upstream = await self._client.request(
                request.method,
                self._upstream_url(request),
                headers=self._forward_headers(request),
                data=body if body else None,
                allow_redirects=False,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            reason = f"agentwatch mcp-proxy cannot reach the MCP server at {self.upstream}: {exc}"
            log.warning("%s", reason)
            for flight in (local or {}).values():
                self._abandon(flight, reason)
            return _unreachable(body if request.method == "POST" else b"", reason)
        async with upstream:
            headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
            content_type = upstream.headers.get("Content-Type", "").lower()
            if watch and content_type.startswith("text/event-stream"):
                return await self._stream_sse(
                    request,
                    upstream=upstream,
                    headers=headers,
                    local=local,
                    initialize_ids=ids,
                    session=session,
                )
            if watch and content_type.startswith("application/json"):
                data = await upstream.read()
                self._observe(data, local, ids, session)
                self._unanswered(local, "the MCP server's answer held no response to this call")
                return web.Response(status=upstream.status, headers=headers, body=data)
            if watch:
                self._unanswered(local, f"the MCP server answered HTTP {upstream.status}")
            response = web.StreamResponse(status=upstream.status, headers=headers)
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def _stream_sse(
        self,
        request: web.Request,
        *,
        upstream: aiohttp.ClientResponse,
        headers: dict[str, str],
        local: dict[RequestId, _Flight] | None,
        initialize_ids: set[RequestId],
        session: str | None,
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=upstream.status, headers=headers)
        await response.prepare(request)
        parser = SseParser()
        try:
            async for chunk in upstream.content.iter_any():
                for event in parser.feed(chunk):
                    if event.event == "message":
                        self._observe(event.data, local, initialize_ids, session)
                await response.write(chunk)
            await response.write_eof()
            if parser.last_id is None:  # no event ids: the stream cannot be resumed
                self._unanswered(local, "the MCP server closed the stream without answering")
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            for flight in (local or {}).values():
                self._abandon(flight, "the MCP client disconnected before the answer")
        except aiohttp.ClientError as exc:
            log.warning("agentwatch mcp-proxy: the MCP server's event stream broke: %s", exc)
        return response


def _parse_messages(data: bytes | str) -> tuple[bool, list[JSONRPCMessage]] | None:
    """JSON-RPC message(s) in ``data``: ``(is_batch, messages)``, or ``None`` if it is not."""
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    items = doc if isinstance(doc, list) else [doc]
    messages: list[JSONRPCMessage] = []
    for item in items:
        try:
            messages.append(jsonrpc_message_adapter.validate_python(item, by_name=False))
        except ValidationError:
            continue
    if not messages:
        return None
    return isinstance(doc, list), messages


def _unreachable(body: bytes, reason: str) -> web.Response:
    """502; a JSON-RPC error for a request the client awaits an answer to."""
    parsed = _parse_messages(body) if body else None
    requests = [m for m in (parsed[1] if parsed else []) if isinstance(m, JSONRPCRequest)]
    if not requests:
        return web.Response(status=502, text=reason + "\n")
    errors = [
        JSONRPCError(
            jsonrpc="2.0", id=m.id, error=ErrorData(code=INTERNAL_ERROR, message=reason)
        ).model_dump(by_alias=True, mode="json", exclude_none=True)
        for m in requests
    ]
    doc: Any = errors if parsed and parsed[0] else errors[0]
    return web.json_response(doc, status=502)
