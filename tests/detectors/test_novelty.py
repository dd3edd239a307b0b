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

    def routine(self, agents: int, until: float, start: float = 0.0) -> None:
        """Every agent queries metrics and posts to Slack every 10 s."""
        t = start
        while t < until:
            for n in range(agents):
                assert self.feed(f"a{n}", t, "query_metrics", "prometheus:cpu") == []
                assert self.feed(f"a{n}", t + 1, "http_post", "https://hooks.slack.com/x") == []
            t += 10


def detector(**overrides: Any) -> Novelty:
    params: dict[str, Any] = {"min_agent_events": 10, "warmup_s": 100.0, "grace_s": 60.0}
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
    novelty = Novelty(egress_actions=["post"], grace_s=30)
    assert novelty.clone().params() == novelty.params()
    assert json.loads(json.dumps(novelty.params())) == novelty.params()


def test_new_egress_domain_fires_at_once_and_is_never_learned() -> None:
    fleet = Fleet(detector())
    fleet.routine(agents=10, until=200)
    [found] = fleet.feed("a3", 205, "http_post", "https://paste-drop.io/u/1")
    assert found.kind == "new_egress_domain"
    assert found.actions == ("http_post",) and found.evidence == (fleet.last_id,)
    assert found.observed == 0 and found.baseline == 10
    assert (
        "paste-drop.io" in found.summary and "0 of the 10 warm agents of fleet ops" in found.summary
    )
    again = fleet.feed("a3", 300, "http_post", "https://paste-drop.io/u/2")
    assert [f.kind for f in again] == ["new_egress_domain"]  # not learned from a flagged use
    assert "paste-drop.io" not in fleet.states["a3"]["d"]
    # nor does a flagged use make the destination common for the peers
    assert [f.kind for f in fleet.feed("a4", 301, "send_email", "x@paste-drop.io")] == [
        "new_egress_domain"
    ]
    # a destination three peers already use is normal
    for n in (5, 6, 7):
        assert fleet.feed(f"a{n}", 310, "http_get", "https://status.example.com/") == []
    assert fleet.feed("a8", 320, "http_post", "https://status.example.com/api") == []


def test_new_action_waits_for_peers_and_fires_only_when_none_follow() -> None:
    fleet = Fleet(detector())
    fleet.routine(agents=10, until=200)
    assert fleet.feed("a1", 200, "assume_role", "arn:aws:iam::1:role/Admin") == []  # held
    first_id = fleet.last_id
    fleet.routine(agents=10, start=210, until=250)
    [found] = fleet.feed("a1", 265, "query_metrics", "prometheus:cpu")
    assert found.kind == "new_action" and found.actions == ("assume_role",)
    assert found.evidence == (first_id, fleet.last_id)
    assert "a1 started calling assume_role at 00:03:20Z" in found.summary
    assert "none of the other 9 warm agents of fleet ops" in found.summary
    assert "assume_role" not in fleet.states["a1"]["a"]
    # once flagged, the fleet knows the action: another agent using it is not paged
    assert fleet.feed("a2", 270, "assume_role", "arn:aws:iam::1:role/Admin") == []
    assert "assume_role" in fleet.states["a2"]["a"]


def test_a_tool_rolled_out_to_the_fleet_is_learned() -> None:
    fleet = Fleet(detector())
    fleet.routine(agents=10, until=200)
    for n in range(10):  # every agent picks the new tool up within a minute
        assert fleet.feed(f"a{n}", 200 + 5 * n, "query_traces", "tempo:payments") == []
    fleet.routine(agents=10, start=260, until=400)
    assert all("query_traces" in fleet.states[f"a{n}"]["a"] for n in range(10))


def test_warm_up_and_small_fleets_stay_silent() -> None:
    fleet = Fleet(detector())
    fleet.routine(agents=3, until=50)
    assert fleet.feed("a0", 55, "http_post", "https://paste-drop.io/x") == []  # fleet warming up
    fleet = Fleet(detector())
    fleet.routine(agents=3, until=200)  # too few peers to tell what is normal
    assert fleet.feed("a0", 205, "assume_role") == []
    assert fleet.feed("a0", 300, "query_metrics") == []
    assert fleet.feed("a0", 301, "http_post", "https://paste-drop.io/x") == []


def test_restart_rebuilds_the_fleet_from_persisted_agent_state() -> None:
    fleet = Fleet(detector())
    fleet.routine(agents=10, until=200)
    fleet.fleet_state = {}  # a new process: in-memory fleet state is gone
    states = json.loads(json.dumps(fleet.states))  # persisted agent state round-trips
    fleet.states = states
    assert fleet.feed("a0", 210, "http_post", "https://hooks.slack.com/y") == []
    fleet.routine(agents=10, start=220, until=240)
    assert fleet.feed("a9", 250, "http_post", "https://paste-drop.io/x") != []
    assert max(len(json.dumps(s)) for s in states.values()) < 512


def test_simulated_exfiltration_is_caught_and_normal_traffic_and_rollout_are_not() -> None:
    start = datetime(2026, 1, 5, 9, 40, tzinfo=UTC)
    spec = IncidentSpec("exfiltration", "support-002", start, start + timedelta(minutes=4))
    sim = Simulation(
        SimConfig(
            agents=30,
            minutes=60,
            seed=2,
            incidents=(),
            explicit_incidents=(spec,),
            benign_changes=("tool_rollout", "model_upgrade"),
            shape="large-support",
        )
    )
    found = replay(sim, Novelty())
    assert {e.agent_id for e, _ in found} == {"support-002"}
    first_event, first = found[0]
    assert first.kind == "new_egress_domain"
    destination = sim.labels()
    [label] = [lab for lab in destination if lab.kind == "exfiltration"]
    assert first_event.target == label.params["destinations"][0]
    assert first_event.ts - start < timedelta(minutes=4)
