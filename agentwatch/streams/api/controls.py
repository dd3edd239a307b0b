"""The control API's state-changing endpoints: halt, resume, revoke and grant an agent, halt or
resume a fleet, acknowledge or resolve an incident, create and expire silences."""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from agentwatch.alerting.silences import MatcherError, SilenceRequest
from agentwatch.logtext import escape
from agentwatch.schemas._types import AGENT_ID_PATTERN, Name
from agentwatch.streams.response import NotFound, VersionConflict
from agentwatch.streams.roster import fleet_members, suggest, unknown_fleet_message

from .base import ApiBase
from .messages import (
    MAX_BODY,
    Answer,
    Call,
    ControlRequest,
    etag,
    parse_control_body,
    parse_if_match,
    validation_problems,
)

__all__ = ["AGENT_OPS", "FLEET_OPS", "INCIDENT_OPS", "ControlEndpoints"]

log = logging.getLogger(__name__)

AGENT_OPS = ("halt", "resume", "revoke", "grant")
FLEET_OPS = ("halt", "resume")
INCIDENT_OPS = ("ack", "resolve")
_NAME: TypeAdapter[str] = TypeAdapter(Name)
_AGENT_RE = re.compile(AGENT_ID_PATTERN)


class ControlEndpoints(ApiBase):
    """Handlers of the POST and DELETE endpoints (see :mod:`agentwatch.streams.api`)."""

    async def control_agent(self, call: Call, agent_id: str, op: str) -> Answer:
        """``POST /agents/{id}/halt|resume|revoke|grant``."""
        if op not in AGENT_OPS:
            return Answer.problem(404, f"unknown operation {op!r}")
        if len(agent_id) > 128 or not _AGENT_RE.fullmatch(agent_id):
            return Answer.problem(400, f"invalid agent id {agent_id!r}")
        body = parse_control_body(call.body)
        if not isinstance(body, ControlRequest):
            return body
        if op == "revoke" and not body.actions:
            return Answer.problem(400, "revoke needs a non-empty 'actions'")
        try:
            expected = parse_if_match(call.header("If-Match"))
        except ValueError as exc:
            return Answer.problem(400, str(exc))
        forwarded = await self.on_responder(call)
        if forwarded is not None:
            return forwarded
        if not body.force:
            refused = await self.refuse_unknown(call, agent_id)
            if refused is not None:
                return refused
        try:
            state = await self.response.control_command(
                op,  # type: ignore[arg-type]
                agent_id,
                actions=body.actions,
                actor=body.actor,
                reason=body.reason,
                incident_id=body.incident_id,
                expected_version=expected,
            )
        except VersionConflict as conflict:
            return Answer(
                {"error": str(conflict), "current_version": conflict.current},
                status=409,
                headers={"ETag": etag(conflict.current)},
            )
        log.info(
            "control: %s %s by %s (version %d): %s",
            op,
            agent_id,
            escape(body.actor),
            state.version,
            escape(body.reason, 1024),
        )
        return Answer(state.model_dump(mode="json"), headers={"ETag": etag(state.version)})

    async def control_fleet(self, call: Call, fleet: str, op: str) -> Answer:
        """``POST /fleets/{fleet}/halt|resume``: every known agent of the fleet."""
        if op not in FLEET_OPS:
            return Answer.problem(404, f"unknown fleet operation {op!r}")
        body = parse_control_body(call.body)
        if not isinstance(body, ControlRequest):
            return body
        if body.actions or body.force or call.header("If-Match") is not None:
            return Answer.problem(
                400, "'actions', 'force' and If-Match apply to one agent, not a fleet"
            )
        forwarded = await self.on_responder(call)
        if forwarded is not None:
            return forwarded
        started = time.perf_counter()
        rows, unreachable = await self.all_rows(call)
        agents = fleet_members(rows, fleet)
        if not agents:
            if unreachable:
                message = (
                    f"no agent of fleet {fleet!r} found, and workers "
                    f"{', '.join(unreachable)} did not answer; retry shortly"
                )
                return Answer.problem(503, message)
            fleets = {row["fleet"] for row in rows if row.get("fleet")}
            message = unknown_fleet_message(fleet, suggest(fleet, fleets))
            return Answer.problem(404, message, reason="unknown_fleet")
        changed, unchanged = await self.response.fleet_command(
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
        return Answer(answer)

    async def incident_op(self, call: Call, incident_id: str, op: str) -> Answer:
        """``POST /incidents/{id}/ack|resolve``."""
        if op not in INCIDENT_OPS:
            return Answer.problem(404, f"unknown operation {op!r}")
        body = parse_control_body(call.body)
        if not isinstance(body, ControlRequest):
            return body
        forwarded = await self.on_responder(call)
        if forwarded is not None:
            return forwarded
        try:
            incident = await self.response.incident_command(
                op,  # type: ignore[arg-type]
                incident_id,
                actor=body.actor,
                reason=body.reason,
            )
        except NotFound:
            return Answer.problem(404, f"unknown incident {incident_id!r}")
        log.info(
            "incident: %s %s by %s: %s",
            op,
            escape(incident_id),
            escape(body.actor),
            escape(body.reason, 1024),
        )
        return Answer(incident.model_dump(mode="json"))

    async def create_silence(self, call: Call) -> Answer:
        """``POST /silences``."""
        raw = call.body
        if len(raw) > MAX_BODY:
            return Answer.problem(400, f"body over {MAX_BODY} bytes")
        try:
            silence_request = SilenceRequest.model_validate_json(raw or b"null")
        except ValidationError as exc:
            return Answer.problem(400, "invalid silence", problems=validation_problems(exc))
        except MatcherError as exc:
            return Answer.problem(400, str(exc))
        forwarded = await self.on_responder(call)
        if forwarded is not None:
            return forwarded
        try:
            silence = await self.response.create_silence(silence_request)
        except ValueError as exc:
            return Answer.problem(400, str(exc))
        log.info(
            "silence %s created by %s: %s",
            silence.silence_id,
            escape(silence.created_by),
            ", ".join(escape(str(m)) for m in silence.matchers),
        )
        now = datetime.fromtimestamp(self.response.clock(), UTC)
        return Answer(silence.view(now), status=201)

    async def expire_silence(self, call: Call, silence_id: str) -> Answer:
        """``DELETE /silences/{id}?actor=NAME``: end a silence now."""
        actor = call.query.get("actor", "")
        try:
            _NAME.validate_python(actor)
        except ValidationError:
            actor = ""
        if not actor:
            return Answer.problem(400, "say who expires the silence: ?actor=NAME")
        forwarded = await self.on_responder(call)
        if forwarded is not None:
            return forwarded
        try:
            silence = await self.response.expire_silence(silence_id, by=actor)
        except NotFound:
            return Answer.problem(404, f"unknown silence {silence_id!r}")
        log.info("silence %s expired by %s", silence.silence_id, escape(actor))
        now = datetime.fromtimestamp(self.response.clock(), UTC)
        return Answer(silence.view(now))
