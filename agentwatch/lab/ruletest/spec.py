"""The rule test file: a rules file, fixture events per agent, and the anomalies expected.

.. code-block:: yaml

    rules: ../my-rules.yml          # relative to this file; omitted: the shipped rules
    start: 2026-01-01T00:00:00Z     # time zero of the offsets (this is the default)
    tests:
      - name: a tight loop is halted
        agents:
          loop-1:                   # agent id: its fleet and its events
            fleet: coder
            events:
              - {at: 0, action: [search, read_file], target: "doc-{i}", repeat: 60, every: 20}
              - {at: 1200, action: search, target: same, repeat: 30, every: 1}
        expect:
          - {rule: RunawayLoop, agent: loop-1, at: 1200, within_s: 60}
      - name: a quiet agent
        agents:
          calm-1: [{action: search, repeat: 100, every: 30}]   # just the events: fleet default
        expect: none

An event line is one event, or with ``repeat: N`` a series of N, ``every`` seconds apart from
``at``. In a series, a list value cycles (``action: [search, read_file]`` alternates) and
``{i}`` in a string is the event's number in the series (0, 1, ...). ``copies: N`` on an agent
makes N agents alike, ``{n}`` in its id numbering them. Times are seconds or durations
(``90s``, ``5m``, ``1h``).

:func:`load_test_file` reads a file and reports every problem in it at once, as
:class:`~agentwatch.detectors.problems.Problem` lines (the event fields are checked against
the wire schema of :class:`~agentwatch.schemas.ActionEvent` when the events are made).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from agentwatch.detectors.problems import Problem, RulesError, from_validation_error, suggest
from agentwatch.detectors.rules import Duration, parse_yaml
from agentwatch.detectors.validation import DURATION

__all__ = [
    "DEFAULT_START",
    "EVENT_FIELDS",
    "MAX_EVENTS_PER_TEST",
    "AgentSpec",
    "EventSpec",
    "Expectation",
    "TestCase",
    "TestFile",
    "load_test_file",
]

DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
#: A test's events in all (a typo'd ``repeat`` must not fill the memory).
MAX_EVENTS_PER_TEST = 1_000_000

#: Event fields of a fixture line, with the :class:`~agentwatch.schemas.ActionEvent` field
#: each one sets (``cost`` is ``cost_usd``; ``session`` is ``session_id``).
EVENT_FIELDS = {
    "action": "action",
    "kind": "kind",
    "status": "status",
    "error": "error",
    "risk": "risk",
    "target": "target",
    "approved_by": "approved_by",
    "model": "model",
    "cost": "cost_usd",
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "latency_ms": "latency_ms",
    "session": "session_id",
    "attributes": "attributes",
}

_FORBID = ConfigDict(extra="forbid", frozen=True)


class EventSpec(BaseModel):
    """One fixture line: an event, or a series of ``repeat`` events ``every`` seconds apart.

    The event fields (:data:`EVENT_FIELDS`) take any value here; the wire schema checks them
    when the events are made, a list cycling over the series.
    """

    model_config = _FORBID

    at: Duration = 0.0
    repeat: int = Field(1, ge=1, le=MAX_EVENTS_PER_TEST)
    every: Duration = 1.0
    action: Any
    kind: Any = None
    status: Any = None
    error: Any = None
    risk: Any = None
    target: Any = None
    approved_by: Any = None
    model: Any = None
    cost: Any = None
    input_tokens: Any = None
    output_tokens: Any = None
    latency_ms: Any = None
    session: Any = None
    attributes: dict[str, Any] | None = None


def _events_only(value: Any) -> Any:
    return {"events": value} if isinstance(value, list) else value


class AgentSpec(BaseModel):
    """An agent's fleet and events; ``copies`` agents alike (``{n}`` in the id numbers them)."""

    model_config = _FORBID

    fleet: str = "default"
    copies: int = Field(1, ge=1, le=10_000)
    events: list[EventSpec] = Field(min_length=1)


def _none_is_empty(value: Any) -> Any:
    if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
        return []
    return value


class Expectation(BaseModel):
    """An anomaly the test expects.

    It matches the anomalies of rule ``rule`` on agent ``agent`` (of finding ``kind`` and
    ``severity`` when given) whose event time is from ``at`` to ``at + within_s`` seconds
    after the start (from ``at`` on without ``within_s``; any time without either). At least
    one must match, or exactly ``count`` when given (``count: 0``: this rule must not fire
    for the agent).
    """

    model_config = _FORBID

    rule: str = Field(min_length=1)
    agent: str = Field(min_length=1)
    kind: str | None = None
    severity: Literal["info", "warning", "error", "critical"] | None = None
    at: Duration | None = None
    within_s: Duration | None = None
    count: int | None = Field(None, ge=0)

    def window(self) -> tuple[float, float]:
        """The offsets (seconds) an anomaly's time must fall between, inclusive."""
        start = self.at if self.at is not None else 0.0
        end = start + self.within_s if self.within_s is not None else float("inf")
        return start, end

    def matches(self, rule: str, agent: str, kind: str, severity: str, at: float) -> bool:
        """Whether an anomaly with these fields, at offset ``at``, is one this expects."""
        if rule != self.rule or agent != self.agent:
            return False
        if self.kind is not None and kind != self.kind:
            return False
        if self.severity is not None and severity != self.severity:
            return False
        start, end = self.window()
        return start <= at <= end


class TestCase(BaseModel):
    """One test: fixture agents, the anomalies expected, and the rules it does not judge."""

    __test__ = False  # not a pytest class
    model_config = _FORBID

    name: str = Field(min_length=1)
    agents: dict[str, Annotated[AgentSpec, BeforeValidator(_events_only)]] = Field(min_length=1)
    expect: Annotated[list[Expectation], BeforeValidator(_none_is_empty)]
    ignore: list[str] = Field(
        default_factory=list, description="rules whose anomalies this test does not judge"
    )


class TestFile(BaseModel):
    """A file of rule tests."""

    __test__ = False
    model_config = _FORBID

    rules: str | None = None
    start: datetime = DEFAULT_START
    tests: list[TestCase] = Field(min_length=1)

    def start_utc(self) -> datetime:
        """:attr:`start` as an aware UTC time (a time without a zone is taken as UTC)."""
        start = self.start
        return start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)

    def rules_path(self, test_file: Path) -> Path | None:
        """The rules file, relative to the test file's folder; ``None``: the shipped rules."""
        return None if self.rules is None else test_file.parent / self.rules


_DURATIONS = ("at", "every", "within_s")
_KEYS: dict[str, Sequence[str]] = {
    "file": tuple(TestFile.model_fields),
    "test": tuple(TestCase.model_fields),
    "agent": tuple(AgentSpec.model_fields),
    "event": tuple(EventSpec.model_fields),
    "expect": tuple(Expectation.model_fields),
}


def _known_keys(loc: tuple[int | str, ...]) -> Sequence[str]:
    """The keys allowed in the mapping at ``loc`` of a test file."""
    if not loc:
        return _KEYS["file"]
    if len(loc) >= 2 and loc[-2] == "events":
        return _KEYS["event"]
    if len(loc) >= 2 and loc[-2] == "expect":
        return _KEYS["expect"]
    if len(loc) >= 2 and loc[-2] == "agents":
        return _KEYS["agent"]
    if len(loc) == 2 and loc[0] == "tests":
        return _KEYS["test"]
    return ()


def load_test_file(path: Path) -> TestFile:
    """Read and check a rule test file.

    Raises
    ------
    RulesError
        listing every problem of the file (its ``problems`` name the key path of each).
    """
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError([Problem(source, "(file)", f"cannot read: {exc.strerror}")]) from None
    except UnicodeDecodeError:
        raise RulesError([Problem(source, "(file)", "not UTF-8 text")]) from None
    doc = parse_yaml(text, source)
    if not isinstance(doc, dict):
        raise RulesError(
            [
                Problem(
                    source,
                    "(top)",
                    "not a rule test file",
                    expected="a mapping with a 'tests' list",
                    found="an empty file" if doc is None else type(doc).__name__,
                )
            ]
        )
    try:
        spec = TestFile.model_validate(doc)
    except ValidationError as exc:
        problems = from_validation_error(exc, file=source, known_keys=_known_keys)
        raise RulesError([_duration(p) for p in problems]) from None
    problems = []
    for t, case in enumerate(spec.tests):
        for e, expectation in enumerate(case.expect):
            if expectation.agent not in _agent_ids(case):
                problems.append(
                    Problem(
                        source,
                        f"tests[{t}].expect[{e}].agent",
                        f"test {case.name!r} has no agent {expectation.agent!r}",
                        suggestion=suggest(expectation.agent, _agent_ids(case)),
                    )
                )
    if problems:
        raise RulesError(problems)
    return spec


def _duration(problem: Problem) -> Problem:
    """A time that is not a duration, said as the rules file says it."""
    if problem.key.rsplit(".", 1)[-1] in _DURATIONS and problem.expected is None:
        return replace(problem, reason="not a duration", expected=DURATION)
    return problem


def _agent_ids(case: TestCase) -> list[str]:
    return [
        name.replace("{n}", str(n))
        for name, agent in case.agents.items()
        for n in range(agent.copies)
    ]
