"""Targets: the project's bar by default, overridable from a file; fast cost ramps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agentwatch.lab.evaluation import FleetSummary, Targets, evaluate
from agentwatch.lab.evaluation.targets import TargetsError, load_targets
from agentwatch.lab.labels import Label
from agentwatch.schemas import Anomaly
from agentwatch.schemas._types import format_ts

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def test_defaults_are_the_acceptance_bar() -> None:
    t = Targets()
    assert (t.min_recall, t.max_false_per_100_agent_hours, t.max_benign_change_episodes) == (
        0.97,
        0.5,
        0,
    )
    assert (t.max_median_ttd_s, t.max_after_2x_s) == (45.0, 1800.0)


def test_file_overrides_some_keys(tmp_path: Path) -> None:
    path = tmp_path / "t.yml"
    path.write_text("min_recall: 0.9\nttd_kinds: [runaway_loop]\n", encoding="utf-8")
    t = load_targets(path)
    assert t.min_recall == 0.9 and t.ttd_kinds == ("runaway_loop",)
    assert t.max_false_per_100_agent_hours == 0.5
    (tmp_path / "empty.yml").write_text("", encoding="utf-8")
    assert load_targets(tmp_path / "empty.yml") == Targets()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("min_recal: 0.9\n", "min_recal: Extra inputs"),
        ("max_median_ttd_s: -1\n", "max_median_ttd_s: Input should be greater than 0"),
        ("[1, 2]\n", "a targets file is a YAML mapping"),
        ("a: [\n", "not YAML"),
    ],
)
def test_bad_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "t.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TargetsError, match=message) as info:
        load_targets(path)
    assert str(info.value).startswith(str(path))


def _flagged(ts: datetime, detector: str) -> Anomaly:
    """An anomaly of agent ``a1`` at ``ts``."""
    return Anomaly(
        anomaly_id="x",
        ts=ts,
        agent_id="a1",
        detector=detector,
        kind="k",
        severity="warning",
        score=2.0,
        threshold=1.0,
        observed=2.0,
        baseline=1.0,
        summary="s",
    )


def _ramp(after_2x_min: float) -> list[str]:
    start = T0 + timedelta(hours=1)
    crossing = start + timedelta(minutes=40)
    label = Label(
        "inc-r",
        "cost_drift",
        "a1",
        "f",
        start,
        T0 + timedelta(hours=8),
        params={
            "crosses_2x_at": format_ts(crossing),
            "crosses_3x_at": format_ts(crossing + timedelta(minutes=40)),
        },
    )
    flagged = _flagged(crossing + timedelta(minutes=after_2x_min), "cost_drift")
    summary = FleetSummary(agents=10, start=T0.timestamp(), end=T0.timestamp() + 8 * 3600)
    ev = evaluate([flagged], [label], summary)
    [result] = ev.fast_ramps
    assert result.after_2x_s == pytest.approx(after_2x_min * 60)
    return [f"{c.name}:{c.ok}" for c in ev.check() if "ramps" in c.name]


def test_fast_ramps_must_be_flagged_within_30_minutes_of_crossing_2x() -> None:
    assert _ramp(10) == ["fast ramps flagged after 2x:True"]
    assert _ramp(-20) == ["fast ramps flagged after 2x:True"]  # before the crossing
    assert _ramp(40) == ["fast ramps flagged after 2x:False"]


def test_the_detectors_own_delay_is_checked_only_when_a_file_asks(tmp_path: Path) -> None:
    start = T0 + timedelta(hours=1)
    label = Label("inc-s", "error_storm", "a1", "f", start, start + timedelta(minutes=5))
    # flagged 70 s after the start, 50 s after its first failed call
    flagged = _flagged(start + timedelta(seconds=70), "failure_rate")
    t = start.timestamp()
    summary = FleetSummary(agents=10, start=T0.timestamp(), end=T0.timestamp() + 4 * 3600)
    ev = evaluate(
        [flagged],
        [label],
        summary,
        events={"a1": [t + 5, t + 20, t + 40, t + 70]},
        failed={"a1": [t + 20, t + 40, t + 70]},
    )
    assert not [c for c in ev.check() if "after evidence" in c.name]  # the default: off
    path = tmp_path / "t.yml"
    path.write_text("max_median_after_evidence_s: 60\nttd_kinds: [error_storm]\n", "utf-8")
    checks = {c.name: c for c in ev.check(load_targets(path))}
    assert checks["median TTD error_storm"].ok is False  # 70 s from the start
    after = checks["median after evidence error_storm"]
    assert (after.ok, after.detail) == (True, "50s (<= 60s)")
    path.write_text("max_median_after_evidence_s: 30\nttd_kinds: [error_storm]\n", "utf-8")
    assert {c.name: c.ok for c in ev.check(load_targets(path))}[
        "median after evidence error_storm"
    ] is False
