"""The control API's read endpoints: agents, an agent's events, incidents with their evidence,
anomalies, the audit history and silences."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from agentwatch.streams.response import NotFound

from .base import ApiBase
from .messages import Answer, Call, etag, parse_since, parse_statuses

__all__ = ["INCIDENT_AUDIT_LIMIT", "MAX_EVIDENCE_AGENTS", "ReadEndpoints"]

log = logging.getLogger(__name__)

MAX_EVIDENCE_AGENTS = 20
INCIDENT_AUDIT_LIMIT = 200


class ReadEndpoints(ApiBase):
    """Handlers of the GET endpoints (see :mod:`agentwatch.streams.api`)."""

    async def list_agents(self, call: Call) -> Answer:
        """``GET /agents[?fleet=F]`` (``?local=true``: this worker's own rows)."""
        if call.query.get("local") in ("1", "true"):
            return Answer({"agents": await self.local_rows(), "responder": self.response.owns()})
        rows, unreachable = await self.all_rows(call)
        fleet = call.query.get("fleet")
        if fleet is not None:
            rows = [row for row in rows if row.get("fleet") == fleet]
        body: dict[str, Any] = {"agents": rows}
        if unreachable:
            body["unreachable_workers"] = unreachable
        return Answer(body)

    async def show_agent(self, call: Call, agent_id: str) -> Answer:
        """``GET /agents/{id}``: baseline, control state and incident."""
        try:
            dest = self.agent_owner(agent_id)
        except KeyError as exc:  # no partition assignment yet: starting or rebalancing
            log.info("control API: no owner for agent views yet: %r", exc)
            return Answer.problem(503, "worker starting or rebalancing; retry shortly")
        if not self.is_self(dest):  # the baseline lives elsewhere: that worker answers
            return await self.forward(call, dest)
        baseline = await self.stage.baseline(agent_id)
        control = await self.response_part(call, agent_id)
        if baseline is None and not control.get("control"):
            return Answer.problem(404, f"unknown agent {agent_id!r}")
        body = baseline.to_dict() if baseline is not None else {"agent_id": agent_id}
        body.update(control)
        headers = None
        if control.get("responder") != "unavailable":  # no tag for a state not read
            headers = {"ETag": etag((control.get("control") or {}).get("version", 0))}
        return Answer(body, headers=headers)

    async def agent_response(self, call: Call, agent_id: str) -> Answer:
        """``GET /agents/{id}/response``: the responder's part (asked by the other workers)."""
        forwarded = await self.on_responder(call)
        if forwarded is not None:
            return forwarded
        return Answer(self.local_response_part(agent_id))

    async def list_agent_events(self, call: Call, agent_id: str) -> Answer:
        """``GET /agents/{id}/events``: the events held of an agent."""
        try:
            dest = self.agent_owner(agent_id)
        except KeyError as exc:
            log.info("control API: no owner for agent events yet: %r", exc)
            return Answer.problem(503, "worker starting or rebalancing; retry shortly")
        if not self.is_self(dest):
            return await self.forward(call, dest)
        held = self.stage.recent_events(agent_id) or []
        events = []
        for raw in held:
            try:
                events.append(orjson.loads(raw))
            except orjson.JSONDecodeError:
                continue
        body = {
            "agent_id": agent_id,
            "events": events,
            "max_events": self.settings.recent_events_per_agent,
            "max_bytes": self.settings.recent_events_max_bytes,
        }
        return Answer(body)

    async def list_incidents(self, call: Call) -> Answer:
        """``GET /incidents[?status=open,...]``, newest first."""
        try:
            statuses = parse_statuses(call.query.get("status"))
        except ValueError as exc:
            return Answer.problem(400, str(exc))
        forwarded = await self.on_responder(call)
        if forwarded is not None:
            return forwarded
        items = [
            i.model_dump(mode="json")
            for i in self.response.incidents_list()
            if statuses is None or i.status in statuses
        ]
        return Answer({"incidents": items})

    async def show_incident(self, call: Call, incident_id: str) -> Answer:
        """``GET /incidents/{id}``: the incident with its anomalies, evidence and history."""
        forwarded = await self.on_responder(call)
        if forwarded is not None:
            return forwarded
        response = self.response
        try:
            state = response.find(incident_id)
        except NotFound:
            return Answer.problem(404, f"unknown incident {incident_id!r}")
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
        await self.add_evidence(call, body, records)
        return Answer(body)

    async def _listing(self, call: Call) -> tuple[datetime | None, int] | Answer:
        """A history listing's ``?since=`` and ``?limit=``; or the answer: 400 for a bad one,
        or the responder's when it runs on another worker."""
        try:
            since, limit = query_since(call), query_limit(call)
        except ValueError as exc:
            return Answer.problem(400, str(exc))
        forwarded = await self.on_responder(call)
        return (since, limit) if forwarded is None else forwarded

    async def list_anomalies(self, call: Call) -> Answer:
        """``GET /anomalies[?agent=A&since=S&limit=N&evidence=false]``, newest first."""
        listing = await self._listing(call)
        if isinstance(listing, Answer):
            return listing
        since, limit = listing
        history = self.response.history
        records = (
            history.anomalies(call.query.get("agent"), since=since, limit=limit)
            if history is not None
            else []
        )
        body: dict[str, Any] = {"anomalies": records}
        agents = {r["agent_id"] for r in records}
        wanted = call.query.get("evidence", "true") not in ("0", "false")
        if wanted and len(agents) > MAX_EVIDENCE_AGENTS:
            body["evidence_omitted"] = (
                f"anomalies of {len(agents)} agents: evidence is resolved for at most "
                f"{MAX_EVIDENCE_AGENTS}; ask for one agent (?agent=)"
            )
        elif wanted:
            await self.add_evidence(call, body, records)
        return Answer(body)

    async def list_audit(self, call: Call) -> Answer:
        """``GET /audit[?agent=A&incident=I&since=S&limit=N]``, newest first."""
        listing = await self._listing(call)
        if isinstance(listing, Answer):
            return listing
        since, limit = listing
        history = self.response.history
        entries = (
            history.audit(
                call.query.get("agent"),
                since=since,
                incident_id=call.query.get("incident"),
                limit=limit,
            )
            if history is not None
            else []
        )
        return Answer({"audit": entries})

    async def list_silences(self, call: Call) -> Answer:
        """``GET /silences[?all=true]``: active and pending silences (``all``: expired too)."""
        forwarded = await self.on_responder(call)
        if forwarded is not None:
            return forwarded
        response = self.response
        now = datetime.fromtimestamp(response.clock(), UTC)
        every = call.query.get("all") in ("1", "true")
        items = [
            s.view(now) for s in response.silences_list() if every or s.status(now) != "expired"
        ]
        return Answer({"silences": items})

    async def show_silence(self, call: Call, silence_id: str) -> Answer:
        """``GET /silences/{id}``."""
        forwarded = await self.on_responder(call)
        if forwarded is not None:
            return forwarded
        response = self.response
        silence = response.silences.get(silence_id) if response.silences else None
        if silence is None:
            return Answer.problem(404, f"unknown silence {silence_id!r}")
        now = datetime.fromtimestamp(response.clock(), UTC)
        return Answer(silence.view(now))


def query_since(call: Call) -> datetime | None:
    """The ``?since=`` of a call (``ValueError`` when it names no time)."""
    return parse_since(call.query.get("since"), datetime.fromtimestamp(time.time(), UTC))


def query_limit(call: Call) -> int:
    """The ``?limit=`` of a call, 1 to 5000 (default 500; ``ValueError`` otherwise)."""
    text = call.query.get("limit", "500")
    if not text.isdigit() or not 1 <= int(text) <= 5000:
        raise ValueError(f"limit={text!r} must be a number from 1 to 5000")
    return int(text)
