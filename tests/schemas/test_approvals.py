"""Approval wire models: requirement matching, signed policies and decisions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agentwatch.schemas.approvals import (
    ApprovalDecision,
    ApprovalPolicy,
    ApprovalRequirement,
    decision_bytes,
    policy_bytes,
)
from agentwatch.schemas.signing import ControlSigner, ControlVerifier, VerificationError


@pytest.mark.parametrize(
    ("action", "risk", "target", "expected"),
    [
        ("payments.refund", "high", "acct:1", "payments"),
        ("payments.refund", "low", "acct:1", None),  # risk must match too
        ("payments.refund", None, "acct:1", None),
        ("fs.write", "low", "/etc/passwd", "system-files"),
        ("fs.write", "low", "/home/a", None),
        ("fs.write", "low", None, None),  # a call without target never matches targets
        ("search", "critical", None, "critical"),
    ],
)
def test_first_matching_requirement(
    action: str, risk: str | None, target: str | None, expected: str | None
) -> None:
    policy = ApprovalPolicy(
        requirements=[
            ApprovalRequirement(name="payments", actions=["payments.*"], risks=["high"]),
            ApprovalRequirement(name="system-files", actions=["fs.*"], targets=["/etc/*"]),
            ApprovalRequirement(name="critical", risks=["critical"]),
        ]
    )
    found = policy.match(action, risk, target)
    assert (found.name if found else None) == expected


def test_signed_policy_and_decision_verify_and_detect_tampering() -> None:
    signer, other = ControlSigner.generate(), ControlSigner.generate()
    verifier = ControlVerifier([signer.public_key])
    policy = ApprovalPolicy(
        requirements=[ApprovalRequirement(name="p", actions=["x"])], version=5
    ).signed(signer)
    policy.verify(verifier)
    loosened = policy.model_copy(update={"requirements": []})
    with pytest.raises(VerificationError, match="bad_signature"):
        loosened.verify(verifier)
    with pytest.raises(VerificationError, match="unknown_key"):
        policy.model_copy(update={"requirements": []}).signed(other).verify(verifier)
    with pytest.raises(VerificationError, match="unsigned"):
        ApprovalPolicy().verify(verifier)
    decision = ApprovalDecision(
        request_id="req00001",
        agent_id="bot",
        action="x",
        outcome="denied",
        decided_by="bob",
        via="api",
        decided_at=datetime(2026, 1, 1, tzinfo=UTC),
    ).signed(signer)
    decision.verify(verifier)
    with pytest.raises(VerificationError, match="bad_signature"):
        decision.model_copy(update={"outcome": "approved"}).verify(verifier)
    with pytest.raises(VerificationError, match="bad_signature"):
        decision.model_copy(update={"decided_by": "mallory"}).verify(verifier)
    # each kind signs its own context: one never passes for the other
    assert decision_bytes(decision).startswith(b"agentwatch.approval-decision.v1\n")
    assert policy_bytes(policy).startswith(b"agentwatch.approval-policy.v1\n")
