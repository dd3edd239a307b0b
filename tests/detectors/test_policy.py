from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import pytest

from agentwatch.detectors.base import DETECTORS, Finding
from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.detectors.policy import DEFAULT_DENY_TARGETS, Policy
from agentwatch.lab.sim import IncidentSpec, SimConfig, Simulation
from agentwatch.schemas import ActionEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(**fields: Any) -> ActionEvent:
    values: dict[str, Any] = {"event_id": "e1", "ts": T0, "agent_id": "a1", "action": "search"}
    values.update(fields)
    return ActionEvent(**values)


def check(policy: Policy, **fields: Any) -> list[Finding]:
    state: dict[str, Any] = {}
    found = policy.update(
        event(**fields), AgentBaseline("a1", fields.get("fleet", "default")), state, {}
    )
    assert state == {}  # stateless
    return found


def replay(sim: Simulation, policy: Policy) -> list[tuple[ActionEvent, Finding]]:
    baselines: dict[str, AgentBaseline] = {}
    out: list[tuple[ActionEvent, Finding]] = []
    for e in sim.events(validate=False):
        b = baselines.setdefault(e.agent_id, AgentBaseline(e.agent_id, e.fleet))
        out.extend((e, f) for f in policy.update(e, b, {}, {}))
        b.update(e)
    return out


@cache
def normal_sim() -> Simulation:
    return Simulation(
        SimConfig(agents=24, minutes=60, seed=11, incidents=(), error_bursts_per_hour=4)
    )


def test_registered_and_params_round_trip() -> None:
    assert DETECTORS["policy"] is Policy
    policy = Policy(
        allowed_actions={"ops": ["a"]}, require_approval=["critical"], allowed_roots=["/w"]
    )
    clone = policy.clone()
    assert isinstance(clone, Policy)
    assert clone.params() == policy.params()
    assert json.loads(json.dumps(policy.params())) == policy.params()
    assert Policy().params()["deny_targets"] == list(DEFAULT_DENY_TARGETS)


def test_unapproved_high_risk_needs_approval_whatever_the_status() -> None:
    policy = Policy()
    for status in ("ok", "error", "denied"):
        [found] = check(
            policy, action="deploy", risk="critical", target="deploy:web@prod", status=status
        )
        assert found.kind == "unapproved_high_risk"
        assert found.actions == ("deploy",)
        assert found.evidence == ("e1",)
        assert found.severity == "critical"
        assert "critical-risk deploy" in found.summary and status in found.summary
    assert check(policy, action="deploy", risk="critical", approved_by="alice") == []
    assert check(policy, action="send_email", risk="medium") == []
    assert check(policy, action="search") == []
    [found] = check(policy, action="refund", risk="high")
    assert found.severity == "error"
    assert check(Policy(require_approval=["critical"]), action="refund", risk="high") == []


@pytest.mark.parametrize(
    "target",
    [
        "/etc/shadow",
        "cat /etc/sudoers",
        "/root/.ssh/id_rsa",
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
        "/workspace/app/../../etc/hosts",
        "/home/u/.aws/credentials",
        "sudo -l",
        "DROP TABLE users;",
        "truncate table warehouse.sales.orders",
        "https://admin.internal.example.com/api/users",
        "https://corp.example.com/admin/roles",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    ],
)
def test_forbidden_targets(target: str) -> None:
    [found] = check(Policy(), action="tool", target=target)
    assert found.kind == "forbidden_target"
    assert found.severity == "critical"
    assert target[:40] in found.summary


@pytest.mark.parametrize(
    "target",
    [
        "/workspace/billing-service/src/billing_service/admin_views.py",
        "https://api.github.com/repos/pandas-dev/pandas/releases",
        "warehouse.sales.orders",
        "loki:{app='payments'}",
        "git status",
        "ticket:123456",
        "ana.kim@gmail.com",
        "SELECT shadowed FROM t",
        "",
    ],
)
def test_benign_targets_pass(target: str) -> None:
    assert check(Policy(), action="tool", target=target or None) == []


def test_deny_patterns_are_compiled_once_and_configurable() -> None:
    policy = Policy(deny_targets=[r"(?i)^PROD:", r"secret"])
    assert check(policy, action="x", target="prod:db")[0].kind == "forbidden_target"
    compiled = policy._compiled
    assert compiled is not None
    assert check(policy, action="x", target="/etc/shadow") == []  # defaults replaced
    assert "'secret'" in check(policy, action="x", target="my-secret")[0].summary
    assert policy._compiled is compiled
    assert check(Policy(deny_targets=[]), action="x", target="/etc/shadow") == []


def test_allow_lists_per_fleet_with_a_wildcard() -> None:
    policy = Policy(allowed_actions={"ops": ["query_metrics"], "*": ["chat"]})
    assert check(policy, action="query_metrics", fleet="ops") == []
    [found] = check(policy, action="shell", fleet="ops")
    assert found.kind == "disallowed_action" and found.actions == ("shell",)
    assert "1 actions allowed for fleet ops" in found.summary
    assert check(policy, action="chat", fleet="coder") == []
    assert check(policy, action="shell", fleet="coder")[0].kind == "disallowed_action"
    assert check(Policy(allowed_actions={"ops": []}), action="shell", fleet="coder") == []


def test_allowed_roots() -> None:
    policy = Policy(allowed_roots=["/workspace/", "/tmp/"], deny_targets=[])
    assert check(policy, action="read_file", target="/workspace/x.py") == []
    assert check(policy, action="read_file", target="kb:refund-policy") == []
    [found] = check(policy, action="read_file", target="/opt/app/config.yml")
    assert found.kind == "outside_allowed_roots"
    assert "/opt/app/config.yml" in found.summary


def test_one_finding_per_violated_rule() -> None:
    policy = Policy(allowed_actions={"ops": ["query_metrics"]})
    found = check(policy, action="read_file", fleet="ops", risk="high", target="/etc/shadow")
    assert sorted(f.kind for f in found) == [
        "disallowed_action",
        "forbidden_target",
        "unapproved_high_risk",
    ]


def test_silent_on_normal_simulated_traffic() -> None:
    assert replay(normal_sim(), Policy()) == []


@pytest.mark.parametrize("kind", ["privilege_probing", "unapproved_high_risk"])
def test_catches_simulated_incidents_at_their_first_event(kind: str) -> None:
    start = datetime(2026, 1, 5, 9, 20, tzinfo=UTC)
    spec = IncidentSpec(kind, "ops-000", start, start + timedelta(minutes=6))
    sim = Simulation(
        SimConfig(agents=16, minutes=35, seed=3, incidents=(), explicit_incidents=(spec,))
    )
    found = replay(sim, Policy())
    assert found, "the incident went unnoticed"
    assert {e.agent_id for e, _ in found} == {"ops-000"}
    first = min(e.ts for e, _ in found)
    incident_events = [
        e
        for e in sim.events(validate=False)
        if e.agent_id == "ops-000"
        and e.ts >= start
        and (e.risk in ("high", "critical") and not e.approved_by)
    ]
    assert first == min(e.ts for e in incident_events)
    assert (first - start).total_seconds() <= 6 * 60
