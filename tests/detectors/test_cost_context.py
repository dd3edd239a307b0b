"""Fleet context of the cost detectors: the fleet's own shift, and lone model moves."""

from __future__ import annotations

import math

import pytest

from agentwatch.detectors.cost_context import FleetShift, ModelMoves, call_size


def test_call_size_weighs_output_tokens_and_falls_back_to_cost() -> None:
    assert call_size(1000, 250, 0.01, 4.0) == pytest.approx(math.log(2000.0))
    assert call_size(0, 0, 0.002, 4.0) == pytest.approx(math.log(2000.0))  # a priced API call


def test_the_shift_is_the_median_of_the_active_agents() -> None:
    shift = FleetShift(window_s=600.0)
    for k in range(9):  # eight agents moved by 0.7, one exploded by 3.0
        shift.report(f"a{k}", 3.0 if k == 8 else 0.7, ts=100.0 + k)
    assert shift.refresh(110.0) == pytest.approx(0.7)
    for k in range(9):  # ... and agents that went quiet long ago no longer count
        shift.report(f"b{k}", 0.0, ts=2000.0)
    assert shift.refresh(2000.0) == pytest.approx(0.0)


def test_the_shift_ignores_the_noise_of_a_few_agents() -> None:
    shift = FleetShift()
    for k, estimate in enumerate((0.1, -0.3, 0.25, -0.05, 0.3)):  # noise around 0
        shift.report(f"a{k}", estimate, ts=float(k))
    assert shift.refresh(5.0) == 0.0  # the median (0.1) is within its standard error
    assert shift.peers("a0") == 4 and shift.peers("zz") == 5


def test_the_verdict_waits_for_peers_seen_after_the_agent_grew() -> None:
    shift = FleetShift(rollout_s=120.0, error=0.01)
    for k in range(8):  # peers seen before the agent grew say nothing
        shift.report(f"p{k}", 0.0, ts=50.0)
    assert shift.verdict("a", since=100.0, base=0.0, growth=1.5) == 0
    for k in range(3):  # a few peers soon after: a rollout may not have reached them yet
        shift.report(f"p{k}", 0.0, ts=110.0)
    assert shift.verdict("a", since=100.0, base=0.0, growth=1.5) == 0
    for k in range(8):  # every peer well after the rollout time, unchanged: alone
        shift.report(f"p{k}", 0.05, ts=400.0)
    assert shift.verdict("a", since=100.0, base=0.0, growth=1.5) == 1
    for k in range(8):  # ... or grown like the agent: its fleet's change
        shift.report(f"p{k}", 1.2, ts=500.0)
    assert shift.verdict("a", since=100.0, base=0.0, growth=1.5) == -1


def test_model_moves_alone_needs_peers_on_their_own_models_after_the_move() -> None:
    moves = ModelMoves(rollout_s=120.0, error=0.01)
    for k in range(6):
        moves.on_main(f"p{k}", "gpt-4o-mini", ts=10.0)  # before the move: no evidence
    assert not moves.alone("a", since=100.0, own_main="gpt-4o-mini", model="claude-opus-4")
    moves.on_main("p0", "gpt-4o-mini", ts=150.0)  # one peer, half the rollout time later
    assert not moves.alone("a", since=100.0, own_main="gpt-4o-mini", model="claude-opus-4")
    moves.on_main("p1", "gpt-4o-mini", ts=250.0)  # one peer of its cohort after the rollout
    assert moves.alone("a", since=100.0, own_main="gpt-4o-mini", model="claude-opus-4")


def test_peers_already_on_the_new_model_say_nothing() -> None:
    moves = ModelMoves(rollout_s=120.0)
    for k in range(3):  # its cohort, seen before the move: no evidence yet
        moves.on_main(f"c{k}", "gpt-4o-mini", ts=50.0)
    for k in range(10):  # an upgrade would leave them where they are
        moves.on_main(f"p{k}", "claude-opus-4", ts=500.0)
    assert not moves.alone("a", since=100.0, own_main="gpt-4o-mini", model="claude-opus-4")
    moves.on_main("c0", "gpt-4o-mini", ts=150.0)  # half the rollout time: not yet
    assert not moves.alone("a", since=100.0, own_main="gpt-4o-mini", model="claude-opus-4")
    moves.on_main("c1", "gpt-4o-mini", ts=300.0)  # after it: 0.69 + 4.6 nats, all the cohort's
    assert moves.alone("a", since=100.0, own_main="gpt-4o-mini", model="claude-opus-4")


def test_peers_that_could_never_show_it_leave_a_move_to_a_model_the_fleet_runs_judged() -> None:
    """A 3-agent fleet (sealed-8's a09): one peer already on the model the agent moves to
    (no evidence either way), one on another main model (at most log 2 nats). Together they
    can never reach log(1 / error): a move to a model the fleet already runs is judged on
    its own instead of held for ever; one to a model no peer runs (an upgrade, in a fleet
    of mixed models) stays held."""
    moves = ModelMoves(rollout_s=120.0, error=0.01)
    moves.seen("claude-opus-4", ts=-500.0)  # the fleet ran it long before the move
    moves.on_main("p0", "claude-opus-4", ts=50.0)
    moves.on_main("p1", "gpt-4.1-mini", ts=50.0)
    assert moves.alone("a", since=100.0, own_main="gpt-4.1", model="claude-opus-4")
    moves.seen("o3", ts=100.0)  # new to the fleet: a0's own first call on it
    assert not moves.alone("a", since=100.0, own_main="gpt-4.1", model="o3")
    moves.seen("gpt-4o", ts=-500.0)  # called before (by a0 itself, say), no peer's main
    assert not moves.alone("a", since=100.0, own_main="gpt-4.1", model="gpt-4o")
    moves.on_main("p1", "gpt-4.1-mini", ts=400.0)  # however long the peers are seen after
    assert not moves.alone("a", since=100.0, own_main="gpt-4.1", model="o3")
    moves.on_main("p2", "gpt-4.1", ts=50.0)  # one of its cohort could show it: wait for it
    assert not moves.alone("a", since=100.0, own_main="gpt-4.1", model="claude-opus-4")
    moves.on_main("p2", "gpt-4.1", ts=400.0)  # seen after the rollout time: log(1 / error)
    assert moves.alone("a", since=100.0, own_main="gpt-4.1", model="claude-opus-4")
    assert moves.alone("a", since=100.0, own_main="gpt-4.1", model="o3")


def test_a_peer_moving_to_the_same_model_is_a_rollout() -> None:
    moves = ModelMoves(rollout_s=120.0)
    moves.moved("p1", "gpt-4.1", ts=50.0)
    assert moves.others_moved("a", "gpt-4.1", since=100.0)
    assert not moves.others_moved("a", "claude-opus-4", since=100.0)  # another model
    assert not moves.others_moved("a", "gpt-4.1", since=400.0)  # long before: not this one
    assert not moves.others_moved("p1", "gpt-4.1", since=100.0)  # itself


def test_a_peer_on_a_model_new_to_the_fleet_is_a_rollout_and_an_old_one_is_not() -> None:
    moves = ModelMoves(rollout_s=120.0)
    moves.seen("claude-opus-4", ts=0.0)  # the fleet has called it for long
    moves.on_main("p1", "claude-opus-4", ts=900.0)
    assert not moves.others_adopted("a", "claude-opus-4", since=1000.0)  # a lone switch
    moves.seen("gpt-4.1-mini", ts=1000.0)  # first called by the mover itself
    moves.seen("gpt-4.1-mini", ts=1500.0)  # later calls do not move its date
    assert not moves.others_adopted("a", "gpt-4.1-mini", since=1000.0)
    moves.on_main("a", "gpt-4.1-mini", ts=1600.0)  # the mover itself says nothing
    assert not moves.others_adopted("a", "gpt-4.1-mini", since=1000.0)
    moves.on_main("p2", "gpt-4.1-mini", ts=1700.0)  # a peer starts on it: an upgrade
    assert moves.others_adopted("a", "gpt-4.1-mini", since=1000.0)


def test_first_calls_travel_between_workers_and_old_parts_have_none() -> None:
    one, two = ModelMoves(), ModelMoves()
    one.seen("gpt-4.1-mini", ts=1000.0)
    two.seen("gpt-4.1-mini", ts=1200.0)
    two.absorb([one.partial()])
    two.on_main("p2", "gpt-4.1-mini", ts=1300.0)
    assert two.others_adopted("a", "gpt-4.1-mini", since=1050.0)
    assert not two.others_adopted("a", "gpt-4.1-mini", since=1200.0 + 121.0 + 1000.0)
    restored = ModelMoves()
    restored.restore(one.partial())
    restored.on_main("p3", "gpt-4.1-mini", ts=1100.0)
    assert restored.others_adopted("a", "gpt-4.1-mini", since=1000.0)
    old = {k: v for k, v in one.partial().items() if k != "f"}  # from before first calls
    fresh = ModelMoves()
    fresh.absorb([old])
    fresh.on_main("p4", "gpt-4.1-mini", ts=1100.0)
    assert not fresh.others_adopted("a", "gpt-4.1-mini", since=1000.0)  # undated: not new
