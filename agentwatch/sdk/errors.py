"""Why a tool did not run: the exceptions the SDK raises into the agent."""

from __future__ import annotations

from typing import Any

__all__ = [
    "AgentHalted",
    "ApprovalDenied",
    "ApprovalTimedOut",
    "ControlError",
    "ControlUnavailable",
    "PermissionRevoked",
]


class ControlError(RuntimeError):
    """The agent's control state forbids what it tried to do; the tool did not run."""


class AgentHalted(ControlError):
    """The agent is halted: no tool may run until someone resumes it.

    Examples
    --------
    >>> err = AgentHalted("bot-1", "cost 40x baseline", "inc-7")
    >>> print(err)  # doctest: +NORMALIZE_WHITESPACE
    agent 'bot-1' is halted by agentwatch (incident inc-7): cost 40x baseline. The tool was
    not run. Once the cause is understood, resume it with: agentwatch agents resume bot-1
    """

    def __init__(self, agent_id: str, reason: str = "", incident_id: str | None = None) -> None:
        self.agent_id = agent_id
        self.reason = reason
        self.incident_id = incident_id
        where = f" (incident {incident_id})" if incident_id else ""
        super().__init__(
            f"agent {agent_id!r} is halted by agentwatch{where}: "
            f"{reason or 'no reason given'}. The tool was not run. Once the cause is "
            f"understood, resume it with: agentwatch agents resume {agent_id}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.agent_id, self.reason, self.incident_id))


class PermissionRevoked(ControlError):
    """One action was revoked for this agent; other actions still run.

    Examples
    --------
    >>> print(PermissionRevoked("bot-1", "send_email", "spam burst"))
    ... # doctest: +NORMALIZE_WHITESPACE
    agent 'bot-1' may not run 'send_email': permission revoked by agentwatch (spam burst). The
    tool was not run. To allow it again: agentwatch agents grant bot-1 send_email
    """

    def __init__(self, agent_id: str, action: str, reason: str = "") -> None:
        self.agent_id = agent_id
        self.action = action
        self.reason = reason
        super().__init__(
            f"agent {agent_id!r} may not run {action!r}: permission revoked by agentwatch "
            f"({reason or 'no reason given'}). The tool was not run. To allow it again: "
            f"agentwatch agents grant {agent_id} {action}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.agent_id, self.action, self.reason))


class ControlUnavailable(ControlError):
    """Raised at start when ``require_control=True`` and the control topic could not be read."""


class ApprovalDenied(ControlError):
    """The call needed a person's approval and did not get it; the tool did not run.

    Examples
    --------
    >>> print(ApprovalDenied("bot-1", "payments.refund", "slack:bob", "not today", "r-1"))
    ... # doctest: +NORMALIZE_WHITESPACE
    agent 'bot-1' may not run 'payments.refund': approval denied by slack:bob (not today;
    request r-1). The tool was not run.
    """

    def __init__(
        self,
        agent_id: str,
        action: str,
        decided_by: str = "",
        reason: str = "",
        request_id: str = "",
    ) -> None:
        self.agent_id = agent_id
        self.action = action
        self.decided_by = decided_by
        self.reason = reason
        self.request_id = request_id
        super().__init__(self._message())

    def _message(self) -> str:
        why = "; ".join(x for x in (self.reason, f"request {self.request_id}") if x)
        return (
            f"agent {self.agent_id!r} may not run {self.action!r}: approval denied by "
            f"{self.decided_by or 'agentwatch'} ({why}). The tool was not run."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        args = (self.agent_id, self.action, self.decided_by, self.reason, self.request_id)
        return (type(self), args)


class ApprovalTimedOut(ApprovalDenied):
    """Nobody approved the call in time (or no worker answered): it is denied."""

    def _message(self) -> str:
        return (
            f"agent {self.agent_id!r} may not run {self.action!r}: nobody approved it in time "
            f"({self.reason or 'timed out'}; request {self.request_id}). The tool was not run; "
            f"see `agentwatch approvals list`."
        )
