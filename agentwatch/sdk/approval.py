"""Approval before a risky call: which calls need it, asking, and waiting for the answer.

Where the requirements come from: the workers publish the ``approvals`` section of their rules
file, signed, on the compacted control topic under the key ``#approvals``
(:mod:`agentwatch.schemas.approvals`); the monitor's control follower feeds it to a
:class:`PolicyBook` with the agent's own control state. A monitor may add requirements of its
own (``Monitor(approvals=ApprovalPolicy(...))``); the first match applies, local ones first.

Asking: :class:`ApprovalGate` sends an :class:`~agentwatch.schemas.approvals.ApprovalRequest`
to ``<prefix>.approvals`` and waits for the first decision record for that request id, which
must be signed by a worker key the agent accepts (the control verifier). The worker denies a
request (``expired``) when its timeout passes; if no decision arrives ``grace_s`` after that
(no worker running), the gate denies on its own. Fail closed: if the request cannot be sent,
the call is denied.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import ValidationError

from agentwatch.schemas.approvals import (
    POLICY_KEY,
    ApprovalDecision,
    ApprovalPolicy,
    ApprovalRequest,
    ApprovalRequirement,
)
from agentwatch.schemas.signing import ControlVerifier, VerificationError
from agentwatch.sdk._support import Counters, RateLimited, describe_error, stop_client
from agentwatch.sdk.errors import ApprovalDenied, ApprovalTimedOut
from agentwatch.sdk.tools import ToolCall

__all__ = ["APPROVAL_COUNTERS", "ApprovalGate", "PolicyBook"]

log = logging.getLogger("agentwatch.sdk")

APPROVAL_COUNTERS = (
    "approvals_requested",
    "approvals_granted",
    "approvals_denied",
    "approvals_rejected_records",
)
"""The counters of an :class:`ApprovalGate` (in the monitor's ``stats``)."""


class PolicyBook:
    """The latest authentic approval policy read from the control topic (``#approvals``)."""

    def __init__(self, verifier: ControlVerifier | None) -> None:
        self.verifier = verifier
        self.policy = ApprovalPolicy()
        self.rejected = 0

    def apply_record(self, topic: str, partition: int, offset: int, key: Any, value: Any) -> None:
        """Apply one control-topic record; other keys are ignored. Never raises."""
        if key != POLICY_KEY or value is None:
            return
        try:
            policy = ApprovalPolicy.model_validate_json(value)
            if self.verifier is not None:
                policy.verify(self.verifier)
        except (ValidationError, VerificationError, ValueError) as exc:
            self.rejected += 1
            log.warning(
                "agentwatch: refused approval policy %s[%d]@%d: %s",
                topic,
                partition,
                offset,
                describe_error(exc, 300, True),
            )
            return
        if policy.version >= self.policy.version:
            self.policy = policy


class ApprovalGate:
    """Asks for approval and waits for the decision (one per monitor).

    Parameters
    ----------
    agent_id, fleet
        Who asks.
    bootstrap, topic
        The Kafka brokers and ``<prefix>.approvals``.
    policy_book
        The published requirements.
    local
        Requirements of this agent's own (checked first).
    verifier
        Worker public keys a decision must be signed with (``None``: decisions are not
        verified, like control records without a key).
    kafka_options
        Connection settings of the producer and consumer.
    grace_s
        How long after a request's own timeout the gate still waits for the worker's answer.
    """

    def __init__(
        self,
        agent_id: str,
        fleet: str,
        *,
        bootstrap: str,
        topic: str,
        policy_book: PolicyBook,
        local: ApprovalPolicy | None = None,
        verifier: ControlVerifier | None = None,
        kafka_options: Mapping[str, Any] | None = None,
        grace_s: float = 5.0,
    ) -> None:
        self.agent_id = agent_id
        self.fleet = fleet
        self.bootstrap = bootstrap
        self.topic = topic
        self.policy_book = policy_book
        self.local = local or ApprovalPolicy()
        self.verifier = verifier
        self.kafka_options = dict(kafka_options or {})
        self.grace_s = grace_s
        self.counters = Counters(APPROVAL_COUNTERS)
        self._waiting: dict[str, asyncio.Future[ApprovalDecision]] = {}
        self._producer: Any = None
        self._consumer: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._lock: asyncio.Lock | None = None
        self._warn = RateLimited()

    def requirement(self, call: ToolCall) -> ApprovalRequirement | None:
        """The requirement ``call`` falls under, or ``None`` (it runs without asking)."""
        return self.local.match(call.action, call.risk, call.target) or (
            self.policy_book.policy.match(call.action, call.risk, call.target)
        )

    async def _ensure_started(self) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._reader is not None and not self._reader.done():
                return
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                group_id=None,
                enable_auto_commit=False,
                fetch_max_wait_ms=100,
                **self.kafka_options,
            )
            await consumer.start()
            try:
                if self.topic not in await consumer.topics():
                    raise RuntimeError(f"topic {self.topic} does not exist (is a worker running?)")
                tp = TopicPartition(self.topic, 0)
                consumer.assign([tp])
                await consumer.seek_to_end(tp)
                await consumer.position(tp)  # decisions from here on are seen
                if self._producer is None:
                    producer = AIOKafkaProducer(
                        bootstrap_servers=self.bootstrap, acks="all", **self.kafka_options
                    )
                    await producer.start()
                    self._producer = producer
            except BaseException:
                await stop_client(consumer, 2.0)
                raise
            self._consumer = consumer
            self._reader = asyncio.create_task(self._read(consumer), name="agentwatch-approvals")

    async def _read(self, consumer: Any) -> None:
        """Follow the approvals topic until cancelled; fetch errors are retried, warned once
        per interval (aiokafka reconnects by itself)."""
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=1000)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._warn.warning(
                    "approvals",
                    "agentwatch: cannot read %s for agent %s: %s; retrying",
                    self.topic,
                    self.agent_id,
                    describe_error(exc, 300, True),
                )
                await asyncio.sleep(0.5)
                continue
            for records in batches.values():
                for record in records:
                    self._on_record(record.value)

    def _on_record(self, value: bytes | None) -> None:
        if value is None:
            return
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            self.counters.add("approvals_rejected_records")
            return
        if not isinstance(doc, dict) or doc.get("type") != "decision":
            return
        waiter = self._waiting.get(str(doc.get("request_id")))
        if waiter is None or waiter.done():
            return
        try:
            decision = ApprovalDecision.model_validate_json(value)
            if self.verifier is not None:
                decision.verify(self.verifier)
        except (ValidationError, VerificationError) as exc:
            self.counters.add("approvals_rejected_records")
            log.warning(
                "agentwatch: refused approval decision for %s: %s",
                doc.get("request_id"),
                describe_error(exc, 300, True),
            )
            return
        if decision.agent_id != self.agent_id:
            self.counters.add("approvals_rejected_records")
            return
        waiter.set_result(decision)

    async def ask(
        self, call: ToolCall, requirement: ApprovalRequirement, session_id: str | None = None
    ) -> ApprovalDecision:
        """Ask for approval of ``call`` and wait; returns the approving decision.

        Raises
        ------
        ApprovalDenied
            denied by a person, or the request could not be sent.
        ApprovalTimedOut
            nobody decided within the requirement's timeout.
        """
        request_id = uuid.uuid4().hex
        now = datetime.now(UTC)
        request = ApprovalRequest(
            request_id=request_id,
            ts=now,
            expires_at=now + timedelta(seconds=requirement.timeout_s),
            agent_id=self.agent_id,
            fleet=self.fleet,
            session_id=session_id,
            action=call.action,
            kind=call.kind,
            risk=call.risk,
            target=call.target,
            requirement=requirement.name,
        )
        waiter: asyncio.Future[ApprovalDecision] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = waiter
        self.counters.add("approvals_requested")
        try:
            try:
                await self._ensure_started()
                await self._producer.send_and_wait(
                    self.topic, request.model_dump_json().encode(), key=request_id.encode()
                )
            except Exception as exc:
                self.counters.add("approvals_denied")
                raise ApprovalDenied(
                    self.agent_id,
                    call.action,
                    "agentwatch",
                    f"cannot ask for approval: {describe_error(exc, 300, True)}",
                    request_id,
                ) from None
            log.info(
                "agentwatch: agent %s waits for approval of %s (request %s, rule %s, %gs)",
                self.agent_id,
                call.action,
                request_id,
                requirement.name,
                requirement.timeout_s,
            )
            try:
                decision = await asyncio.wait_for(waiter, requirement.timeout_s + self.grace_s)
            except TimeoutError:
                self.counters.add("approvals_denied")
                raise ApprovalTimedOut(
                    self.agent_id, call.action, "agentwatch", "no worker answered", request_id
                ) from None
        finally:
            self._waiting.pop(request_id, None)
        if decision.outcome == "approved":
            self.counters.add("approvals_granted")
            return decision
        self.counters.add("approvals_denied")
        error = ApprovalTimedOut if decision.outcome == "expired" else ApprovalDenied
        raise error(self.agent_id, call.action, decision.decided_by, decision.reason, request_id)

    async def aclose(self) -> None:
        """Stop the decision reader and the Kafka clients."""
        reader, self._reader = self._reader, None
        if reader is not None and not reader.done():
            reader.cancel()
            await asyncio.wait([reader], timeout=2.0)
        for client in (self._consumer, self._producer):
            if client is not None:
                await stop_client(client, 2.0)
        self._consumer = self._producer = None
