"""What every control API handler shares: the injected worker parts, the one auth-and-metrics
wrapper that turns handlers into web views, forwarding to the worker that owns the state, the
agent rows of every worker and the evidence events of anomalies."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import faust
import orjson
from yarl import URL

from agentwatch.config import Settings
from agentwatch.schemas import ControlState
from agentwatch.streams.auth_failures import AuthFailures
from agentwatch.streams.http_auth import bearer_refusal
from agentwatch.streams.metrics import WorkerMetrics
from agentwatch.streams.response import ResponseStage
from agentwatch.streams.roster import merge_rows, suggest, unknown_agent_message
from agentwatch.streams.stage import BaselineStage

from .messages import Answer, Call, resolve_evidence

__all__ = ["PEER_TIMEOUT_S", "ApiBase", "Handler", "Label"]

log = logging.getLogger(__name__)

PEER_TIMEOUT_S = 5.0

Handler = Callable[..., Awaitable[Answer]]
"""A handler: ``(call, **route parameters) -> Answer``."""

Label = str | Callable[[dict[str, str]], str] | None
"""The ``endpoint`` label a handler counts under (from its route parameters); ``None``: none."""


class ApiBase:
    """The worker parts the control API reads and changes, and the helpers its handlers share.

    Parameters
    ----------
    app
        The worker's faust app (its web server, router, HTTP client and assignor).
    settings
        The worker's settings (the API token, the recent-events limits).
    metrics
        ``agentwatch_api_requests_total`` is counted here, by endpoint and status.
    stage
        The baseline stage: the baselines and recent events of this worker's agents.
    response
        The responder's state: control states, incidents, history and silences.
    baselines
        The baseline table (its owner answers for an agent).
    controls
        The control-state table (its owner runs the responder).
    failures
        Wrong tokens per client address (:class:`AuthFailures`): too many, and it waits.
    """

    def __init__(
        self,
        app: Any,
        *,
        settings: Settings,
        metrics: WorkerMetrics,
        stage: BaselineStage,
        response: ResponseStage,
        baselines: Any,
        controls: Any,
        failures: AuthFailures,
    ) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.stage = stage
        self.response = response
        self.baselines = baselines
        self.controls = controls
        self.failures = failures

    # -- the one wrapper -------------------------------------------------------------------

    def page(self, path: str, name: str, **methods: tuple[Label, Handler]) -> None:
        """Serve ``path`` with one handler per HTTP method (``get=(label, handler)``), each
        behind the bearer-token check and counted in ``agentwatch_api_requests_total``."""
        attrs = {
            method: self.guarded(label, handler) for method, (label, handler) in methods.items()
        }
        view = type(name, (faust.web.View,), {**attrs, "__module__": __name__})
        self.app.page(path)(view)

    def guarded(self, label: Label, handler: Handler) -> Callable[..., Awaitable[Any]]:
        """``handler`` as a faust view method: token checked, answer rendered and counted."""
        token = self.settings.api_token

        async def serve(view: Any, request: Any, **params: str) -> Any:
            endpoint = label(params) if callable(label) else label
            denied = bearer_refusal(view, request, token, self.failures)
            if denied is not None:
                return self.count(endpoint, denied)
            answer = await handler(await Call.of(request), **params)
            return self.count(endpoint, answer.render(view))

        return serve

    def count(self, endpoint: str | None, resp: Any) -> Any:
        """Count ``resp`` under ``endpoint`` (not at all for ``None``); returns it."""
        if endpoint is not None:
            self.metrics.api_requests.labels(endpoint, str(getattr(resp, "status", 200))).inc()
        return resp

    # -- the other workers -----------------------------------------------------------------

    def is_self(self, dest: Any) -> bool:
        """Whether ``dest`` is this worker."""
        canonical = self.app.conf.canonical_url  # what the other workers know this one by
        return bool((dest.host, dest.port) == (canonical.host, canonical.port))

    async def forward(self, call: Call, dest: Any) -> Answer:
        """The same request, answered by the worker at ``dest`` (token passed along)."""
        url = call.url.with_host(dest.host).with_port(dest.port)
        body = call.body if call.method == "POST" else None
        async with self.app.http_client.request(
            method=call.method, url=url, headers=dict(call.headers), data=body
        ) as resp:
            passed = {"ETag": resp.headers["ETag"]} if "ETag" in resp.headers else None
            return Answer(
                raw=await resp.read(),
                content_type=resp.content_type,
                status=resp.status,
                headers=passed,
            )

    async def on_responder(self, call: Call) -> Answer | None:
        """Forward to the worker owning the responder; None when that is this worker."""
        if self.response.owns():
            return None
        try:
            dest = self.app.router.key_store(self.controls.name, b"")
        except Exception as exc:  # no assignment yet (starting, rebalancing)
            log.warning("control API: responder owner unknown: %r", exc)
            return Answer.problem(503, "responder not assigned yet; retry in a few seconds")
        if self.is_self(dest):
            return Answer.problem(503, "responder partition is recovering; retry shortly")
        return await self.forward(call, dest)

    def agent_owner(self, agent_id: str) -> Any:
        """The worker holding ``agent_id``'s baseline (``KeyError`` with no assignment yet,
        or while the producer has no metadata for the changelog topic: a start)."""
        try:
            return self.app.router.key_store(self.baselines.name, agent_id)
        except TypeError as exc:  # aiokafka: partitions_for_topic() is None before metadata
            raise KeyError(f"no metadata for {self.baselines.name} yet") from exc

    async def peer_get(self, call: Call, url: URL) -> tuple[int, Any]:
        """GET ``url`` on another worker with the caller's token: status and JSON document."""
        headers = {"Authorization": call.authorization}
        timeout = aiohttp.ClientTimeout(total=PEER_TIMEOUT_S)
        async with self.app.http_client.get(url, headers=headers, timeout=timeout) as resp:
            status = int(resp.status)
            return status, orjson.loads(await resp.read()) if status == 200 else None

    # -- agent rows ------------------------------------------------------------------------

    async def local_rows(self) -> list[dict[str, Any]]:
        """The agents whose baselines this worker holds, plus every control state if it runs
        the responder."""
        rows: dict[str, dict[str, Any]] = {}
        for agent_id, (fleet, count) in (await self.stage.engine.roster()).items():
            rows[agent_id] = {
                "agent_id": agent_id,
                "fleet": fleet,
                "events": count,
                "halted": None,
                "revoked": None,
            }
        if self.response.owns():
            for _key, raw in list(self.controls.items()):
                control = ControlState.model_validate_json(raw)
                row = rows.setdefault(
                    control.agent_id,
                    {"agent_id": control.agent_id, "fleet": None, "events": None},
                )
                row.update(halted=control.halted, revoked=control.revoked)
        return sorted(rows.values(), key=_by_id)

    def peers(self) -> list[URL]:
        """The other workers, at the URLs they advertise (from the partition assignment)."""
        own = self.app.conf.canonical_url
        urls = {URL(url) for url in self.app.assignor.tables_metadata()}
        return sorted((u for u in urls if (u.host, u.port) != (own.host, own.port)), key=str)

    async def peer_rows(self, call: Call, peer: URL) -> tuple[list[dict[str, Any]], bool]:
        """A worker's own agents, and whether it runs the responder."""
        url = peer.with_path("/agents").with_query({"local": "true"})
        status, doc = await self.peer_get(call, url)
        if status != 200:
            raise RuntimeError(f"HTTP {status}")
        return list(doc["agents"]), bool(doc.get("responder"))

    async def all_rows(self, call: Call) -> tuple[list[dict[str, Any]], list[str]]:
        """Every worker's agents, merged; and the workers that did not answer.

        Once the responder's rows are in, an agent without control state shows as running
        (``halted`` false); without them (its worker did not answer) it stays unknown (null).
        """
        others = self.peers()
        answers = await asyncio.gather(
            *(self.peer_rows(call, peer) for peer in others), return_exceptions=True
        )
        parts, unreachable, responder = [await self.local_rows()], [], self.response.owns()
        for peer, answer in zip(others, answers, strict=True):
            if isinstance(answer, BaseException):
                log.warning("control API: worker %s did not list its agents: %r", peer, answer)
                unreachable.append(str(peer))
            else:
                parts.append(answer[0])
                responder = responder or answer[1]
        rows = merge_rows(parts)
        if responder:
            for row in rows:
                if row.get("halted") is None:
                    row.update(halted=False, revoked=[])
        return rows, unreachable

    async def baseline_known(self, call: Call, agent_id: str) -> bool | None:
        """Whether the worker owning ``agent_id``'s partition holds its baseline (or the
        responder its state); ``None`` when that worker cannot be asked."""
        try:
            dest = self.agent_owner(agent_id)
        except KeyError:  # no assignment yet
            return None
        if self.is_self(dest):
            return await self.stage.baseline(agent_id) is not None
        url = dest.with_path(f"/agents/{agent_id}")
        headers = {"Authorization": call.authorization}
        timeout = aiohttp.ClientTimeout(total=PEER_TIMEOUT_S)
        try:
            async with self.app.http_client.get(url, headers=headers, timeout=timeout) as resp:
                if resp.status in (200, 404):
                    return bool(resp.status == 200)
                log.warning("control API: %s answered %d for agent %s", dest, resp.status, agent_id)
        except Exception as exc:
            log.warning("control API: %s unreachable: %r", dest, exc)
        return None

    async def refuse_unknown(self, call: Call, agent_id: str) -> Answer | None:
        """``None`` when the monitor knows ``agent_id``, else the 404 (or 503) to answer."""
        if self.response.known(agent_id):
            return None
        known = await self.baseline_known(call, agent_id)
        if known:
            return None
        if known is None:
            return Answer.problem(
                503,
                f"cannot tell whether agent {agent_id!r} is known (the worker holding it does "
                "not answer); retry shortly, or pass --force",
            )
        rows, _ = await self.all_rows(call)
        ids = {row["agent_id"] for row in rows} | self.response.known_agents()
        suggestions = suggest(agent_id, ids)
        message = unknown_agent_message(agent_id, suggestions)
        return Answer.problem(404, message, reason="unknown_agent", suggestions=suggestions)

    # -- the responder's part of an agent --------------------------------------------------

    async def response_part(self, call: Call, agent_id: str) -> dict[str, Any]:
        """An agent's control state and incident, from the worker running the responder."""
        if self.response.owns():
            return self.local_response_part(agent_id)
        try:
            dest = self.app.router.key_store(self.controls.name, b"")
            url = (
                call.url.with_host(dest.host)
                .with_port(dest.port)
                .with_path(f"/agents/{agent_id}/response")
            )
            headers = {"Authorization": call.authorization}
            async with self.app.http_client.get(url, headers=headers) as resp:
                if resp.status == 200:
                    return dict(orjson.loads(await resp.read()))
        except Exception as exc:
            log.warning("control API: responder unreachable: %r", exc)
        return {"control": None, "incident": None, "responder": "unavailable"}

    def local_response_part(self, agent_id: str) -> dict[str, Any]:
        """An agent's control state and incident, read here (this worker runs the responder)."""
        control = self.response.control(agent_id)
        state = self.response.incident_state(agent_id)
        return {
            "control": control.model_dump(mode="json") if control else None,
            "incident": state.incident.model_dump(mode="json") if state else None,
        }

    # -- evidence --------------------------------------------------------------------------

    async def agent_events(self, call: Call, agent_id: str) -> list[bytes] | str | None:
        """The agent's recent raw events from the worker that owns its partition; ``None``
        when none are held, ``"unavailable"`` when that worker cannot be asked."""
        try:
            dest = self.agent_owner(agent_id)
        except KeyError:
            return "unavailable"
        if self.is_self(dest):
            return self.stage.recent_events(agent_id)
        url = dest.with_path(f"/agents/{agent_id}/events")
        try:
            status, doc = await self.peer_get(call, url)
            if status == 200:
                return [orjson.dumps(e) for e in doc["events"]]
            log.warning("control API: %s answered %d for events", dest, status)
        except Exception as exc:
            log.warning("control API: %s unreachable for events: %r", dest, exc)
        return "unavailable"

    async def add_evidence(
        self, call: Call, body: dict[str, Any], records: list[dict[str, Any]]
    ) -> None:
        """Put ``records`` with their evidence events resolved in ``body["anomalies"]``, and
        the agents whose store could not be read in ``body["evidence_unavailable"]``."""
        body["anomalies"], unavailable = await self._with_evidence(call, records)
        if unavailable:
            body["evidence_unavailable"] = unavailable

    async def _with_evidence(
        self, call: Call, records: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Records with their evidence events resolved; and the agents whose store could not be
        read (their evidence shows ``held: null``)."""
        agents = list(dict.fromkeys(str(r["agent_id"]) for r in records))
        fetched = await asyncio.gather(*(self.agent_events(call, a) for a in agents))
        events = dict(zip(agents, fetched, strict=True))
        out, unavailable = [], []
        for record in records:
            held = events[str(record["agent_id"])]
            if held == "unavailable":
                unavailable.append(str(record["agent_id"]))
                item = resolve_evidence([record], [])[0]
                for e in item["evidence_events"]:
                    e["held"] = None
                out.append(item)
            else:
                out.extend(resolve_evidence([record], held if isinstance(held, list) else None))
        return out, list(dict.fromkeys(unavailable))


def _by_id(row: dict[str, Any]) -> str:
    return str(row["agent_id"])
