from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentwatch.detectors.base import DETECTORS, Finding
from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.detectors.sequence import SequenceSurprise
from agentwatch.lab.sim import IncidentSpec, SimConfig, Simulation
from agentwatch.schemas import ActionEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Fleet:
    def __init__(self, detector: SequenceSurprise) -> None:
        self.detector = detector
        self.baselines: dict[str, AgentBaseline] = {}
        self.states: dict[str, dict[str, Any]] = {}
        self.fleet_state: dict[str, Any] = {}
        self.n = 0
        self.ids: list[str] = []

    def feed(
        self,
        agent: str,
        seconds: float,
        action: str,
        target: str | None = None,
        *,
        status: str = "ok",
        session: str | None = "s1",
    ) -> list[Finding]:
        self.n += 1
        event = ActionEvent(
            event_id=f"{agent}-{self.n}",
            agent_id=agent,
            fleet="ops",
            action=action,
            target=target,
            status=status,  # type: ignore[arg-type]
            session_id=session,
            ts=T0 + timedelta(seconds=seconds),
        )
        self.ids.append(event.event_id)
        b = self.baselines.setdefault(agent, AgentBaseline(agent, "ops"))
        found = self.detector.update(event, b, self.states.setdefault(agent, {}), self.fleet_state)
        b.update(event)
        return found

    def routine(self, agents: int, start: float, until: float) -> list[Finding]:
        """Agents cycle query_metrics -> read_logs -> http_post (to Slack), 10 s apart."""
        out = []
        t = start
        cycle = (
            ("query_metrics", "prometheus:cpu"),
            ("read_logs", "loki:app"),
            ("http_post", "https://hooks.slack.com/services/T1"),
        )
        i = 0
        while t < until:
            action, target = cycle[i % 3]
            for n in range(agents):
                out += self.feed(f"a{n}", t, action, target)
            t += 10
            i += 1
        return out


def detector(**overrides: Any) -> SequenceSurprise:
    params: dict[str, Any] = {
        "min_agent_events": 5,
        "warmup_s": 60.0,
        "min_support": 50,
        "establish_s": 60.0,
        "max_probability": 0.01,
    }
    params.update(overrides)
    return SequenceSurprise(**params)


def test_registered_and_params_round_trip() -> None:
    assert DETECTORS["sequence"] is SequenceSurprise
    seq = SequenceSurprise(secret_targets=[r"(?i)token"], max_probability=0.0)
    assert seq.clone().params() == seq.params()
    assert json.loads(json.dumps(seq.params())) == seq.params()


def test_secret_read_then_egress_to_a_new_destination_is_exfiltration() -> None:
    fleet = Fleet(detector())
    assert fleet.routine(agents=5, start=0, until=300) == []
    assert fleet.feed("a1", 301, "get_secret", "vault:kv/prod/payments/db-password") == []
    secret_id = fleet.ids[-1]
    assert fleet.feed("a1", 310, "http_post", "https://hooks.slack.com/services/T2") == []
    [found] = fleet.feed("a1", 331, "http_post", "https://paste-drop.io/upload/9f")
    assert found.kind == "exfiltration" and found.severity == "critical"
    assert found.evidence == (fleet.ids[-1], secret_id)
    assert found.actions == ("http_post", "get_secret")
    assert found.observed == pytest.approx(30.0) and found.baseline == 0
    assert (
        found.summary == "a1 read a secret (get_secret on 'vault:kv/prod/payments/db-password') "
        "and 30 s later sent http_post to paste-drop.io, a destination 0 of its fleet's agents use."
    )
    # the flagged destination is not learned, by the agent or the fleet
    assert "paste-drop.io" not in fleet.states["a1"].get("e", {})
    assert [f.kind for f in fleet.feed("a1", 340, "http_post", "https://paste-drop.io/2")] == [
        "exfiltration"
    ]


@pytest.mark.parametrize(
    ("action", "target"),
    [
        ("read_file", "/workspace/app/.env"),
        ("read_file", "/workspace/app/secrets/prod.json"),
        ("read_file", "/home/me/.aws/credentials"),
        ("cat", "/root/.ssh/id_rsa"),
        ("read_file", "/srv/tls/server.pem"),
        ("read_file", "~/db_password.txt"),
        ("fetch", "vault:kv/prod/api"),
    ],
)
def test_secret_targets(action: str, target: str) -> None:
    fleet = Fleet(detector())
    fleet.routine(agents=4, start=0, until=200)
    fleet.feed("a0", 201, action, target)
    assert [f.kind for f in fleet.feed("a0", 210, "send_email", "x@anon-upload.xyz")] == [
        "exfiltration"
    ]


def test_no_exfiltration_without_a_secret_in_the_window_or_to_a_common_destination() -> None:
    fleet = Fleet(detector(window_s=60))
    fleet.routine(agents=5, start=0, until=300)
    assert fleet.feed("a1", 301, "search_kb", "kb:password-reset") == []  # not a secret
    assert fleet.feed("a1", 305, "http_post", "https://paste-drop.io/1") == []
    fleet.feed("a2", 306, "get_secret", "vault:kv/prod/x")
    assert fleet.feed("a2", 400, "http_post", "https://transfer-now.cc/1") == []  # too late
    fleet.feed("a3", 401, "get_secret", "vault:kv/prod/x")
    assert fleet.feed("a3", 410, "http_post", "https://hooks.slack.com/services/T9") == []
    fleet.feed("a4", 411, "get_secret", "vault:kv/prod/x")
    assert fleet.feed("a4", 412, "http_get", "https://paste-drop.io/1") == []  # not egress


def test_a_new_agent_is_judged_by_its_fleets_destinations_from_its_first_call() -> None:
    fleet = Fleet(SequenceSurprise(warmup_s=60.0))
    fleet.routine(agents=5, start=0, until=300)
    assert fleet.feed("new-1", 301, "get_secret", "vault:kv/prod/x") == []  # its first event
    assert fleet.feed("new-1", 302, "http_post", "https://hooks.slack.com/services/T1") == []
    found = fleet.feed("new-1", 303, "http_post", "https://paste-drop.io/1")
    assert [f.kind for f in found] == ["exfiltration"]


def test_a_destination_one_peer_uses_is_the_fleets() -> None:
    fleet = Fleet(SequenceSurprise(warmup_s=60.0, min_agent_events=0))
    fleet.routine(agents=5, start=0, until=300)
    assert fleet.feed("a4", 301, "http_post", "https://status.example.com/api") == []
    fleet.feed("a1", 302, "get_secret", "vault:kv/prod/notifications/db-readonly")
    assert fleet.feed("a1", 320, "http_post", "https://status.example.com/api") == []
    strict = Fleet(SequenceSurprise(warmup_s=60.0, common_agents=2))
    strict.routine(agents=5, start=0, until=300)
    strict.feed("a4", 301, "http_post", "https://status.example.com/api")
    strict.feed("a1", 302, "get_secret", "vault:kv/prod/notifications/db-readonly")
    found = strict.feed("a1", 320, "http_post", "https://status.example.com/api")
    assert [f.kind for f in found] == ["exfiltration"]


def test_exfiltration_waits_for_the_warm_up() -> None:
    fleet = Fleet(detector(warmup_s=1000))
    fleet.routine(agents=5, start=0, until=300)
    fleet.feed("a1", 301, "get_secret", "vault:kv/prod/x")
    assert fleet.feed("a1", 305, "http_post", "https://paste-drop.io/1") == []


def test_rare_transition_needs_an_established_fleet_and_ignores_retries() -> None:
    fleet = Fleet(detector())
    assert fleet.routine(agents=5, start=0, until=600) == []
    # http_post always follows read_logs; after query_metrics it is unheard of
    fleet.feed("a0", 601, "query_metrics", "prometheus:cpu")
    [found] = fleet.feed("a0", 602, "http_post", "https://hooks.slack.com/services/T1")
    assert found.kind == "rare_transition" and found.actions == ("http_post",)
    assert found.observed == 0 and found.baseline == 100  # 100 calls after query_metrics
    assert found.score == pytest.approx(-math.log((0 + 1 / 3) / (100 + 1)))
    assert found.threshold == pytest.approx(-math.log(0.01))
    assert "a0 called http_post right after query_metrics" in found.summary
    # a retry of a failed call is not a transition
    fleet.feed("a1", 603, "read_logs", "loki:app", status="error")
    assert fleet.feed("a1", 604, "read_logs", "loki:app") == []
    # a new session starts from scratch
    fleet.feed("a2", 605, "query_metrics", "prometheus:cpu", session="s1")
    assert fleet.feed("a2", 606, "read_logs", "loki:app", session="s2") == []


def test_a_rare_transition_several_agents_make_becomes_the_fleets_habit() -> None:
    fleet = Fleet(detector(habit_agents=2))
    fleet.routine(agents=5, start=0, until=600)
    kinds = []
    for n in range(4):
        fleet.feed(f"a{n}", 601 + n, "query_metrics", "prometheus:cpu", session=f"x{n}")
        found = fleet.feed(f"a{n}", 602 + n, "http_post", "https://x.slack.com/", session=f"x{n}")
        kinds.append([f.kind for f in found])
    assert kinds == [["rare_transition"], ["rare_transition"], [], []]


def test_simulated_exfiltration_caught_within_a_minute_of_the_egress() -> None:
    start = datetime(2026, 1, 5, 9, 35, tzinfo=UTC)
    specs = (
        IncidentSpec("exfiltration", "ops-001", start, start + timedelta(minutes=4)),
        IncidentSpec("exfiltration", "coder-000", start, start + timedelta(minutes=4)),
    )
    sim = Simulation(
        SimConfig(agents=20, minutes=50, seed=9, incidents=(), explicit_incidents=specs)
    )
    seq = SequenceSurprise()
    baselines: dict[str, AgentBaseline] = {}
    states: dict[str, dict[str, Any]] = {}
    fleets: dict[str, dict[str, Any]] = {}
    found = []
    for e in sim.events(validate=False):
        b = baselines.setdefault(e.agent_id, AgentBaseline(e.agent_id, e.fleet))
        found += [
            (e, f)
            for f in seq.update(
                e, b, states.setdefault(e.agent_id, {}), fleets.setdefault(e.fleet, {})
            )
        ]
        b.update(e)
    assert {e.agent_id for e, _ in found} == {"ops-001", "coder-000"}
    assert all(f.kind == "exfiltration" for _, f in found)
    for label in (lab for lab in sim.labels() if lab.kind == "exfiltration"):
        mine = [e for e, _ in found if e.agent_id == label.agent_id]
        assert mine[0].target == label.params["destinations"][0]
    assert max(len(json.dumps(s)) for s in states.values()) < 1024


def test_a_check_that_is_off_keeps_no_bookkeeping() -> None:
    # the default rules run the two checks as two rules: neither keeps the other's state
    exfiltration = Fleet(detector(max_probability=0.0))
    exfiltration.routine(agents=5, start=0, until=300)
    assert exfiltration.fleet_state["f"].model == {}
    assert all(set(s) <= {"e", "s"} for s in exfiltration.states.values())
    transitions = Fleet(detector(secret_actions=[], secret_targets=[]))
    transitions.routine(agents=5, start=0, until=300)
    assert transitions.fleet_state["f"].dest == {}
    assert all(set(s) <= {"p", "q", "x"} for s in transitions.states.values())
