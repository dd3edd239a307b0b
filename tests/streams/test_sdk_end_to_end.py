"""The agent SDK against a running worker: emitted events show up in the agent's baseline."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from agentwatch.config import Settings
from agentwatch.sdk import Monitor
from agentwatch.streams.app import create_app
from agentwatch.streams.runner import running_app

pytestmark = pytest.mark.integration


async def test_sdk_events_reach_baseline_and_agent_view(
    settings: Settings, auth: dict[str, str]
) -> None:
    worker = create_app(settings)
    async with running_app(worker):
        monitor = Monitor.from_settings("e2e-agent", "support", settings=settings)
        async with monitor:

            @monitor.tool(risk="low")
            async def search_kb(query: str) -> str:
                return query.upper()

            @monitor.tool(name="send_email", risk="medium")
            def send_email(to: str) -> None:
                raise ConnectionError("smtp down")

            for i in range(6):
                assert await search_kb(f"q{i}") == f"Q{i}"
            with pytest.raises(ConnectionError):
                send_email("bob@example.com")
            monitor.record(
                "chat", model="gpt-x", input_tokens=1200, output_tokens=300, cost_usd=0.25
            )
            assert await monitor.flush(5.0)

        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            baseline = worker.stage.engine.baselines.get("e2e-agent")
            if baseline is not None and baseline.count == 8:
                break
            await asyncio.sleep(0.05)
        async with (
            aiohttp.ClientSession(headers=auth) as http,
            http.get(f"{worker.web_url}/agents/e2e-agent") as resp,
        ):
            assert resp.status == 200
            view = await resp.json()
    assert view["events"] == 8
    assert view["errors"] == 1
    assert view["kinds"]["llm"] == 1 and view["kinds"]["tool"] == 7
    assert view["cost_usd"] == pytest.approx(0.25)
    assert view["input_tokens"] == 1200
    counts = {row["action"]: row["count"] for row in view["top_actions"]}
    assert counts == {"search_kb": 6, "send_email": 1, "chat": 1}
