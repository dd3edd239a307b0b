"""``ControlState``: what an agent may do, on the compacted ``agentwatch.control`` topic.

Workers sign every record (``key_id``, ``signature``; see :mod:`agentwatch.schemas.signing`)
and the SDK obeys only records a key it accepts verifies.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from agentwatch.schemas._types import WIRE_CONFIG, AgentId, Name, UtcDatetime

__all__ = ["ControlState"]


class ControlState(BaseModel):
    """The full control state of one agent (key = ``agent_id``); the highest version wins.

    ``version`` strictly increases per agent: each change takes
    ``max(previous + 1, now in milliseconds)``, so versions keep increasing across worker
    restarts even if the stored state were lost, and one far in the future is implausible.
    ``key_id`` and ``signature`` (Ed25519, unpadded base64url) authenticate the record.

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> s = ControlState(agent_id="a1", halted=False, revoked=["send_email"],
    ...                  updated_at=datetime(2026, 1, 1, tzinfo=timezone.utc), updated_by="ops")
    >>> s.allows("send_email"), s.allows("search")
    (False, True)
    """

    model_config = WIRE_CONFIG

    agent_id: AgentId
    halted: bool = False
    revoked: Annotated[list[Name], Field(max_length=1024)] = Field(default_factory=list)
    reason: Annotated[str, Field(max_length=1024)] = ""
    incident_id: Annotated[str, Field(max_length=128)] | None = None
    updated_at: UtcDatetime
    updated_by: Name
    version: Annotated[int, Field(ge=0)] = 0
    key_id: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")] | None = None
    signature: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{86}$")] | None = None

    def allows(self, action: str) -> bool:
        """Whether ``action`` may run now."""
        return not self.halted and action not in self.revoked
