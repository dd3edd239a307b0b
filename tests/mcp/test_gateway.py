"""The MCP gateway end to end: a real MCP client, ``agentwatch mcp-proxy``, a real MCP server.

The client is the ``mcp`` package's ``ClientSession``; the proxy runs as the real command in a
subprocess (stdio: the client starts it, it starts the toy server; HTTP: it listens on a free
loopback port in front of the toy server's streamable-HTTP endpoint). Control records are
written to the embedded broker's control topic, signed with the session's key as a worker
would; events are read back from the actions topic. The toy server appends each tool it runs
to a file (stdio) or a list (HTTP), so a test knows whether a call reached it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from agentwatch.config import Settings
from agentwatch.mcp.gate import REFUSAL_META_KEY
from agentwatch.schemas.signing import ControlSigner
from agentwatch.streams.broker import EmbeddedBroker, free_port
from tests.mcp.helpers import (
    LAUNCH,
    ROOT,
    TOY_SERVER,
    Counting,
    by_action,
    call_until,
    p50_ms,
    percentile,
    proxy_command,
    proxy_env,
    ran,
    refused,
    stdio_session,
    succeeded,
    text_of,
    wait_port,
    write_risk_map,
)
from tests.mcp.toy_server import build
from tests.sdk.test_monitor import control, create_topics, read_actions, write_control

pytestmark = pytest.mark.integration


def digest(arguments: dict[str, object]) -> str:
    text = json.dumps(arguments, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


async def test_calls_pass_through_and_become_events(settings: Settings, tmp_path: Path) -> None:
    await create_topics(settings)
    agent = "mcp-pass-1"
    async with stdio_session(settings, agent, tmp_path) as (session, calls, stderr):
        tools = await session.list_tools()
        assert {t.name for t in tools.tools} == {"echo", "send_email", "fail"}
        motd = await session.read_resource("toy://motd")
        assert motd.contents[0].text == "hello from toy"  # type: ignore[union-attr]
        prompt = await session.get_prompt("greet", {"name": "Ada"})
        assert "Ada" in prompt.messages[0].content.text  # type: ignore[union-attr]

        echo = await session.call_tool("echo", {"text": "hi"})
        assert not echo.is_error and text_of(echo) == "hi"
        sent = await session.call_tool("send_email", {"to": "ops@example.com", "body": "hello"})
        assert not sent.is_error and text_of(sent) == "sent 5 characters to ops@example.com"
        failed = await session.call_tool("fail", {"reason": "disk full"})
        assert failed.is_error and "disk full" in text_of(failed)
        assert ran(calls) == ["echo", "send_email", "fail"]

    # the gateway ran with only the [mcp] extra's packages importable
    assert "leaked: []" in stderr.read_text(encoding="utf-8")
    events = by_action(await read_actions(settings, 3))
    assert sorted(events) == ["echo", "fail", "send_email"]
    (e,) = events["echo"]
    assert (e.agent_id, e.fleet, e.kind, e.status, e.risk) == (
        agent,
        "mcp-test",
        "tool",
        "ok",
        "low",
    )
    assert e.target == digest({"text": "hi"})
    assert e.attributes == {"mcp.transport": "stdio", "mcp.server": "toy"}
    assert 0 < e.latency_ms < 5_000
    (s,) = events["send_email"]
    assert (s.status, s.risk, s.target) == ("ok", "high", "ops@example.com")
    (f,) = events["fail"]
    assert f.status == "error" and f.risk == "medium" and "disk full" in (f.error or "")
    assert f.target == digest({"reason": "disk full"})


async def test_halt_revoke_resume(settings: Settings, tmp_path: Path) -> None:
    await create_topics(settings)
    agent = "mcp-halt-1"
    async with stdio_session(settings, agent, tmp_path) as (session, calls, _):
        tools = Counting(session)
        assert not (await tools.call_tool("echo", {"text": "before"})).is_error

        # a signed halt: the next call is answered by the gateway, the server never sees it
        started = await write_control(
            settings,
            agent,
            control(agent, 1, halted=True, reason="runaway loop", incident_id="inc-42"),
        )
        result, _, untouched = await call_until(
            lambda: tools.call_tool("echo", {"text": "x"}), refused("halted"), calls
        )
        halt_s = time.perf_counter() - started
        assert untouched, "the server ran a call of a halted agent"
        assert halt_s < 1.0, f"halt took {halt_s:.3f}s to reach the gateway"
        assert text_of(result).startswith("halted by agentwatch: runaway loop (incident inc-42)")
        assert result.meta is not None
        assert result.meta[REFUSAL_META_KEY]["reason"] == "halted"
        n = len(ran(calls))
        blocked = await tools.call_tool("send_email", {"to": "a@b.c", "body": "x"})
        assert refused("halted")(blocked)
        assert len(ran(calls)) == n

        # resume but revoke one tool: only that tool is refused
        await write_control(
            settings, agent, control(agent, 2, halted=False, revoked=["send_email"], reason="spam")
        )
        await call_until(lambda: tools.call_tool("echo", {"text": "y"}), succeeded, calls)
        n = len(ran(calls))
        revoked = await tools.call_tool("send_email", {"to": "a@b.c", "body": "x"})
        assert refused("revoked")(revoked)
        assert text_of(revoked).startswith("revoked by agentwatch: spam")
        assert len(ran(calls)) == n
        other = await tools.call_tool("fail", {"reason": "ok to run"})
        assert other.is_error and "ok to run" in text_of(other)  # its own error: it ran
        assert ran(calls)[-1] == "fail"

        # grant it again: it runs
        await write_control(settings, agent, control(agent, 3, reason="all clear"))
        await call_until(
            lambda: tools.call_tool("send_email", {"to": "a@b.c", "body": "x"}),
            succeeded,
            calls,
        )
        assert ran(calls)[-1] == "send_email"

    events = await read_actions(settings, tools.made)
    assert len(events) == tools.made  # one event per call, refused or not
    denied = [e for e in events if e.status == "denied"]
    assert len(denied) == tools.refused
    assert {e.action for e in denied} == {"echo", "send_email"}
    assert all(e.attributes.get("mcp.transport") == "stdio" for e in denied)
    assert any(e.attributes.get("incident_id") == "inc-42" for e in denied)


async def test_forged_control_records_change_nothing(settings: Settings, tmp_path: Path) -> None:
    await create_topics(settings)
    agent = "mcp-forged-1"
    async with stdio_session(settings, agent, tmp_path) as (session, calls, stderr):
        assert not (await session.call_tool("echo", {"text": "a"})).is_error
        unsigned = control(agent, 5, halted=True, reason="forged, unsigned")
        await write_control(settings, agent, unsigned.model_dump_json().encode())
        await write_control(
            settings,
            agent,
            control(agent, 6, halted=True, reason="forged, other key"),
            signer=ControlSigner.generate(),
        )
        # a genuine record after them (same key, same partition): once it is obeyed, the
        # gateway has read past both forgeries
        await write_control(
            settings, agent, control(agent, 2, revoked=["fail"], reason="genuine marker")
        )
        await call_until(
            lambda: session.call_tool("fail", {"reason": "r"}), refused("revoked"), calls
        )
        echo = await session.call_tool("echo", {"text": "still here"})
        sent = await session.call_tool("send_email", {"to": "a@b.c", "body": "x"})
        assert succeeded(echo) and succeeded(sent)
        assert ran(calls)[-2:] == ["echo", "send_email"]
    log = stderr.read_text(encoding="utf-8")
    assert "refused control record" in log
    assert "unsigned" in log and "unknown_key" in log


async def test_events_wait_while_kafka_is_down(settings: Settings, tmp_path: Path) -> None:
    """Calls run while no broker answers; their events arrive once one does."""
    port = free_port()
    later = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{port}"})
    agent = "mcp-outage-1"
    calls = tmp_path / "calls-outage.txt"
    calls.touch()
    args = [
        "-c",
        LAUNCH,
        "mcp-proxy",
        "--agent-id",
        agent,
        "--startup-timeout",
        "0.3",
        "--",
        sys.executable,
        str(TOY_SERVER),
        str(calls),
    ]
    params = StdioServerParameters(
        command=sys.executable, args=args, env=proxy_env(later), cwd=str(ROOT)
    )
    broker = EmbeddedBroker(port=port, log_file=tmp_path / "tansu-late.log")
    try:
        with (tmp_path / "stderr-outage.txt").open("w") as errlog:
            async with (
                stdio_client(params, errlog=errlog) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                for i in range(3):  # no broker: the calls run, their events wait in the buffer
                    result = await session.call_tool("echo", {"text": f"t{i}"})
                    assert text_of(result) == f"t{i}"
                broker.start()
                await create_topics(later)
                events = await read_actions(later, 3, timeout=15.0)
        assert [e.target for e in events] == [digest({"text": f"t{i}"}) for i in range(3)]
        assert all(e.agent_id == agent and e.status == "ok" for e in events)
    finally:
        broker.stop()


async def test_overhead_per_call(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """p50 latency of a tools/call through the gateway against the same server direct."""
    await create_topics(settings)
    n = 200
    p50: dict[bool, float] = {}
    for via_proxy in (False, True):
        async with stdio_session(settings, "mcp-bench-1", tmp_path, via_proxy=via_proxy) as (
            session,
            _,
            _,
        ):
            for _ in range(20):  # warm up
                await session.call_tool("echo", {"text": "w"})
            latencies = []
            for i in range(n):
                t0 = time.perf_counter()
                await session.call_tool("echo", {"text": str(i)})
                latencies.append((time.perf_counter() - t0) * 1000.0)
            p50[via_proxy] = percentile(latencies, 0.5)
    overhead = p50[True] - p50[False]
    with capsys.disabled():
        print(
            f"\nmcp-proxy stdio overhead: p50 direct {p50[False]:.3f} ms, "
            f"via proxy {p50[True]:.3f} ms, overhead {overhead:.3f} ms per tools/call"
        )
    assert overhead < 5.0


# -- streamable HTTP ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def toy_http_server(record: list[str]) -> AsyncIterator[str]:
    port = free_port()
    app = build(record.append).streamable_http_app()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        await wait_port(port)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_http_mode_passes_calls_and_enforces_halt(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await create_topics(settings)
    agent = "mcp-http-1"
    record: list[str] = []
    async with toy_http_server(record) as upstream:
        port = free_port()
        stderr_path = tmp_path / "proxy-http.txt"
        with stderr_path.open("w") as errlog:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                *proxy_command(agent, write_risk_map(tmp_path)),
                "--listen",
                f"127.0.0.1:{port}",
                "--upstream",
                upstream,
                cwd=str(ROOT),
                env={**proxy_env(settings), "PATH": "/usr/bin:/bin"},
                stdout=asyncio.subprocess.DEVNULL,
                stderr=errlog,
            )
            try:
                await wait_port(port)
                async with (
                    streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write),
                    ClientSession(read, write) as session,
                ):
                    await session.initialize()
                    tools = Counting(session)
                    listed = await session.list_tools()
                    assert "send_email" in {t.name for t in listed.tools}
                    sent = await tools.call_tool("send_email", {"to": "x@y.z", "body": "hey"})
                    assert text_of(sent) == "sent 3 characters to x@y.z"
                    failed = await tools.call_tool("fail", {"reason": "nope"})
                    assert failed.is_error
                    assert record == ["send_email", "fail"]

                    started = await write_control(
                        settings, agent, control(agent, 1, halted=True, reason="cost spike")
                    )
                    deadline = time.perf_counter() + 5
                    while True:
                        before = len(record)
                        result = await tools.call_tool("echo", {"text": "x"})
                        if refused("halted")(result):
                            assert len(record) == before, "the server ran a halted call"
                            break
                        assert time.perf_counter() < deadline, "halt not enforced within 5 s"
                        await asyncio.sleep(0.02)
                    assert time.perf_counter() - started < 1.0
                    assert text_of(result).startswith("halted by agentwatch: cost spike")
                    n = len(record)
                    again = await tools.call_tool("send_email", {"to": "x@y.z", "body": "b"})
                    assert refused("halted")(again) and len(record) == n

                    await write_control(settings, agent, control(agent, 2, reason="resumed"))
                    deadline = time.perf_counter() + 5
                    while (await tools.call_tool("echo", {"text": "back"})).is_error:
                        assert time.perf_counter() < deadline, "resume not obeyed within 5 s"
                        await asyncio.sleep(0.02)
                    assert record[-1] == "echo"

                    # overhead per call: the same server direct and through the gateway
                    via = await p50_ms(lambda: tools.call_tool("echo", {"text": "b"}))
                    async with (
                        streamable_http_client(upstream) as (read2, write2),
                        ClientSession(read2, write2) as direct,
                    ):
                        await direct.initialize()
                        straight = await p50_ms(lambda: direct.call_tool("echo", {"text": "b"}))
                    with capsys.disabled():
                        print(
                            f"\nmcp-proxy HTTP overhead: p50 direct {straight:.3f} ms, via proxy "
                            f"{via:.3f} ms, overhead {via - straight:.3f} ms per tools/call"
                        )
                    assert via - straight < 10.0
            finally:
                proc.send_signal(signal.SIGTERM)
                code = await asyncio.wait_for(proc.wait(), 15)
    assert code == 0
    all_events = await read_actions(settings, tools.made)
    assert len(all_events) == tools.made
    assert len([e for e in all_events if e.status == "denied"]) == tools.refused
    events = by_action(all_events)
    (s,) = [e for e in events["send_email"] if e.status != "denied"]
    assert (s.status, s.risk, s.target) == ("ok", "high", "x@y.z")
    assert s.attributes == {"mcp.transport": "http", "mcp.server": "toy"}
    assert s.session_id  # the MCP session id
    (f,) = events["fail"]
    assert f.status == "error" and "nope" in (f.error or "")
    assert any(e.status == "denied" for e in events["echo"])
    log = stderr_path.read_text()
    assert "tool calls (" in log and "leaked: []" in log
