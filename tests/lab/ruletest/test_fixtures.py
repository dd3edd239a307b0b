"""Fixture lines made into events: series, cycling values, numbering, copies, wire checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentwatch.detectors.rules import RulesError
from agentwatch.lab.ruletest.fixtures import make_events
from agentwatch.lab.ruletest.spec import MAX_EVENTS_PER_TEST, TestCase

START = datetime(2026, 1, 1, tzinfo=UTC)


def case(agents: dict[str, Any]) -> TestCase:
    return TestCase.model_validate({"name": "t", "agents": agents, "expect": "none"})


def problems(agents: dict[str, Any]) -> list[str]:
    with pytest.raises(RulesError) as info:
        make_events(case(agents), START, file="t.yml", index=2)
    return info.value.lines


def test_a_series_cycles_lists_and_numbers_strings() -> None:
    events = make_events(
        case(
            {
                "a1": {
                    "fleet": "coder",
                    "events": [
                        {
                            "at": 100,
                            "every": 0.5,
                            "repeat": 4,
                            "action": ["search", "read_file"],
                            "target": "doc-{i}",
                            "status": ["ok", "ok", "error"],
                            "cost": [0.01, 0.02],
                            "kind": "llm",
                            "model": "m",
                            "input_tokens": 10,
                            "output_tokens": 2,
                            "latency_ms": 30,
                            "session": "s-{i}",
                            "risk": "low",
                            "approved_by": "bob",
                            "error": "e",
                            "attributes": {"k": "v"},
                        }
                    ],
                }
            }
        ),
        START,
    )
    assert [(e.action, e.target, e.status, e.cost_usd) for e in events] == [
        ("search", "doc-0", "ok", 0.01),
        ("read_file", "doc-1", "ok", 0.02),
        ("search", "doc-2", "error", 0.01),
        ("read_file", "doc-3", "ok", 0.02),
    ]
    assert [e.ts - START for e in events] == [
        timedelta(seconds=s) for s in (100, 100.5, 101, 101.5)
    ]
    first = events[0]
    assert (first.event_id, first.agent_id, first.fleet, first.kind, first.model) == (
        "a1#0",
        "a1",
        "coder",
        "llm",
        "m",
    )
    assert (first.input_tokens, first.output_tokens, first.latency_ms) == (10, 2, 30.0)
    assert (first.session_id, first.risk, first.approved_by, first.error) == (
        "s-0",
        "low",
        "bob",
        "e",
    )
    assert first.attributes == {"k": "v"}


def test_agents_are_merged_in_time_order_and_copies_are_numbered() -> None:
    events = make_events(
        case(
            {
                "peer-{n}": {
                    "copies": 2,
                    "events": [{"action": "x", "target": "t{n}", "repeat": 2, "every": 10}],
                },
                "solo": [{"at": 5, "action": "y"}, {"at": 0, "action": "z"}],
            }
        ),
        START,
    )
    assert [
        (int((e.ts - START).total_seconds()), e.agent_id, e.action, e.target) for e in events
    ] == [
        (0, "peer-0", "x", "t0"),
        (0, "peer-1", "x", "t1"),
        (0, "solo", "z", None),
        (5, "solo", "y", None),
        (10, "peer-0", "x", "t0"),
        (10, "peer-1", "x", "t1"),
    ]
    assert len({e.event_id for e in events}) == len(events)


def test_values_an_agent_could_not_publish_are_problems_named_by_fixture_key() -> None:
    assert problems(
        {
            "a1": [
                {"action": "x", "status": "broken"},
                {"action": "x", "cost": -1},
                {"action": "x", "repeat": 3, "target": ["a", 5]},
                {"action": []},
                {"action": "ok"},
            ],
            "bad id/": [{"action": "x"}],
        }
    ) == [
        "t.yml: key 'tests[2].agents.a1.events[0].status': not a valid event value: Input "
        "should be 'ok', 'error' or 'denied' (found 'broken' (a string))",
        "t.yml: key 'tests[2].agents.a1.events[1].cost': not a valid event value: Input should "
        "be greater than or equal to 0 (found -1 (an integer))",
        "t.yml: key 'tests[2].agents.a1.events[2].target': not a valid event value: Input "
        "should be a valid string (found 5 (an integer))",
        "t.yml: key 'tests[2].agents.a1.events[3].action': an empty list: give at least one "
        "value to cycle over",
        "t.yml: key 'tests[2].agents.bad id/': not a valid agent id: may only contain A-Z a-z "
        "0-9 . _ : @ - and must not be '.' or '..' (found 'bad id/' (a string))",
    ]


def test_copies_need_a_number_in_the_id() -> None:
    assert problems({"peer": {"copies": 3, "events": [{"action": "x"}]}}) == [
        "t.yml: key 'tests[2].agents.peer.copies': 3 copies need '{n}' in the agent id to "
        "tell them apart"
    ]


def test_too_many_events() -> None:
    (line,) = problems(
        {"p-{n}": {"copies": 2, "events": [{"action": "x", "repeat": MAX_EVENTS_PER_TEST}]}}
    )
    assert line == (
        "t.yml: key 'tests[2].agents': test 't' makes 2,000,000 events; at most 1,000,000"
    )
