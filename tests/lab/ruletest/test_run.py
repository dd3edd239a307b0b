"""Rule tests run through the engine: passing tests pass, failing ones fail with the diff."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from agentwatch.lab.ruletest.render import render_json, render_text
from agentwatch.lab.ruletest.run import Fired, compare, run_file
from agentwatch.lab.ruletest.spec import Expectation

Write = Callable[..., Path]

#: 10 calls 1 s apart: the budget (5 per 60 s) fires on the 6th, at 5 s, once (cooldown).
FLOOD = "flood-1: [{action: search, target: 'q-{i}', repeat: 10, every: 1}]"


def fired(rule: str, agent: str, at: float, kind: str = "k", severity: str = "error") -> Fired:
    return Fired(rule, agent, kind, severity, at, "summary", f"an-{rule}-{at}")


def test_compare_counts_windows_and_ignores() -> None:
    got = [fired("R", "a", 10), fired("R", "a", 50), fired("S", "a", 10), fired("T", "b", 1)]
    checks, unexpected = compare(
        [
            Expectation(rule="R", agent="a", at=0, within_s=20),
            Expectation(rule="R", agent="a", count=2),
            Expectation(rule="S", agent="a", count=0),
        ],
        got,
        ignore=["T"],
    )
    assert [(c.ok, len(c.matched), c.reason) for c in checks] == [
        (True, 1, ""),
        (True, 2, ""),
        (False, 1, "fired once, expected 0"),
    ]
    assert unexpected == []
    checks, unexpected = compare([Expectation(rule="R", agent="a", within_s=5)], got)
    assert (checks[0].ok, checks[0].reason) == (False, "did not fire")
    assert unexpected == got  # nothing accounted for, nothing ignored


def test_a_passing_file(write_tests: Write) -> None:
    path = write_tests(
        f"""
tests:
  - name: flood
    agents: {{{FLOOD}}}
    expect:
      - {{rule: Flood, agent: flood-1, kind: action_budget, severity: error, at: 5, within_s: 0,
         count: 1}}
  - name: calm
    agents: {{calm-1: [{{action: search, repeat: 5, every: 30}}]}}
    expect: none
"""
    )
    result = run_file(path)
    assert result.ok and not result.problems
    flood, calm = result.cases
    assert flood.ok and flood.events == 10
    assert [(f.rule, f.agent, f.kind, f.severity, f.at) for f in flood.fired] == [
        ("Flood", "flood-1", "action_budget", "error", 5.0)
    ]
    assert flood.checks[0].matched == tuple(flood.fired)
    assert calm.ok and calm.fired == []
    assert result.rules == str(path.parent / "rules.yml")
    assert render_text([result]).splitlines()[-1] == "2 tests: 2 passed, 0 failed"


def test_a_test_that_must_fail_fails_with_a_diff(write_tests: Write) -> None:
    path = write_tests(
        f"""
tests:
  - name: wrong time and an unexpected page
    agents:
      {FLOOD}
      ops-1: [{{at: 3, action: drop_table, risk: critical}}]
    expect:
      - {{rule: Flood, agent: flood-1, at: 30, within_s: 10}}
      - {{rule: Flood, agent: flood-1, count: 1}}
  - name: nothing should fire
    agents: {{{FLOOD}}}
    expect: none
"""
    )
    result = run_file(path)
    assert not result.ok
    timing, quiet = result.cases
    assert not timing.ok and not quiet.ok
    assert [c.ok for c in timing.checks] == [False, True]
    assert [(f.rule, f.agent, f.at) for f in timing.unexpected] == [("Unapproved", "ops-1", 3.0)]
    assert [(f.rule, f.at) for f in quiet.unexpected] == [("Flood", 5.0)]
    text = render_text([result]).splitlines()
    header = "  FAIL  wrong time and an unexpected page  (2 anomalies, 11 events, "
    fail = next(i for i, line in enumerate(text) if line.startswith(header))
    assert text[fail + 1] == "        (- expected, missing; + fired, not expected)"
    assert text[fail + 2] == "        - Flood on flood-1 between 30s and 40s: did not fire"
    assert text[fail + 3] == "          Flood on flood-1 at any time, exactly once: fired at 5s"
    assert text[fail + 4].startswith(
        "        + Unapproved on ops-1 (unapproved_high_risk, critical) at 3s: ops-1 called "
    )
    assert (
        "        + Flood on flood-1 (action_budget, error) at 5s: flood-1 made 6 calls"
        in "\n".join(text)
    )
    assert text[-1] == "2 tests: 0 passed, 2 failed"
    doc = render_json([result])
    assert (doc["ok"], doc["passed"], doc["failed"]) == (False, 0, 2)
    first = doc["files"][0]["tests"][0]
    assert first["expected"][0] | {"matched": None} == {
        "rule": "Flood",
        "agent": "flood-1",
        "at": 30.0,
        "within_s": 10.0,
        "ok": False,
        "reason": "did not fire",
        "matched": None,
    }
    assert [a["rule"] for a in first["unexpected"]] == ["Unapproved"]
    assert [a["rule"] for a in first["anomalies"]] == ["Unapproved", "Flood"]


def test_count_mismatch_is_shown_with_the_times(write_tests: Write) -> None:
    path = write_tests(
        f"""
tests:
  - name: twice
    agents: {{{FLOOD}}}
    expect: [{{rule: Flood, agent: flood-1, count: 2}}]
"""
    )
    result = run_file(path)
    assert not result.ok
    assert (
        "        - Flood on flood-1 at any time, exactly 2 times: fired once, expected 2 (at 5s)"
        in render_text([result]).splitlines()
    )


def test_ignored_rules_are_not_judged(write_tests: Write) -> None:
    path = write_tests(
        f"""
tests:
  - name: only the policy matters here
    agents: {{{FLOOD}}}
    expect: none
    ignore: [Flood]
"""
    )
    result = run_file(path)
    assert result.ok and len(result.cases[0].fired) == 1


def test_a_rule_the_rules_file_does_not_have(write_tests: Write) -> None:
    path = write_tests(
        f"""
tests:
  - name: typo
    agents: {{{FLOOD}}}
    expect: [{{rule: Flod, agent: flood-1}}]
    ignore: [Nothing]
"""
    )
    result = run_file(path)
    assert not result.ok and result.cases == []  # no test ran
    rules = path.parent / "rules.yml"
    assert [str(p) for p in result.problems] == [
        f"{path}: key 'tests[0].expect[0].rule': test 'typo': no rule 'Flod' in {rules}; "
        "did you mean 'Flood'?",
        f"{path}: key 'tests[0].ignore[0]': test 'typo': no rule 'Nothing' in {rules} "
        "(rules: Flood, Unapproved)",
    ]
    assert (
        render_text([result]).splitlines()[-1]
        == "0 tests: 0 passed, 0 failed; 1 file(s) with problems"
    )


def test_a_bad_rules_file_is_reported_with_its_own_name(write_tests: Write, tmp_path: Path) -> None:
    (tmp_path / "bad.yml").write_text(
        "groups: [{name: g, rules: [{alert: A, detector: budget, params: {max_actons: 1}}]}]"
    )
    path = write_tests(
        "tests: [{name: t, agents: {a: [{action: x}]}, expect: none}]", rules="bad.yml"
    )
    result = run_file(path)
    assert result.rules == str(tmp_path / "bad.yml")
    assert [str(p) for p in result.problems] == [
        f"{tmp_path / 'bad.yml'}: group 'g' rule 'A': key 'params.max_actons': unknown "
        "parameter of detector 'budget'; did you mean 'max_actions'?"
    ]


def test_a_fixture_problem_in_any_test_stops_the_file(write_tests: Write) -> None:
    path = write_tests(
        f"""
tests:
  - name: fine
    agents: {{{FLOOD}}}
    expect: [{{rule: Flood, agent: flood-1}}]
  - name: broken
    agents: {{a: [{{action: x, status: borked}}]}}
    expect: none
"""
    )
    result = run_file(path)
    assert result.cases == []
    assert [p.key for p in result.problems] == ["tests[1].agents.a.events[0].status"]


def test_the_shipped_rules_are_the_default(write_tests: Write) -> None:
    path = write_tests(
        "tests: [{name: t, agents: {a: [{action: x, risk: high}]}, "
        "expect: [{rule: UnapprovedHighRiskAction, agent: a, within_s: 0}]}]",
        rules=None,
    )
    result = run_file(path)
    assert result.rules == "<builtin default.yml>"
    assert result.ok, render_text([result])


def test_fired_offsets_are_from_the_start(write_tests: Write) -> None:
    path = write_tests(
        f"""
start: 2026-06-01T00:00:00+02:00
tests:
  - name: t
    agents: {{{FLOOD}}}
    expect: [{{rule: Flood, agent: flood-1, at: 5, within_s: 0}}]
"""
    )
    result = run_file(path)
    assert result.ok, render_text([result])
