"""The on-call console in a real browser (Debian's chromium), against a real worker on the
embedded broker, with loopback fake PagerDuty and Slack: log in, open the incident from the
page's link, see the evidence, halt and resume the agent, silence it; its next anomaly is
recorded but not paged. And the refusals: no session, wrong token, CSRF, open redirect."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from agentwatch.config import Settings
from agentwatch.streams.console import COOKIE
from agentwatch.streams.runner import running_app
from tests.alerting.fakes import FakePagerDuty, FakeSlack
from tests.conftest import API_TOKEN
from tests.streams.console.browser import chromium
from tests.streams.test_pipeline import encoded, event, produce, wait_for
from tests.streams.test_silences_live import get, notify_worker

pytestmark = pytest.mark.integration

AGENT = "support-7"
OTHER = "billing-2"
XSS = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'


def risky(i: int, agent: str, **fields: Any) -> tuple[bytes, bytes]:
    doc = {"action": "drop_table", "risk": "critical", "target": "db:users", **fields}
    return encoded(event(i, agent, **doc))


def triggers(pd: FakePagerDuty, agent: str) -> list[dict[str, Any]]:
    return [e for e in pd.accepted("trigger") if e["payload"]["source"] == agent]


async def test_on_call_console_in_chromium(
    settings: Settings, tmp_path: Path, auth: dict[str, str]
) -> None:
    async with FakePagerDuty() as pd, FakeSlack() as slack:
        worker = notify_worker(settings, tmp_path, pd, slack)
        base = worker.web_url
        async with (
            running_app(worker),
            aiohttp.ClientSession(headers=auth) as api,
            aiohttp.ClientSession() as anonymous,
            chromium() as browser,
        ):
            await produce(worker.settings, [risky(1, AGENT, target=XSS)])
            await wait_for(lambda: len(triggers(pd, AGENT)) == 1, timeout=30)
            (page,) = triggers(pd, AGENT)
            incident_id = page["dedup_key"]
            link = next(x["href"] for x in page["links"] if x["text"].startswith("Incident"))
            assert link == f"{base}/console/incidents/{incident_id}"
            assert page["client_url"] == link
            agent_link = next(x["href"] for x in page["links"] if x["text"].startswith("Agent"))
            assert agent_link == f"{base}/console/agents/{AGENT}"
            await wait_for(lambda: any(link in str(m) for m in slack.messages), timeout=10)

            # -- refusals, with a plain HTTP client ------------------------------------------
            async with anonymous.get(link, allow_redirects=False) as resp:
                assert resp.status == 303
                to = URL(resp.headers["Location"])
                assert to.path == "/console/login"
                assert to.query["next"] == f"/console/incidents/{incident_id}"
            wrong = {"token": "not-the-token", "actor": "mallory", "next": "/console/incidents"}
            async with anonymous.post(
                f"{base}/console/login", data=wrong, allow_redirects=False
            ) as resp:
                assert resp.status == 401
                assert "Set-Cookie" not in resp.headers
                assert "Wrong token" in await resp.text()
            evil = {"token": API_TOKEN, "actor": "alice", "next": "https://evil.example/x"}
            async with anonymous.post(
                f"{base}/console/login", data=evil, allow_redirects=False
            ) as resp:
                assert resp.status == 303
                assert resp.headers["Location"] == "/console/incidents"  # not the foreign site
                cookie_line = resp.headers["Set-Cookie"]
            flags = {part.strip().lower() for part in cookie_line.split(";")}
            assert {"httponly", "samesite=strict", "path=/console"} <= flags
            assert "secure" not in flags  # plain HTTP here; Secure is set when served over TLS
            assert API_TOKEN not in cookie_line

            # -- log in from the page's link, see the evidence ------------------------------
            await browser.get(link)
            assert URL(browser.url).path == "/console/login"
            await browser.fill("token", API_TOKEN)
            await browser.fill("actor", "alice")
            await browser.click("login")
            text = await browser.wait_text(f"Incident {incident_id}")
            assert browser.url == link  # back on the page asked for
            assert f"{AGENT}-1" in text and "drop_table" in text  # the evidence event
            assert XSS in text  # shown as text: escaped, never run
            assert await browser.script("return window.__xss === undefined") is True
            assert "Score" in text and "Threshold" in text and "Observed" in text
            assert "incident_open" in text  # the audit history
            assert API_TOKEN not in await browser.source()
            cookie = await browser.cookie(COOKIE)
            assert cookie is not None
            assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"

            # -- halt and resume the agent ---------------------------------------------------
            await browser.click("agent-link")
            await browser.wait_text(f"Agent {AGENT}")
            await browser.click("halt")
            await browser.wait_text("Agent halted.")
            state = await get(api, f"{base}/agents/{AGENT}")
            assert state["control"]["halted"] is True
            assert state["control"]["updated_by"] == "alice"
            await browser.click("resume")
            await browser.wait_text("Agent resumed.")
            state = await get(api, f"{base}/agents/{AGENT}")
            assert state["control"]["halted"] is False
            version = state["control"]["version"]

            # -- forged posts change nothing -------------------------------------------------
            hijack = {"Cookie": f"{COOKIE}={cookie['value']}"}
            halt_url = f"{base}/console/agents/{AGENT}/halt"
            for form in ({"reason": "forged"}, {"reason": "forged", "csrf": "wrong"}):
                async with anonymous.post(
                    halt_url, data=form, headers=hijack, allow_redirects=False
                ) as resp:
                    assert resp.status == 403, form
            async with anonymous.post(
                halt_url, data={"reason": "x", "csrf": "x"}, allow_redirects=False
            ) as resp:
                assert resp.status == 403  # no session at all
            state = await get(api, f"{base}/agents/{AGENT}")
            assert state["control"]["halted"] is False
            assert state["control"]["version"] == version

            # -- acknowledge, then silence the agent -----------------------------------------
            await browser.get(link)
            await browser.click("ack")
            await browser.wait_text("Incident acknowledged.")
            acked = await get(api, f"{base}/incidents/{incident_id}")
            assert (acked["status"], acked["acknowledged_by"]) == ("acknowledged", "alice")
            await browser.get(agent_link)
            await browser.fill("silence-duration", "2h")
            await browser.fill("silence-comment", "deploying a fix")
            await browser.click("silence")
            text = await browser.wait_text("Silence created")
            (silence,) = (await get(api, f"{base}/silences"))["silences"]
            assert silence["matchers_text"] == [f'agent="{AGENT}"']
            assert (silence["created_by"], silence["comment"]) == ("alice", "deploying a fix")
            assert silence["silence_id"] in text

            # -- the silenced agent's next anomaly: recorded, shown, not paged ---------------
            async with api.post(
                f"{base}/incidents/{incident_id}/resolve",
                json={"actor": "alice", "reason": "fixed"},
            ) as resp:
                assert resp.status == 200  # so that a new anomaly would open a new incident
            await produce(worker.settings, [risky(2, AGENT), risky(1, OTHER)])
            await wait_for(lambda: len(triggers(pd, OTHER)) == 1, timeout=30)  # pages flow

            async def recorded() -> list[dict[str, Any]]:
                doc = await get(api, f"{base}/anomalies?agent={AGENT}")
                return list(doc["anomalies"])

            for _ in range(100):
                if len(await recorded()) == 2:
                    break
                await asyncio.sleep(0.1)
            newest = (await recorded())[0]
            assert newest["evidence"] == [f"{AGENT}-2"]
            assert newest["silenced_by"] == [silence["silence_id"]]
            await asyncio.sleep(2.5)  # group wait (1 s) and ticks (1 s) passed
            assert len(triggers(pd, AGENT)) == 1  # the first page only
            await browser.get(agent_link)
            text = await browser.wait_text(f"{AGENT}-2")
            assert f"not paged (silenced by {silence['silence_id']})" in text

            # -- log out ---------------------------------------------------------------------
            await browser.click_text("Log out")
            await browser.wait_text("Log in")
            await browser.get(link)
            assert URL(browser.url).path == "/console/login"
