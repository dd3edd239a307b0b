"""The emitter's fast path makes the very model and bytes pydantic's path makes, or steps aside.

Each case is emitted twice with the same event id and time: once as the emitter does it, once
with the fast path switched off (the pydantic path the emitter always had). The returned models,
their field sets, the buffered bytes and any rejection reason must be identical.
"""

from __future__ import annotations

import logging
import os
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, get_args

import pytest

from agentwatch.schemas import ActionEvent, decode_event, encode_event
from agentwatch.sdk import _fastpath, context
from agentwatch.sdk import emitter as emitter_module
from agentwatch.sdk._fastpath import FastPath, Unsupported, new_event_id
from agentwatch.sdk._support import KINDS, RISKS, STATUSES
from agentwatch.sdk.emitter import EventEmitter

FIXED_ID = "0123456789ab4def8123456789abcdef"


class _Float(float):
    """A float subclass (as numpy's float64 is one)."""


class _Text(str):
    """A str subclass."""


def _clock(at: datetime) -> type[datetime]:
    class Clock(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return at

    return Clock


@pytest.fixture(params=[123456, 0], ids=["micros", "whole-second"])
def fixed(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every event gets the same id and time, whichever path builds it."""
    at = datetime(2026, 3, 1, 12, 30, 45, request.param, tzinfo=UTC)
    for module in (_fastpath, emitter_module):
        monkeypatch.setattr(module, "datetime", _clock(at))
        monkeypatch.setattr(module, "new_event_id", lambda: FIXED_ID)
    yield


def _pydantic_only(*args: Any, **kwargs: Any) -> Any:
    raise Unsupported


def _emit(
    fields: dict[str, Any], fast: bool, caplog: pytest.LogCaptureFixture
) -> tuple[ActionEvent | None, list[bytes], list[str]]:
    emitter = EventEmitter("bot-7", "ops", bootstrap="127.0.0.1:1", topic="p.actions")
    if not fast:
        emitter._fast.build = _pydantic_only  # type: ignore[method-assign]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="agentwatch.sdk"):
        event = emitter.emit(**fields)
    reasons = [r.getMessage() for r in caplog.records if "invalid event" in r.getMessage()]
    return event, [item.payload for item in emitter._take_batch()], reasons


def assert_same(fields: dict[str, Any], caplog: pytest.LogCaptureFixture) -> ActionEvent | None:
    event, payloads, reasons = _emit(fields, True, caplog)
    ref, ref_payloads, ref_reasons = _emit(fields, False, caplog)
    assert (payloads, reasons) == (ref_payloads, ref_reasons)
    if ref is None:
        assert event is None
        return None
    assert event is not None
    assert event == ref and type(event) is type(ref)
    assert [type(v) for v in event.__dict__.values()] == [type(v) for v in ref.__dict__.values()]
    assert event.__pydantic_fields_set__ == ref.__pydantic_fields_set__
    assert (event.__pydantic_extra__, event.__pydantic_private__) == (None, None)
    assert event.ts.tzinfo is ref.ts.tzinfo and event.ts_epoch == ref.ts_epoch
    assert payloads == [encode_event(event)] == [encode_event(ref)]
    assert decode_event(payloads[0]) == ref
    return event


MESSY = 'ünïcødé/路径/😀 "quoted" back\\slash \x00\x01\x1f\x7f\x85\t\n\r\b\f \u2028\u2029\ufeff'

FAST_CASES: list[dict[str, Any]] = [
    {"action": "search"},
    {"action": "search", "target": "doc-17", "latency_ms": 12.5},
    {"action": "fs.read", "target": MESSY, "error": MESSY},
    {"action": "überweisung", "session_id": "gespräch-1", "approved_by": "zoë", "model": "模型"},
    {"action": "a" * 128, "target": "t" * 1024, "session_id": "s" * 128, "model": ""},
    {
        "action": "send",
        "session_id": None,
        "error": None,
        "risk": None,
        "target": None,
        "approved_by": None,
        "model": None,
        "attributes": None,
    },
    *({"action": "x", "kind": kind, "status": status} for kind in KINDS for status in STATUSES),
    *({"action": "x", "risk": risk} for risk in RISKS),
    {
        "action": "chat",
        "kind": "llm",
        "model": "gpt-4o",
        "cost_usd": 0.004,
        "input_tokens": 1200,
        "output_tokens": 80,
        "latency_ms": 850,
    },
    {"action": "x", "cost_usd": 1, "latency_ms": 0, "input_tokens": 2**53, "output_tokens": 0},
    {"action": "x", "cost_usd": 0.1 + 0.2, "latency_ms": 1e-7},
    {"action": "x", "cost_usd": 1e16, "latency_ms": 123456789.123},
    {"action": "x", "cost_usd": 5e-324, "latency_ms": 1.7976931348623157e308},
    {"action": "x", "cost_usd": -0.0, "latency_ms": 2**1023},
    {
        "action": "x",
        "attributes": {
            "none": None,
            "yes": True,
            "no": False,
            "int": -5,
            "i64": 2**63 - 1,
            "-i64": -(2**63),
            "float": -1.5e-9,
            "zero": -0.0,
            "text": MESSY,
            "": "",
            "schlüssel": "v" * 1024,
            "k" * 128: 1,
        },
    },
    {"action": "x", "attributes": {f"k{i}": i for i in range(64)}},
    {"action": "x", "status": "error", "error": ValueError("mailbox full: ü")},
]


@pytest.mark.parametrize("fields", FAST_CASES)
def test_the_fast_path_makes_the_pydantic_model_and_bytes(
    fields: dict[str, Any],
    fixed: None,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    event = assert_same(fields, caplog)
    assert event is not None
    # and these were built by the fast path: pydantic's validator is not called
    monkeypatch.setattr(emitter_module, "_VALIDATE", None)
    assert _emit(fields, True, caplog)[0] == event


def test_context_fields_and_attributes_take_the_fast_path_too(
    fixed: None, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    with context(session_id="conv-3", approved_by="alice", target="t", attributes={"step": 2}):
        event = assert_same({"action": "deploy", "attributes": {"retry": True}}, caplog)
        assert event is not None and event.attributes == {"step": 2, "retry": True}
        monkeypatch.setattr(emitter_module, "_VALIDATE", None)
        assert _emit({"action": "deploy"}, True, caplog)[0] is not None


FALLBACK_CASES: list[dict[str, Any]] = [
    # accepted after clipping or converting, as before
    {"action": "x", "target": "x" * 2000, "session_id": "s" * 200, "model": 42},
    {"action": "x", "error": "e" * 5000},
    {"action": "x", "cost_usd": "0.5", "latency_ms": _Float(2.5), "input_tokens": True},
    {"action": "x", "input_tokens": 3.9, "output_tokens": "7"},
    {"action": _Text("x"), "target": _Text("t"), "kind": _Text("api")},
    {"action": "x", "attributes": {"big": 2**64, "neg": -(2**63) - 1}},
    {"action": "x", "cost_usd": 2**1024},
    # refused, with pydantic's words
    {"action": "x", "cost_usd": -1.0},
    {"action": "x", "cost_usd": -1},
    {"action": "x", "latency_ms": float("nan")},
    {"action": "x", "latency_ms": float("inf")},
    {"action": "x", "input_tokens": -3},
    {"action": "x", "output_tokens": 2**53 + 1},
    {"action": "x", "kind": "robot"},
    {"action": "x", "status": "fine"},
    {"action": "x", "risk": "extreme"},
    {"action": ""},
    {"action": "a" * 129},
    {"action": "line\nbreak"},
    {"action": "bidi\u202e"},
    {"action": 7},
    {"action": "x", "session_id": "s\x00"},
    {"action": "x", "approved_by": "a\u2028"},
    {"action": "x", "model": "m\ufeff"},
    {"action": "x", "target": "lone \ud800 surrogate"},
    {"action": "x", "attributes": {"k": [1]}},
    {"action": "x", "attributes": {"k": "v" * 1025}},
    {"action": "x", "attributes": {"k": float("inf")}},
    {"action": "x", "attributes": {"k\n": 1}},
    {"action": "x", "attributes": {"k" * 129: 1}},
    {"action": "x", "attributes": {7: 1}},
    {"action": "x", "attributes": {f"k{i}": i for i in range(65)}},
    {"action": "x", "attributes": {f"k{i}": "v" * 1024 for i in range(64)}},  # > 64 KiB
]


@pytest.mark.parametrize("fields", FALLBACK_CASES)
def test_what_the_fast_path_does_not_take_ends_as_it_always_did(
    fields: dict[str, Any], fixed: None, caplog: pytest.LogCaptureFixture
) -> None:
    assert_same(fields, caplog)


def test_random_numbers_make_the_same_bytes(fixed: None, caplog: pytest.LogCaptureFixture) -> None:
    rng = random.Random(13)
    for _ in range(200):
        value = rng.random() * 10 ** rng.uniform(-12, 20)
        if rng.random() < 0.3:
            value = round(value, rng.randint(0, 6))
        whole = rng.randint(0, 2**53)
        assert_same(
            {
                "action": "x",
                "cost_usd": value,
                "latency_ms": whole,
                "input_tokens": whole,
                "attributes": {"f": value, "i": -whole, "s": str(value)},
            },
            caplog,
        )


def test_agent_id_and_fleet_are_checked_whenever_they_change() -> None:
    fast = FastPath()
    args: tuple[Any, ...] = ("x", "tool", "ok", None, None, None, None, None, None)
    numbers = (0.0, 0, 0, 0.0, {}, 1024)
    event, _ = fast.build("bot-7", "ops", *args, *numbers)
    assert (event.agent_id, event.fleet) == ("bot-7", "ops")
    for agent_id, fleet in [("..", "ops"), ("a/b", "ops"), ("bot-7", "o\nps"), ("bot-7", "")]:
        with pytest.raises(Unsupported):
            fast.build(agent_id, fleet, *args, *numbers)
    emitter = EventEmitter("bot-7", "ops", bootstrap="127.0.0.1:1", topic="p.actions")
    emitter.fleet = "bad\nfleet"
    assert emitter.emit("x") is None and emitter.stats["rejected"] == 1


def test_the_sets_the_fast_path_checks_are_the_models() -> None:
    fields = ActionEvent.model_fields
    assert set(get_args(fields["kind"].annotation)) == KINDS
    assert set(get_args(fields["status"].annotation)) == STATUSES
    (risks, _none) = get_args(fields["risk"].annotation)
    assert set(get_args(risks)) == RISKS


def test_event_ids_are_unique_version_4_uuids_across_batches() -> None:
    ids = [new_event_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    for event_id in ids:
        parsed = uuid.UUID(hex=event_id)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert parsed.hex == event_id


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_reuse_its_parents_ids() -> None:
    new_event_id()  # a batch is under way
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, new_event_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 32 and child != new_event_id()
