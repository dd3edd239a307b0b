"""Running the gateway for tests: the real ``agentwatch mcp-proxy`` command in a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp_types import CallToolResult, TextContent

from agentwatch.config import Settings
from tests.sdk.test_without_worker import WORKER_ONLY, blocker

ROOT = Path(__file__).resolve().parents[2]
TOY_SERVER = Path(__file__).with_name("toy_server.py")
RISK_MAP = {
    "send_email": {"risk": "high", "target": "to"},
    "ech*": "low",
    "*": "medium",
}


#: Starts ``agentwatch`` with every package the ``[mcp]`` extra does not bring made
#: unimportable (faust, river, scikit-learn, numpy, ...; aiohttp, PyYAML and the
#: opentelemetry-api the mcp package depends on stay); at exit it prints to stderr which of
#: them, or of the worker's own modules, got imported anyway (``leaked: []``).
LAUNCH = blocker(
    {*WORKER_ONLY.values(), "scipy", "mode", "rocksdict"} - {"aiohttp", "yaml", "opentelemetry"},
    (
        "agentwatch.streams",
        "agentwatch.detectors",
        "agentwatch.alerting",
        "agentwatch.lab",
        "agentwatch.ingest",
    ),
) + textwrap.dedent(
    """
    import atexit
    atexit.register(lambda: print("leaked:", leaked(), file=sys.stderr, flush=True))
    from agentwatch.cli import main
    sys.argv[0] = "agentwatch"
    main()
    """
)


def proxy_env(settings: Settings) -> dict[str, str]:
    """What the proxy process needs to reach the test broker and verify control records."""
    return {
        "AGENTWATCH_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "AGENTWATCH_TOPIC_PREFIX": settings.topic_prefix,
        "AGENTWATCH_CONTROL_VERIFY_KEYS": ",".join(settings.control_verify_keys),
        "AGENTWATCH_DATA_DIR": str(settings.data_dir),
        "AGENTWATCH_LOG_LEVEL": "INFO",
    }


def write_risk_map(directory: Path) -> Path:
    path = directory / "risk.yml"
    path.write_text(yaml.safe_dump(RISK_MAP, sort_keys=False), encoding="utf-8")
    return path


def proxy_command(agent: str, risk_map: Path, *rest: str) -> list[str]:
    return [
        "-c",
        LAUNCH,
        "mcp-proxy",
        "--agent-id",
        agent,
        "--fleet",
        "mcp-test",
        "--risk-map",
        str(risk_map),
        "--require-control",
        *rest,
    ]


@contextlib.asynccontextmanager
async def stdio_session(
    settings: Settings, agent: str, tmp_path: Path, *, via_proxy: bool = True
) -> AsyncIterator[tuple[ClientSession, Path, Path]]:
    """A real MCP client session with the toy server (through the proxy, by default).

    Yields the session, the file the server appends each tool it runs to, and the file that
    receives the proxy's (and the server's) stderr.
    """
    calls = tmp_path / f"calls-{agent}.txt"
    calls.touch()
    stderr_path = tmp_path / f"stderr-{agent}.txt"
    server = [sys.executable, str(TOY_SERVER), str(calls)]
    if via_proxy:
        args = [*proxy_command(agent, write_risk_map(tmp_path)), "--", *server]
        params = StdioServerParameters(
            command=sys.executable, args=args, env=proxy_env(settings), cwd=str(ROOT)
        )
    else:
        params = StdioServerParameters(command=server[0], args=server[1:], cwd=str(ROOT))
    with stderr_path.open("w", encoding="utf-8") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session, calls, stderr_path


class Counting:
    """A session whose tool calls are counted: each must become exactly one event."""

    def __init__(self, session: ClientSession) -> None:
        self.session = session
        self.made = 0
        self.refused = 0

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> CallToolResult:
        self.made += 1
        result = await self.session.call_tool(name, arguments)
        if refused("halted")(result) or refused("revoked")(result):
            self.refused += 1
        return result


def ran(calls: Path) -> list[str]:
    """The tools the server ran, in order."""
    return calls.read_text(encoding="utf-8").split()


def text_of(result: CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


async def call_until(
    call: Callable[[], Awaitable[CallToolResult]],
    accept: Callable[[CallToolResult], bool],
    calls: Path,
    limit: float = 5.0,
) -> tuple[CallToolResult, float, bool]:
    """Call until ``accept`` holds; return that result, the seconds it took and whether the
    server ran nothing during the accepted call."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        before = len(ran(calls))
        result = await call()
        if accept(result):
            return result, time.perf_counter() - started, len(ran(calls)) == before
        await asyncio.sleep(0.02)
    raise AssertionError(f"no accepted result within {limit}s")


def refused(kind: str) -> Callable[[CallToolResult], bool]:
    """A result the gateway refused with ``kind`` ("halted" or "revoked")."""
    return lambda r: r.is_error and text_of(r).startswith(f"{kind} by agentwatch:")


def succeeded(r: CallToolResult) -> bool:
    return not r.is_error


async def wait_port(port: int, limit: float = 15.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {limit}s")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def p50_ms(call: Callable[[], Awaitable[Any]], n: int = 100, warmup: int = 10) -> float:
    """Median milliseconds of ``call`` over ``n`` calls after ``warmup`` ones."""
    for _ in range(warmup):
        await call()
    latencies = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        latencies.append((time.perf_counter() - t0) * 1000.0)
    return percentile(latencies, 0.5)


def by_action(events: list[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for e in events:
        out.setdefault(e.action, []).append(e)
    return out
