"""The responder: rule actions, dry runs, idempotence and on-call commands."""

from __future__ import annotations

from pathlib import Path

from agentwatch.alerting.incidents import IncidentBook, IncidentPolicy
from agentwatch.alerting.responder import Responder
from agentwatch.detectors.rules import load_rules
from agentwatch.schemas import Anomaly
from tests.fixtures import make_anomaly

RULES = """
groups:
  - name: t
    rules:
      - alert: Halt
        detector: runaway_loop
        labels: {severity: critical}
        annotations: {runbook_url: docs/runbook.md#runaway-loop}
        action: halt
      - alert: RevokeInvolved
        detector: policy
        action: {type: revoke}
      - alert: RevokeNamed
        detector: policy
        action: {type: revoke, actions: [send_email, http_post]}
      - alert: Shadow
        detector: runaway_loop
        dry_run: true
        action: halt
      - alert: Quiet
        detector: novelty
        action: none
"""


def responder(tmp_path: Path, **kw: object) -> Responder:
    path = tmp_path / "rules.yml"
    path.write_text(RULES)
    return Responder(load_rules(path), IncidentBook(IncidentPolicy(group_wait=0)), **kw)  # type: ignore[arg-type]


def anomaly(n: int, rule: str, actions: list[str] | None = None, agent: str = "a1") -> Anomaly:
    return make_anomaly(n, rule, agent=agent, actions=actions)


def test_halt_changes_control_once_and_links_the_incident(tmp_path: Path) -> None:
    r = responder(tmp_path, runbook_base_url="https://docs.example.com/aw/")
    out = r.on_anomaly(anomaly(1, "Halt"), None, None, now=0)
    assert out.control is not None and out.control.halted and out.control.version == 1
    assert out.incident is not None
    assert out.control.incident_id == out.incident.incident.incident_id
    assert out.incident.runbook_url == "https://docs.example.com/aw/docs/runbook.md#runaway-loop"
    assert [a.action for a in out.audit] == ["halt", "incident_open"]
    assert out.audit[0].anomaly_ids == ["an-1"] and out.audit[0].actor == "Halt"
    again = r.on_anomaly(anomaly(2, "Halt"), out.control, out.incident, now=1)
    assert again.control is None  # already halted: no new version
    assert again.incident is not None and again.incident.incident.anomaly_count == 2
    assert again.audit == []


def test_replayed_anomaly_changes_nothing(tmp_path: Path) -> None:
    r = responder(tmp_path)
    out = r.on_anomaly(anomaly(1, "Halt"), None, None, now=0)
    replay = r.on_anomaly(anomaly(1, "Halt"), out.control, out.incident, now=5)
    assert replay.control is None and replay.incident is None and replay.audit == []


def test_revoke_takes_the_finding_actions_or_the_rule_list(tmp_path: Path) -> None:
    r = responder(tmp_path)
    out = r.on_anomaly(anomaly(1, "RevokeInvolved", ["drop_table"]), None, None, now=0)
    assert out.control is not None and out.control.revoked == ["drop_table"]
    assert not out.control.halted
    out2 = r.on_anomaly(anomaly(2, "RevokeNamed", ["x"]), out.control, out.incident, now=1)
    assert out2.control is not None
    assert out2.control.revoked == ["drop_table", "http_post", "send_email"]
    assert out2.control.version == 1000  # max(1 + 1, now=1 s in ms)
    assert out2.incident is not None
    assert "revoked http_post, send_email by RevokeNamed" in out2.incident.actions_taken


def test_dry_run_records_what_it_would_do_and_does_nothing(tmp_path: Path) -> None:
    out = responder(tmp_path).on_anomaly(anomaly(1, "Shadow"), None, None, now=0)
    assert out.control is None and out.incident is None and out.notifications == []
    assert [(a.action, a.dry_run, a.detail) for a in out.audit] == [
        ("halt", True, {"would_change_control": True})
    ]


def test_action_none_opens_no_incident(tmp_path: Path) -> None:
    out = responder(tmp_path).on_anomaly(anomaly(1, "Quiet"), None, None, now=0)
    assert out.control is None and out.incident is None and out.audit == []


def test_unknown_rule_notifies(tmp_path: Path) -> None:
    out = responder(tmp_path).on_anomaly(anomaly(1, "Gone"), None, None, now=0)
    assert out.control is None and out.incident is not None


def test_people_commands_are_versioned_and_audited(tmp_path: Path) -> None:
    r = responder(tmp_path)
    c = None
    for op, actions in [
        ("revoke", ["a", "b"]),
        ("halt", []),
        ("resume", []),
        ("grant", ["a"]),
        ("grant", []),
    ]:
        out = r.control_command(op, "a1", c, actions=actions, actor="alice", reason=op, now=1.0)  # type: ignore[arg-type]
        assert out.audit[0].actor == "alice" and out.audit[0].actor_kind == "person"
        assert out.audit[0].action == op and out.audit[0].reason == op
        c = out.control
    assert c is not None and not c.halted and c.revoked == []
    assert c.version == 1004  # 1 s in ms, then +1 for each change within that millisecond


def test_versions_increase_even_if_the_stored_state_is_lost(tmp_path: Path) -> None:
    r = responder(tmp_path)
    before = r.control_command(
        "halt", "a1", None, actions=[], actor="alice", reason="x", now=1_767_225_600.0
    ).control
    assert before is not None and before.version == 1_767_225_600_000
    # the table lost: the next change starts from nothing, one second later
    after = r.control_command(
        "resume", "a1", None, actions=[], actor="bob", reason="y", now=1_767_225_601.0
    ).control
    assert after is not None and after.version > before.version
    # a previous state already ahead of the clock: +1, never backwards
    ahead = before.model_copy(update={"version": 1_767_225_700_000})
    nxt = r.control_command(
        "resume", "a1", ahead, actions=[], actor="bob", reason="y", now=1_767_225_601.0
    ).control
    assert nxt is not None and nxt.version == 1_767_225_700_001


def test_changes_come_back_unsigned(tmp_path: Path) -> None:
    from agentwatch.schemas.signing import ControlSigner

    r = responder(tmp_path)
    first = r.control_command("halt", "a1", None, actions=[], actor="a", reason="x", now=5.0)
    assert first.control is not None
    signed = ControlSigner.generate().sign(first.control)
    out = r.control_command("resume", "a1", signed, actions=[], actor="a", reason="y", now=6.0)
    assert out.control is not None
    assert out.control.key_id is None and out.control.signature is None
    out = r.on_anomaly(anomaly(1, "Halt"), signed.model_copy(update={"halted": False}), None, 7)
    assert out.control is not None
    assert out.control.key_id is None and out.control.signature is None


def test_ack_and_resolve_notify_pagerduty_after_a_page(tmp_path: Path) -> None:
    r = responder(tmp_path)
    out = r.on_anomaly(anomaly(1, "Halt"), None, None, now=0)
    assert out.incident is not None
    paged = r.tick(out.incident, out.control, now=1)
    assert [n.event for n in paged.notifications] == ["trigger"]
    assert paged.incident is not None
    acked = r.incident_command(
        "ack", paged.incident, out.control, actor="bob", reason="looking", now=2
    )
    assert [n.event for n in acked.notifications] == ["acknowledge"]
    assert [(a.action, a.actor) for a in acked.audit] == [("incident_ack", "bob")]
    assert acked.incident is not None
    done = r.incident_command(
        "resolve", acked.incident, out.control, actor="bob", reason="fixed", now=3
    )
    assert [n.event for n in done.notifications] == ["resolve"]
    assert done.incident is not None and done.incident.incident.resolved_by == "bob"
