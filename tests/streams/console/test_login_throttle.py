"""Wrong tokens from one address: after ``auth_max_failures``, the console's login and the
control API refuse it (429) before they compare any token, and other addresses' are served."""

from __future__ import annotations

import aiohttp
import pytest

from agentwatch.config import Settings
from agentwatch.streams.app import create_app
from agentwatch.streams.runner import running_app
from tests.conftest import API_TOKEN

pytestmark = pytest.mark.integration


async def test_wrong_tokens_make_the_address_wait_on_the_console_and_the_api(
    settings: Settings,
) -> None:
    worker = create_app(settings.replace(auth_max_failures=3, auth_failure_window_s=600))
    base = worker.web_url
    login = f"{base}/console/login"
    async with running_app(worker), aiohttp.ClientSession() as http:
        wrong = {"token": "guess-1", "actor": "mallory", "next": "/console/incidents"}
        async with http.post(login, data=wrong, allow_redirects=False) as resp:
            assert resp.status == 401
        bad_api = {"Authorization": "Bearer guess-2"}
        for _ in range(2):
            async with http.get(f"{base}/incidents", headers=bad_api) as resp:
                assert resp.status == 401
        # three wrong tokens, on either door: even the right one now waits
        right = {"token": API_TOKEN, "actor": "alice", "next": "/console/incidents"}
        async with http.post(login, data=right, allow_redirects=False) as resp:
            assert resp.status == 429
            assert 590 <= int(resp.headers["Retry-After"]) <= 600
            assert "Set-Cookie" not in resp.headers
            assert "Too many wrong tokens" in await resp.text()
        good_api = {"Authorization": f"Bearer {API_TOKEN}"}
        async with http.get(f"{base}/incidents", headers=good_api) as resp:
            assert resp.status == 429
            body = await resp.json()
            assert "retry in" in body["error"] and API_TOKEN not in str(body)
        assert worker.auth_failures.wait_s("127.0.0.1") > 0
        worker.auth_failures.max_failures = 0  # the limit off: the right token works again
        async with http.get(f"{base}/incidents", headers=good_api) as resp:
            assert resp.status == 200
