"""Why a tool did not run: the exceptions the SDK raises into the agent."""

from __future__ import annotations

from typing import Any

__all__ = ["AgentHalted", "ControlError", "ControlUnavailable", "PermissionRevoked"]


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
