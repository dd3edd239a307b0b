"""``ActionEvent``: one agent action, as agents publish it on ``agentwatch.actions``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, Self, overload

from pydantic import BaseModel, Field, ValidationError

from agentwatch.schemas._types import (
    AGENT_ID_RULE,
    NAME_RULE,
    UTC_ERRORS,
    WIRE_CONFIG,
    AgentId,
    Name,
    NonNegFloat,
    OptionalName,
    UtcDatetime,
)

__all__ = ["MAX_EVENT_BYTES", "ActionEvent", "DecodeError", "decode_event", "encode_event"]

MAX_EVENT_BYTES = 64 * 1024
MAX_ATTRIBUTES = 64

#: An attribute value: pydantic-core checks it (no Python call per event); floats must be
#: finite (``allow_inf_nan=False`` in the wire config).
AttributeValue = Annotated[str, Field(max_length=1024)] | int | float | bool | None
NonNegInt = Annotated[int, Field(ge=0, le=2**53)]


class _EpochOnce:
    """``ts`` as POSIX seconds, computed on first access and kept in the instance.

    Every detector reads an event's time, and ``datetime.timestamp()`` with pydantic's
    ``tzinfo`` is slow (~390 ns); ``functools.cached_property`` would do, but on Python 3.11
    its first access takes a lock that costs as much again. Subtracting an epoch that has
    the very ``tzinfo`` object pydantic-core gives every UTC time (it keeps one) skips both
    ``utcoffset()`` calls (~140 ns); with another ``tzinfo`` it is as exact, only slower.
    """

    epoch: datetime | None = None

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Self: ...

    @overload
    def __get__(self, instance: ActionEvent, owner: type[Any] | None = None) -> float: ...

    def __get__(self, instance: ActionEvent | None, owner: type[Any] | None = None) -> Any:
        if instance is None:
            return self
        ts = instance.ts  # UTC (validated)
        epoch = self.epoch
        if epoch is None:
            epoch = self.epoch = datetime(1970, 1, 1, tzinfo=ts.tzinfo)
        value = instance.__dict__["ts_epoch"] = (ts - epoch).total_seconds()  # == timestamp()
        return value


class ActionEvent(BaseModel):
    """One tool call, LLM call or API call of one agent.

    Names follow the OpenTelemetry GenAI conventions where one exists: ``action`` is
    ``gen_ai.tool.name``, ``agent_id`` is ``gen_ai.agent.id``, ``session_id`` is
    ``gen_ai.conversation.id`` and the token counts are ``gen_ai.usage.*``.

    Examples
    --------
    >>> e = decode_event(b'{"event_id":"e1","ts":"2026-01-01T00:00:00Z","agent_id":"a1",'
    ...                  b'"action":"search","cost_usd":0.01}')
    >>> (e.agent_id, e.fleet, e.kind, e.status, e.cost_usd)
    ('a1', 'default', 'tool', 'ok', 0.01)
    """

    model_config = WIRE_CONFIG

    event_id: Name
    ts: UtcDatetime
    agent_id: AgentId
    fleet: Name = "default"
    session_id: OptionalName | None = None
    action: Name
    kind: Literal["tool", "llm", "api", "other"] = "tool"
    status: Literal["ok", "error", "denied"] = "ok"
    error: Annotated[str, Field(max_length=4096)] | None = None
    risk: Literal["low", "medium", "high", "critical"] | None = None
    target: Annotated[str, Field(max_length=1024)] | None = None
    approved_by: OptionalName | None = None
    model: OptionalName | None = None
    cost_usd: NonNegFloat = 0.0
    input_tokens: NonNegInt = 0
    output_tokens: NonNegInt = 0
    latency_ms: NonNegFloat = 0.0
    attributes: dict[OptionalName, AttributeValue] = Field(
        default_factory=dict, max_length=MAX_ATTRIBUTES
    )

    ts_epoch: ClassVar[_EpochOnce] = _EpochOnce()
    """Event time as POSIX seconds (computed once: every detector reads it)."""

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy (see pydantic); it computes its own :attr:`ts_epoch`."""
        copy = super().model_copy(update=update, deep=deep)
        copy.__dict__.pop("ts_epoch", None)
        return copy


#: pydantic-core's validator itself: ``TypeAdapter.validate_json`` adds ~0.2 µs of Python
#: per call, a tenth of the whole decode.
_VALIDATE_JSON = ActionEvent.__pydantic_validator__.validate_json


class DecodeError(ValueError):
    """Raw bytes that are not a valid :class:`ActionEvent`.

    ``code`` is a small closed set (a metric label); ``detail`` is for people.
    """

    def __init__(self, code: Literal["too_large", "bad_json", "invalid"], detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def _where(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """An error's field: an attribute's value errs once per member of its type's union."""
    if len(loc) >= 3 and loc[0] == "attributes":
        return ("attributes", str(loc[1])[:40], "[key]" if loc[2] == "[key]" else "")
    return loc


def _describe(exc: ValidationError) -> tuple[Literal["bad_json", "invalid"], str]:
    errors = exc.errors(include_url=False, include_input=False)
    if not errors:
        return "invalid", str(exc)
    first = errors[0]
    if first.get("type") == "json_invalid":
        return "bad_json", str(first["msg"])
    where = _where(first["loc"])
    msg = UTC_ERRORS.get(first["type"], first["msg"])
    if first["type"] == "string_pattern_mismatch":
        msg = AGENT_ID_RULE if first["loc"] == ("agent_id",) else NAME_RULE
    if where != first["loc"]:
        msg = (
            "attribute names are at most 128 characters"
            if where[2]
            else "must be a string of at most 1024 characters, a finite number, a boolean or null"
        )
        where = where[:2]
    others = len({_where(e["loc"]) for e in errors}) - 1
    loc = ".".join(str(p) for p in where) or "event"
    more = f" (+{others} more)" if others else ""
    return "invalid", f"{loc}: {msg}{more}"


def decode_event(
    raw: bytes | bytearray | memoryview, max_bytes: int = MAX_EVENT_BYTES
) -> ActionEvent:
    """Validate raw Kafka bytes into an :class:`ActionEvent` or raise :class:`DecodeError`.

    This never raises anything else, whatever the input.
    """
    if raw is None:
        raise DecodeError("invalid", "empty message (tombstone)")
    if len(raw) > max_bytes:
        raise DecodeError("too_large", f"{len(raw)} bytes > limit {max_bytes}")
    try:
        return _VALIDATE_JSON(raw if type(raw) is bytes else bytes(raw))  # type: ignore[no-any-return]
    except ValidationError as exc:
        code, detail = _describe(exc)
        raise DecodeError(code, detail) from None
    except (ValueError, TypeError, RecursionError) as exc:  # defensive: parser edge cases
        raise DecodeError("bad_json", f"{type(exc).__name__}: {exc}") from None


def encode_event(event: ActionEvent) -> bytes:
    """Serialize an event to its wire JSON (UTF-8 bytes), omitting unset optional fields."""
    return event.model_dump_json(exclude_none=True).encode()
