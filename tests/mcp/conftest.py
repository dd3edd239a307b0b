"""A monitor that keeps the events it emits (no broker: they wait in its buffer)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from agentwatch.schemas import ActionEvent, ControlState
from agentwatch.sdk import Monitor


class RecordingMonitor(Monitor):
    """A real, unstarted :class:`Monitor` that also lists what it emitted."""

    def __init__(self, agent_id: str) -> None:
        super().__init__(agent_id, "mcp-test", buffer_size=1000)
        self.events: list[ActionEvent] = []

    def emit(self, action: str, **fields: Any) -> ActionEvent | None:
        event = super().emit(action, **fields)
        assert event is not None, "the gateway built an invalid event"
        self.events.append(event)
        return event

    def set_control(self, version: int, **fields: Any) -> None:
        """Obey a control record (unverified: this monitor has no verifier)."""
        state = ControlState(
            agent_id=self.agent_id,
            updated_at=datetime.now(UTC),
            updated_by="test",
            version=version,
            **fields,
        )
        self.control.apply_record(
            "control", 0, version, self.agent_id.encode(), state.model_dump_json().encode()
        )


@pytest.fixture
def monitor() -> RecordingMonitor:
    return RecordingMonitor("bot-1")
