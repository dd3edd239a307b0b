"""Run rule tests: fixture events through the worker's engine, anomalies against expectations.

Each test gets a fresh :class:`~agentwatch.detectors.engine.Engine` built from the file's
rules, the very code the worker and ``agentwatch backtest`` run, and its events in time order.
Then every expectation is matched against the anomalies (at least one, or exactly ``count``),
and every anomaly that no expectation accounts for, of a rule the test does not ``ignore``,
is unexpected: a test passes when nothing is missing and nothing is unexpected.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from agentwatch.detectors.engine import Engine
from agentwatch.detectors.problems import Problem, RulesError, suggest
from agentwatch.detectors.rules import RuleSet, load_rules
from agentwatch.lab.ruletest.fixtures import make_events
from agentwatch.lab.ruletest.spec import Expectation, TestCase, TestFile, load_test_file
from agentwatch.schemas import ActionEvent, Anomaly

__all__ = ["CaseResult", "Check", "FileResult", "Fired", "compare", "run_case", "run_file"]


@dataclass(frozen=True)
class Fired:
    """An anomaly as a test sees it: rule, agent, kind, severity and its offset in seconds."""

    rule: str
    agent: str
    kind: str
    severity: str
    at: float
    summary: str
    anomaly_id: str

    @classmethod
    def of(cls, anomaly: Anomaly, start: datetime) -> Fired:
        return cls(
            rule=anomaly.rule or anomaly.detector,
            agent=anomaly.agent_id,
            kind=anomaly.kind,
            severity=anomaly.severity,
            at=round((anomaly.ts - start).total_seconds(), 3),
            summary=anomaly.summary,
            anomaly_id=anomaly.anomaly_id,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "agent": self.agent,
            "kind": self.kind,
            "severity": self.severity,
            "at": self.at,
            "summary": self.summary,
            "anomaly_id": self.anomaly_id,
        }


@dataclass(frozen=True)
class Check:
    """One expectation and the anomalies that matched it."""

    expectation: Expectation
    matched: tuple[Fired, ...]

    @property
    def ok(self) -> bool:
        count = self.expectation.count
        return len(self.matched) >= 1 if count is None else len(self.matched) == count

    @property
    def reason(self) -> str:
        """Why it failed (``""`` when it passed)."""
        if self.ok:
            return ""
        count = self.expectation.count
        if not self.matched:
            return "did not fire"
        times = "once" if len(self.matched) == 1 else f"{len(self.matched)} times"
        return f"fired {times}, expected {count}"

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.expectation.model_dump(exclude_none=True),
            "ok": self.ok,
            "reason": self.reason,
            "matched": [f.to_dict() for f in self.matched],
        }


@dataclass
class CaseResult:
    """What one test expected and got."""

    name: str
    checks: list[Check]
    unexpected: list[Fired]
    fired: list[Fired]
    ignored: list[str]
    events: int
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.unexpected and all(c.ok for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "events": self.events,
            "seconds": round(self.seconds, 4),
            "expected": [c.to_dict() for c in self.checks],
            "unexpected": [f.to_dict() for f in self.unexpected],
            "ignored_rules": self.ignored,
            "anomalies": [f.to_dict() for f in self.fired],
        }


@dataclass
class FileResult:
    """A test file's results, or the problems that kept it from running."""

    file: str
    rules: str | None
    cases: list[CaseResult] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(c.ok for c in self.cases)

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "rules": self.rules,
            "ok": self.ok,
            "problems": [p.to_dict() for p in self.problems],
            "tests": [c.to_dict() for c in self.cases],
        }


def compare(
    expect: Sequence[Expectation], fired: Sequence[Fired], ignore: Sequence[str] = ()
) -> tuple[list[Check], list[Fired]]:
    """Match expectations with anomalies; the anomalies none of them accounts for.

    Examples
    --------
    >>> e = Expectation(rule="RunawayLoop", agent="a1", at=100, within_s=60)
    >>> hit = Fired("RunawayLoop", "a1", "runaway_loop", "critical", 130.0, "", "an-1")
    >>> late = Fired("RunawayLoop", "a1", "runaway_loop", "critical", 400.0, "", "an-2")
    >>> checks, unexpected = compare([e], [hit, late])
    >>> checks[0].ok, [f.anomaly_id for f in unexpected]
    (True, ['an-2'])
    """
    checks = []
    accounted: set[int] = set()
    for expectation in expect:
        matched = []
        for n, f in enumerate(fired):
            if expectation.matches(f.rule, f.agent, f.kind, f.severity, f.at):
                matched.append(f)
                accounted.add(n)
        checks.append(Check(expectation, tuple(matched)))
    ignored = set(ignore)
    unexpected = [f for n, f in enumerate(fired) if n not in accounted and f.rule not in ignored]
    return checks, unexpected


def run_case(
    case: TestCase, rules: RuleSet, events: list[ActionEvent], start: datetime
) -> CaseResult:
    """Run ``events`` through a fresh engine with ``rules``; compare with the expectations."""
    started = time.perf_counter()
    engine = Engine(rules)
    fired: list[Fired] = []
    for event in events:
        for anomaly in engine.process(event) or ():
            fired.append(Fired.of(anomaly, start))
    checks, unexpected = compare(case.expect, fired, case.ignore)
    return CaseResult(
        name=case.name,
        checks=checks,
        unexpected=unexpected,
        fired=fired,
        ignored=list(case.ignore),
        events=len(events),
        seconds=time.perf_counter() - started,
    )


def run_file(path: Path) -> FileResult:
    """Load a test file and its rules, make every test's events, run the tests.

    A file with any problem (its own, its rules file's, a fixture's, or an expectation
    naming a rule the rules file does not have) runs no test: its result lists the problems.
    """
    source = str(path)
    try:
        spec = load_test_file(path)
    except RulesError as exc:
        return FileResult(source, None, problems=exc.problems)
    rules_path = spec.rules_path(path)
    try:
        rules = load_rules(rules_path)
    except RulesError as exc:
        rules_source = "<builtin default.yml>" if rules_path is None else str(rules_path)
        return FileResult(source, rules_source, problems=exc.problems)
    problems = _unknown_rules(spec, rules, source)
    start = spec.start_utc()
    prepared = []
    for index, case in enumerate(spec.tests):
        try:
            prepared.append((case, make_events(case, start, file=source, index=index)))
        except RulesError as exc:
            problems += exc.problems
    result = FileResult(source, rules.source, problems=problems)
    if not problems:
        result.cases = [run_case(case, rules, events, start) for case, events in prepared]
    return result


def _unknown_rules(spec: TestFile, rules: RuleSet, source: str) -> list[Problem]:
    """An expectation or an ``ignore`` naming a rule that is not in the rules file."""
    known = [rule.alert for rule in rules]
    problems = []
    for t, case in enumerate(spec.tests):
        named = [(f"tests[{t}].expect[{e}].rule", x.rule) for e, x in enumerate(case.expect)]
        named += [(f"tests[{t}].ignore[{i}]", name) for i, name in enumerate(case.ignore)]
        for key, name in named:
            if name not in known:
                hint = suggest(name, known)
                reason = f"test {case.name!r}: no rule {name!r} in {rules.source}"
                if hint is None:
                    reason += f" (rules: {', '.join(known)})"
                problems.append(Problem(source, key, reason, suggestion=hint))
    return problems
