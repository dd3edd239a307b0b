"""The agent SDK: events out, halt/revoke enforced locally, never blocking or crashing the agent.

Integration tests run against the embedded Tansu broker (``settings`` fixture). Tansu accepts
``cleanup.policy=compact`` on topic creation (``describe_configs`` returns it), so the control
topic is created compacted as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import pickle
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from agentwatch.config import Settings
from agentwatch.schemas import ActionEvent, ControlState, decode_event
from agentwatch.schemas.signing import (
    ControlSigner,
    ControlVerifier,
    ensure_key_pair,
    signer_from_settings,
)
from agentwatch.sdk import (
    AgentHalted,
    ControlError,
    ControlUnavailable,
    Monitor,
    PermissionRevoked,
    SyncMonitor,
    context,
)
from agentwatch.streams.broker import free_port

# -- helpers ----------------------------------------------------------------------------------


async def create_topics(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        for topic in (
            NewTopic(settings.topic("actions"), settings.topic_partitions, 1),
            NewTopic(
                settings.topic("control"),
                settings.topic_partitions,
                1,
                topic_configs={"cleanup.policy": "compact"},
            ),
        ):
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([topic])
    finally:
        await admin.close()


async def write_control(
    settings: Settings,
    agent_id: str,
    value: ControlState | bytes | None,
    key: str | None = None,
    signer: ControlSigner | None = None,
) -> float:
    """Write one control message; return the ``perf_counter`` taken just before producing.

    A ``ControlState`` is signed first, as a worker would, with ``signer`` (default: the
    settings' signing key, which ``Monitor.from_settings`` agents accept).
    """
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        raw = value
        if isinstance(value, ControlState):
            signer = signer or signer_from_settings(settings)
            raw = signer.sign(value).model_dump_json().encode()
        started = time.perf_counter()
        await producer.send_and_wait(settings.topic("control"), raw, key=(key or agent_id).encode())
        return started
    finally:
        await producer.stop()


def control(agent_id: str, version: int, **fields: Any) -> ControlState:
    values: dict[str, Any] = {"updated_at": datetime.now(UTC), **fields}
    return ControlState(agent_id=agent_id, updated_by="test", version=version, **values)


async def read_actions(settings: Settings, count: int, timeout: float = 8.0) -> list[ActionEvent]:
    """Read ``<prefix>.actions`` from the beginning until ``count`` events arrived."""
    consumer = AIOKafkaConsumer(
        settings.topic("actions"),
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    events: list[ActionEvent] = []
    keys: set[bytes] = set()
    try:
        deadline = time.monotonic() + timeout
        while len(events) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    keys.add(record.key)
                    events.append(decode_event(record.value))
    finally:
        await consumer.stop()
    assert keys <= {e.agent_id.encode() for e in events}, "key must be the agent_id"
    return sorted(events, key=lambda e: e.ts)


async def poll_until(call: Callable[[], Any], expected: type[BaseException], limit: float) -> float:
    """Call ``call`` (sync or async) every 5 ms until it raises ``expected``; return seconds."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        try:
            result = call()
            if inspect.isawaitable(result):
                await result
        except expected:
            return time.perf_counter() - started
        await asyncio.sleep(0.005)
    raise AssertionError(f"{expected.__name__} not raised within {limit}s")


def agent() -> str:
    return f"agent-{uuid.uuid4().hex[:6]}"


# -- 1. events of tool calls ------------------------------------------------------------------


@pytest.mark.integration
async def test_tool_emits_ok_and_error_events(settings: Settings) -> None:
    await create_topics(settings)
    agent_id = agent()
    async with Monitor.from_settings(agent_id, "finance", settings=settings) as monitor:

        @monitor.tool(risk="high", target_arg="path")
        async def write_file(path: str, data: str) -> int:
            await asyncio.sleep(0.01)
            return len(data)

        @monitor.tool(name="db.query", risk="low")
        def query(sql: str) -> None:
            raise ValueError("relation 'users' does not exist " + "x" * 5000)

        with monitor.context(session_id="conv-1", approved_by="alice"):
            assert await write_file("/tmp/report.csv", data="abc") == 3
        with pytest.raises(ValueError, match="relation") as raised:
            query("select 1")
        assert raised.value.__traceback__ is not None
        assert await monitor.flush(5.0)
        assert monitor.stats["sent"] == 2

    ok, error = await read_actions(settings, 2)
    assert (ok.agent_id, ok.fleet, ok.action, ok.kind) == (
        agent_id,
        "finance",
        "write_file",
        "tool",
    )
    assert ok.status == "ok" and ok.error is None
    assert ok.risk == "high" and ok.target == "/tmp/report.csv"
    assert (ok.session_id, ok.approved_by) == ("conv-1", "alice")
    assert ok.latency_ms >= 9.0  # the tool slept 10 ms
    assert (error.action, error.status, error.risk) == ("db.query", "error", "low")
    assert error.error is not None and error.error.startswith("ValueError: relation 'users'")
    assert len(error.error) <= 1024
    assert error.latency_ms > 0
    assert error.session_id is None and error.approved_by is None  # context ended
    assert ok.event_id != error.event_id


# -- 2. halt and resume -----------------------------------------------------------------------


@pytest.mark.integration
async def test_halt_stops_the_next_tool_call_within_a_second(settings: Settings) -> None:
    await create_topics(settings)
    agent_id = agent()
    runs = 0
    async with Monitor.from_settings(agent_id, settings=settings) as monitor:

        @monitor.tool(risk="critical")
        async def transfer(amount: int) -> int:
            nonlocal runs
            runs += 1
            return amount

        assert await transfer(1) == 1
        halt = control(agent_id, 1, halted=True, reason="cost 40x baseline", incident_id="inc-9")
        produced_at = await write_control(settings, agent_id, halt)
        with pytest.raises(AgentHalted):  # the polling loop is the measurement
            while True:
                before = runs
                await transfer(2)
                assert time.perf_counter() - produced_at < 2.0, "halt not enforced"
                await asyncio.sleep(0.005)
        latency = time.perf_counter() - produced_at
        print(f"halt-to-raise latency: {latency * 1000:.1f} ms")
        assert latency < 1.0
        assert runs == before, "the tool body ran although the agent is halted"

        with pytest.raises(AgentHalted) as raised:
            await transfer(3)
        err = raised.value
        assert isinstance(err, ControlError) and isinstance(err, RuntimeError)
        assert (err.agent_id, err.reason, err.incident_id) == (
            agent_id,
            "cost 40x baseline",
            "inc-9",
        )
        assert f"agentwatch agents resume {agent_id}" in str(err)
        assert runs == before
        assert monitor.state is not None and monitor.state.halted

        resume = control(agent_id, 2, halted=False, reason="false alarm")
        await write_control(settings, agent_id, resume)
        deadline = time.monotonic() + 1.0
        while monitor.state is None or monitor.state.halted:
            assert time.monotonic() < deadline, "resume not applied within 1 s"
            await asyncio.sleep(0.005)
        assert await transfer(4) == 4
        assert await monitor.flush(5.0)

    events = await read_actions(settings, monitor.stats["sent"])
    statuses = [(e.status, e.action) for e in events]
    assert ("denied", "transfer") in statuses
    denied = next(e for e in events if e.status == "denied")
    assert denied.risk == "critical"
    assert denied.error is not None and "AgentHalted" in denied.error
    assert denied.attributes.get("incident_id") == "inc-9"
    assert statuses[-1] == ("ok", "transfer")  # after the resume


@pytest.mark.integration
async def test_agent_halted_before_start_cannot_run_its_first_tool(settings: Settings) -> None:
    await create_topics(settings)
    agent_id = agent()
    # Some history: an older state of this agent, another agent, then the halt.
    await write_control(settings, agent_id, control(agent_id, 1, revoked=["x"]))
    await write_control(settings, "other", control("other", 5, halted=True), key="other")
    await write_control(settings, agent_id, control(agent_id, 2, halted=True, reason="leak"))
    ran = False
    async with Monitor.from_settings(agent_id, settings=settings) as monitor:
        assert monitor.control_ready

        @monitor.tool
        def search(q: str) -> str:
            nonlocal ran
            ran = True
            return q

        with pytest.raises(AgentHalted, match="leak"):
            search("first call")
    assert not ran


# -- 3. revoked permissions -------------------------------------------------------------------


@pytest.mark.integration
async def test_revoked_action_raises_while_others_run(settings: Settings) -> None:
    await create_topics(settings)
    agent_id = agent()
    sent_mail: list[str] = []
    async with Monitor.from_settings(agent_id, settings=settings) as monitor:

        @monitor.tool(risk="high", target_arg="to")
        def send_email(to: str, body: str) -> None:
            sent_mail.append(to)

        @monitor.tool
        async def search(q: str) -> str:
            return q.upper()

        send_email("a@example.com", "hi")
        state = control(agent_id, 1, revoked=["send_email"], reason="spam burst")
        await write_control(settings, agent_id, state)
        elapsed = await poll_until(lambda: send_email("b@example.com", "hi"), ControlError, 1.0)
        assert elapsed < 1.0
        mailed = list(sent_mail)
        with pytest.raises(PermissionRevoked) as raised:
            send_email("c@example.com", body="hi")
        assert (raised.value.action, raised.value.reason) == ("send_email", "spam burst")
        assert f"agentwatch agents grant {agent_id} send_email" in str(raised.value)
        assert await search("still allowed") == "STILL ALLOWED"
        monitor.check("search")  # the non-decorator path agrees
        with pytest.raises(PermissionRevoked):
            monitor.check("send_email")
        assert not monitor.allows("send_email") and monitor.allows("search")
        assert sent_mail == mailed and "c@example.com" not in sent_mail
        assert await monitor.flush(5.0)

    events = await read_actions(settings, monitor.stats["sent"])
    denied = [e for e in events if e.status == "denied"]
    assert denied and all(e.action == "send_email" for e in denied)
    assert "c@example.com" in {e.target for e in denied}
    assert any(e.action == "search" and e.status == "ok" for e in events)


@pytest.mark.integration
async def test_control_ignores_other_agents_stale_versions_and_garbage(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    await create_topics(settings)
    agent_id = agent()
    async with Monitor.from_settings(agent_id, settings=settings) as monitor:
        await write_control(settings, agent_id, control(agent_id, 5, revoked=["rm"]))
        await poll_until(lambda: monitor.check("rm"), PermissionRevoked, 1.0)

        with caplog.at_level(logging.WARNING, logger="agentwatch.sdk"):
            await write_control(settings, agent_id, b"{not json")
            await write_control(settings, agent_id, control("someone-else", 9, halted=True))
            await write_control(settings, "peer", control("peer", 9, halted=True), key="peer")
            await write_control(settings, agent_id, control(agent_id, 4, halted=True))  # stale
            await write_control(settings, agent_id, control(agent_id, 6, revoked=["mv"]))
            deadline = time.monotonic() + 1.0
            while monitor.state is None or monitor.state.version != 6:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.005)
        assert monitor.allows("rm") and not monitor.allows("mv")
        assert not monitor.state.halted
        assert monitor.stats["control_errors"] == 2
        malformed = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
        assert len(malformed) == 2
        assert all(settings.topic("control") in m and "@" in m for m in malformed)

        # a tombstone cannot be signed: an agent that verifies refuses it (restrictions stay)
        await write_control(settings, agent_id, None)
        deadline = time.monotonic() + 2.0
        while monitor.stats["control_rejected_unsigned"] == 0:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.005)
        assert monitor.state is not None and not monitor.allows("mv")


def test_unverified_monitor_obeys_a_tombstone() -> None:
    agent_id = agent()
    monitor = Monitor(agent_id)  # no public key: records are obeyed unverified
    raw = control(agent_id, 3, revoked=["mv"]).model_dump_json().encode()
    monitor.control.apply_record("t.control", 0, 0, agent_id.encode(), raw)
    assert not monitor.allows("mv")
    monitor.control.apply_record("t.control", 0, 1, agent_id.encode(), None)
    assert monitor.state is None and monitor.allows("mv")
    # the version high-water mark survives the tombstone: an older record is a replay
    old = control(agent_id, 2, halted=True).model_dump_json().encode()
    monitor.control.apply_record("t.control", 0, 2, agent_id.encode(), old)
    assert monitor.allows("anything")


# -- 3b. authenticated control ----------------------------------------------------------------

SIGNER = ControlSigner.generate()
STRANGER = ControlSigner.generate()


def verified_monitor(agent_id: str) -> Monitor:
    return Monitor(agent_id, control_verifier=ControlVerifier([SIGNER.public_key]))


def now_version() -> int:
    return int(time.time() * 1000)


class Feed:
    """Hands records to a monitor as its control consumer would (offsets counting up)."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.offset = 0

    def __call__(self, record: ControlState | bytes | None, signer: ControlSigner | None) -> None:
        raw = record
        if isinstance(record, ControlState):
            raw = (signer.sign(record) if signer else record).model_dump_json().encode()
        self.monitor.control.apply_record(
            "t.control", 0, self.offset, self.monitor.agent_id.encode(), raw
        )
        self.offset += 1


def test_verified_monitor_obeys_only_records_its_key_signed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    agent_id = agent()
    monitor = verified_monitor(agent_id)
    feed = Feed(monitor)
    halt = control(agent_id, now_version(), halted=True)
    with caplog.at_level(logging.WARNING, logger="agentwatch.sdk"):
        feed(halt, None)  # unsigned
        feed(halt, None)
        feed(halt, STRANGER)  # another key
        tampered = SIGNER.sign(control(agent_id, now_version(), revoked=["rm"]))
        tampered = tampered.model_copy(update={"halted": True})
        feed(tampered.model_dump_json().encode(), None)  # a field changed after signing
        forged = STRANGER.sign(halt).model_copy(update={"key_id": SIGNER.key_id})
        feed(forged.model_dump_json().encode(), None)  # another key's signature, our key id
        feed(None, None)  # a tombstone cannot be signed
    assert monitor.state is None and monitor.allows("rm") and monitor.allows("x")
    stats = monitor.stats
    assert stats["control_rejected_unsigned"] == 3
    assert stats["control_rejected_unknown_key"] == 1
    assert stats["control_rejected_bad_signature"] == 2
    assert stats["control_rejected"] == 6 and stats["control_errors"] == 0
    refusals = [
        r.getMessage() for r in caplog.records if "refused control record" in r.getMessage()
    ]
    assert len(refusals) == 3  # once per reason
    assert any("unknown_key" in m and STRANGER.key_id in m for m in refusals)

    feed(halt, SIGNER)  # the real one
    assert monitor.state is not None and monitor.state.halted
    with pytest.raises(AgentHalted):
        monitor.check("x")


def test_a_far_future_version_cannot_blind_the_kill_switch() -> None:
    agent_id = agent()
    for signer in (STRANGER, SIGNER, None):  # forged, authentic-but-implausible, unsigned
        monitor = verified_monitor(agent_id)
        feed = Feed(monitor)
        feed(control(agent_id, 2**62, revoked=["nothing"]), signer)
        feed(control(agent_id, now_version() + 3600 * 1000), signer)  # an hour ahead
        assert monitor.state is None
        feed(control(agent_id, now_version(), halted=True, reason="real"), SIGNER)
        assert monitor.state is not None and monitor.state.reason == "real"
        with pytest.raises(AgentHalted):
            monitor.check("x")
    assert monitor.stats["control_rejected_unsigned"] == 2

    ahead = verified_monitor(agent_id)
    feed = Feed(ahead)
    feed(control(agent_id, 2**62), SIGNER)
    future = datetime.fromtimestamp(time.time() + 7200, UTC)
    feed(control(agent_id, now_version(), updated_at=future, halted=True), SIGNER)
    assert ahead.stats["control_rejected_implausible"] == 2 and ahead.state is None
    # within the allowed skew (a worker clock a little ahead) is fine
    feed(control(agent_id, now_version() + 60_000, halted=True), SIGNER)
    assert ahead.state is not None and ahead.state.halted


def test_unverified_monitor_refuses_implausible_versions_too() -> None:
    agent_id = agent()
    monitor = Monitor(agent_id, max_clock_skew_s=10)
    feed = Feed(monitor)
    feed(control(agent_id, 2**62), None)
    feed(control(agent_id, now_version() + 60_000), None)
    assert monitor.stats["control_rejected_implausible"] == 2 and monitor.state is None
    feed(control(agent_id, 5, halted=True), None)  # old-style small versions still apply
    assert monitor.state is not None and monitor.state.halted


def test_replayed_older_signed_record_cannot_undo_a_halt() -> None:
    agent_id = agent()
    monitor = verified_monitor(agent_id)
    feed = Feed(monitor)
    v = now_version()
    resume = SIGNER.sign(control(agent_id, v - 10, halted=False))
    feed(resume.model_dump_json().encode(), None)
    feed(control(agent_id, v, halted=True), SIGNER)
    feed(resume.model_dump_json().encode(), None)  # an attacker replays the older record
    assert monitor.state is not None and monitor.state.halted and monitor.state.version == v


def test_from_settings_finds_the_public_key(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    private, public, _ = ensure_key_pair(tmp_path / "data")
    kid = ControlSigner.from_file(private).key_id
    by_dir = Monitor.from_settings("a1", settings=Settings(data_dir=tmp_path / "data"))
    by_setting = Monitor.from_settings(
        "a1",
        settings=Settings(data_dir=tmp_path / "none", control_verify_keys=[str(public)]),
    )
    none = Monitor.from_settings("a1", settings=Settings(data_dir=tmp_path / "none"))
    for monitor in (by_dir, by_setting):
        assert monitor.control_verifier is not None and list(monitor.control_verifier.keys) == [kid]
    assert none.control_verifier is None
    sync = SyncMonitor.from_settings("a1", settings=Settings(data_dir=tmp_path / "data"))
    assert sync.monitor.control_verifier is not None
    skew = Monitor.from_settings(
        "a1", settings=Settings(data_dir=tmp_path / "none", control_max_clock_skew_s=42)
    )
    assert skew.max_clock_skew_s == 42


async def test_unverified_monitor_warns_at_start(caplog: pytest.LogCaptureFixture) -> None:
    monitor = Monitor(
        agent(), bootstrap=f"127.0.0.1:{free_port()}", startup_timeout=0, close_timeout=0.2
    )
    with caplog.at_level(logging.WARNING, logger="agentwatch.sdk"):
        async with monitor:
            pass
    assert any("without verifying" in r.getMessage() for r in caplog.records)
    caplog.clear()
    verified = Monitor(
        agent(),
        bootstrap=f"127.0.0.1:{free_port()}",
        startup_timeout=0,
        close_timeout=0.2,
        control_verifier=ControlVerifier([SIGNER.public_key]),
    )
    with caplog.at_level(logging.WARNING, logger="agentwatch.sdk"):
        async with verified:
            pass
    assert not any("without verifying" in r.getMessage() for r in caplog.records)


# -- 4. broker down ---------------------------------------------------------------------------


async def test_broker_down_tools_run_events_buffer_and_overflow_is_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    monitor = Monitor(
        agent(),
        bootstrap=f"127.0.0.1:{free_port()}",
        buffer_size=5,
        startup_timeout=0.3,
        close_timeout=0.5,
    )
    with caplog.at_level(logging.WARNING, logger="agentwatch.sdk"):
        started = time.monotonic()
        async with monitor:
            assert time.monotonic() - started < 2.0
            assert not monitor.control_ready and monitor.state is None

            @monitor.tool
            async def step(i: int) -> int:
                return i * 2

            assert [await step(i) for i in range(8)] == [i * 2 for i in range(8)]
            await asyncio.sleep(0.3)  # let the sender try (and fail) to connect
            stats = monitor.stats
            assert stats["emitted"] == 8
            assert stats["buffered"] == 5
            assert stats["dropped"] == 3
            assert stats["sent"] == 0
            assert stats["connect_errors"] >= 1
            exit_started = time.monotonic()
        assert time.monotonic() - exit_started < 5.0
    assert monitor.stats["buffered"] == 0
    assert monitor.stats["dropped"] == 8  # 3 overflowed + 5 never delivered
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "dropped" in text and "buffer of 5 full" in text
    assert "not delivered" in text


async def test_require_control_fails_closed_when_control_unreadable() -> None:
    monitor = Monitor(
        agent(),
        bootstrap=f"127.0.0.1:{free_port()}",
        startup_timeout=0.2,
        close_timeout=0.2,
        require_control=True,
    )
    started = time.monotonic()
    with pytest.raises(ControlUnavailable, match="require_control"):
        async with monitor:
            pass
    assert time.monotonic() - started < 3.0


class FakeProducer:
    """A started producer stand-in: the first ``fail`` sends fail like a broker outage."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.sent: list[tuple[str, bytes, bytes]] = []

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail > 0:
            self.fail -= 1
            future.set_exception(KafkaConnectionError("broker went away"))
        else:
            self.sent.append((topic, key, value))
            future.set_result(None)
        return future


async def test_failed_sends_are_retried_and_counted() -> None:
    producer = FakeProducer(fail=3)
    agent_id = agent()
    async with Monitor(
        agent_id,
        bootstrap=f"127.0.0.1:{free_port()}",
        topic_prefix="unit",
        producer=producer,
        startup_timeout=0,
        close_timeout=0.5,
    ) as monitor:
        for i in range(5):
            monitor.record(model="m", input_tokens=i, cost_usd=0.001 * i, latency_ms=5)
        assert await monitor.flush(5.0)
        stats = monitor.stats
    assert stats["sent"] == 5 and stats["dropped"] == 0 and stats["send_errors"] >= 3
    assert {(t, k) for t, k, _ in producer.sent} == {("unit.actions", agent_id.encode())}
    tokens = sorted(decode_event(v).input_tokens for _, _, v in producer.sent)
    assert tokens == [0, 1, 2, 3, 4]
    assert all(decode_event(v).kind == "llm" for _, _, v in producer.sent)


# -- 5. synchronous facade --------------------------------------------------------------------


@pytest.mark.integration
def test_sync_monitor_enforces_halt_and_emits(settings: Settings) -> None:
    asyncio.run(create_topics(settings))
    agent_id = agent()
    runs = 0
    with SyncMonitor.from_settings(agent_id, settings=settings, close_timeout=3.0) as monitor:
        assert monitor.control_ready

        @monitor.tool(risk="medium", target_arg="table")
        def load(table: str) -> str:
            nonlocal runs
            runs += 1
            return table

        assert load("staging.orders") == "staging.orders"
        monitor.record(model="gpt-4o-mini", input_tokens=900, output_tokens=40, cost_usd=0.002)
        assert monitor.flush(5.0)
        assert monitor.stats["sent"] == 2

        produced_at = asyncio.run(
            write_control(settings, agent_id, control(agent_id, 1, halted=True, reason="drift"))
        )
        while True:
            before = runs
            try:
                load("staging.users")
            except AgentHalted:
                break
            assert time.perf_counter() - produced_at < 2.0, "halt not enforced"
            time.sleep(0.005)
        latency = time.perf_counter() - produced_at
        print(f"sync halt-to-raise latency: {latency * 1000:.1f} ms")
        assert latency < 1.0
        assert runs == before
        assert monitor.state is not None and monitor.state.halted
    assert monitor.stats["buffered"] == 0 and monitor.stats["dropped"] == 0

    events = asyncio.run(read_actions(settings, monitor.stats["sent"]))
    assert [(e.action, e.status) for e in events[:2]] == [("load", "ok"), ("chat", "ok")]
    assert events[0].target == "staging.orders" and events[0].risk == "medium"
    assert events[1].kind == "llm" and events[1].output_tokens == 40
    assert events[-1].status == "denied" and events[-1].target == "staging.users"


def test_sync_monitor_rejects_async_tools_and_shared_producers() -> None:
    monitor = SyncMonitor(agent())

    async def fetch(url: str) -> str:
        return url

    with pytest.raises(TypeError, match="async"):
        monitor.tool(fetch)
    with pytest.raises(TypeError, match="producer"):
        SyncMonitor(agent(), producer=FakeProducer())


# -- 6. wrapping preserves functions ----------------------------------------------------------


def test_wrapped_tools_keep_name_signature_and_kind() -> None:
    monitor = Monitor(agent())

    async def fetch(url: str, *, timeout: float = 5.0) -> bytes:
        """Fetch a URL."""
        return url.encode()

    def add(a: int, b: int = 2) -> int:
        """Add."""
        return a + b

    wrapped_fetch = monitor.tool(fetch)
    wrapped_add = monitor.tool(name="math.add", risk="low")(add)
    assert inspect.iscoroutinefunction(wrapped_fetch)
    assert not inspect.iscoroutinefunction(wrapped_add)
    assert inspect.signature(wrapped_fetch) == inspect.signature(fetch)
    assert inspect.signature(wrapped_add) == inspect.signature(add)
    assert (wrapped_fetch.__name__, wrapped_fetch.__doc__) == ("fetch", "Fetch a URL.")
    assert (wrapped_add.__name__, wrapped_add.__doc__) == ("add", "Add.")
    assert wrapped_add(1) == 3
    assert asyncio.run(wrapped_fetch("u")) == b"u"

    sync_monitor = SyncMonitor(agent())
    sync_add = sync_monitor.tool(risk="low")(add)
    assert inspect.signature(sync_add) == inspect.signature(add) and sync_add.__name__ == "add"


def test_tool_reraises_the_same_exception_and_records_it() -> None:
    monitor = Monitor(agent(), max_error_chars=40)
    boom = KeyError("secret-free message that is rather long, longer than forty")

    @monitor.tool
    def explode() -> None:
        raise boom

    with pytest.raises(KeyError) as raised:
        explode()
    assert raised.value is boom
    assert monitor.stats["emitted"] == 1


def test_decorator_rejects_bad_options() -> None:
    monitor = Monitor(agent())
    with pytest.raises(ValueError, match="risk"):
        monitor.tool(risk="extreme")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="target_arg"):
        monitor.tool(target_arg="nope")(lambda path: path)

    def gen() -> Any:
        yield 1

    with pytest.raises(TypeError, match="generator"):
        monitor.tool(gen)
    with pytest.raises(ValueError, match="agent_id"):
        Monitor("bad id with spaces")
    for bad in ("team/a", "..", ".", "a\u202eb"):
        with pytest.raises(ValueError, match=r"A-Z a-z 0-9 \. _ : @ - and must not be"):
            Monitor(bad)
    assert Monitor("svc:7@eu-west_1.a").agent_id == "svc:7@eu-west_1.a"
    with pytest.raises(ValueError, match="kafka_options"):
        Monitor(agent(), kafka_options={"acks": "all"})


def test_emission_never_raises_and_counts_rejects(caplog: pytest.LogCaptureFixture) -> None:
    monitor = Monitor(agent())
    with caplog.at_level(logging.WARNING, logger="agentwatch.sdk"):
        assert monitor.emit("x" * 200) is None  # action longer than 128
        assert monitor.record(model="m", cost_usd=float("nan")) is None
        assert monitor.emit("ok", attributes={f"k{i}": "v" * 1024 for i in range(64)}) is None
    assert monitor.stats["rejected"] == 3
    assert monitor.stats["emitted"] == 0
    assert any("invalid event" in r.getMessage() for r in caplog.records)
    # the offending values are not logged
    assert not any("v" * 100 in r.getMessage() for r in caplog.records)


def test_context_nests_and_explicit_arguments_win() -> None:
    monitor = Monitor(agent(), session_id="default-session")
    with context(session_id="s1", attributes={"team": "a"}):
        with monitor.context(approved_by="bob", attributes={"ticket": 7}):
            inner = monitor.emit("deploy", target="prod")
        outer = monitor.emit("deploy", approved_by="carol")
    after = monitor.emit("deploy")
    assert inner is not None and outer is not None and after is not None
    assert (inner.session_id, inner.approved_by, inner.target) == ("s1", "bob", "prod")
    assert inner.attributes == {"team": "a", "ticket": 7}
    assert (outer.session_id, outer.approved_by, outer.attributes) == ("s1", "carol", {"team": "a"})
    assert (after.session_id, after.approved_by) == ("default-session", None)


def test_local_denial_emits_denied_event_without_running_the_tool() -> None:
    agent_id = agent()
    monitor = Monitor(agent_id)
    calls = 0

    @monitor.tool(target_arg="path")
    def delete(path: str) -> None:
        nonlocal calls
        calls += 1

    monitor.control.apply_record(
        "t.control",
        0,
        0,
        agent_id.encode(),
        control(agent_id, 1, halted=True).model_dump_json().encode(),
    )
    with pytest.raises(AgentHalted):
        delete("/data")
    assert calls == 0 and monitor.stats["emitted"] == 1


def test_control_errors_pickle_with_their_fields() -> None:
    halted = pickle.loads(pickle.dumps(AgentHalted("a1", "why", "inc-1")))
    assert (halted.agent_id, halted.reason, halted.incident_id) == ("a1", "why", "inc-1")
    revoked = pickle.loads(pickle.dumps(PermissionRevoked("a1", "send_email", "spam")))
    assert (revoked.action, str(revoked)) == (
        "send_email",
        str(PermissionRevoked("a1", "send_email", "spam")),
    )
