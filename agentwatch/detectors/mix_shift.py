"""``mix_shift``: the agent's recent action mix drifts far from its long-run mix."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar, Final

from agentwatch.detectors.base import JSON, AgentDetector, Finding, register_detector
from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.schemas import ActionEvent

__all__ = ["MixShift"]

_OTHER: Final = ""  # vocabulary slot for actions beyond max_actions
_MIN_FLEET_CALLS: Final = 100.0  # recent fleet calls (weighted) before the fleet's shift counts
_MIN_FLEET_AGENTS: Final = 8  # agents a fleet needs before its shift says anything
_TICK_S: Final = 10.0  # time resolution of the fleet's decayed counts
_MAX_FLEET_ACTIONS: Final = 4096


@register_detector
class MixShift(AgentDetector):
    """Total variation distance between the last ``window`` calls and the usual mix.

    The detector keeps, per agent, its last ``window`` (non-LLM) actions in a small ring and
    its long-run action counts, made of the calls that *left* the ring while the agent was not
    flagged (so the comparison is "recent vs before", and a shifted mix is never learned
    while it is being reported). The long-run counts are halved whenever they reach
    ``memory`` calls, so an old habit fades after a few thousand calls.

    What the agent is *expected* to do now is its long-run mix moved by as much as its whole
    fleet's mix moved: per fleet, the detector keeps the action mix of the last
    ``fleet_recent_s`` seconds and of a longer ``fleet_memory_s`` memory (exponentially
    decayed, event time), and adds each action's difference to the agent's long-run share.
    A tool rolled out to the whole fleet, or any fleet-wide change of habit, thus moves the
    expectation of every agent with it, while one agent changing alone stands out. (The
    adjustment needs 8 contributing agents in the fleet; flagged agents do not contribute.)

    Every ``check_every`` calls the detector computes the total variation distance
    ``TVD = 1/2 * sum_a |recent(a) - expected(a)|`` (0 = same mix, 1 = disjoint) and fires
    when it reaches ``threshold``. Catches an agent whose *kind* of work changed (a support
    agent that mostly refunds, a coder that stops testing) even when its rate, cost and
    failures look normal. Normal session-to-session variation of simulated agents reaches
    0.45 over 30 calls about once per 1,000 agent-hours and 0.5 almost never, hence the
    defaults. A shift is caught once the window holds mostly new calls (a few minutes); a
    true shift much below the threshold is caught only by luck.

    Parameters
    ----------
    threshold
        TVD that fires. Default 0.5.
    window
        Recent calls compared. Default 30.
    min_history
        Long-run calls needed before the first check. Default 150.
    check_every
        Calls between checks (a check costs O(actions)). Default 5.
    memory
        Long-run counts are halved when their total reaches this. Default 4000.
    max_actions
        Distinct actions tracked per agent; further ones share one "other" slot. Default 16.
    fleet_recent_s
        Time constant (seconds of event time) of the fleet's recent mix. Default 300 (about
        half the time a 30-call window spans for a typical agent).
    fleet_memory_s
        Time constant of the fleet's longer memory. Default 14400 (4 h).
    ignore_kinds
        Event kinds left out of both mixes (LLM calls interleave every tool call). Default
        ``["llm"]``.

    Examples
    --------
    >>> import textwrap
    >>> from datetime import UTC, datetime, timedelta
    >>> from agentwatch.detectors.baseline import AgentBaseline
    >>> from agentwatch.schemas import ActionEvent
    >>> detector, baseline, state = MixShift(), AgentBaseline("s1"), {}
    >>> def feed(i, action):
    ...     event = ActionEvent(event_id=f"e{i}", agent_id="s1", action=action,
    ...                         ts=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=10 * i))
    ...     found = detector.update(event, baseline, state, {})
    ...     baseline.update(event)
    ...     return found
    >>> usual = ["read_ticket", "search_kb", "reply_ticket", "read_ticket", "lookup_order"]
    >>> sum(len(feed(i, usual[i % 5])) for i in range(400))
    0
    >>> shifted = [feed(400 + i, "refund" if i % 3 else "reply_ticket") for i in range(30)]
    >>> first = next(found[0] for found in shifted if found)
    >>> print(textwrap.fill(first.summary, 88))
    s1's last 30 calls moved away from its long-run mix (total variation 0.53 >= 0.50):
    refund 43% (expected 0%), read_ticket 13% (expected 40%).
    """

    name: ClassVar[str] = "mix_shift"

    def __init__(
        self,
        *,
        threshold: float = 0.5,
        window: int = 30,
        min_history: int = 150,
        check_every: int = 5,
        memory: int = 4000,
        max_actions: int = 16,
        fleet_recent_s: float = 300.0,
        fleet_memory_s: float = 14400.0,
        ignore_kinds: Sequence[str] = ("llm",),
    ) -> None:
        if window < 2 or check_every < 1 or max_actions < 2:
            raise ValueError("need window >= 2, check_every >= 1 and max_actions >= 2")
        if not 0 < fleet_recent_s < fleet_memory_s:
            raise ValueError("need 0 < fleet_recent_s < fleet_memory_s")
        self.threshold = threshold
        self.window = window
        self.min_history = min_history
        self.check_every = check_every
        self.memory = memory
        self.max_actions = max_actions
        self.fleet_recent_s = fleet_recent_s
        self.fleet_memory_s = fleet_memory_s
        self.ignore_kinds = list(ignore_kinds)

    def update(
        self,
        event: ActionEvent,
        baseline: AgentBaseline,
        state: dict[str, JSON],
        fleet_state: dict[str, JSON],
    ) -> list[Finding]:
        """Queue the event's action; every ``check_every`` calls fold them in and compare."""
        if event.kind in self.ignore_kinds:
            return []
        queue: list[str] | None = state.get("q")
        if queue is None:
            queue = self._start(state, self.window)
        action = event.action
        fleet: _FleetMix | None = fleet_state.get("m")
        if fleet is None:
            fleet = fleet_state["m"] = _FleetMix(
                event.ts_epoch, self.fleet_recent_s, self.fleet_memory_s
            )
        if not state["f"]:  # flagged agents do not move their fleet's mix
            fleet.add(action, event.ts_epoch)
            if len(fleet.agents) < _MIN_FLEET_AGENTS:
                fleet.agents.add(event.agent_id)
        queue.append(action)
        # the ring changes only when it is read: at a check, or call by call until it is full
        if len(queue) < self.check_every and state["x"]:
            return []
        return self._check(event, state, fleet, queue)

    @staticmethod
    def _start(state: dict[str, JSON], window: int) -> list[str]:
        queue: list[str] = []
        state["q"] = queue  # actions not yet in the ring (fewer than check_every)
        if "v" in state:  # a state saved before the queue existed
            state["x"] = len(state["r"]) >= window
            return queue
        state["v"] = []  # vocabulary: the agent's actions, in order of first use
        state["r"] = []  # ring of vocabulary indices
        state["i"] = 0  # next ring slot to overwrite once full
        state["c"] = []  # counts in the ring, per vocabulary index
        state["h"] = []  # long-run counts, per vocabulary index
        state["t"] = 0.0  # their total
        state["n"] = 0  # calls since the last check
        state["f"] = False  # was the last check flagged?
        state["x"] = False  # is the ring full?
        return queue

    def _check(
        self, event: ActionEvent, state: dict[str, JSON], fleet: _FleetMix, queue: list[str]
    ) -> list[Finding]:
        """Fold the queued actions into the ring and the long-run counts; compare if due."""
        vocab: list[str] = state["v"]
        ring: list[int] = state["r"]
        recent: list[int] = state["c"]
        history: list[float] = state["h"]
        flagged: bool = state["f"]
        window = self.window
        pos: int = state["i"]
        total: float = state["t"]
        for action in queue:
            try:
                slot = vocab.index(action)
            except ValueError:
                slot = self._slot(vocab, recent, history, action)
            if len(ring) < window:
                ring.append(slot)
            else:
                old = ring[pos]
                recent[old] -= 1
                if not flagged:
                    history[old] += 1
                    total += 1
                    if total >= self.memory:
                        history[:] = [h / 2 for h in history]
                        total = sum(history)
                ring[pos] = slot
                pos += 1
                if pos == window:
                    pos = 0
            recent[slot] += 1
        state["i"] = pos
        state["t"] = total
        due: int = state["n"] + len(queue)
        queue.clear()
        full = len(ring) >= window
        state["x"] = full
        if due < self.check_every or not full:
            state["n"] = due
            return []
        state["n"] = 0
        ts = event.ts_epoch
        if total < self.min_history or total <= 0.0:  # nothing learned yet to compare with
            return []
        n = len(ring)
        shifts = fleet.shifts(vocab, ts)
        expected = [max(h / total + d, 0.0) for h, d in zip(history, shifts, strict=True)]
        norm = sum(expected) or 1.0
        expected = [e / norm for e in expected]
        tvd = 0.5 * sum([abs(r / n - e) for r, e in zip(recent, expected, strict=True)])
        flagged = tvd >= self.threshold
        state["f"] = flagged
        if not flagged:
            return []
        moved = sorted(
            range(len(vocab)), key=lambda i: (-abs(recent[i] / n - expected[i]), vocab[i])
        )[:2]
        parts = ", ".join(
            f"{vocab[i] or 'other'} {recent[i] / n:.0%} (expected {expected[i]:.0%})" for i in moved
        )
        fleet_note = ""
        if any(abs(d) >= 0.01 for d in shifts):
            fleet_note = ", adjusted for its fleet's own shift"
        return [
            Finding(
                kind="mix_shift",
                score=tvd,
                threshold=self.threshold,
                observed=tvd,
                baseline=0.0,
                summary=(
                    f"{event.agent_id}'s last {n} calls moved away from its long-run mix"
                    f"{fleet_note} (total variation {tvd:.2f} >= {self.threshold:.2f}): "
                    f"{parts}."
                ),
                evidence=(event.event_id,),
                actions=tuple(vocab[i] for i in moved if vocab[i] and recent[i] / n > expected[i]),
            )
        ]

    def _slot(self, vocab: list[str], recent: list[int], history: list[float], action: str) -> int:
        """The slot of an action not in the vocabulary: a new one, or the shared "other"."""
        if len(vocab) >= self.max_actions - 1:
            if _OTHER not in vocab:
                vocab.append(_OTHER)
                recent.append(0)
                history.append(0.0)
            return vocab.index(_OTHER)
        vocab.append(action)
        recent.append(0)
        history.append(0.0)
        return len(vocab) - 1


class _FleetMix:
    """A fleet's action mix over the recent past and over a longer memory (event time).

    Exponentially decayed counts with time constants ``recent_s`` and ``memory_s``, kept as
    sums of ``exp((t - origin) / tau)`` (``t`` rounded down to 10 s) so that shares need no
    ``exp`` (the common factor cancels); the origin moves forward before the weights could
    overflow. Calls of one 10 s tick share their weights, so they are counted in
    ``pending`` and folded in once, when the tick ends or a share is read.
    """

    __slots__ = (
        "agents",
        "last_tick",
        "long",
        "long_total",
        "memory_s",
        "origin",
        "pending",
        "recent",
        "recent_s",
        "recent_total",
        "shift",
    )

    def __init__(self, origin: float, recent_s: float, memory_s: float) -> None:
        self.origin = origin
        self.recent_s = recent_s
        self.memory_s = memory_s
        self.recent: dict[str, float] = {}
        self.long: dict[str, float] = {}
        self.recent_total = 0.0
        self.long_total = 0.0
        self.agents: set[str] = set()  # contributing agents, up to _MIN_FLEET_AGENTS
        self.last_tick = -1
        self.pending: dict[str, int] = {}  # calls of the current tick, not yet folded in
        self.shift: dict[str, float] = {}  # shift per action since the last fold (a cache)

    def add(self, action: str, ts: float) -> None:
        tick = int(ts // _TICK_S)
        if tick != self.last_tick:
            if self.pending:
                self._fold()
            self.last_tick = tick
        pending = self.pending
        pending[action] = pending.get(action, 0) + 1

    def _fold(self) -> None:
        """Add the current tick's calls, with the tick's weights, to the decayed counts."""
        x = self.last_tick * _TICK_S - self.origin
        if x > 30.0 * self.recent_s:
            self._rebase(self.last_tick * _TICK_S)
            x = 0.0
        w_recent = math.exp(x / self.recent_s)
        w_long = math.exp(x / self.memory_s)
        recent, long = self.recent, self.long
        calls = 0
        for action, count in self.pending.items():
            if action not in recent and len(recent) >= _MAX_FLEET_ACTIONS:
                continue
            recent[action] = recent.get(action, 0.0) + count * w_recent
            long[action] = long.get(action, 0.0) + count * w_long
            calls += count
        self.recent_total += calls * w_recent
        self.long_total += calls * w_long
        self.pending = {}
        self.shift = {}

    def shifts(self, actions: list[str], ts: float) -> list[float]:
        """Recent share minus long-memory share of each action (0 while data is thin)."""
        if self.pending:
            self._fold()
        mass = self.recent_total * math.exp(-(ts - self.origin) / self.recent_s)
        if mass < _MIN_FLEET_CALLS or len(self.agents) < _MIN_FLEET_AGENTS:
            return [0.0] * len(actions)
        cache = self.shift
        out = []
        for action in actions:
            shift = cache.get(action)
            if shift is None:
                shift = cache[action] = (
                    self.recent.get(action, 0.0) / self.recent_total
                    - self.long.get(action, 0.0) / self.long_total
                )
            out.append(shift)
        return out

    def _rebase(self, ts: float) -> None:
        f_recent = math.exp(-(ts - self.origin) / self.recent_s)
        f_long = math.exp(-(ts - self.origin) / self.memory_s)
        self.recent = {a: v * f_recent for a, v in self.recent.items()}
        self.long = {a: v * f_long for a, v in self.long.items()}
        self.recent_total *= f_recent
        self.long_total *= f_long
        self.origin = ts
        self.shift = {}
