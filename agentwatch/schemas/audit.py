"""``AuditEntry``: one record on ``agentwatch.audit`` — who did what to which agent, and why."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from agentwatch.schemas._types import WIRE_CONFIG, AgentId, Name, UtcDatetime

__all__ = ["AuditEntry"]


class AuditEntry(BaseModel):
    """Every control change, incident transition and notification delivery, with its actor.

    ``actor`` is a rule name (``actor_kind="rule"``), a person (``"person"``, from the control
    API or CLI) or ``"system"`` (auto-resolve, delivery). ``dry_run`` entries record what a
    shadow rule would have done; nothing was changed. ``suppressed`` records an anomaly or a
    page that a silence or an inhibit rule kept from paging (``detail.silenced_by``,
    ``detail.inhibited_by``); ``silence_create``/``silence_expire`` record silences
    (``detail.silence_id``).
    """

    model_config = WIRE_CONFIG

    audit_id: Name
    ts: UtcDatetime
    actor: Name
    actor_kind: Literal["rule", "person", "system"]
    action: Literal[
        "halt",
        "resume",
        "revoke",
        "grant",
        "notify",
        "incident_open",
        "incident_escalate",
        "incident_ack",
        "incident_resolve",
        "delivered",
        "delivery_failed",
        "suppressed",
        "silence_create",
        "silence_expire",
        "approval_requested",
        "approval_approved",
        "approval_denied",
        "approval_expired",
    ]
    agent_id: AgentId | None = None
    incident_id: Name | None = None
    reason: Annotated[str, Field(max_length=1024)] = ""
    anomaly_ids: Annotated[list[Name], Field(max_length=256)] = Field(default_factory=list)
    actions: Annotated[list[Name], Field(max_length=1024)] = Field(default_factory=list)
    control_version: Annotated[int, Field(ge=0)] | None = None
    dry_run: bool = False
    detail: dict[str, Any] = Field(default_factory=dict)
