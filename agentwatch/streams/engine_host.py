"""Where the ingest stage's detection engine runs: what the stage and the views ask of it.

The stage (:mod:`agentwatch.streams.stage`) validates records and keeps offsets; the
:class:`~agentwatch.detectors.engine.Engine` holds the baselines and detector state and runs
the rules. An :class:`EngineHost` is the boundary between the two, so the engine can run in
the worker's own process (:class:`LocalEngine`) or in a process of its own on another core
(:class:`~agentwatch.streams.engine_process.EngineProcess`) with the same results: the stage
hands over whole batches in order, and no commit counts a batch before its findings are in
and published.

Examples
--------
>>> import asyncio
>>> from agentwatch.detectors.engine import Engine
>>> from agentwatch.schemas import decode_event
>>> raw = b'{"event_id":"e1","ts":"2026-01-01T00:00:00Z","agent_id":"a1","action":"search"}'
>>> host = LocalEngine(Engine())
>>> asyncio.run(host.fold([decode_event(raw)], [raw]))
{}
>>> host.holds("a1"), host.agents
(True, 1)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any, Protocol

from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.detectors.engine import Engine
from agentwatch.detectors.fleet_sync import FleetSync
from agentwatch.detectors.rules import RuleSet
from agentwatch.schemas import ActionEvent, Anomaly
from agentwatch.streams.state_codec import Origins, decode_full_state, encode_state

__all__ = ["EngineHost", "Fold", "LocalEngine", "fold_events", "load_state"]

log = logging.getLogger(__name__)

#: What folding one event gave, for the events that gave more than nothing: its index in the
#: batch -> its anomalies, ``None`` (a duplicate ``event_id``) or an error text (the engine
#: raised: the record is dead-lettered as ``processing_error``).
Fold = dict[int, list[Anomaly] | str | None]


class EngineHost(Protocol):
    """What the ingest stage, the fleet exchange and the views ask of the engine."""

    rules: RuleSet | None
    #: the other workers' fleet summaries held (who published which fleet, and when)
    sync: FleetSync
    #: whether the engine works beside the stage (its own process): the stage then checks
    #: the next batch while the engine folds this one
    apart: bool

    def holds(self, agent_id: str) -> bool:
        """Whether the agent's state is in the engine."""

    @property
    def agents(self) -> int:
        """How many agents' state the engine holds."""

    def load(self, agent_id: str, value: bytes | None) -> tuple[int, Origins]:
        """Put an agent's stored state (a table value) into the engine; its offset and
        origins. ``None``: nothing is stored (a new agent). Either way the agent is held
        from now on, so its other events in the batch do not read the table again."""

    def fold(self, events: Sequence[ActionEvent], raws: list[bytes]) -> Awaitable[Fold]:
        """Fold one batch's events in, in order (``raws``: their records), after the states
        loaded since the batch before; an engine apart has the batch when this returns, in
        order with every load, fold and encode asked for before and after."""

    def encode(
        self, items: Sequence[tuple[str, int, Origins | None]]
    ) -> Awaitable[dict[str, bytes]]:
        """The table values of ``(agent, offset, origins)``, for the agents held, as they
        stand when this is called (after every batch handed over before it)."""

    def evict(self, agent_ids: set[str]) -> None:
        """Forget the agents' state (their partitions moved away)."""

    async def baseline(self, agent_id: str) -> AgentBaseline | None:
        """The agent's baseline, if held."""

    async def roster(self) -> dict[str, tuple[str, int]]:
        """Every agent held: its fleet and how many events it folded."""

    async def fleet_partials(self) -> dict[str, dict[str, Any]]:
        """This worker's part of every fleet's state
        (:meth:`~agentwatch.detectors.engine.Engine.fleet_partials`)."""

    async def restore(self, fleet: str, partials: dict[str, Any]) -> bool:
        """:meth:`~agentwatch.detectors.engine.Engine.restore`."""

    def absorb_many(self, items: Iterable[tuple[str, str, dict[str, Any], float]]) -> None:
        """:meth:`~agentwatch.detectors.engine.Engine.absorb_many` (applied in order with the
        batches)."""

    def forget(self, worker_id: str, fleet: str) -> None:
        """:meth:`~agentwatch.detectors.engine.Engine.forget`."""

    def expire(self, now: float) -> None:
        """:meth:`~agentwatch.detectors.engine.Engine.expire`."""

    async def start(self) -> None:
        """Be ready to fold (a process: started)."""

    async def stop(self) -> None:
        """Release what :meth:`start` took."""


def load_state(engine: Engine, agent_id: str, value: bytes) -> tuple[int, Origins]:
    """Put a table value into ``engine``; the value's offset and origins."""
    offset, baseline, detectors, origins = decode_full_state(value)
    engine.baselines[agent_id] = baseline
    engine.states[agent_id] = detectors
    return offset, origins


def fold_events(engine: Engine, events: Iterable[ActionEvent], errors: set[str]) -> Fold:
    """Fold ``events`` in order; what each gave, where it gave more than nothing. An error
    is logged with its traceback once per kind (``errors``: the kinds logged)."""
    out: Fold = {}
    process = engine.process
    for index, event in enumerate(events):
        try:
            found = process(event)
        except Exception as exc:  # a bug must not stop ingestion: the record is set aside
            name = type(exc).__name__
            if name not in errors and len(errors) < 100:
                errors.add(name)  # one traceback per kind of error
                log.exception("processing an event raised %s (dead-lettered)", name)
            out[index] = f"{name}: {exc}"
            continue
        if found is None or found:
            out[index] = found
    return out


def encode_held(
    engine: Engine, items: Iterable[tuple[str, int, Origins | None]]
) -> dict[str, bytes]:
    """The table values of the agents of ``items`` that ``engine`` holds."""
    out = {}
    for agent_id, offset, origins in items:
        baseline = engine.baselines.get(agent_id)
        if baseline is not None:
            out[agent_id] = encode_state(offset, baseline, engine.states[agent_id], origins)
    return out


def roster_of(engine: Engine) -> dict[str, tuple[str, int]]:
    """Every agent ``engine`` holds: its fleet and event count."""
    return {a: (b.fleet, b.count) for a, b in engine.baselines.items()}


class LocalEngine:
    """The engine in the worker's own process: every call is done when it returns.

    Parameters
    ----------
    engine
        The engine (its baselines, detector state and rules).
    """

    #: every call is done when it returns: nothing to overlap
    apart = False

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.rules = engine.rules
        self.sync = engine.sync
        #: the engine's own (in-process readers: the backtest, tests)
        self.baselines = engine.baselines
        self.states = engine.states
        self._errors: set[str] = set()
        #: new agents loaded (nothing stored) whose first events are not folded yet
        self._new: set[str] = set()

    def holds(self, agent_id: str) -> bool:
        return agent_id in self.engine.baselines or agent_id in self._new

    @property
    def agents(self) -> int:
        return len(self.engine.baselines)

    def load(self, agent_id: str, value: bytes | None) -> tuple[int, Origins]:
        if value is None:
            self._new.add(agent_id)
            return -1, {}
        return load_state(self.engine, agent_id, value)

    async def fold(self, events: Sequence[ActionEvent], raws: list[bytes]) -> Fold:
        self._new.clear()  # folded now: held by the engine (or read again, had all failed)
        return fold_events(self.engine, events, self._errors)

    def encode(
        self, items: Sequence[tuple[str, int, Origins | None]]
    ) -> Awaitable[dict[str, bytes]]:
        done: asyncio.Future[dict[str, bytes]] = asyncio.get_running_loop().create_future()
        done.set_result(encode_held(self.engine, items))  # now, before the next batch folds
        return done

    def evict(self, agent_ids: set[str]) -> None:
        self._new -= agent_ids
        self.engine.evict(agent_ids)

    async def baseline(self, agent_id: str) -> AgentBaseline | None:
        return self.engine.baselines.get(agent_id)

    async def roster(self) -> dict[str, tuple[str, int]]:
        return roster_of(self.engine)

    async def fleet_partials(self) -> dict[str, dict[str, Any]]:
        return self.engine.fleet_partials()

    async def restore(self, fleet: str, partials: dict[str, Any]) -> bool:
        return self.engine.restore(fleet, partials)

    def absorb_many(self, items: Iterable[tuple[str, str, dict[str, Any], float]]) -> None:
        self.engine.absorb_many(items)

    def forget(self, worker_id: str, fleet: str) -> None:
        self.engine.forget(worker_id, fleet)

    def expire(self, now: float) -> None:
        self.engine.expire(now)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
