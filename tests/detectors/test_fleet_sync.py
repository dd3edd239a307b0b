"""FleetSync: the other workers' newest fleet summaries, and their expiry."""

from __future__ import annotations

from agentwatch.detectors.fleet_sync import FleetSync


def test_the_newest_partial_per_worker_wins_and_our_own_is_not_an_other() -> None:
    sync = FleetSync("w1", ttl_s=60.0)
    assert sync.put("w2", "ops", {"r": 1}, now=10.0)
    assert sync.put("w2", "ops", {"r": 2}, now=15.0)
    assert sync.put("w3", "ops", {"r": 3}, now=12.0)
    assert not sync.put("w1", "ops", {"r": 9}, now=16.0)
    assert sync.others("ops") == [{"r": 2}, {"r": 3}]  # by worker id, newest each
    assert sync.workers("ops") == ["w2", "w3"]
    assert sync.published("ops") == {"w2": 15.0, "w3": 12.0}
    assert sync.others("support") == []


def test_a_worker_that_stops_publishing_expires_after_the_ttl() -> None:
    sync = FleetSync("w1", ttl_s=60.0)
    sync.put("w2", "ops", {"r": 1}, now=0.0)
    sync.put("w3", "ops", {"r": 2}, now=50.0)
    sync.put("w2", "support", {"r": 3}, now=0.0)
    assert sync.expire(now=59.0) == []
    assert sorted(sync.expire(now=61.0)) == ["ops", "support"]
    assert sync.others("ops") == [{"r": 2}]
    assert sync.fleets() == ["ops"]
    assert sync.expire(now=111.0) == ["ops"]
    assert sync.fleets() == []


def test_drop_forgets_one_worker_of_one_fleet() -> None:
    sync = FleetSync("w1")
    sync.put("w2", "ops", {"r": 1}, now=0.0)
    assert sync.drop("w2", "ops")
    assert not sync.drop("w2", "ops")
    assert sync.others("ops") == []
