"""``Anomaly``: one detector finding, published on ``agentwatch.anomalies``."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from agentwatch.schemas._types import (
    WIRE_CONFIG,
    AgentId,
    Name,
    OptionalName,
    Severity,
    UtcDatetime,
)

__all__ = ["Anomaly"]


class Anomaly(BaseModel):
    """A deviation one detector found in one agent's behaviour, explained with numbers.

    ``ts`` is the event time of the event that triggered it, so a live worker and an offline
    backtest over the same events produce identical anomalies.
    """

    model_config = WIRE_CONFIG

    anomaly_id: Name
    ts: UtcDatetime
    agent_id: AgentId
    fleet: Name = "default"
    detector: Name
    kind: Name
    severity: Severity
    score: Annotated[float, Field(allow_inf_nan=False)]
    threshold: Annotated[float, Field(allow_inf_nan=False)]
    observed: Annotated[float, Field(allow_inf_nan=False)]
    baseline: Annotated[float, Field(allow_inf_nan=False)]
    summary: Annotated[str, Field(min_length=1, max_length=1024)]
    evidence: Annotated[list[Name], Field(max_length=64)] = Field(default_factory=list)
    rule: OptionalName | None = None
    actions: Annotated[list[Name], Field(max_length=64)] = Field(default_factory=list)
    """The actions involved (what a ``revoke`` response removes when its rule names none)."""
