"""What an agent process imports: emit one event per action, enforce halt/revoke locally.

Install with ``pip install 'agentwatch[sdk]'`` (aiokafka, pydantic, cryptography, orjson; no
faust, river, scikit-learn or numpy). Wrap tools with :meth:`Monitor.tool` (asyncio) or
:meth:`SyncMonitor.tool` (threads); a halted agent's tool raises :class:`AgentHalted`, a
revoked action :class:`PermissionRevoked`, and every call becomes an ``ActionEvent``.
:func:`context` attaches ``session_id`` / ``approved_by`` / ``target`` to the events of a block.

Modules: :mod:`~agentwatch.sdk.errors`, :mod:`~agentwatch.sdk.call_context`,
:mod:`~agentwatch.sdk.control` (verified control state), :mod:`~agentwatch.sdk.follower`
(control-topic consumer), :mod:`~agentwatch.sdk.emitter` (event buffer and sender),
:mod:`~agentwatch.sdk.tools` (the tool wrapper and its hooks), :mod:`~agentwatch.sdk.surface`,
:mod:`~agentwatch.sdk.approval` (approval gates), :mod:`~agentwatch.sdk.monitor` and
:mod:`~agentwatch.sdk.sync`.
"""

from agentwatch.sdk.call_context import context
from agentwatch.sdk.errors import (
    AgentHalted,
    ApprovalDenied,
    ApprovalTimedOut,
    ControlError,
    ControlUnavailable,
    PermissionRevoked,
)
from agentwatch.sdk.monitor import Monitor
from agentwatch.sdk.sync import SyncMonitor

__all__ = [
    "AgentHalted",
    "ApprovalDenied",
    "ApprovalTimedOut",
    "ControlError",
    "ControlUnavailable",
    "Monitor",
    "PermissionRevoked",
    "SyncMonitor",
    "context",
]
