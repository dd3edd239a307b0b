"""The emitter's fast path: an event's model and wire bytes without pydantic, when it is safe.

pydantic-core's validation of an :class:`~agentwatch.schemas.ActionEvent` (26 % of an emit)
and its serialisation (35 %, half of it the Python ``format_ts`` of the timestamp) were most
of an emit's cost, and one ``os.urandom`` call per event id another 9 % (py-spy). For
what agents pass nearly always (exact ``str`` within the limits, finite non-negative numbers,
scalar attributes) the checks are a few comparisons, ``orjson`` writes the same bytes as
:func:`~agentwatch.schemas.encode_event`, and the model is assembled as pydantic's validator
would leave it. Anything else raises :class:`Unsupported` and the emitter validates with
pydantic as before, so the fast path accepts a subset of what the model accepts and every
rejection still reads as pydantic words it (``tests/sdk/test_fastpath.py`` compares the two).
"""

from __future__ import annotations

import os
import re
from collections import deque
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from pydantic import BaseModel

from agentwatch.schemas import ActionEvent
from agentwatch.schemas._types import AGENT_ID_PATTERN, FORBIDDEN_CHARS
from agentwatch.schemas.events import MAX_ATTRIBUTES
from agentwatch.sdk._support import KINDS, RISKS, STATUSES

__all__ = ["FastPath", "Unsupported", "new_event_id"]


class Unsupported(Exception):
    """Fields the fast path leaves to pydantic (a value to refuse, or one it does not handle)."""


_forbidden = re.compile(f"[{FORBIDDEN_CHARS}]").search
_agent_id_ok = re.compile(AGENT_ID_PATTERN).fullmatch
_INF: Final = float("inf")
_MAX_TOKENS: Final = 2**53
_MAX_EXACT: Final = 2**1023  # float() overflows from 2**1024: left to pydantic's path to report
_MAX_ACTIONS: Final = 4096
_OPTIONS: Final = orjson.OPT_UTC_Z  # "Z" and microseconds only when present: format_ts's text
_FIELDS: Final = set(ActionEvent.model_fields)
_UNSET: Final = dict.fromkeys(ActionEvent.model_fields)
_new = object.__new__
_set = object.__setattr__
# BaseModel's slots, set through their descriptors (object.__setattr__ looks each name up)
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__

# -- event ids --------------------------------------------------------------------------------

_POOL: Final = 32  # ids per urandom call: ~0.3 us each, ~8 us per batch on a slow host
_VERSION_4: Final = bytes((b & 0x0F) | 0x40 for b in range(256))
_VARIANT: Final = bytes((b & 0x3F) | 0x80 for b in range(256))
_ids: deque[str] = deque()  # pop() and extend() are atomic: no id is handed out twice
_take_id = _ids.pop


def _fresh_ids() -> list[str]:
    # one urandom call per batch (the syscall was most of an id's cost), the bits of every id
    # set and the text split in C
    raw = bytearray(os.urandom(16 * _POOL))
    raw[6::16] = raw[6::16].translate(_VERSION_4)
    raw[8::16] = raw[8::16].translate(_VARIANT)  # RFC 4122
    return raw.hex(" ", 16).split(" ")


def new_event_id() -> str:
    """A random (version 4) UUID as 32 hex digits, as ``uuid.uuid4().hex`` gives.

    Drawn from a batch of 32 made with one ``os.urandom`` call; a forked child drops what is
    left of its parent's batch.

    Examples
    --------
    >>> import uuid
    >>> event_id = new_event_id()
    >>> len(event_id), uuid.UUID(hex=event_id).version, uuid.UUID(hex=event_id).hex == event_id
    (32, 4, True)
    """
    try:
        return _take_id()
    except IndexError:
        _ids.extend(_fresh_ids())
        return _take_id()


os.register_at_fork(after_in_child=_ids.clear)

# -- checks -----------------------------------------------------------------------------------


def _name(value: object, empty: bool = False) -> None:
    """Pass a ``Name`` (``OptionalName`` if ``empty``); raise :class:`Unsupported` otherwise."""
    if (
        type(value) is not str
        or len(value) > 128
        or (not value and not empty)
        or _forbidden(value) is not None
    ):
        raise Unsupported


def _float(value: object) -> float:
    """An exact ``int`` as ``float()`` makes it (the emitter's conversion); nothing else."""
    if type(value) is not int or not -_MAX_EXACT <= value <= _MAX_EXACT:
        raise Unsupported
    return float(value)


def _attributes(attributes: dict[str, Any]) -> None:
    """Pass ``attributes`` that ``dict[OptionalName, AttributeValue]`` takes as they are."""
    if len(attributes) > MAX_ATTRIBUTES:
        raise Unsupported
    for key, value in attributes.items():
        _name(key, empty=True)
        kind = type(value)
        if kind is str:
            if len(value) > 1024:
                raise Unsupported
        elif kind is float:
            if not -_INF < value < _INF:
                raise Unsupported
        elif value is not None and kind is not int and kind is not bool:
            raise Unsupported


class FastPath:
    """Builds one agent's events without pydantic; :meth:`build` raises when it cannot.

    It remembers the agent id and fleet and the actions it has already checked (at most
    4096; then it starts again), so a call checks only what changes from call to call.
    """

    def __init__(self) -> None:
        self._agent_id: str | None = None
        self._fleet: str | None = None
        self._actions: set[str] = set()

    def _admit(self, agent_id: str, fleet: str) -> None:
        if type(agent_id) is not str or len(agent_id) > 128 or not _agent_id_ok(agent_id):
            raise Unsupported
        _name(fleet)
        self._agent_id, self._fleet = agent_id, fleet

    def _admit_action(self, action: str) -> None:
        _name(action)
        if len(self._actions) >= _MAX_ACTIONS:
            self._actions = set()
        self._actions.add(action)

    def build(  # noqa: PLR0917 - positional: 17 keywords cost ~1.8 us a call on a slow host
        self,
        agent_id: str,
        fleet: str,
        action: str,
        kind: str,
        status: str,
        error: object,
        risk: str | None,
        target: object,
        approved_by: object,
        session_id: object,
        model: object,
        cost_usd: object,
        input_tokens: object,
        output_tokens: object,
        latency_ms: object,
        attributes: dict[str, Any],
        error_chars: int,
    ) -> tuple[ActionEvent, bytes]:
        """The event of these fields and its wire bytes, if none needs clipping or converting.

        It calls no code of the caller's (no ``__str__``, no ``__float__``): a value that
        needs it is left to pydantic's path, which clips and converts as it always did.

        Raises
        ------
        Unsupported
            when the fields need pydantic: to refuse them, or to be sure.
        """
        if agent_id is not self._agent_id or fleet is not self._fleet:
            self._admit(agent_id, fleet)
        if type(action) is not str or action not in self._actions:
            self._admit_action(action)
        if type(cost_usd) is not float:
            cost_usd = _float(cost_usd)
        if type(latency_ms) is not float:
            latency_ms = _float(latency_ms)
        if (
            type(kind) is not str
            or kind not in KINDS
            or type(status) is not str
            or status not in STATUSES
            or not 0.0 <= cost_usd < _INF  # type: ignore[operator]
            or not 0.0 <= latency_ms < _INF  # type: ignore[operator]
            or type(input_tokens) is not int
            or not 0 <= input_tokens <= _MAX_TOKENS
            or type(output_tokens) is not int
            or not 0 <= output_tokens <= _MAX_TOKENS
        ):
            raise Unsupported
        # the wire leaves unset optional fields out (exclude_none), in the model's order
        wire = {
            "event_id": new_event_id(),
            "ts": datetime.now(UTC),
            "agent_id": agent_id,
            "fleet": fleet,
        }
        if session_id is not None:
            _name(session_id, empty=True)
            wire["session_id"] = session_id
        wire["action"] = action
        wire["kind"] = kind
        wire["status"] = status
        if error is not None:
            if type(error) is not str or len(error) > error_chars:
                raise Unsupported
            wire["error"] = error
        if risk is not None:
            if type(risk) is not str or risk not in RISKS:
                raise Unsupported
            wire["risk"] = risk
        if target is not None:
            if type(target) is not str or len(target) > 1024:
                raise Unsupported
            wire["target"] = target
        if approved_by is not None:
            _name(approved_by, empty=True)
            wire["approved_by"] = approved_by
        if model is not None:
            _name(model, empty=True)
            wire["model"] = model
        wire["cost_usd"] = cost_usd
        wire["input_tokens"] = input_tokens
        wire["output_tokens"] = output_tokens
        wire["latency_ms"] = latency_ms
        if attributes:
            _attributes(attributes)
        wire["attributes"] = attributes
        try:  # ints beyond 64 bits, lone surrogates
            payload = orjson.dumps(wire, option=_OPTIONS)
        except orjson.JSONEncodeError:
            raise Unsupported from None
        event: ActionEvent = _new(ActionEvent)  # what the validator leaves, without its work
        _set(event, "__dict__", {**_UNSET, **wire})  # every field, in the model's order
        _set_fields_set(event, _FIELDS.copy())
        _set_extra(event, None)
        _set_private(event, None)
        return event, payload
