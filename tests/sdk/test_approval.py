"""The SDK's approval parts without a broker: the published policy, and what cannot wait."""

from __future__ import annotations

import pytest

from agentwatch.schemas.approvals import POLICY_KEY, ApprovalPolicy, ApprovalRequirement
from agentwatch.schemas.signing import ControlSigner, ControlVerifier
from agentwatch.sdk import ApprovalDenied, Monitor
from agentwatch.sdk.approval import PolicyBook
from agentwatch.sdk.tools import ToolCall


def policy(name: str, version: int) -> ApprovalPolicy:
    return ApprovalPolicy(
        requirements=[ApprovalRequirement(name=name, actions=["pay.*"])], version=version
    )


def test_policy_book_obeys_only_signed_newer_policies() -> None:
    signer = ControlSigner.generate()
    book = PolicyBook(ControlVerifier([signer.public_key]))
    book.apply_record("c", 0, 0, POLICY_KEY, policy("unsigned", 5).model_dump_json().encode())
    assert book.policy.requirements == [] and book.rejected == 1
    forged = policy("forged", 6).signed(ControlSigner.generate())
    book.apply_record("c", 0, 1, POLICY_KEY, forged.model_dump_json().encode())
    assert book.policy.requirements == [] and book.rejected == 2
    book.apply_record("c", 0, 2, POLICY_KEY, policy("v7", 7).signed(signer).model_dump_json())
    assert [r.name for r in book.policy.requirements] == ["v7"]
    book.apply_record("c", 0, 3, POLICY_KEY, policy("v6", 6).signed(signer).model_dump_json())
    assert [r.name for r in book.policy.requirements] == ["v7"]  # a replayed older policy
    book.apply_record("c", 0, 4, b"bot-1", policy("x", 9).signed(signer).model_dump_json())
    book.apply_record("c", 0, 5, POLICY_KEY, b"{not json")
    assert [r.name for r in book.policy.requirements] == ["v7"] and book.rejected == 3


def test_local_requirements_come_first() -> None:
    monitor = Monitor("bot-1", approvals=policy("local", 0))
    monitor.policy_book.policy = ApprovalPolicy(
        requirements=[ApprovalRequirement(name="published", risks=["high"])]
    )
    gate = monitor.gate
    found = gate.requirement(ToolCall("pay.refund", "tool", "high", None))
    assert found is not None and found.name == "local"
    found = gate.requirement(ToolCall("search", "tool", "high", None))
    assert found is not None and found.name == "published"
    assert gate.requirement(ToolCall("search", "tool", "low", None)) is None


def test_plain_tool_of_an_asyncio_monitor_is_denied_not_blocked() -> None:
    monitor = Monitor("bot-1", approvals=policy("local", 0), buffer_size=10)
    ran: list[str] = []

    @monitor.tool(name="pay.refund", risk="high")
    def refund() -> None:
        ran.append("refund")

    @monitor.tool(name="search")
    def search() -> str:
        return "ok"

    with pytest.raises(ApprovalDenied, match="make the tool async, or use SyncMonitor"):
        refund()
    assert ran == []
    assert search() == "ok"
    assert monitor.stats["emitted"] == 2  # the denied event and the search


async def test_gate_obeys_only_signed_decisions_for_its_own_agent() -> None:
    import asyncio
    from datetime import UTC, datetime

    from agentwatch.schemas.approvals import ApprovalDecision

    signer = ControlSigner.generate()
    monitor = Monitor("bot-1", control_verifier=ControlVerifier([signer.public_key]))
    gate = monitor.gate
    waiter: asyncio.Future[ApprovalDecision] = asyncio.get_running_loop().create_future()
    gate._waiting["req00001"] = waiter

    def decision(**fields: object) -> ApprovalDecision:
        values: dict[str, object] = {
            "request_id": "req00001",
            "agent_id": "bot-1",
            "action": "pay.refund",
            "outcome": "approved",
            "decided_by": "slack:alice",
            "via": "slack",
            "decided_at": datetime.now(UTC),
        }
        values.update(fields)
        return ApprovalDecision(**values)  # type: ignore[arg-type]

    gate._on_record(decision().model_dump_json().encode())  # unsigned
    gate._on_record(decision().signed(ControlSigner.generate()).model_dump_json().encode())
    tampered = decision().signed(signer).model_copy(update={"decided_by": "mallory"})
    gate._on_record(tampered.model_dump_json().encode())
    gate._on_record(decision(agent_id="bot-2").signed(signer).model_dump_json().encode())
    gate._on_record(b"{broken")
    gate._on_record(decision(request_id="req99999").signed(signer).model_dump_json().encode())
    assert not waiter.done()
    assert gate.counters.get("approvals_rejected_records") == 5
    genuine = decision().signed(signer)
    gate._on_record(genuine.model_dump_json().encode())
    assert waiter.done() and waiter.result() == genuine
