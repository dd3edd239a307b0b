"""The MCP gateway: watch and stop any agent's MCP tool calls without touching the agent.

``agentwatch mcp-proxy`` sits between an MCP client and server (stdio: it starts the server;
streamable HTTP: a reverse proxy in front of the server's endpoint) and copies every message
through unchanged, except ``tools/call``: a halted agent's or a revoked tool's call is answered
by the gateway with a tool error the client shows and never reaches the server; every other
call is forwarded, timed and reported as one ``ActionEvent`` (status, latency, risk from the
risk map, target). Enforcement follows the agent's signed control state exactly as the SDK
does (:mod:`agentwatch.sdk.control`), so it holds whatever the agent's code does.

Modules: :mod:`~agentwatch.mcp.policy` (risk map), :mod:`~agentwatch.mcp.gate` (decide and
report a call), :mod:`~agentwatch.mcp.stdio`, :mod:`~agentwatch.mcp.http` and
:mod:`~agentwatch.mcp.sse` (transports), :mod:`~agentwatch.mcp.service` (run it). Install
with ``pip install 'agentwatch[mcp]'``; docs/mcp.md shows client configurations.
"""

from agentwatch.mcp.gate import PendingCall, ToolCallGate, refusal_text
from agentwatch.mcp.policy import PolicyError, ToolPolicy, load_policy
from agentwatch.mcp.service import ProxyError, ProxyOptions, run_proxy

__all__ = [
    "PendingCall",
    "PolicyError",
    "ProxyError",
    "ProxyOptions",
    "ToolCallGate",
    "ToolPolicy",
    "load_policy",
    "refusal_text",
    "run_proxy",
]
