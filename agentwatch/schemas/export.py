"""JSON Schema export of the wire models (``agentwatch schema export DIR``)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from agentwatch.schemas.anomalies import Anomaly
from agentwatch.schemas.approvals import (
    ApprovalDecision,
    ApprovalPolicy,
    ApprovalPosted,
    ApprovalRequest,
)
from agentwatch.schemas.audit import AuditEntry
from agentwatch.schemas.control import ControlState
from agentwatch.schemas.events import ActionEvent
from agentwatch.schemas.incidents import Incident
from agentwatch.schemas.notifications import Notification

__all__ = ["WIRE_MODELS", "export_schemas", "render_schemas"]

WIRE_MODELS: dict[str, type[BaseModel]] = {
    "action_event": ActionEvent,
    "anomaly": Anomaly,
    "control_state": ControlState,
    "incident": Incident,
    "notification": Notification,
    "audit_entry": AuditEntry,
    "approval_policy": ApprovalPolicy,
    "approval_request": ApprovalRequest,
    "approval_decision": ApprovalDecision,
    "approval_posted": ApprovalPosted,
}


def render_schemas() -> dict[str, str]:
    """File name -> JSON Schema text for every wire model (validation mode)."""
    out = {}
    for name, model in WIRE_MODELS.items():
        schema = model.model_json_schema(mode="validation")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://agentwatch.dev/schemas/{name}.json"
        out[f"{name}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def export_schemas(directory: str | Path) -> list[Path]:
    """Write one ``<model>.json`` per wire model into ``directory``; return the paths."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for filename, text in render_schemas().items():
        path = target / filename
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
