"""Conformance suite: every registered scorer honours the river-style scorer contract.

Each scorer class provides ``conformance_stream(rng)``: a realistic stream for its kind of
data (heavy-tailed latencies with a daily cycle and a step, over-dispersed counts with
bursts, a slow creep under heavy-tailed noise, ...) with planted anomalies labelled 1.
"""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest
from sklearn.metrics import roc_auc_score

import agentwatch.detectors  # noqa: F401 - registers every built-in scorer
from agentwatch.detectors.base import SCORERS, Scorer
from agentwatch.detectors.thresholded import Thresholded

NAMES = sorted(SCORERS)


def stream(cls: type[Any], seed: int = 0) -> tuple[list[dict[str, float]], list[int]]:
    xs, labels = cls.conformance_stream(random.Random(seed))
    assert len(xs) == len(labels) and 0 < sum(labels) < len(labels)
    return xs, labels


def prequential(scorer: Any, xs: list[dict[str, float]]) -> list[float]:
    """Score each point, then learn it (the streaming protocol)."""
    scores = []
    for x in xs:
        scores.append(scorer.score_one(x))
        scorer.learn_one(x)
    return scores


def test_the_builtin_scorers_are_registered() -> None:
    assert {"robust_zscore", "rate_test", "drift", "thresholded"} <= set(SCORERS)


@pytest.mark.parametrize("name", NAMES)
def test_satisfies_the_protocol_and_scores_before_learning(name: str) -> None:
    cls = SCORERS[name]
    scorer = cls()
    assert isinstance(scorer, Scorer)
    xs, _ = stream(cls)
    for x in xs[:3]:
        score = scorer.score_one(x)
        assert isinstance(score, float) and math.isfinite(score)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", [0, 1])
def test_ranks_planted_anomalies_first(name: str, seed: int) -> None:
    cls = SCORERS[name]
    xs, labels = stream(cls, seed)
    scores = prequential(cls(), xs)
    assert all(math.isfinite(s) for s in scores)
    auc = roc_auc_score(labels, scores)
    assert auc > 0.8, f"{name}: ROC AUC {auc:.3f} on its conformance stream"


@pytest.mark.parametrize("name", NAMES)
def test_params_round_trip_and_clone_is_fresh(name: str) -> None:
    cls = SCORERS[name]
    scorer = cls()
    params = scorer.params()
    assert cls(**params).params() == params
    xs, _ = stream(cls)
    prequential(scorer, xs[:400])
    fresh, clone = cls(**params), scorer.clone()
    assert clone.params() == params
    probe = xs[400:450]
    assert [clone.score_one(x) for x in probe] == [fresh.score_one(x) for x in probe]


@pytest.mark.parametrize("name", NAMES)
def test_state_survives_json(name: str) -> None:
    cls = SCORERS[name]
    if not hasattr(cls, "to_state"):
        pytest.skip(f"{name} keeps no serializable state")
    scorer = cls()
    xs, _ = stream(cls)
    prequential(scorer, xs[:500])
    restored = cls.from_state(json.loads(json.dumps(scorer.to_state())), **scorer.params())
    rest = xs[500:800]
    assert prequential(restored, rest) == prequential(scorer, rest)


@pytest.mark.parametrize("name", NAMES)
def test_thresholded_never_learns_a_flagged_point(name: str) -> None:
    cls = SCORERS[name]
    xs, _labels = stream(cls)
    scorer = cls()
    prequential(scorer, xs[: len(xs) // 3])
    rest = xs[len(xs) // 3 :]
    flagged = max(rest, key=scorer.score_one)
    threshold = scorer.score_one(flagged)
    assert threshold > 0.0
    guard = Thresholded(scorer, threshold=threshold)
    probe = [*rest[:50], flagged]
    before = [scorer.score_one(x) for x in probe]
    state = scorer.to_state() if hasattr(scorer, "to_state") else None
    assert guard.is_anomaly(flagged)
    guard.learn_one(flagged)
    assert [scorer.score_one(x) for x in probe] == before
    if state is not None:
        assert scorer.to_state() == state
    normal = min(rest, key=scorer.score_one)
    assert not guard.is_anomaly(normal)


@pytest.mark.parametrize("name", NAMES)
def test_usable_as_the_last_step_of_a_river_pipeline(name: str) -> None:
    from river import compose

    cls = SCORERS[name]
    if not hasattr(cls, "_supervised"):
        pytest.skip(f"{name} does not declare river's _supervised flag")
    xs, _ = stream(cls)
    pipeline = compose.Pipeline(cls())
    direct = cls()
    for x in xs[:200]:
        assert pipeline.score_one(x) == direct.score_one(x)
        pipeline.learn_one(x)
        direct.learn_one(x)
