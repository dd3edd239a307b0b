"""Joining spans to the agent named by their invoke_agent ancestor, within bounds."""

from __future__ import annotations

from agentwatch.ingest.mapping import Mapped, SpanMapper
from agentwatch.ingest.pipeline import Outcome, SpanPipeline
from agentwatch.ingest.prices import load_prices
from agentwatch.ingest.traces import Joined, TraceJoiner
from agentwatch.schemas import decode_event
from tests.ingest.spans import agent_span, record, span_id, tool, trace_id


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def pipeline(clock: Clock, hold_s: float = 30.0, max_held: int = 1000) -> SpanPipeline:
    return SpanPipeline(
        SpanMapper(load_prices()),
        TraceJoiner(hold_s, max_held, max_links=5 * max_held, clock=clock),
    )


def agents_of(out: Outcome) -> dict[str, str]:
    """action -> agent of the events out."""
    return {decode_event(v).action: k.decode() for k, v in out.events}


def test_children_sent_before_their_agent_span_wait_for_it() -> None:
    clock = Clock()
    p = pipeline(clock)
    trace, root, chain = trace_id(), span_id(), span_id()
    search = tool("search", agent=None, trace=trace, parent=chain)
    plumbing = record({"openinference.span.kind": "CHAIN"}, trace=trace, span=chain, parent=root)
    out = Outcome()
    p.process([search], out)
    assert out.events == [] and p.held == 1
    p.process([plumbing], out)  # a link in the chain, no action of its own
    assert out.events == [] and p.held == 1 and out.skipped["not_an_action"] == 1
    p.process([agent_span("billing-bot", trace=trace, span=root)], out)
    assert agents_of(out) == {"search": "billing-bot", "invoke_agent": "billing-bot"}
    assert p.held == 0 and out.rejected == []


def test_the_nearest_agent_ancestor_wins_in_a_multi_agent_trace() -> None:
    p = pipeline(Clock())
    trace, outer, inner = trace_id(), span_id(), span_id()
    spans = [
        tool("delegate", agent=None, trace=trace, parent=outer),
        tool("lookup", agent=None, trace=trace, parent=inner),
        agent_span("helper", trace=trace, span=inner, parent=outer),
        agent_span("planner", trace=trace, span=outer),
    ]
    out = Outcome()
    p.process(spans, out)
    assert agents_of(out) == {"delegate": "planner", "lookup": "helper", "invoke_agent": "planner"}
    # both invoke_agent events were produced, each for its own agent
    assert sorted(k.decode() for k, v in out.events if b'"invoke_agent"' in v) == [
        "helper",
        "planner",
    ]


def test_an_agent_span_seen_first_still_names_later_children() -> None:
    p = pipeline(Clock())
    trace, root, step = trace_id(), span_id(), span_id()
    out = Outcome()
    p.process([agent_span("early", trace=trace, span=root)], out)
    p.process([record({"x": 1}, trace=trace, span=step, parent=root)], out)  # plumbing
    p.process([tool("late", agent=None, trace=trace, parent=step)], out)
    assert agents_of(out)["late"] == "early"


def test_the_span_or_resource_identity_needs_no_wait() -> None:
    p = pipeline(Clock())
    out = Outcome()
    own = tool("own", agent="self-named", parent=span_id())
    by_resource = tool("res", agent=None, parent=span_id(), resource_agent="Res Agent")
    p.process([own, by_resource], out)
    assert agents_of(out) == {"own": "self-named", "res": "Res-Agent"}
    assert p.held == 0


def test_a_complete_chain_without_an_agent_is_rejected_at_once() -> None:
    p = pipeline(Clock())
    trace, root = trace_id(), span_id()
    out = Outcome()
    p.process([tool("orphan", agent=None, trace=trace)], out)  # a root span, no agent anywhere
    p.process([tool("child", agent=None, trace=trace, parent=root)], out)
    p.process([record({"http.request.method": "GET"}, trace=trace, span=root)], out)
    assert [(s.name, reason) for s, reason, _ in out.rejected] == [
        ("execute_tool orphan", "no_agent_id"),
        ("execute_tool child", "no_agent_id"),
    ]
    assert out.events == [] and p.held == 0


def test_a_span_waits_at_most_hold_s() -> None:
    clock = Clock()
    p = pipeline(clock, hold_s=5.0)
    out = Outcome()
    waiting = tool("stuck", agent=None, parent=span_id())
    with_resource_later = tool("later", agent=None, parent=span_id())
    p.process([waiting], out)
    clock.now += 4.9
    p.expire(out)
    assert p.held == 1 and out.rejected == []
    p.process([with_resource_later], out)
    clock.now += 0.2
    p.expire(out)
    assert [s.name for s, reason, _ in out.rejected if reason == "no_agent_id"] == [
        "execute_tool stuck"
    ]
    assert p.held == 1
    clock.now += 5.0
    p.expire(out)
    assert p.held == 0 and len(out.rejected) == 2


def test_memory_is_bounded_oldest_held_spans_are_decided_early() -> None:
    clock = Clock()
    p = pipeline(clock, hold_s=600.0, max_held=10)
    out = Outcome()
    spans = [tool(f"t{i}", agent=None, parent=span_id()) for i in range(25)]
    p.process(spans, out)
    assert p.held == 10
    assert [s.name for s, _, _ in out.rejected] == [f"execute_tool t{i}" for i in range(15)]
    assert out.expired_early == 15
    joiner = p.joiner
    assert joiner.links <= joiner.max_links


def test_link_memory_is_bounded_by_dropping_idle_traces() -> None:
    clock = Clock()
    joiner = TraceJoiner(hold_s=600.0, max_held=100, max_links=50, clock=clock)
    mapper = SpanMapper(load_prices())

    out = Joined()
    for _ in range(40):  # 40 traces each with one waiting span and a few links
        trace, missing = trace_id(), span_id()
        span = tool("w", agent=None, trace=trace, parent=missing)
        mapped = mapper.classify(span)
        assert isinstance(mapped, Mapped)
        joiner.add(span, mapped, out)
        for _ in range(2):
            joiner.add(record({}, trace=trace, parent=missing), None, out)
        clock.now += 1
    assert joiner.links <= 50
    assert out.expired_early > 0
    assert joiner.held + out.expired_early == 40


def test_decided_spans_behind_a_waiting_one_do_not_pile_up() -> None:
    clock = Clock()
    p = pipeline(clock, hold_s=600.0, max_held=100_000)
    out = Outcome()
    p.process([tool("first", agent=None, parent=span_id())], out)  # waits all along
    for _ in range(500):  # each request: children first, then their agent span
        trace, root = trace_id(), span_id()
        p.process(
            [
                *[tool("t", agent=None, trace=trace, parent=root) for _ in range(8)],
                agent_span("busy", trace=trace, span=root),
            ],
            out,
        )
    assert p.held == 1 and len(out.events) == 500 * 9
    assert len(p.joiner._queue) <= 2 * p.held + 1024 + 8
