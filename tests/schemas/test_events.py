from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentwatch.schemas import ActionEvent, DecodeError, decode_event, encode_event

GOOD = {
    "event_id": "e-1",
    "ts": "2026-03-01T12:00:00.250Z",
    "agent_id": "support-7@prod:eu.1",
    "fleet": "support",
    "session_id": "s-1",
    "action": "send_email",
    "kind": "tool",
    "status": "ok",
    "risk": "medium",
    "target": "bob@example.com",
    "cost_usd": 0.002,
    "input_tokens": 10,
    "output_tokens": 3,
    "latency_ms": 41.5,
    "attributes": {"retries": 1, "region": "eu", "cached": False, "ratio": 0.5, "none": None},
}


def raw(**changes: object) -> bytes:
    doc = {**GOOD, **changes}
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


def test_decodes_every_field() -> None:
    event = decode_event(raw())
    assert event.agent_id == "support-7@prod:eu.1"
    assert event.cost_usd == pytest.approx(0.002)
    assert event.ts_epoch == pytest.approx(1772366400.25)
    assert event.attributes["retries"] == 1


def test_defaults_for_optional_fields() -> None:
    event = decode_event(
        b'{"event_id":"e","ts":"2026-01-01T00:00:00+00:00","agent_id":"a","action":"x"}'
    )
    assert (event.fleet, event.kind, event.status, event.cost_usd) == ("default", "tool", "ok", 0)
    assert event.risk is None and event.attributes == {}


def test_encode_decode_round_trip() -> None:
    event = decode_event(raw())
    again = decode_event(encode_event(event))
    assert again == event
    assert json.loads(encode_event(event))["ts"] == "2026-03-01T12:00:00.250000Z"


@pytest.mark.parametrize(
    ("payload", "code", "fragment"),
    [
        (b"{not json", "bad_json", "JSON"),
        (b"", "bad_json", "JSON"),
        (raw(action=...), "invalid", "action"),
        (raw().replace(b'"cost_usd": 0.002', b'"cost_usd": NaN'), "invalid", "cost_usd"),
        (raw(cost_usd=-1), "invalid", "cost_usd"),
        (raw(latency_ms=1e400), "invalid", "latency_ms"),
        (raw(input_tokens=-5), "invalid", "input_tokens"),
        (raw(ts="2026-03-01T12:00:00"), "invalid", "ts"),
        (raw(ts="2026-03-01T12:00:00+02:00"), "invalid", "UTC"),
        (raw(ts=1772366400), "invalid", "ts"),
        (raw(agent_id="has space"), "invalid", "agent_id"),
        (raw(agent_id="x" * 129), "invalid", "agent_id"),
        (raw(kind="robot"), "invalid", "kind"),
        (raw(cost_usd="0.1"), "invalid", "cost_usd"),
        (raw(unknown_field=1), "invalid", "unknown_field"),
        (raw(attributes={"nested": {"a": 1}}), "invalid", "attributes"),
        (raw(attributes={f"k{i}": i for i in range(65)}), "invalid", "attributes"),
        (raw(attributes={"ok": 1, "r": float("nan")}), "invalid", "attributes.r: must be"),
        (raw(attributes={"r": "x" * 1025}), "invalid", "attributes.r: must be a string of at"),
        (raw(attributes={"k" * 129: 1}), "invalid", "attribute names are at most 128"),
        (raw(ts="2026-03-01T12:00:00"), "invalid", "ts: timestamp needs a UTC offset"),
        (raw(target="t" * 1025), "invalid", "target"),
        (b"[1,2]", "invalid", "object"),
    ],
)
def test_rejects_with_reason(payload: bytes, code: str, fragment: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_event(payload)
    assert info.value.code == code
    assert fragment.lower() in info.value.detail.lower()


@pytest.mark.parametrize(
    "agent_id", [".", "..", "team/a", "../../etc", "a\x00b", "a\u202eb", "\ufeffa", "é", "a b", ""]
)
def test_agent_ids_are_url_path_segments_of_a_small_charset(agent_id: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_event(raw(agent_id=agent_id))
    assert info.value.detail.startswith("agent_id:")
    assert "regex" not in info.value.detail and "pattern" not in info.value.detail


@pytest.mark.parametrize("agent_id", ["...", ".hidden", "..x", "a.b", "svc:7@eu-west_1", "A" * 128])
def test_agent_ids_accepted(agent_id: str) -> None:
    assert decode_event(raw(agent_id=agent_id)).agent_id == agent_id


FORBIDDEN = [
    "\x00",
    "\n",
    "\r",
    "\x1b",
    "\x7f",
    "\x85",
    "\u2028",
    "\u202a",
    "\u202e",
    "\u2066",
    "\u2069",
    "\ufeff",
    "\ufdd0",
    "\ufdef",
    "\ufffe",
    "\uffff",
]


@pytest.mark.parametrize(
    "field", ["event_id", "fleet", "action", "session_id", "approved_by", "model"]
)
@pytest.mark.parametrize("char", FORBIDDEN)
def test_ids_and_names_reject_control_bidi_bom_and_noncharacters(field: str, char: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_event(raw(**{field: f"x{char}y"}))
    assert info.value.detail.startswith(f"{field}: must not contain control characters")


def test_names_keep_other_scripts_and_attribute_names_are_checked_too() -> None:
    event = decode_event(raw(fleet="support-é", action="发送邮件", session_id="🙂"))
    assert (event.fleet, event.action, event.session_id) == ("support-é", "发送邮件", "🙂")
    with pytest.raises(DecodeError, match="must not contain"):
        decode_event(raw(attributes={"key\u202e": 1}))


def test_rejects_oversized_before_parsing() -> None:
    big = raw(attributes={"blob": "x" * 1000}) + b" " * (64 * 1024)
    with pytest.raises(DecodeError) as info:
        decode_event(big)
    assert info.value.code == "too_large"


def test_epoch_time_is_computed_once_and_not_serialized() -> None:
    event = decode_event(raw())
    assert event.ts_epoch == event.ts.timestamp() == 1772366400.25
    assert event.ts_epoch is event.ts_epoch  # kept in the instance after the first read
    assert "ts_epoch" not in json.loads(encode_event(event))
    assert event == decode_event(raw())  # a cached value is no field
    later = event.model_copy(update={"ts": event.ts.replace(second=30)})
    assert later.ts_epoch == 1772366430.25 and event.ts_epoch == 1772366400.25


def test_model_is_frozen() -> None:
    event = decode_event(raw())
    with pytest.raises(ValueError, match="frozen"):
        event.cost_usd = 5.0  # type: ignore[misc]


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_only_raise_decode_error(data: bytes) -> None:
    try:
        event = decode_event(data)
    except DecodeError as err:
        assert err.code in {"too_large", "bad_json", "invalid"}
    else:
        assert isinstance(event, ActionEvent)


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from([*GOOD, "extra"]), json_values, max_size=12))
def test_arbitrary_json_documents_only_raise_decode_error(doc: dict[str, object]) -> None:
    payload = json.dumps(doc, allow_nan=True).encode()
    try:
        event = decode_event(payload)
    except DecodeError:
        return
    assert math.isfinite(event.cost_usd) and event.cost_usd >= 0
    assert event.ts.utcoffset() is not None
