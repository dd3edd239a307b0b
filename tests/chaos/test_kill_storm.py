"""Kill storm: SIGKILL a worker again and again while events stream in and incidents page.

One worker subprocess (RocksDB store) at a time is killed ``SCALE.kills`` times at seeded
random moments: after a random lifetime (often mid-batch or mid-recovery), right after it
answered an on-call halt (a 200 is a promise), or 0.2-1 s after PagerDuty accepted one of its
pages (while the delivery is being recorded and other incidents are in flight; a kill inside
the HTTP round trip itself cannot be told from one just before it, so at-least-once delivery
sends that trigger again and PagerDuty merges it by ``dedup_key``). Events keep
streaming to the broker the whole time. The rules are chosen so that detection is a pure
function of each agent's own event sequence: a policy rule (cooldown 0, action ``halt``, paged)
and a spend budget with an event-time cooldown (anomalies only) whose firing points move if an
event is lost or counted twice. The expected anomalies are those of the same engine run over
the same events without kills. A failure-rate rule (anomalies only, not compared: it also keeps
fleet-wide state, which a restart starts afresh) makes every restarted worker meet error
events of agents it already knows.

After the storm a last worker gets one failed call per agent, then must show: every agent's
baseline counts exactly the events sent to it, the distinct anomaly ids equal the no-kill
run's, PagerDuty got exactly one trigger per paged incident, and every halt (by rule or by a
person) is still in force.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

from agentwatch.config import Settings
from agentwatch.detectors.engine import Engine
from agentwatch.detectors.rules import load_rules
from agentwatch.schemas import decode_event
from agentwatch.streams.topics import ensure_topics
from tests.alerting.fakes import FakePagerDuty
from tests.chaos.helpers import SCALE, TopicReader, WorkerProcess, progress
from tests.conftest import API_TOKEN
from tests.streams.test_pipeline import produce

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

STORM_RULES = """
groups:
  - name: chaos
    rules:
      - alert: ChaosUnapproved
        detector: policy
        params: {deny_targets: []}
        cooldown: 0s
        labels: {severity: critical}
        action: halt
      - alert: ChaosBudget
        detector: budget
        params: {max_cost_usd: 1.0, max_actions: null, window_s: 60}
        cooldown: 2m
        labels: {severity: info}
        action: none
      - alert: ChaosFailures
        detector: failure_rate
        labels: {severity: info}
        action: none
"""
#: The rules whose anomalies depend on each agent's own events only; ChaosFailures also reads
#: fleet-wide state, which a restart rebuilds from scratch, so only its survival is checked.
COMPARED_RULES = frozenset({"ChaosUnapproved", "ChaosBudget"})

T0 = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
COSTS = (0.01, 0.02, 0.05, 0.08)
PAGE_TO_KILL_S = (0.2, 1.0)


@dataclass
class StormInput:
    """The events of a storm, in production order, and what they must lead to."""

    events: list[tuple[bytes, bytes]]
    """Streamed during the storm."""
    tail: list[tuple[bytes, bytes]]
    """One failed call per agent, sent to the last worker: a restarted worker meets error
    events of agents it already knows."""
    per_agent: Counter[str]
    risky_agents: set[str]
    manual_halts: list[str]
    anomaly_ids: set[str] = field(default_factory=set)


def storm_input(seed: int, agents: int, per_agent: int) -> StormInput:
    """Round-robin events of ``agents`` agents; every other agent makes 3 unapproved calls,
    and a third of the others will be halted by a person."""
    rng = random.Random(seed)
    names = [f"storm-{a:03d}" for a in range(agents)]
    risky = {name for a, name in enumerate(names) if a % 2 == 0}
    # each risky agent's incident opens at its own random moment of the storm
    risky_at = {}
    for name in risky:
        first = rng.randrange(per_agent - 2)
        risky_at[name] = {first, *rng.sample(range(first + 1, per_agent), 2)}
    calm = [n for n in names if n not in risky]
    manual = rng.sample(calm, max(1, len(calm) // 3))
    events: list[tuple[bytes, bytes]] = []
    for i in range(per_agent + 1):
        for name in names:
            doc: dict[str, object] = {
                "event_id": f"{name}-{i}",
                "ts": (T0 + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
                "agent_id": name,
                "fleet": "storm",
                "action": ("search", "read_file", "chat")[i % 3],
                "kind": "llm" if i % 3 == 2 else "tool",
                "status": "error" if i == per_agent or rng.random() < 0.1 else "ok",
                "cost_usd": rng.choice(COSTS),
                "latency_ms": 12.5,
            }
            if i in risky_at.get(name, ()):
                doc.update(action="drop_table", risk="critical", target="db:users")
            events.append((name.encode(), json.dumps(doc).encode()))
    tail = events[-agents:]
    counts = Counter(dict.fromkeys(names, per_agent + 1))
    return StormInput(events[:-agents], tail, counts, risky, manual)


def no_kill_anomalies(rules_path: Path, events: list[tuple[bytes, bytes]]) -> set[str]:
    """The anomaly ids of the same engine over the same events, with nothing killed."""
    engine = Engine(load_rules(rules_path))
    found: set[str] = set()
    for _key, value in events:
        for anomaly in engine.process(decode_event(value)) or ():
            if anomaly.rule in COMPARED_RULES:
                found.add(anomaly.anomaly_id)
    return found


def lifetimes(rng: random.Random, kills: int) -> Iterator[tuple[str, float]]:
    """How each worker dies: (mode, seconds); mode ``random``, ``after_halt`` or ``after_page``."""
    lo, hi = SCALE.lifetime_s
    modes = ["random", "after_halt", "after_page"]
    for k in range(kills):
        yield (modes[k % 3] if k < 3 else rng.choice(modes)), rng.uniform(lo, hi)


async def test_kill_storm_loses_nothing_and_pages_once(
    settings: Settings, tmp_path: Path, auth: dict[str, str]
) -> None:
    rng = random.Random(SCALE.seed)
    rules_path = tmp_path / "storm-rules.yml"
    rules_path.write_text(STORM_RULES)
    storm = storm_input(SCALE.seed, SCALE.storm_agents, SCALE.storm_events)
    storm.anomaly_ids = no_kill_anomalies(rules_path, storm.events + storm.tail)
    assert storm.anomaly_ids, "the input must produce anomalies"
    total = len(storm.events)
    cycle_s = sum(SCALE.lifetime_s) / 2 + 1.5  # a worker's life, and waiting for its start
    rate = total / max(1.0, SCALE.kills * cycle_s * 0.8)  # all sent before the last kill
    progress(
        f"kill storm: {SCALE.kills} kills, {len(storm.per_agent)} agents, {total} events "
        f"at {rate:.0f}/s, {len(storm.anomaly_ids)} expected anomalies"
    )
    await ensure_topics(settings)
    sent = 0
    halts_answered: dict[str, int] = {}  # agent -> version the API answered

    async def stream_events() -> None:
        nonlocal sent
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5)
        await producer.start()
        try:
            started = time.monotonic()
            while sent < total:
                due = min(total, int((time.monotonic() - started) * rate) + 1)
                futures = [
                    await producer.send(settings.topic("actions"), value, key=key)
                    for key, value in storm.events[sent:due]
                ]
                await asyncio.gather(*futures)  # every event acknowledged by the broker
                sent = max(sent, due)
                await asyncio.sleep(0.05)
        finally:
            await producer.stop()

    async with (
        FakePagerDuty() as pd,
        aiohttp.ClientSession(headers=auth) as http,
        TopicReader(settings, "anomalies") as anomalies,
    ):
        worker = WorkerProcess(
            settings,
            tmp_path,
            pd,
            rules_file=rules_path,
            incident_group_wait_s=1.0,
            incident_group_interval_s=3600,
            incident_resolve_after_s=3600,
            # a killed member leaves the group after the session timeout: keep it short
            session_timeout_s=2.0,
            heartbeat_interval_s=0.5,
            rebalance_timeout_s=2.0,
        )

        def paged_agents() -> set[str]:
            return {t["payload"]["source"] for t in pd.accepted("trigger")}

        async def halt(agent: str) -> bool:
            # force: a halt may come before the worker folded the agent's first event in
            body = {"actor": "oncall", "reason": f"chaos halt of {agent}", "force": True}
            try:
                async with http.post(f"{worker.url}/agents/{agent}/halt", json=body) as resp:
                    if resp.status == 200:
                        halts_answered[agent] = (await resp.json())["version"]
                        return True
            except (TimeoutError, aiohttp.ClientError):
                pass
            return False

        producer_task = asyncio.create_task(stream_events())
        pending_halts = list(storm.manual_halts)
        deaths: Counter[str] = Counter()
        storm_started = time.monotonic()
        try:
            for k, (planned, life) in enumerate(lifetimes(rng, SCALE.kills)):
                mode = planned
                worker.start()
                born = time.monotonic()
                if mode == "after_halt" and pending_halts:
                    await worker.wait_healthy(http)
                    deadline = born + life + 10
                    while not await halt(pending_halts[0]) and time.monotonic() < deadline:
                        await asyncio.sleep(0.2)
                    if pending_halts[0] in halts_answered:
                        pending_halts.pop(0)
                    else:
                        mode = "random"  # no answer in time: killed at a random point
                elif mode == "after_page" and not paged_agents() >= storm.risky_agents:
                    paged = len(pd.accepted("trigger"))
                    deadline = born + life + 10
                    while len(pd.accepted("trigger")) == paged and time.monotonic() < deadline:
                        await asyncio.sleep(0.02)
                    await asyncio.sleep(rng.uniform(*PAGE_TO_KILL_S))
                else:
                    mode = "random"
                    await asyncio.sleep(max(0.0, born + life - time.monotonic()))
                worker.kill()
                deaths[mode] += 1
                progress(
                    f"kill {k + 1}/{SCALE.kills} ({mode}) after {time.monotonic() - born:.1f}s; "
                    f"{sent}/{total} events sent, {len(pd.accepted('trigger'))} pages"
                )
            await producer_task
            storm_s = time.monotonic() - storm_started
            # the last worker: everything must come out right
            worker.start()
            await worker.wait_healthy(http)
            for agent in pending_halts:
                deadline = time.monotonic() + 60
                while not await halt(agent):
                    assert time.monotonic() < deadline, f"halt of {agent} never answered"
                    await asyncio.sleep(0.5)
            await produce(settings, storm.tail)

            views: dict[str, dict[str, object]] = {}

            async def counts() -> dict[str, int | None]:
                out: dict[str, int | None] = {}
                for agent in storm.per_agent:
                    status, view = await worker.get(http, f"/agents/{agent}")
                    out[agent] = view.get("events") if status == 200 else None
                    if status == 200:
                        views[agent] = view
                return out

            def distinct_anomalies() -> set[str]:
                docs = (json.loads(r.value) for r in anomalies.records)
                return {d["anomaly_id"] for d in docs if d.get("rule") in COMPARED_RULES}

            seen: dict[str, int | None] = {}
            deadline = time.monotonic() + (240 if SCALE.full else 120)
            progress_at, last = time.monotonic(), None
            stall_s = 60.0 if SCALE.full else 20.0
            while time.monotonic() < deadline:
                await anomalies.poll()
                seen = await counts()
                if (
                    seen == dict(storm.per_agent)
                    and distinct_anomalies() >= storm.anomaly_ids
                    and paged_agents() >= storm.risky_agents
                ):
                    break
                now_state = (seen, len(distinct_anomalies()), len(pd.accepted("trigger")))
                if now_state != last:
                    progress_at, last = time.monotonic(), now_state
                elif time.monotonic() - progress_at > stall_s and None not in seen.values():
                    break  # no progress: the assertions below say what is missing
                await asyncio.sleep(0.5)
            await asyncio.sleep(8.0 if SCALE.full else 2.0)  # time for a duplicate page
            await anomalies.drain(idle_s=1.0)
            seen = await counts()
            controls = {}
            for agent in sorted(storm.risky_agents | set(halts_answered)):
                status, view = await worker.get(http, f"/agents/{agent}")
                controls[agent] = view.get("control") if status == 200 else None
            log = worker.log_text()
            crashes = list(
                dict.fromkeys(
                    line.split("] ", 3)[-1]
                    for line in log.splitlines()
                    if "Crashed reason=" in line or "[ERROR]" in line
                )
            )
            log_tail = "\n".join(crashes[:5]) or log[-3000:]
        finally:
            producer_task.cancel()
            worker.kill()

    triggers = Counter(t["dedup_key"] for t in pd.accepted("trigger"))
    found = distinct_anomalies()
    progress(
        f"kill storm done: {SCALE.kills} kills {dict(deaths)} over {storm_s:.0f}s, "
        f"{worker.starts} starts, {total} events, {len(found)} distinct anomalies "
        f"({len(anomalies.records)} records), {sum(triggers.values())} triggers for "
        f"{len(triggers)} incidents, {len(halts_answered)} on-call halts"
    )
    problems: list[str] = []
    wrong = {a: (seen.get(a), n) for a, n in storm.per_agent.items() if seen.get(a) != n}
    if wrong:
        seen_at = {
            a: (views.get(a, {}).get("first_seen"), views.get(a, {}).get("last_seen"))
            for a in wrong
        }
        problems.append(
            f"baseline counts (got, sent) differ for {len(wrong)} agents: {wrong}; "
            f"their first and last event times: {seen_at}"
        )
    if found - storm.anomaly_ids:
        problems.append(
            f"anomalies a no-kill run does not have: {sorted(found - storm.anomaly_ids)}"
        )
    if storm.anomaly_ids - found:
        problems.append(f"lost anomalies: {sorted(storm.anomaly_ids - found)}")
    duplicates = {k: n for k, n in triggers.items() if n > 1}
    if duplicates:
        problems.append(f"duplicate PagerDuty triggers: {duplicates}")
    if paged_agents() != storm.risky_agents:
        problems.append(
            f"paged {sorted(paged_agents())}, expected exactly {sorted(storm.risky_agents)}"
        )
    for agent, control in controls.items():
        if not control or not control.get("halted"):
            problems.append(f"halt of {agent} did not survive: control={control}")
        elif agent in halts_answered and control["version"] < halts_answered[agent]:
            problems.append(f"{agent}: control version went back to {control['version']}")
    assert not problems, (
        f"seed {SCALE.seed}:\n  "
        + "\n  ".join(problems)
        + f"\nworker log (crashes, else its end):\n{log_tail}"
    )
    assert API_TOKEN not in worker.log_text()
