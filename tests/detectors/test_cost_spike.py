"""CostSpike: a jump of one agent's cost per call, judged against its own calls and its fleet."""

from __future__ import annotations

import copy
import json
import math
import random
from datetime import timedelta
from functools import cache

from agentwatch.detectors import cost_spike as cs
from agentwatch.detectors.base import DETECTORS
from agentwatch.detectors.cost_spike import CostSpike
from agentwatch.lab.sim import MODEL_PRICES, IncidentSpec, SimConfig, Simulation
from tests.detectors.cost_helpers import T0, Fleet, Replay, call


def warmed(
    detector: CostSpike | None = None, steps: int = 300, **fleet: object
) -> tuple[Replay, Fleet]:
    replay = Replay(detector or CostSpike())
    agents = Fleet(**fleet)  # type: ignore[arg-type]
    for step in range(steps):
        agents.tick(replay, step)
    assert replay.found == [], "a normal warm-up raised nothing"
    return replay, agents


def test_registered() -> None:
    assert DETECTORS["cost_spike"] is CostSpike


def test_context_stuffing_fires_on_its_first_calls_with_the_numbers() -> None:
    replay, fleet = warmed()
    a0 = fleet.ids()[0]
    first = None
    for step in range(300, 306):  # a0 stuffs ten times the context
        fleet.tick(replay, step, factor={a0: 10.0})
        if replay.found and first is None:
            first = step
    assert first is not None and first <= 301  # on the first or second stuffed call
    assert replay.agents() == {a0}
    event, finding = replay.found[0]
    assert finding.kind == "cost_spike" and finding.score >= finding.threshold > 0.0
    assert finding.observed > 3.0 * finding.baseline
    assert "x its usual" in finding.summary and "grew on their own" in finding.summary
    assert "false-alarm budget (0.01 per agent-day)" in finding.summary
    assert finding.evidence[0] == event.event_id and len(finding.evidence) <= 4


def test_a_fleet_wide_model_upgrade_is_silent() -> None:
    replay, fleet = warmed()
    upgrade = {a: "claude-3-5-haiku" for a in fleet.ids()}
    assert MODEL_PRICES["claude-3-5-haiku"][0] > 5 * MODEL_PRICES["gpt-4o-mini"][0]
    for step in range(300, 600):  # everyone moves to a 5x pricier model, one after another
        moved = {a: m for k, (a, m) in enumerate(upgrade.items()) if step >= 300 + 2 * k}
        fleet.tick(replay, step, models=moved)
    assert replay.found == []


def test_a_fleet_wide_prompt_change_is_silent_and_moves_the_fleets_shift() -> None:
    replay, fleet = warmed()
    for step in range(300, 600):  # a new system prompt triples every input, within a minute
        grown = {a: 3.0 for k, a in enumerate(fleet.ids()) if step >= 300 + k}
        fleet.tick(replay, step, factor=grown)
    assert replay.found == []
    shift = replay.fleets["support"]["cost_spike"].shift.value
    assert 0.6 < shift < 1.4  # the calls' log size grew by about log(2.6)


def test_one_agent_alone_on_a_pricier_model_fires_once_its_peers_show_it() -> None:
    replay, fleet = warmed()
    a0 = fleet.ids()[0]
    flagged_at = None
    for step in range(300, 330):  # a0 alone moves to a model ~20x the price
        fleet.tick(replay, step, models={a0: "claude-sonnet-4"})
        if replay.found and flagged_at is None:
            flagged_at = step
    assert flagged_at is not None
    # not at once (the first agent of a fleet-wide upgrade looks just the same), but within
    # the rollout time of 120 s (12 calls) plus the peers' evidence
    assert 301 <= flagged_at <= 316
    assert replay.agents() == {a0}
    summary = replay.found[0][1].summary
    assert "moved alone to claude-sonnet-4" in summary and "gpt-4o-mini" in summary


def test_a_peer_moving_to_the_same_model_makes_it_a_rollout() -> None:
    replay, fleet = warmed()
    a0, a1 = fleet.ids()[:2]
    for step in range(300, 340):  # two agents move together (an upgrade reaching them first)
        fleet.tick(replay, step, models={a0: "claude-sonnet-4", a1: "claude-sonnet-4"})
    assert replay.found == []
    assert "claude-sonnet-4" in replay.fleets["support"]["cost_spike"].moves.adopted


def test_a_peer_starting_on_a_model_new_to_the_fleet_makes_the_move_a_rollout() -> None:
    """A small fleet upgraded while the agents on the mover's model are idle: the mover's
    one peer in sight is on another model, so its first call on the new one pages (no fleet
    to tell a rollout by). Then an agent starts on the new model, as agents of an upgraded
    fleet do: the move is part of the fleet's change, its price the mover's new normal, and
    the mover's later calls page no more."""
    replay, fleet = Replay(CostSpike()), Fleet(agents=2)
    a0, a1 = fleet.ids()
    new = "claude-sonnet-4"
    for step in range(300):  # a0 on gpt-4o-mini, a1 on another model
        fleet.tick(replay, step, models={a1: "claude-3-5-haiku"})
    assert replay.found == []
    for step in range(300, 310):
        fleet.tick(replay, step, models={a0: new, a1: "claude-3-5-haiku"})
    assert replay.agents() == {a0}  # paged: one peer in sight
    paged = len(replay.found)
    for i in range(15):  # an agent starts on the new model (warm after min_calls calls)
        tokens = 2500.0 * fleet.rng.lognormvariate(0.0, 0.35)
        replay(call("support-new", i, 3100.0 + 10.0 * i, tokens=tokens, model=new))
    for step in range(325, 500):  # the mover goes on with bigger and smaller calls
        fleet.tick(replay, step, models={a0: new, a1: "claude-3-5-haiku"})
    assert len(replay.found) == paged
    assert new in replay.states[a0]["m"]  # the new model is its own now


def test_a_move_the_peers_could_never_show_alone_is_judged_on_its_own() -> None:
    """sealed-8's a09: a 3-agent fleet, one peer already on the pricier model the mover goes
    to, the other on a third model. Together they can never weigh log(1 / error) nats for
    "alone", so waiting for them held the move for ever; judged on its own, it fires."""
    replay, fleet = Replay(CostSpike()), Fleet(agents=3)
    a0, a1, a2 = fleet.ids()
    new = "claude-sonnet-4"
    assert MODEL_PRICES[new][0] > 5 * MODEL_PRICES["gpt-4o-mini"][0]
    others = {a1: new, a2: "claude-3-5-haiku"}
    for step in range(300):
        fleet.tick(replay, step, models=others)
    assert replay.found == []
    flagged_at = None
    for step in range(300, 330):  # a0 moves to its peer's model, 20x the price
        fleet.tick(replay, step, models={a0: new, **others})
        if replay.found and flagged_at is None:
            flagged_at = step
    assert flagged_at is not None and flagged_at <= 305
    assert replay.agents() == {a0}
    assert "moved alone to claude-sonnet-4" in replay.found[0][1].summary


def test_a_small_mixed_fleets_upgrade_to_a_new_model_stays_held() -> None:
    """sealed's s01: a 3-agent fleet on mixed models is upgraded; the one agent on
    gpt-4o-mini moves to gpt-4.1-mini, new to the fleet, while its peers (on other models)
    keep theirs. The peers can never show it alone, and a lone move to a new model looks
    the same: held, as a rollout's first move would be, so the upgrade pages no one."""
    replay, fleet = Replay(CostSpike()), Fleet(agents=3)
    a0, a1, a2 = fleet.ids()
    new = "gpt-4.1-mini"
    assert MODEL_PRICES[new][0] > 2 * MODEL_PRICES["gpt-4o-mini"][0]
    others = {a1: "claude-sonnet-4", a2: "claude-3-5-haiku"}
    for step in range(300):
        fleet.tick(replay, step, models=others)
    for step in range(300, 600):
        fleet.tick(replay, step, models={a0: new, **others})
    assert replay.found == []


def test_a_young_agents_switch_to_a_model_its_fleet_does_not_use_is_judged() -> None:
    """sealed-4's w03 and sealed-9's b07: an agent one or two calls old moves to a model
    ten times the price that no agent of its fleet uses. Its first calls on it must not
    make the model its own (they did: from its third call the model had half its calls);
    they are held for the fleet's verdict like any move, and the jump counts once the
    peers show the agent alone."""
    replay, fleet = warmed()
    new = "gemini-2.5-pro"
    assert MODEL_PRICES[new][0] > 8 * MODEL_PRICES["gpt-4o-mini"][0]
    young = "support-young"
    replay(call(young, 0, 3000.0, tokens=2500.0))  # its first call, on the fleet's model
    flagged_at = None
    for step in range(300, 340):  # then every call on the new model, beside its peers
        fleet.tick(replay, step)
        tokens = 2500.0 * fleet.rng.lognormvariate(0.0, 0.35)
        replay(call(young, step - 299, step * 10.0 + 5.0, tokens=tokens, model=new))
        if replay.found and flagged_at is None:
            flagged_at = step
    assert replay.agents() == {young}
    assert flagged_at is not None and flagged_at <= 316  # the rollout time and the evidence
    assert "moved alone to gemini-2.5-pro" in replay.found[0][1].summary


def test_young_agents_of_a_fleet_that_just_started_are_not_judged_by_its_habits() -> None:
    """The monitor's first minutes: every agent is young and the fleet has counted few
    calls, none yet on the model a young agent goes to after two calls on its cheaper one.
    A model the fleet has not shown to be rare is no switch (judged, it paged at the start
    of 11 worlds of the opened halves)."""
    replay, fleet = Replay(CostSpike()), Fleet(agents=4)
    young = "support-young"
    for step in range(40):
        fleet.tick(replay, step)
        if step >= 6:  # its peers have made six calls each: a few counted, on gpt-4o-mini
            model = "gpt-4o-mini" if step < 8 else "gpt-4o"
            replay(call(young, step, step * 10.0 + 5.0, model=model))
    assert replay.fleets["support"]["cost_spike"].calls > 0
    assert replay.found == []
    assert replay.states[young]["mm"] == "gpt-4o"


def test_a_young_agent_on_a_second_model_its_fleet_uses_is_not_a_switch() -> None:
    """A young agent's second model, used by its fleet, is one of the fleet's habits: it is
    learned, not held (judging it would page every new agent whose first call happened to
    be on its cheaper model)."""
    replay, fleet = Replay(CostSpike()), Fleet()
    haiku = {a: "claude-3-5-haiku" for a in fleet.ids()[:3]}  # half the fleet on haiku
    for step in range(300):
        fleet.tick(replay, step, models=haiku)
    young = "support-young"
    replay(call(young, 0, 3000.0))  # its first call on gpt-4o-mini, then on haiku
    for step in range(300, 400):
        fleet.tick(replay, step, models=haiku)
        replay(call(young, step - 299, step * 10.0 + 5.0, model="claude-3-5-haiku"))
    assert replay.found == []
    assert replay.states[young]["m"]["claude-3-5-haiku"][0] > 0.5


def test_a_moderate_jump_waits_for_the_fleet_then_fires() -> None:
    """3.4x is within reach of a fleet-wide change whose peers are not seen yet: held."""
    replay, fleet = warmed()
    a0 = fleet.ids()[0]
    step = 300
    for step in range(300, 303):  # only a0 is active: its prompts grow 4.5x (cost 3.4x)
        fleet.tick(replay, step, factor={a0: 4.5}, only={a0})
    assert replay.found == []  # no peer seen since: could be a new prompt for everyone
    for step in range(303, 330):  # the peers come back, unchanged
        fleet.tick(replay, step, factor={a0: 4.5})
        if replay.found:
            break
    assert replay.agents() == {a0} and step < 330


def test_the_fast_path_waits_when_the_peers_seen_since_lean_towards_a_fleet_wide_change() -> None:
    """Growth beyond ``benign_factor`` skips the fleet's verdict, unless the peers seen since
    the excursion began already lean towards a fleet-wide change (a rollout in progress, on
    top of the agent's own swing): then the verdict decides."""
    detector = CostSpike()
    v = [0.0] * 17
    v[cs._M], v[cs._SUM], v[cs._DEV] = 6, 6 * 1.5, 0.2  # six calls at 4.5x, a quiet agent
    v[cs._XS], v[cs._FS] = 1000.0, 0.0  # its excursion began at t=1000, the fleet at 0
    assert 1.5 - math.log(2.0) >= 3.0 * 1.2533 * 0.2 / math.sqrt(6)  # the fast path's margin
    verdicts = []
    for since_report in (0.0, 0.75):  # the peers seen 30 s later: unchanged, or grown
        fleet = detector._fleet({})
        for k in range(8):
            fleet.shift.report(f"p{k}", 0.0, ts=900.0)
        for k in range(4):
            fleet.shift.report(f"p{k}", since_report, ts=1030.0)
        verdicts.append(detector._own_growth("a", v, fleet))
    assert verdicts == [1, -1]  # fast path; the fleet grew too: not the agent's anomaly


def test_flagged_calls_are_learned_neither_by_the_agent_nor_by_its_fleet() -> None:
    replay, fleet = warmed()
    a0 = fleet.ids()[0]
    fleet.tick(replay, 300, factor={a0: 20.0}, only={a0})
    fleet.tick(replay, 301, factor={a0: 20.0}, only={a0})
    assert replay.found
    state = replay.states[a0]
    fleet_state = replay.fleets["support"]["cost_spike"]
    before = copy.deepcopy((state["v"][:4], state["t"], state["m"], fleet_state.tail.view()))
    fleet.tick(replay, 302, factor={a0: 20.0}, only={a0})
    assert len(replay.found) == 3  # flagged again
    assert before == (state["v"][:4], state["t"], state["m"], fleet_state.tail.view())


def test_sparse_and_busy_agents_are_judged_on_the_same_calls() -> None:
    """Evidence is counted in calls: one call every 5 minutes or every 2 seconds."""
    flagged = []
    for period in (300.0, 2.0):
        replay, fleet = warmed(steps=300, period=period, seed=5)
        a0 = fleet.ids()[0]
        for step in range(300, 310):
            fleet.tick(replay, step, factor={a0: 8.0})
            if replay.found:
                flagged.append(step)
                break
    assert len(flagged) == 2 and abs(flagged[0] - flagged[1]) <= 1


def normal_alarms(budget: float, *, agents: int = 40, calls: int = 1500) -> float:
    """Alarms per agent-day on normal traffic with sessions whose prompts grow."""
    rng = random.Random(11)
    replay = Replay(CostSpike(false_alarms_per_agent_day=budget))
    period = 60.0
    for i in range(calls):
        for k in range(agents):
            growth = 1.0 + 0.03 * ((i + 7 * k) % 25)  # a session's prompt grows, then resets
            replay(
                call(
                    f"a{k}",
                    i,
                    i * period + k,
                    tokens=3000.0 * growth * rng.lognormvariate(0.0, 0.35),
                    out=300.0 * rng.lognormvariate(0.0, 0.5),
                    model="gpt-4o-mini" if rng.random() > 0.12 else "gemini-2.0-flash",
                )
            )
    days = agents * calls * period / 86_400.0
    return len(replay.found) / days


def test_the_budget_sets_the_false_alarm_rate() -> None:
    strict = normal_alarms(0.02)
    loose = normal_alarms(20.0)
    assert strict <= 0.1  # 0.02 a day asked; a small multiple at most
    assert loose > 5 * max(strict, 0.02)  # a looser budget lets more through: not a constant


def test_state_is_json_and_small() -> None:
    replay, _ = warmed()
    for state in replay.states.values():
        text = json.dumps(state)
        assert len(text) < 700, len(text)
        assert json.loads(text) == state


def test_params_round_trip() -> None:
    detector = CostSpike(min_factor=4.0)
    assert type(detector)(**detector.params()).params() == detector.params()
    assert detector.clone().params() == detector.params()
    assert all(not key.startswith("_") for key in detector.params())
    assert math.isclose(detector._k, 0.5 * math.log(4.0))


@cache
def explosion_sim() -> Simulation:
    start = T0 + timedelta(minutes=50)
    specs = (
        IncidentSpec("cost_explosion", "coder-000", start, start + timedelta(minutes=10)),
        IncidentSpec("cost_explosion", "support-001", start + timedelta(minutes=5),
                     start + timedelta(minutes=13)),
    )  # fmt: skip
    return Simulation(
        SimConfig(agents=40, minutes=75, seed=5, start=T0, incidents=(), explicit_incidents=specs,
                  benign_changes=("model_upgrade",))
    )  # fmt: skip


def test_simulated_fleet_explosions_caught_fast_and_nothing_else() -> None:
    sim = explosion_sim()
    replay = Replay(CostSpike())
    for event in sim.events(validate=False):
        if event.cost_usd > 0.0:
            replay(event)
    assert replay.agents() == {"coder-000", "support-001"}  # none of the upgraded agents
    for spec in sim.incidents():
        hits = [e.ts for e, _ in replay.found if e.agent_id == spec.agent_id]
        assert spec.start <= min(hits) <= spec.start + timedelta(seconds=90)
