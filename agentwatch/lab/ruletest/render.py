"""Rule test results for people (a diff of expected against got per test) and as JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentwatch.lab.ruletest.run import Check, FileResult, Fired
from agentwatch.lab.ruletest.spec import Expectation

__all__ = ["describe_expectation", "describe_fired", "render_json", "render_text", "totals"]

_SUMMARY = 100


def _anomalies(n: int) -> str:
    return f"{n} anomaly" if n == 1 else f"{n} anomalies"


def _seconds(value: float) -> str:
    return f"{value:g}s"


def describe_expectation(e: Expectation) -> str:
    """``RunawayLoop on loop-1 between 100s and 160s`` (kind, severity and count if given).

    Examples
    --------
    >>> describe_expectation(Expectation(rule="R", agent="a1", at=100, within_s=60, count=1))
    'R on a1 between 100s and 160s, exactly once'
    >>> describe_expectation(Expectation(rule="R", agent="a1", kind="k", severity="error"))
    'R on a1 (kind k, severity error) at any time'
    """
    text = f"{e.rule} on {e.agent}"
    details = [f"kind {e.kind}"] if e.kind is not None else []
    if e.severity is not None:
        details.append(f"severity {e.severity}")
    if details:
        text += f" ({', '.join(details)})"
    start, end = e.window()
    if e.within_s is not None:
        text += f" between {_seconds(start)} and {_seconds(end)}"
    elif e.at is not None:
        text += f" from {_seconds(start)} on"
    else:
        text += " at any time"
    if e.count is not None:
        times = {0: "never", 1: "exactly once"}.get(e.count, f"exactly {e.count} times")
        text += f", {times}"
    return text


def describe_fired(f: Fired) -> str:
    """``RunawayLoop on loop-1 (runaway_loop, critical) at 114s: <summary>``."""
    summary = f.summary if len(f.summary) <= _SUMMARY else f.summary[: _SUMMARY - 3] + "..."
    return f"{f.rule} on {f.agent} ({f.kind}, {f.severity}) at {_seconds(f.at)}: {summary}"


def _check_line(check: Check) -> str:
    text = describe_expectation(check.expectation)
    times = ", ".join(_seconds(f.at) for f in check.matched[:5])
    if len(check.matched) > 5:
        times += ", ..."
    if check.ok:
        return f"          {text}: fired at {times}" if check.matched else f"          {text}"
    if not check.matched:
        return f"        - {text}: did not fire"
    return f"        - {text}: {check.reason} (at {times})"


def totals(results: Sequence[FileResult]) -> tuple[int, int, int]:
    """Tests passed, tests failed, files that could not run."""
    passed = sum(c.ok for r in results for c in r.cases)
    failed = sum(not c.ok for r in results for c in r.cases)
    broken = sum(bool(r.problems) for r in results)
    return passed, failed, broken


def render_text(results: Sequence[FileResult]) -> str:
    """Per file its tests, each failure as a diff: ``-`` expected but missing, ``+`` fired
    but not expected, unmarked lines matched; then the totals."""
    lines: list[str] = []
    for result in results:
        rules = f"  (rules: {result.rules})" if result.rules else ""
        lines.append(f"{result.file}{rules}")
        if result.problems:
            lines.append(f"  ERROR {len(result.problems)} problem(s); no test ran:")
            lines += [f"        {p}" for p in result.problems]
            continue
        for case in result.cases:
            stats = f"{_anomalies(len(case.fired))}, {case.events:,} events, {case.seconds:.2f} s"
            if case.ok:
                lines.append(f"  ok    {case.name}  ({stats})")
                continue
            lines.append(f"  FAIL  {case.name}  ({stats})")
            lines.append("        (- expected, missing; + fired, not expected)")
            lines += [_check_line(check) for check in case.checks]
            lines += [f"        + {describe_fired(f)}" for f in case.unexpected]
    passed, failed, broken = totals(results)
    summary = f"{passed + failed} tests: {passed} passed, {failed} failed"
    if broken:
        summary += f"; {broken} file(s) with problems"
    lines.append(summary)
    return "\n".join(lines)


def render_json(results: Sequence[FileResult]) -> dict[str, Any]:
    """Everything: per file its problems and per test the expectations with the anomalies
    that matched them, the unexpected anomalies and all anomalies."""
    passed, failed, broken = totals(results)
    return {
        "ok": not failed and not broken,
        "passed": passed,
        "failed": failed,
        "files_with_problems": broken,
        "files": [r.to_dict() for r in results],
    }
