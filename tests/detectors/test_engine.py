from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from agentwatch.detectors.base import DETECTORS, AgentDetector, Finding
from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.detectors.engine import Engine
from agentwatch.detectors.rules import Rule, RuleSet
from agentwatch.schemas import ActionEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class FlagBad(AgentDetector):
    """Flags every event whose action is 'bad' (a test double)."""

    name: ClassVar[str] = "test_flag_bad"

    def __init__(self, kind: str = "bad_action") -> None:
        self.kind = kind

    def update(
        self,
        event: ActionEvent,
        baseline: AgentBaseline,
        state: dict[str, Any],
        fleet_state: dict[str, Any],
    ) -> list[Finding]:
        state["seen"] = state.get("seen", 0) + 1
        if event.action != "bad":
            return []
        return [
            Finding(
                kind=self.kind,
                score=2.0,
                threshold=1.0,
                observed=float(baseline.count),
                baseline=0.0,
                summary=f"{event.agent_id} did a bad thing after {baseline.count} events",
                evidence=(event.event_id,),
                actions=("bad",),
            )
        ]


DETECTORS[FlagBad.name] = FlagBad


def ev(i: int, action: str = "ok", agent: str = "a", seconds: float | None = None) -> ActionEvent:
    ts = T0 + timedelta(seconds=i if seconds is None else seconds)
    return ActionEvent(event_id=f"{agent}-{i}", ts=ts, agent_id=agent, action=action, fleet="f")


def engine(**rule: Any) -> Engine:
    spec = {"alert": "Bad", "detector": "test_flag_bad", "labels": {"severity": "error"}}
    spec.update(rule)
    return Engine(RuleSet(rules=(Rule.model_validate(spec),), source="test"))


def test_detector_sees_the_baseline_before_the_event() -> None:
    e = engine()
    for i in range(3):
        assert e.process(ev(i)) == []
    [anomaly] = e.process(ev(3, "bad")) or []
    assert anomaly.observed == 3  # the baseline had not yet counted the bad event
    assert e.baselines["a"].count == 4
    assert anomaly.severity == "error" and anomaly.rule == "Bad" and anomaly.kind == "bad_action"
    assert anomaly.evidence == ["a-3"]
    assert e.states["a"]["d"]["Bad"]["seen"] == 4


def test_cooldown_turns_a_burst_into_one_anomaly() -> None:
    e = engine(cooldown="10m")
    fired = [a for i in range(100) for a in (e.process(ev(i, "bad")) or [])]
    assert len(fired) == 1
    later = e.process(ev(1000, "bad", seconds=700)) or []
    assert len(later) == 1


def test_for_requires_persistence() -> None:
    e = engine(**{"for": "30s"})
    assert e.process(ev(0, "bad", seconds=0)) == []
    assert e.process(ev(1, "bad", seconds=20)) == []
    assert len(e.process(ev(2, "bad", seconds=31)) or []) == 1
    # a lone finding long after restarts the clock
    e2 = engine(**{"for": "30s"})
    assert e2.process(ev(0, "bad", seconds=0)) == []
    assert e2.process(ev(1, "bad", seconds=200)) == []


def test_fleet_scope_and_ids_are_deterministic() -> None:
    scoped = engine(fleets=["other"])
    assert scoped.process(ev(0, "bad")) == []
    a1 = engine().process(ev(0, "bad")) or []
    a2 = engine().process(ev(0, "bad")) or []
    assert a1 and [a.anomaly_id for a in a1] == [a.anomaly_id for a in a2]


def test_duplicates_within_the_window_are_dropped_and_memory_is_bounded() -> None:
    e = Engine(dedup_window=100)
    for i in range(1000):
        assert e.process(ev(i)) == []
    assert e.process(ev(999)) is None  # just seen
    assert e.process(ev(960)) is None  # within the last window/2 ids
    assert e.process(ev(0)) == []  # long gone: counted again
    assert len(e._seen) + len(e._seen_before) <= 100
    assert e.baselines["a"].count == 1001


def test_evict_forgets_only_the_named_agents() -> None:
    e = Engine()
    e.process(ev(1, agent="a"))
    e.process(ev(2, agent="b"))
    e.evict({"a"})
    assert set(e.baselines) == {"b"} and set(e.states) == {"b"}


class CostedOnly(FlagBad):
    """Flags 'bad' events like FlagBad, but declares events without a cost none of its business."""

    name: ClassVar[str] = "test_costed_only"

    def skips(self, kind: str, costed: bool) -> bool:
        return not costed


DETECTORS[CostedOnly.name] = CostedOnly


def test_detectors_are_not_called_for_events_they_skip() -> None:
    e = engine(detector="test_costed_only")
    free = ev(0, "bad")
    costed = free.model_copy(update={"event_id": "a-1", "cost_usd": 0.01})
    assert e.process(free) == []  # skipped: not even called
    assert e.states["a"]["d"]["Bad"] == {}
    [anomaly] = e.process(costed) or []
    assert anomaly.evidence == ["a-1"]
    assert e.states["a"]["d"]["Bad"]["seen"] == 1


def test_a_replaced_agent_state_is_picked_up() -> None:
    e = engine()
    e.process(ev(0))
    restored: dict[str, dict[str, Any]] = {"d": {"Bad": {"seen": 41}}, "p": {}, "c": {}}
    e.states["a"] = restored  # as the worker does when it loads an agent from its table
    e.process(ev(1))
    assert restored["d"]["Bad"]["seen"] == 42


def test_agents_of_a_fleet_share_its_plan_and_keep_only_their_states() -> None:
    """What the garbage collector walks per agent: a plan and a list of its states (a full
    collection holds the event loop for as long as it walks every tracked object)."""
    import gc

    e = engine()
    for i in range(50):
        e.process(ev(i, agent=f"a{i}"))
    e.process(ev(0, agent="g").model_copy(update={"event_id": "g-0", "fleet": "other"}))
    fleet_plans = {id(e._plans[f"a{i}"].shared) for i in range(50)}
    assert len(fleet_plans) == 1 and id(e._plans["g"].shared) not in fleet_plans
    for i in range(50):
        plan = e._plans[f"a{i}"]
        assert plan.states == [e.states[f"a{i}"]["d"]["Bad"]]
        assert plan.states[0] is e.states[f"a{i}"]["d"]["Bad"]
        # the plan, its list of states and the states themselves: nothing else per agent
        own = [o for o in gc.get_referents(plan) if gc.is_tracked(o) and o is not type(plan)]
        assert {id(o) for o in own} <= {id(plan.state), id(plan.shared), id(plan.states)}


def test_a_finding_that_overflows_is_published_with_finite_numbers() -> None:
    """An extreme valid event must yield an anomaly, not a wire-invalid one (inf)."""
    from agentwatch.detectors.rules import load_rules

    rule = load_rules().rules[0]
    event = ActionEvent(
        event_id="e1", ts=datetime(2026, 1, 1, tzinfo=UTC), agent_id="a1", action="x"
    )
    finding = Finding(
        kind="cost_spike",
        score=float("inf"),
        threshold=3.0,
        observed=float("inf"),
        baseline=float("nan"),
        summary="huge",
    )
    anomaly = Engine._anomaly(rule, event, finding)
    assert anomaly.observed == anomaly.score == 1.7976931348623157e308
    assert anomaly.baseline == 0.0


EXTREME_FLOATS = (0.0, 5e-324, 1e-300, 1e300, 1.7976931348623157e308)
EXTREME_INTS = (0, 1, 2**53)


def test_extreme_valid_events_never_make_a_detector_raise() -> None:
    """Every registered detector (the shipped rules and the ones off by default) folds valid
    events with the schema's extreme numbers, in warm and cold agents, without raising: an
    exception dead-letters a valid event and loses its findings (the full fuzz suite found a
    cost ratio of exp(1,450) that overflowed)."""
    import itertools
    import math
    import random
    import re

    from agentwatch.detectors.rules import load_rules

    shipped = load_rules().rules
    extra = [
        Rule.model_validate({"alert": f"All{name}", "detector": name})
        for name in sorted(DETECTORS)
        if name not in {r.detector for r in shipped} and not name.startswith("test_")
    ]
    eng = Engine(RuleSet(rules=(*shipped, *extra), source="test"))
    rng = random.Random(3)
    combos = list(itertools.product(EXTREME_FLOATS, EXTREME_INTS, ("llm", "tool")))
    i = 0
    anomalies = []
    for agent, warm in (("warm", 400), ("cold", 0)):
        for _ in range(warm):  # an ordinary agent first: baselines, peers, thresholds
            i += 1
            eng.process(
                ActionEvent(
                    event_id=f"e{i}", ts=T0 + timedelta(seconds=5 * i), agent_id=agent,
                    fleet="f", action=rng.choice(("search", "read_file", "chat")),
                    kind=rng.choice(("llm", "tool")), model="gpt-4o",
                    cost_usd=0.01 * (1 + rng.random()), input_tokens=800, output_tokens=200,
                    latency_ms=300.0, status="ok" if rng.random() > 0.05 else "error",
                )
            )  # fmt: skip
        for cost, tokens, kind in combos * 3:
            i += 1
            found = eng.process(
                ActionEvent(
                    event_id=f"e{i}", ts=T0 + timedelta(seconds=5 * i), agent_id=agent,
                    fleet="f", action=rng.choice(("search", "upload", "chat")), kind=kind,
                    model=rng.choice(("gpt-4o", "o1-pro", None)), cost_usd=cost,
                    input_tokens=tokens, output_tokens=tokens, latency_ms=cost,
                    status=rng.choice(("ok", "error", "denied")),
                )
            )  # fmt: skip
            anomalies += found or []
    assert anomalies, "extreme costs after ordinary ones are flagged"
    for anomaly in anomalies:
        numbers = (anomaly.score, anomaly.threshold, anomaly.observed, anomaly.baseline)
        assert all(x is None or math.isfinite(x) for x in numbers), anomaly
        assert not re.search(r"\d{16}", anomaly.summary), anomaly.summary  # no 100-digit ratios
