"""The control API's one wrapper: every handler behind the token check, every answer counted."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import SecretStr
from yarl import URL

from agentwatch.config import Settings
from agentwatch.streams.api import Answer, Call, ControlApi
from agentwatch.streams.auth_failures import AuthFailures
from agentwatch.streams.metrics import WorkerMetrics

TOKEN = "s3cret-token"


@dataclass
class Resp:
    body: Any
    status: int
    headers: dict[str, str] | None


class View:
    """The two answer makers of a faust view the wrapper uses."""

    def json(self, value: Any, *, status: int = 200, headers: Any = None) -> Resp:
        return Resp(value, status, headers)

    def bytes(self, value: bytes, *, content_type: Any, status: int, headers: Any) -> Resp:
        return Resp(value, status, headers)


@dataclass
class Request:
    method: str = "POST"
    body: bytes = b'{"actor": "alice"}'
    headers: dict[str, str] = field(default_factory=dict)
    url: URL = field(default_factory=lambda: URL("http://127.0.0.1:6066/agents/a1/halt?x=1"))
    remote: str = "127.0.0.1"

    async def read(self) -> bytes:
        return self.body


def api(
    token: str | None = TOKEN, failures: AuthFailures | None = None
) -> tuple[ControlApi, WorkerMetrics]:
    metrics = WorkerMetrics()
    settings = Settings(api_token=SecretStr(token) if token else None)
    built = ControlApi(
        None,
        settings=settings,
        metrics=metrics,
        stage=None,  # type: ignore[arg-type]  # the wrapper alone: no handler reads them
        response=None,  # type: ignore[arg-type]
        baselines=None,
        controls=None,
        failures=failures or AuthFailures(10, 60.0),
    )
    return built, metrics


def counted(metrics: WorkerMetrics, endpoint: str, status: str) -> float:
    value = metrics.registry.get_sample_value(
        "agentwatch_api_requests_total", {"endpoint": endpoint, "status": status}
    )
    return value or 0.0


async def test_a_handler_runs_only_with_the_token_and_every_answer_is_counted() -> None:
    control, metrics = api()
    seen: list[tuple[Call, dict[str, str]]] = []

    async def handler(call: Call, **params: str) -> Answer:
        seen.append((call, params))
        return Answer({"ok": True}, headers={"ETag": '"3"'})

    serve = control.guarded(lambda p: f"agent_{p['op']}", handler)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        resp = await serve(View(), Request(headers=headers), agent_id="a1", op="halt")
        assert resp.status == 401 and resp.headers == {
            "WWW-Authenticate": 'Bearer realm="agentwatch"'
        }
    assert seen == []
    assert counted(metrics, "agent_halt", "401") == 3

    good = {"Authorization": f"Bearer {TOKEN}", "If-Match": '"2"', "Cookie": "x=y"}
    resp = await serve(View(), Request(headers=good), agent_id="a1", op="halt")
    assert (resp.status, resp.body, resp.headers) == (200, {"ok": True}, {"ETag": '"3"'})
    ((call, params),) = seen
    assert params == {"agent_id": "a1", "op": "halt"}
    assert call.body == b'{"actor": "alice"}' and call.query["x"] == "1"
    assert call.header("if-match") == '"2"' and call.authorization == f"Bearer {TOKEN}"
    assert call.header("Cookie") is None  # only what a forwarded request needs is kept
    assert counted(metrics, "agent_halt", "200") == 1


async def test_no_token_configured_refuses_with_503_and_unlabelled_handlers_count_nothing() -> None:
    control, metrics = api(token=None)

    async def handler(call: Call, **params: str) -> Answer:
        raise AssertionError("must not run")

    resp = await control.guarded("incidents", handler)(View(), Request(method="GET"))
    assert resp.status == 503 and "AGENTWATCH_API_TOKEN" in resp.body["error"]
    assert counted(metrics, "incidents", "503") == 1
    control, metrics = api()
    resp = await control.guarded(None, handler)(View(), Request(method="GET"))
    assert resp.status == 401
    assert not [
        s
        for m in metrics.registry.collect()
        for s in m.samples
        if s.name == "agentwatch_api_requests_total"
    ]


async def test_an_address_with_too_many_wrong_tokens_waits_before_any_token_is_compared() -> None:
    now = [100.0]
    control, metrics = api(failures=AuthFailures(3, 60.0, clock=lambda: now[0]))
    runs: list[str] = []

    async def handler(call: Call, **params: str) -> Answer:
        runs.append(call.method)
        return Answer({"ok": True})

    serve = control.guarded("incidents", handler)
    wrong = {"Authorization": "Bearer guess"}
    good = {"Authorization": f"Bearer {TOKEN}"}
    for _ in range(3):
        assert (await serve(View(), Request(headers=wrong, remote="10.9.8.7"))).status == 401
    now[0] += 20.0
    # the right token from that address is refused too while it waits; others are served
    resp = await serve(View(), Request(headers=good, remote="10.9.8.7"))
    assert resp.status == 429 and resp.headers == {"Retry-After": "40"}
    assert "retry in 40 s" in resp.body["error"] and TOKEN not in str(resp.body)
    assert (await serve(View(), Request(headers=good, remote="10.9.8.8"))).status == 200
    now[0] += 40.0  # the first wrong token leaves the window
    assert (await serve(View(), Request(headers=good, remote="10.9.8.7"))).status == 200
    assert runs == ["POST", "POST"]
    assert counted(metrics, "incidents", "429") == 1


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_only_a_post_body_is_read(method: str) -> None:
    call = await Call.of(Request(method=method, body=b"ignored"))
    assert call.body == b""
