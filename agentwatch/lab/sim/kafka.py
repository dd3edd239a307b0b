"""Streaming a simulation to Kafka: :func:`produce`, and the endless fleet of ``up --demo``."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer

from agentwatch.config import Settings
from agentwatch.lab.sim.config import ALL_INCIDENT_KINDS, IncidentSpec, SimConfig
from agentwatch.lab.sim.simulation import Simulation
from agentwatch.schemas.events import encode_event

__all__ = ["demo_config", "demo_task", "produce"]


def _utc(ts: float) -> datetime:
    """An aware UTC datetime from epoch seconds."""
    return datetime.fromtimestamp(ts, UTC)


async def produce(
    sim: Simulation,
    bootstrap: str,
    topic: str,
    speed: float = 1.0,
    producer: Any = None,
    *,
    retime: bool | None = None,
    max_events: int | None = None,
    kafka_options: Mapping[str, Any] | None = None,
) -> int:
    """Send the simulation's events to Kafka, key = ``agent_id``, value = wire JSON.

    Parameters
    ----------
    sim
        The simulation; an endless one (``minutes=None``) runs until cancelled or
        ``max_events``.
    bootstrap, topic
        Where to send (ignored for ``bootstrap`` when ``producer`` is given).
    speed
        1 = real time, 60 = one simulated minute per second, 0 = as fast as possible.
    producer
        A started ``AIOKafkaProducer`` (or anything with an async ``send``) to reuse; it is
        left running. By default one is created, started and stopped here.
    retime
        Rewrite ``ts`` onto the wall clock so live, event-time windows line up with arrival
        time: ``ts' = now0 + (ts - start) / speed`` (at speed 0, ``now0 + (ts - start)``).
        Default: on when paced (``speed > 0``), off at ``speed == 0``. Order is kept; at speed
        ``s`` event-time rates appear ``s`` times higher.
    max_events
        Stop after this many events.
    kafka_options
        Connection security for the producer made here
        (:func:`agentwatch.kafka_security.client_options`).

    Returns
    -------
    int
        Number of events sent (all delivered when this returns).
    """
    if speed < 0 or math.isnan(speed):
        raise ValueError(f"speed must be >= 0, got {speed}")
    do_retime = speed > 0 if retime is None else retime
    own = producer is None
    if producer is None:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, linger_ms=5, acks=1, **dict(kafka_options or {})
        )
        await producer.start()
    loop = asyncio.get_running_loop()
    sim_t0 = sim.config.start.timestamp()
    scale = speed if speed > 0 else 1.0
    wall0 = time.time()
    mono0 = loop.time()
    count = 0
    pending: list[Any] = []
    try:
        for event in sim.events(validate=False):
            if max_events is not None and count >= max_events:
                break
            offset = (event.ts.timestamp() - sim_t0) / scale
            if speed > 0:
                delay = mono0 + offset - loop.time()
                if delay > 0.001:
                    await asyncio.sleep(delay)
            out = event.model_copy(update={"ts": _utc(wall0 + offset)}) if do_retime else event
            pending.append(
                await producer.send(topic, value=encode_event(out), key=out.agent_id.encode())
            )
            count += 1
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
            elif count % 256 == 0:
                await asyncio.sleep(0)  # let the sender run during long fast bursts
        if pending:
            await asyncio.gather(*pending)
    finally:
        if own:
            await producer.stop()
    return count


#: The demo's first incidents, (kind, fleet, seconds after the start): caught by hard rules
#: that need no baseline, so ``up --demo`` shows an incident within its first minute.
DEMO_OPENERS: tuple[tuple[str, str, float], ...] = (
    ("unapproved_high_risk", "ops", 20.0),
    ("privilege_probing", "support", 30.0),
)


def demo_config(agents: int = 40, seed: int = 0) -> SimConfig:
    """The endless fleet of ``agentwatch up --demo``.

    Two openers (:data:`DEMO_OPENERS`: an unapproved high-risk call and privilege probing,
    20 and 30 s in, in the first agent of their fleet), then a new round of every incident
    kind (as many as there are agents) every 20 simulated minutes after a 5-minute warm-up,
    both benign changes once, error bursts and the diurnal swing as usual.

    Examples
    --------
    >>> [(s.kind, s.agent_id) for s in demo_config(40).explicit_incidents]
    [('unapproved_high_risk', 'ops-000'), ('privilege_probing', 'support-000')]
    """
    config = SimConfig(
        agents=agents,
        minutes=None,
        seed=seed,
        incidents=ALL_INCIDENT_KINDS[: max(agents, 0)],
        epoch_minutes=20.0,
        warmup_minutes=5.0,
    )
    firsts: dict[str, str] = {}
    for agent in Simulation(config).agents():
        firsts.setdefault(agent.fleet, agent.agent_id)
    openers = tuple(
        IncidentSpec(
            kind,
            firsts[fleet],
            config.start + timedelta(seconds=at),
            config.start + timedelta(seconds=at + 240.0),
        )
        for kind, fleet, at in DEMO_OPENERS
        if fleet in firsts
    )
    return replace(config, explicit_incidents=openers)


class _HasSettings(Protocol):
    @property
    def settings(self) -> Settings: ...


def demo_task(
    agents: int = 40,
    speed: float = 1.0,
    seed: int = 0,
    *,
    producer: Any = None,
) -> Callable[[_HasSettings], Awaitable[None]]:
    """A background task for the embedded worker: produce :func:`demo_config` traffic forever.

    The returned coroutine function takes the worker app (anything with ``.settings``) and
    sends to its actions topic at ``speed`` simulated minutes per real minute, timestamps on
    the wall clock (see :func:`produce`), until cancelled.

    Examples
    --------
    >>> task = demo_task(agents=10, speed=60)
    >>> callable(task)
    True
    """
    sim = Simulation(demo_config(agents, seed))

    async def simulated_fleet(worker_app: _HasSettings) -> None:
        from agentwatch.kafka_security import client_options

        settings = worker_app.settings
        await produce(
            sim,
            settings.kafka_bootstrap,
            settings.topic("actions"),
            speed,
            producer=producer,
            kafka_options=client_options(settings),
        )

    return simulated_fleet
