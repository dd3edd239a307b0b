"""Run the gateway: one agent's :class:`~agentwatch.sdk.Monitor`, a gate, and a transport.

:func:`run_proxy` is what ``agentwatch mcp-proxy`` calls. It builds the agent's monitor from
:class:`~agentwatch.config.Settings` (broker, topic prefix, Kafka security, the control
verifier: the same settings an SDK agent uses), waits for the agent's control state, then
serves stdio or streamable HTTP until the client (or the server) goes away or SIGINT/SIGTERM
arrives, and finally delivers the buffered events (bounded by ``close_timeout``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio

from agentwatch.config import Settings
from agentwatch.mcp.gate import ToolCallGate
from agentwatch.mcp.policy import PolicyError, ToolPolicy, load_policy
from agentwatch.schemas.signing import SigningKeyError
from agentwatch.sdk.errors import ControlUnavailable
from agentwatch.sdk.monitor import Monitor

__all__ = ["ProxyError", "ProxyOptions", "build", "run_proxy", "serve"]

log = logging.getLogger("agentwatch.mcp")


class ProxyError(RuntimeError):
    """The gateway cannot run; the message says why and what to do (one line)."""


@dataclass(frozen=True)
class ProxyOptions:
    """What ``agentwatch mcp-proxy`` was asked to do.

    Exactly one of ``command`` (stdio mode: the server to start) and ``upstream`` (HTTP mode:
    the server's endpoint URL, with ``listen``) is given.
    """

    agent_id: str
    fleet: str = "default"
    command: tuple[str, ...] = ()
    upstream: str | None = None
    listen: str = "127.0.0.1:8765"
    risk_map: Path | None = None
    startup_timeout: float = 5.0
    close_timeout: float = 5.0
    require_control: bool = False
    session_id: str | None = None


def build(settings: Settings, options: ProxyOptions) -> tuple[Monitor, ToolPolicy]:
    """The agent's monitor and the risk map; :class:`ProxyError` when either is unusable."""
    if bool(options.command) == bool(options.upstream):
        raise ProxyError(
            "give either the server command after -- (stdio) or --upstream URL (HTTP), not both"
        )
    try:
        policy = load_policy(options.risk_map)
    except PolicyError as exc:
        raise ProxyError(str(exc)) from None
    try:
        monitor = Monitor.from_settings(
            options.agent_id,
            options.fleet,
            settings=settings,
            startup_timeout=options.startup_timeout,
            close_timeout=options.close_timeout,
            require_control=options.require_control,
            session_id=options.session_id,
        )
    except SigningKeyError as exc:
        raise ProxyError(f"{exc} (AGENTWATCH_CONTROL_VERIFY_KEYS)") from None
    except ValueError as exc:
        raise ProxyError(f"--agent-id/--fleet: {exc}") from None
    return monitor, policy


@contextlib.contextmanager
def _stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            pass
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def serve(monitor: Monitor, policy: ToolPolicy, options: ProxyOptions) -> int:
    """Start ``monitor``, serve the chosen transport, close ``monitor``; the exit code."""
    if options.command:
        return await _serve_stdio(monitor, policy, options)
    return await _serve_http(monitor, policy, options)


async def _start_monitor(monitor: Monitor) -> None:
    try:
        await monitor.start()
    except ControlUnavailable as exc:
        raise ProxyError(str(exc)) from None


async def _serve_stdio(monitor: Monitor, policy: ToolPolicy, options: ProxyOptions) -> int:
    from agentwatch.mcp.stdio import ClientStdio, serve_stdio

    client = ClientStdio()
    await client.open()  # before anything else can write to stdout
    gate = ToolCallGate(monitor, policy, "stdio")
    who = "signal"
    try:
        await _start_monitor(monitor)
        with anyio.CancelScope() as scope, _stop_on_signals(scope.cancel):
            try:
                who = await serve_stdio(
                    gate,
                    list(options.command),
                    client,
                    flush=lambda: monitor.flush(options.close_timeout),
                )
            except OSError as exc:
                raise ProxyError(
                    f"cannot start the MCP server {options.command[0]!r}: {exc.strerror or exc}"
                ) from None
    finally:
        await monitor.aclose()
        client.close()
        _summary(gate, monitor)
    if who == "server":
        log.warning("agentwatch mcp-proxy: the MCP server exited; stopping")
        return 1
    return 0


async def _serve_http(monitor: Monitor, policy: ToolPolicy, options: ProxyOptions) -> int:
    from agentwatch.mcp.http import HttpProxy, is_loopback, parse_listen

    try:
        host, port = parse_listen(options.listen)
    except ValueError as exc:
        raise ProxyError(str(exc)) from None
    assert options.upstream is not None
    gate = ToolCallGate(monitor, policy, "http")
    proxy = HttpProxy(gate, options.upstream, host, port)
    try:
        await _start_monitor(monitor)
        try:
            await proxy.start()
        except ValueError as exc:
            raise ProxyError(str(exc)) from None
        except OSError as exc:
            raise ProxyError(
                f"cannot listen on {options.listen}: {exc.strerror or exc}; choose another "
                "--listen HOST:PORT"
            ) from None
        if not is_loopback(host):
            log.warning(
                "agentwatch mcp-proxy listens on %s, beyond this machine: anyone who reaches "
                "it can call the server's tools as agent %s",
                options.listen,
                monitor.agent_id,
            )
        log.info(
            "agentwatch mcp-proxy: agent %s, MCP endpoint %s -> %s",
            monitor.agent_id,
            proxy.url,
            options.upstream,
        )
        stopped = anyio.Event()
        with _stop_on_signals(stopped.set):
            await stopped.wait()
    finally:
        await proxy.stop()
        await monitor.aclose()
        _summary(gate, monitor)
    return 0


def _summary(gate: ToolCallGate, monitor: Monitor) -> None:
    calls = gate.counters.snapshot()
    stats = monitor.stats
    log.info(
        "agentwatch mcp-proxy: agent %s: %d tool calls (%d refused, %d ok, %d error, "
        "%d abandoned); events sent %d, dropped %d; control records refused %d",
        monitor.agent_id,
        calls["calls"],
        calls["refused"],
        calls["ok"],
        calls["error"],
        calls["abandoned"],
        stats["sent"],
        stats["dropped"],
        stats["control_rejected"],
    )


def run_proxy(settings: Settings, options: ProxyOptions) -> int:
    """Run the gateway until the client leaves or a signal; return the exit code.

    Raises
    ------
    ProxyError
        with a one-line reason when it cannot start.
    """
    monitor, policy = build(settings, options)
    return asyncio.run(serve(monitor, policy, options))
