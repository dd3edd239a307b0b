"""Span to :class:`~agentwatch.schemas.ActionEvent`: what an OpenTelemetry span means to agentwatch.

Pure logic, no I/O. :meth:`SpanMapper.classify` says whether a span is an agent action (and
which), not one (skipped: HTTP, database and framework plumbing spans), or one that cannot be
mapped (rejected, with a reason); :meth:`SpanMapper.event` builds the event's wire JSON once
the agent is known (validated with the wire model, so what leaves is what the worker accepts).

=====================================  =========  ===========================================
span                                   ``kind``   ``action``
=====================================  =========  ===========================================
``gen_ai.operation.name=execute_tool``  tool      ``gen_ai.tool.name`` (else the span name)
``chat`` ``text_completion``            llm       the operation; ``model``, tokens, cost
``embeddings`` ``generate_content``
``invoke_agent`` ``create_agent``       other     the operation (no tokens: its children
                                                  carry them)
any other ``gen_ai.operation.name``     other     the operation
OpenInference ``TOOL``                  tool      ``tool.name``
OpenInference ``LLM`` / ``EMBEDDING``   llm       ``chat`` / ``embeddings``
OpenInference ``AGENT``                 other     ``invoke_agent``
OpenInference ``RETRIEVER``/``RERANKER``  api     ``retrieve`` / ``rerank``
=====================================  =========  ===========================================

Other spans (no GenAI operation, OpenInference ``CHAIN`` and the like) are skipped. ``status``
is ``error`` when the span status is ERROR or it has ``error.type``; ``latency_ms`` is the
span's duration; ``ts`` its end; ``event_id`` is ``otel-<trace_id>-<span_id>`` (a re-sent span
is a duplicate the worker drops). Cost: the span's ``gen_ai.usage.cost`` or ``llm.cost.total``
(USD), else the :class:`~agentwatch.ingest.prices.PriceTable` price of its model and tokens.
A tool span's ``target`` is ``agentwatch.target``, ``url.full``, ``file.path`` or
``db.collection.name``, else ``args:`` and 16 hex digits of the SHA-256 of its arguments
(``gen_ai.tool.call.arguments``, OpenInference ``input.value``): identical calls share a
target without their content leaving the span.

Agent ids: ``gen_ai.agent.id``, else ``gen_ai.agent.name`` (OpenInference ``agent.name``); a
value outside ``[A-Za-z0-9._:@-]`` has each run of other characters replaced by ``-``
(``Support Agent`` becomes ``Support-Agent``); one with none left, or over 128 characters, is
shortened with a digest of the original.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from dataclasses import dataclass, field

import orjson

from agentwatch.ingest import spans as sc
from agentwatch.ingest.prices import PriceTable
from agentwatch.ingest.spans import SpanRecord
from agentwatch.schemas._types import AGENT_ID_PATTERN, FORBIDDEN_CHARS
from agentwatch.schemas.events import DecodeError, decode_event

__all__ = [
    "IGNORE_REASONS",
    "REJECT_REASONS",
    "Mapped",
    "Reject",
    "Skip",
    "SpanMapper",
    "agent_key",
    "clean_name",
]

IGNORE_REASONS = ("not_genai", "not_an_action")
"""Why a span is skipped (a metric label): not an agent action, nothing wrong with it."""
REJECT_REASONS = (
    "bad_ids",
    "no_time",
    "no_tool_name",
    "no_agent_id",
    "invalid",
    "too_large",
)
"""Why a span that looks like an agent action could not be mapped (a metric label and the
dead letter's ``agentwatch.reason``)."""

_AGENT_OK = re.compile(AGENT_ID_PATTERN.removeprefix("^").removesuffix("$")).fullmatch
_NOT_ID = re.compile(r"[^A-Za-z0-9._:@-]+")
_FORBIDDEN = re.compile(f"[{FORBIDDEN_CHARS}]")
_HEX = re.compile(r"[0-9a-f]+").fullmatch
_MAX_TOKENS = 2**53
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16

_OI_KINDS: dict[str, tuple[str, str | None]] = {  # OpenInference kind -> (kind, action)
    "TOOL": ("tool", None),
    "LLM": ("llm", "chat"),
    "EMBEDDING": ("llm", "embeddings"),
    "AGENT": ("other", "invoke_agent"),
    "RETRIEVER": ("api", "retrieve"),
    "RERANKER": ("api", "rerank"),
}


def _digest(text: str, n: int = 16) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:n]


def agent_key(raw: str) -> str:
    """``raw`` (an agent id or name from a span) as a valid ``agent_id``.

    Examples
    --------
    >>> agent_key("billing-bot"), agent_key("Support Agent"), agent_key("  a/b  ")
    ('billing-bot', 'Support-Agent', 'a-b')
    >>> agent_key("日本語")
    'agent-77710aedc74ecfa3'
    >>> len(agent_key("x" * 300))
    128
    """
    if len(raw) <= 128 and _AGENT_OK(raw):
        return raw
    cleaned = _NOT_ID.sub("-", raw).strip("-")
    if not cleaned or not _AGENT_OK(cleaned):
        return f"agent-{_digest(raw)}"
    if len(cleaned) > 128:
        return f"{cleaned[:111]}-{_digest(raw)}"
    return cleaned


def clean_name(raw: object, limit: int = 128) -> str | None:
    """A free-text name (fleet, session, model, tool) fit for the wire, or ``None`` if empty.

    Examples
    --------
    >>> clean_name("ok\\x00name"), clean_name(""), clean_name(42)
    ('okname', None, None)
    """
    if not isinstance(raw, str):
        return None
    text = _FORBIDDEN.sub("", raw) if _FORBIDDEN.search(raw) else raw
    text = text.strip()[:limit]
    return text or None


def _tokens(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    if isinstance(value, float):
        if not math.isfinite(value):
            return 0
        value = int(value)
    return min(max(value, 0), _MAX_TOKENS)


def _usd(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) and value >= 0 else None


_SECONDS: dict[int, str] = {}  # spans of a request fall in few seconds: format each once


def _rfc3339(ns: int) -> str:
    """RFC 3339 UTC with microseconds.

    Examples
    --------
    >>> _rfc3339(1_767_225_600_123_456_789)
    '2026-01-01T00:00:00.123456Z'
    """
    seconds, rest = divmod(ns, 1_000_000_000)
    stamp = _SECONDS.get(seconds)
    if stamp is None:
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        stamp = _SECONDS[seconds] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{rest // 1000:06d}Z"


@dataclass(frozen=True, slots=True)
class Skip:
    """Not an agent action."""

    reason: str


@dataclass(frozen=True, slots=True)
class Reject:
    """An agent action that cannot be mapped: counted and dead-lettered."""

    reason: str
    detail: str


@dataclass(slots=True)
class Mapped:
    """What a span says about the action (the agent may still be unknown)."""

    kind: str
    action: str
    convention: str
    anchor: bool
    agent: str | None
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = None
    target: str | None = None
    attributes: dict[str, str | int | float | bool] = field(default_factory=dict)


class SpanMapper:
    """Maps spans to events (see the module docstring).

    Parameters
    ----------
    prices
        Model prices for LLM spans without a cost.
    """

    def __init__(self, prices: PriceTable) -> None:
        self.prices = prices
        self.unpriced = 0
        """LLM spans with neither a cost nor a known model (their cost is 0)."""

    def classify(self, span: SpanRecord) -> Mapped | Skip | Reject:
        """Whether and how ``span`` maps to an event."""
        attrs = span.attributes
        operation = attrs.get(sc.OPERATION)
        if isinstance(operation, str) and operation:
            mapped = self._gen_ai(span, operation)
        else:
            oi_kind = attrs.get(sc.OI_KIND)
            if not isinstance(oi_kind, str):
                return Skip("not_genai")
            found = _OI_KINDS.get(oi_kind.upper())
            if found is None:
                return Skip("not_an_action")
            mapped = self._openinference(span, *found)
        if isinstance(mapped, Reject):
            return mapped
        if (
            len(span.trace_id) != 32
            or len(span.span_id) != 16
            or span.trace_id == _ZERO_TRACE
            or span.span_id == _ZERO_SPAN
            or not _HEX(span.trace_id)
            or not _HEX(span.span_id)
        ):
            return Reject("bad_ids", "trace_id must be 16 bytes and span_id 8, not all zero")
        if not (span.end_ns or span.start_ns):
            return Reject("no_time", "the span has neither an end nor a start time")
        return mapped

    def _identity(self, *values: object) -> str | None:
        for value in values:
            if isinstance(value, str) and value.strip():
                return agent_key(value.strip())
        return None

    def _gen_ai(self, span: SpanRecord, operation: str) -> Mapped | Reject:
        attrs = span.attributes
        agent = self._identity(attrs.get(sc.AGENT_ID), attrs.get(sc.AGENT_NAME))
        if operation == "execute_tool":
            name = clean_name(attrs.get(sc.TOOL_NAME)) or clean_name(
                span.name.removeprefix("execute_tool").strip() or None
            )
            if name is None:
                return Reject("no_tool_name", "execute_tool span without gen_ai.tool.name")
            mapped = Mapped("tool", name, "gen_ai", False, agent)
            mapped.target = self._target(attrs, sc.TOOL_ARGUMENTS)
            call_id = clean_name(attrs.get(sc.TOOL_CALL_ID))
            if call_id:
                mapped.attributes[sc.TOOL_CALL_ID] = call_id
            return mapped
        action = clean_name(operation) or "other"
        if operation in sc.LLM_OPERATIONS:
            mapped = Mapped("llm", action, "gen_ai", False, agent)
            model = attrs.get(sc.RESPONSE_MODEL) or attrs.get(sc.REQUEST_MODEL)
            self._llm(
                mapped,
                model,
                attrs.get(sc.INPUT_TOKENS, attrs.get(sc.PROMPT_TOKENS)),
                attrs.get(sc.OUTPUT_TOKENS, attrs.get(sc.COMPLETION_TOKENS)),
                attrs.get(sc.COST),
            )
            provider = clean_name(attrs.get(sc.PROVIDER) or attrs.get(sc.SYSTEM))
            if provider:
                mapped.attributes[sc.PROVIDER] = provider
            return mapped
        return Mapped("other", action, "gen_ai", operation in sc.ANCHOR_OPERATIONS, agent)

    def _openinference(self, span: SpanRecord, kind: str, action: str | None) -> Mapped | Reject:
        attrs = span.attributes
        agent = self._identity(
            attrs.get(sc.AGENT_ID), attrs.get(sc.AGENT_NAME), attrs.get(sc.OI_AGENT_NAME)
        )
        if kind == "tool":
            name = clean_name(attrs.get(sc.OI_TOOL_NAME)) or clean_name(span.name)
            if name is None:
                return Reject("no_tool_name", "OpenInference TOOL span without tool.name")
            mapped = Mapped("tool", name, "openinference", False, agent)
            mapped.target = self._target(attrs, sc.OI_INPUT)
            return mapped
        assert action is not None
        mapped = Mapped(kind, action, "openinference", action == "invoke_agent", agent)
        if kind == "llm":
            self._llm(
                mapped,
                attrs.get(sc.OI_MODEL),
                attrs.get(sc.OI_PROMPT_TOKENS),
                attrs.get(sc.OI_COMPLETION_TOKENS),
                attrs.get(sc.OI_COST),
            )
            provider = clean_name(attrs.get(sc.OI_PROVIDER))
            if provider:
                mapped.attributes[sc.PROVIDER] = provider
        elif kind == "api":
            mapped.target = self._target(attrs, sc.OI_INPUT)
        return mapped

    def _llm(
        self, mapped: Mapped, model: object, tokens_in: object, tokens_out: object, cost: object
    ) -> None:
        mapped.model = clean_name(model)
        mapped.input_tokens = _tokens(tokens_in)
        mapped.output_tokens = _tokens(tokens_out)
        mapped.cost = _usd(cost)
        if mapped.cost is not None:
            mapped.attributes["cost_source"] = "span"
            return
        if mapped.model is not None:
            mapped.cost = self.prices.cost(mapped.model, mapped.input_tokens, mapped.output_tokens)
        if mapped.cost is None:
            self.unpriced += 1
            mapped.attributes["cost_source"] = "unpriced"
        else:
            mapped.attributes["cost_source"] = "price_table"

    @staticmethod
    def _target(attrs: dict[str, sc.Scalar], arguments_key: str) -> str | None:
        for key in sc.TARGET_ATTRIBUTES:
            value = attrs.get(key)
            if isinstance(value, str) and value:
                return value[:1024]
        arguments = attrs.get(arguments_key)
        if isinstance(arguments, str) and arguments:
            return f"args:{_digest(arguments)}"
        return None

    def event(
        self, span: SpanRecord, mapped: Mapped, agent_id: str, max_bytes: int
    ) -> bytes | Reject:
        """The wire JSON of ``span``'s event for ``agent_id`` (validated), or why it failed."""
        attrs = span.attributes
        error_type = attrs.get(sc.ERROR_TYPE)
        failed = span.status_code == 2 or (isinstance(error_type, str) and bool(error_type))
        try:
            ts = _rfc3339(span.end_ns or span.start_ns)
        except (OverflowError, OSError, ValueError):
            return Reject("no_time", f"span time {span.end_ns or span.start_ns} ns is out of range")
        doc: dict[str, object] = {
            "event_id": f"otel-{span.trace_id}-{span.span_id}",
            "ts": ts,
            "agent_id": agent_id,
            "fleet": clean_name(span.resource.fleet) or "default",
            "action": mapped.action,
            "kind": mapped.kind,
            "status": "error" if failed else "ok",
            "latency_ms": max(span.end_ns - span.start_ns, 0) / 1e6 if span.end_ns else 0.0,
            "attributes": {
                "otel.trace_id": span.trace_id,
                "otel.span_id": span.span_id,
                "otel.convention": mapped.convention,
                **mapped.attributes,
            },
        }
        if failed:
            parts = [p for p in (error_type, span.status_message) if isinstance(p, str) and p]
            doc["error"] = (": ".join(parts) or "span status ERROR")[:1024]
        session = clean_name(attrs.get(sc.CONVERSATION_ID) or attrs.get(sc.OI_SESSION))
        if session:
            doc["session_id"] = session
        risk = attrs.get(sc.AW_RISK)
        if risk in ("low", "medium", "high", "critical"):
            doc["risk"] = risk
        if mapped.target is not None:
            doc["target"] = mapped.target
        if mapped.kind == "llm":
            if mapped.model is not None:
                doc["model"] = mapped.model
            doc["input_tokens"] = mapped.input_tokens
            doc["output_tokens"] = mapped.output_tokens
            doc["cost_usd"] = mapped.cost or 0.0
        payload = orjson.dumps(doc)
        try:
            decode_event(payload, max_bytes)
        except DecodeError as exc:
            return Reject("too_large" if exc.code == "too_large" else "invalid", exc.detail)
        return payload
