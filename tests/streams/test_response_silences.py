"""ResponseStage with silences and history over in-memory tables (unit tests)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import orjson

from agentwatch.alerting.incidents import IncidentBook, IncidentPolicy
from agentwatch.alerting.responder import Responder
from agentwatch.alerting.silences import SilenceRequest
from agentwatch.detectors.rules import load_rules
from agentwatch.schemas import Anomaly
from agentwatch.schemas.signing import ControlSigner
from agentwatch.streams.deadletter import DeadLetters
from agentwatch.streams.metrics import WorkerMetrics
from agentwatch.streams.response import ResponseStage
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


def sent(stage: ResponseStage, topic: str) -> list[dict[str, object]]:
    return [orjson.loads(v) for _, v in stage.topics[topic].sent]


async def test_a_silence_made_after_the_anomaly_mutes_its_first_page_not_the_next() -> None:
    clock = ManualClock()
    stage = make_stage(clock)
    await stage.process_anomalies([failing(1, clock)])
    clock.now += 1
    silence = await stage.create_silence(
        SilenceRequest.model_validate(
            {
                "matchers": ['agent="a1"'],
                "ends_at": datetime.fromtimestamp(clock.now, UTC) + timedelta(hours=1),
                "created_by": "alice",
                "comment": "known",
            }
        )
    )
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
