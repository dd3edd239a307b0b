"""A LangChain callback handler: every tool and model call an event, refused when halted.

:class:`AgentwatchCallbackHandler` is a LangChain ``BaseCallbackHandler`` over an agentwatch
monitor. Pass it in the ``callbacks`` of a run (``config={"callbacks": [handler]}``) or of a
model or tool. It emits one ``ActionEvent`` per tool call (``kind="tool"``, ``action`` = the
tool's name, ``target`` from its input, ``latency_ms``, ``status``) and per model call
(``kind="llm"``, ``action`` ``chat`` or ``text_completion``, ``model``, input and output tokens
from the model's usage report, ``cost_usd`` from the shipped price table). Before a tool runs
it asks the monitor's control state: a halted agent's call raises
:class:`~agentwatch.sdk.AgentHalted` and a revoked tool's call
:class:`~agentwatch.sdk.PermissionRevoked` out of the tool's ``invoke``, the tool body does not
run and a ``denied`` event is emitted. LangChain only lets a callback abort a run when the
handler sets ``raise_error``; this one does, and it never raises for anything but a refusal
(a failure to record is logged, the call goes on).

Install with ``pip install 'agentwatch[langchain]'`` (``langchain-core``).

Examples
--------
>>> from agentwatch.sdk import SyncMonitor
>>> from langchain_core.tools import tool
>>> @tool
... def search(q: str) -> str:
...     '''Search the web.'''
...     return q.upper()
>>> monitor = SyncMonitor("research-bot", fleet="research")
>>> handler = AgentwatchCallbackHandler(monitor, risks={"search": "low"})
>>> search.invoke({"q": "kafka"}, config={"callbacks": [handler]})
'KAFKA'
>>> monitor.stats["emitted"]
1
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import ChatGeneration, LLMResult

from agentwatch.ingest.prices import PriceTable
from agentwatch.integrations.common import Pricing, ToolPolicy, guarded, tokens_of
from agentwatch.sdk._support import Risk
from agentwatch.sdk.surface import AgentSurface
from agentwatch.sdk.tools import ToolCall

__all__ = ["AgentwatchCallbackHandler"]


@dataclass(frozen=True, slots=True)
class _ToolRun:
    action: str
    risk: Risk | None
    target: str | None
    started: float
    approved_by: str | None = None
    approval_id: str | None = None


@dataclass(frozen=True, slots=True)
class _ModelRun:
    action: str
    model: str | None
    started: float


class AgentwatchCallbackHandler(BaseCallbackHandler):
    """Records a LangChain agent's tool and model calls; refuses a halted or revoked tool call.

    Parameters
    ----------
    monitor
        The agent's :class:`~agentwatch.sdk.Monitor` (async agents) or
        :class:`~agentwatch.sdk.SyncMonitor` (sync agents), started by the caller.
    risks
        Tool name to declared risk, sent with each event of that tool.
    target_args
        Tool name to the argument whose value is the event's ``target``.
    prices
        Price table (or a TOML file extending the shipped one) for model calls;
        default: the shipped table. Unknown models cost 0.
    enforce
        ``False`` only records (no refusal): for a first, observing rollout.

    Notes
    -----
    ``raise_error`` is ``True`` so that a refusal aborts the tool call, and ``run_inline`` is
    ``True`` so that async runs check in the event loop, before the tool is scheduled.
    """

    raise_error: bool = True
    run_inline: bool = True

    def __init__(
        self,
        monitor: AgentSurface,
        *,
        risks: Mapping[str, Risk] | None = None,
        target_args: Mapping[str, str] | None = None,
        prices: PriceTable | str | Path | None = None,
        enforce: bool = True,
    ) -> None:
        self.monitor = monitor
        self.policy = ToolPolicy(risks, target_args)
        self.pricing = Pricing(prices)
        self.enforce = enforce
        self._tools: dict[UUID, _ToolRun] = {}
        self._models: dict[UUID, _ModelRun] = {}
        self._lock = threading.Lock()

    # -- tools --------------------------------------------------------------------------------

    def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Refuse the call if the agent is halted or the tool revoked; else note its start."""
        action = str((serialized or {}).get("name") or kwargs.get("name") or "tool")[:128]
        risk = self.policy.risk(action)
        target = guarded(
            "reading a tool's target",
            lambda: self.policy.target(action, inputs if inputs is not None else input_str),
        )
        if self.enforce:
            # Raises AgentHalted / PermissionRevoked (after a "denied" event): the tool does
            # not run and the exception leaves the tool's invoke.
            self.monitor.check(action, kind="tool", risk=risk, target=target)
            # waits for a person when the approval requirements match (docs/approvals.md);
            # raises ApprovalDenied / ApprovalTimedOut (after a "denied" event) otherwise
            decision = self.monitor.approve_blocking(
                ToolCall(action=action, kind="tool", risk=risk, target=target)
            )
        else:
            decision = None
        run = _ToolRun(action, risk, target, time.perf_counter())
        if decision is not None:
            run = _ToolRun(
                action, risk, target, time.perf_counter(), decision.decided_by, decision.request_id
            )
        with self._lock:
            self._tools[run_id] = run

    def on_tool_end(
        self,
        output: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Emit the call's event: ``ok``, or ``error`` for a handled tool error message."""
        with self._lock:
            run = self._tools.pop(run_id, None)
        if run is None:
            return
        failed = getattr(output, "status", None) == "error"  # ToolMessage of a handled error
        self.monitor.emit(
            run.action,
            kind="tool",
            status="error" if failed else "ok",
            error=guarded("reading a tool error", lambda: _text(output)) if failed else None,
            risk=run.risk,
            target=run.target,
            approved_by=run.approved_by,
            latency_ms=(time.perf_counter() - run.started) * 1000.0,
            attributes=None if run.approval_id is None else {"approval_id": run.approval_id},
        )

    def on_tool_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Emit the call's event with status ``error`` and the exception."""
        with self._lock:
            run = self._tools.pop(run_id, None)
        if run is None:
            return
        self.monitor.emit(
            run.action,
            kind="tool",
            status="error",
            error=error,
            risk=run.risk,
            target=run.target,
            approved_by=run.approved_by,
            latency_ms=(time.perf_counter() - run.started) * 1000.0,
            attributes=None if run.approval_id is None else {"approval_id": run.approval_id},
        )

    # -- models -------------------------------------------------------------------------------

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Note a chat model call's start and the model it names."""
        self._model_start("chat", run_id, serialized, metadata, kwargs)

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Note a text-completion model call's start and the model it names."""
        self._model_start("text_completion", run_id, serialized, metadata, kwargs)

    def on_llm_end(
        self,
        response: LLMResult,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Emit the model call's event: model, tokens, cost and latency."""
        with self._lock:
            run = self._models.pop(run_id, None)
        if run is None:
            return
        latency_ms = (time.perf_counter() - run.started) * 1000.0
        found = guarded("reading a model's usage", lambda: _usage(response))
        model, input_tokens, output_tokens = found or (None, 0, 0)
        model = model or run.model or "unknown"
        cost = guarded(
            "pricing a model call",
            lambda: self.pricing.cost(model, input_tokens, output_tokens),
        )
        self.monitor.record(
            run.action,
            model=model[:128],
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=cost,
            latency_ms=latency_ms,
        )

    def on_llm_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Emit the failed model call's event (status ``error``)."""
        with self._lock:
            run = self._models.pop(run_id, None)
        if run is None:
            return
        self.monitor.record(
            run.action,
            model=(run.model or "unknown")[:128],
            status="error",
            error=error,
            latency_ms=(time.perf_counter() - run.started) * 1000.0,
        )

    def _model_start(
        self,
        action: str,
        run_id: UUID,
        serialized: Mapping[str, Any] | None,
        metadata: Mapping[str, Any] | None,
        extra: Mapping[str, Any],
    ) -> None:
        model = guarded("reading a model's name", lambda: _model_name(serialized, metadata, extra))
        with self._lock:
            self._models[run_id] = _ModelRun(action, model, time.perf_counter())


def _text(value: Any) -> str:
    content = getattr(value, "content", value)
    return content if isinstance(content, str) else str(content)


def _model_name(
    serialized: Mapping[str, Any] | None,
    metadata: Mapping[str, Any] | None,
    extra: Mapping[str, Any],
) -> str | None:
    """The model a call names before it runs: LangSmith metadata, invocation parameters."""
    params = extra.get("invocation_params") or {}
    init = (serialized or {}).get("kwargs") or {}
    for source, key in (
        (metadata or {}, "ls_model_name"),
        (params, "model"),
        (params, "model_name"),
        (init, "model"),
        (init, "model_name"),
    ):
        value = source.get(key) if isinstance(source, Mapping) else None
        if isinstance(value, str) and value:
            return value
    return None


def _usage(response: LLMResult) -> tuple[str | None, int, int]:
    """Model name and tokens a finished call reports (message usage, else ``llm_output``)."""
    model: str | None = None
    input_tokens = output_tokens = 0
    from_messages = False
    for generations in response.generations:
        for generation in generations:
            if not isinstance(generation, ChatGeneration):
                continue
            message = generation.message
            usage = getattr(message, "usage_metadata", None)
            if usage:
                tokens = tokens_of(usage)
                input_tokens += tokens[0]
                output_tokens += tokens[1]
                from_messages = True
            meta = message.response_metadata or {}
            name = meta.get("model_name") or meta.get("model")
            if isinstance(name, str) and name and model is None:
                model = name
    output = response.llm_output or {}
    if not from_messages:
        usage_map = output.get("token_usage") or output.get("usage") or {}
        if isinstance(usage_map, Mapping):
            input_tokens, output_tokens = tokens_of(usage_map)
    if model is None:
        name = output.get("model_name") or output.get("model")
        if isinstance(name, str) and name:
            model = name
    return model, input_tokens, output_tokens
