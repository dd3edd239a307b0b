"""OpenAI Agents SDK: a tracing processor for events, a tool guardrail for halts and revokes.

:class:`AgentwatchTracingProcessor` is an Agents SDK ``TracingProcessor``: every ended span of
a function tool call becomes a ``kind="tool"`` ``ActionEvent`` (``action`` = the tool's name,
``target`` from its arguments, ``latency_ms`` from the span, ``status`` ``error`` when the span
recorded one) and every generation or response span a ``kind="llm"`` event (``model``, input
and output tokens from its usage, ``cost_usd`` from the shipped price table). Register it with
``agents.add_trace_processor`` (keeps exporting to OpenAI) or ``agents.set_trace_processors``
(replaces the exporter). Tracing must stay enabled for it to see spans.

:func:`tool_guardrail` makes a tool input guardrail that asks the agent's control state before
each function tool runs: a halted agent's call trips the guardrail (the run stops with
``ToolInputGuardrailTripwireTriggered``; :func:`refusal` gives the
:class:`~agentwatch.sdk.AgentHalted` inside), a revoked tool's call too, or, with
``on_revoked="reject"``, is answered to the model with the refusal text while the run goes on.
Either way the tool body does not run and one ``denied`` event is emitted (the processor skips
the refused call's span). Attach it with ``@function_tool(tool_input_guardrails=[guard])`` or
to every function tool of an agent with :func:`guard_tools`.

Install with ``pip install 'agentwatch[openai-agents]'`` (``openai-agents``).

Examples
--------
>>> from agents import Agent, function_tool, set_trace_processors
>>> from agentwatch.sdk import Monitor
>>> monitor = Monitor("support-bot", fleet="support")
>>> set_trace_processors([AgentwatchTracingProcessor(monitor)])  # doctest: +SKIP
>>> @function_tool
... def refund(order_id: str) -> str:
...     '''Refund an order.'''
...     return "ok"
>>> agent = Agent(name="support", tools=[refund])
>>> guard_tools(agent.tools, tool_guardrail(monitor, risks={"refund": "high"}))
1
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from agents import (
    FunctionTool,
    Tool,
    ToolGuardrailFunctionOutput,
    ToolInputGuardrail,
    ToolInputGuardrailData,
    ToolInputGuardrailTripwireTriggered,
)
from agents.tracing import (
    FunctionSpanData,
    GenerationSpanData,
    ResponseSpanData,
    Span,
    Trace,
    TracingProcessor,
    get_current_span,
)

from agentwatch.ingest.prices import PriceTable
from agentwatch.integrations.common import Pricing, ToolPolicy, guarded, tokens_of
from agentwatch.sdk._support import Risk
from agentwatch.sdk.errors import ApprovalDenied, ControlError, PermissionRevoked
from agentwatch.sdk.surface import AgentSurface
from agentwatch.sdk.tools import ToolCall

__all__ = [
    "AgentwatchTracingProcessor",
    "guard_tools",
    "refusal",
    "tool_guardrail",
]

log = logging.getLogger("agentwatch.integrations")

GUARDRAIL_NAME = "agentwatch"
"""Name of the guardrail :func:`tool_guardrail` makes (:func:`guard_tools` adds it once)."""


class _RefusedSpans:
    """Ids of function spans whose call a guardrail refused (bounded, thread-safe).

    The guardrail runs inside the tool's function span; the processor, told the span ended,
    must not record the refused call a second time (the refusal already emitted ``denied``).
    """

    LIMIT = 4096

    def __init__(self) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, span_id: str) -> None:
        with self._lock:
            self._ids[span_id] = None
            while len(self._ids) > self.LIMIT:
                self._ids.popitem(last=False)

    def take(self, span_id: str) -> bool:
        with self._lock:
            if span_id not in self._ids:
                return False
            del self._ids[span_id]
            return True


_REFUSED = _RefusedSpans()


class _ApprovedSpans:
    """Approver and request id of function spans whose call was approved (bounded)."""

    LIMIT = 4096

    def __init__(self) -> None:
        self._items: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, span_id: str, approval: tuple[str, str]) -> None:
        with self._lock:
            self._items[span_id] = approval
            while len(self._items) > self.LIMIT:
                self._items.popitem(last=False)

    def take(self, span_id: str) -> tuple[str, str] | None:
        with self._lock:
            return self._items.pop(span_id, None)


_APPROVED = _ApprovedSpans()


def tool_guardrail(
    monitor: AgentSurface,
    *,
    risks: Mapping[str, Risk] | None = None,
    target_args: Mapping[str, str] | None = None,
    on_revoked: Literal["raise", "reject"] = "raise",
) -> ToolInputGuardrail[Any]:
    """A tool input guardrail that refuses a halted agent's or a revoked tool's call.

    Parameters
    ----------
    monitor
        The agent's started :class:`~agentwatch.sdk.Monitor`.
    risks, target_args
        Tool name to declared risk / to the argument that is the ``target``, for the
        ``denied`` event of a refused call.
    on_revoked
        ``raise`` (default): a revoked tool's call stops the run like a halt. ``reject``: the
        model gets the refusal text as the tool's result and may go on with other tools.

    A halt always stops the run: the guardrail trips and ``Runner.run`` raises
    ``ToolInputGuardrailTripwireTriggered`` whose :func:`refusal` is the
    :class:`~agentwatch.sdk.AgentHalted` (or :class:`~agentwatch.sdk.PermissionRevoked`).
    """
    if on_revoked not in ("raise", "reject"):
        raise ValueError(f"on_revoked must be 'raise' or 'reject', got {on_revoked!r}")
    policy = ToolPolicy(risks, target_args)

    async def agentwatch(data: ToolInputGuardrailData) -> ToolGuardrailFunctionOutput:
        context = data.context
        action = context.tool_name[:128]
        risk = policy.risk(action)
        target = guarded(
            "reading a tool's target", lambda: policy.target(action, context.tool_arguments)
        )
        span = get_current_span()
        function_span = (
            span if span is not None and isinstance(span.span_data, FunctionSpanData) else None
        )
        try:
            monitor.check(action, kind="tool", risk=risk, target=target)
            # waits for a person when the approval requirements match (docs/approvals.md)
            decision = await monitor.approve_call(
                ToolCall(action=action, kind="tool", risk=risk, target=target)
            )
        except ControlError as denial:
            if function_span is not None:
                _REFUSED.add(function_span.span_id)
            if on_revoked == "reject" and isinstance(denial, PermissionRevoked | ApprovalDenied):
                return ToolGuardrailFunctionOutput.reject_content(str(denial), output_info=denial)
            return ToolGuardrailFunctionOutput.raise_exception(output_info=denial)
        if decision is not None and function_span is not None:
            _APPROVED.put(function_span.span_id, (decision.decided_by, decision.request_id))
        return ToolGuardrailFunctionOutput.allow()

    return ToolInputGuardrail(guardrail_function=agentwatch, name=GUARDRAIL_NAME)


def guard_tools(tools: Iterable[Tool], guardrail: ToolInputGuardrail[Any]) -> int:
    """Add ``guardrail`` to every function tool in ``tools`` that lacks one of its name.

    Returns how many tools got it. Hosted tools (web search, file search, code interpreter)
    run at OpenAI and take no tool guardrails: they are not covered.
    """
    added = 0
    for tool in tools:
        if not isinstance(tool, FunctionTool):
            continue
        current = list(tool.tool_input_guardrails or [])
        if any(g.get_name() == guardrail.get_name() for g in current):
            continue
        tool.tool_input_guardrails = [guardrail, *current]
        added += 1
    return added


def refusal(exc: BaseException) -> ControlError | None:
    """The :class:`~agentwatch.sdk.ControlError` behind a tripped agentwatch guardrail.

    ``None`` when ``exc`` is not (or was not caused by) an agentwatch refusal.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ControlError):
            return current
        if isinstance(current, ToolInputGuardrailTripwireTriggered):
            info = current.output.output_info
            if isinstance(info, ControlError):
                return info
        current = current.__cause__ or current.__context__
    return None


class AgentwatchTracingProcessor(TracingProcessor):
    """Turns the Agents SDK's tool and model spans into one agent's ``ActionEvent`` s.

    Parameters
    ----------
    monitor
        The agent's :class:`~agentwatch.sdk.Monitor` (or :class:`~agentwatch.sdk.SyncMonitor`).
        Trace processors are process-wide: every run in the process is recorded as this
        monitor's agent.
    risks, target_args
        Tool name to declared risk / to the argument that is the event's ``target``.
    prices
        Price table (or a TOML file extending the shipped one) for model calls whose span
        carries tokens; default: the shipped table. Unknown models cost 0.

    Never raises into the agent: a span it cannot read is logged and skipped.
    """

    def __init__(
        self,
        monitor: AgentSurface,
        *,
        risks: Mapping[str, Risk] | None = None,
        target_args: Mapping[str, str] | None = None,
        prices: PriceTable | str | Path | None = None,
    ) -> None:
        self.monitor = monitor
        self.policy = ToolPolicy(risks, target_args)
        self.pricing = Pricing(prices)

    def on_trace_start(self, trace: Trace) -> None:
        """Nothing to do: events are per span."""

    def on_trace_end(self, trace: Trace) -> None:
        """Nothing to do: events are per span."""

    def on_span_start(self, span: Span[Any]) -> None:
        """Nothing to do: a span is recorded when it ends."""

    def on_span_end(self, span: Span[Any]) -> None:
        """Emit the event of a tool or model span; other spans are ignored."""
        data = span.span_data
        if isinstance(data, FunctionSpanData):
            if _REFUSED.take(span.span_id):
                return  # the guardrail refused it and emitted the denied event
            guarded("recording a tool span", lambda: self._tool(span, data))
        elif isinstance(data, GenerationSpanData | ResponseSpanData):
            guarded("recording a model span", lambda: self._model(span, data))

    def shutdown(self) -> None:
        """Nothing held: events are in the monitor's buffer (closing the monitor sends them)."""

    def force_flush(self) -> None:
        """Nothing queued here: the monitor's :meth:`~agentwatch.sdk.Monitor.flush` sends."""

    def _tool(self, span: Span[Any], data: FunctionSpanData) -> None:
        action = (data.name or "tool")[:128]
        error = span.error
        approval = _APPROVED.take(span.span_id)
        self.monitor.emit(
            action,
            kind="tool",
            status="error" if error else "ok",
            error=_error_text(error) if error else None,
            risk=self.policy.risk(action),
            target=self.policy.target(action, data.input),
            approved_by=None if approval is None else approval[0],
            latency_ms=_latency_ms(span),
            attributes=None if approval is None else {"approval_id": approval[1]},
        )

    def _model(self, span: Span[Any], data: GenerationSpanData | ResponseSpanData) -> None:
        usage: Mapping[str, Any] | None = data.usage
        if isinstance(data, GenerationSpanData):
            action, model = "chat", data.model
        else:
            action, model = "chat", None
            response = data.response
            if response is not None:
                model = response.model if isinstance(response.model, str) else None
                if not usage and response.usage is not None:
                    usage = response.usage.model_dump()
        input_tokens, output_tokens = tokens_of(usage)
        name = (model or "unknown")[:128]
        error = span.error
        self.monitor.record(
            action,
            model=name,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=self.pricing.cost(model, input_tokens, output_tokens),
            latency_ms=_latency_ms(span),
            status="error" if error else "ok",
            error=_error_text(error) if error else None,
        )


def _latency_ms(span: Span[Any]) -> float:
    started, ended = span.started_at, span.ended_at
    if not started or not ended:
        return 0.0
    elapsed = datetime.fromisoformat(ended) - datetime.fromisoformat(started)
    return max(0.0, elapsed.total_seconds() * 1000.0)


def _error_text(error: Mapping[str, Any]) -> str:
    message = str(error.get("message") or "error")
    data = error.get("data")
    detail = data.get("error") if isinstance(data, Mapping) else None
    return f"{message}: {detail}" if detail else message
