"""``runaway_loop``: one ``(action, target)`` repeated in a run longer than a false-alarm budget
allows for the agent and its fleet, faster than the agent's pace before the run began."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar, Final
from zlib import crc32

from agentwatch.detectors.base import JSON, AgentDetector, Finding, register_detector
from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.detectors.calibration import BudgetThreshold
from agentwatch.detectors.fleet_agents import FleetAgents
from agentwatch.detectors.fleet_tail import FleetTail
from agentwatch.schemas import ActionEvent

__all__ = ["RunawayLoop"]

_MAX_IDS: Final = 10
_MAX_CACHED: Final = 4096  # (action, target) -> key entries kept at hand
_FLOOR: Final = 1.0  # a run of one call is no repeat: the tail starts above it
_HALF_LIFE: Final = 5_000.0  # runs: BudgetThreshold's default


@register_detector
class RunawayLoop(AgentDetector):
    """An agent stuck calling the same tool on the same target over and over.

    Evidence is counted in calls, not minutes. For each of the agent's calls (LLM calls are
    neither counted nor do they break a run: they sit between the looping tool calls) the
    detector extends the *run* of consecutive calls with the same ``(action, target)``.
    Runs that ended without being flagged are the agent's habits: their lengths feed a
    :class:`~agentwatch.detectors.calibration.BudgetThreshold` (exponential tail of the run
    length above one call, i.e. a geometric law of repeating), one per agent and one per
    fleet. A run is flagged when

    * its length reaches the length that the tail predicts for ``false_alarms_per_agent_day``
      false alarms a day: per run, a probability ``budget / runs_per_day``. An agent's tail
      is shrunk towards its fleet's (``fleet_strength`` runs' worth), so a brand-new agent
      is judged by how often agents of its fleet repeat one call that many times in a row,
      at its fleet's typical number of runs a day;
    * it is at least ``min_run`` calls long (a sanity floor);
    * and, for an agent with a history (``min_history`` events), its calls come at least
      ``min_speedup`` times faster than the agent's own non-LLM call rate *before the run
      began* (snapshot at the run's second call, so the loop does not raise its own bar):
      an agent polling one target at its usual pace is not a runaway.

    A flagged run is never learned, by the agent nor by the fleet: the bar does not rise
    with the loop. A run that passed the bar at the agent's own pace is learned as reaching
    the bar, not beyond it.

    Parameters
    ----------
    false_alarms_per_agent_day
        The false-alarm budget: expected false flags per agent-day. Default 0.01.
    min_run
        Runs shorter than this are never flagged, whatever the budget. Default 5.
    min_speedup
        Minimum ratio of the run's call rate (over its last calls) to the agent's call rate
        before the run. Default 1.5.
    min_history
        Events an agent needs before its own pace is used (younger agents are judged by the
        run length alone, against their fleet). Default 20.
    fleet_strength
        How many runs' worth of the fleet's tail an agent's own tail is shrunk with.
        Default 200.
    ignore_kinds
        Event kinds that are neither counted nor break a run. Default ``["llm"]``.

    Notes
    -----
    Findings have kind ``runaway_loop``, ``observed`` = ``score`` = the run's length in
    calls, ``threshold`` = the length the budget allows, ``baseline`` = the mean length of
    the agent's (and fleet's) runs of repeated calls, ``actions`` = the looping action (a
    ``revoke`` response removes it) and ``evidence`` = the run's latest calls and its first.

    Per-agent state: the current run (key, length, start, pace before it, its last five
    call times, up to ten event ids once it is a candidate) and the agent's six-number tail,
    well under 512 bytes. Per event: a dictionary look-up, a comparison and, when a run
    ends, a few float operations; the threshold is computed once per candidate run.

    Examples
    --------
    >>> import textwrap
    >>> from datetime import UTC, datetime, timedelta
    >>> from agentwatch.detectors.baseline import AgentBaseline
    >>> from agentwatch.schemas import ActionEvent
    >>> detector, baseline, state, fleet = RunawayLoop(), AgentBaseline("a1"), {}, {}
    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> def feed(i, seconds, action, target):
    ...     event = ActionEvent(event_id=f"e{i}", agent_id="a1", action=action, target=target,
    ...                         ts=t0 + timedelta(seconds=seconds))
    ...     found = detector.update(event, baseline, state, fleet)
    ...     baseline.update(event)
    ...     return found
    >>> normal = [feed(i, 20 * i, ("search", "read", "reply")[i % 3], f"t{i % 7}")
    ...           for i in range(600)]
    >>> sum(map(len, normal))
    0
    >>> loop = [feed(600 + i, 12000 + 2 * i, "search", "t1") for i in range(12)]
    >>> [len(found) for found in loop]
    [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    >>> print(textwrap.fill(loop[7][0].summary, 88))
    a1 called search on 't1' 8 times in a row in 14 s (30 a minute, 10x its pace before the
    run); its and its fleet's habits allow a run of 7.3 calls 0.01 times a day.
    """

    name: ClassVar[str] = "runaway_loop"

    def __init__(
        self,
        *,
        false_alarms_per_agent_day: float = 0.01,
        min_run: int = 5,
        min_speedup: float = 1.5,
        min_history: int = 20,
        fleet_strength: float = 200.0,
        ignore_kinds: Sequence[str] = ("llm",),
    ) -> None:
        if not false_alarms_per_agent_day > 0:
            raise ValueError(
                f"false_alarms_per_agent_day must be positive, got {false_alarms_per_agent_day}"
            )
        if min_run < 2:
            raise ValueError(f"min_run must be >= 2, got {min_run}")
        if min_speedup < 0:
            raise ValueError(f"min_speedup must be >= 0, got {min_speedup}")
        self.false_alarms_per_agent_day = false_alarms_per_agent_day
        self.min_run = min_run
        self.min_speedup = min_speedup
        self.min_history = min_history
        self.fleet_strength = fleet_strength
        self.ignore_kinds = list(ignore_kinds)
        self._keys: dict[tuple[str, str], int] = {}  # (action, target) -> run key (a cache)
        self._keep = 0.5 ** (1.0 / _HALF_LIFE)

    def _tail(self, state: list[float | None] | None) -> BudgetThreshold:
        tail = BudgetThreshold(self.false_alarms_per_agent_day, _FLOOR, half_life=_HALF_LIFE)
        return tail if state is None else tail.load_state(state)

    def update(
        self,
        event: ActionEvent,
        baseline: AgentBaseline,
        state: dict[str, JSON],
        fleet_state: dict[str, JSON],
    ) -> list[Finding]:
        """Extend the agent's run of one ``(action, target)``; flag it when it loops."""
        if event.kind in self.ignore_kinds:
            return []
        ts = event.ts_epoch
        target = event.target or ""
        pair = (event.action, target)
        key = self._keys.get(pair)
        if key is None:
            key = crc32(f"{pair[0]}\x00{target}".encode("utf-8", "surrogatepass"))
            if len(self._keys) >= _MAX_CACHED:
                self._keys.clear()
            self._keys[pair] = key
        if state.get("k") != key:
            if "k" in state:
                self._close(state, fleet_state, ts, event.agent_id)
            else:  # a new agent, or state written by an older version of this detector
                state.clear()
            state["k"] = key
            state["n"] = 1
            state["t0"] = ts
            state["i"] = event.event_id
            return []
        n = state["n"] + 1
        state["n"] = n
        times: list[float]
        if n == 2:
            times = state["ts"] = [state["t0"], ts]
            state["r0"] = self._pace(baseline)
        else:
            times = state["ts"]
            times.append(ts)
            if len(times) > 5:
                del times[0]
        if n < self.min_run:
            return []
        ids: list[str] = state.setdefault("e", [])
        ids.append(event.event_id)
        if len(ids) > _MAX_IDS:
            del ids[0]
        threshold = state.get("h")
        if threshold is None:
            threshold = state["h"] = self._threshold(state, fleet_state)
        if n < threshold:
            return []
        span = times[-1] - times[0]
        pace = (len(times) - 1) / span if span > 0 else math.inf
        before = state["r0"]
        if before is not None and pace < self.min_speedup * before:
            return []
        state["f"] = 1
        return [
            self._finding(
                event, state, fleet_state, n=n, threshold=threshold, pace=pace, before=before
            )
        ]

    # -- the run's end: learn it (unless flagged) ---------------------------------------------
    def _close(
        self, state: dict[str, JSON], fleet_state: dict[str, JSON], ts: float, agent: str
    ) -> None:
        n = state["n"]
        if n > 1:
            del state["ts"], state["r0"]
            if n >= self.min_run:
                del state["e"]
                bar = state.pop("h")
                if state.pop("f", 0):
                    return
                # a run past the bar at the agent's own pace is censored at the bar, so that
                # one slow poll does not stretch the tail (and the bar) for fast repeats
                n = min(n, bar)
        own = state.get("t")
        if own is None:
            own = state["t"] = [0.0, 0.0, 0.0, 0.0, ts, ts]
            self._fleet_agents(fleet_state).add(agent)
        _learn(own, n, ts, self._keep)
        self._fleet_tail(fleet_state).learn(n, ts)

    # -- the fleet's tail, shared by the workers ------------------------------------------------
    def _fleet_tail(self, fleet_state: dict[str, JSON]) -> FleetTail:
        tail: FleetTail | None = fleet_state.get("t")
        if tail is None:
            tail = fleet_state["t"] = FleetTail(self._keep, _FLOOR)
        return tail

    @staticmethod
    def _fleet_agents(fleet_state: dict[str, JSON]) -> FleetAgents:
        """Agents of the fleet with a tail of their own, on every worker."""
        agents: FleetAgents | None = fleet_state.get("a")
        if agents is None:
            agents = fleet_state["a"] = FleetAgents()
        return agents

    def fleet_partial(self, fleet_state: dict[str, JSON]) -> JSON | None:
        """This worker's part of the fleet's run-length tail and its agents with a tail."""
        tail: FleetTail | None = fleet_state.get("t")
        if tail is None:
            return None
        return {"t": tail.partial(), "a": self._fleet_agents(fleet_state).partial()}

    def fleet_absorb(self, fleet_state: dict[str, JSON], partials: list[JSON]) -> None:
        """The other workers' parts: their tails (summed, see :class:`FleetTail`), their
        agents (disjoint: added)."""
        self._fleet_tail(fleet_state).absorb([p["t"] for p in partials])
        self._fleet_agents(fleet_state).absorb([p["a"] for p in partials])

    def fleet_restore(self, fleet_state: dict[str, JSON], partial: JSON) -> None:
        """This worker's own part from before a restart."""
        self._fleet_tail(fleet_state).restore(partial["t"])
        self._fleet_agents(fleet_state).restore(partial["a"])

    # -- judging --------------------------------------------------------------------------------
    def _pace(self, baseline: AgentBaseline) -> float | None:
        """The agent's non-LLM call rate (per second) before this run, if it has a history."""
        count = baseline.count
        if count < self.min_history:
            return None
        ignored = sum(baseline.kinds.get(kind, 0) for kind in self.ignore_kinds)
        return baseline.rate * (count - ignored) / count

    def _threshold(self, state: dict[str, JSON], fleet_state: dict[str, JSON]) -> float:
        """The run length the budget allows for this agent, judged with its fleet."""
        own = self._tail(state.get("t"))
        tail: FleetTail | None = fleet_state.get("t")
        fleet = self._tail(None if tail is None else tail.view())
        runs_per_day = own.checks_per_day()
        first, last = own.first_ts, own.last_ts
        if first is None or last is None or last - first < own.min_span_s:
            # young: at least its fleet's typical number of runs a day per agent
            per_agent = fleet.checks_per_day() / max(len(self._fleet_agents(fleet_state)), 1)
            runs_per_day = max(runs_per_day, per_agent)
        judge = own.shrunk(fleet, self.fleet_strength)
        return max(float(self.min_run), judge.threshold(runs_per_day))

    def _finding(
        self,
        event: ActionEvent,
        state: dict[str, JSON],
        fleet_state: dict[str, JSON],
        *,
        n: int,
        threshold: float,
        pace: float,
        before: float | None,
    ) -> Finding:
        target = event.target or ""
        what = f"{event.action} on {target[:120]!r}" if target else event.action
        span = event.ts_epoch - float(state["t0"])
        speed = f"{pace * 60:.0f} a minute" if math.isfinite(pace) else "at once"
        if before:
            speed += f", {pace / before:.0f}x its pace before the run"
        pooled: FleetTail | None = fleet_state.get("t")
        tail = self._tail(state.get("t")).shrunk(
            self._tail(None if pooled is None else pooled.view()), self.fleet_strength
        )
        over = tail.over + tail.prior_checks * tail.prior_share
        usual = (
            _FLOOR + (tail.excess + tail.prior_checks * tail.prior_share * tail.prior_excess) / over
        )
        ids: list[str] = state.get("e", [])
        return Finding(
            kind="runaway_loop",
            score=float(n),
            threshold=threshold,
            observed=float(n),
            baseline=usual,
            summary=(
                f"{event.agent_id} called {what} {n} times in a row in {span:.0f} s ({speed}); "
                f"its and its fleet's habits allow a run of {threshold:.1f} calls "
                f"{self.false_alarms_per_agent_day:g} times a day."
            ),
            evidence=(*reversed(ids), str(state["i"])),
            actions=(event.action,),
        )


def _learn(tail: list[float], score: float, ts: float, keep: float) -> None:
    """:meth:`BudgetThreshold.learn_one` (floor 1) on its ``to_state()`` list, in place.

    Inlined because every run's end feeds two tails (the agent's and the fleet's) on the
    per-event path; ``tests/detectors/test_runaway_loop.py`` checks it against the method.
    """
    tail[0] = tail[0] * keep + 1.0
    tail[1] += 1.0
    if score > _FLOOR:
        tail[2] = tail[2] * keep + 1.0
        tail[3] = tail[3] * keep + (score - _FLOOR)
    else:
        tail[2] *= keep
        tail[3] *= keep
    if ts > tail[5]:  # noqa: PLR1730 (faster than max() on the per-event path)
        tail[5] = ts
