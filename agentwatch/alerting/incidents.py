"""Incidents: one open incident per agent groups its anomalies; pages go out on transitions.

Modelled on what Alertmanager gets right (group wait, group interval, repeat interval) and what
per-event alerting gets wrong (one page per anomaly):

* the first anomaly of an agent opens an incident; the page goes out ``group_wait`` later so
  the anomalies that arrive together (a runaway loop trips several rules) make one page with
  the highest severity among them;
* a higher severity than the last page escalates (a new ``trigger`` with the same
  ``dedup_key``), at most once per ``group_interval``; more anomalies of the same severity are
  added to the incident silently;
* an open, unacknowledged incident is re-sent every ``repeat_interval``;
* an incident resolves after ``resolve_after`` without anomalies. An anomaly within
  ``reopen_window`` of a resolve reopens the same incident (same id) and doubles its quiet
  period (up to 8x), so a flapping agent keeps one incident instead of opening and closing one
  every few minutes.

Everything here is pure: state in, state and :class:`~agentwatch.schemas.Notification` objects
out, time passed in. The responder stores the state in a faust table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import blake2b
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentwatch.config import Settings
from agentwatch.schemas import Anomaly, ControlState, Incident, Notification

__all__ = ["SEVERITY_RANK", "IncidentBook", "IncidentPolicy", "IncidentState"]

SEVERITY_RANK = {"info": 0, "warning": 1, "error": 2, "critical": 3}
MAX_TOP = 5
MAX_IDS = 256
MAX_FLAP_FACTOR = 8

Reason = Literal["opened", "escalated", "repeat", "acknowledged", "resolved"]


@dataclass(frozen=True)
class IncidentPolicy:
    """Grouping and timing (seconds)."""

    group_wait: float = 10.0
    group_interval: float = 300.0
    repeat_interval: float = 14400.0
    resolve_after: float = 1800.0
    reopen_window: float = 3600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> IncidentPolicy:
        return cls(
            group_wait=settings.incident_group_wait_s,
            group_interval=settings.incident_group_interval_s,
            repeat_interval=settings.incident_repeat_interval_s,
            resolve_after=settings.incident_resolve_after_s,
            reopen_window=settings.incident_reopen_window_s,
        )


class IncidentState(BaseModel):
    """An agent's current (or last) incident plus the bookkeeping behind its notifications."""

    model_config = ConfigDict(extra="forbid")

    incident: Incident
    seq: int = 0
    paged_severity: Literal["info", "warning", "error", "critical"] | None = None
    last_notified_at: float | None = None
    opened_clock: float
    last_anomaly_clock: float
    resolved_clock: float | None = None
    flaps: int = 0
    top: Annotated[list[Anomaly], Field(max_length=MAX_TOP)] = Field(default_factory=list)
    actions_taken: list[str] = Field(default_factory=list)
    runbook_url: str | None = None
    agent_url: str | None = None
    muted_by: list[str] = Field(default_factory=list)
    """Silences/inhibit rules that kept the last due page from going out; the next unmuted
    anomaly pages again (not only after ``repeat_interval``)."""

    @property
    def is_open(self) -> bool:
        return self.incident.status != "resolved"

    def quiet_period(self, policy: IncidentPolicy) -> float:
        return policy.resolve_after * float(min(MAX_FLAP_FACTOR, 2 ** min(self.flaps, 8)))


def _utc(clock: float) -> datetime:
    return datetime.fromtimestamp(clock, UTC)


def _incident_id(agent_id: str, anomaly_id: str) -> str:
    return "inc-" + blake2b(f"{agent_id}|{anomaly_id}".encode(), digest_size=8).hexdigest()


def _top(current: list[Anomaly], anomaly: Anomaly) -> list[Anomaly]:
    """Most severe first, then most recent; at most :data:`MAX_TOP`."""
    ranked = sorted(
        [*current, anomaly],
        key=lambda a: (SEVERITY_RANK[a.severity], a.ts),
        reverse=True,
    )
    return ranked[:MAX_TOP]


class IncidentBook:
    """The incident state machine.

    Parameters
    ----------
    policy
        Timing of grouping, escalation, repeats and auto-resolve.

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> from agentwatch.schemas import Anomaly
    >>> book = IncidentBook(IncidentPolicy(group_wait=10))
    >>> def anomaly(n, severity):
    ...     return Anomaly(anomaly_id=f"an-{n}", ts=datetime(2026, 1, 1, tzinfo=timezone.utc),
    ...                    agent_id="a1", detector="runaway_loop", kind="repeat",
    ...                    severity=severity, score=9, threshold=5, observed=40, baseline=2,
    ...                    summary="search repeated 40 times")
    >>> state, _ = book.add(None, anomaly(1, "warning"), now=0.0)
    >>> state, _ = book.add(state, anomaly(2, "critical"), now=3.0)
    >>> book.due(state, now=5.0)[1]  # still inside the group wait
    []
    >>> state, pages = book.due(state, now=10.0)
    >>> [(p.event, p.reason, p.severity) for p in pages], state.incident.anomaly_count
    ([('trigger', 'opened', 'critical')], 2)
    """

    def __init__(self, policy: IncidentPolicy | None = None) -> None:
        self.policy = policy or IncidentPolicy()

    # -- anomalies -------------------------------------------------------------------------
    def add(
        self,
        state: IncidentState | None,
        anomaly: Anomaly,
        now: float,
        *,
        actions_taken: list[str] | None = None,
        runbook_url: str | None = None,
        agent_url: str | None = None,
    ) -> tuple[IncidentState, bool]:
        """Fold an anomaly in; returns the new state and whether it was new (not a replay).

        Opens an incident if the agent has none, reopens a recently resolved one.
        """
        if state is not None and anomaly.anomaly_id in state.incident.anomaly_ids:
            return state, False
        reopened = False
        if state is None or (
            not state.is_open and now - (state.resolved_clock or 0.0) > self.policy.reopen_window
        ):
            state = self._open(anomaly, now)
        elif not state.is_open:
            reopened = True
        incident = state.incident
        severity = max(
            incident.severity if not reopened else anomaly.severity,
            anomaly.severity,
            key=SEVERITY_RANK.__getitem__,
        )
        ids = [*incident.anomaly_ids, anomaly.anomaly_id][-MAX_IDS:]
        detectors = list(dict.fromkeys([*incident.detectors, anomaly.detector]))[:64]
        update: dict[str, object] = {
            "severity": severity,
            "anomaly_ids": ids,
            "anomaly_count": incident.anomaly_count + 1,
            "detectors": detectors,
            "updated_at": _utc(now),
        }
        if SEVERITY_RANK[anomaly.severity] >= SEVERITY_RANK[incident.severity] or reopened:
            update["title"] = anomaly.summary
        changes: dict[str, object] = {
            "last_anomaly_clock": now,
            "top": _top(state.top, anomaly),
            "actions_taken": list(dict.fromkeys([*state.actions_taken, *(actions_taken or [])]))[
                -32:
            ],
            "runbook_url": state.runbook_url or runbook_url,
            "agent_url": state.agent_url or agent_url,
        }
        if state.muted_by and state.is_open and not reopened:
            changes.update(muted_by=[], paged_severity=None)  # its page was muted: page now
        if reopened:
            update.update(status="open", resolved_at=None, resolved_by=None, acknowledged_by=None)
            changes.update(
                resolved_clock=None,
                muted_by=[],
                flaps=state.flaps + 1,
                paged_severity=None,
                opened_clock=now,
            )
        changes["incident"] = incident.model_copy(update=update)
        return state.model_copy(update=changes), True

    def _open(self, anomaly: Anomaly, now: float) -> IncidentState:
        incident = Incident(
            incident_id=_incident_id(anomaly.agent_id, anomaly.anomaly_id),
            agent_id=anomaly.agent_id,
            fleet=anomaly.fleet,
            severity=anomaly.severity,
            title=anomaly.summary,
            opened_at=_utc(now),
            updated_at=_utc(now),
        )
        return IncidentState(incident=incident, opened_clock=now, last_anomaly_clock=now)

    # -- time ------------------------------------------------------------------------------
    def next_due(self, state: IncidentState) -> float | None:
        """The clock time of the next transition (page, repeat or resolve), if any."""
        if not state.is_open:
            return None
        policy = self.policy
        times = [state.last_anomaly_clock + state.quiet_period(policy)]
        if state.paged_severity is None:
            times.append(state.opened_clock + policy.group_wait)
        else:
            last = state.last_notified_at or state.opened_clock
            if SEVERITY_RANK[state.incident.severity] > SEVERITY_RANK[state.paged_severity]:
                times.append(last + policy.group_interval)
            if state.incident.status == "open":
                times.append(last + policy.repeat_interval)
        return min(times)

    def due(
        self, state: IncidentState, now: float, control: ControlState | None = None
    ) -> tuple[IncidentState, list[Notification]]:
        """Apply whatever is due at ``now``: first page, escalation, repeat or auto-resolve."""
        if not state.is_open:
            return state, []
        policy = self.policy
        if now - state.last_anomaly_clock >= state.quiet_period(policy):
            return self.resolve(state, now, by="agentwatch", control=control)
        incident = state.incident
        if state.paged_severity is None:
            if now - state.opened_clock >= policy.group_wait:
                return self._notify(state, "trigger", "opened", now=now, control=control)
            return state, []
        last = state.last_notified_at if state.last_notified_at is not None else now
        escalated = SEVERITY_RANK[incident.severity] > SEVERITY_RANK[state.paged_severity]
        if escalated and now - last >= policy.group_interval:
            return self._notify(state, "trigger", "escalated", now=now, control=control)
        if incident.status == "open" and now - last >= policy.repeat_interval:
            return self._notify(state, "trigger", "repeat", now=now, control=control)
        return state, []

    # -- people ----------------------------------------------------------------------------
    def acknowledge(
        self, state: IncidentState, now: float, *, by: str, control: ControlState | None = None
    ) -> tuple[IncidentState, list[Notification]]:
        """Acknowledge: no more repeats; PagerDuty's alert is acknowledged too."""
        if state.incident.status != "open":
            return state, []
        state = state.model_copy(
            update={
                "incident": state.incident.model_copy(
                    update={
                        "status": "acknowledged",
                        "acknowledged_by": by,
                        "updated_at": _utc(now),
                    }
                )
            }
        )
        if state.paged_severity is None:
            # acked before the first page: nobody needs paging any more
            return state.model_copy(update={"paged_severity": state.incident.severity}), []
        return self._notify(
            state, "acknowledge", "acknowledged", now=now, control=control, actor=by
        )

    def resolve(
        self, state: IncidentState, now: float, *, by: str, control: ControlState | None = None
    ) -> tuple[IncidentState, list[Notification]]:
        """Resolve (a person, or ``agentwatch`` after the quiet period)."""
        if not state.is_open:
            return state, []
        paged = state.paged_severity is not None and state.seq > 0
        state = state.model_copy(
            update={
                "incident": state.incident.model_copy(
                    update={
                        "status": "resolved",
                        "resolved_at": _utc(now),
                        "resolved_by": by,
                        "updated_at": _utc(now),
                    }
                ),
                "resolved_clock": now,
            }
        )
        if not paged:
            return state, []  # never paged: nothing to resolve downstream
        return self._notify(state, "resolve", "resolved", now=now, control=control, actor=by)

    # -- notifications ---------------------------------------------------------------------
    def _notify(
        self,
        state: IncidentState,
        event: Literal["trigger", "acknowledge", "resolve"],
        reason: Reason,
        *,
        now: float,
        control: ControlState | None,
        actor: str | None = None,
    ) -> tuple[IncidentState, list[Notification]]:
        incident = state.incident
        seq = state.seq + 1
        changes: dict[str, object] = {"seq": seq, "last_notified_at": now}
        if event == "trigger":
            changes["paged_severity"] = incident.severity
        notification = Notification(
            notification_id=f"{incident.incident_id}:{seq}",
            incident_id=incident.incident_id,
            dedup_key=incident.incident_id,
            event=event,
            reason=reason,
            created_at=_utc(now),
            agent_id=incident.agent_id,
            fleet=incident.fleet,
            severity=incident.severity,
            title=incident.title,
            detectors=incident.detectors,
            anomaly_count=incident.anomaly_count,
            top_anomalies=state.top,
            control=control,
            actions_taken=state.actions_taken,
            commands=_commands(incident, control),
            runbook_url=state.runbook_url,
            agent_url=state.agent_url,
            actor=actor,
        )
        return state.model_copy(update=changes), [notification]


def _commands(incident: Incident, control: ControlState | None) -> list[str]:
    """The exact CLI commands on-call runs next."""
    agent = incident.agent_id
    out: list[str] = []
    if incident.status == "open":
        out.append(f'agentwatch incidents ack {incident.incident_id} --reason "investigating"')
    if control is not None and control.halted:
        out.append(f'agentwatch agents resume {agent} --reason "..."')
    if control is not None and control.revoked:
        out.append(f'agentwatch agents grant {agent} {" ".join(control.revoked)} --reason "..."')
    if control is None or not control.halted:
        out.append(f'agentwatch agents halt {agent} --reason "..."')
    if incident.status != "resolved":
        out.append(f'agentwatch incidents resolve {incident.incident_id} --reason "..."')
    return out[:16]
