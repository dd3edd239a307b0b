"""The engine: one agent event in, baseline updated, findings out.

Plain Python with no faust in it. The live worker and the offline ``backtest`` both feed
events through :meth:`Engine.process` in event-time order, so they produce the same state and
the same anomalies.
"""

from __future__ import annotations

from collections.abc import Callable

from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.schemas import ActionEvent, Anomaly

__all__ = ["Engine"]


class Engine:
    """Per-agent baselines plus duplicate suppression.

    Parameters
    ----------
    dedup_window
        Duplicate ``event_id`` values are dropped if they are among the last ``dedup_window/2``
        to ``dedup_window`` ids seen (two generations of sets: O(1) per event).
    baseline_factory
        Builds an empty baseline for an agent seen for the first time.

    Examples
    --------
    >>> from agentwatch.schemas import decode_event
    >>> engine = Engine()
    >>> raw = b'{"event_id":"e1","ts":"2026-01-01T00:00:00Z","agent_id":"a1","action":"search"}'
    >>> engine.process(decode_event(raw))
    []
    >>> engine.process(decode_event(raw)) is None  # the same event_id again
    True
    >>> engine.baselines["a1"].count
    1
    """

    def __init__(
        self,
        *,
        dedup_window: int = 100_000,
        baseline_factory: Callable[[str, str], AgentBaseline] = AgentBaseline,
    ) -> None:
        self.dedup_window = dedup_window
        self.baseline_factory = baseline_factory
        self.baselines: dict[str, AgentBaseline] = {}
        self._seen: set[str] = set()
        self._seen_before: set[str] = set()

    def process(self, event: ActionEvent) -> list[Anomaly] | None:
        """Fold one event into its agent's baseline; ``None`` if it is a duplicate."""
        event_id = event.event_id
        seen = self._seen
        if event_id in seen or event_id in self._seen_before:
            return None
        seen.add(event_id)
        if len(seen) >= self.dedup_window // 2:
            self._seen_before, self._seen = seen, set()
        baseline = self.baselines.get(event.agent_id)
        if baseline is None:
            baseline = self.baselines[event.agent_id] = self.baseline_factory(
                event.agent_id, event.fleet
            )
        baseline.update(event)
        return []

    def evict(self, agent_ids: set[str]) -> None:
        """Forget the in-memory baselines of agents this process no longer owns."""
        for agent_id in agent_ids:
            self.baselines.pop(agent_id, None)
