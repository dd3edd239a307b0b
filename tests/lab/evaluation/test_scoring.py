"""Tests for backtest scoring: recall, TTD, episodes, false alert rate, benign attribution."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentwatch.lab.evaluation import FleetSummary, Targets, evaluate, parse_time
from agentwatch.lab.labels import Label
from agentwatch.lab.sim import SimConfig, Simulation
from agentwatch.schemas import Anomaly, decode_event
from agentwatch.schemas._types import format_ts

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
T0S = T0.timestamp()

_counter = iter(range(1_000_000))


def anomaly(
    agent: str, at_s: float, detector: str = "rate", fleet: str = "support", **kw: Any
) -> Anomaly:
    """An anomaly of ``agent`` at ``at_s`` seconds after T0."""
    values: dict[str, Any] = {
        "anomaly_id": f"an-{next(_counter)}",
        "ts": T0 + timedelta(seconds=at_s),
        "agent_id": agent,
        "fleet": fleet,
        "detector": detector,
        "kind": detector,
        "severity": "error",
        "score": 2.0,
        "threshold": 1.0,
        "observed": 2.0,
        "baseline": 1.0,
        "summary": f"{detector} fired",
    }
    values.update(kw)
    return Anomaly(**values)


def label(
    kind: str,
    agent: str | None,
    start_s: float,
    end_s: float,
    *,
    benign: bool = False,
    fleet: str = "support",
    id: str | None = None,
) -> Label:
    return Label.from_dict(
        {
            "id": id or f"{kind}-{agent}-{start_s:g}",
            "kind": kind,
            "agent_id": agent,
            "fleet": fleet,
            "start": format_ts(T0 + timedelta(seconds=start_s)),
            "end": format_ts(T0 + timedelta(seconds=end_s)),
            "benign": benign,
            "params": {},
        }
    )


def summary(agents: int = 10, hours: float = 10.0) -> FleetSummary:
    return FleetSummary(agents=agents, start=T0S, end=T0S + hours * 3600)


# -- incidents -----------------------------------------------------------------------------


def test_detected_missed_and_time_to_detect() -> None:
    labels = [
        label("runaway_loop", "a1", 600, 900, id="inc-1"),
        label("runaway_loop", "a2", 600, 900, id="inc-2"),  # only a2's anomaly is too early
        label("exfiltration", "a3", 600, 900, id="inc-3"),  # only another agent fires
        label("error_storm", "a4", 600, 900, id="inc-4"),  # fires in the grace period
        label("error_storm", "a5", 600, 900, id="inc-5"),  # fires after the grace period
    ]
    anomalies = [
        anomaly("a1", 645, detector="repeat"),
        anomaly("a1", 620, detector="rate"),  # out of order on input: first by time wins
        anomaly("a2", 599),
        anomaly("zz", 700),
        anomaly("a4", 900 + 300),  # == end + grace: still counts
        anomaly("a5", 900 + 301),
    ]
    ev = evaluate(anomalies, labels, summary(), grace_s=300)
    by_id = {r.id: r for r in ev.incidents}
    assert by_id["inc-1"].detected and by_id["inc-1"].ttd_s == pytest.approx(20.0)
    assert by_id["inc-1"].first_detector == "rate"
    assert by_id["inc-1"].detectors == ("rate", "repeat")
    assert not by_id["inc-2"].detected and by_id["inc-2"].ttd_s is None
    assert not by_id["inc-3"].detected
    assert by_id["inc-4"].detected and by_id["inc-4"].ttd_s == pytest.approx(600.0)
    assert not by_id["inc-5"].detected
    assert ev.detected == 2 and ev.recall == pytest.approx(0.4)
    loop = ev.kind("runaway_loop")
    assert loop is not None and loop.incidents == 2 and loop.detected == 1
    assert loop.recall == 0.5 and loop.median_ttd_s == pytest.approx(20.0)
    assert ev.kind("mix_shift") is None


def test_each_incident_counts_its_agents_events_and_failed_calls_from_start_to_end() -> None:
    labels = [
        label("error_storm", "a1", 600, 900, id="inc-1"),  # missed: no failed call in it
        label("error_storm", "a2", 600, 900, id="inc-2"),  # caught
        label("error_storm", "a3", 600, 900, id="inc-3"),  # no events known for a3
    ]
    events = {"a1": [T0S + t for t in (500, 600, 700, 900, 901)], "a2": [T0S + 650, T0S + 700]}
    failed = {"a1": [T0S + 500, T0S + 901], "a2": [T0S + 650, T0S + 700]}
    ev = evaluate([anomaly("a2", 700)], labels, summary(), events=events, failed=failed)
    by_id = {r.id: r for r in ev.incidents}
    assert (by_id["inc-1"].window_events, by_id["inc-1"].window_failed) == (3, 0)
    assert (by_id["inc-2"].window_events, by_id["inc-2"].window_failed) == (2, 2)
    assert by_id["inc-3"].window_events is None and by_id["inc-3"].window_failed is None
    text = ev.format_text()
    assert "inc-1 error_storm a1" in text and "(3 events, 0 failed)" in text
    assert ev.to_dict()["incident_results"][0]["window_failed"] == 0
    # without the failed calls' times, the events alone
    plain = evaluate([], labels, summary(), events=events)
    assert plain.incidents[0].window_failed is None and "(3 events)" in plain.format_text()


def test_each_incident_says_when_its_evidence_began_and_how_long_detection_took_after() -> None:
    labels = [
        label("exfiltration", "a1", 600, 900, id="exfil"),  # secret read at 600, egress at 640
        label("error_storm", "a2", 600, 900, id="storm"),  # first failed call at 610
        label("cost_explosion", "a3", 600, 900, id="boom"),  # first costed call at 605
        label("runaway_loop", "a4", 600, 900, id="loop"),  # any event: its first at 601
        label("exfiltration", "a5", 600, 900, id="never"),  # no egress in its window
    ]
    events = {
        "a1": [T0S + t for t in (600, 640, 700)],
        "a2": [T0S + t for t in (590, 600, 610, 620)],
        "a3": [T0S + t for t in (600, 605)],
        "a4": [T0S + t for t in (601, 602)],
        "a5": [T0S + 650],
    }
    failed = {"a1": [], "a2": [T0S + 590, T0S + 610, T0S + 620], "a3": [], "a4": [], "a5": []}
    egress = {"a1": [T0S + 640], "a2": [], "a3": [], "a4": [], "a5": [T0S + 950]}
    costed = {"a1": [], "a2": [], "a3": [T0S + 605], "a4": [], "a5": []}
    found = [anomaly("a1", 641), anomaly("a2", 680), anomaly("a3", 665), anomaly("a4", 620)]
    ev = evaluate(
        found, labels, summary(), events=events, failed=failed, egress=egress, costed=costed
    )
    by_id = {r.id: r for r in ev.incidents}
    assert by_id["exfil"].first_evidence_s == pytest.approx(40.0)
    assert by_id["exfil"].ttd_s == pytest.approx(41.0)
    assert by_id["exfil"].after_evidence_s == pytest.approx(1.0)  # flagged on its egress
    assert by_id["storm"].first_evidence_s == pytest.approx(10.0)  # not the failure before
    assert by_id["storm"].after_evidence_s == pytest.approx(70.0)
    assert by_id["boom"].first_evidence_s == pytest.approx(5.0)
    assert by_id["boom"].after_evidence_s == pytest.approx(60.0)
    assert by_id["loop"].first_evidence_s == pytest.approx(1.0)
    assert by_id["never"].first_evidence_s is None and by_id["never"].after_evidence_s is None
    exfil = ev.kind("exfiltration")
    assert exfil is not None and exfil.median_after_evidence_s == pytest.approx(1.0)
    [row] = [r for r in ev.to_dict()["incident_results"] if r["id"] == "storm"]
    assert row["first_evidence_s"] == pytest.approx(10.0)
    assert row["after_evidence_s"] == pytest.approx(70.0)
    assert "med after evidence" in ev.format_text()
    # unknown evidence: nothing claimed
    plain = evaluate(found, labels, summary(), events=events, failed=failed)
    assert {r.id: r.first_evidence_s for r in plain.incidents}["exfil"] is None
    assert {r.id: r.first_evidence_s for r in plain.incidents}["storm"] == pytest.approx(10.0)


def test_a_cost_explosions_evidence_begins_with_its_first_call_at_twice_the_usual_cost() -> None:
    labels = [
        label("cost_explosion", "a1", 600, 900, id="growth"),  # grows: 2x first at 640
        label("cost_explosion", "a2", 600, 900, id="young"),  # no call before its start
        label("cost_explosion", "a3", 600, 900, id="flat"),  # never reaches 2x
    ]
    usual = [T0S + t for t in range(0, 600, 30)]  # 20 calls before the start
    costed = {
        "a1": [*usual, T0S + 605, T0S + 620, T0S + 640, T0S + 660],
        "a2": [T0S + 610, T0S + 615],
        "a3": [*usual, T0S + 610, T0S + 700],
    }
    costs = {
        "a1": [0.010] * 10 + [0.012] * 10 + [0.013, 0.018, 0.024, 0.050],  # usual: 0.011
        "a2": [0.05, 0.50],
        "a3": [0.010] * 20 + [0.015, 0.019],
    }
    found = [anomaly("a1", 665), anomaly("a2", 700), anomaly("a3", 750)]
    ev = evaluate(found, labels, summary(), costed=costed, costs=costs)
    by_id = {r.id: r for r in ev.incidents}
    assert by_id["growth"].first_evidence_s == pytest.approx(40.0)  # not its first call's 5
    assert by_id["growth"].after_evidence_s == pytest.approx(25.0)
    assert by_id["young"].first_evidence_s == pytest.approx(10.0)  # its first call
    assert by_id["flat"].first_evidence_s is None  # no call showed it
    assert by_id["flat"].after_evidence_s is None
    # the costs unknown: the first call with a cost, as for a ramp
    plain = evaluate(found, labels, summary(), costed=costed)
    assert {r.id: r.first_evidence_s for r in plain.incidents}["growth"] == pytest.approx(5.0)
    with pytest.raises(ValueError, match="agent a1: 23 costs for 24 calls with a cost"):
        evaluate(found, labels, summary(), costed=costed, costs={**costs, "a1": costs["a1"][1:]})


def test_median_and_p90_ttd_per_kind() -> None:
    labels = [label("cost_explosion", f"a{i}", 100, 400, id=f"i{i}") for i in range(3)]
    anomalies = [anomaly("a0", 110), anomaly("a1", 120), anomaly("a2", 160)]
    ev = evaluate(anomalies, labels, summary())
    stats = ev.kind("cost_explosion")
    assert stats is not None
    assert stats.median_ttd_s == pytest.approx(20.0)
    assert stats.p90_ttd_s == pytest.approx(20.0 + 0.8 * 40.0)  # linear interpolation
    assert stats.max_ttd_s == pytest.approx(60.0)
    assert ev.median_ttd_s == pytest.approx(20.0)


def test_benign_and_fleet_wide_labels_are_not_incidents() -> None:
    labels = [
        label("error_burst", "a1", 0, 100, benign=True),
        label("model_upgrade", None, 0, 120, benign=True),
        label("weird_fleet_incident", None, 0, 120),  # fleet-wide, not benign: not scored
    ]
    ev = evaluate([], labels, summary())
    assert ev.incidents == () and ev.recall is None and ev.precision is None
    assert ev.false_per_100_agent_hours == 0.0


# -- episodes ------------------------------------------------------------------------------


def test_episodes_chain_across_gaps_shorter_than_episode_gap() -> None:
    anomalies = [
        anomaly("a1", 0),
        anomaly("a1", 800),  # 800 < 900 after the previous: same episode
        anomaly("a1", 1600),  # 1600 s after the first, but 800 after the previous: chained
        anomaly("a1", 2500),  # exactly 900 after: a new episode
        anomaly("a1", 5000),
        anomaly("a2", 10),  # another agent: its own episode
    ]
    ev = evaluate(anomalies, [], summary(), episode_gap_s=900)
    eps = [(e.agent_id, e.anomalies, e.start - T0S, e.end - T0S) for e in ev.episodes]
    assert eps == [
        ("a1", 3, 0.0, 1600.0),
        ("a2", 1, 10.0, 10.0),
        ("a1", 1, 2500.0, 2500.0),
        ("a1", 1, 5000.0, 5000.0),
    ]
    assert ev.false_episodes == 4 and ev.true_episodes == 0 and ev.precision == 0.0


def test_false_episode_rate_and_precision_arithmetic() -> None:
    labels = [label("runaway_loop", "a1", 1000, 1200, id="inc-1")]
    anomalies = [
        # true: chained to an anomaly inside the window even though it starts before it
        anomaly("a1", 500),
        anomaly("a1", 1100),
        anomaly("a1", 1500 + 300),  # grace end: still true (same episode anyway)
        # three false episodes on other agents / later
        anomaly("a1", 1800 + 900 + 1),
        anomaly("a2", 0),
        anomaly("a3", 7200),
    ]
    # 20 agents x 5 h = 100 agent-hours: the rate is the false count
    ev = evaluate(anomalies, labels, summary(agents=20, hours=5))
    assert ev.summary.agent_hours == pytest.approx(100.0)
    assert ev.true_episodes == 1 and ev.false_episodes == 3
    assert ev.false_per_100_agent_hours == pytest.approx(3.0)
    assert ev.precision == pytest.approx(0.25)
    true = next(e for e in ev.episodes if e.true)
    assert true.incident_ids == ("inc-1",) and true.anomalies == 3
    # 40 agents x 10 h = 400 agent-hours: 3 false -> 0.75 per 100 agent-hours
    ev2 = evaluate(anomalies, labels, summary(agents=40, hours=10))
    assert ev2.false_per_100_agent_hours == pytest.approx(0.75)


def test_an_incident_window_of_another_agent_does_not_make_an_episode_true() -> None:
    labels = [label("exfiltration", "a1", 0, 600)]
    ev = evaluate([anomaly("a2", 100)], labels, summary())
    assert ev.false_episodes == 1 and ev.recall == 0.0


def test_zero_length_span() -> None:
    s = FleetSummary(agents=3, start=T0S, end=T0S)
    assert evaluate([], [], s).false_per_100_agent_hours == 0.0
    assert math.isinf(evaluate([anomaly("a", 0)], [], s).false_per_100_agent_hours)
    assert evaluate([anomaly("a", 0)], [], s).to_dict()["false_per_100_agent_hours"] is None


# -- benign attribution --------------------------------------------------------------------


def test_false_episodes_after_benign_fleet_wide_changes_are_attributed() -> None:
    hour = 3600.0
    labels = [
        label("model_upgrade", None, hour, hour + 120, benign=True, fleet="support"),
        label("tool_rollout", None, hour, hour + 120, benign=True, fleet="coder"),
        label("cost_explosion", "s-inc", 2 * hour, 2 * hour + 300),
    ]
    anomalies = [
        anomaly("s1", hour + 60),  # support, 1 min after: model_upgrade
        anomaly("s2", 3 * hour),  # support, exactly 2 h after: still attributed
        anomaly("s3", 3 * hour + 1),  # support, more than 2 h after: not attributed
        anomaly("s4", hour - 1),  # before the change: not attributed
        anomaly("c1", hour + 600, fleet="coder"),  # coder: tool_rollout
        anomaly("o1", hour + 600, fleet="ops"),  # no change in ops
        anomaly("s-inc", 2 * hour + 10),  # a true episode is never blamed on a change
    ]
    ev = evaluate(anomalies, labels, summary(agents=100, hours=8))
    assert ev.benign_change_episodes == {"model_upgrade": 2, "tool_rollout": 1}
    assert ev.benign_change_total == 3
    causes = {e.agent_id: e.benign_causes for e in ev.episodes}
    assert causes["s1"] == ("model_upgrade",) and causes["s3"] == () and causes["s4"] == ()
    assert causes["s-inc"] == ()
    assert ev.false_by_fleet == {"coder": 1, "ops": 1, "support": 4}
    checks = {c.name: c.ok for c in ev.check()}
    assert checks["benign-change episodes"] is False
    assert checks["recall"] is True


def test_the_episodes_a_change_window_holds_by_chance_come_from_the_rate_outside() -> None:
    """100 agents over 10 h, 90 of them in the changed fleet: its 2 h window is 180 of the
    1,000 agent-hours; 4 false episodes in the other 820 put 180 x 4 / 820 in the window."""
    hour = 3600.0
    labels = [label("model_upgrade", None, hour, hour + 120, benign=True, fleet="support")]
    outside = [anomaly(f"o{k}", 5 * hour + 600 * k) for k in range(4)]
    inside = [anomaly("s1", hour + 60), anomaly("s2", 2 * hour)]
    fleets = FleetSummary(
        agents=100, start=T0S, end=T0S + 10 * hour, agents_by_fleet={"support": 90, "ops": 10}
    )
    ev = evaluate(outside + inside, labels, fleets)
    assert ev.benign_change_total == 2
    assert ev.benign_change_expected == pytest.approx(180 * 4 / 820)
    assert ev.to_dict()["benign_change_expected"] == pytest.approx(0.878, abs=1e-3)
    assert ev.change_agent_hours == pytest.approx(180.0)
    assert "0.88 expected by chance" in ev.format_text()
    # no changes: nothing to expect; a changed fleet of unknown size: not guessed
    assert evaluate(outside, [], fleets).benign_change_expected is None
    assert evaluate(outside, labels, summary()).benign_change_expected is None


def test_change_window_is_a_parameter() -> None:
    labels = [label("model_upgrade", None, 0, 120, benign=True)]
    anomalies = [anomaly("s1", 1000)]
    assert evaluate(anomalies, labels, summary()).benign_change_total == 1
    assert evaluate(anomalies, labels, summary(), change_window_s=600).benign_change_total == 0


def test_false_episodes_overlapping_benign_error_bursts_are_counted() -> None:
    labels = [
        label("error_burst", "a1", 1000, 1100, benign=True),
        label("error_burst", "a2", 1000, 1100, benign=True),
    ]
    anomalies = [
        anomaly("a1", 1050, detector="failure_rate"),
        anomaly("a2", 1100 + 299, detector="failure_rate"),  # within end + grace
        anomaly("a3", 1050, detector="failure_rate"),  # no burst label for a3
        anomaly("a1", 5000),  # a later episode of a1, after the burst
    ]
    ev = evaluate(anomalies, labels, summary(), grace_s=300)
    assert ev.benign_agent_episodes == {"error_burst": 2}
    assert ev.benign_change_episodes == {} and ev.benign_change_total == 0
    # an episode starting before the burst and running into it overlaps it too
    ev2 = evaluate([anomaly("a1", 500), anomaly("a1", 1200)], labels, summary())
    assert ev2.benign_agent_episodes == {"error_burst": 1}


def test_an_error_burst_on_the_agent_is_blamed_before_a_nearby_fleet_change() -> None:
    labels = [
        label("model_upgrade", None, 0, 120, benign=True),  # fleet "support" (the default)
        label("error_burst", "s1", 900, 1000, benign=True),
    ]
    anomalies = [anomaly("s1", 950, detector="fleet_outlier"), anomaly("s2", 960)]
    ev = evaluate(anomalies, labels, summary())
    causes = {e.agent_id: e.benign_causes for e in ev.episodes}
    assert causes == {"s1": ("error_burst",), "s2": ("model_upgrade",)}
    assert ev.false_episodes == 2  # both are still false episodes
    assert ev.benign_change_total == 1 and ev.benign_agent_episodes == {"error_burst": 1}


# -- per detector, output ------------------------------------------------------------------


def test_per_detector_counts() -> None:
    labels = [label("runaway_loop", "a1", 0, 600, id="inc-1")]
    anomalies = [
        anomaly("a1", 30, detector="repeat"),
        anomaly("a1", 60, detector="rate"),
        anomaly("a1", 90, detector="repeat"),
        anomaly("a2", 100, detector="rate"),  # false, rate alone
        anomaly("a3", 100, detector="rate"),  # false, rate + mix
        anomaly("a3", 200, detector="mix"),
    ]
    ev = evaluate(anomalies, labels, summary(agents=10, hours=10))
    d = {s.detector: s for s in ev.detectors}
    assert list(d) == ["mix", "rate", "repeat"]
    assert (d["repeat"].anomalies, d["repeat"].true_episodes, d["repeat"].false_episodes) == (
        2,
        1,
        0,
    )
    assert (d["rate"].anomalies, d["rate"].true_episodes, d["rate"].false_episodes) == (3, 1, 2)
    assert d["rate"].sole_false_episodes == 1 and d["mix"].sole_false_episodes == 0
    assert d["repeat"].first_detections == 1 and d["rate"].first_detections == 0
    assert d["repeat"].incidents_detected == 1 and d["rate"].incidents_detected == 1
    assert d["rate"].false_per_100_agent_hours == pytest.approx(2.0)


def test_to_dict_is_json_and_format_text_is_compact() -> None:
    labels = [
        label("runaway_loop", "a1", 0, 600, id="inc-1"),
        label("exfiltration", "a9", 0, 600, id="inc-2"),
        label("model_upgrade", None, 0, 120, benign=True),
    ]
    anomalies = [anomaly("a1", 30, detector="repeat"), anomaly("a2", 100, detector="rate")]
    ev = evaluate(anomalies, labels, summary())
    data = json.loads(json.dumps(ev.to_dict()))
    assert data["recall"] == 0.5 and data["false_episodes"] == 1
    assert data["benign_change_episodes"] == {"model_upgrade": 1}
    assert [k["kind"] for k in data["kinds"]] == ["exfiltration", "runaway_loop"]
    assert data["false_episode_list"][0]["agent_id"] == "a2"
    assert {c["name"] for c in data["checks"]} >= {"recall", "false episodes / 100 agent-h"}
    text = ev.format_text()
    for needle in (
        "runaway_loop",
        "exfiltration",
        "ALL",
        "false episodes / 100 agent-hours: 1.00",
        "precision 50.0%",
        "model_upgrade 1",
        "repeat",
        "missed incidents (1)",
        "inc-2",
        "targets: FAIL",
    ):
        assert needle in text, needle
    assert len(text.splitlines()) < 60


def test_targets_pass() -> None:
    labels = [label("runaway_loop", "a1", 0, 600)]
    ev = evaluate([anomaly("a1", 30)], labels, summary())
    assert all(c.ok for c in ev.check())
    assert "targets: PASS" in ev.format_text()
    assert not all(c.ok for c in ev.check(Targets(max_median_ttd_s=10)))


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="span"):
        FleetSummary(agents=1, start=10.0, end=5.0)
    with pytest.raises(ValueError, match="agents"):
        FleetSummary(agents=-1, start=0.0, end=5.0)
    with pytest.raises(ValueError, match="start"):
        Label.from_dict({"kind": "x"})
    with pytest.raises(ValueError):
        evaluate([], [], summary(), grace_s=-1)


def test_parse_time_forms() -> None:
    assert parse_time("2026-01-05T09:00:00Z") == T0S
    assert parse_time("2026-01-05T09:00:00+00:00") == T0S
    assert parse_time(T0) == T0S
    assert parse_time(T0S) == T0S
    with pytest.raises(TypeError):
        parse_time(None)


def test_fleet_summary_from_events() -> None:
    raws = [
        b'{"event_id":"e1","ts":"2026-01-05T09:00:00Z","agent_id":"a","fleet":"f1","action":"x"}',
        b'{"event_id":"e2","ts":"2026-01-05T10:30:00Z","agent_id":"b","fleet":"f2","action":"x"}',
        b'{"event_id":"e3","ts":"2026-01-05T09:10:00Z","agent_id":"a","fleet":"f1","action":"x"}',
    ]
    s = FleetSummary.from_events(decode_event(r) for r in raws)
    assert (s.agents, s.start, s.end, s.agents_by_fleet) == (
        2,
        T0S,
        T0S + 5400,
        {"f1": 1, "f2": 1},
    )
    assert s.hours == 1.5 and s.agent_hours == 3.0
    assert FleetSummary.from_events([]).agents == 0


def test_with_simulator_labels() -> None:
    """Anomalies shortly after each simulated incident's start: full recall, no false ones."""
    sim = Simulation(SimConfig(agents=24, minutes=60, seed=5))
    labels = sim.labels()
    fleets = {a.agent_id: a.fleet for a in sim.agents()}
    incidents = [lab for lab in labels if not lab.benign]
    assert incidents
    anomalies = [
        anomaly(
            lab.agent_id,
            lab.start_s - T0S + 15,
            fleet=fleets[lab.agent_id],
            detector=lab.kind,
        )
        for lab in incidents
    ]
    s = FleetSummary(
        agents=24,
        start=sim.config.start.timestamp(),
        end=sim.config.start.timestamp() + 3600,
    )
    ev = evaluate(anomalies, labels, s)
    assert ev.recall == 1.0 and ev.false_episodes == 0 and ev.precision == 1.0
    assert all(k.median_ttd_s == pytest.approx(15.0) for k in ev.kinds)
    assert ev.check()[0].ok
