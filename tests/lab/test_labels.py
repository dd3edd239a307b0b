"""The typed label model: reading, writing, and errors that name the file and line."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agentwatch.lab.labels import Label, LabelError, load_labels, write_labels

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def test_round_trip_through_a_file(tmp_path: Path) -> None:
    labels = [
        Label("inc-1", "runaway_loop", "a1", "ops", T0, T0.replace(minute=5), False, {"x": 1}),
        Label("change-model_upgrade", "model_upgrade", None, "ops", T0, T0, True),
    ]
    path = tmp_path / "labels.jsonl"
    assert write_labels(labels, path) == 2
    assert load_labels(path) == labels
    assert labels[0].incident and not labels[1].incident and labels[1].fleet_wide


def test_defaults_and_older_details_key() -> None:
    lab = Label.from_dict(
        {"kind": "error_storm", "start": "2026-01-05T09:00:00Z", "details": {"error_rate": 0.5}},
        index=7,
    )
    assert (lab.id, lab.fleet, lab.agent_id, lab.end, lab.benign) == (
        "label-7",
        "default",
        None,
        T0,
        False,
    )
    assert lab.params == {"error_rate": 0.5}


def test_ramp_crossing_time() -> None:
    lab = Label.from_dict(
        {
            "kind": "cost_drift",
            "agent_id": "a",
            "start": "2026-01-05T09:00:00Z",
            "params": {"crosses_2x_at": "2026-01-05T09:30:00Z"},
        }
    )
    assert lab.crosses_2x_s == T0.timestamp() + 1800
    assert Label.from_dict({"kind": "x", "start": 0}).crosses_2x_s is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"kind": "x", "start": "2026-01-05T09:00:00Z"}\n{"kind": "y"}\n', ":2: a label needs"),
        ('\n{"kind": "x", "start": "yesterday"}\n', ":2: bad time"),
        ('{"kind": "x", "start": 0}\n{oops\n', ":2: not JSON"),
        ('[{"kind": "x", "start": 0}, {"kind": "x", "start": 0, "params": [1]}]', ": item 2: "),
        ('{"a": 1}', ":1: a label needs"),
        ("[1]", ": item 1: a label is a JSON object"),
    ],
)
def test_bad_files_name_the_line_and_the_reason(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(LabelError, match=message) as info:
        load_labels(path)
    assert str(info.value).startswith(str(path))


def test_a_json_array_is_read_too(tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    path.write_text(json.dumps([{"kind": "x", "start": 0, "end": 60}]), encoding="utf-8")
    [lab] = load_labels(path)
    assert lab.end_s - lab.start_s == 60.0
