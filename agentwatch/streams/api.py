"""The on-call control API on the worker's web server.

=========================================  =================================================
``GET  /agents/{id}``                      baseline, control state and incident of one agent
``POST /agents/{id}/halt|resume``          body ``{"actor", "reason"}``
``POST /agents/{id}/revoke|grant``         body ``{"actor", "reason", "actions": [...]}``
``GET  /incidents[?status=open]``          open and recent incidents, newest first
``GET  /incidents/{id}``                   one incident
``POST /incidents/{id}/ack|resolve``       body ``{"actor", "reason"}``
=========================================  =================================================

Control changes are linearizable per agent (one writer; each accepted request applies on top of
the previous one). Answers about an agent's control state carry ``ETag: "<version>"``; a POST
with ``If-Match: "<version>"`` applies only if that is still the agent's version (0 = never
changed), else ``409`` with ``current_version`` (compare-and-set).

Every endpoint here needs ``Authorization: Bearer <AGENTWATCH_API_TOKEN>`` (compared in
constant time; 401 otherwise, 503 when no token is configured). ``/healthz`` and ``/metrics``
stay open. Requests reach any worker; those that need the responder's state are forwarded to
the worker that owns it. The token is never logged.
"""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING, Annotated, Any

import faust
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentwatch.logtext import escape
from agentwatch.schemas import ControlState
from agentwatch.schemas._types import AGENT_ID_PATTERN, Name
from agentwatch.streams.response import NotFound, VersionConflict

if TYPE_CHECKING:
    from agentwatch.streams.app import WorkerApp

__all__ = ["ControlRequest", "etag", "parse_if_match", "register_api"]

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024


class ControlRequest(BaseModel):
    """Body of every POST: who, why, and (revoke/grant) which actions."""

    model_config = ConfigDict(extra="forbid", strict=True)

    actor: Name
    reason: Annotated[str, Field(min_length=1, max_length=1024)]
    actions: Annotated[list[Name], Field(max_length=1024)] = Field(default_factory=list)
    incident_id: Name | None = None


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

    @app.page("/agents")  # type: ignore[untyped-decorator]
    class AgentsView(faust.web.View):  # type: ignore[misc]
        async def get(self, request: Any) -> Any:
            denied = check_auth(self, request)
            if denied is not None:
                return count("agents", denied)
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
            return count("agents", self.json({"agents": sorted(rows.values(), key=_by_id)}))

    @app.page("/agents/{agent_id}")  # type: ignore[untyped-decorator]
    class AgentView(faust.web.View):  # type: ignore[misc]
        async def get(self, request: Any, agent_id: str) -> Any:
            denied = check_auth(self, request)
            if denied is not None:
                return count("agent", denied)
            dest = app.router.key_store(worker.table.name, agent_id)
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

    @app.page("/incidents")  # type: ignore[untyped-decorator]
    class IncidentsView(faust.web.View):  # type: ignore[misc]
        async def get(self, request: Any) -> Any:
            denied = check_auth(self, request)
            if denied is not None:
                return count("incidents", denied)
            status = request.query.get("status")
            if status not in (None, "open", "acknowledged", "resolved"):
                return count("incidents", _problem(self, 400, f"unknown status {status!r}"))
            forwarded = await on_responder(self, request)
            if forwarded is not None:
                return count("incidents", forwarded)
            items = [i.model_dump(mode="json") for i in response.incidents_list(status)]
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
