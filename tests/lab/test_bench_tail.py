"""Where the benchmark's latency tail comes from: snapshot windows and full collections."""

from __future__ import annotations

import gc

import pytest

from agentwatch.lab.bench_tail import FullCollections, snapshot_figures, tail_near_snapshots


def test_the_slowest_events_folded_during_or_just_after_a_snapshot_are_counted() -> None:
    # 990 events at 80 ms, one a second from t=0; the 10 slowest (500 ms) at t=10.2..19.2
    samples = [(float(t), 80.0) for t in range(990)]
    samples += [(10.2 + k, 500.0) for k in range(10)]
    windows = [(10.0, 14.0, 1000), (16.0, 16.5, 900)]  # covers 10-15 and 16-17.5 with after_s=1
    # slow ones at 10.2, 11.2, 12.2, 13.2, 14.2, 16.2, 17.2 are near; 15.2, 18.2, 19.2 are not
    assert tail_near_snapshots(samples, windows, quantile=0.99) == 0.7
    assert tail_near_snapshots(samples, windows, quantile=0.99, after_s=0.0) == 0.5
    # all events: those at t = 10..15, 16 and 17 at 80 ms plus the 7 slow ones near, of 1,000
    assert tail_near_snapshots(samples, windows, quantile=0.0) == round(15 / 1000, 3)


def test_no_snapshot_or_no_sample_gives_zero_or_nothing() -> None:
    samples = [(1.0, 10.0), (2.0, 20.0)]
    assert tail_near_snapshots(samples, []) == 0.0
    assert tail_near_snapshots([], [(0.0, 5.0, 10)]) is None


def test_snapshot_figures_are_count_median_wall_time_and_median_size() -> None:
    figures = snapshot_figures([(0.0, 0.5, 800), (3.0, 4.0, 1000), (6.0, 6.8, 990)])
    assert figures == {"snapshots": 3, "snapshot_median_s": 0.8, "snapshot_agents_median": 990.0}
    assert snapshot_figures([]) == {
        "snapshots": 0,
        "snapshot_median_s": None,
        "snapshot_agents_median": None,
    }


def test_full_collections_are_counted_while_active_only() -> None:
    with FullCollections() as full:
        gc.collect()
        gc.collect(0)  # a young collection is not a full one
        gc.collect()
    assert full.count == 2
    assert 0.0 < full.max_s <= full.total_s
    gc.collect()  # after the block: not counted, and the callback is gone
    assert full.count == 2
    assert full._callback not in gc.callbacks


@pytest.mark.parametrize("quantile", [0.5, 0.99])
def test_every_slow_event_near_a_long_snapshot_gives_one(quantile: float) -> None:
    samples = [(float(t), float(t)) for t in range(100)]
    assert tail_near_snapshots(samples, [(0.0, 100.0, 5)], quantile=quantile) == 1.0
