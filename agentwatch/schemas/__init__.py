"""Wire models: the JSON contracts on agentwatch's Kafka topics, and their JSON Schema export."""

from agentwatch.schemas.anomalies import Anomaly
from agentwatch.schemas.control import ControlState
from agentwatch.schemas.events import ActionEvent, DecodeError, decode_event, encode_event
from agentwatch.schemas.export import export_schemas
from agentwatch.schemas.incidents import Incident

__all__ = [
    "ActionEvent",
    "Anomaly",
    "ControlState",
    "DecodeError",
    "Incident",
    "decode_event",
    "encode_event",
    "export_schemas",
]
