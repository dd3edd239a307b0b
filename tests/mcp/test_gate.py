"""The gate alone: admit or refuse a tools/call, and the event of each outcome."""

from __future__ import annotations

from typing import Any

from mcp_types import ErrorData, JSONRPCError, JSONRPCRequest, JSONRPCResponse

from agentwatch.mcp.gate import REFUSAL_META_KEY, PendingCall, ToolCallGate, server_name_of
from agentwatch.mcp.policy import ToolPolicy
from tests.mcp.conftest import RecordingMonitor

POLICY = ToolPolicy.from_mapping({"send_email": {"risk": "high", "target": "to"}})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def call(request_id: int, name: str = "send_email", **arguments: Any) -> JSONRPCRequest:
    return JSONRPCRequest(
        jsonrpc="2.0",
        id=request_id,
        method="tools/call",
        params={"name": name, "arguments": arguments or {"to": "a@b.c"}},
    )


def answer(request_id: int, **result: Any) -> JSONRPCResponse:
    return JSONRPCResponse(jsonrpc="2.0", id=request_id, result={"content": [], **result})


def test_an_admitted_call_is_timed_and_reported(monitor: RecordingMonitor) -> None:
    clock = Clock()
    gate = ToolCallGate(monitor, POLICY, "stdio", clock=clock)
    gate.server_name = "mail"
    pending = gate.admit(call(1), session_id="s-1")
    assert isinstance(pending, PendingCall)
    assert monitor.events == []  # nothing before the answer
    clock.now += 0.25
    event = gate.finish(pending, answer(1, isError=False))
    assert event is not None
    assert (event.action, event.status, event.risk, event.target) == (
        "send_email",
        "ok",
        "high",
        "a@b.c",
    )
    assert event.latency_ms == 250.0
    assert event.session_id == "s-1"
    assert event.attributes == {"mcp.transport": "stdio", "mcp.server": "mail"}


def test_errors_come_from_is_error_or_a_jsonrpc_error(monitor: RecordingMonitor) -> None:
    gate = ToolCallGate(monitor, POLICY, "http")
    one = gate.admit(call(1))
    two = gate.admit(call(2))
    three = gate.admit(call(3))
    assert isinstance(one, PendingCall) and isinstance(two, PendingCall)
    assert isinstance(three, PendingCall)
    text = [{"type": "image", "data": ""}, {"type": "text", "text": "SMTP 550: mailbox full"}]
    e1 = gate.finish(one, answer(1, isError=True, content=text))
    e2 = gate.finish(
        two,
        JSONRPCError(jsonrpc="2.0", id=2, error=ErrorData(code=-32602, message="unknown tool")),
    )
    e3 = gate.finish(three, answer(3, isError=True))
    assert e1 is not None and (e1.status, e1.error) == ("error", "SMTP 550: mailbox full")
    assert e2 is not None and (e2.status, e2.error) == ("error", "MCP error -32602: unknown tool")
    assert e3 is not None and e3.error == "the tool reported an error (isError)"
    assert gate.counters.snapshot()["error"] == 3


def test_unfinished_rounds_and_tasks(monitor: RecordingMonitor) -> None:
    gate = ToolCallGate(monitor, POLICY, "stdio")
    first = gate.admit(call(1))
    assert isinstance(first, PendingCall)
    assert gate.finish(first, answer(1, resultType="input_required", inputRequests={})) is None
    assert monitor.events == []
    assert gate.counters.get("unfinished") == 1
    task = gate.admit(call(2))
    assert isinstance(task, PendingCall)
    event = gate.finish(
        task, JSONRPCResponse(jsonrpc="2.0", id=2, result={"task": {"taskId": "t-9"}})
    )
    assert event is not None and event.attributes["mcp.task_id"] == "t-9"


def test_abandoned_calls_are_errors(monitor: RecordingMonitor) -> None:
    gate = ToolCallGate(monitor, POLICY, "stdio")
    pending = gate.admit(call(1))
    assert isinstance(pending, PendingCall)
    event = gate.abandon(pending, "cancelled by the MCP client")
    assert event is not None and (event.status, event.error) == (
        "error",
        "cancelled by the MCP client",
    )


def test_halt_refuses_every_tool_with_a_result_the_model_reads(
    monitor: RecordingMonitor,
) -> None:
    gate = ToolCallGate(monitor, POLICY, "stdio")
    monitor.set_control(7, halted=True, reason="runaway loop", incident_id="inc-3")
    for i, name in enumerate(["send_email", "search"]):
        refusal = gate.admit(call(i, name))
        assert isinstance(refusal, JSONRPCResponse)
        assert refusal.id == i
        result = refusal.result
        assert result["isError"] is True
        text = result["content"][0]["text"]
        assert text.startswith("halted by agentwatch: runaway loop (incident inc-3).")
        assert f"'{name}' was not run" in text
        assert result["_meta"][REFUSAL_META_KEY] == {
            "reason": "halted",
            "agent_id": "bot-1",
            "tool": name,
            "control_version": 7,
            "incident_id": "inc-3",
        }
    assert [(e.action, e.status) for e in monitor.events] == [
        ("send_email", "denied"),
        ("search", "denied"),
    ]
    assert monitor.events[0].risk == "high" and monitor.events[0].target == "a@b.c"
    assert monitor.events[0].attributes["incident_id"] == "inc-3"
    assert monitor.events[0].attributes["mcp.transport"] == "stdio"
    assert gate.counters.get("refused") == 2


def test_revoke_refuses_only_that_tool(monitor: RecordingMonitor) -> None:
    gate = ToolCallGate(monitor, POLICY, "stdio")
    monitor.set_control(1, revoked=["send_email"], reason="spam")
    refusal = gate.admit(call(1))
    assert isinstance(refusal, JSONRPCResponse)
    assert refusal.result["content"][0]["text"].startswith("revoked by agentwatch: spam.")
    assert refusal.result["_meta"][REFUSAL_META_KEY]["reason"] == "revoked"
    assert isinstance(gate.admit(call(2, "search")), PendingCall)
    monitor.set_control(2, reason="ok again")
    assert isinstance(gate.admit(call(3)), PendingCall)


def test_a_call_without_a_name_is_still_refused_when_halted(monitor: RecordingMonitor) -> None:
    gate = ToolCallGate(monitor, POLICY, "stdio")
    bare = JSONRPCRequest(jsonrpc="2.0", id=1, method="tools/call")
    assert isinstance(gate.admit(bare), PendingCall)  # the server answers it
    monitor.set_control(1, halted=True)
    refusal = gate.admit(bare)
    assert isinstance(refusal, JSONRPCResponse)
    assert "no reason given" in refusal.result["content"][0]["text"]


def test_server_name_of() -> None:
    assert server_name_of({"serverInfo": {"name": "toy", "version": "1"}}) == "toy"
    assert server_name_of({"serverInfo": "toy"}) is None
    assert server_name_of({}) is None
