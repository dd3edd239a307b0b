"""The on-call control API on the worker's web server (:class:`ControlApi`).

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

Layout: :mod:`.messages` (the request and answer as handlers see them, parsers),
:mod:`.base` (the injected worker parts, the one auth-and-metrics wrapper, forwarding, agent
rows, evidence), :mod:`.reads` (GET endpoints), :mod:`.controls` (POST and DELETE endpoints) and
:mod:`.service` (:class:`ControlApi`, which registers them all).
"""

from __future__ import annotations

from .messages import (
    Answer,
    Call,
    ControlRequest,
    etag,
    parse_if_match,
    parse_since,
    parse_statuses,
    resolve_evidence,
)
from .service import ControlApi

__all__ = [
    "Answer",
    "Call",
    "ControlApi",
    "ControlRequest",
    "etag",
    "parse_if_match",
    "parse_since",
    "parse_statuses",
    "resolve_evidence",
]
