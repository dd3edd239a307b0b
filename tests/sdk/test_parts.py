"""The SDK's parts on their own: a follower serving several agents, tool hooks that wait."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime

import pytest

from agentwatch.config import Settings
from agentwatch.schemas import ActionEvent, ControlState, encode_event
from agentwatch.sdk import AgentHalted, Monitor, PermissionRevoked, context
from agentwatch.sdk.control import ControlBook
from agentwatch.sdk.emitter import EventEmitter, new_event_id
from agentwatch.sdk.follower import ControlFollower
from agentwatch.sdk.tools import ToolCall, wrap_tool


def state(agent_id: str, version: int, **fields: object) -> bytes:
    doc = ControlState(
        agent_id=agent_id,
        version=version,
        updated_at=datetime.now(UTC),
        updated_by="test",
        **fields,  # type: ignore[arg-type]
    )
    return doc.model_dump_json().encode()


def test_one_follower_routes_records_to_the_book_of_their_key() -> None:
    a, b = ControlBook("a", None), ControlBook("b", None)
    follower = ControlFollower("127.0.0.1:1", "p.control", {a.key: a, b.key: b})
    follower.apply("p.control", 0, 0, b"a", state("a", 1, halted=True, reason="loop"))
    follower.apply("p.control", 1, 0, b"b", state("b", 1, revoked=["send_email"]))
    follower.apply("p.control", 2, 0, b"c", state("c", 1, halted=True))  # nobody's
    follower.apply("p.control", 3, 0, None, b"{}")  # malformed: every book counts it

    assert isinstance(a.denial("search"), AgentHalted)
    assert isinstance(b.denial("send_email"), PermissionRevoked)
    assert b.denial("search") is None
    assert a.counters.get("control_errors") == b.counters.get("control_errors") == 1


def test_a_book_ignores_a_record_whose_body_names_another_agent() -> None:
    book = ControlBook("a", None)
    book.apply_record("t", 0, 0, b"a", state("b", 1, halted=True))
    assert book.state is None and book.allows("anything")
    assert book.counters.snapshot()["control_errors"] == 1


class Gate:
    """Hooks whose async check waits for a decision, as an approval gate would."""

    def __init__(self) -> None:
        self.decided = asyncio.Event()
        self.allow = True
        self.asked: list[ToolCall] = []
        self.done: list[tuple[str, BaseException | None]] = []

    def before(self, call: ToolCall) -> None:
        self.asked.append(call)
        if not self.allow:
            raise PermissionRevoked("bot", call.action, "denied by on-call")

    async def abefore(self, call: ToolCall) -> None:
        await self.decided.wait()
        self.before(call)

    def after(self, call: ToolCall, latency_ms: float, exc: BaseException | None) -> None:
        assert latency_ms >= 0
        self.done.append((call.action, exc))


async def test_coroutine_tools_wait_for_the_async_hook_before_running() -> None:
    gate = Gate()
    ran: list[str] = []

    async def deploy(service: str) -> str:
        ran.append(service)
        return f"deployed {service}"

    wrapped = wrap_tool(deploy, gate, risk="critical", target_arg="service")
    call = asyncio.create_task(wrapped("billing"))
    await asyncio.sleep(0.05)
    assert ran == [] and not call.done(), "the tool ran before the hook decided"
    gate.decided.set()
    assert await call == "deployed billing"
    assert gate.asked == [ToolCall("deploy", "tool", "critical", "billing")]
    assert gate.done == [("deploy", None)]

    gate.allow = False
    with pytest.raises(PermissionRevoked):
        await wrapped(service="payments")
    assert ran == ["billing"], "a refused call must not run"
    assert gate.done == [("deploy", None)], "a refused call is not reported as run"


def test_an_emitter_builds_events_for_its_agent_without_a_monitor() -> None:
    emitter = EventEmitter("gw-agent", "mcp", bootstrap="127.0.0.1:1", topic="p.actions")
    event = emitter.emit("tools/call", kind="api", target="fs.read", latency_ms=2.5)
    assert event is not None
    assert (event.agent_id, event.fleet, event.kind, event.target) == (
        "gw-agent",
        "mcp",
        "api",
        "fs.read",
    )
    assert emitter.emit("x", cost_usd=-1.0) is None  # invalid: counted, not raised
    assert emitter.stats == {
        "emitted": 1,
        "sent": 0,
        "dropped": 0,
        "send_errors": 0,
        "connect_errors": 0,
        "rejected": 1,
        "buffered": 1,
    }


def buffered_payloads(emitter: EventEmitter) -> list[bytes]:
    return [item.payload for item in emitter._take_batch()]


def test_an_emitted_event_is_the_model_the_fields_make_and_its_wire_bytes() -> None:
    emitter = EventEmitter("bot-7", "ops", bootstrap="127.0.0.1:1", topic="p.actions")
    with context(session_id="conv-3", approved_by="alice", attributes={"step": 2}):
        event = emitter.emit(
            "send_email",
            status="error",
            error=ValueError("mailbox full"),
            risk="high",
            target="ceo@example.com",
            model="gpt-4o",
            cost_usd=1,  # an int is taken as a float, as before
            input_tokens=12,
            output_tokens=3,
            latency_ms=7,
            attributes={"retry": True},
        )
    assert event is not None
    # the same validation as the model's constructor, the same bytes as encode_event
    rebuilt = ActionEvent(**event.model_dump())
    assert rebuilt == event
    assert buffered_payloads(emitter) == [encode_event(event)]
    assert (event.session_id, event.approved_by, event.attributes) == (
        "conv-3",
        "alice",
        {"step": 2, "retry": True},
    )
    assert event.error == "ValueError: mailbox full" and event.cost_usd == 1.0
    assert uuid.UUID(hex=event.event_id).version == 4 and event.ts.tzinfo is UTC


def test_an_emitter_clips_long_texts_to_the_wire_limits() -> None:
    emitter = EventEmitter("bot-7", "ops", bootstrap="127.0.0.1:1", topic="p.actions")
    event = emitter.emit("read", target="x" * 2000, session_id="s" * 200, model=42)  # type: ignore[arg-type]
    assert event is not None
    assert event.target is not None and len(event.target) == 1024 and event.target[-1] == "…"
    assert event.session_id is not None and len(event.session_id) == 128
    assert event.model == "42"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"cost_usd": -1.0}, "cost_usd: Input should be greater than or equal to 0"),
        ({"latency_ms": float("nan")}, "latency_ms: Input should be a finite number"),
        ({"kind": "robot"}, "kind: Input should be 'tool', 'llm', 'api' or 'other'"),
        ({"attributes": {"k": [1]}}, "attributes.k"),
        ({"input_tokens": -3}, "input_tokens: Input should be greater than or equal to 0"),
    ],
)
def test_an_invalid_event_is_refused_with_its_reason_and_never_buffered(
    fields: dict[str, object], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    emitter = EventEmitter("bot-7", "ops", bootstrap="127.0.0.1:1", topic="p.actions")
    with caplog.at_level(logging.WARNING, logger="agentwatch.sdk"):
        assert emitter.emit("search", **fields) is None  # type: ignore[arg-type]
    assert emitter.stats["rejected"] == 1 and emitter.stats["buffered"] == 0
    (record,) = [r for r in caplog.records if "invalid event" in r.getMessage()]
    assert reason in record.getMessage() and "'search'" in record.getMessage()


def test_new_event_ids_are_random_version_4_uuids() -> None:
    ids = {new_event_id() for _ in range(2000)}
    assert len(ids) == 2000
    for event_id in ids:
        parsed = uuid.UUID(hex=event_id)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert parsed.hex == event_id


def test_a_monitor_from_settings_follows_control_with_the_configured_fetch_wait() -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:1", control_fetch_max_wait_ms=37)
    monitor = Monitor.from_settings("bot-7", settings=settings)
    assert monitor.fetch_max_wait_ms == monitor.follower.fetch_max_wait_ms == 37
    explicit = Monitor.from_settings("bot-7", settings=settings, fetch_max_wait_ms=250)
    assert explicit.follower.fetch_max_wait_ms == 250  # an explicit argument wins
    assert Monitor.from_settings("bot-7", settings=Settings()).fetch_max_wait_ms == 100
