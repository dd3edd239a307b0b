"""The response stage: anomalies → responder → control, audit and outbox; outbox → notifiers.

The anomalies and notifications topics have one partition (see
:data:`~agentwatch.streams.topics.SINGLE_PARTITION`), so exactly one worker owns every incident,
every agent's control state and every delivery; the control API routes to it.

Crash safety, in order, for every change:

1. the outputs (ControlState, notifications, audit entries) are produced and **acknowledged by
   the broker**;
2. then the new incident/control state is written to its table (changelog);
3. then faust commits the input offset.

A crash before 2 replays the input: the responder recognises a replayed anomaly (its id is in
the incident) or recomputes the same notification with the same deterministic id, and the
delivery stage skips ids already delivered (the ``deliveries`` table), so a crash yields
neither a lost nor a second page.

One writer per agent: every read-compute-publish-store of an agent's control and incident
state (anomaly responses, timer ticks, API commands, incident ack/resolve, re-signing) runs
under that agent's lock (:class:`~agentwatch.streams.keylocks.KeyedLocks`), so each accepted
change is applied on top of the previous one and versions strictly increase. Every published
ControlState is signed with the worker's key (:mod:`agentwatch.schemas.signing`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Literal

import orjson
from faust.streams import _current_event
from pydantic import ValidationError

from agentwatch.alerting.dispatch import DeliveryResult, Dispatcher
from agentwatch.alerting.incidents import IncidentState
from agentwatch.alerting.responder import Command, Outcome, Responder, audit_id, next_version
from agentwatch.alerting.silences import (
    Mute,
    Silence,
    SilenceRequest,
    anomaly_labels,
    inhibited_by,
    matches_all,
    new_silence_id,
    silenced_by,
)
from agentwatch.logtext import escape
from agentwatch.schemas import Anomaly, AuditEntry, ControlState, Incident, Notification
from agentwatch.schemas.signing import ControlSigner
from agentwatch.streams.deadletter import DeadLetters
from agentwatch.streams.history import History
from agentwatch.streams.keylocks import KeyedLocks
from agentwatch.streams.metrics import WorkerMetrics
from agentwatch.streams.produce import Outgoing, send_all_acked
from agentwatch.streams.silencing import SilenceStore

__all__ = ["DeliveryStage", "NotFound", "ResponseStage", "TableLog", "VersionConflict"]

log = logging.getLogger(__name__)

_INDEX = b"\x00index"  # incidents table: {"open": [agent...], "recent": [[incident, agent]...]}
MAX_RECENT = 500


class _Message:
    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition


class _PartitionEvent:
    """Stands in for faust's current event when a timer or web request writes a table.

    faust's stores pick the partition of a write from the current event; the responder's
    tables have one partition, so writes outside a stream name partition 0 of the anomalies
    topic.
    """

    def __init__(self, topic: str, partition: int = 0) -> None:
        self.message = _Message(topic, partition)


class NotFound(LookupError):
    """No such incident on the responder."""


class VersionConflict(Exception):
    """A compare-and-set change named a version that is not the agent's current one."""

    def __init__(self, agent_id: str, expected: int, current: int) -> None:
        super().__init__(
            f"agent {agent_id!r} is at control version {current}, not {expected}: it changed "
            "meanwhile; read it again and retry"
        )
        self.agent_id = agent_id
        self.expected = expected
        self.current = current


class ResponseStage:
    """Runs the :class:`~agentwatch.alerting.responder.Responder` against faust tables/topics.

    Parameters
    ----------
    responder
        The pure response logic.
    controls, incidents
        Faust tables ``agent_id -> ControlState JSON`` and ``agent_id -> IncidentState JSON``.
    topics
        Faust topics by short name (``control``, ``audit``, ``notifications``, ``deadletter``).
    anomalies_topic
        Full name of the anomalies topic (the tables' source).
    owns
        Whether this worker currently owns the responder partition.
    metrics
        Counters and gauges.
    signer
        Signs every ControlState this stage publishes.
    deadletters
        Where invalid anomalies go.
    history
        Tables ``anomaly_log`` and ``audit_log`` (what on-call reads back); ``None`` = off.
    silences
        Table ``silences``; ``None`` = no silences.
    clock
        Wall clock (tests inject one).
    """

    def __init__(
        self,
        *,
        responder: Responder,
        controls: Any,
        incidents: Any,
        topics: dict[str, Any],
        anomalies_topic: str,
        owns: Callable[[], bool],
        metrics: WorkerMetrics,
        signer: ControlSigner,
        deadletters: DeadLetters,
        history: tuple[Any, Any] | None = None,
        silences: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.responder = responder
        self.deadletters = deadletters
        self.controls = controls
        self.incidents = incidents
        self.topics = topics
        self.anomalies_topic = anomalies_topic
        self.owns = owns
        self.metrics = metrics
        self.signer = signer
        self.clock = clock
        self._shim = _PartitionEvent(anomalies_topic)
        self.history = History(history[0], history[1], self._shim) if history else None
        self.silences = SilenceStore(silences, self._shim) if silences is not None else None
        self.locks = KeyedLocks()
        self._resigned = False  # stored states re-signed with our key since we own the partition

    # -- table access ----------------------------------------------------------------------
    def control(self, agent_id: str) -> ControlState | None:
        raw = self.controls.get(agent_id.encode())
        return None if raw is None else ControlState.model_validate_json(raw)

    def incident_state(self, agent_id: str) -> IncidentState | None:
        raw = self.incidents.get(agent_id.encode())
        return None if raw is None else IncidentState.model_validate_json(raw)

    def _index(self) -> dict[str, list[Any]]:
        raw = self.incidents.get(_INDEX)
        return {"open": [], "recent": []} if raw is None else orjson.loads(raw)

    def incidents_list(self, status: str | None = None) -> list[Incident]:
        """Open and recent incidents, newest first (``status`` filters)."""
        out = []
        for incident_id, agent_id in reversed(self._index()["recent"]):
            state = self.incident_state(agent_id)
            if state is None or state.incident.incident_id != incident_id:
                continue
            if status is None or state.incident.status == status:
                out.append(state.incident)
        return out

    def find(self, incident_id: str) -> IncidentState:
        for known, agent_id in self._index()["recent"]:
            if known == incident_id:
                state = self.incident_state(agent_id)
                if state is not None and state.incident.incident_id == incident_id:
                    return state
        raise NotFound(incident_id)

    # -- inputs ----------------------------------------------------------------------------
    async def process_anomalies(self, events: Sequence[Any]) -> None:
        """Respond to a batch of anomaly messages (faust events); dead-letter invalid ones."""
        for fevent in events:
            message = fevent.message
            try:
                anomaly = Anomaly.model_validate_json(message.value)
            except (ValidationError, ValueError, TypeError) as exc:
                await self.deadletters.send(message, "invalid_anomaly", _invalid(exc))
                continue
            agent = anomaly.agent_id
            async with self.locks.hold(agent):
                now = self.clock()
                labels = self.labels(anomaly)
                mute = self.mute(anomaly.anomaly_id, labels, now)
                before = self.incident_state(agent)
                outcome = self.responder.on_anomaly(anomaly, self.control(agent), before, now, mute)
                await self._apply(agent, outcome, fevent)
                if self.history is not None:
                    state = outcome.incident or before
                    in_incident = state is not None and (
                        anomaly.anomaly_id in state.incident.anomaly_ids
                    )
                    self.history.record_anomaly(
                        anomaly,
                        labels=labels,
                        mute=mute,
                        incident_id=state.incident.incident_id if in_incident and state else None,
                        clock=now,
                        inhibit_window=self._inhibit_window(),
                        source=any(
                            matches_all(r.source_matchers, labels)
                            for r in self.responder.rules.inhibit_rules
                        ),
                    )

    # -- silences and inhibition -----------------------------------------------------------
    def labels(self, anomaly: Anomaly) -> dict[str, str]:
        """The labels silences and inhibit rules match ``anomaly`` by."""
        rule = None
        if anomaly.rule is not None:
            try:
                rule = self.responder.rules.by_alert(anomaly.rule)
            except KeyError:
                rule = None
        return anomaly_labels(anomaly, rule.labels if rule is not None else None)

    def _inhibit_window(self) -> float:
        return max((r.window for r in self.responder.rules.inhibit_rules), default=0.0)

    def mute(self, anomaly_id: str, labels: dict[str, str], now: float) -> Mute:
        """Which active silences and inhibit rules mute an anomaly with ``labels`` at ``now``."""
        silences = self.silences.all() if self.silences is not None else []
        at = datetime.fromtimestamp(now, UTC)
        inhibit = self.responder.rules.inhibit_rules
        sources = self.history.sources() if self.history is not None and inhibit else []
        return Mute(
            silenced_by=tuple(silenced_by(silences, labels, at)),
            inhibited_by=tuple(inhibited_by(inhibit, labels, anomaly_id, sources, now)),
        )

    def mute_page(self, note: Notification) -> Mute:
        """A page is muted when active silences mute every anomaly it is about."""
        if self.silences is None or not note.top_anomalies:
            return Mute()
        silences = self.silences.all()
        at = datetime.fromtimestamp(self.clock(), UTC)
        found: set[str] = set()
        for anomaly in note.top_anomalies:
            ids = silenced_by(silences, self.labels(anomaly), at)
            if not ids:
                return Mute()
            found.update(ids)
        return Mute(silenced_by=tuple(sorted(found)))

    def silences_list(self) -> list[Silence]:
        """Every stored silence, newest first."""
        return self.silences.all() if self.silences is not None else []

    async def create_silence(self, request: SilenceRequest) -> Silence:
        """Store a new silence and audit it; ``ValueError`` for impossible times."""
        if self.silences is None:
            raise RuntimeError("silences are not enabled on this worker")
        now = datetime.fromtimestamp(self.clock(), UTC)
        silence = Silence.create(request, now, new_silence_id())
        self.silences.prune(now)
        self.silences.put(silence)
        await self._audit_silence(silence, "silence_create", request.created_by, request.comment)
        return silence

    async def expire_silence(self, silence_id: str, *, by: str) -> Silence:
        """End a silence now (``NotFound`` when there is none with that id)."""
        if self.silences is None or (silence := self.silences.get(silence_id)) is None:
            raise NotFound(silence_id)
        now = datetime.fromtimestamp(self.clock(), UTC)
        expired = silence.expire(now, by)
        if expired is not silence:
            self.silences.put(expired)
            await self._audit_silence(expired, "silence_expire", by, "expired")
        return expired

    async def mark_muted(self, note: Notification, muted: Mute) -> None:
        """A page of ``note``'s incident was not delivered (silenced at delivery): mark the
        incident so that its next unmuted anomaly pages again."""
        if muted.inhibited_by:
            self.metrics.suppressed.labels("inhibited").inc()
        else:
            self.metrics.suppressed.labels("silenced").inc()
        agent = note.agent_id
        async with self.locks.hold(agent):
            state = self.incident_state(agent)
            if state is None or state.incident.incident_id != note.incident_id:
                return
            if not state.is_open:
                return
            reasons = [*muted.silenced_by, *muted.inhibited_by]
            await self._apply(
                agent, Outcome(incident=state.model_copy(update={"muted_by": reasons})), None
            )

    async def _audit_silence(
        self,
        silence: Silence,
        action: Literal["silence_create", "silence_expire"],
        actor: str,
        reason: str,
    ) -> None:
        entry = AuditEntry(
            audit_id=audit_id(silence.silence_id, action),
            ts=datetime.fromtimestamp(self.clock(), UTC),
            actor=actor,
            actor_kind="person",
            action=action,
            reason=reason[:1024],
            detail={
                "silence_id": silence.silence_id,
                "matchers": [str(m) for m in silence.matchers],
                "starts_at": silence.starts_at.isoformat(),
                "ends_at": silence.ends_at.isoformat(),
            },
        )
        key = f"silence:{silence.silence_id}".encode()
        await self._publish("audit", [Outgoing(key, entry.model_dump_json().encode())])
        if self.history is not None:
            self.history.record_audit([entry])

    async def tick(self) -> int:
        """Send whatever is due (first pages, escalations, repeats, auto-resolves).

        The first tick after this worker gains the responder partition also re-signs stored
        control states signed with another key (:meth:`resign`).
        """
        if not self.owns():
            self._resigned = False
            return 0
        if not self._resigned:
            await self.resign()
            self._resigned = True
        done = 0
        index = self._index()
        for agent in list(index["open"]):
            if not self._due(agent, self.clock()):
                continue
            async with self.locks.hold(agent):
                now = self.clock()
                state = self._due(agent, now)  # again: a change may have run meanwhile
                if state is None:
                    continue
                outcome = self.responder.tick(state, self.control(agent), now, self.mute_page)
                await self._apply(agent, outcome, None)
            done += 1
        self.metrics.incidents_open.set(len(self._index()["open"]))
        return done

    def _due(self, agent: str, now: float) -> IncidentState | None:
        state = self.incident_state(agent)
        if state is None or not state.is_open:
            return None
        due = self.responder.book.next_due(state)
        return state if due is not None and due <= now else None

    async def resign(self) -> int:
        """Publish again, signed with this worker's key, every stored control state that is
        unsigned or signed with another key (after an upgrade or a key rotation), so an agent
        that (re)reads the control topic finds its state signed by a key it accepts.

        Each gets a new version; nothing else changes. Returns how many were re-signed.
        """
        done = 0
        for key in list(self.controls.keys()):
            agent = key.decode()
            async with self.locks.hold(agent):
                current = self.control(agent)
                if current is None or current.key_id == self.signer.key_id:
                    continue
                version = next_version(current.version, self.clock())
                await self._apply(
                    agent, Outcome(control=current.model_copy(update={"version": version})), None
                )
            done += 1
        if done:
            self.metrics.control_resigned.inc(done)
            log.info("re-signed %d stored control states with key %s", done, self.signer.key_id)
        return done

    async def control_command(
        self,
        op: Command,
        agent_id: str,
        *,
        actions: list[str],
        actor: str,
        reason: str,
        incident_id: str | None = None,
        expected_version: int | None = None,
    ) -> ControlState:
        """A person changes an agent's control state (API/CLI); returns the new, signed state.

        ``expected_version`` (``If-Match``) makes it a compare-and-set: the change applies only
        if the agent's current version (0 = no state yet) is that one, else
        :class:`VersionConflict`. The check and the change are one step under the agent's lock.
        """
        async with self.locks.hold(agent_id):
            current = self.control(agent_id)
            held = current.version if current is not None else 0
            if expected_version is not None and expected_version != held:
                self.metrics.control_conflicts.inc()
                raise VersionConflict(agent_id, expected_version, held)
            outcome = self.responder.control_command(
                op,
                agent_id,
                current,
                actions=actions,
                actor=actor,
                reason=reason,
                now=self.clock(),
                incident_id=incident_id,
            )
            signed = await self._apply(agent_id, outcome, None)
        assert signed is not None
        return signed

    async def fleet_command(
        self,
        op: Literal["halt", "resume"],
        agents: Sequence[str],
        *,
        fleet: str,
        actor: str,
        reason: str,
        incident_id: str | None = None,
    ) -> tuple[list[ControlState], list[str]]:
        """Halt or resume every agent of ``agents`` (a fleet's); returns the new, signed states
        and the agents already in that state (left unchanged, not audited again).

        Each agent goes through the same per-agent path as :meth:`control_command` (under its
        lock, on top of its current state, one audit entry with ``actor``, ``reason`` and
        ``detail={"fleet": fleet}``); the agents are done concurrently, so the whole fleet takes
        about as long as one agent.
        """
        halt = op == "halt"

        async def one(agent: str) -> ControlState | None:
            async with self.locks.hold(agent):
                current = self.control(agent)
                if bool(current is not None and current.halted) == halt:
                    return None
                outcome = self.responder.control_command(
                    op,
                    agent,
                    current,
                    actions=[],
                    actor=actor,
                    reason=reason,
                    now=self.clock(),
                    incident_id=incident_id,
                    detail={"fleet": fleet},
                )
                return await self._apply(agent, outcome, None)

        unique = list(dict.fromkeys(agents))
        results = await asyncio.gather(*(one(agent) for agent in unique))
        changed = [state for state in results if state is not None]
        unchanged = [agent for agent, state in zip(unique, results, strict=True) if state is None]
        return changed, unchanged

    def known(self, agent_id: str) -> bool:
        """Whether the responder holds a control state or an incident for ``agent_id``."""
        key = agent_id.encode()
        return self.controls.get(key) is not None or self.incidents.get(key) is not None

    def known_agents(self) -> set[str]:
        """Every agent the responder holds a control state or an incident for."""
        keys = {k for k in list(self.controls.keys()) if k != _INDEX}
        keys |= {k for k in list(self.incidents.keys()) if k != _INDEX}
        return {k.decode(errors="replace") for k in keys}

    async def incident_command(
        self, op: Literal["ack", "resolve"], incident_id: str, *, actor: str, reason: str
    ) -> Incident:
        """A person acknowledges or resolves an incident; returns it."""
        agent = self.find(incident_id).incident.agent_id
        async with self.locks.hold(agent):
            state = self.find(incident_id)  # again, under the lock: it may have changed
            outcome = self.responder.incident_command(
                op, state, self.control(agent), actor=actor, reason=reason, now=self.clock()
            )
            await self._apply(agent, outcome, None)
        return (outcome.incident or state).incident

    # -- outputs ---------------------------------------------------------------------------
    async def _apply(self, agent: str, outcome: Outcome, fevent: Any | None) -> ControlState | None:
        """Sign and publish (and wait for the broker's ack), then store the state.

        Callers hold the agent's lock. Returns the signed control state, if it changed.
        """
        control = None
        key = agent.encode()
        if outcome.control is not None:
            control = self.signer.sign(outcome.control)
            await self._publish("control", [Outgoing(key, control.model_dump_json().encode())])
        notes = [Outgoing(key, n.model_dump_json().encode()) for n in outcome.notifications]
        audit = [Outgoing(key, e.model_dump_json().encode()) for e in outcome.audit]
        await self._publish("notifications", notes)
        await self._publish("audit", audit)
        for note in outcome.notifications:
            self.metrics.incident_notifications.labels(note.reason).inc()
        for entry in outcome.audit:
            self._count(entry)
        if self.history is not None and outcome.audit:
            self.history.record_audit(outcome.audit)
        if control is None and outcome.incident is None:
            return None
        token = _current_event.set(weakref.ref(fevent if fevent is not None else self._shim))  # type: ignore[arg-type]
        try:
            if control is not None:
                self.controls[agent.encode()] = control.model_dump_json().encode()
            if outcome.incident is not None:
                self.incidents[agent.encode()] = outcome.incident.model_dump_json().encode()
                self._reindex(agent, outcome.incident)
        finally:
            _current_event.reset(token)
        return control

    async def _publish(self, name: str, records: list[Outgoing]) -> None:
        """Produce to an internal topic until acknowledged; a broker error waits, never crashes.

        The control record goes first and on its own, so an agent sees its halt without waiting
        for the page and audit records.
        """
        if not records:
            return

        def failed(exc: BaseException, attempt: int) -> None:
            self.metrics.send_failures.labels(name).inc()
            if attempt == 1 or attempt & (attempt - 1) == 0:  # 1, 2, 4, 8 ...: not every retry
                log.error(
                    "responder: %s record not acknowledged (attempt %d; retrying, the responder "
                    "waits): %s",
                    name,
                    attempt,
                    escape(repr(exc), 300),
                )

        await send_all_acked(self.topics[name], records, on_failure=failed)

    def _reindex(self, agent: str, state: IncidentState) -> None:
        index = self._index()
        open_agents: list[str] = index["open"]
        recent: list[list[str]] = index["recent"]
        changed = False
        if state.is_open and agent not in open_agents:
            open_agents.append(agent)
            changed = True
        elif not state.is_open and agent in open_agents:
            open_agents.remove(agent)
            changed = True
        entry = [state.incident.incident_id, agent]
        if entry not in recent:
            recent.append(entry)
            del recent[:-MAX_RECENT]
            changed = True
        if changed:
            self.incidents[_INDEX] = orjson.dumps(index)

    def _count(self, entry: AuditEntry) -> None:
        transition = _TRANSITIONS.get(entry.action)
        if transition is not None:
            if entry.action == "incident_open" and entry.detail.get("reopened"):
                transition = "reopened"
            self.metrics.incident_transitions.labels(transition).inc()
        if entry.action == "suppressed":
            silenced = bool(entry.detail.get("silenced_by"))
            self.metrics.suppressed.labels("silenced" if silenced else "inhibited").inc()
        if entry.dry_run:
            self.metrics.dry_run_actions.labels(entry.action).inc()
        elif entry.action in ("halt", "resume", "revoke", "grant"):
            self.metrics.control_changes.labels(entry.action, entry.actor_kind).inc()


#: Audit actions that are incident transitions, and their ``reason`` label. Counted from the
#: audit, not from notifications: an incident that opens silenced, inhibited or below the
#: paging severity sends no page but has still opened.
_TRANSITIONS: Final = {
    "incident_open": "opened",
    "incident_escalate": "escalated",
    "incident_ack": "acknowledged",
    "incident_resolve": "resolved",
}


class TableLog:
    """The dispatcher's delivery log in a faust table (``"<dest>:<notification_id>"`` keys)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def delivered(self, key: str) -> bool:
        return self.table.get(key.encode()) is not None

    def record(self, key: str) -> None:
        self.table[key.encode()] = b"1"


class DeliveryStage:
    """Delivers outbox notifications through the dispatcher; audits each delivery.

    The last check before a page leaves: a ``trigger`` that ``mute`` says is silenced now (it
    was queued before the silence was made, e.g. behind a PagerDuty outage) is not delivered;
    a ``suppressed`` audit entry records it and ``on_muted`` tells the responder, so the
    incident's next unmuted anomaly pages again.
    """

    def __init__(
        self,
        *,
        dispatcher: Dispatcher,
        audit: Any,
        deadletters: DeadLetters,
        clock: Callable[[], float],
        on_audit: Callable[[list[AuditEntry]], None] | None = None,
        mute: Callable[[Notification], Mute] | None = None,
        on_muted: Callable[[Notification, Mute], Awaitable[None]] | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.audit = audit
        self.deadletters = deadletters
        self.clock = clock
        self.on_audit = on_audit
        self.mute = mute
        self.on_muted = on_muted

    async def process(self, fevent: Any) -> None:
        """Deliver one outbox message; an invalid one is dead-lettered."""
        message = fevent.message
        try:
            note = Notification.model_validate_json(message.value)
        except (ValidationError, ValueError, TypeError) as exc:
            await self.deadletters.send(message, "invalid_notification", _invalid(exc))
            return
        muted = self.mute(note) if self.mute is not None and note.event == "trigger" else Mute()
        if muted.muted:
            entries = [_suppressed_audit(note, muted, self.clock())]
            log.info(
                "notifier: %s not delivered: silenced by %s",
                note.notification_id,
                ", ".join(muted.silenced_by),
            )
            if self.on_muted is not None:
                await self.on_muted(note, muted)
        else:
            result = await self.dispatcher.deliver(note)
            entries = _delivery_audit(note, result, self.clock())
        key = note.agent_id.encode()
        records = [Outgoing(key, entry.model_dump_json().encode()) for entry in entries]

        def failed(exc: BaseException, attempt: int) -> None:
            if attempt & (attempt - 1) == 0:  # attempts 1, 2, 4, 8 ...
                log.error(
                    "notifier: delivery audit of %s not acknowledged (attempt %d; retrying): %s",
                    note.notification_id,
                    attempt,
                    escape(repr(exc), 300),
                )

        await send_all_acked(self.audit, records, on_failure=failed)
        if self.on_audit is not None and entries:
            self.on_audit(entries)


def _invalid(exc: Exception) -> str:
    """A validation error in one line: the first few field errors."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False)[:5]
        )
    return f"{type(exc).__name__}: {exc}"


def _suppressed_audit(note: Notification, muted: Mute, now: float) -> AuditEntry:
    return AuditEntry(
        audit_id=audit_id(note.notification_id, "suppressed"),
        ts=datetime.fromtimestamp(now, UTC),
        actor="agentwatch",
        actor_kind="system",
        action="suppressed",
        agent_id=note.agent_id,
        incident_id=note.incident_id,
        reason=f"page not delivered ({note.reason}): {note.title}"[:1024],
        anomaly_ids=[a.anomaly_id for a in note.top_anomalies],
        detail={
            "notification_id": note.notification_id,
            "silenced_by": list(muted.silenced_by),
            "inhibited_by": list(muted.inhibited_by),
        },
    )


def _delivery_audit(note: Notification, result: DeliveryResult, now: float) -> list[AuditEntry]:
    def entry(
        dest: str, action: Literal["delivered", "delivery_failed"], reason: str
    ) -> AuditEntry:
        return AuditEntry(
            audit_id=audit_id(note.notification_id, dest, action),
            ts=datetime.fromtimestamp(now, UTC),
            actor="agentwatch",
            actor_kind="system",
            action=action,
            agent_id=note.agent_id,
            incident_id=note.incident_id,
            reason=reason[:1024],
            detail={"notification_id": note.notification_id, "notifier": dest},
        )

    out = [entry(d, "delivered", f"{note.event} ({note.reason}) via {d}") for d in result.sent]
    for failed in result.failed:
        log.error(
            "notification %s rejected by %s (not retried): %s",
            escape(note.notification_id),
            escape(failed.destination),
            escape(failed.error or "", 500),
        )
        out.append(entry(failed.destination, "delivery_failed", failed.error or "rejected"))
    return out
