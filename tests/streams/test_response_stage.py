"""ResponseStage with in-memory tables and topics whose acks take a while (unit tests).

The broker round trip between reading an agent's state and storing the new one is where
concurrent changes used to overwrite each other; the fake topic acknowledges each send after a
random delay to open that window wide.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from agentwatch.alerting.incidents import IncidentBook, IncidentPolicy
from agentwatch.alerting.responder import Responder
from agentwatch.detectors.rules import load_rules
from agentwatch.schemas import Anomaly, ControlState
from agentwatch.schemas.signing import ControlSigner, ControlVerifier
from agentwatch.streams.deadletter import DeadLetters
from agentwatch.streams.metrics import WorkerMetrics
from agentwatch.streams.response import ResponseStage, VersionConflict

NOW = 1_767_225_600.0


class SlowTopic:
    """A topic whose every send is acknowledged 0-3 ms later, in random order."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.sent: list[tuple[bytes, bytes]] = []

    async def send(self, *, key: bytes, value: bytes, **_: Any) -> asyncio.Future[None]:
        self.sent.append((key, value))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(self.rng.random() / 300, future.set_result, None)
        await asyncio.sleep(0)
        return future


class FlakyTopic(SlowTopic):
    """Every other send fails at the broker (its future raises), like a leader change."""

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.attempts = 0

    async def send(self, *, key: bytes, value: bytes, **_: Any) -> asyncio.Future[None]:
        self.attempts += 1
        if self.attempts % 2:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            future.set_exception(RuntimeError("NotLeaderForPartitionError"))
            return future
        return await super().send(key=key, value=value)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        self.now += 0.0001  # 0.1 ms per reading: many changes share a millisecond
        return self.now


class Message:
    def __init__(self, value: bytes, offset: int) -> None:
        self.value, self.key, self.offset = value, None, offset
        self.topic, self.partition = "t.anomalies", 0


class FakeEvent:
    def __init__(self, value: bytes, offset: int) -> None:
        self.message = Message(value, offset)


def make_stage(signer: ControlSigner, seed: int = 1, topic: Any = None) -> ResponseStage:
    rng = random.Random(seed)
    rules = load_rules()
    metrics = WorkerMetrics()
    topics = {
        n: (topic or SlowTopic)(rng) for n in ("control", "audit", "notifications", "deadletter")
    }
    return ResponseStage(
        responder=Responder(rules, IncidentBook(IncidentPolicy())),
        controls={},
        incidents={},
        topics=topics,
        anomalies_topic="t.anomalies",
        owns=lambda: True,
        metrics=metrics,
        signer=signer,
        deadletters=DeadLetters(topic=topics["deadletter"], metrics=metrics, max_bytes=65536),
        clock=Clock(),
    )


def published(stage: ResponseStage, agent: str = "a1") -> list[ControlState]:
    topic = stage.topics["control"]
    return [ControlState.model_validate_json(v) for k, v in topic.sent if k == agent.encode()]


class NoLocks:
    """What the stage did before: no serialization at all."""

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        yield


async def test_twenty_concurrent_revokes_all_land() -> None:
    signer = ControlSigner.generate()
    stage = make_stage(signer)
    tools = [f"tool_{i:02d}" for i in range(20)]
    answers = await asyncio.gather(
        *(stage.control_command("revoke", "a1", actions=[t], actor="p", reason=t) for t in tools)
    )
    stored = stage.control("a1")
    assert stored is not None and stored.revoked == tools
    versions = [a.version for a in answers]
    assert len(set(versions)) == 20
    records = published(stage)
    assert [r.version for r in records] == sorted(versions)  # published in version order
    assert stored.version == max(versions) and records[-1] == stored
    verifier = ControlVerifier([signer.public_key])
    for record in records:
        verifier.verify(record)
    # each record is the previous one plus its tool
    for before, after in itertools.pairwise(records):
        assert set(before.revoked) < set(after.revoked)
    assert len(stage.locks) == 0


async def test_a_broker_refusing_sends_delays_the_responder_and_loses_nothing() -> None:
    """Half of all produce attempts fail: every change still lands once, in order."""
    signer = ControlSigner.generate()
    stage = make_stage(signer, topic=FlakyTopic)
    tools = [f"tool_{i:02d}" for i in range(5)]
    for tool in tools:
        await stage.control_command("revoke", "a1", actions=[tool], actor="p", reason=tool)
    stored = stage.control("a1")
    assert stored is not None and stored.revoked == tools
    records = published(stage)  # acknowledged records only: each change exactly once
    assert [r.revoked[-1] for r in records] == tools
    assert [r.version for r in records] == sorted({r.version for r in records})
    assert records[-1] == stored
    assert stage.metrics.send_failures.labels("control")._value.get() >= 2
    assert stage.metrics.send_failures.labels("audit")._value.get() >= 2


async def test_without_the_per_agent_lock_the_same_revokes_are_lost() -> None:
    stage = make_stage(ControlSigner.generate())
    stage.locks = NoLocks()  # type: ignore[assignment]
    await asyncio.gather(
        *(
            stage.control_command("revoke", "a1", actions=[f"t{i}"], actor="p", reason="r")
            for i in range(20)
        )
    )
    stored = stage.control("a1")
    assert stored is not None and len(stored.revoked) < 20  # the defect the lock removes


async def test_two_hundred_mixed_changes_equal_their_serial_application() -> None:
    stage = make_stage(ControlSigner.generate(), seed=3)
    rng = random.Random(5)
    ops = [
        (rng.choice(["halt", "resume", "revoke", "grant"]), [f"t{rng.randrange(5)}"])
        for _ in range(200)
    ]
    answers = await asyncio.gather(
        *(
            stage.control_command(op, "a1", actions=acts, actor="p", reason=str(i))  # type: ignore[arg-type]
            for i, (op, acts) in enumerate(ops)
        )
    )
    ordered = sorted(answers, key=lambda a: a.version)
    assert len({a.version for a in answers}) == 200
    halted, revoked = False, set()
    for answer in ordered:  # apply the requests serially, in the order versions were assigned
        op, acts = ops[int(answer.reason)]
        if op in ("halt", "resume"):
            halted = op == "halt"
        elif op == "revoke":
            revoked |= set(acts)
        else:
            revoked -= set(acts)
        assert (answer.halted, set(answer.revoked)) == (halted, revoked)
    stored = stage.control("a1")
    assert stored is not None and stored == ordered[-1]
    assert (stored.halted, set(stored.revoked)) == (halted, revoked)
    assert [r.version for r in published(stage)] == [a.version for a in ordered]
    assert len(stage.topics["audit"].sent) == 200


async def test_if_match_is_a_compare_and_set() -> None:
    stage = make_stage(ControlSigner.generate())
    with pytest.raises(VersionConflict) as raised:
        await stage.control_command(
            "halt", "a1", actions=[], actor="p", reason="r", expected_version=5
        )
    assert raised.value.current == 0 and published(stage) == []
    first = await stage.control_command(
        "halt", "a1", actions=[], actor="p", reason="r", expected_version=0
    )
    # two racing resumes with the same expectation: exactly one applies
    results = await asyncio.gather(
        *(
            stage.control_command(
                "resume",
                "a1",
                actions=[],
                actor=f"p{i}",
                reason="r",
                expected_version=first.version,
            )
            for i in range(2)
        ),
        return_exceptions=True,
    )
    applied = [r for r in results if isinstance(r, ControlState)]
    conflicts = [r for r in results if isinstance(r, VersionConflict)]
    assert len(applied) == 1 and len(conflicts) == 1
    assert conflicts[0].current == applied[0].version and conflicts[0].expected == first.version
    assert stage.metrics.registry.get_sample_value("agentwatch_control_conflicts_total") == 2
    assert len(published(stage)) == 2


async def test_rule_responses_and_people_interleave_without_losing_either() -> None:
    stage = make_stage(ControlSigner.generate())

    def anomaly(i: int) -> bytes:
        return (
            Anomaly(
                anomaly_id=f"an-{i}",
                ts=datetime.fromtimestamp(NOW, UTC),
                agent_id="a1",
                detector="policy",
                kind="unapproved",
                severity="critical",
                score=1.0,
                threshold=0.5,
                observed=1.0,
                baseline=0.0,
                summary="drop_table without approval",
                rule="UnapprovedHighRiskAction",
                actions=[f"rule_{i}"],
            )
            .model_dump_json()
            .encode()
        )

    rule = stage.responder.rules.by_alert("UnapprovedHighRiskAction")
    assert rule.action.type == "revoke" and not rule.action.actions
    people = [
        stage.control_command("revoke", "a1", actions=[f"person_{i}"], actor="p", reason="r")
        for i in range(10)
    ]
    rules = [stage.process_anomalies([FakeEvent(anomaly(i), i)]) for i in range(10)]
    await asyncio.gather(*people, *rules)
    stored = stage.control("a1")
    assert stored is not None
    assert set(stored.revoked) == {f"person_{i}" for i in range(10)} | {
        f"rule_{i}" for i in range(10)
    }
    versions = [r.version for r in published(stage)]
    assert versions == sorted(set(versions))


async def test_resign_publishes_foreign_and_unsigned_states_once() -> None:
    old, new = ControlSigner.generate(), ControlSigner.generate()
    stage = make_stage(new)
    base = ControlState(
        agent_id="x",
        halted=True,
        updated_at=datetime.fromtimestamp(NOW - 60, UTC),
        updated_by="alice",
        version=7,
    )
    stage.controls[b"unsigned"] = base.model_copy(update={"agent_id": "unsigned"}).model_dump_json()
    stage.controls[b"old"] = old.sign(base.model_copy(update={"agent_id": "old"})).model_dump_json()
    ours = new.sign(base.model_copy(update={"agent_id": "ours"}))
    stage.controls[b"ours"] = ours.model_dump_json()
    await stage.tick()
    await stage.tick()  # once per ownership
    sent = {
        k.decode(): ControlState.model_validate_json(v) for k, v in stage.topics["control"].sent
    }
    assert set(sent) == {"unsigned", "old"}
    verifier = ControlVerifier([new.public_key])
    for agent, record in sent.items():
        verifier.verify(record)
        assert record.version > 7 and record.halted and record.updated_by == "alice"
        assert stage.control(agent) == record
    assert stage.control("ours") == ours
    assert stage.metrics.registry.get_sample_value("agentwatch_control_resigned_total") == 2
