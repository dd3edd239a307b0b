"""The on-call control API on the worker's web server.

=========================================  =================================================
``GET  /agents[?fleet=F]``                 every worker's agents with their control state
``GET  /agents/{id}``                      baseline, control state and incident of one agent
``POST /agents/{id}/halt|resume``          body ``{"actor", "reason"[, "force"]}``
``POST /agents/{id}/revoke|grant``         body ``{"actor", "reason", "actions": [...]}``
``POST /fleets/{fleet}/halt|resume``       body ``{"actor", "reason"}``: every agent of a fleet
``GET  /incidents[?status=open,...]``      open and recent incidents, newest first
``GET  /agents/{id}/events``               the events held of an agent (evidence, recent)
``GET  /incidents/{id}``                   one incident with its evidence (see below)
``POST /incidents/{id}/ack|resolve``       body ``{"actor", "reason"}``
``GET  /anomalies[?agent=A&since=S]``      recorded anomalies, newest first, with evidence
``GET  /audit[?agent=A&since=S]``          control and audit history, newest first
``GET  /silences[?all=true]``              active and pending silences (``all``: expired too)
``POST /silences``                         body ``{"matchers", "starts_at", "ends_at",
                                           "created_by", "comment"}``
``GET  /silences/{id}``                    one silence
``DELETE /silences/{id}?actor=NAME``       expire a silence now
=========================================  =================================================

``GET /incidents/{id}`` answers the incident's fields plus ``anomalies`` (each with its
summary, observed vs baseline, score and threshold, ``silenced_by``/``inhibited_by``, and
``evidence_events``: each evidence id with ``held`` and the event itself while the worker
owning the agent holds it, :mod:`agentwatch.streams.recent`), the agent's ``control`` state
and its ``audit`` history.
``since`` is an ISO 8601 time or a duration back from now (``30m``, ``2h``).

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
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import aiohttp
import faust
import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from yarl import URL

from agentwatch.alerting.silences import MatcherError, SilenceRequest
from agentwatch.detectors.rules import parse_duration
from agentwatch.logtext import escape
from agentwatch.schemas import ControlState
from agentwatch.schemas._types import AGENT_ID_PATTERN, Name
from agentwatch.streams.http_auth import bearer_refusal, problem
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

__all__ = [
    "ControlRequest",
    "etag",
    "parse_if_match",
    "parse_since",
    "parse_statuses",
    "register_api",
    "resolve_evidence",
]

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
PEER_TIMEOUT_S = 5.0
INCIDENT_STATUSES = ("open", "acknowledged", "resolved")
MAX_EVIDENCE_AGENTS = 20
INCIDENT_AUDIT_LIMIT = 200
_NAME: TypeAdapter[str] = TypeAdapter(Name)


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


def parse_since(value: str | None, now: datetime) -> datetime | None:
    """The time a ``?since=`` names: an ISO 8601 time, or a duration back from ``now``.

    Raises
    ------
    ValueError
        for anything else.

    Examples
    --------
    >>> now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    >>> parse_since("2h", now).hour, parse_since("2026-01-01T03:00:00Z", now).hour
    (10, 3)
    >>> parse_since(None, now) is None
    True
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return now - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"since={value!r} is neither a time (2026-01-01T03:00:00Z) nor a duration (30m, 2h)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when


def resolve_evidence(
    anomalies: list[dict[str, Any]], events: list[bytes] | None
) -> list[dict[str, Any]]:
    """Each anomaly record with ``evidence_events``: its evidence ids resolved against the
    agent's recent events (``held: false`` when the store no longer has one).

    Examples
    --------
    >>> out = resolve_evidence([{"evidence": ["e1", "e9"]}], [b'{"event_id":"e1","x":1}'])
    >>> [(e["event_id"], e["held"]) for e in out[0]["evidence_events"]]
    [('e1', True), ('e9', False)]
    """
    by_id: dict[str, Any] = {}
    for raw in events or []:
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("event_id"), str):
            by_id[doc["event_id"]] = doc
    out = []
    for record in anomalies:
        resolved = []
        for event_id in record.get("evidence", []):
            event = by_id.get(event_id)
            item: dict[str, Any] = {"event_id": event_id, "held": event is not None}
            if event is not None:
                item["event"] = event
            resolved.append(item)
        out.append({**record, "evidence_events": resolved})
    return out


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
        return bearer_refusal(view, request, token)

    async def read_body(view: Any, request: Any) -> ControlRequest | Any:
        raw = await request.read()
        if len(raw) > MAX_BODY:
            return problem(view, 400, f"body over {MAX_BODY} bytes")
        try:
            doc = orjson.loads(raw or b"null")
        except orjson.JSONDecodeError as exc:
            return problem(view, 400, f"body is not valid JSON: {exc}")
        if not isinstance(doc, dict):
            return problem(view, 400, "body must be a JSON object with actor and reason")
        try:
            return ControlRequest.model_validate(doc)
        except ValidationError as exc:
            problems = [
                f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
                for e in exc.errors(include_url=False)
            ]
            return problem(view, 400, "invalid body", problems=problems)

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
            return problem(view, 503, "responder not assigned yet; retry in a few seconds")
        if is_self(dest):
            return problem(view, 503, "responder partition is recovering; retry shortly")
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
            return problem(
                view,
                503,
                f"cannot tell whether agent {agent_id!r} is known (the worker holding it does "
                "not answer); retry shortly, or pass --force",
            )
        rows, _ = await all_rows(request)
        ids = {row["agent_id"] for row in rows} | response.known_agents()
        suggestions = suggest(agent_id, ids)
        message = unknown_agent_message(agent_id, suggestions)
        return problem(view, 404, message, reason="unknown_agent", suggestions=suggestions)

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
                    "agent", problem(self, 503, "worker starting or rebalancing; retry shortly")
                )
            if not is_self(dest):  # the baseline lives elsewhere: that worker answers
                return count("agent", await forward(self, request, dest))
            baseline = worker.stage.baseline(agent_id)
            control = await response_part(request, agent_id)
            if baseline is None and not control.get("control"):
                return count("agent", problem(self, 404, f"unknown agent {agent_id!r}"))
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

    async def agent_events(request: Any, agent_id: str) -> list[bytes] | str | None:
        """The agent's recent raw events from the worker that owns its partition; ``None``
        when none are held, ``"unavailable"`` when that worker cannot be asked."""
        try:
            dest = app.router.key_store(worker.table.name, agent_id)
        except KeyError:
            return "unavailable"
        if is_self(dest):
            return worker.stage.recent_events(agent_id)
        url = dest.with_path(f"/agents/{agent_id}/events")
        headers = {"Authorization": request.headers.get("Authorization", "")}
        timeout = aiohttp.ClientTimeout(total=PEER_TIMEOUT_S)
        try:
            async with app.http_client.get(url, headers=headers, timeout=timeout) as resp:
                if resp.status == 200:
                    doc = orjson.loads(await resp.read())
                    return [orjson.dumps(e) for e in doc["events"]]
                log.warning("control API: %s answered %d for events", dest, resp.status)
        except Exception as exc:
            log.warning("control API: %s unreachable for events: %r", dest, exc)
        return "unavailable"

    async def with_evidence(
        request: Any, records: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Records with their evidence events resolved; and the agents whose store could not be
        read (their evidence shows ``held: null``)."""
        agents = list(dict.fromkeys(str(r["agent_id"]) for r in records))
        fetched = await asyncio.gather(*(agent_events(request, a) for a in agents))
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

    @app.page("/agents/{agent_id}/events")  # type: ignore[untyped-decorator]
    class AgentEventsView(faust.web.View):  # type: ignore[misc]
        async def get(self, request: Any, agent_id: str) -> Any:
            denied = check_auth(self, request)
            if denied is not None:
                return count("agent_events", denied)
            try:
                dest = app.router.key_store(worker.table.name, agent_id)
            except KeyError as exc:
                log.info("control API: no owner for agent events yet: %r", exc)
                return count(
                    "agent_events",
                    problem(self, 503, "worker starting or rebalancing; retry shortly"),
                )
            if not is_self(dest):
                return count("agent_events", await forward(self, request, dest))
            held = worker.stage.recent_events(agent_id) or []
            events = []
            for raw in held:
                try:
                    events.append(orjson.loads(raw))
                except orjson.JSONDecodeError:
                    continue
            body = {
                "agent_id": agent_id,
                "events": events,
                "max_events": settings.recent_events_per_agent,
                "max_bytes": settings.recent_events_max_bytes,
            }
            return count("agent_events", self.json(body))

    @app.page("/agents/{agent_id}/{op}")  # type: ignore[untyped-decorator]
    class AgentControlView(faust.web.View):  # type: ignore[misc]
        async def post(self, request: Any, agent_id: str, op: str) -> Any:
            endpoint = f"agent_{op}" if op in ("halt", "resume", "revoke", "grant") else "agent_op"
            denied = check_auth(self, request)
            if denied is not None:
                return count(endpoint, denied)
            if op not in ("halt", "resume", "revoke", "grant"):
                return count(endpoint, problem(self, 404, f"unknown operation {op!r}"))
            if len(agent_id) > 128 or not agent_re.fullmatch(agent_id):
                return count(endpoint, problem(self, 400, f"invalid agent id {agent_id!r}"))
            raw = await request.read()
            body = await read_body(self, _Body(raw))
            if not isinstance(body, ControlRequest):
                return count(endpoint, body)
            if op == "revoke" and not body.actions:
                return count(endpoint, problem(self, 400, "revoke needs a non-empty 'actions'"))
            try:
                expected = parse_if_match(request.headers.get("If-Match"))
            except ValueError as exc:
                return count(endpoint, problem(self, 400, str(exc)))
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
                return count(endpoint, problem(self, 404, f"unknown fleet operation {op!r}"))
            raw = await request.read()
            body = await read_body(self, _Body(raw))
            if not isinstance(body, ControlRequest):
                return count(endpoint, body)
            if body.actions or body.force or "If-Match" in request.headers:
                return count(
                    endpoint,
                    problem(
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
                    return count(endpoint, problem(self, 503, message))
                fleets = {row["fleet"] for row in rows if row.get("fleet")}
                message = unknown_fleet_message(fleet, suggest(fleet, fleets))
                return count(endpoint, problem(self, 404, message, reason="unknown_fleet"))
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
                return count("incidents", problem(self, 400, str(exc)))
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
                return count("incident", problem(self, 404, f"unknown incident {incident_id!r}"))
            incident = state.incident
            body = incident.model_dump(mode="json")
            control = response.control(incident.agent_id)
            body["control"] = control.model_dump(mode="json") if control else None
            body["muted_by"] = state.muted_by
            history = response.history
            records: list[dict[str, Any]] = []
            if history is not None:
                records = history.anomalies(incident.agent_id, ids=incident.anomaly_ids)
                body["audit"] = history.audit(incident.agent_id, limit=INCIDENT_AUDIT_LIMIT)
            if not records:  # no history kept: the incident's top anomalies
                records = [
                    {**a.model_dump(mode="json"), "incident_id": incident.incident_id}
                    for a in state.top
                ]
            body["anomalies"], unavailable = await with_evidence(request, records)
            if unavailable:
                body["evidence_unavailable"] = unavailable
            return count("incident", self.json(body))

    @app.page("/incidents/{incident_id}/{op}")  # type: ignore[untyped-decorator]
    class IncidentOpView(faust.web.View):  # type: ignore[misc]
        async def post(self, request: Any, incident_id: str, op: str) -> Any:
            endpoint = f"incident_{op}" if op in ("ack", "resolve") else "incident_op"
            denied = check_auth(self, request)
            if denied is not None:
                return count(endpoint, denied)
            if op not in ("ack", "resolve"):
                return count(endpoint, problem(self, 404, f"unknown operation {op!r}"))
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
                return count(endpoint, problem(self, 404, f"unknown incident {incident_id!r}"))
            log.info(
                "incident: %s %s by %s: %s",
                op,
                escape(incident_id),
                escape(body.actor),
                escape(body.reason, 1024),
            )
            return count(endpoint, self.json(incident.model_dump(mode="json")))

    def query_since(request: Any) -> datetime | None:
        return parse_since(request.query.get("since"), datetime.fromtimestamp(time.time(), UTC))

    def query_limit(request: Any) -> int:
        text = request.query.get("limit", "500")
        if not text.isdigit() or not 1 <= int(text) <= 5000:
            raise ValueError(f"limit={text!r} must be a number from 1 to 5000")
        return int(text)

    @app.page("/anomalies")  # type: ignore[untyped-decorator]
    class AnomaliesView(faust.web.View):  # type: ignore[misc]
        async def get(self, request: Any) -> Any:
            denied = check_auth(self, request)
            if denied is not None:
                return count("anomalies", denied)
            try:
                since, limit = query_since(request), query_limit(request)
            except ValueError as exc:
                return count("anomalies", problem(self, 400, str(exc)))
            forwarded = await on_responder(self, request)
            if forwarded is not None:
                return count("anomalies", forwarded)
            history = response.history
            records = (
                history.anomalies(request.query.get("agent"), since=since, limit=limit)
                if history is not None
                else []
            )
            body: dict[str, Any] = {"anomalies": records}
            agents = {r["agent_id"] for r in records}
            wanted = request.query.get("evidence", "true") not in ("0", "false")
            if wanted and len(agents) > MAX_EVIDENCE_AGENTS:
                body["evidence_omitted"] = (
                    f"anomalies of {len(agents)} agents: evidence is resolved for at most "
                    f"{MAX_EVIDENCE_AGENTS}; ask for one agent (?agent=)"
                )
            elif wanted:
                body["anomalies"], unavailable = await with_evidence(request, records)
                if unavailable:
                    body["evidence_unavailable"] = unavailable
            return count("anomalies", self.json(body))

    @app.page("/audit")  # type: ignore[untyped-decorator]
    class AuditView(faust.web.View):  # type: ignore[misc]
        async def get(self, request: Any) -> Any:
            denied = check_auth(self, request)
            if denied is not None:
                return count("audit", denied)
            try:
                since, limit = query_since(request), query_limit(request)
            except ValueError as exc:
                return count("audit", problem(self, 400, str(exc)))
            forwarded = await on_responder(self, request)
            if forwarded is not None:
                return count("audit", forwarded)
            history = response.history
            entries = (
                history.audit(
                    request.query.get("agent"),
                    since=since,
                    incident_id=request.query.get("incident"),
                    limit=limit,
                )
                if history is not None
                else []
            )
            return count("audit", self.json({"audit": entries}))

    @app.page("/silences")  # type: ignore[untyped-decorator]
    class SilencesView(faust.web.View):  # type: ignore[misc]
        async def get(self, request: Any) -> Any:
            denied = check_auth(self, request)
            if denied is not None:
                return count("silences", denied)
            forwarded = await on_responder(self, request)
            if forwarded is not None:
                return count("silences", forwarded)
            now = datetime.fromtimestamp(response.clock(), UTC)
            every = request.query.get("all") in ("1", "true")
            items = [
                s.view(now) for s in response.silences_list() if every or s.status(now) != "expired"
            ]
            return count("silences", self.json({"silences": items}))

        async def post(self, request: Any) -> Any:
            denied = check_auth(self, request)
            if denied is not None:
                return count("silence_create", denied)
            raw = await request.read()
            if len(raw) > MAX_BODY:
                return count("silence_create", problem(self, 400, f"body over {MAX_BODY} bytes"))
            try:
                silence_request = SilenceRequest.model_validate_json(raw or b"null")
            except ValidationError as exc:
                problems = [
                    f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
                    for e in exc.errors(include_url=False)
                ]
                return count(
                    "silence_create", problem(self, 400, "invalid silence", problems=problems)
                )
            except MatcherError as exc:
                return count("silence_create", problem(self, 400, str(exc)))
            forwarded = await on_responder(self, request, raw)
            if forwarded is not None:
                return count("silence_create", forwarded)
            try:
                silence = await response.create_silence(silence_request)
            except ValueError as exc:
                return count("silence_create", problem(self, 400, str(exc)))
            log.info(
                "silence %s created by %s: %s",
                silence.silence_id,
                escape(silence.created_by),
                ", ".join(escape(str(m)) for m in silence.matchers),
            )
            now = datetime.fromtimestamp(response.clock(), UTC)
            return count("silence_create", self.json(silence.view(now), status=201))

    @app.page("/silences/{silence_id}")  # type: ignore[untyped-decorator]
    class SilenceView(faust.web.View):  # type: ignore[misc]
        async def get(self, request: Any, silence_id: str) -> Any:
            denied = check_auth(self, request)
            if denied is not None:
                return count("silence", denied)
            forwarded = await on_responder(self, request)
            if forwarded is not None:
                return count("silence", forwarded)
            silence = response.silences.get(silence_id) if response.silences else None
            if silence is None:
                return count("silence", problem(self, 404, f"unknown silence {silence_id!r}"))
            now = datetime.fromtimestamp(response.clock(), UTC)
            return count("silence", self.json(silence.view(now)))

        async def delete(self, request: Any, silence_id: str) -> Any:
            denied = check_auth(self, request)
            if denied is not None:
                return count("silence_expire", denied)
            actor = request.query.get("actor", "")
            try:
                _NAME.validate_python(actor)
            except ValidationError:
                actor = ""
            if not actor:
                return count(
                    "silence_expire",
                    problem(self, 400, "say who expires the silence: ?actor=NAME"),
                )
            forwarded = await on_responder(self, request)
            if forwarded is not None:
                return count("silence_expire", forwarded)
            try:
                silence = await response.expire_silence(silence_id, by=actor)
            except NotFound:
                return count(
                    "silence_expire", problem(self, 404, f"unknown silence {silence_id!r}")
                )
            log.info("silence %s expired by %s", silence.silence_id, escape(actor))
            now = datetime.fromtimestamp(response.clock(), UTC)
            return count("silence_expire", self.json(silence.view(now)))


def _by_id(row: dict[str, Any]) -> str:
    return str(row["agent_id"])


class _Body:
    """A request whose body was already read (aiohttp bodies can be read once per view)."""

    def __init__(self, raw: bytes) -> None:
        self._raw = raw

    async def read(self) -> bytes:
        return self._raw
