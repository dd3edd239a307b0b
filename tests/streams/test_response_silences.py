"""ResponseStage with silences and history over in-memory tables (unit tests)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import orjson

from agentwatch.alerting.dispatch import DeliveryResult
from agentwatch.alerting.incidents import IncidentBook, IncidentPolicy
from agentwatch.alerting.responder import Responder
from agentwatch.alerting.silences import Silence, SilenceRequest
from agentwatch.detectors.rules import load_rules
from agentwatch.schemas import Anomaly, Notification
from agentwatch.schemas.signing import ControlSigner
from agentwatch.streams.deadletter import DeadLetters
from agentwatch.streams.metrics import WorkerMetrics
from agentwatch.streams.response import DeliveryStage, ResponseStage
from tests.streams.test_response_stage import NOW, FakeEvent, SlowTopic


class ManualClock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def make_stage(clock: ManualClock) -> ResponseStage:
    rng = random.Random(1)
    metrics = WorkerMetrics()
    topics = {n: SlowTopic(rng) for n in ("control", "audit", "notifications", "deadletter")}
    return ResponseStage(
        responder=Responder(load_rules(), IncidentBook(IncidentPolicy(group_wait=10))),
        controls={},
        incidents={},
        topics=topics,
        anomalies_topic="t.anomalies",
        owns=lambda: True,
        metrics=metrics,
        signer=ControlSigner.generate(),
        deadletters=DeadLetters(topic=topics["deadletter"], metrics=metrics, max_bytes=65536),
        history=({}, {}),
        silences={},
        clock=clock,
    )


def failing(n: int, clock: ManualClock) -> FakeEvent:
    anomaly = Anomaly(
        anomaly_id=f"an-{n}",
        ts=datetime.fromtimestamp(clock.now, UTC),
        agent_id="a1",
        fleet="support",
        detector="failure_rate",
        kind="errors",
        severity="error",
        score=9,
        threshold=5,
        observed=0.5,
        baseline=0.01,
        summary="failing",
        rule="FailureRate",
    )
    return FakeEvent(anomaly.model_dump_json().encode(), n)


async def silence_a1(stage: ResponseStage, clock: ManualClock, comment: str) -> Silence:
    """Alice silences agent ``a1`` for an hour from now."""
    request = SilenceRequest.model_validate(
        {
            "matchers": ['agent="a1"'],
            "ends_at": datetime.fromtimestamp(clock.now, UTC) + timedelta(hours=1),
            "created_by": "alice",
            "comment": comment,
        }
    )
    return await stage.create_silence(request)


def sent(stage: ResponseStage, topic: str) -> list[dict[str, object]]:
    return [orjson.loads(v) for _, v in stage.topics[topic].sent]


async def test_a_silence_made_after_the_anomaly_mutes_its_first_page_not_the_next() -> None:
    clock = ManualClock()
    stage = make_stage(clock)
    await stage.process_anomalies([failing(1, clock)])
    clock.now += 1
    silence = await silence_a1(stage, clock, "known")
    clock.now += 10
    await stage.tick()
    assert sent(stage, "notifications") == []
    suppressed = [a for a in sent(stage, "audit") if a["action"] == "suppressed"]
    assert len(suppressed) == 1 and suppressed[0]["detail"]["silenced_by"] == [silence.silence_id]
    state = stage.incident_state("a1")
    assert state is not None and state.muted_by == [silence.silence_id]

    clock.now += 1
    await stage.process_anomalies([failing(2, clock)])  # silenced too: recorded, muted
    await stage.expire_silence(silence.silence_id, by="alice")
    clock.now += 1
    await stage.process_anomalies([failing(3, clock)])
    await stage.tick()
    notes = sent(stage, "notifications")
    assert [(n["event"], n["reason"]) for n in notes] == [("trigger", "opened")]
    history = stage.history
    assert history is not None
    assert [(a["anomaly_id"], a["silenced_by"]) for a in history.anomalies("a1")] == [
        ("an-3", []),
        ("an-2", [silence.silence_id]),
        ("an-1", []),
    ]
    actions = [a["action"] for a in history.audit()]
    assert actions.count("silence_create") == 1 and actions.count("silence_expire") == 1
    assert (
        stage.metrics.registry.get_sample_value(
            "agentwatch_suppressed_total", {"reason": "silenced"}
        )
        == 2
    )  # the due page and an-2


class RecordingDispatcher:
    """Stands in for the dispatcher: records what it was asked to deliver."""

    def __init__(self) -> None:
        self.delivered: list[str] = []

    async def deliver(self, note: Notification) -> DeliveryResult:
        self.delivered.append(note.notification_id)
        return DeliveryResult(note.notification_id)


async def test_a_page_queued_before_a_silence_is_not_delivered_and_the_next_one_is() -> None:
    clock = ManualClock()
    stage = make_stage(clock)
    dispatcher = RecordingDispatcher()
    audit = stage.topics["audit"]
    history = stage.history
    assert history is not None
    delivery = DeliveryStage(
        dispatcher=dispatcher,  # type: ignore[arg-type]
        audit=audit,
        deadletters=stage.deadletters,
        clock=clock,
        on_audit=history.record_audit,
        mute=stage.mute_page,
        on_muted=stage.mark_muted,
    )
    await stage.process_anomalies([failing(1, clock)])
    clock.now += 10
    await stage.tick()
    [queued] = [v for _, v in stage.topics["notifications"].sent]  # in the outbox
    silence = await stage.create_silence(
        SilenceRequest.model_validate(
            {
                "matchers": ['fleet="support"', 'rule="FailureRate"'],
                "ends_at": datetime.fromtimestamp(clock.now, UTC) + timedelta(hours=1),
                "created_by": "alice",
                "comment": "outage known",
            }
        )
    )
    await delivery.process(FakeEvent(queued, 0))
    assert dispatcher.delivered == []
    [entry] = [a for a in history.audit("a1") if a["action"] == "suppressed"]
    assert entry["detail"]["silenced_by"] == [silence.silence_id]
    state = stage.incident_state("a1")
    assert state is not None and state.muted_by == [silence.silence_id]

    await stage.expire_silence(silence.silence_id, by="alice")
    clock.now += 1
    await stage.process_anomalies([failing(2, clock)])
    await stage.tick()
    notes = [v for _, v in stage.topics["notifications"].sent]
    assert len(notes) == 2
    await delivery.process(FakeEvent(notes[1], 1))
    second = Notification.model_validate_json(notes[1])
    assert dispatcher.delivered == [second.notification_id] and second.event == "trigger"


async def test_an_incident_whose_page_was_silenced_counts_as_a_transition_not_a_page() -> None:
    """``agentwatch_incident_transitions_total`` counts state changes, paged or not (it used
    to count notifications, so an incident whose page was muted was missing from ``opened``)."""
    clock = ManualClock()
    stage = make_stage(clock)
    await stage.process_anomalies([failing(1, clock)])  # opens; its page waits (group_wait)
    await silence_a1(stage, clock, "maintenance")
    clock.now += 11
    await stage.tick()
    assert sent(stage, "notifications") == []
    state = stage.incident_state("a1")
    assert state is not None
    await stage.incident_command(
        "resolve", state.incident.incident_id, actor="alice", reason="fixed"
    )

    def value(name: str, reason: str) -> float:
        got = stage.metrics.registry.get_sample_value(name, {"reason": reason})
        return 0.0 if got is None else got

    assert value("agentwatch_incident_transitions_total", "opened") == 1
    assert value("agentwatch_incident_transitions_total", "resolved") == 1
    assert value("agentwatch_incident_notifications_total", "opened") == 0
