from __future__ import annotations

import hashlib
import math
import os
import random
import re
import statistics
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentwatch.detectors.baseline import FORMAT_VERSION, AgentBaseline, WindowStats
from agentwatch.schemas._types import NAME_PATTERN
from agentwatch.schemas.events import ActionEvent

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
T0_EPOCH = T0.timestamp()  # a multiple of 60, so bucket boundaries fall on T0 + k * 60 s

ACTIONS = [
    "search_web", "read_file", "write_file", "send_email", "query_database",
    "list_directory", "fetch_url", "create_ticket", "update_ticket", "chat_completion",
    "embed_text", "summarize_document", "run_python", "git_commit", "git_push",
    "open_pull_request", "post_slack_message", "get_calendar_events", "create_event",
    "translate_text", "http_get", "http_post", "vector_search", "rerank_results",
    "classify_intent",
]  # fmt: skip

_counter = iter(range(10**9))


def ev(
    seconds: float = 0.0,
    action: str = "search",
    *,
    agent_id: str = "a1",
    **fields: Any,
) -> ActionEvent:
    """An event of agent ``a1`` at ``T0 + seconds``."""
    return ActionEvent(
        event_id=f"e{next(_counter)}",
        agent_id=agent_id,
        ts=T0 + timedelta(seconds=seconds),
        action=action,
        **fields,
    )


def fed(events: Iterable[ActionEvent], **config: Any) -> AgentBaseline:
    baseline = AgentBaseline("a1", "research", **config)
    for event in events:
        baseline.update(event)
    return baseline


def realistic_events(n: int = 10_000, seed: int = 7) -> list[ActionEvent]:
    """One hour of a plausible agent: a Markov chain over 25 tools, 200 targets, 3 % errors."""
    rng = random.Random(seed)
    successors = {a: rng.sample(ACTIONS, 4) for a in ACTIONS}
    targets = [f"https://docs.example.com/guide/section-{i}/page.html" for i in range(200)]
    action = ACTIONS[0]
    events = []
    for i in range(n):
        action = rng.choice(successors[action]) if rng.random() < 0.9 else rng.choice(ACTIONS)
        kind = "llm" if action in {"chat_completion", "summarize_document"} else "tool"
        events.append(
            ev(
                i * 3600 / n + rng.uniform(0, 0.5),
                action,
                kind=kind,
                status=rng.choices(["ok", "error", "denied"], [0.96, 0.03, 0.01])[0],
                target=rng.choice(targets) if rng.random() < 0.8 else None,
                cost_usd=rng.uniform(0.0005, 0.02) if kind == "llm" else 0.0,
                input_tokens=rng.randint(100, 4000) if kind == "llm" else 0,
                output_tokens=rng.randint(10, 800) if kind == "llm" else 0,
                latency_ms=rng.uniform(5, 2500),
            )
        )
    return events


def adversarial_events(n: int = 10_000) -> list[ActionEvent]:
    return [ev(i * 0.36, f"action-{i:05d}", target=f"/tmp/target-{i:05d}") for i in range(n)]


@pytest.fixture(scope="module")
def realistic() -> list[ActionEvent]:
    return realistic_events()


# ---------------------------------------------------------------- counts and totals


def test_counts_totals_and_times() -> None:
    events = [
        ev(10, "search", kind="tool", cost_usd=0.5, input_tokens=3, output_tokens=4),
        ev(20, "chat", kind="llm", status="error", cost_usd=0.25, input_tokens=10),
        ev(5, "chat", kind="llm", status="denied", output_tokens=6),  # late: before first
        ev(30, "fetch", kind="api", target="https://x"),
        ev(25, "other", kind="other"),  # late: watermark stays at 30
    ]
    b = fed(events)
    assert (b.count, b.errors, b.denied) == (5, 1, 1)
    assert b.kinds == {"tool": 1, "llm": 2, "api": 1, "other": 1}
    assert b.cost_usd == pytest.approx(0.75)
    assert (b.input_tokens, b.output_tokens) == (13, 10)
    assert b.first_seen == pytest.approx(T0_EPOCH + 5)
    assert b.last_seen == pytest.approx(T0_EPOCH + 25)
    assert b.watermark == pytest.approx(T0_EPOCH + 30)
    assert (b.last_action, b.last_status, b.last_target) == ("other", "ok", None)
    assert (b.agent_id, b.fleet) == ("a1", "research")


def test_empty_baseline() -> None:
    b = AgentBaseline("a1", "research")
    assert b.count == 0
    assert (b.first_seen, b.last_seen, b.watermark) == (None, None, None)
    assert b.window(60) == WindowStats(0, 0, 0, 0.0, 0.0, 0.0)
    assert b.distinct_targets() == 0.0
    assert b.rate == 0.0
    assert b.top_actions() == []
    restored = AgentBaseline.from_bytes(b.to_bytes())
    assert restored == b
    assert restored.watermark is None


def test_rejects_other_agents_events_and_bad_config() -> None:
    b = AgentBaseline("a1", "research")
    with pytest.raises(ValueError, match="agent"):
        b.update(ev(0, agent_id="a2"))
    assert b.count == 0
    for bad in ({"half_life": 0}, {"half_life": math.nan}, {"bucket_seconds": -1}, {"buckets": 0}):
        with pytest.raises(ValueError):
            AgentBaseline("a1", "f", **bad)
    with pytest.raises(ValueError):
        b.window(0)


def test_histogram_and_transitions_exact_below_capacity(realistic: list[ActionEvent]) -> None:
    events = realistic[:2000]
    b = fed(events, max_transitions=1024)
    actions = [e.action for e in events]
    expected = Counter(actions)
    assert {a.action: a.count for a in b.top_actions()} == expected
    assert all(a.error == 0 for a in b.top_actions())
    counts = [a.count for a in b.top_actions()]
    assert counts == sorted(counts, reverse=True)
    assert b.top_actions(3) == b.top_actions()[:3]
    assert b.action_count("search_web") == expected["search_web"]
    assert b.action_count("never") == 0
    pairs = Counter(pairwise(actions))
    assert {(t.prev, t.action): t.count for t in b.top_transitions()} == pairs
    prev, action = pairs.most_common(1)[0][0]
    assert b.transition_count(prev, action) == pairs[(prev, action)]


def test_repeat_counts_identical_action_target_runs() -> None:
    b = AgentBaseline("a1", "f")
    runs = []
    for i, (action, target) in enumerate(
        [("read", "/a"), ("read", "/a"), ("read", "/a"), ("read", "/b"), ("write", "/b")]
        + [("write", "/b")] * 4
        + [("chat", None), ("chat", None)]
    ):
        b.update(ev(i, action, target=target))
        runs.append(b.repeat)
    assert runs == [1, 2, 3, 1, 1, 2, 3, 4, 5, 1, 2]


# ---------------------------------------------------------------- EW statistics


def test_ew_is_exact_while_warming_up() -> None:
    rng = random.Random(1)
    costs = [rng.uniform(0, 0.01) for _ in range(100)]
    latencies = [rng.uniform(1, 500) for _ in range(100)]
    b = fed(
        ev(i, cost_usd=c, latency_ms=lat)
        for i, (c, lat) in enumerate(zip(costs, latencies, strict=True))
    )
    assert b.ew_cost.count == 100
    assert b.ew_cost.mean == pytest.approx(statistics.fmean(costs), rel=1e-12)
    assert b.ew_cost.std == pytest.approx(statistics.pstdev(costs), rel=1e-9)
    assert b.ew_latency.mean == pytest.approx(statistics.fmean(latencies), rel=1e-12)
    assert b.ew_latency.std == pytest.approx(statistics.pstdev(latencies), rel=1e-9)


def test_ew_mean_converges_and_tracks_a_level_shift() -> None:
    rng = random.Random(2)
    events = [ev(i, cost_usd=rng.uniform(0, 0.002)) for i in range(1000)]
    events += [ev(1000 + i, cost_usd=0.01 + rng.uniform(-1e-3, 1e-3)) for i in range(3000)]
    b = fed(events[:1000])
    assert b.ew_cost.mean == pytest.approx(0.001, abs=2e-4)
    assert b.ew_cost.std == pytest.approx(0.002 / math.sqrt(12), rel=0.25)
    b = fed(events)
    assert b.ew_cost.mean == pytest.approx(0.01, abs=1e-4)
    assert b.ew_cost.std < 1e-3  # the shift has washed out of the variance too


def test_half_life_sets_alpha_and_speed() -> None:
    assert AgentBaseline("a", "f", half_life=1).alpha == pytest.approx(0.5)
    slow = fed((ev(i, cost_usd=1.0 if i >= 1000 else 0.0) for i in range(1100)), half_life=1000)
    fast = fed((ev(i, cost_usd=1.0 if i >= 1000 else 0.0) for i in range(1100)), half_life=10)
    assert fast.ew_cost.mean > 0.99
    assert slow.ew_cost.mean < 0.2


def test_failure_rate_and_latency_skip_unreported() -> None:
    rng = random.Random(3)
    statuses = rng.choices(["ok", "error", "denied"], [0.8, 0.1, 0.1], k=5000)
    b = fed(ev(i, status=s, latency_ms=0.0 if i % 2 else 100.0) for i, s in enumerate(statuses))
    assert b.ew_failure.mean == pytest.approx(0.2, abs=0.05)
    assert b.ew_failure.std == pytest.approx(0.4, abs=0.05)
    assert b.ew_latency.count == 2500  # zero latency means "not reported"
    assert b.ew_latency.mean == pytest.approx(100.0)
    assert b.ew_latency.std == pytest.approx(0.0, abs=1e-9)


def test_interval_and_rate_use_watermark_advance() -> None:
    b = fed(ev(2.0 * i) for i in range(50))
    assert b.ew_interval.mean == pytest.approx(2.0)
    assert b.ew_interval.count == 49
    assert b.rate == pytest.approx(0.5)
    # late events add zero intervals, so the mean stays span / (n - 1)
    times = [0, 10, 5, 20, 15, 30, 25, 40]
    b = fed(ev(t) for t in times)
    assert b.ew_interval.mean == pytest.approx(40 / 7)


def test_huge_values_stay_finite_and_serializable() -> None:
    events = [
        ev(i, cost_usd=1e308, latency_ms=1e308, input_tokens=2**53, output_tokens=2**53)
        for i in range(3000)
    ]
    b = fed(events)
    assert all(math.isfinite(x) for x in (b.ew_cost.mean, b.ew_cost.std, b.ew_latency.std))
    assert b.input_tokens == 3000 * 2**53  # beyond 64 bits: the text fallback keeps it exact
    restored = AgentBaseline.from_bytes(b.to_bytes())
    assert restored.input_tokens == 3000 * 2**53
    assert restored.window(60).cost_usd == b.window(60).cost_usd > 0
    assert restored.to_bytes() == b.to_bytes()


# ---------------------------------------------------------------- windows


def test_window_sums_whole_buckets_overlapping_the_interval() -> None:
    # one event per 10 s for 10 minutes; bucket k covers [T0 + 60 k, T0 + 60 (k + 1))
    events = [ev(10 * i, status="error" if i % 6 == 0 else "ok", cost_usd=0.001) for i in range(60)]
    b = fed(events)
    wm = T0_EPOCH + 590
    w = b.window(60)  # (wm - 60, wm] overlaps buckets 8 and 9
    assert (w.count, w.errors, w.end, w.start) == (12, 2, wm, T0_EPOCH + 480)
    assert w.cost_usd == pytest.approx(0.012)
    assert w.seconds == pytest.approx(110)
    assert b.window(300).count == 36  # buckets 4..9
    assert b.window(3600).count == 60
    assert b.window(1e9).count == 60


def test_window_at_later_time_ages_out_an_idle_agent() -> None:
    b = fed(ev(i) for i in range(0, 120, 5))  # 24 events in buckets 0 and 1
    assert b.window(3600).count == 24
    later = T0_EPOCH + 60 * 30
    assert b.window(3600, at=later).count == 24
    assert b.window(60, at=later).count == 0
    assert b.window(60 * 29 - 1, at=later).count == 12  # reaches back into bucket 1 only


def test_time_going_forward_expires_buckets() -> None:
    b = fed(ev(i, cost_usd=1.0) for i in range(60))  # bucket 0: 60 events
    b.update(ev(3600 + 30))  # bucket 60: bucket 0 has left the 60-bucket ring
    assert b.window(3600).count == 1
    assert b.window(3600).cost_usd == 0.0
    assert b.count == 61
    assert b.cost_usd == pytest.approx(60.0)
    b.update(ev(3600 + 5000))  # a jump longer than the ring clears everything
    assert b.window(1e9).count == 1


def test_out_of_order_events_go_to_their_live_bucket_and_too_old_ones_are_dropped() -> None:
    b = fed([ev(600, cost_usd=1.0), ev(610)])  # bucket 10
    b.update(ev(450, status="error", cost_usd=2.0))  # late, bucket 7, still live
    b.update(ev(-3000, status="error", cost_usd=4.0))  # older than the ring
    assert b.watermark == pytest.approx(T0_EPOCH + 610)
    w = b.window(240)  # buckets 6..10
    assert (w.count, w.errors, w.cost_usd) == (3, 1, 3.0)
    assert b.window(1e9).count == 3
    assert (b.count, b.errors) == (4, 2)  # totals still count the too-old event
    assert b.cost_usd == pytest.approx(7.0)
    assert b.first_seen == pytest.approx(T0_EPOCH - 3000)


def test_ring_slots_are_reset_when_reused() -> None:
    b = AgentBaseline("a1", "f", bucket_seconds=10, buckets=6)
    for t in range(0, 200, 3):  # wraps the 6-slot ring several times
        b.update(ev(t, status="denied" if t % 2 else "ok"))
    # (138, 198] overlaps buckets 13..19; the 6-slot ring caps it at 14..19, slots that
    # held buckets 2..7, 8..13 before
    w = b.window(60)
    times = [t for t in range(0, 200, 3) if t // 10 >= 14]
    assert w.start == pytest.approx(T0_EPOCH + 140)
    assert w.count == len(times)
    assert w.denied == sum(1 for t in times if t % 2)


event_times = st.lists(
    st.one_of(st.floats(-500, 4000), st.floats(-1e5, 1e5)), min_size=1, max_size=120
)


@settings(max_examples=150, deadline=None)
@given(
    times=event_times,
    seconds=st.floats(0.5, 5000),
    at_offset=st.one_of(st.none(), st.floats(-300, 3000)),
    width=st.sampled_from([1.0, 7.5, 60.0]),
    nbuckets=st.integers(1, 40),
)
def test_window_matches_a_brute_force_reference(
    times: list[float], seconds: float, at_offset: float | None, width: float, nbuckets: int
) -> None:
    b = AgentBaseline("a1", "f", bucket_seconds=width, buckets=nbuckets)
    events = [ev(t, status="error" if i % 3 == 0 else "ok") for i, t in enumerate(times)]
    for e in events:
        b.update(e)
    stamps = [e.ts.timestamp() for e in events]
    wm = max(stamps)
    end = wm if at_offset is None else wm + at_offset
    head = math.floor(wm / width)
    lo = max(math.floor((end - seconds) / width), head - nbuckets + 1)
    hi = min(math.floor(end / width), head)
    chosen = [i for i, s in enumerate(stamps) if lo <= math.floor(s / width) <= hi]
    w = b.window(seconds, at=None if at_offset is None else end)
    assert w.count == len(chosen)
    assert w.errors == sum(1 for i in chosen if i % 3 == 0)
    assert w.end == end


# ---------------------------------------------------------------- bounded tables


def test_tables_stay_bounded_under_unique_names() -> None:
    b = fed(adversarial_events())
    assert len(b.top_actions()) == 32
    assert len(b.top_transitions()) == 64
    assert b.count == 10_000
    assert b.last_action == "action-09999"


def test_space_saving_keeps_heavy_hitters_with_bounded_error() -> None:
    rng = random.Random(4)
    stream: list[str] = []
    for i in range(20_000):
        r = rng.random()
        stream.append("search" if r < 0.2 else "read" if r < 0.3 else f"noise-{i}")
    truth = Counter(stream)
    b = fed(ev(i * 0.1, a) for i, a in enumerate(stream))
    n, k = len(stream), 32
    tracked = {a.action: a for a in b.top_actions()}
    assert {"search", "read"} <= tracked.keys()  # true count > N / k: guaranteed present
    assert b.top_actions(2)[0].action == "search"
    for item in tracked.values():
        assert item.count - item.error <= truth[item.action] <= item.count
        assert item.error <= n / k
    for t in b.top_transitions():
        true = sum(1 for p, c in pairwise(stream) if (p, c) == (t.prev, t.action))
        assert t.count - t.error <= true <= t.count


# ---------------------------------------------------------------- distinct targets


def test_distinct_targets_estimate_within_15_percent_for_200() -> None:
    targets = [f"https://docs.example.com/guide/section-{i}/page.html" for i in range(200)]
    b = fed(ev(i, target=t) for i, t in enumerate(targets * 5))  # repeats do not count
    assert b.distinct_targets() == pytest.approx(200, rel=0.15)


def test_distinct_targets_error_over_many_sets() -> None:
    errors = []
    for s in range(20):
        b = fed(ev(i, target=f"/srv/{s}/file-{i}.csv") for i in range(200))
        errors.append(abs(b.distinct_targets() - 200) / 200)
    assert statistics.fmean(errors) < 0.10
    assert max(errors) < 0.30
    big = fed(ev(i * 0.01, target=f"user{i}@example.com") for i in range(20_000))
    assert big.distinct_targets() == pytest.approx(20_000, rel=0.25)
    small = fed(ev(i, target=t) for i, t in enumerate(["/a", "/b", "/a", None, "/c"]))
    assert round(small.distinct_targets()) == 3


# ---------------------------------------------------------------- serialization


def test_round_trip_realistic(realistic: list[ActionEvent]) -> None:
    b = fed(realistic)
    data = b.to_bytes()
    assert data[:3] == b"AW" + bytes([FORMAT_VERSION])
    restored = AgentBaseline.from_bytes(data)
    assert restored.to_bytes() == data
    assert restored == b
    assert restored.to_dict() == b.to_dict()
    assert restored.window(300) == b.window(300)
    assert restored.top_transitions() == b.top_transitions()
    # equal behaviour afterwards, including Space-Saving evictions and ring expiry
    more = [e.model_copy(update={"ts": e.ts + timedelta(minutes=50)}) for e in realistic[:3000]]
    more += adversarial_events(200)
    for e in more:
        b.update(e)
        restored.update(e)
    assert restored.to_bytes() == b.to_bytes()


def test_serialized_size_realistic(realistic: list[ActionEvent]) -> None:
    b = fed(realistic)
    assert len(b.top_actions()) == 25
    assert b.distinct_targets() == pytest.approx(200, rel=0.15)
    assert len(b.top_transitions()) == 64  # full: the size includes evicted-key errors
    assert sum(1 for s in range(60) if b.window(60, at=T0_EPOCH + 60 * s + 1).count) == 60
    size = len(b.to_bytes())
    assert size <= 2048, size


def test_serialized_size_adversarial() -> None:
    b = fed(adversarial_events())
    size = len(b.to_bytes())
    assert size <= 2048, size


def test_serialized_size_is_bounded_by_capacities_not_stream_length() -> None:
    long_name = "x" * 100
    sizes = []
    for n in (1_000, 10_000):
        b = fed(ev(i * 0.36, f"{long_name}{i:06d}", target=f"/{i}" * 100) for i in range(n))
        sizes.append(len(b.to_bytes()))
    # at most 32 + 2 * 64 + 1 names of 106 bytes, the last target and a fixed part
    assert sizes[1] <= 161 * 110 + 1024 + 1000
    assert sizes[1] < sizes[0] * 1.1  # 10x the events, about the same size


def test_from_bytes_rejects_foreign_and_future_records() -> None:
    data = fed([ev(0), ev(1, "x")]).to_bytes()
    with pytest.raises(ValueError, match="not an agentwatch"):
        AgentBaseline.from_bytes(b'{"n": 1}')
    with pytest.raises(ValueError, match="version"):
        AgentBaseline.from_bytes(data[:2] + bytes([FORMAT_VERSION + 1]) + data[3:])
    with pytest.raises(ValueError, match="trailing"):
        AgentBaseline.from_bytes(data + b"\0")
    for cut in range(len(data)):
        with pytest.raises(ValueError):
            AgentBaseline.from_bytes(data[:cut])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_corrupted_records_raise_only_value_error(data: st.DataObject) -> None:
    record = bytearray(fed(realistic_events(300, seed=5)).to_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(record) - 1))
        record[pos] = data.draw(st.integers(0, 255))
    try:
        restored = AgentBaseline.from_bytes(bytes(record))
    except ValueError:
        return
    assert isinstance(restored.to_bytes(), bytes)  # whatever decodes is usable


# any character an id or name may hold (docs/operations.md, "Identifiers")
name_chars = st.characters(exclude_categories=("Cs",)).filter(
    lambda c: re.fullmatch(NAME_PATTERN, c) is not None
)
names = st.one_of(
    st.sampled_from(["search", "read", "write", "chat"]),
    st.text(name_chars, min_size=1, max_size=12),
)
events_strategy = st.lists(
    st.builds(
        lambda t, action, status, kind, target, cost, latency, tokens: ev(
            t,
            action,
            status=status,
            kind=kind,
            target=target,
            cost_usd=cost,
            latency_ms=latency,
            input_tokens=tokens,
        ),
        t=st.floats(-4000, 8000),
        action=names,
        status=st.sampled_from(["ok", "error", "denied"]),
        kind=st.sampled_from(["tool", "llm", "api", "other"]),
        target=st.one_of(st.none(), names),
        cost=st.floats(0, 1e12),
        latency=st.one_of(st.just(0.0), st.floats(0, 1e6)),
        tokens=st.integers(0, 2**53),
    ),
    max_size=80,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=events_strategy, second=events_strategy)
def test_round_trip_holds_for_arbitrary_event_sequences(
    first: list[ActionEvent], second: list[ActionEvent]
) -> None:
    config = {"max_actions": 4, "max_transitions": 6, "buckets": 10, "bucket_seconds": 30.0}
    b = fed(first, **config)
    data = b.to_bytes()
    restored = AgentBaseline.from_bytes(data)
    assert restored.to_bytes() == data
    assert restored.to_dict() == b.to_dict()
    for e in second:
        b.update(e)
        restored.update(e)
    assert restored.to_bytes() == b.to_bytes()
    assert len(b.top_actions()) <= 4
    assert len(b.top_transitions()) <= 6


def test_unicode_and_surrogate_names_survive() -> None:
    b = fed([ev(0, "réad ✓", target="/ü/写"), ev(1, "写", target="/ü/写")])
    restored = AgentBaseline.from_bytes(b.to_bytes())
    assert restored.last_target == "/ü/写"
    assert restored.transition_count("réad ✓", "写") == 1
    # validation rejects lone surrogates, but the baseline must not crash if one slips by
    odd = ActionEvent.model_construct(
        event_id="x", agent_id="a1", ts=T0, action="r\ud800", target="\udfff", fleet="f"
    )
    b.update(odd)
    restored = AgentBaseline.from_bytes(b.to_bytes())
    assert (restored.last_action, restored.last_target) == ("r\ud800", "\udfff")
    assert restored.to_bytes() == b.to_bytes()


# ---------------------------------------------------------------- determinism


def test_same_events_same_bytes(realistic: list[ActionEvent]) -> None:
    one = fed(realistic)
    two = fed(list(realistic))
    assert one.to_bytes() == two.to_bytes()
    assert one == two
    three = fed(realistic[:-1])
    assert three != one


_SCRIPT = """
import hashlib, sys
from tests.detectors.test_baseline import fed, realistic_events, adversarial_events
b = fed(realistic_events(3000) + adversarial_events(300))
print(hashlib.sha256(b.to_bytes()).hexdigest())
"""


def test_state_does_not_depend_on_the_process_hash_seed() -> None:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    digests = set()
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", _SCRIPT],
            env={**os.environ, "PYTHONHASHSEED": seed},
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        )
        digests.add(out.stdout.strip())
    local = fed(realistic_events(3000) + adversarial_events(300))
    assert digests == {hashlib.sha256(local.to_bytes()).hexdigest()}


# ---------------------------------------------------------------- readable view


def test_to_dict_is_json_and_readable(realistic: list[ActionEvent]) -> None:
    b = fed(realistic)
    view = b.to_dict()
    assert orjson.loads(orjson.dumps(view)) == view
    assert view["events"] == 10_000
    assert view["first_seen"].endswith("Z")
    assert datetime.fromisoformat(view["watermark"]).timestamp() == pytest.approx(b.watermark)
    assert set(view["windows"]) == {"1m", "5m", "60m"}
    assert view["windows"]["60m"]["count"] == b.window(3600).count
    assert view["windows"]["1m"]["count"] <= view["windows"]["5m"]["count"]
    assert view["top_actions"][0] == {
        "action": b.top_actions()[0].action,
        "count": b.top_actions()[0].count,
        "error": 0,
    }
    assert len(view["top_transitions"]) == 10
    assert view["distinct_targets"] == round(b.distinct_targets())
    assert view["ew"]["failure"]["mean"] == pytest.approx(0.04, abs=0.03)
    assert view["kinds"]["llm"] + view["kinds"]["tool"] == 10_000
