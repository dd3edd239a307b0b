"""``Notification``: one page or message in the ``agentwatch.notifications`` outbox."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from agentwatch.schemas._types import (
    WIRE_CONFIG,
    AgentId,
    Name,
    OptionalName,
    Severity,
    UtcDatetime,
)
from agentwatch.schemas.anomalies import Anomaly
from agentwatch.schemas.control import ControlState

__all__ = ["Notification"]


class Notification(BaseModel):
    """What the notifiers send about one incident at one moment of its life.

    ``notification_id`` is deterministic (``<incident_id>:<seq>``) and is the idempotency key:
    a notification replayed after a crash carries the same id and is delivered at most once
    per destination. ``event`` is PagerDuty's ``event_action``; ``dedup_key`` groups every
    notification of an incident into one PagerDuty alert.
    """

    model_config = WIRE_CONFIG

    notification_id: Name
    incident_id: Name
    dedup_key: Name
    event: Literal["trigger", "acknowledge", "resolve"]
    reason: Literal["opened", "escalated", "repeat", "acknowledged", "resolved"]
    created_at: UtcDatetime
    agent_id: AgentId
    fleet: Name = "default"
    severity: Severity
    title: Annotated[str, Field(min_length=1, max_length=1024)]
    detectors: Annotated[list[Name], Field(max_length=64)] = Field(default_factory=list)
    anomaly_count: Annotated[int, Field(ge=0)] = 0
    top_anomalies: Annotated[list[Anomaly], Field(max_length=5)] = Field(default_factory=list)
    control: ControlState | None = None
    actions_taken: Annotated[list[Annotated[str, Field(max_length=256)]], Field(max_length=32)] = (
        Field(default_factory=list)
    )
    commands: Annotated[list[Annotated[str, Field(max_length=512)]], Field(max_length=16)] = Field(
        default_factory=list
    )
    runbook_url: Annotated[str, Field(max_length=2048)] | None = None
    agent_url: Annotated[str, Field(max_length=2048)] | None = None
    actor: OptionalName | None = None

    @property
    def incident_url(self) -> str | None:
        """The incident's link, beside the agent's (``<base>/incidents/<id>`` for an
        ``agent_url`` of ``<base>/agents/<agent_id>``), if there is one.

        Examples
        --------
        >>> from datetime import datetime, timezone
        >>> note = Notification(
        ...     notification_id="inc-1:1", incident_id="inc-1", dedup_key="inc-1", event="trigger",
        ...     reason="opened", created_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
        ...     agent_id="a1", severity="critical", title="t",
        ...     agent_url="http://aw.example:6066/console/agents/a1")
        >>> note.incident_url
        'http://aw.example:6066/console/incidents/inc-1'
        """
        suffix = f"/agents/{self.agent_id}"
        if not self.agent_url or not self.agent_url.endswith(suffix):
            return None
        return f"{self.agent_url[: -len(suffix)]}/incidents/{self.incident_id}"
