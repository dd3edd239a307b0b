from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import pairwise
from typing import Any

import pytest

from agentwatch.detectors.base import DETECTORS, Finding
from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.detectors.failure_rate import FailureRate
from agentwatch.lab.sim import IncidentSpec, SimConfig, Simulation
from agentwatch.schemas import ActionEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
ACTIONS = ("read_logs", "chat", "query_metrics", "http_get")


def event(agent: str, i: int, status: str = "ok", action: str | None = None) -> ActionEvent:
    return ActionEvent(
        event_id=f"{agent}-{i}",
        agent_id=agent,
        fleet="ops",
        ts=T0 + timedelta(seconds=6.0 * i),
        action=action or ACTIONS[i % len(ACTIONS)],
        status=status,
    )


class Replay:
    def __init__(self, detector: FailureRate) -> None:
        self.detector = detector
        self.baselines: dict[str, AgentBaseline] = {}
        self.states: dict[str, dict[str, Any]] = {}
        self.fleet: dict[str, Any] = {}
        self.found: list[tuple[ActionEvent, Finding]] = []

    def __call__(self, e: ActionEvent) -> list[Finding]:
        b = self.baselines.setdefault(e.agent_id, AgentBaseline(e.agent_id, e.fleet))
        out = self.detector.update(e, b, self.states.setdefault(e.agent_id, {}), self.fleet)
        b.update(e)
        self.found.extend((e, f) for f in out)
        return out


def normal(replay: Replay, upto: int, agents: int = 10) -> None:
    for i in range(upto):
        for k in range(agents):
            fail = (i * 7 + k * 13) % 150 == 0  # about 0.7 % failures, spread out
            replay(event(f"a{k}", i, "error" if fail else "ok"))


def test_registered() -> None:
    assert DETECTORS["failure_rate"] is FailureRate


def test_an_error_storm_across_tools_fires_with_the_numbers() -> None:
    replay = Replay(FailureRate())
    normal(replay, 500)
    for i in range(500, 520):
        for k in range(10):
            storm = k == 0 and i % 3 != 2  # two calls in three fail, on every tool
            replay(event(f"a{k}", i, "error" if storm else "ok"))
    assert {e.agent_id for e, _ in replay.found} == {"a0"}
    e, first = replay.found[0]
    assert first.kind == "error_storm"
    assert e.ts - T0 <= timedelta(seconds=6 * 500 + 60)  # within a minute
    assert "a0 failed " in first.summary and "vs a usual" in first.summary
    assert "the budget fires at" in first.summary
    assert first.score >= first.threshold > 2.0
    assert first.observed > 0.3 > 0.02 > first.baseline
    assert len(first.actions) >= 2 and first.evidence[0] == e.event_id


def reliable(replay: Replay, agent: str = "a0", upto: int = 3000) -> None:
    for i in range(upto):  # never fails: its failure share falls to the prior's floor
        replay(event(agent, i))


def test_a_reliable_agents_storm_is_caught_at_its_third_error() -> None:
    replay = Replay(FailureRate())
    reliable(replay)
    assert replay(event("a0", 3000, "error")) == []
    assert replay(event("a0", 3001, "error")) == []
    [found] = replay(event("a0", 3002, "error"))  # three tools failed in a row
    assert found.kind == "error_storm" and found.score >= found.threshold
    assert found.summary.startswith("a0 failed 3 of its last 3 calls (100%)")
    assert found.evidence == ("a0-3002", "a0-3001", "a0-3000")
    assert set(found.actions) == {"read_logs", "chat", "query_metrics"}
    slow = Replay(FailureRate(min_storm=99))
    reliable(slow)
    assert [slow(event("a0", i, "error")) for i in range(3000, 3003)] == [[], [], []]


def test_evidence_is_counted_in_calls_not_seconds() -> None:
    """The same calls, one every 6 s or one every 10 min, score the same."""
    scores = []
    for spacing in (1.0, 100.0):
        replay = Replay(FailureRate())
        for i in range(3003):
            e = event("a0", i, "error" if i >= 3000 else "ok")
            replay(e.model_copy(update={"ts": T0 + timedelta(seconds=6.0 * spacing * i)}))
        [(_, found)] = replay.found
        scores.append(found.score)
    assert scores[0] == scores[1]


def test_a_larger_budget_lowers_the_threshold() -> None:
    thresholds = []
    for budget in (0.001, 0.02, 1.0):
        replay = Replay(FailureRate(false_alarms_per_agent_day=budget))
        normal(replay, 500)
        for i in range(500, 540):
            replay(event("a0", i, "error" if i % 2 else "ok"))
        thresholds.append(replay.found[0][1].threshold)
    assert thresholds[0] > thresholds[1] > thresholds[2]
    assert thresholds[0] - thresholds[2] == pytest.approx(3.0, abs=0.3)  # log10 of 1000x


def test_retries_can_be_left_out_of_the_evidence() -> None:
    counted = Replay(FailureRate())
    skipped = Replay(FailureRate(skip_retries=True))
    for replay in (counted, skipped):
        reliable(replay)
        for n in range(3):  # one failed call retried twice, then the next call
            replay(event("a0", 3000 + n, "error", "http_get"))
        replay(event("a0", 3003, "ok", "read_logs"))
    assert counted.states["a0"]["i"] == 3003  # every try is a call
    assert skipped.states["a0"]["i"] == 3001  # the retries are not
    assert len(skipped.states["a0"]["r"]) == 1


def test_llm_calls_are_left_out() -> None:
    replay = Replay(FailureRate())
    reliable(replay)
    for i in range(3000, 3020):  # the model provider failing is not the agent's tools failing
        chat = event("a0", i, "error", "chat").model_copy(update={"kind": "llm"})
        assert replay(chat) == []
    assert replay.states["a0"].get("i", 0) == 0


def test_a_streak_on_one_tool_or_spread_out_is_not_a_storm() -> None:
    replay = Replay(FailureRate())
    reliable(replay)
    for i in range(3000, 3005):  # one tool failing, retried: an outage, not a storm
        assert replay(event("a0", i, "error", "http_get")) == []
    spread = Replay(FailureRate())
    reliable(spread)
    for i in range(3000, 3030):  # three failures over fifteen events
        assert spread(event("a0", i, "error" if i in (3000, 3007, 3014) else "ok")) == []


def test_a_streak_needs_event_numbers_from_this_version() -> None:
    replay = Replay(FailureRate())
    reliable(replay, upto=500)
    replay(event("a0", 500, "error"))
    replay(event("a0", 501, "error"))
    state = replay.states["a0"]
    del state["i"]  # as persisted before streaks: no event numbers
    state["r"] = [item[:4] for item in state["r"]]
    assert replay(event("a0", 502, "error")) == []  # old failures are not counted
    assert replay(event("a0", 503, "error")) == []
    assert len(state["r"][-1]) == 5 and state["i"] > 0


def test_a_single_tool_outage_is_not_a_storm() -> None:
    replay = Replay(FailureRate())
    normal(replay, 500)
    for i in range(500, 530):  # http_get down for three minutes for a0 and a1 only
        for k in range(10):
            action = ACTIONS[i % len(ACTIONS)]
            down = k < 2 and action == "http_get"
            replay(event(f"a{k}", i, "error" if down else "ok"))
    assert replay.found == []


def early_storm(replay: Replay, agent: str = "a0", at: int = 3000) -> list[Finding]:
    """One call failing with two retries, two successes, then a second tool failing."""
    steps = [("error", "http_get")] * 3 + [("ok", "chat"), ("ok", "query_metrics")]
    for n, (status, action) in enumerate(steps):
        assert replay(event(agent, at + n, status, action)) == []
    return replay(event(agent, at + len(steps), "error", "read_logs"))


def test_a_second_tool_failing_alone_in_the_fleet_is_an_early_storm() -> None:
    replay = Replay(FailureRate())
    reliable(replay)
    [found] = early_storm(replay)  # 30 s in: 4 failures on 2 tools, nobody else failing them
    assert found.kind == "error_storm" and found.score >= found.threshold
    assert found.actions == ("http_get", "read_logs")
    assert found.summary.startswith("a0 failed 4 of ")
    # before: one failure outside the most failing tool was never enough
    strict = Replay(FailureRate(lone_spread=99))
    reliable(strict)
    assert early_storm(strict) == []


def test_retried_failures_count_once_as_failures_and_as_calls() -> None:
    """A storm whose agent retries each failing call: one tool fails three times, then a
    second one three times, nobody else failing either, in an agent that fails one call in
    30. Once the first tool is left out, the second one's failures are weighed against
    the calls left in the same units (retries out of both): it fires. Counting its
    retried failures once but every call of the first tool as a trial, it never did."""
    replay = Replay(FailureRate())
    for i in range(3000):
        replay(event("a0", i, "error" if i % 30 == 7 else "ok"))
    storm = [("http_get", 3000), ("http_get", 3001), ("http_get", 3002)]
    storm += [("read_logs", 3003), ("read_logs", 3004), ("read_logs", 3005)]
    found = [f for action, i in storm for f in replay(event("a0", i, "error", action))]
    assert [f.kind for f in found] == ["error_storm"]
    assert found[0].actions == ("http_get", "read_logs")
    # one tool's outage with retries, for this agent alone, is still not a storm
    outage = Replay(FailureRate())
    reliable(outage)
    assert [outage(event("a0", 3000 + n, "error", "http_get")) for n in range(6)] == [[]] * 6


def test_a_second_tool_failing_during_a_peers_outage_is_not_a_storm() -> None:
    replay = Replay(FailureRate())
    reliable(replay)
    assert replay(event("a1", 2998, "error", "http_get")) == []  # a peer failed it twice
    assert replay(event("a1", 2999, "error", "http_get")) == []
    assert early_storm(replay) == []
    two = Replay(FailureRate())  # or two peers once each
    reliable(two)
    two(event("a1", 2998, "error", "http_get"))
    two(event("a2", 2999, "error", "http_get"))
    assert early_storm(two) == []
    # one peer's one failure is an ordinary failure (lone_peers=1), unless told otherwise
    one = Replay(FailureRate())
    reliable(one)
    one(event("a1", 2999, "error", "http_get"))
    assert [f.kind for f in early_storm(one)] == ["error_storm"]
    strict = Replay(FailureRate(lone_peers=0))
    reliable(strict)
    strict(event("a1", 2999, "error", "http_get"))
    assert early_storm(strict) == []
    # peers' failures older than peer_window_s do not count
    late = Replay(FailureRate())
    reliable(late)
    late(event("a1", 2970, "error", "http_get"))  # three minutes before
    assert [f.kind for f in early_storm(late)] == ["error_storm"]
    # nor do the peers' failures of the other tool: the most failing one is the suspect
    other = Replay(FailureRate())
    reliable(other)
    other(event("a1", 2999, "error", "read_logs"))
    assert [f.kind for f in early_storm(other)] == ["error_storm"]


def test_a_fleet_wide_outage_pages_nobody_per_agent() -> None:
    replay = Replay(FailureRate())
    normal(replay, 500, agents=20)
    for i in range(500, 530):  # the provider fails most calls for everyone
        for k in range(20):
            replay(event(f"a{k}", i, "error" if i % 3 else "ok"))
    storms = [f for _, f in replay.found if f.kind == "error_storm"]
    assert len({e.agent_id for e, f in replay.found}) <= 3  # only the first few
    assert len(storms) <= 6


def test_denials_burst_is_its_own_kind() -> None:
    replay = Replay(FailureRate())
    normal(replay, 500)
    assert replay(event("a3", 500, "denied", "read_file")) == []  # one is not a burst
    out = replay(event("a3", 503, "denied", "assume_role"))
    out += replay(event("a3", 506, "denied", "get_secret"))
    assert [f.kind for f in out] == ["denial_burst"]
    assert "was denied 3 of" in out[0].summary
    assert set(out[0].actions) == {"read_file", "assume_role", "get_secret"}
    assert out[0].evidence == ("a3-506", "a3-503", "a3-500")


def test_flagged_failures_are_not_learned_and_a_storm_shows_again_on_fresh_evidence() -> None:
    replay = Replay(FailureRate())
    normal(replay, 500)
    fired = []
    before = None
    for i in range(500, 530):
        if replay(event("a0", i, "error")):
            fired.append(i)
            if before is None:
                before = list(replay.states["a0"]["f"])
    state = replay.states["a0"]
    assert before is not None and state["f"] == before  # the storm taught nothing
    assert len(fired) >= 3  # it goes on: reported again, each time on failures not reported
    assert all(b - a >= 3 for a, b in pairwise(fired))


def test_state_is_json_and_small() -> None:
    replay = Replay(FailureRate())
    normal(replay, 300)
    for i in range(300, 400):
        replay(event("a0", i, "error"))  # a full failure ring
    for state in replay.states.values():
        text = json.dumps(state)
        assert len(text) < 1024 and json.loads(text) == state
    assert len(json.dumps(replay.states["a1"])) < 256


@cache
def storm_sim() -> Simulation:
    specs = (
        IncidentSpec("error_storm", "coder-001", START + timedelta(minutes=40),
                     START + timedelta(minutes=50)),
        IncidentSpec("privilege_probing", "support-002", START + timedelta(minutes=45),
                     START + timedelta(minutes=55)),
    )  # fmt: skip
    return Simulation(
        SimConfig(agents=40, minutes=70, seed=8, incidents=(), explicit_incidents=specs,
                  error_bursts_per_hour=6.0)
    )  # fmt: skip


def test_simulated_storm_and_probing_caught_bursts_ignored() -> None:
    sim = storm_sim()
    assert sum(lab.kind == "error_burst" for lab in sim.labels()) >= 10  # 3x the default rate
    replay = Replay(FailureRate())
    fleets: dict[str, dict[str, Any]] = {}
    for e in sim.events(validate=False):
        replay.fleet = fleets.setdefault(e.fleet, {})
        replay(e)
    kinds = {(e.agent_id, f.kind) for e, f in replay.found}
    assert ("coder-001", "error_storm") in kinds and ("support-002", "denial_burst") in kinds
    # no agent hit by a burst fires, unless two outages of different tools overlap for it
    # (two broken tools at once look like a storm until the peers' failures show)
    bursts: dict[str, list[tuple[datetime, datetime, str]]] = {}
    for lab in sim.labels():
        if lab.kind == "error_burst":
            bursts.setdefault(str(lab.agent_id), []).append(
                (lab.start, lab.end, lab.params["tool"])
            )
    double = {
        agent
        for agent, spans in bursts.items()
        for a in spans
        for b in spans
        if a[2] != b[2] and a[0] <= b[0] <= a[1]
    }
    assert double == {"coder-004", "coder-006"}  # the stress run has two such agents
    assert {agent for agent, _ in kinds} - double == {"coder-001", "support-002"}
    for spec in sim.incidents():
        hits = [e.ts for e, _ in replay.found if e.agent_id == spec.agent_id]
        assert spec.start <= min(hits) <= spec.start + timedelta(minutes=3)


def test_params_round_trip() -> None:
    detector = FailureRate()
    assert type(detector)(**detector.params()).params() == detector.params()
    assert detector.clone().params() == detector.params()
    assert all(not key.startswith("_") for key in detector.params())


def test_a_restored_agent_or_one_that_moved_fleets_does_not_crash_on_its_next_error() -> None:
    """Per-agent state comes back from the table; the fleet's may not (the agent moved to
    another fleet, or its worker had no summary of the fleet to restore)."""
    detector = FailureRate()
    replay = Replay(detector)
    for i in range(20):
        replay(event("a0", i))
    replay.fleet = {}  # a restarted worker (or the agent's new fleet): no fleet entry yet
    replay(event("a0", 20, "error"))  # raised KeyError('failure_rate') before
    assert "failure_rate" in replay.fleet
    assert replay.fleet["failure_rate"].agents.local == {"a0"}


def test_two_agents_storming_at_once_do_not_hide_each_others_storm() -> None:
    """Two agents failing across all their tools at the same time: each one's failures
    made every tool look failing for a peer (a shared outage), and neither was reported
    while both went on. A peer failing across its work witnesses no tool's outage."""
    replay = Replay(FailureRate())
    normal(replay, 500)
    for i in range(500, 530):
        for k in range(10):
            storm = k < 2 and i % 4 != 3  # three calls in four fail, on every tool
            replay(event(f"a{k}", i, "error" if storm else "ok"))
    first = {}
    for e, f in replay.found:
        first.setdefault(e.agent_id, (e, f))
    assert set(first) == {"a0", "a1"}
    for e, f in first.values():
        assert f.kind == "error_storm" and len(f.actions) >= 2
        assert e.ts - T0 <= timedelta(seconds=6 * 500 + 60)  # within a minute
    # a peer failing one tool again and again still witnesses that tool's outage
    outage = Replay(FailureRate())
    reliable(outage)
    for n in range(3):
        outage(event("a1", 2996 + n, "error", "http_get"))
    assert early_storm(outage) == []
