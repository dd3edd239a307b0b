"""``Incident``: the anomalies of one agent grouped into one thing a person acts on."""

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

__all__ = ["Incident"]


class Incident(BaseModel):
    """One open (or closed) incident of one agent."""

    model_config = WIRE_CONFIG

    incident_id: Name
    agent_id: AgentId
    fleet: Name = "default"
    status: Literal["open", "acknowledged", "resolved"] = "open"
    severity: Severity
    title: Annotated[str, Field(min_length=1, max_length=1024)]
    opened_at: UtcDatetime
    updated_at: UtcDatetime
    resolved_at: UtcDatetime | None = None
    anomaly_ids: Annotated[list[Name], Field(max_length=256)] = Field(default_factory=list)
    anomaly_count: Annotated[int, Field(ge=0)] = 0
    detectors: Annotated[list[Name], Field(max_length=64)] = Field(default_factory=list)
    acknowledged_by: OptionalName | None = None
    resolved_by: OptionalName | None = None
