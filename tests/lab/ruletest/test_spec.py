"""The rule test file format: what it accepts, and every problem of a bad one at once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agentwatch.detectors.rules import RulesError
from agentwatch.lab.ruletest.spec import DEFAULT_START, Expectation, load_test_file

Write = Callable[..., Path]


def problems_of(path: Path) -> list[str]:
    with pytest.raises(RulesError) as info:
        load_test_file(path)
    return info.value.lines


def test_a_complete_file(write_tests: Write) -> None:
    path = write_tests(
        """
start: 2026-03-01T12:00:00Z
tests:
  - name: full
    agents:
      a1:
        fleet: coder
        events:
          - {at: 5m, action: search, repeat: 3, every: 2s}
      b1: [{action: read}]
    expect:
      - {rule: Flood, agent: a1, kind: action_budget, severity: error, at: 1m, within_s: 30s,
         count: 1}
    ignore: [Unapproved]
  - name: quiet
    agents: {a1: [{action: search}]}
    expect: none
"""
    )
    spec = load_test_file(path)
    assert spec.rules_path(path) == path.parent / "rules.yml"
    assert spec.start_utc() == datetime(2026, 3, 1, 12, tzinfo=UTC)
    full, quiet = spec.tests
    a1 = full.agents["a1"]
    assert (a1.fleet, a1.events[0].at, a1.events[0].every, a1.events[0].repeat) == (
        "coder",
        300.0,
        2.0,
        3,
    )
    assert full.agents["b1"].fleet == "default"
    assert full.expect[0].window() == (60.0, 90.0)
    assert full.ignore == ["Unapproved"]
    assert quiet.expect == []


@pytest.mark.parametrize("nothing", ["none", "None", "[]", "null"])
def test_expect_nothing(write_tests: Write, nothing: str) -> None:
    path = write_tests(f"tests: [{{name: t, agents: {{a: [{{action: x}}]}}, expect: {nothing}}}]")
    assert load_test_file(path).tests[0].expect == []


def test_defaults(write_tests: Write) -> None:
    path = write_tests("tests: [{name: t, agents: {a: [{action: x}]}, expect: none}]", rules=None)
    spec = load_test_file(path)
    assert spec.rules_path(path) is None  # the shipped rules
    assert spec.start_utc() == DEFAULT_START


def test_expectation_windows() -> None:
    assert Expectation(rule="R", agent="a").window() == (0.0, float("inf"))
    assert Expectation(rule="R", agent="a", at=10).window() == (10.0, float("inf"))
    assert Expectation(rule="R", agent="a", within_s=10).window() == (0.0, 10.0)
    e = Expectation(rule="R", agent="a", kind="k", severity="error", at=10, within_s=5)
    assert e.matches("R", "a", "k", "error", 15.0)
    assert not e.matches("R", "a", "k", "error", 15.1)
    assert not e.matches("R", "a", "other", "error", 12.0)
    assert not e.matches("R", "a", "k", "warning", 12.0)
    assert not e.matches("R", "b", "k", "error", 12.0)


def test_every_problem_of_a_bad_file_is_reported_with_its_key_path(write_tests: Write) -> None:
    path = write_tests(
        """
tests:
  - name: t
    agents:
      a1:
        flet: coder
        events:
          - {at: soon, acton: search}
    expect:
      - {rule: Flood, agent: a1, within: 30, severity: fatal}
  - name: u
    agents: {a1: [{action: x}]}
    expct: none
"""
    )
    assert problems_of(path) == [
        f"{path}: key 'tests[0].agents.a1.events[0].at': not a duration: expected a duration "
        "such as 30s, 5m or 1h30m, or seconds (not negative), found 'soon' (a string)",
        f"{path}: key 'tests[0].agents.a1.events[0].action': missing: this key is required",
        f"{path}: key 'tests[0].agents.a1.events[0].acton': unknown key; did you mean 'action'?",
        f"{path}: key 'tests[0].agents.a1.flet': unknown key; did you mean 'fleet'?",
        f"{path}: key 'tests[0].expect[0].severity': not an allowed value: expected one of "
        "info, warning, error, critical, found 'fatal' (a string)",
        f"{path}: key 'tests[0].expect[0].within': unknown key; did you mean 'within_s'?",
        f"{path}: key 'tests[1].expect': missing: this key is required",
        f"{path}: key 'tests[1].expct': unknown key; did you mean 'expect'?",
    ]


def test_an_expectation_on_an_agent_the_test_does_not_have(write_tests: Write) -> None:
    path = write_tests(
        """
tests:
  - name: t
    agents: {"peer-{n}": {copies: 2, events: [{action: x}]}}
    expect: [{rule: Flood, agent: peer-2}, {rule: Flood, agent: peer-1}]
"""
    )
    assert problems_of(path) == [
        f"{path}: key 'tests[0].expect[0].agent': test 't' has no agent 'peer-2'; "
        "did you mean 'peer-1'?"
    ]


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("", "not a rule test file: expected a mapping with a 'tests' list, found an empty file"),
        ("tests: [\n", "not valid YAML: line 2, column 1"),
        ("tests: []", "key 'tests': too short: expected at least 1 items"),
        ("- 1", "not a rule test file: expected a mapping with a 'tests' list, found list"),
    ],
)
def test_files_that_are_not_test_files(write_tests: Write, body: str, line: str) -> None:
    path = write_tests(body, rules=None)
    (only,) = problems_of(path)
    assert only.startswith(f"{path}: {line}")


def test_a_missing_file(tmp_path: Path) -> None:
    assert problems_of(tmp_path / "nope.yml") == [
        f"{tmp_path / 'nope.yml'}: cannot read: No such file or directory"
    ]
