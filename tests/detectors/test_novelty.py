from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentwatch.detectors.base import DETECTORS, Finding
from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.detectors.novelty import Novelty, target_domain
from agentwatch.lab.sim import IncidentSpec, SimConfig, Simulation
from agentwatch.schemas import ActionEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Fleet:
    """A hand-driven fleet: baselines, per-agent states and one fleet state."""

    def __init__(self, detector: Novelty, fleet: str = "ops") -> None:
        self.detector = detector
        self.fleet = fleet
        self.baselines: dict[str, AgentBaseline] = {}
        self.states: dict[str, dict[str, Any]] = {}
        self.fleet_state: dict[str, Any] = {}
        self.n = 0
        self.last_id = ""

    def feed(
        self, agent: str, seconds: float, action: str, target: str | None = None
    ) -> list[Finding]:
        self.n += 1
        event = ActionEvent(
            event_id=f"{agent}-{self.n}",
            agent_id=agent,
            fleet=self.fleet,
            action=action,
            target=target,
            ts=T0 + timedelta(seconds=seconds),
        )
        self.last_id = event.event_id
        b = self.baselines.setdefault(agent, AgentBaseline(agent, self.fleet))
        found = self.detector.update(event, b, self.states.setdefault(agent, {}), self.fleet_state)
        b.update(event)
        return found

    def routine(self, agents: int, until: float, start: float = 0.0, step: float = 10.0) -> None:
        """Every agent queries metrics and posts to Slack every ``step`` seconds."""
        t = start
        while t < until:
            for n in range(agents):
                assert self.feed(f"a{n}", t, "query_metrics", "prometheus:cpu") == []
                assert self.feed(f"a{n}", t + 1, "http_post", "https://hooks.slack.com/x") == []
            t += step


def detector(**overrides: Any) -> Novelty:
    """A detector for hand-driven fleets: a budget a short history can satisfy."""
    params: dict[str, Any] = {
        "warmup_s": 100.0,
        "evidence_calls": 40,
        "false_alarms_per_agent_day": 50.0,
    }
    params.update(overrides)
    return Novelty(**params)


def replay(sim: Simulation, novelty: Novelty) -> list[tuple[ActionEvent, Finding]]:
    baselines: dict[str, AgentBaseline] = {}
    states: dict[str, dict[str, Any]] = {}
    fleets: dict[str, dict[str, Any]] = {}
    out: list[tuple[ActionEvent, Finding]] = []
    for e in sim.events(validate=False):
        b = baselines.setdefault(e.agent_id, AgentBaseline(e.agent_id, e.fleet))
        found = novelty.update(
            e, b, states.setdefault(e.agent_id, {}), fleets.setdefault(e.fleet, {})
        )
        out.extend((e, f) for f in found)
        b.update(e)
    return out


@pytest.mark.parametrize(
    ("target", "domain"),
    [
        ("https://api.github.com/repos/x?y=1", "github.com"),
        ("http://user:pw@files.example.co.uk:8080/a", "example.co.uk"),
        ("ivan44@filebin-share.net", "filebin-share.net"),
        ("<Ana.Kim@Mail.Example.com>", None),
        ("Ana.Kim@Mail.Example.com", "example.com"),
        ("s3://acme-analytics-exports/orders.csv", "acme-analytics-exports"),
        ("http://169.254.169.254/latest/", "169.254.169.254"),
        ("git:billing-service@feat/api-123", None),
        ("deploy:web@prod", None),
        ("/etc/passwd", None),
        ("ticket:123", None),
        (None, None),
    ],
)
def test_target_domain(target: str | None, domain: str | None) -> None:
    assert target_domain(target) == domain


def test_registered_and_params_round_trip() -> None:
    assert DETECTORS["novelty"] is Novelty
    novelty = Novelty(egress_actions=["post"], evidence_calls=30)
    assert novelty.clone().params() == novelty.params()
    assert json.loads(json.dumps(novelty.params())) == novelty.params()
    with pytest.raises(ValueError):
        Novelty(false_alarms_per_agent_day=0.0)


def test_new_egress_domain_fires_at_once_and_is_never_learned() -> None:
    fleet = Fleet(detector())
    fleet.routine(agents=10, until=200)
    [found] = fleet.feed("a3", 205, "http_post", "https://paste-drop.io/u/1")
    assert found.kind == "new_egress_domain" and found.severity == "critical"
    assert found.actions == ("http_post",) and found.evidence == (fleet.last_id,)
    assert found.observed == 0 and found.baseline == 10
    assert "paste-drop.io" in found.summary and "0 of the 10 agents of fleet ops" in found.summary
    assert "false alarms per agent-day" in found.summary
    assert found.score >= found.threshold
    again = fleet.feed("a3", 300, "http_post", "https://paste-drop.io/u/2")
    assert [f.kind for f in again] == ["new_egress_domain"]  # not learned from a flagged use
    assert "paste-drop.io" not in fleet.states["a3"]["d"]
    # a destination a peer uses without being flagged is normal
    assert fleet.feed("a5", 310, "http_get", "https://status.example.com/") == []
    assert fleet.feed("a8", 320, "http_post", "https://status.example.com/api") == []


def test_new_action_waits_for_evidence_in_calls_and_fires_when_no_peer_follows() -> None:
    fleet = Fleet(detector())
    fleet.routine(agents=10, until=200)
    assert fleet.feed("a1", 200, "assume_role", "arn:aws:iam::1:role/Admin") == []  # held
    first_id = fleet.last_id
    fleet.routine(agents=2, start=210, until=300, step=30)  # 12 peer calls: too few yet
    assert fleet.feed("a1", 301, "query_metrics", "prometheus:cpu") == []
    fleet.routine(agents=10, start=310, until=330)  # now 40 more
    [found] = fleet.feed("a1", 335, "query_metrics", "prometheus:cpu")
    assert found.kind == "new_action" and found.actions == ("assume_role",)
    assert found.evidence == (first_id, fleet.last_id)
    assert "a1 started calling assume_role at 00:03:20Z" in found.summary
    assert "none used it" in found.summary and "other 9 agents of fleet ops" in found.summary
    assert "assume_role" not in fleet.states["a1"]["a"]
    # once flagged, another agent using it is a peer's use: not paged
    assert fleet.feed("a2", 340, "assume_role", "arn:aws:iam::1:role/Admin") == []
    assert "assume_role" in fleet.states["a2"]["a"]


def test_evidence_is_counted_in_calls_not_minutes() -> None:
    """A sparse fleet waits as many of its calls as a busy one, however long that takes."""
    for step in (10.0, 600.0):
        fleet = Fleet(detector(evidence_calls=100))
        fleet.routine(agents=10, until=200 * step / 10, step=step)
        start = 200 * step / 10
        assert fleet.feed("a1", start, "assume_role") == []
        fleet.routine(agents=10, start=start + 1, until=start + 4 * step, step=step)  # 80 calls
        assert fleet.feed("a1", start + 5 * step, "query_metrics") == []
        fleet.routine(agents=10, start=start + 6 * step, until=start + 8 * step, step=step)
        assert [f.kind for f in fleet.feed("a1", start + 9 * step, "query_metrics")] == [
            "new_action"
        ]


def test_a_tool_rolled_out_to_the_fleet_is_learned() -> None:
    fleet = Fleet(detector())
    fleet.routine(agents=10, until=200)
    for n in range(10):  # every agent picks the new tool up within a minute
        assert fleet.feed(f"a{n}", 200 + 5 * n, "query_traces", "tempo:payments") == []
    fleet.routine(agents=10, start=260, until=400)
    assert all("query_traces" in fleet.states[f"a{n}"]["a"] for n in range(10))


def test_the_budget_keeps_a_fleet_that_often_meets_new_domains_quiet() -> None:
    """Support agents e-mail new customers' domains all day: one more is not news."""
    busy = Fleet(detector(false_alarms_per_agent_day=5.0))
    t = 0.0
    for i in range(400):  # a new customer's domain in every e-mail
        agent = f"a{i % 10}"
        busy.feed(agent, t, "query_metrics", "prometheus:cpu")
        busy.feed(agent, t + 1, "send_email", f"x@customer-{i}.com")
        t += 10
    assert busy.feed("a3", t, "send_email", "y@paste-drop.io") == []
    steady = Fleet(detector(false_alarms_per_agent_day=5.0))
    steady.routine(agents=10, until=t)  # the same calls to the same two places
    assert [f.kind for f in steady.feed("a3", t, "send_email", "y@paste-drop.io")] == [
        "new_egress_domain"
    ]
    # with less history (or a stricter budget) the same first use is not yet news
    short = Fleet(detector(false_alarms_per_agent_day=5.0))
    short.routine(agents=10, until=300)
    assert short.feed("a3", 300, "send_email", "y@paste-drop.io") == []


def test_a_new_agent_is_judged_by_its_fleets_habits() -> None:
    fleet = Fleet(detector())
    fleet.routine(agents=10, until=300)
    assert fleet.feed("new-1", 310, "query_metrics", "prometheus:cpu") == []  # its first call
    assert fleet.feed("new-1", 311, "http_post", "https://hooks.slack.com/x") == []
    assert [f.kind for f in fleet.feed("new-1", 312, "http_post", "https://paste-drop.io/1")] == [
        "new_egress_domain"
    ]


def test_warm_up_and_small_fleets_stay_silent() -> None:
    fleet = Fleet(detector())
    fleet.routine(agents=3, until=50)
    assert fleet.feed("a0", 55, "http_post", "https://paste-drop.io/x") == []  # fleet warming up
    fleet = Fleet(detector())
    fleet.routine(agents=2, until=200)  # too few peers to tell what is normal
    assert fleet.feed("a0", 205, "assume_role") == []
    fleet.routine(agents=2, start=210, until=400)
    assert fleet.feed("a0", 401, "query_metrics") == []
    assert fleet.feed("a0", 402, "http_post", "https://paste-drop.io/x") == []


def test_restart_rebuilds_the_fleet_from_persisted_agent_state() -> None:
    fleet = Fleet(detector())
    fleet.routine(agents=10, until=200)
    fleet.fleet_state = {}  # a new process: in-memory fleet state is gone
    states = json.loads(json.dumps(fleet.states))  # persisted agent state round-trips
    fleet.states = states
    assert fleet.feed("a0", 210, "http_post", "https://hooks.slack.com/y") == []
    fleet.routine(agents=10, start=220, until=300)
    # the call counts start over: too little seen to call it news (and so it is learned)
    assert fleet.feed("a9", 310, "http_post", "https://paste-drop.io/x") == []
    assert "paste-drop.io" in fleet.states["a9"]["d"]
    fleet.routine(agents=10, start=320, until=2000)
    assert fleet.feed("a8", 2010, "http_post", "https://drop-2.io/x") != []
    assert max(len(json.dumps(s)) for s in states.values()) < 512


def test_simulated_rollout_and_normal_traffic_stay_quiet_and_exfiltration_is_caught() -> None:
    start = datetime(2026, 1, 5, 10, 40, tzinfo=UTC)
    spec = IncidentSpec("exfiltration", "support-002", start, start + timedelta(minutes=4))
    sim = Simulation(
        SimConfig(
            agents=30,
            minutes=120,
            seed=2,
            incidents=(),
            explicit_incidents=(spec,),
            benign_changes=("tool_rollout", "model_upgrade"),
            shape="large-support",
        )
    )
    assert replay(sim, Novelty()) == []  # 60 agent-hours: too little to page on, by budget
    found = replay(sim, Novelty(false_alarms_per_agent_day=2.0))
    assert {e.agent_id for e, _ in found} == {"support-002"}
    first_event, first = found[0]
    assert first.kind == "new_egress_domain"
    [label] = [lab for lab in sim.labels() if lab.kind == "exfiltration"]
    assert first_event.target == label.params["destinations"][0]
    assert first_event.ts - start < timedelta(minutes=4)
