from __future__ import annotations

import json
import random

import pytest

from agentwatch.detectors.base import SCORERS
from agentwatch.detectors.half_space_trees import HalfSpaceTreesScorer


def auc(scores: list[float], labels: list[int]) -> float:
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def normal(rng: random.Random) -> dict[str, float]:
    return {"events_per_min": rng.gauss(6.0, 1.0), "failure_share": abs(rng.gauss(0.03, 0.02))}


def test_registered_and_params_round_trip() -> None:
    assert SCORERS["half_space_trees"] is HalfSpaceTreesScorer
    scorer = HalfSpaceTreesScorer(n_trees=5, height=4, window_size=50, span=3.0, seed=9)
    assert scorer.params() == {
        "n_trees": 5,
        "height": 4,
        "window_size": 50,
        "limits": None,
        "span": 3.0,
        "seed": 9,
    }
    assert HalfSpaceTreesScorer(**scorer.params()).params() == scorer.params()


@pytest.mark.parametrize("bad", [{"n_trees": 0}, {"window_size": 0}, {"span": 0.0}])
def test_rejects_bad_parameters(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        HalfSpaceTreesScorer(**bad)  # type: ignore[arg-type]


def test_conformance_stream_is_ranked_well() -> None:
    xs, labels = HalfSpaceTreesScorer.conformance_stream(random.Random(7))
    assert 30 <= sum(labels) <= 90
    scorer = HalfSpaceTreesScorer()
    scores = []
    for x in xs:
        scores.append(scorer.score_one(x))
        scorer.learn_one(x)
    assert auc(scores[300:], labels[300:]) > 0.95


def test_silent_until_one_window_is_learned_and_clone_is_untrained() -> None:
    rng = random.Random(1)
    scorer = HalfSpaceTreesScorer(window_size=50)
    for _ in range(49):
        scorer.learn_one(normal(rng))
    assert scorer.score_one({"events_per_min": 100.0, "failure_share": 1.0}) == 0.0
    scorer.learn_one(normal(rng))
    assert scorer.score_one({"events_per_min": 100.0, "failure_share": 1.0}) > 0.9
    assert scorer.clone().score_one({"events_per_min": 100.0, "failure_share": 1.0}) == 0.0


def test_same_seed_same_scores_other_seed_other_trees() -> None:
    def scores(seed: int) -> list[float]:
        rng = random.Random(3)
        scorer = HalfSpaceTreesScorer(window_size=100, seed=seed)
        out = []
        for _ in range(400):
            x = normal(rng)
            out.append(scorer.score_one(x))
            scorer.learn_one(x)
        return out

    assert scores(1) == scores(1)
    assert scores(1) != scores(2)


def test_one_wild_value_does_not_squash_the_scale() -> None:
    rng = random.Random(2)
    scorer = HalfSpaceTreesScorer(window_size=100)
    for _ in range(500):
        scorer.learn_one(normal(rng))
    probe = {"events_per_min": 7.0, "failure_share": 0.05}
    before = scorer.transform_one(probe)
    scorer.learn_one({"events_per_min": 1e6, "failure_share": 1.0})  # one unflagged outlier
    after = scorer.transform_one(probe)
    assert after == pytest.approx(before, abs=0.01)
    storm = {"events_per_min": 6.0, "failure_share": 0.6}
    assert scorer.score_one(storm) > scorer.score_one(probe) + 0.1


def test_fixed_limits_skip_the_scaling() -> None:
    rng = random.Random(4)
    limits = {"events_per_min": (0.0, 20.0), "failure_share": (0.0, 1.0)}
    scorer = HalfSpaceTreesScorer(window_size=100, limits=limits)
    assert scorer.transform_one({"events_per_min": 6.0}) == {"events_per_min": 6.0}
    for _ in range(300):
        scorer.learn_one(normal(rng))
    storm = scorer.score_one({"events_per_min": 6.0, "failure_share": 0.7})
    assert storm > scorer.score_one({"events_per_min": 6.0, "failure_share": 0.03})


def test_scaling_quantiles_are_rivers_p_square_estimates() -> None:
    from river import stats

    from agentwatch.detectors.half_space_trees import _P2Quantile

    rng = random.Random(5)
    for q in (0.25, 0.5, 0.75):
        ours, rivers = _P2Quantile(q), stats.Quantile(q)
        assert ours.get() is None
        for _ in range(3000):
            x = rng.choice((rng.gauss(0.0, 1.0), rng.lognormvariate(0.0, 2.0), 3.0))
            ours.update(x)
            rivers.update(x)
            assert ours.get() == rivers.get()  # exactly: the same arithmetic


@pytest.mark.parametrize("learned", [0, 30, 149, 150, 400])
def test_state_is_json_and_restores_exactly(learned: int) -> None:
    rng = random.Random(6)
    scorer = HalfSpaceTreesScorer(n_trees=5, height=4, window_size=150, seed=3)
    for _ in range(learned):
        scorer.learn_one(normal(rng))
    state = scorer.to_state()
    text = json.dumps(state)
    restored = HalfSpaceTreesScorer.from_state(json.loads(text), **scorer.params())
    assert restored.to_state() == state
    for _ in range(300):  # the two go on identically, through window pivots
        x = normal(rng)
        assert restored.score_one(x) == scorer.score_one(x)
        assert restored.transform_one(x) == scorer.transform_one(x)
        restored.learn_one(x)
        scorer.learn_one(x)
    assert restored.to_state() == scorer.to_state()


def test_state_with_fixed_limits_has_no_scaling() -> None:
    limits = {"events_per_min": (0.0, 20.0), "failure_share": (0.0, 1.0)}
    scorer = HalfSpaceTreesScorer(window_size=50, limits=limits)
    rng = random.Random(7)
    for _ in range(120):
        scorer.learn_one(normal(rng))
    state = json.loads(json.dumps(scorer.to_state()))
    assert state["scale"] == {}
    restored = HalfSpaceTreesScorer.from_state(state, **scorer.params())
    probe = {"events_per_min": 6.0, "failure_share": 0.7}
    assert restored.score_one(probe) == scorer.score_one(probe) > 0.0


def test_a_river_pipeline_step() -> None:
    from river import compose

    assert HalfSpaceTreesScorer._supervised is False
    pipeline = compose.Pipeline(HalfSpaceTreesScorer(window_size=50))
    direct = HalfSpaceTreesScorer(window_size=50)
    rng = random.Random(8)
    for _ in range(120):
        x = normal(rng)
        assert pipeline.score_one(x) == direct.score_one(x)
        pipeline.learn_one(x)
        direct.learn_one(x)
    assert repr(direct).startswith("HalfSpaceTreesScorer(n_trees=25, height=8, window_size=50")
