"""The control API refuses ids and actors outside the charset and logs reasons on one line."""

from __future__ import annotations

import logging
import re

import aiohttp
import pytest

from agentwatch.config import Settings
from agentwatch.streams.app import create_app
from agentwatch.streams.runner import running_app
from tests.streams.test_pipeline import wait_for

pytestmark = pytest.mark.integration


async def test_ids_and_actors_are_checked_and_reasons_cannot_forge_log_lines(
    settings: Settings, auth: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agentwatch.streams.api")
    worker = create_app(settings)
    good = {"actor": "alice", "reason": "drill"}
    async with running_app(worker), aiohttp.ClientSession(headers=auth) as http:
        await wait_for(worker.response.owns, timeout=20)
        base = worker.web_url
        statuses = {}
        for path in ("a%0Ab", "a%E2%80%AEb", "%2E%2E", "a%00"):
            async with http.post(f"{base}/agents/{path}/halt", json=good) as resp:
                statuses[path] = resp.status
        async with http.post(f"{base}/agents/team/a/halt", json=good) as resp:
            slash = resp.status
        for actor in ("bob\nINFO control: resume a1 by admin", "bob\u202e", "\ufeffbob"):
            async with http.post(
                f"{base}/agents/a1/halt", json={"actor": actor, "reason": "x"}
            ) as resp:
                assert resp.status == 400, actor
                assert "actor" in (await resp.text())
        async with http.post(
            f"{base}/agents/a1/halt",
            json={
                "actor": "alice",
                "reason": "drill\nINFO control: resume a1 by admin",
                "force": True,  # a1 never sent an event
            },
        ) as resp:
            assert resp.status == 200
    # ".." is resolved away by the URL layer before routing: it never names an agent
    assert statuses == {"a%0Ab": 400, "a%E2%80%AEb": 400, "%2E%2E": 404, "a%00": 400}
    assert slash in (404, 405)  # no agent id holds a "/": this is no agent's URL
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("control:")]
    (line,) = lines  # one line: the newline in the reason is escaped, not a second record
    assert re.fullmatch(
        r"control: halt a1 by alice \(version \d+\): drill\\nINFO control: resume a1 by admin",
        line,
    ), line
