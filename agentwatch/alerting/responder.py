"""The responder: anomalies and on-call commands in; control changes, audit and pages out.

For each anomaly it looks up the rule that produced it and applies the rule's ``action``:

* ``halt`` — the agent's ControlState gets ``halted=True`` (the SDK refuses every tool call);
* ``revoke`` — the named actions (the rule's ``action.actions``, else the actions in the
  finding) are added to ``revoked``;
* ``notify`` — no control change;
* ``none`` — the anomaly is recorded on the anomalies topic only: no incident, no page.

A rule with ``dry_run: true`` changes nothing and pages nobody: the audit topic records what it
would have done (``dry_run=true``), so a new rule can shadow live traffic before it acts.

Every control change is a full :class:`~agentwatch.schemas.ControlState` with a higher
``version`` (:func:`next_version`: ``max(previous + 1, now in ms)``) plus an
:class:`~agentwatch.schemas.AuditEntry` naming the rule or person and the reason. States come
back unsigned (``key_id``/``signature`` cleared): the streams layer signs what it publishes.
Anomalies group into incidents (:mod:`agentwatch.alerting.incidents`).

A muted anomaly (a silence or an inhibit rule matches it, :mod:`agentwatch.alerting.silences`)
still gets its rule's control action (a silence mutes pages, not the kill switch) and a
``suppressed`` audit entry, but never joins an incident, so it never pages. A page that falls
due while a silence mutes every anomaly it is about is not sent either (``suppressed``); the
incident's next unmuted anomaly pages again. Pure logic: the streams
layer persists the returned state and publishes the outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import blake2b
from typing import Literal
from urllib.parse import urljoin

from agentwatch.alerting.incidents import IncidentBook, IncidentState
from agentwatch.alerting.silences import Mute
from agentwatch.detectors.rules import Rule, RuleSet
from agentwatch.schemas import Anomaly, AuditEntry, ControlState, Notification

__all__ = ["Command", "Outcome", "Responder", "audit_id", "next_version"]

Command = Literal["halt", "resume", "revoke", "grant"]


@dataclass
class Outcome:
    """What one input changed: new state to store and records to publish."""

    control: ControlState | None = None  # set only when it changed (publish + store)
    incident: IncidentState | None = None  # set when it changed (store)
    audit: list[AuditEntry] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)


def _utc(clock: float) -> datetime:
    return datetime.fromtimestamp(clock, UTC)


_UNSIGNED: dict[str, None] = {"key_id": None, "signature": None}


def next_version(previous: int, now: float) -> int:
    """The version of the change after ``previous`` at wall-clock ``now`` (seconds).

    ``max(previous + 1, now in milliseconds)``: strictly increasing per agent (one writer),
    still increasing after a restart even if the stored state were lost (the clock moved on),
    and close to the wall clock, so an agent can refuse a version far in the future as
    implausible instead of ignoring every later change.

    Examples
    --------
    >>> next_version(0, 1_767_225_600.0), next_version(1_767_225_600_000, 1_767_225_600.0)
    (1767225600000, 1767225600001)
    >>> next_version(4, 0.0)
    5
    """
    return max(previous + 1, int(now * 1000))


def audit_id(*parts: object) -> str:
    return "au-" + blake2b("|".join(map(str, parts)).encode(), digest_size=10).hexdigest()


class Responder:
    """Applies rule actions and on-call commands.

    Parameters
    ----------
    rules
        The rules the anomalies came from (for ``action``, ``dry_run`` and runbook links).
    book
        The incident state machine.
    agent_url
        Base URL of the agent view (``{base}/agents/{agent_id}``), for links in pages.
    runbook_base_url
        Joined to relative ``runbook_url`` annotations (e.g. ``docs/runbook.md#exfiltration``).

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> from agentwatch.detectors.rules import load_rules
    >>> responder = Responder(load_rules())
    >>> anomaly = Anomaly(anomaly_id="an-1", ts=datetime(2026, 1, 1, tzinfo=timezone.utc),
    ...     agent_id="a1", detector="runaway_loop", kind="repeat", severity="critical",
    ...     score=9, threshold=5, observed=40, baseline=2, summary="search x40",
    ...     rule="RunawayLoop")
    >>> out = responder.on_anomaly(anomaly, None, None, now=0.0)
    >>> out.control.halted, out.control.version, out.control.updated_by
    (True, 1, 'RunawayLoop')
    >>> [a.action for a in out.audit]
    ['halt', 'incident_open']
    """

    def __init__(
        self,
        rules: RuleSet,
        book: IncidentBook | None = None,
        *,
        agent_url: str | None = None,
        runbook_base_url: str | None = None,
    ) -> None:
        self.rules = rules
        self.book = book or IncidentBook()
        self.agent_url = agent_url
        self.runbook_base_url = runbook_base_url

    def runbook(self, rule: Rule | None) -> str | None:
        """The rule's runbook link, made absolute when a base URL is configured."""
        url = rule.annotations.get("runbook_url") if rule is not None else None
        if url and self.runbook_base_url and "://" not in url:
            return urljoin(self.runbook_base_url, url)
        return url

    def _rule(self, name: str | None) -> Rule | None:
        if name is None:
            return None
        try:
            return self.rules.by_alert(name)
        except KeyError:
            return None

    # -- anomalies -------------------------------------------------------------------------
    def on_anomaly(
        self,
        anomaly: Anomaly,
        control: ControlState | None,
        incident: IncidentState | None,
        now: float,
        mute: Mute | None = None,
    ) -> Outcome:
        """Respond to one anomaly (idempotent: a replayed anomaly changes nothing).

        ``mute`` says which silences and inhibit rules match it: a muted anomaly gets its
        control action and a ``suppressed`` audit entry, and no incident.
        """
        if incident is not None and anomaly.anomaly_id in incident.incident.anomaly_ids:
            return Outcome()
        rule = self._rule(anomaly.rule)
        action = rule.action.type if rule is not None else "notify"
        actor = rule.alert if rule is not None else anomaly.detector
        if action == "none":
            return Outcome()
        out = Outcome()
        agent = anomaly.agent_id
        if rule is not None and rule.dry_run:
            would = self._apply(action, self._revoke_list(rule, anomaly), control, agent, now)
            out.audit.append(
                AuditEntry(
                    audit_id=audit_id(anomaly.anomaly_id, "dry_run"),
                    ts=_utc(now),
                    actor=actor,
                    actor_kind="rule",
                    action=action,
                    agent_id=agent,
                    reason=anomaly.summary,
                    anomaly_ids=[anomaly.anomaly_id],
                    actions=list(would.revoked) if would is not None else [],
                    dry_run=True,
                    detail={"would_change_control": would is not None},
                )
            )
            return out
        taken: list[str] = []
        new_control = None
        if action in ("halt", "revoke"):
            revoke = self._revoke_list(rule, anomaly) if action == "revoke" else []
            new_control = self._apply(action, revoke, control, agent, now)
            if action == "revoke" and not revoke:
                taken.append("revoke requested but the finding named no action: notified only")
        if new_control is not None:
            before = set(control.revoked) if control is not None else set()
            taken.append(
                "halted"
                if action == "halt"
                else "revoked " + ", ".join(sorted(set(new_control.revoked) - before))
            )
        if mute is not None and mute.muted:
            return self._muted(
                anomaly,
                mute=mute,
                new_control=new_control,
                control=control,
                actor=actor,
                taken=taken,
                now=now,
            )
        state, fresh = self.book.add(
            incident,
            anomaly,
            now,
            actions_taken=[f"{t} by {actor}" for t in taken],
            runbook_url=self.runbook(rule),
            agent_url=f"{self.agent_url}/agents/{agent}" if self.agent_url else None,
        )
        if not fresh:
            return Outcome()
        if new_control is not None:
            out.control = new_control.model_copy(
                update={
                    "reason": anomaly.summary[:1024],
                    "updated_at": _utc(now),
                    "updated_by": actor,
                    "incident_id": state.incident.incident_id,
                }
            )
            out.audit.append(
                self._control_audit(
                    out.control, actor, "rule", reason=anomaly.summary, now=now, anomaly=anomaly
                )
            )
        opened = incident is None or state.incident.incident_id != incident.incident.incident_id
        reopened = not opened and incident is not None and not incident.is_open
        if opened or reopened:
            out.audit.append(
                AuditEntry(
                    audit_id=audit_id(state.incident.incident_id, "open", anomaly.anomaly_id),
                    ts=_utc(now),
                    actor=actor,
                    actor_kind="rule",
                    action="incident_open",
                    agent_id=agent,
                    incident_id=state.incident.incident_id,
                    reason=anomaly.summary,
                    anomaly_ids=[anomaly.anomaly_id],
                    detail={"reopened": reopened, "severity": state.incident.severity},
                )
            )
        out.incident = state
        return out

    def _muted(
        self,
        anomaly: Anomaly,
        *,
        mute: Mute,
        new_control: ControlState | None,
        control: ControlState | None,
        actor: str,
        taken: list[str],
        now: float,
    ) -> Outcome:
        out = Outcome()
        if new_control is not None:
            out.control = new_control.model_copy(
                update={
                    "reason": anomaly.summary[:1024],
                    "updated_at": _utc(now),
                    "updated_by": actor,
                    "incident_id": control.incident_id if control is not None else None,
                }
            )
            out.audit.append(
                self._control_audit(
                    out.control, actor, "rule", reason=anomaly.summary, now=now, anomaly=anomaly
                )
            )
        out.audit.append(
            AuditEntry(
                audit_id=audit_id(anomaly.anomaly_id, "suppressed"),
                ts=_utc(now),
                actor=actor,
                actor_kind="rule",
                action="suppressed",
                agent_id=anomaly.agent_id,
                reason=f"not paged: {anomaly.summary}"[:1024],
                anomaly_ids=[anomaly.anomaly_id],
                detail={
                    "silenced_by": list(mute.silenced_by),
                    "inhibited_by": list(mute.inhibited_by),
                    "actions_taken": taken,
                },
            )
        )
        return out

    @staticmethod
    def _revoke_list(rule: Rule | None, anomaly: Anomaly) -> list[str]:
        if rule is not None and rule.action.actions:
            return list(rule.action.actions)
        return list(anomaly.actions)

    @staticmethod
    def _apply(
        action: str, revoke: list[str], control: ControlState | None, agent: str, now: float
    ) -> ControlState | None:
        """The control state after ``action``, or None when nothing would change."""
        current = control or ControlState(
            agent_id=agent, updated_at=datetime.fromtimestamp(0, UTC), updated_by="agentwatch"
        )
        if action == "halt":
            if current.halted:
                return None
            version = next_version(current.version, now)
            return current.model_copy(update={"halted": True, "version": version, **_UNSIGNED})
        if action == "revoke":
            merged = sorted(set(current.revoked) | set(revoke))
            if merged == sorted(current.revoked):
                return None
            version = next_version(current.version, now)
            return current.model_copy(update={"revoked": merged, "version": version, **_UNSIGNED})
        return None

    def _control_audit(
        self,
        control: ControlState,
        actor: str,
        kind: Literal["rule", "person"],
        *,
        reason: str,
        now: float,
        anomaly: Anomaly | None = None,
        action: Command | None = None,
    ) -> AuditEntry:
        if action is None:
            action = "halt" if control.halted else "revoke"
        return AuditEntry(
            audit_id=audit_id(control.agent_id, control.version, action),
            ts=_utc(now),
            actor=actor,
            actor_kind=kind,
            action=action,
            agent_id=control.agent_id,
            incident_id=control.incident_id,
            reason=reason[:1024],
            anomaly_ids=[anomaly.anomaly_id] if anomaly is not None else [],
            actions=list(control.revoked),
            control_version=control.version,
        )

    # -- time ------------------------------------------------------------------------------
    def tick(
        self,
        incident: IncidentState,
        control: ControlState | None,
        now: float,
        mute: Callable[[Notification], Mute] | None = None,
    ) -> Outcome:
        """Whatever is due for one incident: first page, escalation, repeat, auto-resolve.

        ``mute`` says whether a silence mutes a page (``trigger``) that falls due: a muted page
        is not sent (a ``suppressed`` audit entry instead); acknowledge and resolve go out.
        """
        state, notes = self.book.due(incident, now, control)
        if state is incident:
            return Outcome()
        out = Outcome()
        kept: list[Notification] = []
        for note in notes:
            muted = mute(note) if mute is not None and note.event == "trigger" else Mute()
            if not muted.muted:
                kept.append(note)
                continue
            reasons = [*muted.silenced_by, *muted.inhibited_by]
            state = state.model_copy(update={"muted_by": reasons})
            out.audit.append(
                AuditEntry(
                    audit_id=audit_id(note.notification_id, "suppressed"),
                    ts=_utc(now),
                    actor="agentwatch",
                    actor_kind="system",
                    action="suppressed",
                    agent_id=note.agent_id,
                    incident_id=note.incident_id,
                    reason=f"page not sent ({note.reason}): {note.title}"[:1024],
                    anomaly_ids=[a.anomaly_id for a in note.top_anomalies],
                    detail={
                        "notification_id": note.notification_id,
                        "silenced_by": list(muted.silenced_by),
                        "inhibited_by": list(muted.inhibited_by),
                    },
                )
            )
        notes = kept
        out.incident, out.notifications = state, notes
        self._transition_audit(
            incident, state, notes, actor="agentwatch", kind="system", reason="", now=now, out=out
        )
        return out

    def _transition_audit(
        self,
        before: IncidentState,
        after: IncidentState,
        notes: list[Notification],
        *,
        actor: str,
        kind: Literal["rule", "person", "system"],
        reason: str,
        now: float,
        out: Outcome,
    ) -> None:
        inc = after.incident
        for note in notes:
            action: Literal["notify", "incident_ack", "incident_resolve", "incident_escalate"]
            action = {
                "acknowledged": "incident_ack",
                "resolved": "incident_resolve",
                "escalated": "incident_escalate",
            }.get(note.reason, "notify")  # type: ignore[assignment]
            out.audit.append(
                AuditEntry(
                    audit_id=audit_id(note.notification_id, "audit"),
                    ts=_utc(now),
                    actor=actor,
                    actor_kind=kind,
                    action=action,
                    agent_id=inc.agent_id,
                    incident_id=inc.incident_id,
                    reason=reason or f"{note.reason}: {inc.title}"[:1024],
                    anomaly_ids=inc.anomaly_ids[-20:],
                    detail={"notification_id": note.notification_id, "severity": note.severity},
                )
            )
        if not notes and before.incident.status != after.incident.status:
            action2: Literal["incident_ack", "incident_resolve"] = (
                "incident_ack" if after.incident.status == "acknowledged" else "incident_resolve"
            )
            out.audit.append(
                AuditEntry(
                    audit_id=audit_id(inc.incident_id, action2, now),
                    ts=_utc(now),
                    actor=actor,
                    actor_kind=kind,
                    action=action2,
                    agent_id=inc.agent_id,
                    incident_id=inc.incident_id,
                    reason=reason[:1024],
                )
            )

    # -- people ----------------------------------------------------------------------------
    def incident_command(
        self,
        op: Literal["ack", "resolve"],
        incident: IncidentState,
        control: ControlState | None,
        *,
        actor: str,
        reason: str,
        now: float,
    ) -> Outcome:
        """A person acknowledges or resolves an incident."""
        if op == "ack":
            state, notes = self.book.acknowledge(incident, now, by=actor, control=control)
        else:
            state, notes = self.book.resolve(incident, now, by=actor, control=control)
        if state is incident:
            return Outcome()
        out = Outcome(incident=state, notifications=notes)
        self._transition_audit(
            incident, state, notes, actor=actor, kind="person", reason=reason, now=now, out=out
        )
        return out

    def control_command(
        self,
        op: Command,
        agent_id: str,
        control: ControlState | None,
        *,
        actions: list[str],
        actor: str,
        reason: str,
        now: float,
        incident_id: str | None = None,
        detail: dict[str, str] | None = None,
    ) -> Outcome:
        """A person halts, resumes, revokes or grants; returns the new state (always audited).

        ``detail`` goes into the audit entry (e.g. ``{"fleet": "support"}`` for a fleet-wide
        halt applied to this agent).
        """
        current = control or ControlState(
            agent_id=agent_id, updated_at=datetime.fromtimestamp(0, UTC), updated_by="agentwatch"
        )
        if op == "halt":
            update: dict[str, object] = {"halted": True}
        elif op == "resume":
            update = {"halted": False}
        elif op == "revoke":
            update = {"revoked": sorted(set(current.revoked) | set(actions))}
        else:
            remaining = [] if not actions else [a for a in current.revoked if a not in actions]
            update = {"revoked": remaining}
        update.update(
            version=next_version(current.version, now),
            key_id=None,
            signature=None,
            reason=reason[:1024],
            updated_at=_utc(now),
            updated_by=actor,
            incident_id=incident_id if op in ("halt", "revoke") else current.incident_id,
        )
        new = current.model_copy(update=update)
        audit = self._control_audit(new, actor, "person", reason=reason, now=now, action=op)
        if op in ("revoke", "grant"):
            audit = audit.model_copy(update={"actions": sorted(actions) or list(current.revoked)})
        if detail:
            audit = audit.model_copy(update={"detail": dict(detail)})
        return Outcome(control=new, audit=[audit])
