"""What an agent calls on a monitor: check, wrap tools, record LLM calls, emit events.

:class:`AgentSurface` holds one agent's :class:`~agentwatch.sdk.control.ControlBook` (may this
action run?) and :class:`~agentwatch.sdk.emitter.EventEmitter` (send its events), and offers the
calls an agent makes on them. :class:`~agentwatch.sdk.Monitor` (asyncio) and
:class:`~agentwatch.sdk.SyncMonitor` (threads) differ only in how they run the Kafka clients.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

from agentwatch.schemas import ActionEvent, ControlState
from agentwatch.schemas.approvals import ApprovalDecision, ApprovalRequirement
from agentwatch.sdk._support import KINDS, RISKS, Kind, Risk, Status, clip
from agentwatch.sdk.approval import ApprovalGate
from agentwatch.sdk.call_context import Scalar, context, current_context
from agentwatch.sdk.control import ControlBook
from agentwatch.sdk.emitter import EventEmitter
from agentwatch.sdk.errors import ApprovalDenied, ControlError
from agentwatch.sdk.tools import ToolCall, wrap_tool

__all__ = ["AgentSurface"]

F = TypeVar("F", bound=Callable[..., Any])


class _Enforce:
    """The tool hooks of a surface: refuse what the control state forbids, wait for approval
    where the rules want it, record the rest (an approved call carries its approver)."""

    def __init__(self, surface: AgentSurface) -> None:
        self.surface = surface
        self._approved: dict[int, ApprovalDecision] = {}

    def before(self, call: ToolCall) -> None:
        self.surface.check(call.action, kind=call.kind, risk=call.risk, target=call.target)
        decision = self.surface._approve_blocking(call)
        if decision is not None:
            self._approved[id(call)] = decision

    async def abefore(self, call: ToolCall) -> None:
        self.surface.check(call.action, kind=call.kind, risk=call.risk, target=call.target)
        decision = await self.surface.approve_call(call)
        if decision is not None:
            self._approved[id(call)] = decision

    def after(self, call: ToolCall, latency_ms: float, exc: BaseException | None) -> None:
        decision = self._approved.pop(id(call), None)
        self.surface.emit(
            call.action,
            kind=call.kind,
            status="ok" if exc is None else "error",
            error=exc,
            risk=call.risk,
            target=call.target,
            latency_ms=latency_ms,
            approved_by=None if decision is None else decision.decided_by,
            attributes=None if decision is None else {"approval_id": decision.request_id},
        )


class AgentSurface:
    """The agent-facing calls over one control book and one emitter.

    Subclasses set :attr:`agent_id`, :attr:`control` and :attr:`emitter` in their constructor.
    """

    agent_id: str
    control: ControlBook
    emitter: EventEmitter
    approvals: ApprovalGate | None = None
    """Asks before calls the approval requirements match (``None``: never asks)."""

    @property
    def state(self) -> ControlState | None:
        """The agent's latest control state, or ``None`` (never restricted, or cleared)."""
        return self.control.state

    @property
    def stats(self) -> dict[str, int]:
        """Counters: ``emitted`` (accepted into the buffer), ``sent`` (acknowledged by the
        broker), ``dropped`` (buffer overflow, rejected by the broker, or lost at close),
        ``buffered`` (waiting or in flight), ``send_errors`` (failed delivery attempts),
        ``connect_errors`` (failed producer connections), ``rejected`` (invalid or oversized
        events never buffered), ``control_errors`` (malformed control messages skipped) and
        ``control_rejected`` (control records refused: not authentic or implausible), split
        by reason into ``control_rejected_unsigned``, ``..._unknown_key``,
        ``..._bad_signature`` and ``..._implausible``.
        """
        gate = {} if self.approvals is None else self.approvals.counters.snapshot()
        return {**self.emitter.stats, **self.control.counters.snapshot(), **gate}

    def allows(self, action: str) -> bool:
        """Whether ``action`` may run now (no event, no exception)."""
        return self.control.allows(action)

    def check(
        self,
        action: str,
        *,
        kind: Kind = "tool",
        risk: Risk | None = None,
        target: str | None = None,
    ) -> None:
        """Raise :class:`AgentHalted` or :class:`PermissionRevoked` if ``action`` may not run.

        For agents that do not use :meth:`tool`: call it right before the action. A refusal
        emits a ``denied`` event, as the tool wrapper does.

        Examples
        --------
        >>> from agentwatch.sdk import Monitor
        >>> Monitor("bot-1").check("send_email")  # no control state: allowed
        """
        denial = self.control.denial(action)
        if denial is not None:
            self._emit_denied(action, kind, risk, target, denial)
            raise denial

    async def approve_call(self, call: ToolCall) -> ApprovalDecision | None:
        """Wait for approval of ``call`` if a requirement matches it (else return ``None``).

        Returns the approving decision (its ``decided_by`` is the approver); raises
        :class:`~agentwatch.sdk.ApprovalDenied` (or ``ApprovalTimedOut``) and emits a
        ``denied`` event otherwise. Framework adapters call it before running a tool.
        """
        gate = self.approvals
        requirement = None if gate is None else gate.requirement(call)
        if gate is None or requirement is None:
            return None
        try:
            return await self._await_approval(gate, call, requirement)
        except ApprovalDenied as denial:
            self._emit_denied(call.action, call.kind, call.risk, call.target, denial)
            raise

    async def _await_approval(
        self, gate: ApprovalGate, call: ToolCall, requirement: ApprovalRequirement
    ) -> ApprovalDecision:
        """Ask ``gate`` on the running loop (a surface whose clients live elsewhere overrides)."""
        return await gate.ask(call, requirement, self._session_for_request())

    def approve_blocking(self, call: ToolCall) -> ApprovalDecision | None:
        """:meth:`approve_call` waiting in the caller's thread (callbacks that cannot await).

        A :class:`~agentwatch.sdk.SyncMonitor` waits; an asyncio
        :class:`~agentwatch.sdk.Monitor` cannot wait without blocking its own event loop and
        denies the call, saying so.
        """
        return self._approve_blocking(call)

    def _approve_blocking(self, call: ToolCall) -> ApprovalDecision | None:
        """:meth:`approve_call` for a plain function, waiting in the caller's thread."""
        gate = self.approvals
        requirement = None if gate is None else gate.requirement(call)
        if gate is None or requirement is None:
            return None
        try:
            return self._wait_approval(gate, call, requirement)
        except ApprovalDenied as denial:
            self._emit_denied(call.action, call.kind, call.risk, call.target, denial)
            raise

    def _wait_approval(
        self, gate: ApprovalGate, call: ToolCall, requirement: ApprovalRequirement
    ) -> ApprovalDecision:
        """Block until ``gate`` decides; a surface that cannot block denies."""
        raise ApprovalDenied(
            self.agent_id,
            call.action,
            "agentwatch",
            "a plain function of an asyncio Monitor cannot wait for approval without "
            "blocking the event loop: make the tool async, or use SyncMonitor",
        )

    def _session_for_request(self) -> str | None:
        return current_context().session_id or self.emitter.session_id

    def context(
        self,
        *,
        session_id: str | None = None,
        approved_by: str | None = None,
        target: str | None = None,
        attributes: Mapping[str, Scalar] | None = None,
    ) -> contextlib.AbstractContextManager[None]:
        """Same as the module-level :func:`~agentwatch.sdk.context` (shared by all monitors)."""
        return context(
            session_id=session_id, approved_by=approved_by, target=target, attributes=attributes
        )

    @overload
    def tool(self, func: F, /) -> F: ...

    @overload
    def tool(
        self,
        func: None = None,
        /,
        *,
        name: str | None = None,
        risk: Risk | None = None,
        target_arg: str | None = None,
        kind: Kind = "tool",
    ) -> Callable[[F], F]: ...

    def tool(
        self,
        func: F | None = None,
        /,
        *,
        name: str | None = None,
        risk: Risk | None = None,
        target_arg: str | None = None,
        kind: Kind = "tool",
    ) -> F | Callable[[F], F]:
        """Decorate a tool (sync or async) with enforcement and an event per call.

        Used bare (``@monitor.tool``) or with options (``@monitor.tool(risk="high")``).

        Parameters
        ----------
        func
            The tool. Coroutine functions stay coroutine functions, plain functions stay plain;
            name, docstring and signature are preserved.
        name
            The ``action`` of its events (default: the function's ``__name__``).
        risk
            Declared risk (``low`` ``medium`` ``high`` ``critical``).
        target_arg
            Name of a parameter whose value (as text, at most 1024 characters) is the event's
            ``target``: a path, URL, table or recipient.
        kind
            Event ``kind``; ``tool`` by default.

        Before each call: a halted agent raises :class:`AgentHalted`, a revoked action raises
        :class:`PermissionRevoked`; the tool does not run and a ``denied`` event is emitted.
        After it: an event with status ``ok`` or ``error`` (exception type and message) and
        ``latency_ms``; the tool's exception propagates unchanged.

        Examples
        --------
        >>> from agentwatch.sdk import Monitor
        >>> monitor = Monitor("bot-1")
        >>> @monitor.tool(name="fs.read", risk="medium", target_arg="path")
        ... def read_file(path: str) -> int:
        ...     return len(path)
        >>> read_file("/etc/hosts"), read_file.__name__
        (10, 'read_file')
        """
        if risk is not None and risk not in RISKS:
            raise ValueError(f"risk must be one of {sorted(RISKS)}, got {risk!r}")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")

        def decorate(fn: F) -> F:
            self._accept_tool(fn)
            hooks = _Enforce(self)
            return wrap_tool(fn, hooks, name=name, risk=risk, target_arg=target_arg, kind=kind)

        if func is None:
            return decorate
        return decorate(func)

    def _accept_tool(self, fn: Callable[..., Any]) -> None:
        """Raise ``TypeError`` for a function this surface cannot wrap (all are fine here)."""

    def record(
        self,
        action: str = "chat",
        *,
        model: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost_usd: float | None = None,
        latency_ms: float = 0.0,
        status: Status = "ok",
        error: str | BaseException | None = None,
        session_id: str | None = None,
        attributes: Mapping[str, Scalar] | None = None,
        kind: Kind = "llm",
    ) -> ActionEvent | None:
        """Emit one LLM call (``kind="llm"``). ``cost_usd=None`` records a cost of 0.

        Returns the event, or ``None`` if it was invalid (logged and counted, never raised).

        Examples
        --------
        >>> from agentwatch.sdk import Monitor
        >>> m = Monitor("bot-1")
        >>> e = m.record(model="gpt-4o", input_tokens=1200, output_tokens=80, cost_usd=0.004,
        ...              latency_ms=850.0)
        >>> e.kind, e.action, e.model, e.input_tokens, e.cost_usd
        ('llm', 'chat', 'gpt-4o', 1200, 0.004)
        """
        return self.emit(
            action,
            kind=kind,
            status=status,
            error=error,
            model=model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=0.0 if cost_usd is None else cost_usd,
            latency_ms=latency_ms,
            session_id=session_id,
            attributes=attributes,
        )

    def emit(
        self,
        action: str,
        *,
        kind: Kind = "tool",
        status: Status = "ok",
        error: str | BaseException | None = None,
        risk: Risk | None = None,
        target: str | None = None,
        approved_by: str | None = None,
        session_id: str | None = None,
        model: str | None = None,
        cost_usd: float = 0.0,
        input_tokens: int = 0,
        output_tokens: int = 0,
        latency_ms: float = 0.0,
        attributes: Mapping[str, Scalar] | None = None,
    ) -> ActionEvent | None:
        """Emit one event with the given fields; never blocks, never raises.

        ``event_id`` (uuid4 hex), ``ts`` (now, UTC), ``agent_id`` and ``fleet`` are filled in;
        ``session_id``, ``approved_by``, ``target`` and ``attributes`` default to the current
        :func:`context`. Free text (``error``, ``target``, ...) is truncated to the wire
        limits. Returns the event, or ``None`` if it was invalid (logged and counted in
        ``stats["rejected"]``).

        Examples
        --------
        >>> from agentwatch.sdk import Monitor
        >>> Monitor("bot-1").emit("http.get", kind="api", target="https://x.test", latency_ms=3)
        ... # doctest: +ELLIPSIS
        ActionEvent(event_id='...', ..., action='http.get', kind='api', ...)
        """
        return self.emitter.emit_fields(
            action,
            kind,
            status,
            error,
            risk,
            target,
            approved_by,
            session_id,
            model,
            cost_usd,
            input_tokens,
            output_tokens,
            latency_ms,
            attributes,
        )

    def _emit_denied(
        self,
        action: str,
        kind: Kind,
        risk: Risk | None,
        target: str | None,
        denial: ControlError,
    ) -> None:
        state = self.control.state
        attributes: dict[str, Scalar] = {}
        if isinstance(denial, ApprovalDenied):
            if denial.request_id:
                attributes["approval_id"] = denial.request_id
            self.emit(
                action,
                kind=kind,
                status="denied",
                error=clip(
                    f"{type(denial).__name__}: {denial.reason}".rstrip(": "),
                    self.emitter.max_error_chars,
                ),
                risk=risk,
                target=target,
                attributes=attributes,
            )
            return
        if state is not None:
            attributes["control_version"] = state.version
            if state.incident_id:
                attributes["incident_id"] = state.incident_id
        self.emit(
            action,
            kind=kind,
            status="denied",
            error=clip(
                f"{type(denial).__name__}: {state.reason if state else ''}".rstrip(": "),
                self.emitter.max_error_chars,
            ),
            risk=risk,
            target=target,
            attributes=attributes,
        )
