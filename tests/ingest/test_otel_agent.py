"""Acceptance: an agent instrumented only with the OpenTelemetry SDK, watched by ``agentwatch up``.

The agent is a separate process that imports nothing of agentwatch: ``opentelemetry-sdk`` with
its OTLP/HTTP exporter (protobuf, gzip, a batching processor) pointed at the receiver of an
``agentwatch up`` stack. Its tool and model spans name no agent; their ``invoke_agent`` parent,
sent after them, does. Half an hour of ordinary work (in event time) is followed by a runaway
loop: 60 identical ``execute_tool`` calls in a minute. The worker's view of the agent must hold
the right counts, tokens and cost, and the loop must open an incident.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agentwatch.streams.broker import free_port
from tests.streams.test_runner import banner, stop

pytestmark = pytest.mark.integration

AGENT = textwrap.dedent(
    """
    import json, random, sys, time

    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import Status, StatusCode

    endpoint, agent_id = sys.argv[1], sys.argv[2]
    provider = TracerProvider(resource=Resource.create({"service.name": "support"}))
    provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=endpoint, compression=Compression.Gzip, timeout=10),
            schedule_delay_millis=200,
            max_export_batch_size=64,
        )
    )
    tracer = provider.get_tracer("otel-only-agent")
    rnd = random.Random(7)
    S = 1_000_000_000
    t = time.time_ns() - 30 * 60 * S
    totals = {"events": 0, "input_tokens": 0, "output_tokens": 0, "errors": 0, "tools": 0}

    def step(ctx, name, attributes, seconds, error=None):
        global t
        span = tracer.start_span(name, context=ctx, start_time=t, attributes=attributes)
        t += int(seconds * S)
        if error:
            span.set_attribute("error.type", error)
            span.set_status(Status(StatusCode.ERROR, "upstream timed out"))
            totals["errors"] += 1
        span.end(end_time=t)
        totals["events"] += 1

    def run(steps):
        global t
        root = tracer.start_span(
            f"invoke_agent {agent_id}",
            start_time=t,
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.id": agent_id,
                "gen_ai.agent.name": "Support Bot",
            },
        )
        ctx = trace.set_span_in_context(root)
        for args in steps:
            step(ctx, *args)
        root.end(end_time=t)  # the agent span ends, and is exported, after its children
        totals["events"] += 1

    def chat():
        tokens_in, tokens_out = rnd.randrange(300, 3000), rnd.randrange(20, 400)
        totals["input_tokens"] += tokens_in
        totals["output_tokens"] += tokens_out
        return (
            "chat gpt-4o-mini",
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                "gen_ai.usage.input_tokens": tokens_in,
                "gen_ai.usage.output_tokens": tokens_out,
                "gen_ai.conversation.id": "conv-1",
            },
            10,
        )

    def tool(name, argument, error=None):
        totals["tools"] += 1
        return (
            f"execute_tool {name}",
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": name,
                "gen_ai.tool.call.arguments": json.dumps({"q": argument}),
            },
            1,
            error,
        )

    for i in range(20):  # ordinary work: 80 model calls and 80 varied tool calls
        steps = []
        for j in range(4):
            steps.append(chat())
            error = "TimeoutError" if (i, j) == (3, 1) else None
            name = rnd.choice(["search", "read_file", "send_email"])
            steps.append(tool(name, f"t{rnd.randrange(20)}", error))
            steps.append(("think", {}, 9))  # an internal span: not an action, no event
            totals["events"] -= 1
        run(steps)
    run([tool("search", "the same thing") for _ in range(60)])  # the runaway loop
    provider.force_flush(30_000)
    provider.shutdown()
    print(json.dumps(totals), flush=True)
    """
)


def incident_title(view: dict[str, Any]) -> str:
    return str((view.get("incident") or {}).get("title", ""))


def start_up_otlp(data: Path, web: int, otlp: int, log: Path) -> subprocess.Popen[bytes]:
    """``agentwatch up`` with its web server and OTLP receiver on the given ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    env.update(
        AGENTWATCH_HOME=str(data.parent / "home"),  # its connection file, not ~/.agentwatch
        AGENTWATCH_DATA_DIR=str(data),
        AGENTWATCH_WEB_PORT=str(web),
        AGENTWATCH_OTLP_PORT=str(otlp),
    )
    return subprocess.Popen(
        [sys.executable, "-m", "agentwatch.cli", "up"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


async def get_json(http: aiohttp.ClientSession, url: str, token: str) -> tuple[int, Any]:
    async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, (await resp.json() if resp.status == 200 else await resp.text())


async def test_an_otel_only_agent_is_watched_and_its_loop_raises_an_incident(
    tmp_path: Path,
) -> None:
    data, web, otlp = tmp_path / "data", free_port(), free_port()
    log = tmp_path / "up.log"
    proc = start_up_otlp(data, web, otlp, log)
    try:
        text = await banner(log)
        endpoint = f"http://127.0.0.1:{otlp}/v1/traces"
        assert re.search(rf"^  otlp\s+{re.escape(endpoint)}", text, re.MULTILINE), text
        token = (data / "api-token").read_text().strip()
        agent_id = "otel-support-1"
        script = tmp_path / "agent.py"
        script.write_text(AGENT)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
        env.pop("PYTHONPATH", None)
        ran = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, str(script), endpoint, agent_id],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env=env,
            check=False,
        )
        assert ran.returncode == 0, ran.stderr[-3000:]
        assert "agentwatch" not in ran.stderr, ran.stderr[-2000:]  # no partial-success warning
        totals = json.loads(ran.stdout.strip().splitlines()[-1])
        assert totals["tools"] == 140 and totals["errors"] == 1
        expected_cost = (totals["input_tokens"] * 0.15 + totals["output_tokens"] * 0.60) / 1e6

        sent_at = time.monotonic()
        url = f"http://127.0.0.1:{web}/agents/{agent_id}"
        view: Any = None
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 90
            while True:
                status, view = await get_json(http, url, token)
                if (
                    status == 200
                    and view.get("events") == totals["events"]
                    and view.get("incident")
                ):
                    break
                assert time.monotonic() < deadline, (
                    f"{status}: {str(view)[:2000]}\n" + (log.read_text(errors="replace")[-3000:])
                )
                await asyncio.sleep(0.5)
            async with http.get(f"http://127.0.0.1:{web}/metrics") as resp:
                metrics = await resp.text()
        rekeyed = re.findall(
            r'^agentwatch_events_rekeyed_total\{reason="(\w+)"\} (\S+)', metrics, re.M
        )
        assert all(float(n) == 0 for _, n in rekeyed), rekeyed  # each event on its key's partition
        assert re.search(
            r'^agentwatch_otlp_spans_mapped_total\{.*kind="tool"\} 140\.0', metrics, re.M
        )
        print(  # the figures of the acceptance note (pytest -s)
            f"otel agent: {view['events']} events, tokens {view['input_tokens']}/"
            f"{view['output_tokens']}, cost {view['cost_usd']:.6f} USD (expected "
            f"{expected_cost:.6f}), incident {time.monotonic() - sent_at:.1f}s after the "
            f"agent exited: {incident_title(view)}"
        )
        assert view["fleet"] == "support"
        assert view["events"] == totals["events"] == 21 + 80 + 140  # 21 agent runs
        assert view["kinds"] == {"llm": 80, "tool": 140, "other": 21, "api": 0}
        assert view["errors"] == 1
        assert view["input_tokens"] == totals["input_tokens"]
        assert view["output_tokens"] == totals["output_tokens"]
        assert view["cost_usd"] == pytest.approx(expected_cost, rel=0.01)
        incident = view["incident"]
        assert "runaway_loop" in incident["detectors"], incident
        assert incident["status"] == "open"
    finally:
        stop(proc)
