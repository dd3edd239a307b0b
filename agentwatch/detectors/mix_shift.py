"""``mix_shift``: an agent's calls shifting toward actions it rarely makes, counted in calls."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Final

from agentwatch.detectors.base import JSON, AgentDetector, Finding, register_detector
from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.detectors.calibration import BudgetThreshold, compact_state
from agentwatch.detectors.fleet_tail import FleetTail
from agentwatch.detectors.partials import keep_earliest
from agentwatch.schemas import ActionEvent

if TYPE_CHECKING:
    from agentwatch.detectors import _cython_shim as cython
else:
    try:
        import cython
    except ImportError:  # Cython is a build requirement only; the sources run without it
        from agentwatch.detectors import _cython_shim as cython

__all__ = ["MixShift"]

_OTHER: Final = ""  # vocabulary slot for actions beyond max_actions
_MAX_FLEET_ACTIONS: Final = 4096
_EVIDENCE: Final = 40  # recent calls kept per agent (in memory) to name as evidence
_REBASE: Final = 1e100  # recent-mix weights are rescaled before they could overflow
_MIN_USUAL_CALLS: Final = 10.0  # the other agents' calls their long-run mix needs to count
_TICK_S: Final = 10.0  # calls of one tick of event time share their long-run weight
_STALE_CALLS: Final = 16  # fleet calls after which an action's expectation is worth updating
_SAVE_EVERY: Final = 16  # run peaks below the floor between two saves of the agent's threshold
# per action, the agent's test: [cusum, index settled at, run start, hits in run, run max]
_S, _AT, _START, _HITS, _MAX = 0, 1, 2, 3, 4
_KEEP: Final = 0.5 ** (1.0 / 5_000.0)  # a BudgetThreshold's decay per check (its default)


@register_detector
class MixShift(AgentDetector):
    """An agent calling some action far more often than its own mix and its fleet predict.

    For every action of its vocabulary the agent runs a one-sided Bernoulli CUSUM, counted
    in its (non-LLM) calls: each call of the action adds ``ln(p1 / p0)``, each other call
    ``ln((1 - p1) / (1 - p0))``, floored at 0, where ``p0`` is the action's *expected* share
    and ``p1 = p0 + shift`` the share the test is tuned to detect. The evidence is counted in
    calls, not minutes, so a sparse agent and a busy one are judged on the same number of
    calls; an action the agent almost never makes needs only a few calls in a row to
    stand out, a common one many more.

    The expected share of an action is the agent's long-run share of it (its calls while not
    flagged, halved whenever they reach ``memory``; a young agent's history is padded with
    ``prior_calls`` calls of its fleet's long-run mix, so a new agent is judged against its
    fleet's habits) plus how much the **fleet** is shifting toward it right now: the share
    of the action among the fleet's last ``fleet_recent_calls`` calls *of the other agents*
    minus its share over the fleet's ``fleet_memory_s`` memory (only shifts toward an
    action count). A tool rolled out to a fleet, or any fleet-wide change of habit, moves
    every agent's expectation with it, whatever the fleet's density; one agent changing
    alone does not move its own expectation.

    The threshold comes from a false-alarm budget: each run of a CUSUM above 0 is one
    chance of a false alarm, and a :class:`~agentwatch.detectors.calibration.BudgetThreshold`
    learns the tail of the runs' peaks (of the agent, shrunk to its fleet's while it has few)
    and places the threshold where that tail predicts ``false_alarms_per_agent_day`` at the
    agent's rate of runs. A finding (kind ``mix_shift``) names the action, how many of the
    calls since its run began were that action, and its expected share. While an agent is
    flagged its calls teach neither its mix, its threshold nor its fleet's recent mix.

    Failed calls retried at once are not counted again (an outage of one tool makes its
    calls repeat, not the agent's work change).

    Parameters
    ----------
    false_alarms_per_agent_day
        The budget: expected false alarms per agent-day. Default 0.005.
    shift
        Share increase each action's test is tuned to, in share points (default 0.2: from
        2 % to 22 %, from 30 % to 50 %).
    floor
        CUSUM value below which nothing fires and above which a run's peak is tail
        evidence. Default 8.
    prior_calls
        Calls of the fleet's long-run mix padding the agent's history. Default 20.
    min_share
        Least expected share of any action (default 0.002).
    memory
        Long-run counts are halved when their total reaches this. Default 4000.
    max_actions
        Distinct actions tracked per agent; further ones share one "other" slot. Default 16.
    fleet_recent_calls
        Calls (of the whole fleet) over which its recent mix is taken. Default 200.
    fleet_memory_s
        Time constant of the fleet's long-run mix, seconds of event time. Default 14400.
    min_fleet_calls
        Recent calls of the other agents the fleet's shift needs to count. Default 50.
    refresh_every
        Calls between recomputations of an agent's expected shares. Default 16.
    fleet_weight
        Runs' worth of the fleet's tail of run peaks in an agent's threshold. Default 2000.
    fleet_spread
        How unevenly agents may follow a fleet-wide change: the multiple of the other
        agents' recent rise in an action's share added to its expectation. Default 2.
    establish_s
        Seconds an action must have been in the fleet before its share is judged (a tool
        rolled out is ``novelty``'s until then). Default 3600.
    establish_calls
        An action the fleet already called in its first ``establish_calls`` calls (it was
        there when the monitor started watching the fleet: nothing says it is new) is judged
        once the fleet has made that many calls, even before ``establish_s``. Default 1000.
    ignore_kinds
        Event kinds left out (LLM calls interleave every tool call). Default ``["llm"]``.

    Examples
    --------
    >>> import random, textwrap
    >>> from datetime import UTC, datetime, timedelta
    >>> from agentwatch.detectors.baseline import AgentBaseline
    >>> from agentwatch.schemas import ActionEvent
    >>> detector, baseline, state, fleet = MixShift(), AgentBaseline("s1"), {}, {}
    >>> rng = random.Random(7)
    >>> def feed(i, action):
    ...     event = ActionEvent(event_id=f"e{i}", agent_id="s1", action=action,
    ...                         ts=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=20 * i))
    ...     found = detector.update(event, baseline, state, fleet)
    ...     baseline.update(event)
    ...     return found
    >>> usual = ["read_ticket"] * 8 + ["search_kb"] * 6 + ["reply_ticket"] * 5 + ["refund"]
    >>> sum(len(feed(i, rng.choice(usual))) for i in range(3000))
    0
    >>> shifted = usual + ["refund"] * 8
    >>> found = [f for i in range(3000, 3060) for f in feed(i, rng.choice(shifted))]
    >>> print(textwrap.fill(found[0].summary, 88))
    s1 called refund 10 times in its last 22 calls (45%) vs an expected 4.9% (CUSUM 13.6 >=
    threshold 12.7, from a budget of 0.005 false alarms per agent-day).
    """

    name: ClassVar[str] = "mix_shift"

    def __init__(
        self,
        *,
        false_alarms_per_agent_day: float = 0.005,
        shift: float = 0.2,
        floor: float = 8.0,
        prior_calls: float = 20.0,
        min_share: float = 0.002,
        memory: int = 4000,
        max_actions: int = 16,
        fleet_recent_calls: int = 200,
        fleet_memory_s: float = 14400.0,
        min_fleet_calls: float = 50.0,
        refresh_every: int = 16,
        fleet_weight: float = 2000.0,
        fleet_spread: float = 2.0,
        establish_s: float = 3600.0,
        establish_calls: int = 1000,
        ignore_kinds: Sequence[str] = ("llm",),
    ) -> None:
        if not 0.0 < shift < 1.0 or not 0.0 < min_share < 0.5:
            raise ValueError("need 0 < shift < 1 and 0 < min_share < 0.5")
        if false_alarms_per_agent_day <= 0.0 or floor < 0.0 or prior_calls < 0.0:
            raise ValueError("need false_alarms_per_agent_day > 0, floor >= 0, prior_calls >= 0")
        if max_actions < 2 or refresh_every < 1 or fleet_recent_calls < 2 or memory < 2:
            raise ValueError(
                "need max_actions, fleet_recent_calls and memory >= 2, refresh_every >= 1"
            )
        if fleet_memory_s <= 0.0 or establish_calls < 0:
            raise ValueError("need fleet_memory_s > 0 and establish_calls >= 0")
        self.false_alarms_per_agent_day = false_alarms_per_agent_day
        self.shift = shift
        self.floor = floor
        self.prior_calls = prior_calls
        self.min_share = min_share
        self.memory = memory
        self.max_actions = max_actions
        self.fleet_recent_calls = fleet_recent_calls
        self.fleet_memory_s = fleet_memory_s
        self.min_fleet_calls = min_fleet_calls
        self.refresh_every = refresh_every
        self.fleet_weight = fleet_weight
        self.fleet_spread = fleet_spread
        self.establish_s = establish_s
        self.establish_calls = establish_calls
        self.ignore_kinds = list(ignore_kinds)

    # ------------------------------------------------------------------ per event

    # Annotation-typed methods (and the classes below) give containers of numbers ``Any``
    # items: compiled, ``list[float]`` would make every item read a C double (an int 2 would
    # come back as 2.0 after ``+= 1``).
    @cython.annotation_typing(True)  # typed fleet and memo: C access to their fields
    def update(
        self,
        event: ActionEvent,
        baseline: AgentBaseline,
        state: dict[str, JSON],
        fleet_state: dict[str, JSON],
    ) -> list[Finding]:
        """Run the tests of the agent's calls; see the class doc."""
        if event.kind in self.ignore_kinds:
            return []
        action = event.action
        vocab: list[str] | None = state.get("v")
        if vocab is None:
            vocab = self._start(state)
        try:
            slot = vocab.index(action)
        except ValueError:
            slot = self._slot(state, vocab, action)
        failed = event.status != "ok"
        if state.get("x", -1) == slot:  # the call before failed, and this one retries it
            state["x"] = slot if failed else -1
            return []
        state["x"] = slot if failed else -1
        fleet: _Fleet | None = fleet_state.get("m")
        if fleet is None:
            fleet = self._fleet(fleet_state, event.ts_epoch)
        agent = event.agent_id
        ts = event.ts_epoch
        flagged: int = state["f"]
        if flagged < 0:  # flagged agents do not move their fleet's mix
            fleet.add(agent, action, ts)
        index: int = state["i"] + 1
        state["i"] = index
        memo: _Memo | None = fleet.memo.get(agent)
        if memo is None or index - memo.at >= self.refresh_every or len(memo.hit) != len(vocab):
            memo = self._refresh(
                agent=agent, state=state, vocab=vocab, fleet=fleet, index=index, memo=memo, ts=ts
            )
        memo.recent.append((event.event_id, slot))
        tests: list[list[Any]] = state["c"]
        test = tests[slot]
        value = test[_S] + memo.miss[slot] * (index - 1 - test[_AT])
        if value <= 0.0:  # the previous run of this action is over: its peak is evidence
            if test[_MAX] > 0.0:
                if flagged < 0:
                    self._learn(agent, state, fleet, test[_MAX], ts)
                elif flagged == slot:  # the run after the alarm is over: the shift is too
                    state["f"] = flagged = -1
            value = 0.0
            test[_START] = index
            test[_HITS] = 0
            test[_MAX] = 0.0
        if (
            memo.at != index
            and value + memo.hit[slot] > 1.0
            and fleet.calls - memo.clock[slot] >= _STALE_CALLS
        ):
            # the fleet moved on since: the called action's expectation, up to date
            self._update_one(
                fleet=fleet, agent=agent, state=state, memo=memo, slot=slot, action=action, ts=ts
            )
        if fleet.first.get(action, ts) > ts - self.establish_s and (
            fleet.calls < self.establish_calls or action not in fleet.opening
        ):
            value = 0.0  # new to the fleet: a novelty (or a rollout), not a change of mix
        else:
            value += memo.hit[slot]
        value = round(value, 3)  # a compact state: three decimals are plenty
        test[_S] = value
        test[_AT] = index
        test[_HITS] += 1
        if value > test[_MAX]:  # noqa: PLR1730 - cheaper than max()
            test[_MAX] = value
        if flagged != slot:
            self._learn_call(state, slot)
            if flagged >= 0:
                mark = tests[flagged]
                if mark[_MAX] > 0.0 and mark[_S] + memo.miss[flagged] * (index - mark[_AT]) <= 0:
                    state["f"] = -1  # the flagged action's run after the alarm is over
        if value <= self.floor:
            return []
        threshold = self._threshold(agent, state, fleet)
        if value < threshold:
            return []
        if flagged != slot:  # the call was learned above: take it back
            self._unlearn_call(state, slot)
        state["f"] = slot
        found = self._finding(
            event, vocab=vocab, slot=slot, test=test, memo=memo, value=value, threshold=threshold
        )
        # restart the test: a shift that goes on gathers its evidence again (and fires
        # again), one that is over lets the test settle; the run that fired is never learned
        test[_S] = 0.0
        test[_MAX] = 0.0
        test[_HITS] = 0
        test[_START] = index + 1
        return [found]

    # ------------------------------------------------------------------ state

    @staticmethod
    def _start(state: dict[str, JSON]) -> list[str]:
        vocab: list[str] = []
        state["v"] = vocab  # the agent's actions, in order of first use
        state["h"] = []  # long-run counts, per vocabulary index
        state["t"] = 0.0  # their total
        state["c"] = []  # per action: [cusum, settled at, run start, hits in run, run max]
        state["i"] = 0  # calls counted
        state["f"] = -1  # the flagged action's index, or -1
        state["x"] = -1  # the last call's index if it failed, or -1
        return vocab

    def _slot(self, state: dict[str, JSON], vocab: list[str], action: str) -> int:
        """The slot of an action not in the vocabulary: a new one, or the shared "other"."""
        if len(vocab) >= self.max_actions - 1:
            if _OTHER in vocab:
                return vocab.index(_OTHER)
            action = _OTHER
        vocab.append(action)
        state["h"].append(0.0)
        state["c"].append([0.0, state["i"], 0, 0, 0.0])
        return len(vocab) - 1

    def _learn_call(self, state: dict[str, JSON], slot: int) -> None:
        history: list[float] = state["h"]
        history[slot] += 1.0
        total = state["t"] + 1.0
        if total >= self.memory:
            history[:] = [h * 0.5 for h in history]
            total = sum(history)
        state["t"] = total

    @staticmethod
    def _unlearn_call(state: dict[str, JSON], slot: int) -> None:
        history: list[float] = state["h"]
        if history[slot] >= 1.0:
            history[slot] -= 1.0
            state["t"] -= 1.0

    # ------------------------------------------------------------------ expectation

    @cython.annotation_typing(True)  # typed fleet and memo: C access to their fields
    def _refresh(
        self,
        *,
        agent: str,
        state: dict[str, JSON],
        vocab: list[str],
        fleet: _Fleet,
        index: int,
        memo: _Memo | None,
        ts: float,
    ) -> _Memo:
        """Recompute the expected share and the two increments of every action's test.

        Settles every test to the calls counted so far first (their increments change).
        """
        if memo is not None:
            tests: list[list[Any]] = state["c"]
            for slot, old in enumerate(memo.miss):
                test = tests[slot]
                settled = test[_S] + old * (index - 1 - test[_AT])
                test[_S] = round(settled, 3) if settled > 0.0 else 0.0
                test[_AT] = index - 1
        history: list[Any] = state["h"]
        total = state["t"]
        expected: list[Any] = []
        hit: list[Any] = []
        miss: list[Any] = []
        shifted = False
        for action, h in zip(vocab, history, strict=True):
            p0, moved = self._expect(fleet, agent=agent, action=action, count=h, total=total, ts=ts)
            shifted = shifted or moved
            p1 = p0 + self.shift
            if p1 > 0.99:  # noqa: PLR1730
                p1 = 0.99
            expected.append(p0)
            hit.append(math.log(p1 / p0))
            miss.append(math.log((1.0 - p1) / (1.0 - p0)))
        if memo is None:
            memo = fleet.memo[agent] = _Memo()
        memo.at = index
        memo.clock = [fleet.calls] * len(expected)
        memo.expected = expected
        memo.hit = hit
        memo.miss = miss
        memo.shifted = shifted
        return memo

    @cython.annotation_typing(True)  # typed fleet and memo: C access to their fields
    def _update_one(
        self,
        *,
        fleet: _Fleet,
        agent: str,
        state: dict[str, JSON],
        memo: _Memo,
        slot: int,
        action: str,
        ts: float,
    ) -> None:
        """Bring the called action's expectation up to date (the fleet may be moving); for
        the shared "other" slot, as the fleet sees the action actually called."""
        p0, moved = self._expect(
            fleet, agent=agent, action=action, count=state["h"][slot], total=state["t"], ts=ts
        )
        memo.clock[slot] = fleet.calls
        if p0 == memo.expected[slot]:
            return
        p1 = p0 + self.shift
        if p1 > 0.99:  # noqa: PLR1730
            p1 = 0.99
        memo.expected[slot] = p0
        memo.hit[slot] = math.log(p1 / p0)
        memo.miss[slot] = math.log((1.0 - p1) / (1.0 - p0))
        memo.shifted = memo.shifted or moved

    def _expect(
        self, fleet: _Fleet, *, agent: str, action: str, count: float, total: float, ts: float
    ) -> tuple[float, bool]:
        """The expected share of ``action`` for ``agent``, and whether the fleet moved it.

        The agent's own long-run share (padded with ``prior_calls`` of its fleet's), but at
        least the other agents' long-run share; plus ``fleet_spread`` times how far the
        other agents' recent share is above their long-run one (agents follow a fleet-wide
        change unevenly); when they use the action at least twice as often as they used to
        (a rollout, a new habit), at least ``fleet_spread`` times their recent share. The
        fleet's recent share counts once its other agents made ``min_fleet_calls`` recent
        calls, its long-run share once they made ten in the last ``fleet_memory_s``.
        """
        floor = self.min_fleet_calls
        usual = fleet.usual(agent, action, ts, _MIN_USUAL_CALLS)
        prior = self.prior_calls if usual >= 0.0 else 0.0
        own = (count + prior * usual) / (total + prior) if total + prior > 0.0 else 0.0
        p0 = own if own > usual else usual
        recent = fleet.recent_share(agent, action, floor)
        moved = False
        if usual >= 0.0 and recent > usual:
            spread = self.fleet_spread
            p0 += spread * (recent - usual)
            if recent >= 2.0 * usual:
                p0 = max(p0, spread * recent)
            moved = recent - usual >= 0.01
        if p0 < self.min_share:
            return self.min_share, moved
        return (p0 if p0 < 0.95 else 0.95), moved

    # ------------------------------------------------------------------ calibration

    @cython.annotation_typing(True)  # typed fleet and memo: C access to their fields
    def _guard(self, agent: str, state: dict[str, JSON], fleet: _Fleet) -> BudgetThreshold:
        guard = fleet.guards.get(agent)
        if guard is None:
            guard = BudgetThreshold(self.false_alarms_per_agent_day, self.floor)
            saved = state.get("b")
            if saved is not None:
                guard.load_state(saved)
            fleet.guards[agent] = guard
        return guard

    def _learn(
        self, agent: str, state: dict[str, JSON], fleet: _Fleet, peak: float, ts: float
    ) -> None:
        """A finished run's peak: evidence for the agent's and the fleet's tails, unless it
        reached the threshold (a run that fired teaches nothing)."""
        if peak > self.floor and peak >= self._threshold(agent, state, fleet):
            return
        guard = self._guard(agent, state, fleet)
        guard.learn_one(peak, ts)
        if peak > self.floor or not int(guard.seen) % _SAVE_EVERY:
            state["b"] = compact_state(guard)  # the persisted copy: tail evidence at once
        fleet.learn_peak(peak, ts)

    def _threshold(self, agent: str, state: dict[str, JSON], fleet: _Fleet) -> float:
        guard = self._guard(agent, state, fleet)
        pooled = fleet.pooled_peaks()
        if pooled is not None:
            guard = guard.shrunk(pooled, self.fleet_weight)
        return guard.threshold()

    # ------------------------------------------------------------------ across workers

    def _fleet(self, fleet_state: dict[str, JSON], ts: float) -> _Fleet:
        fleet: _Fleet | None = fleet_state.get("m")
        if fleet is None:
            fleet = fleet_state["m"] = _Fleet(
                self.fleet_recent_calls,
                self.fleet_memory_s,
                ts,
                self.false_alarms_per_agent_day,
                self.floor,
                opening_calls=self.establish_calls,
            )
        return fleet

    def fleet_partial(self, fleet_state: dict[str, JSON]) -> JSON | None:
        """This worker's agents' part of the fleet's mix, its first times and run peaks."""
        fleet: _Fleet | None = fleet_state.get("m")
        return None if fleet is None else fleet.partial()

    def fleet_absorb(self, fleet_state: dict[str, JSON], partials: list[JSON]) -> None:
        """The other workers' parts (see :class:`_Fleet`)."""
        if not partials and "m" not in fleet_state:
            return
        origin = max((float(p["lo"]) for p in partials), default=0.0)
        self._fleet(fleet_state, origin).absorb(partials)

    def fleet_restore(self, fleet_state: dict[str, JSON], partial: JSON) -> None:
        """This worker's own part from before a restart."""
        self._fleet(fleet_state, float(partial["lo"])).restore(partial)

    # ------------------------------------------------------------------ reporting

    @cython.annotation_typing(True)  # typed fleet and memo: C access to their fields
    def _finding(
        self,
        event: ActionEvent,
        *,
        vocab: list[str],
        slot: int,
        test: list[Any],
        memo: _Memo,
        value: float,
        threshold: float,
    ) -> Finding:
        name = vocab[slot] or "other actions"
        hits = int(test[_HITS])
        calls = int(test[_AT] - test[_START]) + 1
        share = hits / calls if calls > 0 else 1.0
        expected = memo.expected[slot]
        fleet_note = " and its fleet's shift" if memo.shifted else ""
        evidence = tuple(eid for eid, s in reversed(memo.recent) if s == slot)[:20]
        return Finding(
            kind="mix_shift",
            score=value,
            threshold=threshold,
            observed=share,
            baseline=expected,
            summary=(
                f"{event.agent_id} called {name} {hits} times in its last {calls} calls "
                f"({share:.0%}) vs an expected {expected:.1%}{fleet_note} (CUSUM {value:.1f} "
                f">= threshold {threshold:.1f}, from a budget of "
                f"{self.false_alarms_per_agent_day:g} false alarms per agent-day)."
            ),
            evidence=evidence or (event.event_id,),
            actions=(vocab[slot],) if vocab[slot] else (),
        )


@cython.cclass
@cython.annotation_typing(True)
class _Memo:
    """An agent's cached expectation (in memory): recomputed every ``refresh_every`` calls."""

    at: int
    clock: list[int]  # the fleet's call count when each expectation was set
    expected: list[Any]
    hit: list[Any]
    miss: list[Any]
    shifted: bool
    recent: deque[tuple[str, int]]

    __slots__ = ("at", "clock", "expected", "hit", "miss", "recent", "shifted")

    def __init__(self) -> None:
        self.at = 0
        self.clock = []
        self.expected = []
        self.hit = []
        self.miss = []
        self.shifted = False
        self.recent = deque(maxlen=_EVIDENCE)


@cython.cclass
@cython.annotation_typing(True)
class _Own:
    """One agent's share of its fleet's recent and long-run counts (to leave it out)."""

    recent: dict[str, Any]
    recent_total: cython.double
    long: dict[str, Any]
    long_total: cython.double

    __slots__ = ("long", "long_total", "recent", "recent_total")

    def __init__(self) -> None:
        self.recent = {}
        self.recent_total = 0.0
        self.long = {}
        self.long_total = 0.0


@cython.cclass
@cython.annotation_typing(True)  # the C types below, and typed locals in the methods
class _Fleet:
    """A fleet's action mix: its recent calls (counted in calls) and its long-run mix
    (event time), each as the *other* agents see it, plus the agents' cached expectations
    and thresholds.

    Recent weights grow by ``1 / (1 - 1 / recent_calls)`` per fleet call (so a call's weight
    relative to the newest decays per call); long-run weights are ``exp((t - origin) /
    memory_s)`` (``t`` rounded down to a 10 s tick); both are rescaled before they could
    overflow. Each agent's own part of
    both is kept alongside, so an agent's view of its fleet leaves itself out.
    """

    __slots__ = (
        "at",
        "budget",
        "calls",
        "first",
        "growth",
        "guards",
        "long",
        "long_total",
        "lw",
        "memo",
        "memory_s",
        "opening",
        "opening_calls",
        "origin",
        "own",
        "own_calls",
        "pooled",
        "recent",
        "recent_total",
        "remote",
        "restored",
        "tick",
        "view",
        "weight",
    )
    # compiled, the weights are C doubles (IEEE arithmetic either way: the same numbers)
    at: int
    budget: Any
    calls: int
    first: dict[str, Any]
    growth: cython.double
    guards: dict[str, BudgetThreshold]
    long: dict[str, Any]
    long_total: cython.double
    lw: cython.double
    memo: dict[str, _Memo]
    memory_s: cython.double
    opening: dict[str, Any]
    opening_calls: int
    origin: cython.double
    own: dict[str, _Own]
    own_calls: int
    pooled: FleetTail
    recent: dict[str, Any]
    recent_total: cython.double
    remote: list[dict[str, Any]]
    restored: dict[str, Any] | None
    tick: int
    view: BudgetThreshold | None
    weight: cython.double

    @cython.annotation_typing(False)
    def __init__(
        self,
        recent_calls: int,
        memory_s: float,
        origin: float,
        budget: float,
        floor: float,
        *,
        opening_calls: int,
    ) -> None:
        self.growth = 1.0 / (1.0 - 1.0 / recent_calls)
        self.weight = 1.0  # weight of the newest call
        self.recent = {}
        self.recent_total = 0.0
        self.own = {}
        self.memory_s = memory_s
        self.origin = origin
        self.long = {}
        self.long_total = 0.0
        self.calls = 0  # calls added, ever
        self.tick = -1  # the current tick of event time (its long-run weight is lw)
        self.lw = 1.0
        self.memo = {}
        self.first = {}  # action -> when the fleet first called it
        self.opening = {}  # the actions of its first opening_calls calls -> first called
        self.opening_calls = opening_calls
        self.guards = {}
        self.pooled = FleetTail(_KEEP, floor)  # every agent's run peaks
        self.view = None  # the pooled peaks as a threshold (a cache)
        self.budget = budget
        # across workers: the fleet's count of calls when the newest weight was given, this
        # worker's calls, the other workers' parts (as absorbed) and this worker's own part
        # from before a restart
        self.at = 0
        self.own_calls = 0
        self.remote = []
        self.restored = None

    def pooled_peaks(self) -> BudgetThreshold | None:
        """The fleet's run peaks as one threshold (None before the first)."""
        view = self.view
        if view is None and self.pooled.seen():
            view = BudgetThreshold(self.budget, self.pooled.floor)
            view = self.view = view.load_state(self.pooled.view())
        return view

    def learn_peak(self, peak: float, ts: float) -> None:
        self.pooled.learn(peak, ts)
        self.view = None

    def add(self, agent: str, action: str, ts: float) -> None:
        recent = self.recent
        if action not in recent:
            if len(recent) >= _MAX_FLEET_ACTIONS:
                return
            self.first[action] = ts
            if self.calls < self.opening_calls:
                self.opening[action] = ts
        own: _Own | None = self.own.get(agent)
        if own is None:
            own = self.own[agent] = _Own()
        calls = self.calls + 1  # this call's number among the fleet's
        gap = calls - self.at
        w = self.weight * (self.growth if gap == 1 else self.growth**gap)
        if w > _REBASE:
            self._rebase_recent(w)
            w = 1.0
        self.weight = w
        self.at = calls
        self.calls = calls
        self.own_calls += 1
        recent[action] = recent.get(action, 0.0) + w
        self.recent_total += w
        mine = own.recent
        mine[action] = mine.get(action, 0.0) + w
        own.recent_total += w
        tick = _tick(ts)  # Python's float floor division (ts is a C double here)
        if tick != self.tick:  # one weight per tick of event time: no exp() per call
            self.tick = tick
            x = (tick * _TICK_S - self.origin) / self.memory_s
            if x > 50.0:
                self._rebase_long(tick * _TICK_S)
                x = 0.0
            self.lw = math.exp(x) if x > -50.0 else 0.0
        lw = self.lw
        self.long[action] = self.long.get(action, 0.0) + lw
        self.long_total += lw
        mine = own.long
        mine[action] = mine.get(action, 0.0) + lw
        own.long_total += lw

    def usual(self, agent: str, action: str, ts: float, min_calls: float) -> float:
        """The other agents' long-run share of ``action`` (-1 while they made fewer than
        ``min_calls`` calls in the last ``memory_s``, give or take)."""
        own: _Own | None = self.own.get(agent)
        mass = self.long_total - (own.long_total if own is not None else 0.0)
        if mass <= 0.0 or mass < min_calls * self.lw:  # lw: the weight of a call now
            return -1.0
        mine = own.long.get(action, 0.0) if own is not None else 0.0
        share: float = (self.long.get(action, 0.0) - mine) / mass
        return share

    def recent_share(self, agent: str, action: str, min_calls: float) -> float:
        """The other agents' share of ``action`` among the fleet's recent calls (-1 when
        they made fewer than ``min_calls`` of them)."""
        own: _Own | None = self.own.get(agent)
        mass = self.recent_total - (own.recent_total if own is not None else 0.0)
        if mass < min_calls * self.weight:  # the newest call weighs self.weight
            return -1.0
        mine = own.recent.get(action, 0.0) if own is not None else 0.0
        share: float = (self.recent.get(action, 0.0) - mine) / mass
        return share

    def _rebase_recent(self, w: float) -> None:
        own: _Own
        scale = 1.0 / w
        self.recent = {a: v * scale for a, v in self.recent.items()}
        self.recent_total *= scale
        for own in self.own.values():
            own.recent = {a: v * scale for a, v in own.recent.items()}
            own.recent_total *= scale

    def _rebase_long(self, ts: float) -> None:
        own: _Own
        factor = math.exp(-(ts - self.origin) / self.memory_s)
        self.long = {a: v * factor for a, v in self.long.items()}
        self.long_total *= factor
        for own in self.own.values():
            own.long = {a: v * factor for a, v in own.long.items()}
            own.long_total *= factor
        self.origin = ts

    # -- across workers ---------------------------------------------------------------------
    # A part of the fleet's mix: its recent counts in units of the weight of the fleet's
    # call number "ra" (that call weighs 1), its long-run counts in units where a call at
    # event time "lo" weighs 1, the calls it counted, its tick and the first times it knows.
    def _mine(self) -> dict[str, Any]:
        own: _Own
        recent: dict[str, Any] = {}
        long: dict[str, Any] = {}
        recent_total = long_total = 0.0
        for own in self.own.values():
            for action, v in own.recent.items():
                recent[action] = recent.get(action, 0.0) + v
            for action, v in own.long.items():
                long[action] = long.get(action, 0.0) + v
            recent_total += own.recent_total
            long_total += own.long_total
        scale = 1.0 / self.weight
        part = {
            "r": {a: v * scale for a, v in recent.items()},
            "rt": recent_total * scale,
            "ra": self.at,
            "l": long,
            "lt": long_total,
            "lo": self.origin,
            "c": self.own_calls,
            "k": self.tick,
        }
        if self.restored is not None:
            _add_part(part, self.restored, self.growth, self.memory_s)
        return part

    def partial(self) -> dict[str, Any]:
        """This worker's agents' part of the mix, the first times and the run peaks."""
        part = self._mine()
        part["f"] = self.first
        part["o"] = self.opening
        part["t"] = self.pooled.partial()
        return part

    def absorb(self, partials: list[dict[str, Any]]) -> None:
        """The whole fleet's mix again: this worker's part plus the other workers'."""
        self.remote = [p for p in partials]
        self.pooled.absorb([p["t"] for p in partials])
        self.view = None
        for p in partials:
            self._first_times(p)
        self._rebuild()

    def restore(self, partial: dict[str, Any]) -> None:
        """This worker's own part from before a restart: kept as a part of its own (the
        agents' shares of it are not known: an agent's own part leaves it out)."""
        self.restored = {k: v for k, v in partial.items() if k not in ("f", "o", "t")}
        self.own_calls = int(partial["c"])
        self.pooled.restore(partial["t"])
        self.view = None
        self._first_times(partial)
        self._rebuild()

    def _first_times(self, partial: dict[str, Any]) -> None:
        """The earliest first times of a part, and its opening actions (parts written
        before opening actions were kept have none)."""
        keep_earliest(self.first, partial["f"])
        keep_earliest(self.opening, partial.get("o", {}))

    def _rebuild(self) -> None:
        own: _Own
        newest = max((float(p["lo"]) for p in self.remote), default=self.origin)
        if newest - self.origin > 50.0 * self.memory_s:  # keep the weights in range
            self._rebase_long(newest)
        mine = self._mine()
        parts = [mine, *self.remote]
        calls = sum(int(p["c"]) for p in parts)
        tick = max(int(p["k"]) for p in parts)
        # the new units of the recent mix: the call numbered mine["ra"] weighs 1; the newest
        # weight is that of the fleet's latest call
        scale = 1.0 / self.weight
        self.weight = self.growth ** (calls - mine["ra"]) if calls > mine["ra"] else 1.0
        self.at = calls
        self.calls = calls
        recent: dict[str, Any] = {}
        long: dict[str, Any] = {}
        recent_total = long_total = 0.0
        growth, memory_s, origin, weight = self.growth, self.memory_s, self.origin, self.weight
        for p in parts:
            rf = weight * growth ** (int(p["ra"]) - calls)
            lf = math.exp((float(p["lo"]) - origin) / memory_s)
            for action, v in p["r"].items():
                recent[action] = recent.get(action, 0.0) + v * rf
            for action, v in p["l"].items():
                long[action] = long.get(action, 0.0) + v * lf
            recent_total += float(p["rt"]) * rf
            long_total += float(p["lt"]) * lf
        # this worker's agents' own parts, in the new units of the recent mix
        if scale != 1.0:
            for own in self.own.values():
                own.recent = {a: v * scale for a, v in own.recent.items()}
                own.recent_total *= scale
        self.recent, self.recent_total = recent, recent_total
        self.long, self.long_total = long, long_total
        if tick != self.tick and tick >= 0:
            self.tick = tick
            x = (tick * _TICK_S - origin) / memory_s
            self.lw = math.exp(x) if x > -50.0 else 0.0


def _tick(ts: float) -> int:
    """The tick of event time ``ts`` (Python's floor division of floats, not C's ``floor``)."""
    return int(ts // _TICK_S)


def _add_part(into: dict[str, Any], part: dict[str, Any], growth: float, memory_s: float) -> None:
    """Add ``part`` to ``into`` (both parts of the mix), in ``into``'s units."""
    rf = growth ** (int(part["ra"]) - int(into["ra"]))
    lf = math.exp((float(part["lo"]) - float(into["lo"])) / memory_s)
    for key, factor, total in (("r", rf, "rt"), ("l", lf, "lt")):
        values = into[key]
        for action, v in part[key].items():
            values[action] = values.get(action, 0.0) + v * factor
        into[total] += float(part[total]) * factor
    into["c"] += int(part["c"])
    into["k"] = max(int(into["k"]), int(part["k"]))
