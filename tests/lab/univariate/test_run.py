from __future__ import annotations

import itertools
import json
from pathlib import Path

from typer.testing import CliRunner

from agentwatch.cli import app
from agentwatch.lab.univariate.candidates import CANDIDATES, alarms_from_scores, scores_of
from agentwatch.lab.univariate.corpus import load_corpus
from agentwatch.lab.univariate.run import BUDGETS, run_protocol
from tests.lab.univariate.nab_fixture import SHIFT, SPIKE, write_corpus


def test_the_robust_zscore_finds_the_spike_and_the_shift_early(tmp_path: Path) -> None:
    series, _ = load_corpus(write_corpus(tmp_path))
    report = run_protocol(series, ["robust_zscore"])
    (only,) = report.candidates
    assert only.budget in BUDGETS
    by_name = {r.name: r for r in only.results}
    spike, shift = by_name[SPIKE[0]], by_name[SHIFT[0]]
    # the alarm comes on the anomalous point itself: window start + (anomaly - left)
    assert spike.detected == 1 and spike.delays_points == (SPIKE[1] - SPIKE[2][0],)
    assert spike.lags_points == (0,)
    assert shift.detected == 1 and shift.delays_points == (SHIFT[1] - SHIFT[2][0],)
    assert spike.false_alarms + shift.false_alarms <= 2
    assert spike.nab is not None and spike.nab > 40.0
    assert only.summary("calibration").windows == 1
    assert only.summary("held_out").windows == 1
    assert report.recommended is only


def test_alarms_respect_the_cooldown_and_skip_the_warm_up(tmp_path: Path) -> None:
    times = [300.0 * i for i in range(400)]
    scores = [0.0] * 100 + [0.5] * 200 + [40.0] * 100  # a long burst of huge scores
    alarms = alarms_from_scores(times, scores, budget_per_day=0.1, floor=0.0, cooldown_s=3600.0)
    fired = [i for i, a in enumerate(alarms) if a]
    assert fired[0] == 300
    assert all(b - a >= 12 for a, b in itertools.pairwise(fired))  # 1 h of 5 min
    assert not any(alarms[:300])


def test_every_candidate_scores_every_point(tmp_path: Path) -> None:
    series, _ = load_corpus(write_corpus(tmp_path))
    short = series[0].__class__(
        series[0].name, series[0].timestamps[:400], series[0].values[:400], ()
    )
    for candidate in CANDIDATES.values():
        scores = scores_of(candidate, short)
        assert len(scores) == 400 and all(s >= 0.0 for s in scores), candidate.name


def test_the_command_prints_json_and_refuses_a_missing_corpus(tmp_path: Path) -> None:
    root = write_corpus(tmp_path / "nab")
    done = CliRunner().invoke(
        app, ["lab", "univariate", "--nab", str(root), "--scorer", "robust_zscore", "--json"]
    )
    assert done.exit_code == 0, done.output
    doc = json.loads(done.stdout)
    assert doc["recommended"] == "robust_zscore"
    (entry,) = doc["candidates"]
    assert {s["name"] for s in entry["series"]} == {SPIKE[0], SHIFT[0]}
    assert entry["calibration"]["detected"] == 1
    text = CliRunner().invoke(
        app, ["lab", "univariate", "--nab", str(root), "--scorer", "river_sad"]
    )
    assert (
        text.exit_code == 0 and "recommended (best calibration-half NAB): river_sad" in text.stdout
    )
    missing = CliRunner().invoke(app, ["lab", "univariate", "--nab", str(tmp_path / "none")])
    assert missing.exit_code == 2
    assert "no such file" in missing.output and "Traceback" not in missing.output
    unknown = CliRunner().invoke(app, ["lab", "univariate", "--nab", str(root), "--scorer", "x"])
    assert unknown.exit_code == 2 and "unknown scorer x" in unknown.output
