"""Fixture events: a test's compact agent and event lines made into ``ActionEvent`` objects.

Each line becomes ``repeat`` events at ``at``, ``at + every``, ... seconds after the start;
a list value cycles over the series, ``{i}`` in a string is the event's number in its series
and ``{n}`` the agent's copy number. Events of all agents are merged in time order (lines
in file order at equal times), as one Kafka partition would deliver them, with ids
``<agent>#<number>``. Every value goes through the wire schema, so a fixture can hold only
what an agent could publish.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from agentwatch.detectors.problems import Problem, RulesError, describe
from agentwatch.lab.ruletest.spec import (
    EVENT_FIELDS,
    MAX_EVENTS_PER_TEST,
    AgentSpec,
    EventSpec,
    TestCase,
)
from agentwatch.schemas import ActionEvent
from agentwatch.schemas._types import AGENT_ID_RULE, NAME_RULE

__all__ = ["make_events"]

_WIRE_TO_SPEC = {wire: spec for spec, wire in EVENT_FIELDS.items()}


def make_events(
    case: TestCase, start: datetime, *, file: str = "<test>", index: int = 0
) -> list[ActionEvent]:
    """The events of test ``case``, in the order the engine sees them.

    Parameters
    ----------
    case
        The test.
    start
        Time zero of its offsets (aware, UTC).
    file, index
        The test file and the test's position in it, for problems.

    Raises
    ------
    RulesError
        naming every fixture line whose events are not valid (the first bad value of each).

    Examples
    --------
    >>> from datetime import UTC, datetime
    >>> case = TestCase.model_validate({"name": "t", "expect": "none", "agents": {
    ...     "a1": [{"at": 10, "action": ["search", "read"], "target": "doc-{i}", "repeat": 3}]}})
    >>> for e in make_events(case, datetime(2026, 1, 1, tzinfo=UTC)):
    ...     print(e.event_id, e.ts.time(), e.action, e.target)
    a1#0 00:00:10 search doc-0
    a1#1 00:00:11 read doc-1
    a1#2 00:00:12 search doc-2
    """
    problems: list[Problem] = []
    total = sum(
        line.repeat * agent.copies for agent in case.agents.values() for line in agent.events
    )
    where = f"tests[{index}]"
    if total > MAX_EVENTS_PER_TEST:
        problems.append(
            Problem(
                file,
                f"{where}.agents",
                f"test {case.name!r} makes {total:,} events; at most {MAX_EVENTS_PER_TEST:,}",
            )
        )
        raise RulesError(problems)
    timed: list[tuple[float, ActionEvent]] = []
    for agent_id, agent in case.agents.items():
        if agent.copies > 1 and "{n}" not in agent_id:
            problems.append(
                Problem(
                    file,
                    f"{where}.agents.{agent_id}.copies",
                    f"{agent.copies} copies need '{{n}}' in the agent id to tell them apart",
                )
            )
            continue
        for n in range(agent.copies):
            made = _agent_events(agent_id.replace("{n}", str(n)), agent, n, start)
            for k, (error, events) in enumerate(made):
                if error is not None:
                    key, reason = error
                    at = f"{where}.agents.{agent_id}"
                    if key != "agent_id":
                        at += f".events[{k}].{key}"
                    problems.append(Problem(file, at, reason))
                timed += events
    if problems:
        raise RulesError(_first_per_key(problems))
    timed.sort(key=lambda item: item[0])  # stable: agents, lines, series in file order
    return [event for _, event in timed]


def _agent_events(
    agent_id: str, agent: AgentSpec, n: int, start: datetime
) -> list[tuple[tuple[str, str] | None, list[tuple[float, ActionEvent]]]]:
    """Per line: its first problem ``(key, reason)`` or ``None``, and its events."""
    out = []
    number = 0
    for line in agent.events:
        events: list[tuple[float, ActionEvent]] = []
        error = None
        for i in range(line.repeat):
            offset = line.at + i * line.every
            fields = _fields(line, i, n)
            if isinstance(fields, tuple):
                error = fields
                break
            raw = {
                "event_id": f"{agent_id}#{number}",
                "ts": start + timedelta(seconds=offset),
                "agent_id": agent_id,
                "fleet": agent.fleet,
                **fields,
            }
            try:
                event = ActionEvent.model_validate(raw)
            except ValidationError as exc:
                error = _wire_problem(exc)
                break
            events.append((offset, event))
            number += 1
        out.append((error, events))
    return out


def _fields(line: EventSpec, i: int, n: int) -> dict[str, Any] | tuple[str, str]:
    """The ``ActionEvent`` fields of the ``i``-th event of ``line``, or a problem."""
    fields: dict[str, Any] = {}
    for name, wire in EVENT_FIELDS.items():
        value = getattr(line, name)
        if value is None:
            continue
        if isinstance(value, list) and name != "attributes":
            if not value:
                return name, "an empty list: give at least one value to cycle over"
            value = value[i % len(value)]
        if isinstance(value, str):
            value = value.replace("{i}", str(i)).replace("{n}", str(n))
        fields[wire] = value
    return fields


def _wire_problem(exc: ValidationError) -> tuple[str, str]:
    err = exc.errors(include_url=False)[0]
    loc = [str(p) for p in err["loc"]]
    key = _WIRE_TO_SPEC.get(loc[0], loc[0]) if loc else "(event)"
    key = ".".join([key, *loc[1:]])
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "string_pattern_mismatch":
        msg = AGENT_ID_RULE if key == "agent_id" else NAME_RULE
    what = "agent id" if key == "agent_id" else "event value"
    return key, f"not a valid {what}: {msg} (found {describe(err.get('input'))})"


def _first_per_key(problems: list[Problem]) -> list[Problem]:
    seen: set[str] = set()
    out = []
    for problem in problems:
        if problem.key not in seen:
            seen.add(problem.key)
            out.append(problem)
    return out
