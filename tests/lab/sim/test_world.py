"""World specs: the knobs real fleets have, determinism, and errors naming file, key, reason."""

from __future__ import annotations

import collections
import dataclasses
import statistics
from pathlib import Path

import pytest

from agentwatch.lab.sim import (
    MODEL_PRICES,
    SealedWorldError,
    Simulation,
    WorldError,
    llm_cost,
    load_world,
)
from agentwatch.lab.sim.world import parse_world
from agentwatch.schemas import ActionEvent, encode_event

BASE = """
name: w
seed: 5
minutes: 240
warmup_minutes: 30
error_bursts_per_hour: 0
diurnal: {amplitude: 0.0}
"""


def world(text: str, tmp_path: Path, name: str = "w.yml") -> Path:
    path = tmp_path / name
    path.write_text(BASE + text, encoding="utf-8")
    return path


def events_of(path: Path) -> list[ActionEvent]:
    return Simulation(load_world(path).config).event_list()


def test_same_spec_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    text = """
fleets: [{name: support, agents: 6}, {name: ops, agents: 4}]
incidents: [{kind: runaway_loop, intensity: 0.3}, {kind: cost_drift, intensity: 0.9}]
benign_changes: [{kind: prompt_change, fleet: ops, at_minute: 100}]
"""
    path = world(text, tmp_path)
    first = [encode_event(e) for e in events_of(path)]
    again = [encode_event(e) for e in events_of(path)]
    assert len(first) > 1000 and first == again
    assert load_world(path).sha256 == load_world(path).sha256
    other = world(text.replace("runaway", "runaway") + "", tmp_path, "o.yml")
    other.write_text(other.read_text().replace("seed: 5", "seed: 6"), encoding="utf-8")
    assert [encode_event(e) for e in events_of(other)] != first


def test_density_idle_gaps_and_fleet_sizes(tmp_path: Path) -> None:
    path = world(
        """
minutes: 600
fleets:
  - {name: slow, role: support, agents: 30, rate_per_min: {median: 0.3, sigma: 0.3, min: 0.2},
     idle_minutes: {median: 60, sigma: 0.3}}
  - {name: busy, role: ops, agents: 3, rate_per_min: {median: 20, sigma: 0.2, max: 30},
     idle_minutes: {median: 2, sigma: 0.3}}
""".replace("minutes: 240\n", ""),
        tmp_path,
    )
    events = events_of(path)
    per_agent = collections.Counter(e.agent_id for e in events)
    fleet = {e.agent_id: e.fleet for e in events}
    assert sum(f == "busy" for f in fleet.values()) == 3
    slow = [n / 600 for a, n in per_agent.items() if fleet[a] == "slow"]
    busy = [n / 600 for a, n in per_agent.items() if fleet[a] == "busy"]
    assert 0.15 <= statistics.median(slow) <= 0.6, statistics.median(slow)
    assert statistics.median(busy) >= 8.0, busy
    # the slow agents pause for most of an hour between sessions
    gaps: list[float] = []
    last: dict[str, float] = {}
    for e in events:
        if fleet[e.agent_id] == "slow":
            t = e.ts.timestamp()
            if e.agent_id in last:
                gaps.append(t - last[e.agent_id])
            last[e.agent_id] = t
    assert sum(g > 20 * 60 for g in gaps) >= 30
    assert max(gaps) > 2 * 3600


def test_models_a_hundred_times_apart_in_one_fleet(tmp_path: Path) -> None:
    path = world(
        """
fleets: [{name: support, agents: 30,
          models: {gpt-4o-mini: 0.5, claude-opus-4: 0.5}, secondary_model: gpt-4o-mini}]
""",
        tmp_path,
    )
    models = {e.model for e in events_of(path) if e.kind == "llm"}
    assert models == {"gpt-4o-mini", "claude-opus-4"}
    ratio = llm_cost("claude-opus-4", 1000, 100) / llm_cost("gpt-4o-mini", 1000, 100)
    assert 100.0 <= ratio <= 125.0  # input 100x, output 125x
    assert set(MODEL_PRICES) >= models


def test_benign_changes_at_their_time(tmp_path: Path) -> None:
    path = world(
        """
fleets:
  - {name: support, agents: 12, models: {gpt-4o-mini: 0.5, gpt-4o: 0.5}}
  - {name: coder, agents: 8}
  - {name: ops, agents: 8}
benign_changes:
  - {kind: prompt_change, fleet: coder, at_minute: 120}
  - {kind: model_upgrade, fleet: support, at_minute: 100,
     map: {gpt-4o-mini: gpt-4.1-mini, gpt-4o: gpt-4.1}}
  - {kind: tool_rollout, fleet: ops, at_minute: 90, share: 0.3}
""",
        tmp_path,
    )
    w = load_world(path)
    sim = Simulation(w.config)
    events = sim.event_list()
    t0 = w.config.start.timestamp()
    labels = {lab.kind: lab for lab in sim.labels() if lab.fleet_wide}
    assert labels["prompt_change"].start_s == t0 + 7200 and labels["prompt_change"].fleet == "coder"

    def tokens(lo: float, hi: float) -> float:
        vals = [
            e.input_tokens
            for e in events
            if e.fleet == "coder" and e.kind == "llm" and lo <= e.ts.timestamp() - t0 < hi
        ]
        return statistics.median(vals)

    assert 1.6 <= tokens(7500, 14400) / tokens(1800, 7000) <= 2.6
    late = {e.model for e in events if e.fleet == "support" and e.ts.timestamp() > t0 + 6300}
    assert {"gpt-4.1-mini", "gpt-4.1"} <= late and "gpt-4o" not in late
    rolled = [e for e in events if e.fleet == "ops" and e.action == "query_traces"]
    assert rolled and min(e.ts.timestamp() for e in rolled) >= t0 + 5400


def test_a_change_rolls_out_over_its_rollout_minutes(tmp_path: Path) -> None:
    text = """
fleets:
  - {name: support, agents: 16, models: {gpt-4o-mini: 1.0}}
benign_changes:
  - {kind: model_upgrade, fleet: support, at_minute: 60, to_model: gpt-4.1-mini%s}
"""
    moves = {}
    for minutes in (None, 30):
        path = world(text % ("" if minutes is None else f", rollout_minutes: {minutes}"), tmp_path)
        w = load_world(path)
        sim = Simulation(w.config)
        at = w.config.start.timestamp() + 3600
        [label] = [lab for lab in sim.labels() if lab.kind == "model_upgrade"]
        assert label.end_s - at == 60.0 * (minutes or 2)
        first: dict[str, float] = {}
        for e in sim.event_list():
            if e.model == "gpt-4.1-mini":
                first.setdefault(e.agent_id, e.ts.timestamp() - at)
        moves[minutes] = first
    # each agent moves at its own time within the rollout (its first call after that time)
    assert len(moves[30]) >= 12 and min(moves[30].values()) >= 0.0
    assert max(moves[None].values()) < max(moves[30].values())
    assert sum(t > 300.0 for t in moves[30].values()) >= 6  # most after the 2-minute default


def _incident_events(path: Path, kind: str) -> tuple[list[ActionEvent], object]:
    sim = Simulation(load_world(path).config)
    events = sim.event_list()
    [lab] = [lab for lab in sim.labels() if lab.kind == kind]
    return [e for e in events if e.agent_id == lab.agent_id], lab


@pytest.mark.parametrize("llm_between", [True, False])
@pytest.mark.parametrize("new_agent", [True, False])
def test_loops_with_and_without_llm_in_new_and_old_agents(
    tmp_path: Path, llm_between: bool, new_agent: bool
) -> None:
    path = world(
        f"""
fleets: [{{name: support, agents: 10}}]
incidents: [{{kind: runaway_loop, rate_per_min: 40, llm_between: {str(llm_between).lower()},
             new_agent: {str(new_agent).lower()}}}]
""",
        tmp_path,
    )
    mine, lab = _incident_events(path, "runaway_loop")
    assert lab.params["rate_per_min"] == 40.0  # type: ignore[attr-defined]
    start, end = lab.start, lab.end  # type: ignore[attr-defined]
    during = [e for e in mine if start <= e.ts < end]
    before = [e for e in mine if e.ts < start]
    assert during[0].ts == start  # the label starts at the first looping event
    target = lab.params["target"]  # type: ignore[attr-defined]
    loop = [e for e in during if e.target == target]
    minutes = (end - start).total_seconds() / 60
    assert 30 <= len(loop) / minutes <= 50
    assert any(e.kind == "llm" for e in during) == llm_between
    assert (not before) == new_agent
    if new_agent:  # its very first tool call is the loop's
        assert next(e for e in mine if e.kind != "llm").target == target


@pytest.mark.parametrize(
    ("mode", "check"),
    [("model_switch", "model"), ("context_stuffing", "tokens"), ("context_growth", "growth")],
)
def test_cost_explosions_by_model_switch_and_by_context(
    tmp_path: Path, mode: str, check: str
) -> None:
    path = world(
        f"""
fleets: [{{name: support, agents: 6, models: {{gpt-4o-mini: 1.0}}, secondary_model: gpt-4o-mini}}]
incidents: [{{kind: cost_explosion, intensity: {0.0 if mode == "context_growth" else 1.0},
             mode: {mode}, minutes: [10, 10]}}]
""",
        tmp_path,
    )
    mine, lab = _incident_events(path, "cost_explosion")
    start, end = lab.start, lab.end  # type: ignore[attr-defined]
    assert lab.params["mode"] == mode  # type: ignore[attr-defined]
    calls = [e for e in mine if e.kind == "llm" and e.status == "ok"]
    before = [e for e in calls if e.ts < start]
    during = [e for e in calls if start <= e.ts < end]
    base = statistics.mean(e.cost_usd for e in before)
    assert statistics.mean(e.cost_usd for e in during) > (2.5 if check == "growth" else 8) * base
    if check == "model":
        assert {e.model for e in during} == {lab.params["model"]}  # type: ignore[attr-defined]
        assert lab.params["price_ratio"] >= 10  # type: ignore[attr-defined]
    else:
        assert {e.model for e in during} <= {"gpt-4o-mini"}
    if check == "growth":  # the prompt grows (to 4x over 5 min): late calls far bigger
        early = [e.input_tokens for e in during if (e.ts - start).total_seconds() < 60]
        late = [e.input_tokens for e in during if (e.ts - start).total_seconds() > 300]
        assert statistics.mean(late) > 2 * statistics.mean(early)


def test_cost_ramp_label_says_when_it_crosses_2x(tmp_path: Path) -> None:
    path = world(
        """
minutes: 400
fleets: [{name: support, agents: 8, rate_per_min: {median: 6, sigma: 0.1}}]
incidents: [{kind: cost_drift, ramp_minutes: 120, final_factor: 4.0}]
""".replace("minutes: 240\n", ""),
        tmp_path,
    )
    mine, lab = _incident_events(path, "cost_drift")
    start = lab.start_s  # type: ignore[attr-defined]
    crossing = lab.crosses_2x_s  # type: ignore[attr-defined]
    assert crossing == pytest.approx(start + 120 * 60 / 3)
    assert lab.crosses_3x_s == pytest.approx(start + 2 * 120 * 60 / 3)  # type: ignore[attr-defined]
    assert lab.params["ramp_minutes"] == 120.0  # type: ignore[attr-defined]

    def mean_cost(lo: float, hi: float) -> float:
        costs = [
            e.input_tokens
            for e in mine
            if e.kind == "llm" and e.status == "ok" and lo <= e.ts.timestamp() < hi
        ]
        return statistics.mean(costs)

    base = mean_cost(start - 3600, start)
    assert 1.6 <= mean_cost(crossing - 600, crossing + 600) / base <= 2.5
    assert 3.2 <= mean_cost(start + 7500, start + 9000) / base <= 5.0


def test_intensity_runs_from_subtle_to_blatant(tmp_path: Path) -> None:
    path = world(
        """
fleets: [{name: ops, agents: 30}]
incidents:
  - {kind: error_storm, intensity: 0.0}
  - {kind: error_storm, intensity: 1.0}
  - {kind: privilege_probing, intensity: 0.0}
  - {kind: privilege_probing, intensity: 1.0}
  - {kind: mix_shift, intensity: 0.0}
  - {kind: mix_shift, intensity: 1.0}
  - {kind: unapproved_high_risk, intensity: 0.0}
  - {kind: unapproved_high_risk, intensity: 1.0}
""",
        tmp_path,
    )
    labels = Simulation(load_world(path).config).labels()

    def param(kind: str, key: str) -> list[float]:
        found = [lab for lab in labels if lab.kind == kind]
        found.sort(key=lambda lab: lab.params["intensity"])
        return [lab.params[key] if key != "n" else len(lab.params["actions"]) for lab in found]

    low, high = param("error_storm", "error_rate")
    assert low < 0.3 < 0.8 < high
    minutes = [
        (lab.end_s - lab.start_s) / 60
        for lab in sorted(
            (x for x in labels if x.kind == "privilege_probing"),
            key=lambda x: x.params["intensity"],
        )
    ]
    few, many = param("privilege_probing", "probes")
    assert few / minutes[0] < 1.0 < 3.0 < many / minutes[1]
    near, far = param("mix_shift", "tv_distance")
    assert near == pytest.approx(0.2, abs=0.02) and far > 0.6
    assert param("unapproved_high_risk", "n") == [1, 4]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fleets: [{name: support, agents: 0}]", "fleets[0].agents: Input should be greater"),
        ("fleets: [{name: support, agents: 3, models: {gpt-9: 1}}]", "fleets[0].models: "),
        ("fleets: [{name: team, agents: 3}]", "fleets[0].role: needed"),
        (
            "fleets: [{name: ops, agents: 3}]\nincidents: [{kind: runaway_loop, speed: 3}]",
            "incidents[0].speed: Extra inputs are not permitted",
        ),
        (
            "fleets: [{name: ops, agents: 3}]\nincidents: [{kind: meteor}]",
            "incidents[0].kind: must be one of",
        ),
        (
            "fleets: [{name: ops, agents: 3}]\nincidents: [{kind: error_storm, intensity: 2}]",
            "incidents[0].intensity: must be a number in [0, 1]",
        ),
        (
            "fleets: [{name: ops, agents: 2}]\nincidents: [{kind: error_storm, count: 3}]",
            "incidents: 3 incidents need at least as many agents, got 2",
        ),
        (
            "fleets: [{name: ops, agents: 3}]\n"
            "benign_changes: [{kind: prompt_change, fleet: ops, at_minute: 999}]",
            "benign_changes[0].at_minute: must be a number in [0, 240)",
        ),
        (
            "fleets: [{name: ops, agents: 3}]\nbenign_changes: [{kind: model_upgrade, fleet: web}]",
            "benign_changes[0].fleet: no fleet 'web'",
        ),
        (
            "fleets: [{name: ops, agents: 3}]\nbenign_changes: [{kind: tool_rollout, share: 2}]",
            "benign_changes[0].share: Input should be less than 1",
        ),
        (
            "fleets: [{name: ops, agents: 3}]\n"
            "benign_changes: [{kind: prompt_change, rollout_minutes: 0}]",
            "benign_changes[0].rollout_minutes: Input should be greater than 0",
        ),
        ("fleets: [{name: ops, agents: 3}]\nsurprise: 1", "surprise: Extra inputs"),
        ("fleets: [{name: ops, agents: 3}", "w.yml:"),  # YAML syntax, with its line
    ],
)
def test_spec_errors_name_file_key_and_reason(tmp_path: Path, text: str, message: str) -> None:
    path = world(text, tmp_path)
    with pytest.raises(WorldError) as info:
        load_world(path)
    assert str(info.value).startswith(f"{path}")
    assert message in str(info.value)


def test_a_sealed_spec_needs_leave(tmp_path: Path) -> None:
    path = world("half: sealed\nfleets: [{name: ops, agents: 3}]", tmp_path)
    with pytest.raises(SealedWorldError, match="sealed"):
        load_world(path)
    assert load_world(path, allow_sealed=True).half == "sealed"


def test_missing_file() -> None:
    with pytest.raises(WorldError, match=r"nowhere\.yml: cannot read"):
        load_world("nowhere.yml")


def test_parse_world_reads_bytes() -> None:
    w = parse_world(BASE.encode() + b"fleets: [{name: ops, agents: 3}]", "mem")
    assert (w.name, w.seed, w.config.agents, w.config.diurnal_amplitude) == ("w", 5, 3, 0.0)


@pytest.mark.parametrize("minutes", [20, 60])
def test_the_slow_rollout_probes_are_the_tuning_worlds_but_for_their_rollouts(
    minutes: int,
) -> None:
    worlds = Path(__file__).resolve().parents[3] / "agentwatch" / "lab" / "worlds"
    probes = sorted((worlds / "probes" / f"rollout-{minutes}").glob("*.yml"))
    assert len(probes) == 12
    for path in probes:
        probe = load_world(path).config
        tuning = load_world(worlds / "tuning" / f"{path.stem.split('-', 1)[1]}.yml").config
        assert probe.change_plans and all(
            c.options["rollout_minutes"] == minutes for c in probe.change_plans
        )
        same = [
            dataclasses.replace(
                c, options={k: v for k, v in c.options.items() if k != "rollout_minutes"}
            )
            for c in probe.change_plans
        ]
        assert [(c.kind, c.fleet, c.at_minute, dict(c.options)) for c in same] == [
            (c.kind, c.fleet, c.at_minute, dict(c.options)) for c in tuning.change_plans
        ]
        # everything else the same (fleet specs compare by identity: by their repr here)
        assert repr(dataclasses.replace(probe, change_plans=())) == repr(
            dataclasses.replace(tuning, change_plans=())
        )
