"""Shared field types for the wire models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, cast

from pydantic import ConfigDict, Field, GetCoreSchemaHandler, GetPydanticSchema, PlainSerializer
from pydantic_core import CoreSchema

__all__ = [
    "AGENT_ID_PATTERN",
    "AGENT_ID_RULE",
    "NAME_PATTERN",
    "NAME_RULE",
    "UTC_ERRORS",
    "WIRE_CONFIG",
    "AgentId",
    "Name",
    "NonNegFloat",
    "OptionalName",
    "Severity",
    "UtcDatetime",
    "format_ts",
]

WIRE_CONFIG = ConfigDict(
    frozen=True, strict=True, extra="forbid", allow_inf_nan=False, str_max_length=4096
)

#: An agent id is a URL path segment: ``[A-Za-z0-9._:@-]+``, but not ``.`` or ``..`` (at most
#: two leading dots before another character, or three dots). Anchored for pydantic-core's
#: regex; in Python use ``re.fullmatch`` (``$`` there also matches before a final newline).
AGENT_ID_PATTERN = r"^(?:\.{0,2}[A-Za-z0-9_:@-]|\.{3})[A-Za-z0-9._:@-]*$"

#: Code points no id or name may hold (they forge log lines or reorder what people read):
#: C0 and C1 controls and DEL, line and paragraph separators, bidi embeddings, overrides and
#: isolates (U+202A-202E, U+2066-2069), the BOM, and the noncharacters U+FDD0-FDEF,
#: U+FFFE and U+FFFF. The escapes mean the same in Python's ``re``, pydantic-core's Rust regex
#: and JSON Schema (ECMA-262).
FORBIDDEN_CHARS = (
    r"\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff\ufdd0-\ufdef\ufffe\uffff"
)
NAME_PATTERN = f"^[^{FORBIDDEN_CHARS}]*$"

#: How a pattern mismatch reads in a dead-letter reason (instead of the regex itself).
AGENT_ID_RULE = "may only contain A-Z a-z 0-9 . _ : @ - and must not be '.' or '..'"
NAME_RULE = (
    "must not contain control characters, line separators, bidi controls (U+202A-202E, "
    "U+2066-2069), a BOM or noncharacters"
)


_ZERO = timedelta(0)


def format_ts(value: datetime) -> str:
    """RFC 3339 UTC with a ``Z`` suffix and microseconds only when present.

    Examples
    --------
    >>> from datetime import timezone
    >>> format_ts(datetime(2026, 1, 1, tzinfo=UTC)), format_ts(datetime(2026, 1, 1, 1, 0, 0, 5,
    ...     tzinfo=timezone(timedelta(hours=1))))
    ('2026-01-01T00:00:00Z', '2026-01-01T00:00:00.000005Z')
    """
    if value.utcoffset() == _ZERO:  # every validated time: no conversion (a hot path)
        return value.isoformat()[:-6] + "Z"  # "+00:00"
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
Name = Annotated[str, Field(min_length=1, max_length=128, pattern=NAME_PATTERN)]
OptionalName = Annotated[str, Field(max_length=128, pattern=NAME_PATTERN)]
"""A name that may be empty (session ids, approvers, models)."""
NonNegFloat = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
Severity = Literal["info", "warning", "error", "critical"]
