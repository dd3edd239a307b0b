"""The embedded broker's SASL listener at the Kafka wire level (the request versions Java uses)."""

from __future__ import annotations

import asyncio
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentwatch.streams.broker import EmbeddedBroker, free_port, kafka_ready
from agentwatch.streams.secure_listener import BrokerSecurity

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sasl_broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(security=BrokerSecurity(users={"svc": "pw-1"})) as broker:
        yield broker


def request(api_key: int, version: int, correlation_id: int, body: bytes, flexible: bool) -> bytes:
    header = struct.pack(">hhih", api_key, version, correlation_id, 1) + b"t"
    if flexible:
        header += b"\0"  # no tagged fields
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


async def answer(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    return await reader.readexactly(size)


def plain_v2(correlation_id: int, user: str, password: str) -> bytes:
    token = b"\0" + user.encode() + b"\0" + password.encode()
    body = bytes([len(token) + 1]) + token + b"\0"  # compact bytes, no tagged fields
    return request(36, 2, correlation_id, body, flexible=True)


async def connect(broker: EmbeddedBroker) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = broker.bootstrap.rsplit(":", 1)
    return await asyncio.open_connection(host, int(port))


async def handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(request(18, 0, 1, b"", flexible=False))  # ApiVersions: relayed to Tansu
    versions = await answer(reader)
    assert struct.unpack_from(">ih", versions) == (1, 0)
    writer.write(request(17, 1, 2, struct.pack(">h", 5) + b"PLAIN", flexible=False))
    reply = await answer(reader)
    correlation_id, error, count = struct.unpack_from(">ihi", reply)
    assert (correlation_id, error, count) == (2, 0, 4)
    assert b"SCRAM-SHA-512" in reply and b"OAUTHBEARER" in reply


async def test_flexible_sasl_authenticate_then_requests_are_relayed(
    sasl_broker: EmbeddedBroker,
) -> None:
    listener = sasl_broker.listener
    assert listener is not None and sasl_broker.security_protocol == "SASL_PLAINTEXT"
    before = listener.authenticated
    reader, writer = await connect(sasl_broker)
    try:
        await handshake(reader, writer)
        writer.write(plain_v2(3, "svc", "pw-1"))
        reply = await answer(reader)
        correlation_id, tags, error = struct.unpack_from(">ibh", reply)
        assert (correlation_id, tags, error) == (3, 0, 0)
        assert reply[7:9] == b"\x00\x01"  # null error message, empty auth bytes
        writer.write(request(3, 0, 4, struct.pack(">i", 0), flexible=False))  # Metadata v0
        metadata = await answer(reader)
        assert struct.unpack_from(">i", metadata)[0] == 4  # answered by Tansu
        host, port = sasl_broker.bootstrap.rsplit(":", 1)
        assert host.encode() in metadata and struct.pack(">i", int(port)) in metadata
    finally:
        writer.close()
    assert listener.authenticated == before + 1


async def test_wrong_password_gets_error_58_and_the_connection_is_closed(
    sasl_broker: EmbeddedBroker,
) -> None:
    listener = sasl_broker.listener
    assert listener is not None
    before = listener.refused
    reader, writer = await connect(sasl_broker)
    try:
        await handshake(reader, writer)
        writer.write(plain_v2(3, "svc", "pw-2"))
        reply = await answer(reader)
        correlation_id, _, error, size = struct.unpack_from(">ibhb", reply)
        assert (correlation_id, error) == (3, 58)
        assert b"invalid credentials with SASL mechanism PLAIN" in reply[9 : 9 + size - 1]
        assert await reader.read() == b""
    finally:
        writer.close()
    assert listener.refused == before + 1


@pytest.mark.parametrize(
    "first",
    [
        request(3, 0, 1, struct.pack(">i", 0), flexible=False),  # Metadata before login
        request(36, 1, 1, struct.pack(">i", 0), flexible=False),  # authenticate, no handshake
        struct.pack(">i", 10_000_000) + b"\0" * 16,  # a huge frame before login
    ],
    ids=["metadata", "authenticate-first", "oversized"],
)
async def test_nothing_but_the_login_reaches_the_broker_before_authentication(
    sasl_broker: EmbeddedBroker, first: bytes
) -> None:
    reader, writer = await connect(sasl_broker)
    try:
        writer.write(first)
        data = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    if first[4:6] == struct.pack(">h", 36):
        assert struct.unpack_from(">ihh", data, 4)[1] == 34  # IllegalSaslState, then closed
    else:
        assert data == b""


def test_tansu_cannot_secure_itself_which_is_why_the_listener_exists(tmp_path: Path) -> None:
    """If an upgraded Tansu passes this no more, docs/operations.md needs a look."""
    binary = EmbeddedBroker._resolve_binary()
    both = subprocess.run(  # TLS needs both options, and they exclude each other
        [binary, "broker", "--cert", "c.pem", "--key", "k.pem"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert both.returncode != 0 and "cannot be used with" in both.stderr
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    args = ["--listener-url", url, "--advertised-listener-url", url, "--authentication"]
    broker = subprocess.Popen(
        [binary, "broker", *args, "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while not kafka_ready("127.0.0.1", port):
            assert time.monotonic() < deadline and broker.poll() is None
            time.sleep(0.05)
        user = subprocess.run(  # no user can be made before one has logged in
            [binary, "user", "create", "--broker", url, "svc", "pw"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert user.returncode != 0
    finally:
        broker.terminate()
        broker.wait(10)
