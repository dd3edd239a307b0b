"""The fleet kill switch: ``POST /fleets/{fleet}/halt`` (``agentwatch agents halt --fleet F``)
stops every live SDK agent of the fleet within a second, leaves the other fleet running, and
audits each agent; resume undoes it the same way. The CLI asks before it acts."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import time
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import pytest

from agentwatch.config import Settings
from agentwatch.sdk import AgentHalted, Monitor
from agentwatch.streams.app import create_app
from agentwatch.streams.runner import running_app
from tests.streams.test_cli_control import cli
from tests.streams.test_pipeline import wait_for
from tests.streams.test_response import read_topic

pytestmark = pytest.mark.integration

ALPHA = [f"alpha-{i}" for i in range(5)]
BETA = [f"beta-{i}" for i in range(3)]
HALT_WITHIN_S = 1.0


async def post(http: aiohttp.ClientSession, url: str, **body: Any) -> tuple[int, Any]:
    async with http.post(url, json=body) as resp:
        return resp.status, await resp.json()


async def test_fleet_halt_stops_every_sdk_agent_of_the_fleet_within_a_second(
    settings: Settings, auth: dict[str, str]
) -> None:
    worker = create_app(settings)
    async with running_app(worker), AsyncExitStack() as stack:
        await wait_for(worker.response.owns, timeout=20)
        url = worker.web_url
        monitors: dict[str, Monitor] = {}
        tools = {}
        for agent in ALPHA + BETA:
            fleet = "alpha" if agent in ALPHA else "beta"
            monitor = Monitor.from_settings(agent, fleet, settings=settings)
            monitors[agent] = await stack.enter_async_context(monitor)

            @monitor.tool
            async def work(step: int) -> int:
                return step

            tools[agent] = work
        for agent in monitors:
            assert await tools[agent](0) == 0
        for monitor in monitors.values():
            assert await monitor.flush(5.0)
        await wait_for(lambda: all(a in worker.stage.engine.baselines for a in monitors))
        http = await stack.enter_async_context(aiohttp.ClientSession(headers=auth))

        status, doc = await post(http, f"{url}/fleets/alpah/halt", actor="oncall", reason="x")
        assert status == 404 and doc["reason"] == "unknown_fleet"
        assert doc["error"] == (
            "unknown fleet 'alpah' (did you mean alpha?): no agent of it has sent an event"
        )
        status, doc = await post(
            http, f"{url}/fleets/alpha/halt", actor="oncall", reason="x", actions=["a"]
        )
        assert status == 400 and "one agent" in doc["error"]

        # the kill switch: time from the request to each agent's next tool call refusing
        halted_at: dict[str, float] = {}
        started = time.monotonic()
        request = asyncio.create_task(
            post(http, f"{url}/fleets/alpha/halt", actor="oncall", reason="runaway fleet")
        )
        while len(halted_at) < len(ALPHA) and time.monotonic() - started < 5 * HALT_WITHIN_S:
            for agent in ALPHA:
                if agent not in halted_at and not monitors[agent].allows("work"):
                    halted_at[agent] = time.monotonic() - started
            await asyncio.sleep(0.002)
        status, doc = await request
        assert status == 200, doc
        slowest = max(halted_at.values(), default=float("inf"))
        print(f"\nfleet halt: {len(halted_at)}/{len(ALPHA)} agents halted, slowest {slowest:.3f} s")
        assert sorted(halted_at) == ALPHA and slowest < HALT_WITHIN_S
        assert doc["agents"] == ALPHA and doc["unchanged"] == []
        assert sorted(s["agent_id"] for s in doc["changed"]) == ALPHA
        assert all(s["halted"] and s["signature"] for s in doc["changed"])
        for agent in ALPHA:
            with pytest.raises(AgentHalted, match="runaway fleet"):
                await tools[agent](1)
        await asyncio.sleep(0.3)  # anything meant for beta would have arrived by now
        for agent in BETA:  # the other fleet is untouched
            assert await tools[agent](1) == 1
            assert worker.response.control(agent) is None

        # again: every agent is already halted; nothing changes, nothing is audited twice
        versions = {a: worker.response.control(a).version for a in ALPHA}  # type: ignore[union-attr]
        status, doc = await post(http, f"{url}/fleets/alpha/halt", actor="oncall", reason="2nd")
        assert status == 200 and doc["changed"] == [] and doc["unchanged"] == ALPHA
        assert {a: worker.response.control(a).version for a in ALPHA} == versions  # type: ignore[union-attr]

        status, doc = await post(http, f"{url}/fleets/alpha/resume", actor="oncall", reason="fixed")
        assert status == 200 and sorted(s["agent_id"] for s in doc["changed"]) == ALPHA
        await wait_for(lambda: all(monitors[a].allows("work") for a in ALPHA), timeout=5)
        for agent in ALPHA:
            assert await tools[agent](2) == 2

        # the CLI: `agents list --fleet`, then halt --fleet asks first (and only in a terminal)
        code, out, err = await cli(url, "agents", "list", "--fleet", "beta", "--json")
        assert code == 0, err
        assert [(r["agent_id"], r["fleet"]) for r in json.loads(out)] == [(a, "beta") for a in BETA]
        code, out, err = await cli(url, "agents", "halt", "--fleet", "beta", "-r", "drill")
        assert code == 2 and "pass --yes" in err and "Traceback" not in err
        code, out, err = await cli(url, "agents", "halt", "beta-0", "--fleet", "beta", "-r", "x")
        assert code == 2 and "AGENT_ID or --fleet" in err
        answered = await cli_answering("n\n", url, "agents", "halt", "--fleet", "beta", "-r", "no")
        assert answered[0] == 1 and "nothing changed" in answered[1], answered
        assert "Halt 3 agents of fleet 'beta' (beta-0, beta-1, beta-2)?" in answered[1]
        assert all(worker.response.control(a) is None for a in BETA)
        answered = await cli_answering("y\n", url, "agents", "halt", "--fleet", "beta", "-r", "ok")
        assert answered[0] == 0, answered
        assert "fleet beta: halted 3 of 3 agents" in answered[1]
        await wait_for(lambda: not any(monitors[a].allows("work") for a in BETA), timeout=5)
        code, out, err = await cli(
            url, "agents", "resume", "--fleet", "beta", "-r", "done", "--yes"
        )
        assert code == 0 and "fleet beta: resumed 3 of 3 agents" in out, err
        for agent in BETA:
            assert out.count(f"{agent}: running") == 1
        await wait_for(lambda: all(monitors[a].allows("work") for a in BETA), timeout=5)
        code, out, err = await cli(url, "agents", "resume", "--fleet", "beta", "-r", "x", "-y")
        assert code == 0 and "resumed 0 of 3 agents (3 already running)" in out, err
    audit = await read_topic(settings, "audit")
    people = [a for a in audit if a["actor_kind"] == "person"]
    alpha = sorted(
        (a["action"], a["agent_id"], a["reason"]) for a in people if a["agent_id"] in ALPHA
    )
    assert alpha == sorted(
        [("halt", a, "runaway fleet") for a in ALPHA] + [("resume", a, "fixed") for a in ALPHA]
    )
    beta = sorted((a["action"], a["agent_id"], a["actor"]) for a in people if a["agent_id"] in BETA)
    assert beta == sorted(
        [("halt", a, "carol") for a in BETA] + [("resume", a, "carol") for a in BETA]
    )
    assert all(a["detail"]["fleet"] == a["agent_id"].split("-")[0] for a in people)


async def cli_answering(answer: str, url: str, *args: str) -> tuple[int, str, str]:
    """The CLI with a terminal as stdin, given ``answer`` to type."""
    main, terminal = pty.openpty()
    try:
        os.write(main, answer.encode())
        return await cli(url, *args, stdin=terminal)
    finally:
        os.close(terminal)
        os.close(main)
