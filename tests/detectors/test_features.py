from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.detectors.features import FEATURES, mark, window_features
from agentwatch.schemas import ActionEvent

T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)


def fold(baseline: AgentBaseline, start: int, count: int, **kw: object) -> None:
    for i in range(start, start + count):
        baseline.update(
            ActionEvent(
                event_id=f"e{i}",
                agent_id="a1",
                fleet="ops",
                ts=T0 + timedelta(seconds=5 * i),
                **kw,  # type: ignore[arg-type]
            )
        )


def test_window_sums_match_the_baseline_window() -> None:
    b = AgentBaseline("a1", "ops")
    fold(b, 0, 40, action="search", target="t", cost_usd=0.01)
    fold(b, 40, 10, action="search", status="error", cost_usd=0.01)
    fold(b, 50, 5, action="deploy", status="denied")
    f = window_features(b, seconds=300.0)
    w = b.window(300.0)
    assert (f.events, f.errors, f.denied) == (w.count, w.errors, w.denied) == (55, 10, 5)
    assert f.cost_usd == pytest.approx(0.5)
    assert f.minutes == pytest.approx(w.seconds / 60.0)
    assert f.events_per_min == pytest.approx(55 / f.minutes)
    assert f.cost_per_min == pytest.approx(0.5 / f.minutes)
    assert f.cost_per_event == pytest.approx(0.5 / 55)
    assert f.failure_share == pytest.approx(15 / 55)
    assert f.denied_share == pytest.approx(5 / 55)


def test_delta_features_need_a_mark() -> None:
    b = AgentBaseline("a1", "ops")
    fold(b, 0, 10, action="read", target="doc")
    assert window_features(b).llm_share is None
    assert set(window_features(b).as_dict()) == set(FEATURES[:5])
    before = mark(b)
    json.dumps(before)  # JSON-able, so a detector can keep it in its state
    fold(b, 10, 4, action="chat", kind="llm", input_tokens=800, output_tokens=200)
    for i, target in enumerate(["x", "y", "z", "w"]):
        fold(b, 14 + i, 1, action="read", target=target)
    f = window_features(b, since=before)
    assert f.llm_share == pytest.approx(0.5)
    assert f.tokens_per_llm_call == pytest.approx(1000.0)
    assert f.new_targets_per_event == pytest.approx(0.5, abs=0.1)  # 4 new of 8 (HLL estimate)
    assert set(f.as_dict()) == set(FEATURES)


def test_nothing_since_the_mark_leaves_delta_features_unknown() -> None:
    b = AgentBaseline("a1", "ops")
    fold(b, 0, 5, action="read")
    f = window_features(b, since=mark(b))
    assert (f.llm_share, f.tokens_per_llm_call, f.new_targets_per_event) == (None, None, None)


def test_old_buckets_age_out_and_empty_windows_are_zero() -> None:
    b = AgentBaseline("a1", "ops")
    assert window_features(b).as_dict() == dict.fromkeys(FEATURES[:5], 0.0)
    fold(b, 0, 20, action="read", status="error")
    later = window_features(b, seconds=300.0, at=T0.timestamp() + 3600.0)
    assert later.events == 0
    assert later.failure_share == 0.0
    assert later.cost_per_event == 0.0
    assert later.minutes >= 5.0
