"""``agentwatch bench --halt-trials N``: how fast a runaway SDK agent is stopped.

Each trial gives a fresh agent 30 minutes of ordinary history (varied actions and targets,
produced straight to the actions topic), waits until the worker holds that baseline, then runs
the agent with the SDK: it calls one ``@monitor.tool`` on one target every ``interval_ms`` —
a runaway loop. The default ``RunawayLoop`` rule halts it. The figure per trial is the time from
the event time of the event that triggered the halting anomaly (stamped by the SDK when that
call returned, so *before* it reached the broker: the figure is an upper bound of "from the
broker") to the moment the agent's next tool call raised ``AgentHalted``.

Each trial also splits that time into the stages a halt goes through, from probes that add no
work to the path: ``detect`` (the trigger's event time to the worker's engine folding it in:
the SDK's send, the broker, the worker's fetch and the detectors), ``respond`` (to the
responder's decision, the control state's ``updated_at``: publishing the anomaly, the
responder's fetch and its incident), ``deliver`` (to the SDK applying the signed control
record: the control topic and the SDK's fetch) and ``act`` (to the next tool call raising).

Broker, worker and agents share one process and one event loop, so the figures are
conservative. The worker signs every control record and the agents verify them (a key pair made
in the bench's temporary directory), as in production.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

import uvloop
from aiokafka import AIOKafkaProducer

from agentwatch.config import Settings
from agentwatch.kafka_security import PLAINTEXT
from agentwatch.lab.evaluation.results import rank_quantile
from agentwatch.schemas.signing import ensure_key_pair
from agentwatch.sdk import AgentHalted, Monitor
from agentwatch.streams.app import create_app
from agentwatch.streams.broker import EmbeddedBroker
from agentwatch.streams.runner import EMBEDDED_OVERRIDES, running_app

__all__ = ["run_halt_bench"]

log = logging.getLogger(__name__)

HISTORY_EVENTS = 200
HISTORY_SPAN_S = 1800.0
_ACTIONS = ("search", "read_file", "chat", "http_get")


def _history(agent: str, now: float, seed: int) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    out = []
    for k in range(HISTORY_EVENTS):
        ts = now - HISTORY_SPAN_S + k * HISTORY_SPAN_S / HISTORY_EVENTS
        doc = {
            "event_id": f"{agent}-h{k}",
            "ts": datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z"),
            "agent_id": agent,
            "fleet": "halt-bench",
            "action": rng.choice(_ACTIONS),
            "target": f"doc-{rng.randrange(60)}",
            "cost_usd": 0.001,
        }
        out.append((agent.encode(), json.dumps(doc).encode()))
    return out


STAGES = ("detect", "respond", "deliver", "act")


async def _trial(
    worker: Any, settings: Settings, producer: Any, i: int, interval_ms: float
) -> dict[str, float]:
    agent = f"runaway-{i:03d}"
    folded: dict[float, float] = {}  # event time -> when the engine folded the event in

    def on_event(event: Any) -> None:
        if event.agent_id == agent:
            folded.setdefault(event.ts_epoch, time.time())

    worker.stage.on_event = on_event
    for key, value in _history(agent, time.time(), i):
        await producer.send(settings.topic("actions"), value=value, key=key)
    await producer.flush()
    deadline = time.monotonic() + 60
    while True:
        baseline = await worker.stage.baseline(agent)  # the engine may run in its own process
        if baseline is not None and baseline.count >= HISTORY_EVENTS:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{agent}: history not processed")
        await asyncio.sleep(0.02)
    monitor = Monitor.from_settings(agent, "halt-bench", settings=settings, require_control=True)
    assert monitor.control_verifier is not None  # the SDK verifies each control record
    book = monitor.control
    applied_at: list[float] = []
    apply = book.apply_record

    def apply_record(topic: str, partition: int, offset: int, key: Any, value: Any) -> None:
        apply(topic, partition, offset, key, value)
        state = book.state
        if state is not None and state.halted and not applied_at:
            applied_at.append(time.time())

    book.apply_record = apply_record  # type: ignore[method-assign]
    async with monitor:

        @monitor.tool(target_arg="doc")
        async def search(doc: str) -> str:
            return doc

        deadline = time.monotonic() + 60
        while True:
            try:
                await search("doc-1")
            except AgentHalted:
                halted_at = time.time()
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{agent}: never halted")
            await asyncio.sleep(interval_ms / 1000.0)
    state = worker.response.incident_state(agent)
    control = worker.response.control(agent)
    if state is None or control is None or not control.halted:
        raise RuntimeError(f"{agent}: halted without a recorded incident")
    trigger = next(
        (a for a in state.top if a.rule == control.updated_by),
        None,
    )
    if trigger is None:
        raise RuntimeError(f"{agent}: no anomaly of rule {control.updated_by}")
    worker.stage.on_event = None
    event_at = trigger.ts.timestamp()
    marks = [
        event_at,
        folded.get(event_at, math.nan),
        control.updated_at.timestamp(),
        applied_at[0] if applied_at else math.nan,
        halted_at,
    ]
    out = {"total": halted_at - event_at}
    out.update({name: marks[k + 1] - marks[k] for k, name in enumerate(STAGES)})
    return out


async def _bench(trials: int, interval_ms: float) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="agentwatch-halt-") as tmp,
        EmbeddedBroker() as broker,
    ):
        private, public, _ = ensure_key_pair(f"{tmp}/keys")
        settings = Settings(
            kafka_bootstrap=broker.bootstrap,
            app_id="agentwatch-halt-bench",
            data_dir=f"{tmp}/state",  # type: ignore[arg-type]
            web_port=0,
            control_signing_key_file=private,
            control_verify_keys=[str(public)],
            **EMBEDDED_OVERRIDES,  # type: ignore[arg-type]
            **PLAINTEXT,  # the embedded broker; not AGENTWATCH_KAFKA_SECURITY_* from the env
        )
        worker = create_app(settings)
        trials_out: list[dict[str, float]] = []
        async with running_app(worker):
            producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=0)
            await producer.start()
            try:
                for i in range(trials):
                    trials_out.append(await _trial(worker, settings, producer, i, interval_ms))
            finally:
                await producer.stop()
    ms = [t["total"] * 1000.0 for t in trials_out]
    result: dict[str, Any] = {
        "halt_trials": len(ms),
        "halt_p50_ms": round(rank_quantile(ms, 0.50), 1),
        "halt_p99_ms": round(rank_quantile(ms, 0.99), 1),
        "halt_max_ms": round(max(ms), 1),
        "halt_min_ms": round(min(ms), 1),
        "call_interval_ms": interval_ms,
    }
    for name in STAGES:  # where the time goes: each stage's median and 99th percentile
        values = [t[name] * 1000.0 for t in trials_out if not math.isnan(t[name])]
        result[f"{name}_p50_ms"] = round(rank_quantile(values, 0.50), 1) if values else None
        result[f"{name}_p99_ms"] = round(rank_quantile(values, 0.99), 1) if values else None
    slowest = max(trials_out, key=lambda t: t["total"])  # what made the slowest halt slow
    result["slowest_ms"] = {name: round(slowest[name] * 1000.0, 1) for name in ("total", *STAGES)}
    return result


def run_halt_bench(trials: int = 50, interval_ms: float = 10.0) -> str:
    """Run the halt-latency benchmark; return one JSON line."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(_bench(trials, interval_ms))
    return json.dumps(result)
