from __future__ import annotations

from datetime import UTC, datetime

from agentwatch.detectors.engine import Engine
from agentwatch.schemas import ActionEvent

TS = datetime(2026, 1, 1, tzinfo=UTC)


def ev(i: int, agent: str = "a") -> ActionEvent:
    return ActionEvent(event_id=f"e{i}", ts=TS, agent_id=agent, action="x")


def test_duplicates_within_the_window_are_dropped_and_memory_is_bounded() -> None:
    engine = Engine(dedup_window=100)
    for i in range(1000):
        assert engine.process(ev(i)) == []
    assert engine.process(ev(999)) is None  # just seen
    assert engine.process(ev(960)) is None  # within the last window/2 ids
    assert engine.process(ev(0)) == []  # long gone: counted again
    assert len(engine._seen) + len(engine._seen_before) <= 100
    assert engine.baselines["a"].count == 1001


def test_evict_forgets_only_the_named_agents() -> None:
    engine = Engine()
    engine.process(ev(1, "a"))
    engine.process(ev(2, "b"))
    engine.evict({"a"})
    assert set(engine.baselines) == {"b"}
