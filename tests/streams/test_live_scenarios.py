"""Live scenarios: SDK agents against a worker running the shipped rules, on the embedded stack.

One fleet: four normal peers, an agent that works normally and then loops (with an LLM call
before each repeat), a brand-new agent whose very first call is a loop (no LLM calls), an
agent whose prompt snowballs call after call on one model, and an agent probing for
privileges. Each agent has two hours of ordinary history, produced straight to the actions
topic with past timestamps (the SDK stamps its events with the wall clock, so history is the
only part of the day that can be compressed), except the brand-new one. Then every agent runs
live, with its own :class:`~agentwatch.sdk.Monitor` verifying the worker's signed control
records, and the loops run at 40 calls a minute on one target.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer

from agentwatch.config import Settings
from agentwatch.sdk import AgentHalted, Monitor, PermissionRevoked
from agentwatch.streams.app import WorkerApp, create_app
from agentwatch.streams.runner import running_app
from tests.streams.test_pipeline import wait_for

pytestmark = pytest.mark.integration

FLEET = "live"
PEERS = ("peer-0", "peer-1", "peer-2", "peer-3")
WITH_HISTORY = (*PEERS, "loop-warm", "snowball", "probe")
HISTORY_S = 7200.0
HISTORY_STEP_S = 30.0  # one event every 30 s: an LLM call, then a tool call, ...
ACTIONS = ("search", "read_doc", "summarize")
MODEL = "gpt-4o-mini"
PROMPT_TOKENS = 3000
USD_PER_TOKEN = 0.15e-6  # gpt-4o-mini input price
LOOP_INTERVAL_S = 1.5  # 40 calls a minute
HALT_WITHIN_S = 60.0


def _doc(agent: str, k: int, ts: float, rng: random.Random) -> dict[str, object]:
    doc: dict[str, object] = {
        "event_id": f"{agent}-h{k}",
        "ts": datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z"),
        "agent_id": agent,
        "fleet": FLEET,
    }
    if k % 2 == 0:
        tokens = PROMPT_TOKENS + rng.randrange(-200, 200)
        doc.update(
            action="chat",
            kind="llm",
            model=MODEL,
            input_tokens=tokens,
            output_tokens=150,
            cost_usd=tokens * USD_PER_TOKEN,
        )
    else:
        doc.update(action=rng.choice(ACTIONS), target=f"doc-{rng.randrange(40)}")
    return doc


def history(now: float) -> list[tuple[bytes, bytes]]:
    out = []
    for seed, agent in enumerate(WITH_HISTORY):
        rng = random.Random(seed)
        steps = int(HISTORY_S / HISTORY_STEP_S)
        for k in range(steps):
            ts = now - HISTORY_S + k * HISTORY_STEP_S + rng.random()
            out.append((agent.encode(), json.dumps(_doc(agent, k, ts, rng)).encode()))
    return out


@dataclass
class Outcome:
    """What happened to one live agent."""

    agent: str
    calls: int = 0
    halted_after_s: float | None = None  # from the start of its scenario
    revoked_after_s: float | None = None
    errors: list[str] = field(default_factory=list)


class Agent:
    """One SDK agent of the fleet with its tools."""

    def __init__(self, settings: Settings, agent: str) -> None:
        self.monitor = Monitor.from_settings(agent, FLEET, settings=settings, require_control=True)
        self.rng = random.Random(agent)
        self.outcome = Outcome(agent)
        self.prompt = PROMPT_TOKENS

        @self.monitor.tool(target_arg="doc")
        async def search(doc: str) -> str:
            return doc

        @self.monitor.tool(target_arg="doc")
        async def read_doc(doc: str) -> str:
            return doc

        @self.monitor.tool(target_arg="doc")
        async def summarize(doc: str) -> str:
            return doc

        @self.monitor.tool(target_arg="path", risk="high")
        async def read_file(path: str) -> str:
            raise PermissionError(f"{path}: denied")

        self.tools = {"search": search, "read_doc": read_doc, "summarize": summarize}
        self.read_file = read_file

    def llm(self) -> None:
        tokens = self.prompt + self.rng.randrange(-200, 200)
        self.monitor.record(
            model=MODEL,
            input_tokens=tokens,
            output_tokens=150,
            cost_usd=tokens * USD_PER_TOKEN,
        )

    async def normal_call(self) -> None:
        action = self.rng.choice(ACTIONS)
        await self.tools[action](f"doc-{self.rng.randrange(40)}")
        self.outcome.calls += 1


async def run_peer(agent: Agent, stop: asyncio.Event) -> None:
    try:
        while not stop.is_set():
            agent.llm()
            await agent.normal_call()
            await asyncio.sleep(1.0 + agent.rng.random())
    except (AgentHalted, PermissionRevoked) as exc:
        agent.outcome.errors.append(repr(exc))


async def run_loop(agent: Agent, *, warm_calls: int, llm_between: bool) -> None:
    """``warm_calls`` normal calls, then ``search("doc-1")`` 40 times a minute until halted."""
    for _ in range(warm_calls):
        agent.llm()
        await agent.normal_call()
        await asyncio.sleep(LOOP_INTERVAL_S)
    started = time.monotonic()
    while time.monotonic() - started < HALT_WITHIN_S + 30:
        try:
            if llm_between:
                agent.llm()
            await agent.tools["search"]("doc-1")
            agent.outcome.calls += 1
        except AgentHalted:
            agent.outcome.halted_after_s = time.monotonic() - started
            return
        await asyncio.sleep(LOOP_INTERVAL_S)


async def run_snowball(agent: Agent, seconds: float) -> None:
    """The prompt grows by ~80 % of the first one every call, on the same model."""
    started = time.monotonic()
    try:
        while time.monotonic() - started < seconds:
            agent.prompt += 2500
            agent.llm()
            await agent.normal_call()
            await asyncio.sleep(1.0)
    except AgentHalted:
        agent.outcome.halted_after_s = time.monotonic() - started


async def run_probe(agent: Agent, seconds: float) -> None:
    """Denied high-risk calls on forbidden targets, one every 2 s, until revoked."""
    targets = ("/etc/shadow", "/root/.ssh/id_rsa", "../../var/run/secrets/token")
    started = time.monotonic()
    k = 0
    while time.monotonic() - started < seconds:
        try:
            await agent.read_file(targets[k % len(targets)])
        except PermissionError:
            pass  # denied by the system it probed
        except PermissionRevoked:
            agent.outcome.revoked_after_s = time.monotonic() - started
            return
        k += 1
        await asyncio.sleep(2.0)


def halting_rule(worker: WorkerApp, agent: str) -> str | None:
    control = worker.response.control(agent)
    return None if control is None or not control.halted else control.updated_by


async def test_loops_halted_within_a_minute_peers_never_stopped(settings: Settings) -> None:
    worker = create_app(settings)
    async with running_app(worker):
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5)
        await producer.start()
        try:
            items = history(time.time() - 5.0)
            for key, value in items:
                await producer.send(settings.topic("actions"), value, key=key)
            await producer.flush()
        finally:
            await producer.stop()
        engine = worker.stage.engine
        per_agent = len(items) // len(WITH_HISTORY)
        await wait_for(
            lambda: all(
                (b := engine.baselines.get(agent)) is not None and b.count >= per_agent
                for agent in WITH_HISTORY
            ),
            timeout=60,
        )
        agents = {name: Agent(settings, name) for name in (*WITH_HISTORY, "loop-new")}
        async with contextlib.AsyncExitStack() as stack:
            for agent in agents.values():
                await stack.enter_async_context(agent.monitor)
            stop = asyncio.Event()
            peers = [asyncio.create_task(run_peer(agents[p], stop)) for p in PEERS]
            await asyncio.gather(
                run_loop(agents["loop-warm"], warm_calls=6, llm_between=True),
                run_loop(agents["loop-new"], warm_calls=0, llm_between=False),
                run_snowball(agents["snowball"], seconds=40.0),
                run_probe(agents["probe"], seconds=40.0),
            )
            await asyncio.sleep(5.0)  # the peers go on a little after the others stopped
            stop.set()
            await asyncio.gather(*peers)
            for agent in agents.values():
                assert await agent.monitor.flush(10.0)
        await asyncio.sleep(1.0)  # the last anomalies through the response stage

        outcomes = {name: agent.outcome for name, agent in agents.items()}
        print(  # the figures for the issue notes (pytest -s)
            "\nlive scenarios: "
            + ", ".join(
                f"{name} {'revoked' if name == 'probe' else 'halted'} after "
                f"{(o.revoked_after_s if name == 'probe' else o.halted_after_s) or 0.0:.1f} s"
                for name, o in outcomes.items()
                if name not in PEERS
            )
        )
        for name in ("loop-warm", "loop-new"):
            outcome = outcomes[name]
            assert outcome.halted_after_s is not None, f"{name} never halted"
            assert outcome.halted_after_s <= HALT_WITHIN_S, outcome
            assert halting_rule(worker, name) == "RunawayLoop"
        # the probe: its high-risk tool is revoked (and the agent keeps running otherwise)
        probe = outcomes["probe"]
        assert probe.revoked_after_s is not None and probe.revoked_after_s <= HALT_WITHIN_S
        control = worker.response.control("probe")
        assert control is not None and "read_file" in control.revoked
        # the snowball: its cost per call on one model leaves its own and its fleet's range
        snowball = outcomes["snowball"]
        assert snowball.halted_after_s is not None and snowball.halted_after_s <= HALT_WITHIN_S
        assert halting_rule(worker, "snowball") == "CostSpike"
        # the peers ran alongside all along and were never stopped
        for peer in PEERS:
            outcome = outcomes[peer]
            assert outcome.errors == [] and outcome.calls >= 12, outcome
            control = worker.response.control(peer)
            assert control is None or (not control.halted and not control.revoked)
