"""``agentwatch.lab.backtest``: reading a JSONL trace, bad lines included."""

from __future__ import annotations

from pathlib import Path

from agentwatch.detectors import load_rules
from agentwatch.lab.backtest import read_events, run_backtest
from agentwatch.schemas.events import MAX_EVENT_BYTES

GOOD = b'{"event_id":"e%d","ts":"2026-01-01T00:00:0%dZ","agent_id":"a1","action":"search"}'


def test_bad_lines_are_counted_with_their_reason_and_blank_lines_skipped(tmp_path: Path) -> None:
    trace = tmp_path / "events.jsonl"
    too_large = b'{"event_id":"x","pad":"' + b"x" * MAX_EVENT_BYTES + b'"}'
    trace.write_bytes(
        b"\n".join(
            [
                GOOD % (1, 1),
                b"   ",
                b"{not json",
                b'{"event_id":"e2","ts":"2026-01-01T00:00:02Z","agent_id":"a1"}',
                too_large,
                GOOD % (3, 3),
                b"",
            ]
        )
    )
    errors: list[str] = []
    events = list(read_events(trace, errors))
    assert [e.event_id if e else None for e in events] == ["e1", None, None, None, "e3"]
    assert [line.split(": ")[1] for line in errors] == ["bad_json", "invalid", "too_large"]
    assert errors[0].startswith(f"{trace}:3: ")
    assert "action" in errors[1]

    result = run_backtest(trace, load_rules(None))
    assert (result.events, result.invalid, result.duplicates) == (2, 3, 0)
    assert result.first_errors == errors
    assert result.summary.agents == 1
    assert result.summary.end - result.summary.start == 2.0
