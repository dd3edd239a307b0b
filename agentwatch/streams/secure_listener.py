"""TLS and SASL in front of the embedded broker, for tests and local trials of secured clients.

Tansu 0.6.0 (the embedded broker) cannot do either itself, measured: its ``--cert`` and
``--key`` options exclude each other, so it never serves TLS; with ``--authentication`` it
offers no PLAIN, refuses every OAUTHBEARER token, and ``tansu user create`` is refused before
a client has authenticated, so with memory storage no SCRAM user can ever exist.

:class:`SecureListener` listens where clients connect, terminates TLS (optionally requiring a
client certificate), runs the SASL exchange of :mod:`agentwatch.streams.sasl_server` on the
Kafka ``SaslHandshake``/``SaslAuthenticate`` requests and, once a client has authenticated,
relays its bytes to the broker unchanged. Until then only ``ApiVersions`` is forwarded; any
other request closes the connection, as Kafka does. The broker advertises this listener's
address, so clients come back through it for every broker connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct
import threading
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentwatch._wire import uvarint
from agentwatch.streams.sasl_server import MECHANISMS, SaslExchange, SaslFailed, UserStore

__all__ = ["BrokerSecurity", "SecureListener"]

log = logging.getLogger(__name__)

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
ERR_UNSUPPORTED_SASL_MECHANISM, ERR_ILLEGAL_SASL_STATE, ERR_SASL_FAILED = 33, 34, 58
MAX_AUTH_FRAME = 64 * 1024
"""Largest request accepted before a client has authenticated (Kafka's default is 512 KiB)."""
SESSION_LIFETIME_MS = 0


@dataclass(frozen=True)
class BrokerSecurity:
    """How the embedded broker's clients must connect.

    Parameters
    ----------
    certfile, keyfile
        The listener's certificate chain and private key (PEM). Without them: no TLS.
    client_cafile
        Require a client certificate issued by this CA (mutual TLS).
    users
        SASL users (name -> password) for PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512.
    oauth_tokens
        Bearer tokens OAUTHBEARER accepts.

    SASL is required as soon as ``users`` or ``oauth_tokens`` is given.
    """

    certfile: Path | None = None
    keyfile: Path | None = None
    client_cafile: Path | None = None
    users: Mapping[str, str] = field(default_factory=dict, repr=False)
    oauth_tokens: tuple[str, ...] = field(default=(), repr=False)

    @property
    def tls(self) -> bool:
        return self.certfile is not None

    @property
    def sasl(self) -> bool:
        return bool(self.users or self.oauth_tokens)

    @property
    def protocol(self) -> str:
        """The Kafka ``security.protocol`` clients need."""
        if self.sasl:
            return "SASL_SSL" if self.tls else "SASL_PLAINTEXT"
        return "SSL" if self.tls else "PLAINTEXT"

    def ssl_context(self) -> ssl.SSLContext | None:
        """The listener's server-side TLS context, or ``None`` without TLS."""
        if self.certfile is None:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.certfile, self.keyfile)
        if self.client_cafile is not None:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(self.client_cafile)
        return ctx


class SecureListener:
    """Accept clients on ``host:port`` with :class:`BrokerSecurity`; relay to ``upstream``.

    Runs its own event loop in a daemon thread, so it serves synchronous callers and tests
    whose loop it must not share. :meth:`start` returns once the port is bound.
    """

    def __init__(
        self, security: BrokerSecurity, upstream: tuple[str, int], host: str, port: int
    ) -> None:
        self.security = security
        self.upstream = upstream
        self.host = host
        self.port = port
        self.authenticated = 0
        self.refused = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> SecureListener:
        """Bind the port and serve in a background thread."""
        ctx = self.security.ssl_context()
        users = UserStore(self.security.users, self.security.oauth_tokens)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(128)
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def serve() -> None:
            self._server = await asyncio.start_server(
                lambda r, w: self._track(self._connection(r, w, users)), sock=sock, ssl=ctx
            )
            ready.set()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(serve())
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="agentwatch-secure-listener", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("secure listener did not start")
        return self

    def stop(self) -> None:
        """Close the listener and every relayed connection. Idempotent."""
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=2)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        if not thread.is_alive():
            loop.close()

    def _track(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, users: UserStore
    ) -> None:
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            up_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
            if self.security.sasl and not await self._authenticate(
                reader, writer, up_reader, upstream_writer, users
            ):
                self.refused += 1
                return
            await asyncio.gather(
                _relay(reader, upstream_writer), _relay(up_reader, writer), return_exceptions=True
            )
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
            log.debug("secure listener: connection ended: %r", exc)
        finally:
            for w in (writer, upstream_writer):
                if w is not None:
                    w.close()

    async def _authenticate(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
        users: UserStore,
    ) -> bool:
        exchange: SaslExchange | None = None
        while True:
            frame = await _read_frame(reader, MAX_AUTH_FRAME)
            api_key, version, correlation_id = struct.unpack_from(">hhi", frame)
            if api_key == API_VERSIONS:
                up_writer.write(struct.pack(">i", len(frame)) + frame)
                await up_writer.drain()
                answer = await _read_frame(up_reader, 1 << 20)
                writer.write(struct.pack(">i", len(answer)) + answer)
            elif api_key == SASL_HANDSHAKE:
                body = _skip_header(frame, flexible=False)
                (size,) = struct.unpack_from(">h", body)
                mechanism = body[2 : 2 + size].decode("utf-8", "replace")
                error = 0
                if mechanism not in MECHANISMS or version == 0:  # v0: raw tokens, not supported
                    error = ERR_UNSUPPORTED_SASL_MECHANISM
                else:
                    exchange = SaslExchange.start(mechanism, users)
                writer.write(_handshake_response(correlation_id, error))
                if error:
                    await writer.drain()
                    return False
            elif api_key == SASL_AUTHENTICATE and exchange is not None and not exchange.done:
                flexible = version >= 2
                token = _auth_bytes(_skip_header(frame, flexible), flexible)
                try:
                    answer = exchange.step(token)
                except SaslFailed as exc:
                    writer.write(
                        _authenticate_response(correlation_id, version, ERR_SASL_FAILED, str(exc))
                    )
                    await writer.drain()
                    return False
                writer.write(_authenticate_response(correlation_id, version, 0, None, answer))
                if exchange.done:
                    await writer.drain()
                    self.authenticated += 1
                    return True
            else:  # anything else before authentication: close, as Kafka does
                if api_key == SASL_AUTHENTICATE:
                    writer.write(
                        _authenticate_response(correlation_id, version, ERR_ILLEGAL_SASL_STATE, "")
                    )
                    await writer.drain()
                return False
            await writer.drain()


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(1 << 16):
            writer.write(chunk)
            await writer.drain()
    finally:
        writer.close()


async def _read_frame(reader: asyncio.StreamReader, limit: int) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    if not 8 <= size <= limit:
        raise OSError(f"request of {size} bytes before authentication")
    return await reader.readexactly(size)


def _skip_header(frame: bytes, flexible: bool) -> bytes:
    """The request body: after api key, version, correlation id, client id (and tags)."""
    (client_id_len,) = struct.unpack_from(">h", frame, 8)
    pos = 10 + max(client_id_len, 0)
    if flexible:
        pos = _skip_tags(frame, pos)
    return frame[pos:]


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _skip_tags(data: bytes, pos: int) -> int:
    count, pos = _varint(data, pos)
    for _ in range(count):
        _, pos = _varint(data, pos)
        size, pos = _varint(data, pos)
        pos += size
    return pos


def _auth_bytes(body: bytes, flexible: bool) -> bytes:
    if flexible:
        size, pos = _varint(body, 0)
        return body[pos : pos + size - 1]
    (size,) = struct.unpack_from(">i", body)
    return body[4 : 4 + size]


def _framed(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def _handshake_response(correlation_id: int, error: int) -> bytes:
    names = b"".join(struct.pack(">h", len(m)) + m.encode() for m in MECHANISMS)
    return _framed(struct.pack(">ihi", correlation_id, error, len(MECHANISMS)) + names)


def _authenticate_response(
    correlation_id: int, version: int, error: int, message: str | None, data: bytes = b""
) -> bytes:
    text = None if message is None else message.encode("utf-8")
    if version >= 2:  # flexible: header tags, compact strings and bytes, body tags
        body = struct.pack(">ib", correlation_id, 0) + struct.pack(">h", error)
        body += uvarint(0) if text is None else uvarint(len(text) + 1) + text
        body += uvarint(len(data) + 1) + data + struct.pack(">q", SESSION_LIFETIME_MS) + b"\0"
        return _framed(body)
    body = struct.pack(">ih", correlation_id, error)
    body += struct.pack(">h", -1) if text is None else struct.pack(">h", len(text)) + text
    body += struct.pack(">i", len(data)) + data
    if version >= 1:
        body += struct.pack(">q", SESSION_LIFETIME_MS)
    return _framed(body)
