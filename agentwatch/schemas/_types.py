"""Shared field types for the wire models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, cast

from pydantic import ConfigDict, Field, GetCoreSchemaHandler, GetPydanticSchema, PlainSerializer
from pydantic_core import CoreSchema

__all__ = [
    "UTC_ERRORS",
    "WIRE_CONFIG",
    "AgentId",
    "Name",
    "NonNegFloat",
    "Severity",
    "UtcDatetime",
    "format_ts",
]

WIRE_CONFIG = ConfigDict(
    frozen=True, strict=True, extra="forbid", allow_inf_nan=False, str_max_length=4096
)

AGENT_ID_PATTERN = r"^[A-Za-z0-9._:@/-]+$"


def format_ts(value: datetime) -> str:
    """RFC 3339 UTC with a ``Z`` suffix and microseconds only when present."""
    text = value.astimezone(UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


def _utc_only(source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
    # checked by pydantic-core itself (no Python call per event): offset 0 required;
    # decode_event words the two errors as UTC_ERRORS below
    schema = dict(handler(source))
    schema["tz_constraint"] = 0
    return cast(CoreSchema, schema)


#: How the timestamp's pydantic-core error types read in a dead-letter reason.
UTC_ERRORS = {
    "timezone_aware": "timestamp needs a UTC offset (RFC 3339, e.g. 2026-01-01T00:00:00Z)",
    "timezone_offset": "timestamp must be UTC (Z or +00:00)",
}

UtcDatetime = Annotated[
    datetime,
    GetPydanticSchema(_utc_only),
    PlainSerializer(format_ts, return_type=str, when_used="json"),
]
AgentId = Annotated[str, Field(min_length=1, max_length=128, pattern=AGENT_ID_PATTERN)]
Name = Annotated[str, Field(min_length=1, max_length=128)]
NonNegFloat = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
Severity = Literal["info", "warning", "error", "critical"]
