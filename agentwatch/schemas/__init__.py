"""Wire models: the JSON contracts on agentwatch's Kafka topics, and their JSON Schema export."""

from agentwatch.schemas.anomalies import Anomaly
from agentwatch.schemas.audit import AuditEntry
from agentwatch.schemas.control import ControlState
from agentwatch.schemas.events import ActionEvent, DecodeError, decode_event, encode_event
from agentwatch.schemas.export import export_schemas
from agentwatch.schemas.incidents import Incident
from agentwatch.schemas.notifications import Notification

__all__ = [
    "ActionEvent",
    "Anomaly",
    "AuditEntry",
    "ControlState",
    "DecodeError",
    "Incident",
    "Notification",
    "decode_event",
    "encode_event",
    "export_schemas",
]
