"""Approval gates on the wire: which calls need a person's approval, the asks and the answers.

``ApprovalPolicy`` (from the rules file's ``approvals`` section) is published by the workers,
signed, on the compacted control topic under the key :data:`POLICY_KEY` (``#approvals``: not a
valid agent id, so it never collides with an agent's control state). Agents read it with their
control state and ask before any call it matches.

``ApprovalRequest`` (agent to workers) and ``ApprovalDecision`` (workers to agent, signed) travel
on ``<prefix>.approvals`` (one partition, key = ``request_id``); a record's ``type`` tells which.
The first decision for a request id in that log is the decision. ``ApprovalPosted`` (worker to
workers, signed) records that Slack accepted the request's message, so a worker taking over the
partition posts the requests still missing there and none twice. Signatures use the control
signing key (:mod:`agentwatch.schemas.signing`) over a context prefix of their own, so neither
can pass for a control state or for each other.

Examples
--------
>>> policy = ApprovalPolicy(requirements=[ApprovalRequirement(
...     name="payments", actions=["payments.*"], risks=["high", "critical"])])
>>> policy.match("payments.refund", "high", None).name
'payments'
>>> policy.match("payments.refund", "low", None) is None
True
"""

from __future__ import annotations

import fnmatch
from typing import Annotated, Literal

import orjson
from pydantic import BaseModel, Field

from agentwatch.schemas._types import WIRE_CONFIG, AgentId, Name, UtcDatetime
from agentwatch.schemas.signing import ControlSigner, ControlVerifier

__all__ = [
    "DECISION_CONTEXT",
    "POLICY_CONTEXT",
    "POLICY_KEY",
    "POSTED_CONTEXT",
    "ApprovalDecision",
    "ApprovalPolicy",
    "ApprovalPosted",
    "ApprovalRequest",
    "ApprovalRequirement",
    "Outcome",
    "Risk",
    "decision_bytes",
    "policy_bytes",
    "posted_bytes",
]

POLICY_KEY = b"#approvals"
"""Control-topic key of the approval policy (never an agent id: ``#`` is not allowed there)."""
POLICY_CONTEXT = b"agentwatch.approval-policy.v1\n"
DECISION_CONTEXT = b"agentwatch.approval-decision.v1\n"
POSTED_CONTEXT = b"agentwatch.approval-posted.v1\n"

Risk = Literal["low", "medium", "high", "critical"]
Outcome = Literal["approved", "denied", "expired"]
_Glob = Annotated[str, Field(min_length=1, max_length=1024)]
_KeyId = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
_Signature = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{86}$")]


class ApprovalRequirement(BaseModel):
    """Calls that need approval: every given matcher must match (any entry of each list).

    ``actions`` and ``targets`` are shell-style globs (``payments.*``, ``/etc/*``); a call with
    no target never matches a requirement that lists targets. ``timeout_s``: how long the call
    waits for a decision before it is denied.
    """

    model_config = WIRE_CONFIG

    name: Name
    actions: Annotated[list[_Glob], Field(max_length=256)] = Field(default_factory=list)
    risks: Annotated[list[Risk], Field(max_length=4)] = Field(default_factory=list)
    targets: Annotated[list[_Glob], Field(max_length=256)] = Field(default_factory=list)
    timeout_s: Annotated[float, Field(gt=0, le=86_400)] = 300.0

    def matches(self, action: str, risk: str | None, target: str | None) -> bool:
        """Whether a call of ``action`` (declared ``risk``, on ``target``) needs approval."""
        if self.actions and not any(fnmatch.fnmatchcase(action, g) for g in self.actions):
            return False
        if self.risks and risk not in self.risks:
            return False
        return not self.targets or (
            target is not None and any(fnmatch.fnmatchcase(target, g) for g in self.targets)
        )


class ApprovalPolicy(BaseModel):
    """The approval requirements of a rules file, in file order (the first match applies)."""

    model_config = WIRE_CONFIG

    requirements: Annotated[list[ApprovalRequirement], Field(max_length=1024)] = Field(
        default_factory=list
    )
    version: Annotated[int, Field(ge=0)] = 0
    key_id: _KeyId | None = None
    signature: _Signature | None = None

    def match(
        self, action: str, risk: str | None, target: str | None
    ) -> ApprovalRequirement | None:
        """The first requirement a call matches, or ``None`` (no approval needed)."""
        for requirement in self.requirements:
            if requirement.matches(action, risk, target):
                return requirement
        return None

    def signed(self, signer: ControlSigner) -> ApprovalPolicy:
        """This policy with ``signer``'s key id and signature."""
        unsigned = self.model_copy(update={"key_id": signer.key_id, "signature": None})
        return unsigned.model_copy(update={"signature": signer.sign_bytes(policy_bytes(unsigned))})

    def verify(self, verifier: ControlVerifier) -> None:
        """Raise :class:`~agentwatch.schemas.signing.VerificationError` unless authentic."""
        verifier.verify_bytes(policy_bytes(self), self.key_id, self.signature)


class ApprovalRequest(BaseModel):
    """An agent asks before a call: who, what, where, under which requirement, until when."""

    model_config = WIRE_CONFIG

    type: Literal["request"] = "request"
    request_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
    ts: UtcDatetime
    expires_at: UtcDatetime
    agent_id: AgentId
    fleet: Name = "default"
    session_id: Annotated[str, Field(max_length=128)] | None = None
    action: Name
    kind: Literal["tool", "llm", "api", "other"] = "tool"
    risk: Risk | None = None
    target: Annotated[str, Field(max_length=1024)] | None = None
    requirement: Name
    source: Name = "sdk"


class ApprovalDecision(BaseModel):
    """The answer to one request, signed by a worker; ``decided_by`` is the approver's identity
    as the worker authenticated it (a Slack user, an API caller), never the agent's claim."""

    model_config = WIRE_CONFIG

    type: Literal["decision"] = "decision"
    request_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
    agent_id: AgentId
    action: Name
    outcome: Outcome
    decided_by: Name
    via: Literal["slack", "api", "timeout"]
    reason: Annotated[str, Field(max_length=1024)] = ""
    decided_at: UtcDatetime
    key_id: _KeyId | None = None
    signature: _Signature | None = None

    def signed(self, signer: ControlSigner) -> ApprovalDecision:
        """This decision with ``signer``'s key id and signature."""
        unsigned = self.model_copy(update={"key_id": signer.key_id, "signature": None})
        signature = signer.sign_bytes(decision_bytes(unsigned))
        return unsigned.model_copy(update={"signature": signature})

    def verify(self, verifier: ControlVerifier) -> None:
        """Raise :class:`~agentwatch.schemas.signing.VerificationError` unless authentic."""
        verifier.verify_bytes(decision_bytes(self), self.key_id, self.signature)


class ApprovalPosted(BaseModel):
    """Slack accepted the message asking for ``request_id``'s approval (signed by a worker)."""

    model_config = WIRE_CONFIG

    type: Literal["posted"] = "posted"
    request_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
    posted_at: UtcDatetime
    key_id: _KeyId | None = None
    signature: _Signature | None = None

    def signed(self, signer: ControlSigner) -> ApprovalPosted:
        """This record with ``signer``'s key id and signature."""
        unsigned = self.model_copy(update={"key_id": signer.key_id, "signature": None})
        return unsigned.model_copy(update={"signature": signer.sign_bytes(posted_bytes(unsigned))})

    def verify(self, verifier: ControlVerifier) -> None:
        """Raise :class:`~agentwatch.schemas.signing.VerificationError` unless authentic."""
        verifier.verify_bytes(posted_bytes(self), self.key_id, self.signature)


def _canonical(context: bytes, model: BaseModel) -> bytes:
    doc = model.model_dump(mode="json", exclude={"signature"})
    return context + orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def policy_bytes(policy: ApprovalPolicy) -> bytes:
    """What a policy's signature covers: context, then its JSON without ``signature``."""
    return _canonical(POLICY_CONTEXT, policy)


def decision_bytes(decision: ApprovalDecision) -> bytes:
    """What a decision's signature covers: context, then its JSON without ``signature``."""
    return _canonical(DECISION_CONTEXT, decision)


def posted_bytes(posted: ApprovalPosted) -> bytes:
    """What a posted record's signature covers: context, then its JSON without ``signature``."""
    return _canonical(POSTED_CONTEXT, posted)
