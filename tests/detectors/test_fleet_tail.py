"""FleetTail: a fleet's pooled tail summed over workers, decayed by the fleet's checks."""

from __future__ import annotations

import random

import orjson
import pytest

from agentwatch.detectors.calibration import BudgetThreshold
from agentwatch.detectors.fleet_tail import FleetTail

KEEP = 0.5 ** (1.0 / 50.0)


def test_one_worker_learns_what_a_budget_threshold_learns() -> None:
    rng = random.Random(3)
    tail, reference = FleetTail(KEEP, floor=1.0), BudgetThreshold(floor=1.0, half_life=50.0)
    for i in range(500):
        score = rng.expovariate(0.5)
        tail.learn(score, ts=float(i))
        reference.learn_one(score, ts=float(i))
    assert tail.view() == pytest.approx(reference.to_state(), rel=1e-12)


@pytest.mark.parametrize("workers", [2, 3, 5])
def test_workers_exchanging_after_every_check_hold_the_single_workers_tail(workers: int) -> None:
    rng = random.Random(workers)
    one = FleetTail(KEEP)
    parts = [FleetTail(KEEP) for _ in range(workers)]
    for i in range(2000):
        score = rng.expovariate(1.0)
        one.learn(score, ts=float(i))
        w = rng.randrange(workers)  # agents are spread over the workers
        parts[w].learn(score, ts=float(i))
        published = [orjson.loads(orjson.dumps(p.partial())) for p in parts]
        for k, part in enumerate(parts):
            part.absorb([published[j] for j in range(workers) if j != k])
    for part in parts:
        assert part.view() == pytest.approx(one.view(), rel=1e-9)
        assert part.seen() == 2000.0


def test_absorb_replaces_the_remote_view_and_restore_resumes_the_own_part() -> None:
    a, b = FleetTail(KEEP), FleetTail(KEEP)
    for i in range(10):
        b.learn(2.0, ts=float(i))
    a.absorb([b.partial()])
    a.absorb([b.partial()])  # the same partial again: not counted twice
    assert a.seen() == 10.0
    a.learn(3.0, ts=11.0)
    again = FleetTail(KEEP)
    again.restore(a.partial())
    again.absorb([b.partial()])
    assert again.view() == pytest.approx(a.view())
    a.absorb([])  # the other worker expired
    assert a.seen() == 1.0
