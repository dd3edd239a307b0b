"""The gateway's decision and report for each ``tools/call``, independent of the transport.

:class:`ToolCallGate` asks the agent's verified control state (an
:class:`~agentwatch.sdk.surface.AgentSurface`: a :class:`~agentwatch.sdk.Monitor`'s control
book and event emitter) whether a call may run. A refused call is answered at once with a tool
result the client shows (``isError: true``, a text saying why) and a ``denied`` event; an
admitted call becomes a :class:`PendingCall` that the transport forwards and later settles with
the server's answer (one event with status, latency, risk and target) or abandons (the client
cancelled, the server went away).

Why a tool result and not a JSON-RPC error: the MCP specification (server/tools, "Error
Handling") reserves protocol errors for unknown tools, invalid arguments and server faults,
and asks that errors a client should let the model see and act on come back as a result with
``isError: true`` ("otherwise the LLM would not be able to see that an error occurred").
Clients hand such results to the model and show them in the conversation, whereas many
clients report a JSON-RPC error only as a generic failure. A refusal by policy is exactly
such an error: the model must learn that the tool did not run and why, and stop retrying.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from mcp_types import (
    CallToolResult,
    JSONRPCError,
    JSONRPCRequest,
    JSONRPCResponse,
    RequestId,
    TextContent,
)

from agentwatch.mcp.policy import ToolPolicy
from agentwatch.schemas import ActionEvent
from agentwatch.sdk._support import Counters, Risk, Status, clip
from agentwatch.sdk.call_context import Scalar, context
from agentwatch.sdk.errors import (
    AgentHalted,
    ApprovalDenied,
    ApprovalTimedOut,
    ControlError,
    PermissionRevoked,
)
from agentwatch.sdk.surface import AgentSurface
from agentwatch.sdk.tools import ToolCall

__all__ = [
    "GATE_COUNTERS",
    "REFUSAL_META_KEY",
    "PendingCall",
    "ToolCallGate",
    "refusal_text",
    "server_name_of",
]

TOOLS_CALL = "tools/call"
REFUSAL_META_KEY = "agentwatch/refusal"
"""``_meta`` key of a refusal result: ``{"reason": "halted"|"revoked", "agent_id", ...}``."""
GATE_COUNTERS = ("calls", "refused", "ok", "error", "abandoned", "unfinished")
"""Counters of a :class:`ToolCallGate`: ``calls`` seen, ``refused`` by the control state,
answered ``ok`` or ``error``, ``abandoned`` (cancelled, disconnected, server gone) and
``unfinished`` rounds (``resultType: input_required``, the client calls again)."""


@dataclass(frozen=True)
class PendingCall:
    """An admitted ``tools/call`` on its way to the server."""

    request_id: RequestId
    tool: str
    risk: Risk | None
    target: str | None
    session_id: str | None
    started: float
    approved_by: str | None = None
    """Who approved the call, when the rules' approval requirements matched it."""
    approval_id: str | None = None


def refusal_text(denial: ControlError, tool: str) -> str:
    """What the client (and the model) reads instead of the tool's result.

    Examples
    --------
    >>> print(refusal_text(AgentHalted("bot-1", "cost 40x baseline", "inc-7"), "send_email"))
    ... # doctest: +NORMALIZE_WHITESPACE
    halted by agentwatch: cost 40x baseline (incident inc-7). The tool 'send_email' was not
    run: agent 'bot-1' may run no tool until an operator resumes it.
    >>> print(refusal_text(PermissionRevoked("bot-1", "send_email", "spam"), "send_email"))
    ... # doctest: +NORMALIZE_WHITESPACE
    revoked by agentwatch: spam. The tool 'send_email' was not run: agent 'bot-1' may not use
    it until an operator grants it again; its other tools still work.
    """
    if isinstance(denial, AgentHalted):
        incident = f" (incident {denial.incident_id})" if denial.incident_id else ""
        return (
            f"halted by agentwatch: {denial.reason or 'no reason given'}{incident}. The tool "
            f"{tool!r} was not run: agent {denial.agent_id!r} may run no tool until an operator "
            "resumes it."
        )
    if isinstance(denial, PermissionRevoked):
        return (
            f"revoked by agentwatch: {denial.reason or 'no reason given'}. The tool {tool!r} was "
            f"not run: agent {denial.agent_id!r} may not use it until an operator grants it "
            "again; its other tools still work."
        )
    if isinstance(denial, ApprovalDenied):
        who = (
            "nobody approved it in time"
            if isinstance(denial, ApprovalTimedOut)
            else (f"denied by {denial.decided_by or 'agentwatch'}")
        )
        why = f" ({denial.reason})" if denial.reason else ""
        return (
            f"not approved by agentwatch: {who}{why}. The tool {tool!r} was not run: it needs "
            f"a person's approval for agent {denial.agent_id!r}."
        )
    return f"refused by agentwatch: {denial}. The tool {tool!r} was not run."


def server_name_of(result: Mapping[str, Any]) -> str | None:
    """``serverInfo.name`` of an ``initialize`` (or ``server/discover``) result, if any."""
    info = result.get("serverInfo")
    name = info.get("name") if isinstance(info, Mapping) else None
    return clip(name, 128) if isinstance(name, str) and name else None


def _first_text(result: Mapping[str, Any]) -> str | None:
    content = result.get("content")
    if isinstance(content, list):
        for block in content:
            if isinstance(block, Mapping) and block.get("type") == "text":
                text = block.get("text")
                if isinstance(text, str) and text:
                    return text
    return None


class ToolCallGate:
    """Admits or refuses ``tools/call`` requests and reports each call as an event.

    Parameters
    ----------
    surface
        The agent's control state and emitter (a started :class:`~agentwatch.sdk.Monitor`).
    policy
        Risk and target of each tool (the risk map).
    transport
        ``stdio`` or ``http``: the ``mcp.transport`` attribute of events.
    clock
        Seconds, for latencies (``time.perf_counter``).

    Examples
    --------
    >>> from mcp_types import JSONRPCRequest, JSONRPCResponse
    >>> from agentwatch.sdk import Monitor
    >>> monitor = Monitor("bot-1")
    >>> gate = ToolCallGate(monitor, ToolPolicy.from_mapping({"search": "low"}), "stdio")
    >>> call = gate.admit(JSONRPCRequest(jsonrpc="2.0", id=1, method="tools/call",
    ...                   params={"name": "search", "arguments": {"q": "kafka"}}))
    >>> isinstance(call, PendingCall)
    True
    >>> event = gate.finish(call, JSONRPCResponse(jsonrpc="2.0", id=1,
    ...                     result={"content": [], "isError": False}))
    >>> event.action, event.status, event.risk, event.attributes["mcp.transport"]
    ('search', 'ok', 'low', 'stdio')
    """

    def __init__(
        self,
        surface: AgentSurface,
        policy: ToolPolicy,
        transport: str,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.surface = surface
        self.policy = policy
        self.transport = transport
        self.clock = clock
        self.server_name: str | None = None
        self.counters = Counters(GATE_COUNTERS)

    @staticmethod
    def is_tool_call(message: object) -> bool:
        """Whether ``message`` is a ``tools/call`` request."""
        return isinstance(message, JSONRPCRequest) and message.method == TOOLS_CALL

    def _attributes(self) -> dict[str, Scalar]:
        attributes: dict[str, Scalar] = {"mcp.transport": self.transport}
        if self.server_name:
            attributes["mcp.server"] = self.server_name
        return attributes

    def admit(
        self, request: JSONRPCRequest, session_id: str | None = None
    ) -> PendingCall | JSONRPCResponse:
        """Decide a ``tools/call``: the refusal to answer, or the call to forward.

        A refusal is a ``tools/call`` result with ``isError: true`` and a text saying why
        (:func:`refusal_text`), plus a ``denied`` event; the server is not asked.
        """
        self.counters.add("calls")
        params = request.params or {}
        name = params.get("name")
        tool = name if isinstance(name, str) and name else TOOLS_CALL
        raw_arguments = params.get("arguments")
        arguments = raw_arguments if isinstance(raw_arguments, Mapping) else None
        risk = self.policy.risk(tool)
        target = self.policy.target(tool, arguments)
        try:
            with context(session_id=session_id, attributes=self._attributes()):
                self.surface.check(tool, risk=risk, target=target)
        except ControlError as denial:
            self.counters.add("refused")
            return JSONRPCResponse(jsonrpc="2.0", id=request.id, result=self._refusal(denial, tool))
        return PendingCall(request.id, tool, risk, target, session_id, self.clock())

    def needs_approval(self, call: PendingCall) -> bool:
        """Whether the approval requirements (rules file, monitor) match ``call``."""
        gate = self.surface.approvals
        return gate is not None and gate.requirement(self._tool_call(call)) is not None

    @staticmethod
    def _tool_call(call: PendingCall) -> ToolCall:
        return ToolCall(action=call.tool, kind="tool", risk=call.risk, target=call.target)

    async def approve(self, call: PendingCall) -> PendingCall | JSONRPCResponse:
        """Wait for a person's approval of an admitted call (:meth:`needs_approval`).

        Returns the call to forward (carrying its approver; latency counts from now), or the
        refusal to answer (``isError: true``, and a ``denied`` event); the server is not asked.
        """
        try:
            with context(session_id=call.session_id, attributes=self._attributes()):
                decision = await self.surface.approve_call(self._tool_call(call))
        except ApprovalDenied as denial:
            self.counters.add("refused")
            result = self._refusal(denial, call.tool)
            return JSONRPCResponse(jsonrpc="2.0", id=call.request_id, result=result)
        if decision is None:
            return call
        return replace(
            call,
            started=self.clock(),
            approved_by=decision.decided_by,
            approval_id=decision.request_id,
        )

    def _refusal(self, denial: ControlError, tool: str) -> dict[str, Any]:
        reason = "halted" if isinstance(denial, AgentHalted) else "revoked"
        if isinstance(denial, ApprovalDenied):
            reason = "approval_timeout" if isinstance(denial, ApprovalTimedOut) else "not_approved"
        meta: dict[str, Any] = {
            "reason": reason,
            "agent_id": getattr(denial, "agent_id", None),
            "tool": tool,
        }
        state = self.surface.state
        if state is not None:
            meta["control_version"] = state.version
            if state.incident_id:
                meta["incident_id"] = state.incident_id
        result = CallToolResult(
            content=[TextContent(type="text", text=refusal_text(denial, tool))],
            is_error=True,
            _meta={REFUSAL_META_KEY: meta},
        )
        return result.model_dump(by_alias=True, mode="json", exclude_none=True)

    def finish(
        self, call: PendingCall, answer: JSONRPCResponse | JSONRPCError
    ) -> ActionEvent | None:
        """The server answered ``call``: emit its event (``None`` for an unfinished round or
        an invalid event)."""
        latency_ms = max(0.0, (self.clock() - call.started) * 1000.0)
        attributes = self._attributes()
        error: str | None = None
        status: Status = "ok"
        if isinstance(answer, JSONRPCError):
            status = "error"
            error = f"MCP error {answer.error.code}: {answer.error.message}"
        else:
            result = answer.result
            if result.get("resultType") == "input_required":
                # the server asks the client for input; the client calls again with it
                self.counters.add("unfinished")
                return None
            if result.get("isError") is True:
                status = "error"
                error = _first_text(result) or "the tool reported an error (isError)"
            task = result.get("task")
            if isinstance(task, Mapping) and isinstance(task.get("taskId"), str):
                attributes["mcp.task_id"] = clip(task["taskId"], 128)
        self.counters.add(status)
        if call.approval_id is not None:
            attributes["approval_id"] = call.approval_id
        return self.surface.emit(
            call.tool,
            status=status,
            error=error,
            risk=call.risk,
            target=call.target,
            approved_by=call.approved_by,
            session_id=call.session_id,
            latency_ms=latency_ms,
            attributes=attributes,
        )

    def abandon(self, call: PendingCall, reason: str) -> ActionEvent | None:
        """``call`` will get no answer (cancelled, disconnected, server gone): an ``error``
        event with ``reason``."""
        self.counters.add("abandoned")
        return self.surface.emit(
            call.tool,
            status="error",
            error=reason,
            risk=call.risk,
            target=call.target,
            session_id=call.session_id,
            latency_ms=max(0.0, (self.clock() - call.started) * 1000.0),
            attributes=self._attributes(),
        )
