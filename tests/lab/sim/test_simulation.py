"""Tests for the fleet simulator: determinism, validity, incidents, benign changes, output."""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import statistics
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from agentwatch.config import Settings
from agentwatch.lab.sim import (
    ALL_BENIGN_CHANGES,
    ALL_INCIDENT_KINDS,
    DEFAULT_START,
    EXFIL_DOMAINS,
    KNOWN_DOMAINS,
    MODEL_PRICES,
    IncidentSpec,
    Label,
    SimConfig,
    Simulation,
    demo_config,
    demo_task,
    load_labels,
    parse_kinds,
    produce,
    write_jsonl,
)
from agentwatch.schemas import ActionEvent, decode_event, encode_event

HIGH = ("high", "critical")


def _domain(target: str) -> str:
    if "@" in target and "://" not in target:
        return target.rsplit("@", 1)[1]
    return urlparse(target).hostname or ""


def _window(
    events: Iterable[ActionEvent], agent: str, start: datetime, end: datetime
) -> list[ActionEvent]:
    return [e for e in events if e.agent_id == agent and start <= e.ts < end]


def _tool_mix(events: Iterable[ActionEvent]) -> dict[str, float]:
    counts = collections.Counter(e.action for e in events if e.kind != "llm")
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()}


def _mean_llm_cost(events: Iterable[ActionEvent]) -> float:
    costs = [e.cost_usd for e in events if e.kind == "llm" and e.status == "ok"]
    assert costs, "no LLM calls to compare"
    return sum(costs) / len(costs)


# One realistic run with every incident kind, shared by the incident tests.
FULL = SimConfig(agents=40, minutes=90, seed=5)


@pytest.fixture(scope="module")
def full_run() -> tuple[Simulation, list[ActionEvent], list[Label]]:
    sim = Simulation(FULL)
    return sim, sim.event_list(validate=True), sim.labels()


def _label(labels: list[Label], kind: str) -> Label:
    found = [lab for lab in labels if lab.kind == kind]
    assert len(found) == 1, f"expected one {kind} label, got {len(found)}"
    return found[0]


def _before_and_during(
    events: list[ActionEvent], label: Label
) -> tuple[list[ActionEvent], list[ActionEvent]]:
    agent, start, end = label.agent_id, label.start, label.end
    before = _window(events, agent, DEFAULT_START, start)
    during = _window(events, agent, start, end)
    assert len(before) >= 20, f"{label.kind}: too little baseline for {agent}"
    assert during, f"{label.kind}: no events of {agent} in the incident window"
    return before, during


# -- determinism -------------------------------------------------------------------------


def test_same_seed_gives_identical_events_and_labels() -> None:
    config = SimConfig(agents=12, minutes=20, seed=11)
    first = [encode_event(e) for e in Simulation(config).events()]
    second = [encode_event(e) for e in Simulation(config).events()]
    assert len(first) > 500
    assert first == second
    assert Simulation(config).labels() == Simulation(config).labels()
    # Iterating the same Simulation twice regenerates the same stream.
    sim = Simulation(config)
    assert [e.event_id for e in sim.events()] == [e.event_id for e in sim.events()]


def test_different_seed_gives_different_events_and_labels() -> None:
    a = Simulation(SimConfig(agents=12, minutes=20, seed=1))
    b = Simulation(SimConfig(agents=12, minutes=20, seed=2))
    assert [encode_event(e) for e in a.events()] != [encode_event(e) for e in b.events()]
    assert [(x.agent_id, x.start) for x in a.labels()] != [
        (x.agent_id, x.start) for x in b.labels()
    ]


def test_fast_path_builds_exactly_the_validated_events() -> None:
    sim = Simulation(SimConfig(agents=16, minutes=40, seed=3))
    validated = list(sim.events(validate=True))
    fast = list(sim.events(validate=False))
    assert len(validated) == len(fast) > 1000
    assert validated == fast
    assert [encode_event(e) for e in validated] == [encode_event(e) for e in fast]
    assert [e.model_fields_set for e in validated] == [e.model_fields_set for e in fast]
    # Models built on the fast path stay frozen and copy like validated ones.
    with pytest.raises(Exception, match="frozen"):
        fast[0].agent_id = "x"
    assert fast[0].model_copy(update={"agent_id": "y"}).agent_id == "y"
    assert fast[0].agent_id != "y"


def test_agents_without_incidents_are_unaffected_by_injection() -> None:
    base = SimConfig(agents=20, minutes=45, seed=9)
    with_incidents = Simulation(base)
    without = Simulation(SimConfig(agents=20, minutes=45, seed=9, incidents=()))
    hit = {lab.agent_id for lab in with_incidents.labels() if not lab.benign}
    assert len(hit) == len(ALL_INCIDENT_KINDS)

    def per_agent(sim: Simulation) -> dict[str, list[bytes]]:
        out: dict[str, list[bytes]] = collections.defaultdict(list)
        for e in sim.events(validate=False):
            out[e.agent_id].append(encode_event(e))
        return out

    a, b = per_agent(with_incidents), per_agent(without)
    assert set(a) == set(b)
    for agent in a:
        if agent not in hit:
            assert a[agent] == b[agent], agent
    assert any(a[agent] != b[agent] for agent in hit)


# -- validity ----------------------------------------------------------------------------


def test_events_are_valid_ordered_and_well_identified(
    full_run: tuple[Simulation, list[ActionEvent], list[Label]],
) -> None:
    sim, events, _ = full_run
    end = DEFAULT_START + timedelta(minutes=FULL.minutes or 0)
    assert all(a.ts <= b.ts for a, b in itertools.pairwise(events))
    assert events[0].ts >= DEFAULT_START and events[-1].ts < end
    assert len({e.event_id for e in events}) == len(events)
    seen: dict[str, int] = collections.defaultdict(int)
    for e in events:
        assert e.event_id == f"{e.agent_id}-{seen[e.agent_id]}"
        seen[e.agent_id] += 1
        assert decode_event(encode_event(e)) == e
        if e.kind == "llm":
            assert e.model in MODEL_PRICES and e.input_tokens > 0
        assert e.session_id
    fleets = {a.agent_id: a.fleet for a in sim.agents()}
    assert all(fleets[e.agent_id] == e.fleet for e in events)
    assert set(seen) == set(fleets)  # every agent is active


def test_llm_cost_follows_the_price_table(
    full_run: tuple[Simulation, list[ActionEvent], list[Label]],
) -> None:
    _, events, _ = full_run
    llm = [e for e in events if e.kind == "llm"]
    assert len(llm) > 1000
    for e in llm[:2000]:
        price_in, price_out = MODEL_PRICES[e.model or ""]
        expected = (e.input_tokens * price_in + e.output_tokens * price_out) / 1e6
        assert e.cost_usd == pytest.approx(expected, abs=1e-6)
    assert len({e.model for e in llm}) >= 4


def test_normal_traffic_approves_high_risk_and_stays_on_known_domains(
    full_run: tuple[Simulation, list[ActionEvent], list[Label]],
) -> None:
    _, events, labels = full_run
    incident_windows = [(lab.agent_id, lab.start, lab.end) for lab in labels if not lab.benign]

    def in_incident(e: ActionEvent) -> bool:
        return any(a == e.agent_id and s <= e.ts < t for a, s, t in incident_windows)

    normal = [e for e in events if not in_incident(e)]
    risky = [e for e in normal if e.risk in HIGH]
    assert len(risky) > 100
    assert all(e.approved_by for e in risky)
    for e in normal:
        if e.action in ("send_email", "http_get", "http_post") and e.target:
            assert _domain(e.target) in KNOWN_DOMAINS or _domain(e.target).endswith(
                ".internal.example.com"
            ), e.target


def test_agents_are_heterogeneous_and_work_in_sessions(
    full_run: tuple[Simulation, list[ActionEvent], list[Label]],
) -> None:
    sim, events, labels = full_run
    rates = [a.rate_per_min for a in sim.agents()]
    assert max(rates) / min(rates) > 3
    sessions: dict[str, set[str]] = collections.defaultdict(set)
    for e in events:
        sessions[e.agent_id].add(e.session_id or "")
    assert all(len(s) >= 2 for s in sessions.values())
    # Markov structure: in normal support sessions the ticket replied to was read before.
    odd = {lab.agent_id for lab in labels if not lab.benign}  # e.g. mix_shift
    replies = [e for e in events if e.action == "reply_ticket" and e.agent_id not in odd]
    reads = {(e.session_id, e.target) for e in events if e.action == "read_ticket"}
    assert replies and all((e.session_id, e.target) in reads for e in replies)


def test_benign_error_bursts_are_labelled_and_real(
    full_run: tuple[Simulation, list[ActionEvent], list[Label]],
) -> None:
    _, events, labels = full_run
    bursts = [lab for lab in labels if lab.kind == "error_burst"]
    assert bursts and all(lab.benign for lab in bursts)
    calls = errors = 0
    for lab in bursts:
        window = _window(events, lab.agent_id, lab.start, lab.end)
        hits = [e for e in window if e.action == lab.params["tool"]]
        calls += len(hits)
        errors += sum(e.status == "error" for e in hits)
    assert calls >= 3
    assert errors / calls >= 0.5


# -- incidents ---------------------------------------------------------------------------


def test_every_requested_incident_is_labelled_once_in_distinct_agents(
    full_run: tuple[Simulation, list[ActionEvent], list[Label]],
) -> None:
    sim, _, labels = full_run
    incidents = [lab for lab in labels if not lab.benign]
    assert sorted(lab.kind for lab in incidents) == sorted(ALL_INCIDENT_KINDS)
    assert len({lab.agent_id for lab in incidents}) == len(incidents)
    fleets = {a.agent_id: a.fleet for a in sim.agents()}
    warmup_end = DEFAULT_START + timedelta(minutes=0.25 * 90)
    for lab in incidents:
        assert fleets[lab.agent_id] == lab.fleet
        assert warmup_end <= lab.start < lab.end
        assert lab.to_dict()["start"].endswith("Z") and lab.to_dict()["end"].endswith("Z")
    json.dumps([lab.to_dict() for lab in labels])  # JSON-able
    assert [s.incident_id for s in sim.incidents()] == [lab.id for lab in labels if not lab.benign]


def test_runaway_loop_repeats_one_call_far_above_the_agent_rate(
    full_run: tuple[Simulation, list[ActionEvent], list[Label]],
) -> None:
    _, events, labels = full_run
    lab = _label(labels, "runaway_loop")
    before, during = _before_and_during(events, lab)
    minutes = (lab.end - lab.start).total_seconds() / 60
    pairs = collections.Counter((e.action, e.target) for e in during if e.kind != "llm")
    (action, target), repeats = pairs.most_common(1)[0]
    assert (action, target) == (lab.params["action"], lab.params["target"])
    base_minutes = (before[-1].ts - DEFAULT_START).total_seconds() / 60
    base_rate = sum(e.kind != "llm" for e in before) / base_minutes
    assert repeats / minutes >= 10
    assert repeats / minutes >= 3 * base_rate  # one call, faster than all its usual calls
    assert repeats / minutes <= 100 * base_rate  # realistic, not a thousandfold


def test_cost_explosion_multiplies_cost_per_llm_call(
    full_run: tuple[Simulation, list[ActionEvent], list[Label]],
) -> None:
    _, events, labels = full_run
    lab = _label(labels, "cost_explosion")
    before, during = _before_and_during(events, lab)
    ratio = _mean_llm_cost(during) / _mean_llm_cost(before)
    assert 3 <= ratio <= 200
    llm_during = [e for e in during if e.kind == "llm"]
    tokens_before = statistics.median(e.input_tokens for e in before if e.kind == "llm")
    tokens_during = statistics.median(e.input_tokens for e in llm_during)
    if lab.params["mode"] == "premium_model":
        models = collections.Counter(e.model for e in llm_during)
        assert models.most_common(1)[0][0] == lab.params["model"]
        assert tokens_during >= 1.2 * tokens_before
    else:
        assert lab.params["mode"] == "context_stuffing"
        assert tokens_during >= 3 * tokens_before


def test_error_storm_sustains_a_high_failure_rate(
    full_run: tuple[Simulation, list[ActionEvent], list[Label]],
) -> None:
    _, events, labels = full_run
    before, during = _before_and_during(events, _label(labels, "error_storm"))
    tools_before = [e for e in before if e.kind != "llm"]
    tools_during = [e for e in during if e.kind != "llm"]
    rate_before = sum(e.status == "error" for e in tools_before) / len(tools_before)
    rate_during = sum(e.status == "error" for e in tools_during) / len(tools_during)
    assert len(tools_during) >= 15
    assert rate_before < 0.1
    assert rate_during >= 0.4


def test_privilege_probing_is_denied_high_risk_attempts(
    full_run: tuple[Simulation, list[ActionEvent], list[Label]],
) -> None:
    _, events, labels = full_run
    before, during = _before_and_during(events, _label(labels, "privilege_probing"))
    denied = [e for e in during if e.status == "denied"]
    assert len(denied) >= 8
    assert all(e.risk in HIGH and e.approved_by is None for e in denied)
    assert any(
        "/etc/shadow" in (e.target or "")
        or "admin" in (e.target or "").lower()
        or "root" in (e.target or "")
        for e in denied
    )
    assert sum(e.status == "denied" for e in before) <= 1


def test_exfiltration_reads_a_secret_then_sends_to_an_unknown_domain(
    full_run: tuple[Simulation, list[ActionEvent], list[Label]],
) -> None:
    _, events, labels = full_run
    lab = _label(labels, "exfiltration")
    _, during = _before_and_during(events, lab)

    def is_secret(e: ActionEvent) -> bool:
        t = e.target or ""
        return e.action == "get_secret" or t.endswith((".env", "credentials")) or ("secrets/" in t)

    reads = [e for e in during if is_secret(e)]
    sends = [
        e
        for e in during
        if e.action in ("http_post", "send_email") and _domain(e.target or "") in EXFIL_DOMAINS
    ]
    assert reads and sends
    assert all(_domain(e.target or "") not in KNOWN_DOMAINS for e in sends)
    assert any(r.ts < s.ts <= r.ts + timedelta(minutes=2) for r in reads for s in sends)
    # Nobody else ever talks to those domains.
    everywhere = [e for e in events if e.target and _domain(e.target) in EXFIL_DOMAINS]
    assert {e.agent_id for e in everywhere} == {lab.agent_id}


def test_mix_shift_changes_the_action_distribution(
    full_run: tuple[Simulation, list[ActionEvent], list[Label]],
) -> None:
    _, events, labels = full_run
    lab = _label(labels, "mix_shift")
    before, during = _before_and_during(events, lab)
    p, q = _tool_mix(before), _tool_mix(during)
    tv = 0.5 * sum(abs(p.get(k, 0) - q.get(k, 0)) for k in set(p) | set(q))
    assert sum(e.kind != "llm" for e in during) >= 10
    assert tv >= 0.3
    assert lab.params["tv_distance"] >= 0.3
    # It is a shift in the mix, not new tools: the agent's fleet already has them all.
    assert set(q) <= {e.action for e in events if e.fleet == lab.fleet}


def test_cost_drift_creeps_up_slowly(
    full_run: tuple[Simulation, list[ActionEvent], list[Label]],
) -> None:
    _, events, labels = full_run
    lab = _label(labels, "cost_drift")
    before, during = _before_and_during(events, lab)
    start, end = lab.start, lab.end
    assert end - start >= timedelta(minutes=45)
    span = end - start
    early = [e for e in during if e.ts < start + span / 5]
    late = [e for e in during if e.ts >= start + span * 3 / 4]

    # Tokens per call (not cost: a benign model upgrade may hit the same fleet meanwhile).
    def tokens(events: list[ActionEvent]) -> float:
        return statistics.mean(e.input_tokens for e in events if e.kind == "llm")

    base = tokens(before)
    assert tokens(early) < 2.2 * base  # no step change at the start
    assert tokens(late) > 1.8 * base
    assert tokens(late) > 1.4 * tokens(early)


def test_unapproved_high_risk_actions_lack_approval(
    full_run: tuple[Simulation, list[ActionEvent], list[Label]],
) -> None:
    _, events, labels = full_run
    lab = _label(labels, "unapproved_high_risk")
    _, during = _before_and_during(events, lab)
    unapproved = [
        e for e in during if e.risk in HIGH and e.approved_by is None and e.status == "ok"
    ]
    assert len(unapproved) >= 2
    assert {e.action for e in unapproved} <= set(lab.params["actions"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exfiltration_and_unapproved_labels_start_at_their_first_offending_event(
    seed: int,
) -> None:
    # A label starts when the misbehaviour does, so time to detect measures the detector,
    # not a quiet lead-in: an exfiltration at its first secret read (then the egress),
    # an unapproved high-risk incident at its first unapproved call.
    sim = Simulation(
        SimConfig(agents=16, minutes=60, seed=seed, incidents_per_kind=2, benign_changes=(),
                  incidents=("exfiltration", "unapproved_high_risk"), error_bursts_per_hour=0)
    )  # fmt: skip
    events = sim.event_list()
    labels = [lab for lab in sim.labels() if not lab.benign]
    assert len(labels) == 4
    for lab in labels:
        start, end = lab.start, lab.end
        mine = [e for e in events if e.agent_id == lab.agent_id]
        if lab.kind == "exfiltration":
            details = lab.params
            offending = [
                e for e in mine if e.target in (*details["secrets"], *details["destinations"])
            ]
            first = offending[0]
            assert first.target == details["secrets"][0]  # the secret read comes first
            assert any(e.target in details["destinations"] for e in offending)
        else:
            offending = [
                e for e in mine if e.risk in HIGH and e.approved_by is None and e.status == "ok"
            ]
        assert offending, lab
        assert all(start <= e.ts < end for e in offending), lab
        assert offending[0].ts - start <= timedelta(seconds=5), lab


def test_explicit_incident_lands_where_asked() -> None:
    start = DEFAULT_START + timedelta(minutes=12)
    spec = IncidentSpec("unapproved_high_risk", "ops-000", start, start + timedelta(minutes=4))
    sim = Simulation(
        SimConfig(agents=8, minutes=20, incidents=(), explicit_incidents=(spec,), seed=4)
    )
    (label,) = [lab for lab in sim.labels() if not lab.benign]
    assert (label.agent_id, label.start, label.end) == (
        "ops-000",
        spec.start,
        spec.end,
    )
    bad = [e for e in sim.events() if e.risk in HIGH and e.approved_by is None and e.status == "ok"]
    assert bad and all(e.agent_id == "ops-000" and spec.start <= e.ts < spec.end for e in bad)


# -- benign fleet-wide changes -----------------------------------------------------------


def test_model_upgrade_moves_the_whole_fleet_to_a_pricier_model(
    full_run: tuple[Simulation, list[ActionEvent], list[Label]],
) -> None:
    sim, events, labels = full_run
    lab = _label(labels, "model_upgrade")
    assert lab.benign is True and lab.agent_id is None
    fleet, new = lab.fleet, lab.params["to_model"]
    start, end = lab.start, lab.end
    members = {a.agent_id for a in sim.agents() if a.fleet == fleet}
    incident_agents = {x.agent_id for x in labels if not x.benign}
    assert lab.params["agents"] == len(members) >= 2
    assert not any(e.model == new and e.ts < start for e in events if e.agent_id in members)
    for agent in members - incident_agents:
        mine = [e for e in events if e.agent_id == agent and e.kind == "llm"]
        before = [e for e in mine if e.ts < start]
        after = [e for e in mine if e.ts >= end]
        assert any(e.model == new for e in after), agent
        assert _mean_llm_cost(after) > 1.5 * _mean_llm_cost(before), agent


def test_tool_rollout_adds_a_tool_to_the_whole_fleet(
    full_run: tuple[Simulation, list[ActionEvent], list[Label]],
) -> None:
    sim, events, labels = full_run
    lab = _label(labels, "tool_rollout")
    assert lab.benign is True and lab.agent_id is None
    tool, fleet = lab.params["tool"], lab.fleet
    users = [e for e in events if e.action == tool]
    assert users and all(e.fleet == fleet and e.ts >= lab.start for e in users)
    members = {a.agent_id for a in sim.agents() if a.fleet == fleet}
    busy = {
        agent
        for agent in members
        if sum(e.agent_id == agent and e.kind != "llm" and e.ts >= lab.end for e in events) >= 40
    }
    assert busy
    assert busy <= {e.agent_id for e in users}


# -- configuration -----------------------------------------------------------------------


def test_fleet_shapes() -> None:
    mixed = collections.Counter(a.fleet for a in Simulation(agents=40).agents())
    large = collections.Counter(
        a.fleet for a in Simulation(agents=40, shape="large-support").agents()
    )
    custom = collections.Counter(
        a.fleet for a in Simulation(agents=10, shape={"coder": 1.0}, incidents=()).agents()
    )
    assert sum(mixed.values()) == sum(large.values()) == 40
    assert set(mixed) == {"support", "coder", "analyst", "ops"}
    assert large["support"] >= 28 > mixed["support"]
    assert custom == {"coder": 10}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"incidents": ("meteor_strike",)}, "unknown incident kind"),
        ({"benign_changes": ("reorg",)}, "unknown benign change"),
        ({"agents": 3}, "incidents need at least as many agents"),
        ({"shape": "tiny"}, "unknown fleet shape"),
        ({"shape": {"marketing": 1.0}}, "bad shape"),
        ({"minutes": 0}, "minutes must be > 0"),
    ],
)
def test_bad_configs_are_rejected(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimConfig(**overrides)


def test_endless_simulation_repeats_incident_rounds() -> None:
    sim = Simulation(
        SimConfig(
            agents=15,
            minutes=None,
            epoch_minutes=6,
            warmup_minutes=1,
            incidents=("runaway_loop", "privilege_probing"),
            seed=2,
        )
    )
    events = list(itertools.islice(sim.events(validate=False), 4000))
    last = events[-1].ts
    assert last - DEFAULT_START > timedelta(minutes=13)  # several epochs generated
    labels = sim.labels(until=last)
    loops = [lab for lab in labels if lab.kind == "runaway_loop"]
    assert len(loops) >= 2
    assert len({lab.agent_id for lab in loops}) >= 2 or len({lab.start for lab in loops}) >= 2
    assert all(lab.start < last for lab in labels)
    with pytest.raises(ValueError, match="until"):
        sim.labels()
    with pytest.raises(ValueError, match="limit"):
        sim.event_list()
    with pytest.raises(ValueError, match="finite"):
        write_jsonl(sim, "/dev/null")


def test_parse_kinds() -> None:
    assert parse_kinds("all", ALL_INCIDENT_KINDS) == ALL_INCIDENT_KINDS
    assert parse_kinds(" none ", ALL_INCIDENT_KINDS) == ()
    assert parse_kinds("cost_drift,mix_shift", ALL_INCIDENT_KINDS) == ("cost_drift", "mix_shift")
    assert parse_kinds("model_upgrade", ALL_BENIGN_CHANGES) == ("model_upgrade",)
    with pytest.raises(ValueError, match=r"unknown kind.*meteor"):
        parse_kinds("runaway_loop,meteor", ALL_INCIDENT_KINDS)


# -- output ------------------------------------------------------------------------------


def test_write_jsonl_round_trips(tmp_path: Path) -> None:
    sim = Simulation(SimConfig(agents=10, minutes=30, seed=21))
    events_path, labels_path = tmp_path / "out" / "events.jsonl", tmp_path / "labels.jsonl"
    n_events, n_labels = write_jsonl(sim, events_path, labels_path)
    lines = events_path.read_bytes().splitlines()
    assert n_events == len(lines) > 1000
    decoded = [decode_event(line) for line in lines]
    assert decoded == list(sim.events())
    labels = load_labels(labels_path)
    assert n_labels == len(labels) >= len(ALL_INCIDENT_KINDS) + 2
    assert labels == sim.labels()
    # A JSON array of labels is accepted too.
    (tmp_path / "labels.json").write_text(json.dumps([lab.to_dict() for lab in labels]))
    assert load_labels(tmp_path / "labels.json") == labels


class _FakeProducer:
    """Records what ``produce`` sends (an ``AIOKafkaProducer.send`` look-alike)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.times: list[float] = []

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Any:
        assert value is not None and key is not None
        self.sent.append((topic, key, value))
        self.times.append(time.monotonic())
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


async def test_produce_as_fast_as_possible_keeps_events() -> None:
    sim = Simulation(SimConfig(agents=6, minutes=5, seed=8, incidents=()))
    fake = _FakeProducer()
    count = await produce(sim, "unused:9092", "t.actions", speed=0, producer=fake)
    expected = list(sim.events())
    assert count == len(fake.sent) == len(expected) > 50
    assert [decode_event(v) for _, _, v in fake.sent] == expected
    assert all(t == "t.actions" and k == decode_event(v).agent_id.encode() for t, k, v in fake.sent)
    assert await produce(sim, "unused:9092", "t", speed=0, producer=fake, max_events=7) == 7


async def test_produce_paced_rewrites_timestamps_onto_the_wall_clock() -> None:
    sim = Simulation(SimConfig(agents=4, minutes=0.5, seed=8, incidents=(), benign_changes=()))
    fake = _FakeProducer()
    started = datetime.now(UTC)
    t0 = time.monotonic()
    count = await produce(sim, "unused:9092", "t", speed=300, producer=fake)  # 30 s -> 0.1 s
    elapsed = time.monotonic() - t0
    sent = [decode_event(v) for _, _, v in fake.sent]
    original = list(sim.events())
    assert count == len(original) > 5
    assert [e.event_id for e in sent] == [e.event_id for e in original]
    assert all(a.ts <= b.ts for a, b in itertools.pairwise(sent))
    last_offset = (original[-1].ts - DEFAULT_START).total_seconds() / 300
    assert elapsed >= last_offset * 0.9
    for new, old in zip(sent, original, strict=True):
        expected = started + (old.ts - DEFAULT_START) / 300
        assert abs((new.ts - expected).total_seconds()) < 0.5
        assert new.model_copy(update={"ts": old.ts}) == old


class _FakeApp:
    def __init__(self) -> None:
        self.settings = Settings(kafka_bootstrap="127.0.0.1:1", topic_prefix="demo")


async def test_demo_task_streams_an_endless_fleet_until_cancelled() -> None:
    fake = _FakeProducer()
    task = demo_task(agents=12, speed=600, producer=fake)  # 10 simulated minutes per second
    started = datetime.now(UTC)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(task(_FakeApp()), timeout=1.0)
    sent = [decode_event(v) for _, _, v in fake.sent]
    assert len(sent) > 200
    assert {topic for topic, _, _ in fake.sent} == {"demo.actions"}
    assert {e.agent_id for e in sent} == {a.agent_id for a in Simulation(demo_config(12)).agents()}
    assert all(started - timedelta(seconds=1) <= e.ts <= datetime.now(UTC) for e in sent)
    # The demo fleet gets its first incidents after a 5-minute warm-up: within the second.
    first = Simulation(demo_config(12)).labels(until=DEFAULT_START + timedelta(minutes=20))
    assert {lab.kind for lab in first if not lab.benign} == set(ALL_INCIDENT_KINDS)


@pytest.mark.integration
async def test_produce_to_kafka_and_consume_back(settings: Settings) -> None:
    topic = settings.topic("actions")
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])
    finally:
        await admin.close()

    sim = Simulation(SimConfig(agents=10, minutes=10, seed=13, incidents=("runaway_loop",)))
    sent = await produce(sim, settings.kafka_bootstrap, topic, speed=0)
    assert sent == sum(1 for _ in sim.events(validate=False)) > 200

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    received: list[tuple[bytes, ActionEvent, int]] = []
    try:
        deadline = time.monotonic() + 60
        while len(received) < sent and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, messages in batches.items():
                received.extend((m.key, decode_event(m.value), tp.partition) for m in messages)
    finally:
        await consumer.stop()

    assert len(received) == sent
    assert all(key == event.agent_id.encode() for key, event, _ in received)
    assert {event.event_id for _, event, _ in received} == {
        e.event_id for e in sim.events(validate=False)
    }
    # Keyed by agent: each agent lives on one partition, in order.
    partitions: dict[str, set[int]] = collections.defaultdict(set)
    for _, event, partition in received:
        partitions[event.agent_id].add(partition)
    assert all(len(p) == 1 for p in partitions.values())
    assert len({p for ps in partitions.values() for p in ps}) >= 2
    per_agent: dict[str, list[int]] = collections.defaultdict(list)
    for _, event, _ in received:
        per_agent[event.agent_id].append(int(event.event_id.rsplit("-", 1)[1]))
    assert all(ids == sorted(ids) for ids in per_agent.values())
