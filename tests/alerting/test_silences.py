"""Silences and inhibition: matching with Alertmanager's semantics, states, inhibit rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from agentwatch.alerting.incidents import IncidentBook, IncidentPolicy
from agentwatch.alerting.responder import Responder
from agentwatch.alerting.silences import (
    InhibitRule,
    MatcherError,
    Mute,
    Silence,
    SilenceRequest,
    SourceAlert,
    anomaly_labels,
    inhibited_by,
    parse_matcher,
    silenced_by,
)
from agentwatch.detectors.rules import RulesError, load_rules
from agentwatch.schemas import Anomaly

T0 = datetime(2026, 1, 1, 3, tzinfo=UTC)


def anomaly(n: int = 1, agent: str = "support-7", **kw: object) -> Anomaly:
    values: dict[str, object] = {
        "anomaly_id": f"an-{n}",
        "ts": T0,
        "agent_id": agent,
        "fleet": "support",
        "detector": "failure_rate",
        "kind": "errors",
        "severity": "error",
        "score": 9.0,
        "threshold": 5.0,
        "observed": 0.4,
        "baseline": 0.01,
        "summary": "failing",
        "rule": "FailureRate",
    }
    values.update(kw)
    return Anomaly.model_validate(values)


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ('agent="a1"', {"agent": "a1"}, True),
        ('agent="a1"', {"agent": "a10"}, False),
        ('agent!="a1"', {"agent": "a2"}, True),
        ('agent!="a1"', {"agent": "a1"}, False),
        ('agent=~"a[0-9]"', {"agent": "a1"}, True),
        ('agent=~"a[0-9]"', {"agent": "xa1"}, False),  # anchored at both ends
        ('agent=~"a[0-9]"', {"agent": "a12"}, False),
        ('agent!~"a.*"', {"agent": "b1"}, True),
        ('agent!~"a.*"', {"agent": "a1"}, False),
        ('team=""', {"agent": "a1"}, True),  # a missing label is ""
        ('team!=""', {"agent": "a1"}, False),
        ('team=~".*"', {}, True),
        ("severity=critical", {"severity": "critical"}, True),  # quotes optional
        ('note="say \\"hi\\""', {"note": 'say "hi"'}, True),
    ],
)
def test_matchers_follow_alertmanager(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_matcher(text).matches(labels) is expected


@pytest.mark.parametrize("text", ["agent", "=a1", 'agent=~"("', "1a=b", "agent<>a1"])
def test_bad_matchers_are_refused_with_the_forms_to_use(text: str) -> None:
    with pytest.raises(MatcherError, match=r"not a matcher|invalid regular expression"):
        parse_matcher(text)


def test_matcher_prints_as_it_parses() -> None:
    for text in ['agent="a1"', 'fleet!="x"', 'rule=~"Fail.*"', 'team!~"a|b"']:
        assert str(parse_matcher(text)) == text


def test_anomaly_labels_carry_rule_labels_without_overriding_builtins() -> None:
    labels = anomaly_labels(anomaly(), {"team": "care", "agent": "spoofed", "severity": "info"})
    assert labels == {
        "team": "care",
        "agent": "support-7",
        "fleet": "support",
        "rule": "FailureRate",
        "severity": "error",
        "detector": "failure_rate",
        "kind": "errors",
    }


def request(**kw: object) -> SilenceRequest:
    values: dict[str, object] = {
        "matchers": ['fleet="support"'],
        "ends_at": T0 + timedelta(hours=2),
        "created_by": "alice",
        "comment": "maintenance",
    }
    values.update(kw)
    return SilenceRequest.model_validate(values)


def test_silence_states_pending_active_expired() -> None:
    window = Silence.create(request(starts_at=T0 + timedelta(hours=1)), T0, "sil-1")
    labels = anomaly_labels(anomaly())
    assert window.status(T0) == "pending" and not window.mutes(labels, T0)
    during = T0 + timedelta(minutes=90)
    assert window.status(during) == "active" and window.mutes(labels, during)
    end = T0 + timedelta(hours=2)
    assert window.status(end) == "expired" and not window.mutes(labels, end)


def test_silence_needs_every_matcher() -> None:
    silence = Silence.create(request(matchers=['fleet="support"', 'agent="a9"']), T0, "sil-1")
    assert silenced_by([silence], anomaly_labels(anomaly()), T0) == []
    assert silenced_by([silence], anomaly_labels(anomaly(agent="a9")), T0) == ["sil-1"]


def test_expire_ends_an_active_silence_now_and_a_pending_one_before_it_starts() -> None:
    active = Silence.create(request(), T0, "sil-1")
    later = T0 + timedelta(minutes=5)
    expired = active.expire(later, "bob")
    assert expired.ends_at == later and expired.expired_by == "bob"
    assert expired.status(later) == "expired"
    assert expired.expire(later + timedelta(1), "carol") is expired
    pending = Silence.create(request(starts_at=T0 + timedelta(hours=1)), T0, "sil-2")
    assert pending.expire(later, "bob").status(T0 + timedelta(hours=1)) == "expired"


def test_impossible_silences_are_refused() -> None:
    with pytest.raises(ValueError, match="after starts_at"):
        Silence.create(request(starts_at=T0 + timedelta(hours=3)), T0, "sil-1")
    with pytest.raises(ValueError, match="in the past"):
        Silence.create(request(ends_at=T0 - timedelta(hours=1)), T0, "sil-1")
    with pytest.raises(ValidationError, match="timezone"):
        request(ends_at=datetime(2026, 1, 1, 5))
    with pytest.raises(ValidationError):
        request(matchers=[])
    with pytest.raises(ValidationError, match="not a matcher"):
        request(matchers=["fleet"])


OUTAGE = InhibitRule.model_validate(
    {
        "name": "fleet-outage",
        "source_matchers": ['rule="FailureRate"'],
        "target_matchers": ['rule="FailureRate"'],
        "equal": ["fleet"],
        "min_agents": 3,
        "window": "10m",
    }
)


def failing(agent: str, clock: float, fleet: str = "support") -> SourceAlert:
    labels = anomaly_labels(anomaly(agent=agent, fleet=fleet))
    return SourceAlert(clock, f"an-{agent}-{clock}", labels)


def test_fleet_outage_inhibits_per_agent_failures_once_k_other_agents_fail() -> None:
    target = anomaly_labels(anomaly(agent="s9"))
    two = [failing("s1", 100.0), failing("s2", 110.0)]
    assert inhibited_by([OUTAGE], target, "an-x", two, 200.0) == []
    three = [*two, failing("s3", 120.0)]
    assert inhibited_by([OUTAGE], target, "an-x", three, 200.0) == ["fleet-outage"]


def test_outage_counts_other_agents_of_the_same_fleet_within_the_window() -> None:
    target = anomaly_labels(anomaly(agent="s1"))
    same_agent = [failing("s1", 100.0), failing("s2", 100.0), failing("s3", 100.0)]
    assert inhibited_by([OUTAGE], target, "an-x", same_agent, 200.0) == []  # s1 is the target
    other_fleet = [failing(f"c{i}", 100.0, fleet="coder") for i in range(5)]
    assert inhibited_by([OUTAGE], target, "an-x", other_fleet, 200.0) == []
    old = [failing(f"s{i}", 100.0) for i in range(2, 6)]
    assert inhibited_by([OUTAGE], target, "an-x", old, 100.0 + 601.0) == []
    assert inhibited_by([OUTAGE], target, "an-x", old, 100.0 + 599.0) == ["fleet-outage"]


def test_plain_inhibit_rule_is_one_source_and_never_self() -> None:
    rule = InhibitRule.model_validate(
        {
            "source_matchers": ['severity="critical"'],
            "target_matchers": ['severity=~"warning|error"'],
            "equal": ["agent"],
        }
    )
    critical = SourceAlert(10.0, "an-1", {"agent": "a1", "severity": "critical"})
    assert inhibited_by([rule], {"agent": "a1", "severity": "error"}, "an-2", [critical], 20.0) == [
        "inhibit_rules[0]"
    ]
    assert (
        inhibited_by([rule], {"agent": "a2", "severity": "error"}, "an-2", [critical], 20.0) == []
    )
    assert (
        inhibited_by([rule], {"agent": "a1", "severity": "critical"}, "an-1", [critical], 20.0)
        == []
    )


def test_rules_file_inhibit_rules_load_and_report_problems(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "r.yml"
    path.write_text(
        "groups: [{name: g, rules: [{alert: FailureRate, detector: failure_rate}]}]\n"
        "inhibit_rules:\n"
        "  - source_matchers: ['rule=\"FailureRate\"']\n"
        "    target_matchers: ['rule=\"FailureRate\"']\n"
        "    equal: [fleet]\n"
        "    min_agents: 3\n"
    )
    rules = load_rules(path)
    assert rules.inhibit_rules[0].min_agents == 3 and rules.inhibit_rules[0].equal == ["fleet"]
    path.write_text(
        "groups: [{name: g, rules: [{alert: FailureRate, detector: failure_rate}]}]\n"
        "inhibit_rules:\n"
        "  - source_matchers: ['rule']\n"
        "    equals: [fleet]\n"
    )
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    text = "\n".join(caught.value.lines)
    assert "inhibit_rules[0].target_matchers" in text
    assert "not a matcher" in text and "inhibit_rules[0].equals" in text


def test_muted_anomaly_keeps_its_control_action_but_opens_no_incident() -> None:
    responder = Responder(load_rules(), IncidentBook(IncidentPolicy(group_wait=0)))
    loop = anomaly(rule="RunawayLoop", detector="runaway_loop", kind="repeat", severity="critical")
    out = responder.on_anomaly(loop, None, None, now=0.0, mute=Mute(silenced_by=("sil-1",)))
    assert out.incident is None and out.notifications == []
    assert out.control is not None and out.control.halted
    assert [a.action for a in out.audit] == ["halt", "suppressed"]
    assert out.audit[1].detail["silenced_by"] == ["sil-1"]


def test_a_muted_page_is_not_sent_and_the_next_unmuted_anomaly_pages() -> None:
    responder = Responder(load_rules(), IncidentBook(IncidentPolicy(group_wait=10)))
    first = responder.on_anomaly(anomaly(1, rule="FailureRate"), None, None, now=0.0)
    assert first.incident is not None
    muted = responder.tick(first.incident, None, 10.0, lambda note: Mute(silenced_by=("sil-1",)))
    assert muted.notifications == [] and [a.action for a in muted.audit] == ["suppressed"]
    assert muted.incident is not None and muted.incident.muted_by == ["sil-1"]
    assert responder.tick(muted.incident, None, 20.0, lambda note: Mute()).notifications == []
    again = responder.on_anomaly(anomaly(2, rule="FailureRate"), None, muted.incident, now=30.0)
    assert again.incident is not None
    paged = responder.tick(again.incident, None, 31.0, lambda note: Mute())
    assert [n.event for n in paged.notifications] == ["trigger"]
