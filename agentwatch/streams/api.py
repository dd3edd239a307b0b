"""The on-call control API on the worker's web server.

=========================================  =================================================
``GET  /agents[?fleet=F]``                 every worker's agents with their control state
``GET  /agents/{id}``                      baseline, control state and incident of one agent
``POST /agents/{id}/halt|resume``          body ``{"actor", "reason"[, "force"]}``
``POST /agents/{id}/revoke|grant``         body ``{"actor", "reason", "actions": [...]}``
``POST /fleets/{fleet}/halt|resume``       body ``{"actor", "reason"}``: every agent of a fleet
``GET  /incidents[?status=open,...]``      open and recent incidents, newest first
``GET  /incidents/{id}``                   one incident
``POST /incidents/{id}/ack|resolve``       body ``{"actor", "reason"}``
=========================================  =================================================

Control changes are linearizable per agent (one writer; each accepted request applies on top of
the previous one). Answers about an agent's control state carry ``ETag: "<version>"``; a POST
with ``If-Match: "<version>"`` applies only if that is still the agent's version (0 = never
changed), else ``409`` with ``current_version`` (compare-and-set).

A control change for an agent the monitor has never seen (no baseline on any worker, no control
state, no incident) is refused with ``404`` and the closest known ids
(:mod:`agentwatch.streams.roster`), unless the body says ``"force": true``. A fleet halt or
resume applies to each known agent of the fleet through the same per-agent path, concurrently,
and audits each one (``detail.fleet``); agents already in that state are left alone.

Every endpoint here needs ``Authorization: Bearer <AGENTWATCH_API_TOKEN>`` (compared in
constant time; 401 otherwise, 503 when no token is configured). ``/healthz`` and ``/metrics``
stay open. Requests reach any worker; those that need the responder's state are forwarded to
the worker that owns it. The token is never logged.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from typing import TYPE_CHECKING, Annotated, Any

import aiohttp
import faust
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from yarl import URL

from agentwatch.logtext import escape
from agentwatch.schemas import ControlState
from agentwatch.schemas._types import AGENT_ID_PATTERN, Name
from agentwatch.streams.response import NotFound, VersionConflict
from agentwatch.streams.roster import (
    fleet_members,
    merge_rows,
    suggest,
    unknown_agent_message,
    unknown_fleet_message,
)

if TYPE_CHECKING:
    from agentwatch.streams.app import WorkerApp

__all__ = ["ControlRequest", "etag", "parse_if_match", "parse_statuses", "register_api"]

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
PEER_TIMEOUT_S = 5.0
INCIDENT_STATUSES = ("open", "acknowledged", "resolved")


class ControlRequest(BaseModel):
    """Body of every POST: who, why, (revoke/grant) which actions, and ``force`` to control an
    agent the monitor has never seen."""

    model_config = ConfigDict(extra="forbid", strict=True)

    actor: Name
    reason: Annotated[str, Field(min_length=1, max_length=1024)]
    actions: Annotated[list[Name], Field(max_length=1024)] = Field(default_factory=list)
    incident_id: Name | None = None
    force: bool = False


def parse_statuses(value: str | None) -> list[str] | None:
    """The incident statuses a ``?status=`` names (comma-separated); ``None`` = every status.

    Raises
    ------
    ValueError
        for an unknown status.

    Examples
    --------
    >>> parse_statuses("open,acknowledged"), parse_statuses(None), parse_statuses("all")
    (['open', 'acknowledged'], None, None)
    """
    if value is None or value.strip() in ("", "all"):
        return None
    statuses = [part.strip() for part in value.split(",") if part.strip()]
    unknown = [x for x in statuses if x not in INCIDENT_STATUSES]
    if unknown:
        raise ValueError(
            f"unknown status {', '.join(map(repr, unknown))}: use open, acknowledged, "
            "resolved or all (comma-separated)"
        )
    return list(dict.fromkeys(statuses))


def etag(version: int) -> str:
    """The ``ETag`` of an agent's control state: its version, quoted.

    >>> etag(17)
    '"17"'
    """
    return f'"{version}"'


def parse_if_match(value: str | None) -> int | None:
    """The version an ``If-Match`` header names (``"17"``, ``17`` or ``W/"17"``).

    Raises
    ------
    ValueError
        for anything else (a list, ``*``, not a number).

    Examples
    --------
    >>> parse_if_match('"17"'), parse_if_match("17"), parse_if_match(None)
    (17, 17, None)
    """
    if value is None:
        return None
    text = value.strip().removeprefix("W/").strip('"')
    if not text.isdigit() or len(text) > 19:
        raise ValueError(f"If-Match must name one control version, e.g. '\"17\"', not {value!r}")
    return int(text)


def _problem(view: Any, status: int, message: str, **extra: Any) -> Any:
    headers = {"WWW-Authenticate": 'Bearer realm="agentwatch"'} if status == 401 else None
    return view.json({"error": message, **extra}, status=status, headers=headers)


def register_api(worker: WorkerApp) -> None:
    """Add the control API views to the worker's faust app."""
    import re

    app = worker.app
    response = worker.response
    settings = worker.settings
    token = settings.api_token
    agent_re = re.compile(AGENT_ID_PATTERN)
    metrics = worker.metrics

    def check_auth(view: Any, request: Any) -> Any | None:
        if token is None:
            return _problem(
                view, 503, "control API disabled: set AGENTWATCH_API_TOKEN on the worker"
            )
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        expected = token.get_secret_value().encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            return _problem(view, 401, "missing or wrong bearer token")
        return None

    async def read_body(view: Any, request: Any) -> ControlRequest | Any:
        raw = await request.read()
        if len(raw) > MAX_BODY:
            return _problem(view, 400, f"body over {MAX_BODY} bytes")
        try:
            doc = orjson.loads(raw or b"null")
        except orjson.JSONDecodeError as exc:
            return _problem(view, 400, f"body is not valid JSON: {exc}")
        if not isinstance(doc, dict):
            return _problem(view, 400, "body must be a JSON object with actor and reason")
        try:
            return ControlRequest.model_validate(doc)
        except ValidationError as exc:
            problems = [
                f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
                for e in exc.errors(include_url=False)
            ]
            return _problem(view, 400, "invalid body", problems=problems)

    def is_self(dest: Any) -> bool:
        canonical = app.conf.canonical_url  # what the other workers know this one by
        return bool((dest.host, dest.port) == (canonical.host, canonical.port))

    async def forward(view: Any, request: Any, dest: Any, body: bytes | None = None) -> Any:
        """The same request, answered by the worker at ``dest`` (token passed along)."""
        url = request.url.with_host(dest.host).with_port(dest.port)
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("authorization", "content-type", "if-match")
        }
        async with app.http_client.request(
            method=request.method, url=url, headers=headers, data=body
        ) as resp:
            passed = {"ETag": resp.headers["ETag"]} if "ETag" in resp.headers else None
            return view.bytes(
                await resp.read(),
                content_type=resp.content_type,
                status=resp.status,
                headers=passed,
            )

    async def on_responder(view: Any, request: Any, body: bytes | None = None) -> Any | None:
        """Forward to the worker owning the responder; None when that is this worker."""
        if response.owns():
            return None
        try:
            dest = app.router.key_store(worker.controls.name, b"")
        except Exception as exc:  # no assignment yet (starting, rebalancing)
            log.warning("control API: responder owner unknown: %r", exc)
            return _problem(view, 503, "responder not assigned yet; retry in a few seconds")
        if is_self(dest):
            return _problem(view, 503, "responder partition is recovering; retry shortly")
        return await forward(view, request, dest, body)

    def count(endpoint: str, resp: Any) -> Any:
        metrics.api_requests.labels(endpoint, str(getattr(resp, "status", 200))).inc()
        return resp

    def local_rows() -> list[dict[str, Any]]:
        """The agents whose baselines this worker holds, plus every control state if it runs
        the responder."""
        rows: dict[str, dict[str, Any]] = {}
        for agent_id, baseline in list(worker.stage.engine.baselines.items()):
            rows[agent_id] = {
                "agent_id": agent_id,
                "fleet": baseline.fleet,
                "events": baseline.count,
                "halted": None,
                "revoked": None,
            }
        if response.owns():
            for _key, raw in list(worker.controls.items()):
                control = ControlState.model_validate_json(raw)
                row = rows.setdefault(
                    control.agent_id,
                    {"agent_id": control.agent_id, "fleet": None, "events": None},
                )
                row.update(halted=control.halted, revoked=control.revoked)
        return sorted(rows.values(), key=_by_id)

    def peers() -> list[URL]:
        """The other workers, at the URLs they advertise (from the partition assignment)."""
        own = app.conf.canonical_url
        urls = {URL(url) for url in app.assignor.tables_metadata()}
        return sorted((u for u in urls if (u.host, u.port) != (own.host, own.port)), key=str)

    async def peer_rows(request: Any, peer: URL) -> tuple[list[dict[str, Any]], bool]:
        """A worker's own agents, and whether it runs the responder."""
        url = peer.with_path("/agents").with_query({"local": "true"})
        headers = {"Authorization": request.headers.get("Authorization", "")}
        timeout = aiohttp.ClientTimeout(total=PEER_TIMEOUT_S)
        async with app.http_client.get(url, headers=headers, timeout=timeout) as resp:
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}")
            doc = orjson.loads(await resp.read())
            return list(doc["agents"]), bool(doc.get("responder"))

    async def all_rows(request: Any) -> tuple[list[dict[str, Any]], list[str]]:
        """Every worker's agents, merged; and the workers that did not answer.

        Once the responder's rows are in, an agent without control state shows as running
        (``halted`` false); without them (its worker did not answer) it stays unknown (null).
        """
        others = peers()
        answers = await asyncio.gather(
            *(peer_rows(request, peer) for peer in others), return_exceptions=True
        )
        parts, unreachable, responder = [local_rows()], [], response.owns()
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

    @app.page("/agents")  # type: ignore[untyped-decorator]
    class AgentsView(faust.web.View):  # type: ignore[misc]
        async def get(self, request: Any) -> Any:
            denied = check_auth(self, request)
            if denied is not None:
                return count("agents", denied)
            if request.query.get("local") in ("1", "true"):
                own = {"agents": local_rows(), "responder": response.owns()}
                return count("agents", self.json(own))
            rows, unreachable = await all_rows(request)
            fleet = request.query.get("fleet")
            if fleet is not None:
                rows = [row for row in rows if row.get("fleet") == fleet]
            body: dict[str, Any] = {"agents": rows}
            if unreachable:
                body["unreachable_workers"] = unreachable
            return count("agents", self.json(body))

    async def baseline_known(request: Any, agent_id: str) -> bool | None:
        """Whether the worker owning ``agent_id``'s partition holds its baseline (or the
        responder its state); ``None`` when that worker cannot be asked."""
        try:
            dest = app.router.key_store(worker.table.name, agent_id)
        except KeyError:  # no assignment yet
            return None
        if is_self(dest):
            return worker.stage.baseline(agent_id) is not None
        url = dest.with_path(f"/agents/{agent_id}")
        headers = {"Authorization": request.headers.get("Authorization", "")}
        timeout = aiohttp.ClientTimeout(total=PEER_TIMEOUT_S)
        try:
            async with app.http_client.get(url, headers=headers, timeout=timeout) as resp:
                if resp.status in (200, 404):
                    return bool(resp.status == 200)
                log.warning("control API: %s answered %d for agent %s", dest, resp.status, agent_id)
        except Exception as exc:
            log.warning("control API: %s unreachable: %r", dest, exc)
        return None

    async def refuse_unknown(view: Any, request: Any, agent_id: str) -> Any | None:
        """``None`` when the monitor knows ``agent_id``, else the 404 (or 503) to answer."""
        if response.known(agent_id):
            return None
        known = await baseline_known(request, agent_id)
        if known:
            return None
        if known is None:
            return _problem(
                view,
                503,
                f"cannot tell whether agent {agent_id!r} is known (the worker holding it does "
                "not answer); retry shortly, or pass --force",
            )
        rows, _ = await all_rows(request)
        ids = {row["agent_id"] for row in rows} | response.known_agents()
        suggestions = suggest(agent_id, ids)
        message = unknown_agent_message(agent_id, suggestions)
        return _problem(view, 404, message, reason="unknown_agent", suggestions=suggestions)

    @app.page("/agents/{agent_id}")  # type: ignore[untyped-decorator]
    class AgentView(faust.web.View):  # type: ignore[misc]
        async def get(self, request: Any, agent_id: str) -> Any:
            denied = check_auth(self, request)
            if denied is not None:
                return count("agent", denied)
            try:
                dest = app.router.key_store(worker.table.name, agent_id)
            except KeyError as exc:  # no partition assignment yet: starting or rebalancing
                log.info("control API: no owner for agent views yet: %r", exc)
                return count(
                    "agent", _problem(self, 503, "worker starting or rebalancing; retry shortly")
                )
            if not is_self(dest):  # the baseline lives elsewhere: that worker answers
                return count("agent", await forward(self, request, dest))
            baseline = worker.stage.baseline(agent_id)
            control = await response_part(request, agent_id)
            if baseline is None and not control.get("control"):
                return count("agent", _problem(self, 404, f"unknown agent {agent_id!r}"))
            body = baseline.to_dict() if baseline is not None else {"agent_id": agent_id}
            body.update(control)
            headers = None
            if control.get("responder") != "unavailable":  # no tag for a state not read
                headers = {"ETag": etag((control.get("control") or {}).get("version", 0))}
            return count("agent", self.json(body, headers=headers))

    async def response_part(request: Any, agent_id: str) -> dict[str, Any]:
        if response.owns():
            return local_response_part(agent_id)
        try:
            dest = app.router.key_store(worker.controls.name, b"")
            url = (
                request.url.with_host(dest.host)
                .with_port(dest.port)
                .with_path(f"/agents/{agent_id}/response")
            )
            headers = {"Authorization": request.headers.get("Authorization", "")}
            async with app.http_client.get(url, headers=headers) as resp:
                if resp.status == 200:
                    return dict(orjson.loads(await resp.read()))
        except Exception as exc:
            log.warning("control API: responder unreachable: %r", exc)
        return {"control": None, "incident": None, "responder": "unavailable"}

    def local_response_part(agent_id: str) -> dict[str, Any]:
        control = response.control(agent_id)
        state = response.incident_state(agent_id)
        return {
            "control": control.model_dump(mode="json") if control else None,
            "incident": state.incident.model_dump(mode="json") if state else None,
        }

    @app.page("/agents/{agent_id}/response")  # type: ignore[untyped-decorator]
    class AgentResponseView(faust.web.View):  # type: ignore[misc]
        async def get(self, request: Any, agent_id: str) -> Any:
            denied = check_auth(self, request)
            if denied is not None:
                return denied
            forwarded = await on_responder(self, request)
            if forwarded is not None:
                return forwarded
            return self.json(local_response_part(agent_id))

    @app.page("/agents/{agent_id}/{op}")  # type: ignore[untyped-decorator]
    class AgentControlView(faust.web.View):  # type: ignore[misc]
        async def post(self, request: Any, agent_id: str, op: str) -> Any:
            endpoint = f"agent_{op}" if op in ("halt", "resume", "revoke", "grant") else "agent_op"
            denied = check_auth(self, request)
            if denied is not None:
                return count(endpoint, denied)
            if op not in ("halt", "resume", "revoke", "grant"):
                return count(endpoint, _problem(self, 404, f"unknown operation {op!r}"))
            if len(agent_id) > 128 or not agent_re.fullmatch(agent_id):
                return count(endpoint, _problem(self, 400, f"invalid agent id {agent_id!r}"))
            raw = await request.read()
            body = await read_body(self, _Body(raw))
            if not isinstance(body, ControlRequest):
                return count(endpoint, body)
            if op == "revoke" and not body.actions:
                return count(endpoint, _problem(self, 400, "revoke needs a non-empty 'actions'"))
            try:
                expected = parse_if_match(request.headers.get("If-Match"))
            except ValueError as exc:
                return count(endpoint, _problem(self, 400, str(exc)))
            forwarded = await on_responder(self, request, raw)
            if forwarded is not None:
                return count(endpoint, forwarded)
            if not body.force:
                refused = await refuse_unknown(self, request, agent_id)
                if refused is not None:
                    return count(endpoint, refused)
            try:
                state = await response.control_command(
                    op,  # type: ignore[arg-type]
                    agent_id,
                    actions=body.actions,
                    actor=body.actor,
                    reason=body.reason,
                    incident_id=body.incident_id,
                    expected_version=expected,
                )
            except VersionConflict as conflict:
                answer = self.json(
                    {"error": str(conflict), "current_version": conflict.current},
                    status=409,
                    headers={"ETag": etag(conflict.current)},
                )
                return count(endpoint, answer)
            log.info(
                "control: %s %s by %s (version %d): %s",
                op,
                agent_id,
                escape(body.actor),
                state.version,
                escape(body.reason, 1024),
            )
            answer = self.json(state.model_dump(mode="json"), headers={"ETag": etag(state.version)})
            return count(endpoint, answer)

    @app.page("/fleets/{fleet}/{op}")  # type: ignore[untyped-decorator]
    class FleetControlView(faust.web.View):  # type: ignore[misc]
        async def post(self, request: Any, fleet: str, op: str) -> Any:
            endpoint = f"fleet_{op}" if op in ("halt", "resume") else "fleet_op"
            denied = check_auth(self, request)
            if denied is not None:
                return count(endpoint, denied)
            if op not in ("halt", "resume"):
                return count(endpoint, _problem(self, 404, f"unknown fleet operation {op!r}"))
            raw = await request.read()
            body = await read_body(self, _Body(raw))
            if not isinstance(body, ControlRequest):
                return count(endpoint, body)
            if body.actions or body.force or "If-Match" in request.headers:
                return count(
                    endpoint,
                    _problem(
                        self, 400, "'actions', 'force' and If-Match apply to one agent, not a fleet"
                    ),
                )
            forwarded = await on_responder(self, request, raw)
            if forwarded is not None:
                return count(endpoint, forwarded)
            started = time.perf_counter()
            rows, unreachable = await all_rows(request)
            agents = fleet_members(rows, fleet)
            if not agents:
                if unreachable:
                    message = (
                        f"no agent of fleet {fleet!r} found, and workers "
                        f"{', '.join(unreachable)} did not answer; retry shortly"
                    )
                    return count(endpoint, _problem(self, 503, message))
                fleets = {row["fleet"] for row in rows if row.get("fleet")}
                message = unknown_fleet_message(fleet, suggest(fleet, fleets))
                return count(endpoint, _problem(self, 404, message, reason="unknown_fleet"))
            changed, unchanged = await response.fleet_command(
                op,  # type: ignore[arg-type]
                agents,
                fleet=fleet,
                actor=body.actor,
                reason=body.reason,
                incident_id=body.incident_id,
            )
            log.info(
                "control: %s fleet %s (%d agents changed, %d already so, in %.3f s) by %s: %s",
                op,
                escape(fleet),
                len(changed),
                len(unchanged),
                time.perf_counter() - started,
                escape(body.actor),
                escape(body.reason, 1024),
            )
            answer: dict[str, Any] = {
                "fleet": fleet,
                "op": op,
                "agents": agents,
                "changed": [state.model_dump(mode="json") for state in changed],
                "unchanged": unchanged,
            }
            if unreachable:
                answer["unreachable_workers"] = unreachable
            return count(endpoint, self.json(answer))

    @app.page("/incidents")  # type: ignore[untyped-decorator]
    class IncidentsView(faust.web.View):  # type: ignore[misc]
        async def get(self, request: Any) -> Any:
            denied = check_auth(self, request)
            if denied is not None:
                return count("incidents", denied)
            try:
                statuses = parse_statuses(request.query.get("status"))
            except ValueError as exc:
                return count("incidents", _problem(self, 400, str(exc)))
            forwarded = await on_responder(self, request)
            if forwarded is not None:
                return count("incidents", forwarded)
            items = [
                i.model_dump(mode="json")
                for i in response.incidents_list()
                if statuses is None or i.status in statuses
            ]
            return count("incidents", self.json({"incidents": items}))

    @app.page("/incidents/{incident_id}")  # type: ignore[untyped-decorator]
    class IncidentView(faust.web.View):  # type: ignore[misc]
        async def get(self, request: Any, incident_id: str) -> Any:
            denied = check_auth(self, request)
            if denied is not None:
                return count("incident", denied)
            forwarded = await on_responder(self, request)
            if forwarded is not None:
                return count("incident", forwarded)
            try:
                state = response.find(incident_id)
            except NotFound:
                return count("incident", _problem(self, 404, f"unknown incident {incident_id!r}"))
            return count("incident", self.json(state.incident.model_dump(mode="json")))

    @app.page("/incidents/{incident_id}/{op}")  # type: ignore[untyped-decorator]
    class IncidentOpView(faust.web.View):  # type: ignore[misc]
        async def post(self, request: Any, incident_id: str, op: str) -> Any:
            endpoint = f"incident_{op}" if op in ("ack", "resolve") else "incident_op"
            denied = check_auth(self, request)
            if denied is not None:
                return count(endpoint, denied)
            if op not in ("ack", "resolve"):
                return count(endpoint, _problem(self, 404, f"unknown operation {op!r}"))
            raw = await request.read()
            body = await read_body(self, _Body(raw))
            if not isinstance(body, ControlRequest):
                return count(endpoint, body)
            forwarded = await on_responder(self, request, raw)
            if forwarded is not None:
                return count(endpoint, forwarded)
            try:
                incident = await response.incident_command(
                    op,  # type: ignore[arg-type]
                    incident_id,
                    actor=body.actor,
                    reason=body.reason,
                )
            except NotFound:
                return count(endpoint, _problem(self, 404, f"unknown incident {incident_id!r}"))
            log.info(
                "incident: %s %s by %s: %s",
                op,
                escape(incident_id),
                escape(body.actor),
                escape(body.reason, 1024),
            )
            return count(endpoint, self.json(incident.model_dump(mode="json")))


def _by_id(row: dict[str, Any]) -> str:
    return str(row["agent_id"])


class _Body:
    """A request whose body was already read (aiohttp bodies can be read once per view)."""

    def __init__(self, raw: bytes) -> None:
        self._raw = raw

    async def read(self) -> bytes:
        return self._raw
