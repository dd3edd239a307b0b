"""``runaway_loop``: one ``(action, target)`` repeated far above the agent's normal rate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Final
from zlib import crc32

from agentwatch.detectors.base import JSON, AgentDetector, Finding, register_detector
from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.schemas import ActionEvent

__all__ = ["RunawayLoop"]

_TOTAL: Final = "*"  # the state key of the all-calls counter
_MAX_IDS: Final = 10
_MAX_CACHED: Final = 4096  # state keys of recent (action, target) pairs kept at hand


@register_detector
class RunawayLoop(AgentDetector):
    """An agent stuck calling the same tool on the same target over and over.

    For every call (LLM calls excluded by default: they sit between the looping tool calls
    and have no target) the detector counts the calls with the same ``(action, target)`` in
    the last ``window_s`` seconds of event time and fires when all of these hold:

    * the count is at least ``min_repeats``;
    * it is at least ``ratio`` times what the agent's baseline predicts for the action
      (its event rate times the action's share of its events, times ``window_s``; the
      prediction for one target can only be lower, so this is conservative);
    * the pair makes up at least ``min_share`` of the agent's (non-LLM) calls in the window,
      which separates a loop from a busy agent that merely revisits one ticket or file
      while doing other work.

    Counts are sliding-window estimates from two aligned tumbling windows per pair (the
    current window's count plus the previous one's, weighted by how much of it still
    overlaps), kept for at most ``max_keys`` pairs per agent (the oldest goes first; a pair
    at half the threshold is made young again), keyed by a CRC-32 of the pair. State stays
    a few hundred bytes.

    Parameters
    ----------
    min_repeats
        Minimum calls of one pair in the window. Default 8 (normal simulated agents peak
        near 9 only in pairs that are a small share of their calls; the slowest simulated
        loop, 12 calls a minute, gets there in about 40 s).
    ratio
        Minimum count relative to the baseline prediction. Default 3.
    min_share
        Minimum share of the agent's windowed calls. Default 0.7.
    window_s
        Window length in seconds of event time. Default 60.
    ignore_kinds
        Event kinds that are neither counted nor flagged. Default ``["llm"]``.
    max_keys
        Pairs tracked per agent. Default 8.

    Notes
    -----
    Findings have kind ``runaway_loop``, ``observed`` = the windowed count, ``baseline`` =
    the prediction, ``score`` = their ratio (threshold ``ratio``), ``actions`` = the looping
    action (a ``revoke`` response removes it) and ``evidence`` = the latest calls of the pair.

    Examples
    --------
    >>> import textwrap
    >>> from datetime import UTC, datetime, timedelta
    >>> from agentwatch.detectors.baseline import AgentBaseline
    >>> from agentwatch.schemas import ActionEvent
    >>> detector, baseline, state = RunawayLoop(), AgentBaseline("a1"), {}
    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> def feed(i, seconds, action, target):
    ...     event = ActionEvent(event_id=f"e{i}", agent_id="a1", action=action, target=target,
    ...                         ts=t0 + timedelta(seconds=seconds))
    ...     found = detector.update(event, baseline, state, {})
    ...     baseline.update(event)
    ...     return found
    >>> normal = [feed(i, 20 * i, ("search", "read", "reply")[i % 3], f"t{i % 7}")
    ...           for i in range(200)]
    >>> sum(map(len, normal))
    0
    >>> loop = [feed(200 + i, 4000 + 4 * i, "search", "t1") for i in range(12)]
    >>> [len(found) for found in loop]
    [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1]
    >>> print(textwrap.fill(loop[8][0].summary, 88))
    a1 called search on 't1' 8 times in the last 60 s (83% of its calls), 7.2x the 1.1 its
    baseline predicts.
    """

    name: ClassVar[str] = "runaway_loop"

    def __init__(
        self,
        *,
        min_repeats: int = 8,
        ratio: float = 5.0,
        min_share: float = 0.7,
        window_s: float = 60.0,
        ignore_kinds: Sequence[str] = ("llm",),
        max_keys: int = 8,
    ) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        if max_keys < 1:
            raise ValueError(f"max_keys must be >= 1, got {max_keys}")
        self.min_repeats = min_repeats
        self.ratio = ratio
        self.min_share = min_share
        self.window_s = window_s
        self.ignore_kinds = list(ignore_kinds)
        self.max_keys = max_keys
        self._keys: dict[tuple[str, str], str] = {}  # (action, target) -> state key (a cache)

    def update(
        self,
        event: ActionEvent,
        baseline: AgentBaseline,
        state: dict[str, JSON],
        fleet_state: dict[str, JSON],
    ) -> list[Finding]:
        """Count the event's ``(action, target)`` and flag it when it loops."""
        if event.kind in self.ignore_kinds:
            return []
        width = self.window_s
        ts = event.ts_epoch
        win = int(ts // width)
        overlap = 1.0 - (ts - win * width) / width  # share of the previous window still in
        target = event.target or ""
        pair = (event.action, target)
        key = self._keys.get(pair)
        if key is None:
            key = str(crc32(f"{pair[0]}\x00{target}".encode("utf-8", "surrogatepass")))
            if len(self._keys) >= _MAX_CACHED:
                self._keys.clear()
            self._keys[pair] = key
        total_entry = state.get(_TOTAL)
        if total_entry is None:
            total_entry = state[_TOTAL] = [win, 0, 0]
        if total_entry[0] == win:  # the common case of _bump, inlined
            total_entry[1] += 1
            total = total_entry[1] + total_entry[2] * overlap
        else:
            total = _bump(total_entry, win, overlap)
        entry = state.get(key)
        if entry is None:
            if len(state) > self.max_keys:  # the total counter is one of the entries
                _evict(state)
            entry = state[key] = [win, 1, 0]
            count = 1.0
        elif entry[0] == win:  # the common case, inlined
            entry[1] += 1
            count = entry[1] + entry[2] * overlap
        else:
            count = _bump(entry, win, overlap)
        half = self.min_repeats / 2
        if count < half:
            return []
        state[key] = state.pop(key)  # a candidate: move it away from eviction
        ids: list[str] = entry[3] if len(entry) > 3 else []
        if len(entry) == 3:
            entry.append(ids)
        ids.append(event.event_id)
        if len(ids) > _MAX_IDS:
            del ids[0]
        share = count / total if total > 0 else 1.0
        if count < self.min_repeats or share < self.min_share:
            return []
        n = baseline.count
        expected = baseline.rate * width * baseline.action_count(event.action) / n if n else 0.0
        score = count / max(expected, 0.5)
        if score < self.ratio:
            return []
        what = f"{event.action} on {target[:120]!r}" if target else event.action
        return [
            Finding(
                kind="runaway_loop",
                score=score,
                threshold=self.ratio,
                observed=count,
                baseline=expected,
                summary=(
                    f"{event.agent_id} called {what} {count:.0f} times in the last "
                    f"{width:.0f} s ({share:.0%} of its calls), {score:.1f}x the "
                    f"{max(expected, 0.5):.1f} its baseline predicts."
                ),
                evidence=tuple(reversed(ids)),
                actions=(event.action,),
            )
        ]


def _bump(entry: list[JSON], win: int, overlap: float) -> float:
    """Add one call to a ``[window, current, previous, (ids)]`` entry; return the estimate."""
    last = entry[0]
    if last == win:
        entry[1] += 1
    else:
        entry[2] = entry[1] if last == win - 1 else 0
        entry[1] = 1
        entry[0] = win
    return float(entry[1] + entry[2] * overlap)


def _evict(state: dict[str, JSON]) -> None:
    """Drop the oldest tracked pair (pairs that look like a loop are kept young)."""
    for key in state:
        if key != _TOTAL:
            del state[key]
            return
