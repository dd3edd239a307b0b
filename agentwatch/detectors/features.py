"""Window feature vector of one agent, read from its :class:`AgentBaseline`.

:func:`window_features` turns the baseline's event-time buckets into the handful of
numbers that describe what an agent did lately: how busy it was, what it cost, how much
of it failed or was denied. With a :func:`mark` taken earlier it adds what the buckets do
not carry (LLM share, tokens per LLM call, new targets per event) from the difference of
the baseline's running totals. Everything is a pure function of the baseline: no I/O, no
clock, no state of its own.

Not included, on purpose: an action-mix entropy. The baseline's action table is a
cumulative Space-Saving sketch, so its entropy describes the agent's whole history rather
than the window; mix changes are the job of the ``mix_shift`` detector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from agentwatch.detectors.baseline import AgentBaseline

__all__ = ["FEATURES", "WindowFeatures", "mark", "window_features"]

FEATURES: Final[tuple[str, ...]] = (
    "events_per_min",
    "cost_per_min",
    "cost_per_event",
    "failure_share",
    "denied_share",
    "llm_share",
    "tokens_per_llm_call",
    "new_targets_per_event",
)
"""Names of the features :meth:`WindowFeatures.as_dict` can return, in that order."""

_MIN_MINUTES: Final = 1.0  # a window never counts as shorter than one minute


@dataclass(frozen=True, slots=True)
class WindowFeatures:
    """What one agent did in a window of event time.

    ``minutes`` is the covered span (at least one minute); ``events``, ``errors``,
    ``denied`` and ``cost_usd`` are the window's sums. The three delta features are
    ``None`` when :func:`window_features` got no ``since`` mark or no event (resp. no LLM
    call) happened since it.
    """

    minutes: float
    events: int
    errors: int
    denied: int
    cost_usd: float
    llm_share: float | None = None
    tokens_per_llm_call: float | None = None
    new_targets_per_event: float | None = None

    @property
    def events_per_min(self) -> float:
        """Events per minute."""
        return self.events / self.minutes

    @property
    def cost_per_min(self) -> float:
        """Cost per minute (USD)."""
        return self.cost_usd / self.minutes

    @property
    def cost_per_event(self) -> float:
        """Mean cost of one event (USD); 0 without events."""
        return self.cost_usd / self.events if self.events else 0.0

    @property
    def failure_share(self) -> float:
        """Share of events with status ``error`` or ``denied``; 0 without events."""
        return (self.errors + self.denied) / self.events if self.events else 0.0

    @property
    def denied_share(self) -> float:
        """Share of events with status ``denied``; 0 without events."""
        return self.denied / self.events if self.events else 0.0

    def as_dict(self) -> dict[str, float]:
        """The features as a river-style ``{name: value}`` dict (delta features if known)."""
        out = {
            "events_per_min": self.events_per_min,
            "cost_per_min": self.cost_per_min,
            "cost_per_event": self.cost_per_event,
            "failure_share": self.failure_share,
            "denied_share": self.denied_share,
        }
        if self.llm_share is not None:
            out["llm_share"] = self.llm_share
        if self.tokens_per_llm_call is not None:
            out["tokens_per_llm_call"] = self.tokens_per_llm_call
        if self.new_targets_per_event is not None:
            out["new_targets_per_event"] = self.new_targets_per_event
        return out


def mark(baseline: AgentBaseline) -> list[float]:
    """The baseline's running totals, to pass later as ``since`` (JSON-able, 4 numbers).

    ``[events, llm events, input + output tokens, distinct-target estimate]``.
    """
    return [
        float(baseline.count),
        float(baseline.kinds["llm"]),
        float(baseline.input_tokens + baseline.output_tokens),
        baseline.distinct_targets(),
    ]


def window_features(
    baseline: AgentBaseline,
    *,
    seconds: float = 300.0,
    at: float | None = None,
    since: list[float] | None = None,
) -> WindowFeatures:
    """The agent's window features as of ``at``.

    Parameters
    ----------
    baseline
        The agent's baseline (read only).
    seconds
        Window length in seconds of event time (default 300). Whole buckets are summed, so
        the window covers up to one bucket more (see :meth:`AgentBaseline.window`).
    at
        Event time the window ends at; default the agent's watermark. Pass the current
        event's time so that an idle agent's old buckets age out.
    since
        A :func:`mark` of the same baseline taken earlier: the LLM share, tokens per LLM
        call and new targets per event are then computed over the events folded in since
        it (the bucket ring does not carry them).

    Examples
    --------
    >>> from datetime import UTC, datetime, timedelta
    >>> from agentwatch.schemas import ActionEvent
    >>> b = AgentBaseline("a1", "support")
    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> def emit(i, **kw):
    ...     b.update(ActionEvent(event_id=f"e{i}", agent_id="a1", fleet="support",
    ...                          ts=t0 + timedelta(seconds=10 * i), **kw))
    >>> for i in range(6):
    ...     emit(i, action="search", target=f"doc{i}", status="error" if i == 5 else "ok")
    >>> before = mark(b)
    >>> for i in range(6, 12):
    ...     emit(i, action="chat", kind="llm", cost_usd=0.01, input_tokens=900,
    ...          output_tokens=100)
    >>> f = window_features(b, seconds=300.0, since=before)
    >>> f.events, round(f.minutes, 2), round(f.cost_per_event, 4), round(f.failure_share, 3)
    (12, 5.83, 0.005, 0.083)
    >>> f.llm_share, f.tokens_per_llm_call, f.new_targets_per_event
    (1.0, 1000.0, 0.0)
    >>> sorted(f.as_dict())[:3]
    ['cost_per_event', 'cost_per_min', 'denied_share']
    """
    stats = baseline.window(seconds, at)
    minutes = max(stats.seconds / 60.0, _MIN_MINUTES)
    llm_share = tokens = targets = None
    if since is not None:
        events = baseline.count - since[0]
        if events > 0:
            llm = baseline.kinds["llm"] - since[1]
            llm_share = llm / events
            if llm > 0:
                tokens = (baseline.input_tokens + baseline.output_tokens - since[2]) / llm
            targets = max(baseline.distinct_targets() - since[3], 0.0) / events
    return WindowFeatures(
        minutes,
        stats.count,
        stats.errors,
        stats.denied,
        stats.cost_usd,
        llm_share,
        tokens,
        targets,
    )
