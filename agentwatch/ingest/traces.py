"""Join a span to its agent: the nearest ``invoke_agent`` ancestor in the same trace.

A tool or model span often carries no ``gen_ai.agent.*`` of its own; the agent span above it
does, and it ends (and is exported) after its children. :class:`TraceJoiner` holds such spans
until the chain of parents up to an agent span has arrived, for at most ``hold_s`` seconds and
at most ``max_held`` spans, and remembers only what joining needs: per trace with a waiting
span, the parent of each span that arrives later, and the agents of agent spans.

A span's agent is, in order: its own; its nearest agent ancestor's; its resource's
``gen_ai.agent.id`` / ``.name`` (then it does not wait); else, once the whole parent chain has
arrived without an agent, or ``hold_s`` has passed, none (the span is rejected as
``no_agent_id``).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from agentwatch.ingest.mapping import Mapped, agent_key
from agentwatch.ingest.spans import SpanRecord

__all__ = ["Joined", "TraceJoiner"]

_MAX_DEPTH = 256  # parent chains longer than this (or cyclic) count as complete


@dataclass(slots=True)
class _Waiting:
    span: SpanRecord
    mapped: Mapped
    deadline: float
    done: bool = False


@dataclass(slots=True)
class _Trace:
    links: dict[str, str] = field(default_factory=dict)  # span -> parent, since tracked
    agents: dict[str, str] = field(default_factory=dict)  # agent span -> agent id
    waiting: dict[str, list[_Waiting]] = field(default_factory=dict)  # missing span -> spans
    last: float = 0.0


@dataclass(slots=True)
class Joined:
    """Spans whose agent is now decided: ``(span, mapped, agent_id or None)``."""

    ready: list[tuple[SpanRecord, Mapped, str | None]] = field(default_factory=list)
    expired_early: int = 0


def _resource_agent(span: SpanRecord) -> str | None:
    raw = span.resource.agent_id or span.resource.agent_name
    return agent_key(raw.strip()) if raw and raw.strip() else None


class TraceJoiner:
    """Decides the agent of each mapped span, holding some briefly (see the module docstring).

    Parameters
    ----------
    hold_s
        Longest a span waits for its agent ancestor.
    max_held
        Most spans waiting at once; beyond it the longest-waiting are decided early.
    max_links
        Most parent links remembered; beyond it the least recently active traces are dropped
        (their waiting spans decided early).
    clock
        Monotonic seconds (injected for tests).
    """

    def __init__(
        self,
        hold_s: float = 30.0,
        max_held: int = 20_000,
        max_links: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hold_s = hold_s
        self.max_held = max_held
        self.max_links = max_links
        self.clock = clock
        self._traces: OrderedDict[str, _Trace] = OrderedDict()
        self._agents: dict[str, dict[str, str]] = {}  # trace -> agent spans (all traces)
        self._agent_order: OrderedDict[str, float] = OrderedDict()
        self._queue: deque[_Waiting] = deque()
        self.held = 0
        self.links = 0

    def add(self, span: SpanRecord, mapped: Mapped | None, out: Joined) -> None:
        """Take one span (``mapped=None``: not an action, only a link in the chain)."""
        now = self.clock()
        trace_id = span.trace_id
        if mapped is not None and mapped.anchor and mapped.agent is not None:
            agents = self._agents.get(trace_id)
            if agents is None:
                agents = self._agents[trace_id] = {}
            agents[span.span_id] = mapped.agent
            self._agent_order[trace_id] = now
            self._agent_order.move_to_end(trace_id)
        trace = self._traces.get(trace_id)
        if trace is None and trace_id in self._agents:  # an agent span came first: keep links
            trace = self._traces[trace_id] = _Trace(last=now)
        if trace is not None:
            self._link(trace, span)
            trace.last = now
            self._traces.move_to_end(trace_id)
            woken = trace.waiting.pop(span.span_id, None)
            if woken:
                for waiting in woken:
                    if not waiting.done:
                        self._place(trace_id, trace, waiting, span.span_id, out)
        if mapped is not None:
            if mapped.agent is not None:
                out.ready.append((span, mapped, mapped.agent))
            else:
                self._resolve(span, mapped, now, out)
        self._enforce_bounds(out)

    def _resolve(self, span: SpanRecord, mapped: Mapped, now: float, out: Joined) -> None:
        trace_id = span.trace_id
        walk = self._walk(trace_id, span.parent_id)
        if isinstance(walk, tuple):
            out.ready.append((span, mapped, walk[0]))
            return
        fallback = _resource_agent(span)
        if walk is None or fallback is not None:  # chain complete, or the resource decides
            out.ready.append((span, mapped, fallback))
            return
        trace = self._traces.get(trace_id)
        if trace is None:
            trace = self._traces[trace_id] = _Trace(last=now)
        trace.last = now
        self._traces.move_to_end(trace_id)
        self._link(trace, span)
        waiting = _Waiting(span, mapped, now + self.hold_s)
        trace.waiting.setdefault(walk, []).append(waiting)
        self._queue.append(waiting)
        self.held += 1

    def _link(self, trace: _Trace, span: SpanRecord) -> None:
        if span.span_id not in trace.links:
            trace.links[span.span_id] = span.parent_id
            self.links += 1

    def _walk(self, trace_id: str, parent: str) -> tuple[str] | str | None:
        """From ``parent`` up: ``(agent,)`` found; the first span not yet seen; ``None``: the
        chain is complete and has no agent span."""
        agents = self._agents.get(trace_id, {})
        trace = self._traces.get(trace_id)
        links = trace.links if trace is not None else {}
        for _ in range(_MAX_DEPTH):
            if not parent or parent == "0" * 16:
                return None
            agent = agents.get(parent)
            if agent is not None:
                return (agent,)
            above = links.get(parent)
            if above is None:
                return parent
            parent = above
        return None

    def _place(
        self, trace_id: str, trace: _Trace, waiting: _Waiting, arrived: str, out: Joined
    ) -> None:
        """A span ``waiting`` was waiting for has arrived: decide it or wait further up."""
        walk = self._walk(trace_id, arrived)
        if isinstance(walk, tuple) or walk is None:
            waiting.done = True
            self.held -= 1
            agent = walk[0] if isinstance(walk, tuple) else _resource_agent(waiting.span)
            out.ready.append((waiting.span, waiting.mapped, agent))
        else:
            trace.waiting.setdefault(walk, []).append(waiting)

    def expire(self, out: Joined) -> None:
        """Decide the spans that waited ``hold_s``; forget idle traces."""
        now = self.clock()
        queue = self._queue
        while queue and (queue[0].done or queue[0].deadline <= now):
            waiting = queue.popleft()
            if not waiting.done:
                self._give_up(waiting, out)
        horizon = now - self.hold_s
        while self._traces:
            trace_id, trace = next(iter(self._traces.items()))
            if trace.last > horizon:
                break
            self._drop(trace_id, trace, out)
        while self._agent_order:
            trace_id, seen = next(iter(self._agent_order.items()))
            if seen > horizon:
                break
            del self._agent_order[trace_id]
            self._agents.pop(trace_id, None)

    def _give_up(self, waiting: _Waiting, out: Joined) -> None:
        waiting.done = True
        self.held -= 1
        out.ready.append((waiting.span, waiting.mapped, _resource_agent(waiting.span)))

    def _drop(self, trace_id: str, trace: _Trace, out: Joined, early: bool = False) -> None:
        del self._traces[trace_id]
        self.links -= len(trace.links)
        for spans in trace.waiting.values():
            for waiting in spans:
                if not waiting.done:
                    self._give_up(waiting, out)
                    if early:
                        out.expired_early += 1

    def _enforce_bounds(self, out: Joined) -> None:
        queue = self._queue
        if len(queue) > 2 * self.held + 1024:  # decided spans behind a waiting one: let go
            self._queue = deque(w for w in queue if not w.done)
        while self.held > self.max_held and self._queue:
            waiting = self._queue.popleft()
            if not waiting.done:
                self._give_up(waiting, out)
                out.expired_early += 1
        while self.links > self.max_links and self._traces:
            trace_id, trace = next(iter(self._traces.items()))
            self._drop(trace_id, trace, out, early=True)
        while len(self._agent_order) > self.max_links:
            trace_id, _ = self._agent_order.popitem(last=False)
            self._agents.pop(trace_id, None)
