"""The worker side of approval gates: the ``<prefix>.approvals`` stream, Slack and the API.

=========================================  =================================================
``GET  /approvals[?status=pending|...]``   requests, oldest first (bearer token)
``GET  /approvals/{id}``                   one request and its decision (bearer token)
``POST /approvals/{id}/approve|deny``      body ``{"actor", "reason"}`` (bearer token);
                                           ``approved_by`` = ``actor``
``POST /slack/interactivity``              Slack's button clicks (Slack signature, no token)
=========================================  =================================================

The approvals topic has one partition: the worker holding it keeps every request in the
``approvals`` table (an :class:`~agentwatch.alerting.approvals.ApprovalBook` in memory), posts
each new request to Slack, publishes signed decisions (a person's, or ``expired`` once a
deadline passes) and audits each request and decision as it reads them back. Other workers
forward API calls and button clicks to it. At start every worker publishes the rules file's
approval policy, signed, on the control topic (key ``#approvals``), where agents read it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import aiohttp
import faust
import orjson
from faust.types import TP
from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentwatch.alerting.approvals import (
    ApprovalBook,
    ApprovalConflict,
    ApprovalEntry,
    UnknownApproval,
)
from agentwatch.alerting.responder import audit_id
from agentwatch.alerting.slack_approvals import (
    SlackRequestError,
    build_request_message,
    build_settled_message,
    parse_interaction,
    verify_signature,
)
from agentwatch.logtext import escape
from agentwatch.schemas import AuditEntry
from agentwatch.schemas._types import Name
from agentwatch.schemas.approvals import (
    POLICY_KEY,
    ApprovalDecision,
    ApprovalPolicy,
    ApprovalPosted,
    ApprovalRequest,
)
from agentwatch.schemas.signing import ControlSigner, ControlVerifier, VerificationError
from agentwatch.streams.http_auth import bearer_refusal, problem
from agentwatch.streams.produce import Outgoing, send_acked

if TYPE_CHECKING:
    from agentwatch.streams.app import WorkerApp

__all__ = ["ApprovalMetrics", "ApprovalStage", "DecisionBody", "register_approvals"]

log = logging.getLogger(__name__)

APPROVALS_TABLE = "approvals"
TICK_S = 0.2
SLACK_TIMEOUT_S = 10.0
SLACK_RETRY_MAX_S = 60.0  # the longest wait between two posts of a request Slack refused
MAX_BODY = 64 * 1024
STATUSES = ("pending", "approved", "denied", "expired")


class ApprovalMetrics:
    """Prometheus metrics of the approval stage (on the worker's registry)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "agentwatch_approval_requests_total", "approval requests read", registry=registry
        )
        self.decisions = Counter(
            "agentwatch_approval_decisions_total",
            "approval decisions read (the first per request)",
            ["outcome", "via"],
            registry=registry,
        )
        self.wait = Histogram(
            "agentwatch_approval_wait_seconds",
            "request to decision",
            buckets=(0.5, 1, 5, 15, 30, 60, 120, 300, 900, 3600),
            registry=registry,
        )
        self.refused = Counter(
            "agentwatch_approval_records_refused_total",
            "approvals-topic records refused (malformed, or a decision not signed by this worker)",
            registry=registry,
        )


class DecisionBody(BaseModel):
    """Body of ``POST /approvals/{id}/approve|deny``: who decides, and why."""

    model_config = ConfigDict(extra="forbid", strict=True)

    actor: Name
    reason: Annotated[str, Field(max_length=1024)] = ""


def _now() -> datetime:
    return datetime.now(UTC)


class ApprovalStage:
    """Requests in, decisions out: the approvals log applied to a book, Slack, audit.

    Parameters
    ----------
    topics
        Faust topics by short name (``approvals``, ``audit``, ``control``).
    table
        The ``approvals`` table (request id to entry JSON), written only while reading the log.
    signer
        The worker's control signing key; decisions and the policy are signed with it.
    policy
        The rules file's approval requirements.
    slack_webhook_url
        Where requests are posted (``None``: no Slack message; the API still decides).
    owns
        Whether this worker holds the approvals partition (with its table recovered).
    """

    def __init__(
        self,
        *,
        topics: dict[str, Any],
        table: Any,
        signer: ControlSigner,
        policy: ApprovalPolicy,
        slack_webhook_url: str | None,
        owns: Any,
        metrics: ApprovalMetrics | None = None,
    ) -> None:
        self.topics = topics
        self.table = table
        self.signer = signer
        self.verifier = ControlVerifier([signer.public_key])
        self.policy = policy
        self.slack_webhook_url = slack_webhook_url
        self.owns = owns
        self.metrics = metrics if metrics is not None else ApprovalMetrics(CollectorRegistry())
        self.book = ApprovalBook()
        self.response_urls: dict[str, str] = {}
        self._posting: set[str] = set()  # request ids whose Slack message is being posted
        self._sent: set[str] = set()  # posted by this worker; their ApprovalPosted not read yet
        self._retry: dict[str, tuple[int, float]] = {}  # request id -> (failures, next try)
        self._restored = False
        self._session: aiohttp.ClientSession | None = None
        self._background: set[asyncio.Task[None]] = set()

    # -- the log -----------------------------------------------------------------------------
    def _restore(self) -> None:
        if self._restored:
            return
        self._restored = True
        for key, raw in list(self.table.items()):
            if raw is None:
                continue
            try:
                self.book.restore(ApprovalEntry.from_json(raw))
            except (ValidationError, ValueError, KeyError) as exc:
                log.warning("approvals: skipping unreadable table entry %r: %s", key, exc)

    async def process(self, event: Any) -> None:
        """One record of the approvals topic (inside stream iteration: table writes allowed)."""
        self._restore()
        message = event.message
        where = f"{message.topic}[{message.partition}]@{message.offset}"
        try:
            doc = orjson.loads(event.value)
            kind = doc.get("type") if isinstance(doc, dict) else None
            if kind == "request":
                request = ApprovalRequest.model_validate_json(event.value)
                if self.book.on_request(request):
                    self.table[request.request_id.encode()] = self.book.get(
                        request.request_id
                    ).to_json()
                    self.metrics.requests.inc()
                    await self._audit_request(request)
                    self._spawn(self._post_request(request.request_id))
            elif kind == "posted":
                posted = ApprovalPosted.model_validate_json(event.value)
                posted.verify(self.verifier)
                self._sent.discard(posted.request_id)
                entry = self.book.on_posted(posted.request_id)
                if entry is not None:
                    self.table[posted.request_id.encode()] = entry.to_json()
            elif kind == "decision":
                decision = ApprovalDecision.model_validate_json(event.value)
                decision.verify(self.verifier)
                entry = self.book.on_decision(decision)
                if entry is not None:
                    self.table[decision.request_id.encode()] = entry.to_json()
                    self.metrics.decisions.labels(decision.outcome, decision.via).inc()
                    waited = (decision.decided_at - entry.request.ts).total_seconds()
                    self.metrics.wait.observe(max(0.0, waited))
                    await self._audit_decision(entry)
                    url = self.response_urls.pop(decision.request_id, None)
                    if url is not None:
                        self._spawn(self._post(url, build_settled_message(entry)))
            else:
                log.warning("approvals: skipping %s: no type request, decision or posted", where)
        except VerificationError as exc:
            self.metrics.refused.inc()
            log.warning("approvals: refused decision at %s: %s", where, exc)
        except (ValidationError, orjson.JSONDecodeError) as exc:
            self.metrics.refused.inc()
            log.warning("approvals: skipping malformed record at %s: %s", where, escape(exc, 300))
        for rid in self.book.prune(_now()):
            self.table.pop(rid.encode(), None)

    async def tick(self) -> None:
        """Publish ``expired`` decisions for requests past their deadline, and (re)post the
        pending requests Slack has not accepted yet: after a failure, with backoff, and after
        taking over the partition (owner only)."""
        if not self.owns():
            return
        self._restore()
        for decision in self.book.due(_now()):
            await self._publish(decision)
        if self.slack_webhook_url is None:
            return
        now = time.monotonic()
        for entry in self.book.unposted():
            rid = entry.request.request_id
            if rid in self._posting or rid in self._sent or self._retry.get(rid, (0, 0.0))[1] > now:
                continue
            self._spawn(self._post_request(rid))

    # -- decisions ---------------------------------------------------------------------------
    async def decide(
        self,
        request_id: str,
        approve: bool,
        decided_by: str,
        via: Literal["slack", "api"],
        reason: str = "",
    ) -> ApprovalDecision:
        """Publish a person's decision (signed); raises ``UnknownApproval``/``ApprovalConflict``."""
        self._restore()
        outcome: Literal["approved", "denied"] = "approved" if approve else "denied"
        decision = self.book.decide(request_id, outcome, decided_by, via, reason, _now())
        return await self._publish(decision)

    async def _publish(self, decision: ApprovalDecision) -> ApprovalDecision:
        signed = decision.signed(self.signer)

        def failed(exc: BaseException, attempt: int) -> None:
            log.warning(
                "approvals: decision %s not acknowledged (attempt %d): %r",
                decision.request_id,
                attempt,
                exc,
            )

        try:
            await send_acked(
                self.topics["approvals"],
                Outgoing(decision.request_id.encode(), signed.model_dump_json().encode()),
                on_failure=failed,
            )
        except BaseException:
            self.book.release(decision.request_id)
            raise
        log.info(
            "approval %s %s by %s (%s) for %s %s",
            decision.request_id,
            decision.outcome,
            escape(decision.decided_by),
            decision.via,
            escape(decision.agent_id),
            escape(decision.action),
        )
        return signed

    async def publish_policy(self) -> None:
        """Publish the approval policy, signed, on the control topic (key ``#approvals``)."""
        policy = self.policy.model_copy(update={"version": int(time.time() * 1000)})
        signed = policy.signed(self.signer)

        def failed(exc: BaseException, attempt: int) -> None:
            log.warning("approvals: policy not acknowledged (attempt %d): %r", attempt, exc)

        await send_acked(
            self.topics["control"],
            Outgoing(POLICY_KEY, signed.model_dump_json().encode()),
            on_failure=failed,
        )
        log.info("approvals: published %d approval requirement(s)", len(policy.requirements))

    # -- audit -------------------------------------------------------------------------------
    async def _audit(self, entry: AuditEntry) -> None:
        def failed(exc: BaseException, attempt: int) -> None:
            log.warning(
                "approvals: audit %s not acknowledged (attempt %d): %r",
                entry.audit_id,
                attempt,
                exc,
            )

        key = entry.agent_id.encode() if entry.agent_id else None
        await send_acked(
            self.topics["audit"],
            Outgoing(key, entry.model_dump_json().encode()),
            on_failure=failed,
        )

    async def _audit_request(self, request: ApprovalRequest) -> None:
        await self._audit(
            AuditEntry(
                audit_id=audit_id(request.request_id, "approval_requested"),
                ts=_now(),
                actor=request.agent_id,
                actor_kind="system",
                action="approval_requested",
                agent_id=request.agent_id,
                reason=f"{request.action} needs approval ({request.requirement})"[:1024],
                actions=[request.action],
                detail={
                    "request_id": request.request_id,
                    "requirement": request.requirement,
                    "risk": request.risk,
                    "target": request.target,
                    "expires_at": request.expires_at.isoformat(),
                },
            )
        )

    async def _audit_decision(self, entry: ApprovalEntry) -> None:
        decision = entry.decision
        assert decision is not None
        action: Literal["approval_approved", "approval_denied", "approval_expired"] = {
            "approved": "approval_approved",
            "denied": "approval_denied",
            "expired": "approval_expired",
        }[decision.outcome]  # type: ignore[assignment]
        waited = (decision.decided_at - entry.request.ts).total_seconds()
        await self._audit(
            AuditEntry(
                audit_id=audit_id(decision.request_id, action),
                ts=decision.decided_at,
                actor=decision.decided_by,
                actor_kind="system" if decision.via == "timeout" else "person",
                action=action,
                agent_id=decision.agent_id,
                reason=decision.reason or f"{decision.outcome} via {decision.via}",
                actions=[decision.action],
                detail={
                    "request_id": decision.request_id,
                    "via": decision.via,
                    "requirement": entry.request.requirement,
                    "target": entry.request.target,
                    "waited_s": round(waited, 3),
                },
            )
        )

    # -- Slack -------------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _post_request(self, request_id: str) -> None:
        """Post a pending request to Slack once; on success record it on the approvals log
        (signed), on failure schedule the next try (1 s, doubling, at most 60 s)."""
        url = self.slack_webhook_url
        entry = self.book.entries.get(request_id)
        if url is None or entry is None or entry.decision is not None or entry.posted:
            return
        if request_id in self._posting or request_id in self._sent:
            return
        self._posting.add(request_id)
        try:
            if not await self._post(url, build_request_message(entry.request)):
                failures = self._retry.get(request_id, (0, 0.0))[0] + 1
                delay = min(2.0 ** (failures - 1), SLACK_RETRY_MAX_S)
                self._retry[request_id] = (failures, time.monotonic() + delay)
                return
            self._retry.pop(request_id, None)
            self._sent.add(request_id)
            posted = ApprovalPosted(request_id=request_id, posted_at=_now()).signed(self.signer)

            def failed(exc: BaseException, attempt: int) -> None:
                log.warning(
                    "approvals: posted record of %s not acknowledged (attempt %d): %r",
                    request_id,
                    attempt,
                    exc,
                )

            await send_acked(
                self.topics["approvals"],
                Outgoing(request_id.encode(), posted.model_dump_json().encode()),
                on_failure=failed,
            )
        finally:
            self._posting.discard(request_id)

    async def _post(self, url: str, body: dict[str, Any]) -> bool:
        """POST JSON to Slack; ``True`` on a 2xx answer. Failures are logged (never the URL:
        it is a secret)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=SLACK_TIMEOUT_S)
            )
        try:
            async with self._session.post(
                url, data=orjson.dumps(body), headers={"Content-Type": "application/json"}
            ) as resp:
                if resp.status >= 300:
                    text = (await resp.text())[:200]
                    log.warning(
                        "approvals: Slack refused the message (HTTP %d): %s",
                        resp.status,
                        escape(text),
                    )
                    return False
                return True
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("approvals: Slack unreachable: %s", type(exc).__name__)
            return False

    async def aclose(self) -> None:
        """Close the Slack HTTP session."""
        if self._session is not None and not self._session.closed:
            await self._session.close()


def register_approvals(worker: WorkerApp, signer: ControlSigner, policy: ApprovalPolicy) -> None:
    """Add the approvals topic, table, stream agent, timers and views to the worker's app."""
    app, settings = worker.app, worker.settings
    topic = app.topic(settings.topic("approvals"), key_type=bytes, value_type=bytes)
    worker.topics["approvals"] = topic
    table = app.Table(APPROVALS_TABLE, default=None, key_type=bytes, value_type=bytes, partitions=1)
    owned = TP(settings.topic("approvals"), 0)

    def owns() -> bool:
        recovered = app.tables.recovery.completed.is_set()
        return owned in app.assignor.assigned_actives() and bool(recovered)

    webhook = settings.slack_webhook_url
    stage = ApprovalStage(
        topics=worker.topics,
        table=table,
        signer=signer,
        policy=policy,
        slack_webhook_url=None if webhook is None else webhook.get_secret_value(),
        owns=owns,
        metrics=ApprovalMetrics(worker.metrics.registry),
    )
    worker.approvals = stage
    token = settings.api_token
    secret = settings.slack_signing_secret

    @app.agent(topic, name="approvals")  # type: ignore[untyped-decorator]
    async def approvals(stream: Any) -> None:
        async for event in stream.events():
            await stage.process(event)

    @app.timer(TICK_S)  # type: ignore[untyped-decorator]
    async def approvals_due() -> None:
        await stage.tick()

    @app.task  # type: ignore[untyped-decorator]
    async def publish_policy() -> None:
        await stage.publish_policy()

    @app.on_before_shutdown.connect  # type: ignore[untyped-decorator]
    async def close_slack(sender: Any, **kwargs: Any) -> None:
        await stage.aclose()

    def check_auth(view: Any, request: Any) -> Any | None:
        return bearer_refusal(view, request, token, worker.auth_failures)

    async def on_owner(view: Any, request: Any, body: bytes | None = None) -> Any | None:
        """Forward to the worker holding the approvals partition; ``None`` when that is here."""
        if owns():
            return None
        try:
            dest = app.router.key_store(table.name, b"")
        except Exception as exc:  # no assignment yet
            log.warning("approvals API: owner unknown: %r", exc)
            return problem(view, 503, "approvals not assigned yet; retry in a few seconds")
        canonical = app.conf.canonical_url
        if (dest.host, dest.port) == (canonical.host, canonical.port):
            return problem(view, 503, "approvals are recovering; retry shortly")
        url = request.url.with_host(dest.host).with_port(dest.port)
        passed = ("authorization", "content-type", "x-slack-signature", "x-slack-request-timestamp")
        headers = {k: v for k, v in request.headers.items() if k.lower() in passed}
        async with app.http_client.request(
            method=request.method, url=url, headers=headers, data=body
        ) as resp:
            return view.bytes(await resp.read(), content_type=resp.content_type, status=resp.status)

    @app.page("/approvals")  # type: ignore[untyped-decorator]
    class ApprovalsView(faust.web.View):  # type: ignore[misc]
        async def get(self, request: Any) -> Any:
            denied = check_auth(self, request)
            if denied is not None:
                return denied
            status = request.query.get("status")
            if status not in (None, "all", *STATUSES):
                return problem(
                    self, 400, f"unknown status {status!r}: use {', '.join(STATUSES)} or all"
                )
            forwarded = await on_owner(self, request)
            if forwarded is not None:
                return forwarded
            stage._restore()
            wanted = None if status in (None, "all") else status
            items = [e.to_dict() for e in stage.book.listing(wanted)]  # type: ignore[arg-type]
            return self.json({"approvals": items})

    @app.page("/approvals/{request_id}")  # type: ignore[untyped-decorator]
    class ApprovalView(faust.web.View):  # type: ignore[misc]
        async def get(self, request: Any, request_id: str) -> Any:
            denied = check_auth(self, request)
            if denied is not None:
                return denied
            forwarded = await on_owner(self, request)
            if forwarded is not None:
                return forwarded
            stage._restore()
            try:
                return self.json(stage.book.get(request_id).to_dict())
            except UnknownApproval as exc:
                return problem(self, 404, str(exc))

    @app.page("/approvals/{request_id}/{op}")  # type: ignore[untyped-decorator]
    class ApprovalDecideView(faust.web.View):  # type: ignore[misc]
        async def post(self, request: Any, request_id: str, op: str) -> Any:
            denied = check_auth(self, request)
            if denied is not None:
                return denied
            if op not in ("approve", "deny"):
                return problem(self, 404, f"unknown operation {op!r}: use approve or deny")
            raw = await request.read()
            if len(raw) > MAX_BODY:
                return problem(self, 400, f"body over {MAX_BODY} bytes")
            try:
                body = DecisionBody.model_validate_json(raw or b"null")
            except ValidationError as exc:
                problems = [
                    f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
                    for e in exc.errors(include_url=False)
                ]
                return problem(
                    self, 400, "invalid body: needs actor (and reason)", problems=problems
                )
            forwarded = await on_owner(self, request, raw)
            if forwarded is not None:
                return forwarded
            try:
                decision = await stage.decide(
                    request_id, op == "approve", body.actor, "api", body.reason
                )
            except UnknownApproval as exc:
                return problem(self, 404, str(exc))
            except ApprovalConflict as exc:
                return problem(self, 409, str(exc))
            return self.json(decision.model_dump(mode="json", exclude={"type"}))

    @app.page("/slack/interactivity")  # type: ignore[untyped-decorator]
    class SlackInteractivityView(faust.web.View):  # type: ignore[misc]
        async def post(self, request: Any) -> Any:
            if secret is None:
                return problem(
                    self, 503, "set AGENTWATCH_SLACK_SIGNING_SECRET to accept Slack buttons"
                )
            raw = await request.read()
            try:
                if len(raw) > MAX_BODY:
                    raise SlackRequestError(400, f"body over {MAX_BODY} bytes")
                verify_signature(
                    secret.get_secret_value(),
                    request.headers.get("X-Slack-Request-Timestamp"),
                    request.headers.get("X-Slack-Signature"),
                    raw,
                )
                click = parse_interaction(raw)
            except SlackRequestError as exc:
                log.warning("approvals: refused Slack request: %s", exc)
                return self.json({"error": str(exc)}, status=exc.status)
            forwarded = await on_owner(self, request, raw)
            if forwarded is not None:
                return forwarded
            if click.response_url:
                stage.response_urls[click.request_id] = click.response_url
            try:
                await stage.decide(click.request_id, click.approve, click.approver, "slack")
            except (UnknownApproval, ApprovalConflict) as exc:
                url = stage.response_urls.pop(click.request_id, None)
                if url is not None:  # tell the person who clicked, not the channel
                    note = {
                        "response_type": "ephemeral",
                        "replace_original": False,
                        "text": str(exc),
                    }
                    stage._spawn(stage._post(url, note))
                return self.json({"ok": False, "error": str(exc)}, status=200)
            return self.json({"ok": True}, status=200)
