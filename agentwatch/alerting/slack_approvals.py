"""Approvals through Slack: the message with Approve / Deny buttons, and its button clicks.

The message goes to the Slack incoming webhook (``AGENTWATCH_SLACK_WEBHOOK_URL``); its
``actions`` block carries two buttons whose ``value`` is the request id. A click reaches the
worker's ``POST /slack/interactivity`` (the Slack app's Interactivity Request URL), which
trusts it only when :func:`verify_signature` accepts Slack's ``X-Slack-Signature``: ``v0=`` and
the HMAC-SHA256, keyed with the app's signing secret, of ``v0:{X-Slack-Request-Timestamp}:{raw
body}``, with the timestamp at most five minutes from now (replays are refused). The approver
is the payload's ``user``, as Slack vouches for it.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import orjson

from agentwatch.alerting.approvals import ApprovalEntry
from agentwatch.alerting.notifiers.slack import escape
from agentwatch.schemas.approvals import ApprovalRequest

__all__ = [
    "APPROVE_ACTION_ID",
    "DENY_ACTION_ID",
    "REPLAY_WINDOW_S",
    "Interaction",
    "SlackRequestError",
    "build_request_message",
    "build_settled_message",
    "parse_interaction",
    "sign",
    "verify_signature",
]

APPROVE_ACTION_ID = "agentwatch_approve"
DENY_ACTION_ID = "agentwatch_deny"
REPLAY_WINDOW_S = 300.0
_EMOJI = {"approved": ":white_check_mark:", "denied": ":no_entry:", "expired": ":hourglass:"}


class SlackRequestError(ValueError):
    """A request to the interactivity endpoint that must be refused; ``status`` says how."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's v0 signature of ``body`` sent at ``timestamp``.

    >>> sign("8f742231b10e8888abcd99yyyzzz85a5", "1531420618", b"token=x")[:3]
    'v0='
    """
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    *,
    now: float | None = None,
    window_s: float = REPLAY_WINDOW_S,
) -> None:
    """Return if Slack signed ``body``; else raise :class:`SlackRequestError` (401).

    Examples
    --------
    >>> ts = str(int(time.time()))
    >>> verify_signature("s3cret", ts, sign("s3cret", ts, b"x"), b"x")
    >>> verify_signature("s3cret", ts, sign("other", ts, b"x"), b"x")
    Traceback (most recent call last):
    ...
    agentwatch.alerting.slack_approvals.SlackRequestError: bad Slack signature
    """
    if not timestamp or not signature:
        raise SlackRequestError(401, "missing X-Slack-Signature or X-Slack-Request-Timestamp")
    try:
        sent = int(timestamp)
    except ValueError:
        raise SlackRequestError(401, "X-Slack-Request-Timestamp is not a number") from None
    current = time.time() if now is None else now
    if abs(current - sent) > window_s:
        raise SlackRequestError(401, "stale Slack request (timestamp outside 5 minutes)")
    if not hmac.compare_digest(sign(secret, timestamp, body).encode(), signature.encode()):
        raise SlackRequestError(401, "bad Slack signature")


@dataclass(frozen=True)
class Interaction:
    """One button click: which request, approve or deny, who clicked, where to answer."""

    request_id: str
    approve: bool
    user_id: str
    username: str
    response_url: str | None

    @property
    def approver(self) -> str:
        """The identity ``approved_by`` carries: ``slack:<username>``."""
        return f"slack:{self.username or self.user_id}"


def parse_interaction(body: bytes) -> Interaction:
    """The click in a ``block_actions`` payload (form field ``payload``, JSON).

    Raises
    ------
    SlackRequestError
        400 for anything that is not one of our buttons clicked by a user.
    """
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True)
        payload = orjson.loads(form["payload"][0])
    except (UnicodeDecodeError, ValueError, KeyError, IndexError, orjson.JSONDecodeError):
        raise SlackRequestError(400, "body must be a form with a JSON 'payload'") from None
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        raise SlackRequestError(400, "only block_actions payloads are handled")
    user = payload.get("user")
    if not isinstance(user, dict) or not isinstance(user.get("id"), str) or not user["id"]:
        raise SlackRequestError(400, "payload has no user")
    actions = payload.get("actions")
    ours = [
        a
        for a in actions or []
        if isinstance(a, dict) and a.get("action_id") in (APPROVE_ACTION_ID, DENY_ACTION_ID)
    ]
    if len(ours) != 1 or not isinstance(ours[0].get("value"), str):
        raise SlackRequestError(400, "payload carries no agentwatch approval button")
    username = user.get("username") or user.get("name") or ""
    response_url = payload.get("response_url")
    return Interaction(
        request_id=ours[0]["value"],
        approve=ours[0]["action_id"] == APPROVE_ACTION_ID,
        user_id=user["id"],
        username=username if isinstance(username, str) else "",
        response_url=response_url if isinstance(response_url, str) else None,
    )


def _describe(request: ApprovalRequest) -> str:
    lines = [
        f"*Agent:* `{escape(request.agent_id)}` (fleet `{escape(request.fleet)}`)",
        f"*Action:* `{escape(request.action)}`"
        + (f"   *Risk:* `{request.risk}`" if request.risk else ""),
    ]
    if request.target:
        lines.append(f"*Target:* `{escape(request.target[:500])}`")
    lines.append(
        f"*Rule:* `{escape(request.requirement)}`   *Request:* `{request.request_id}`   "
        f"*Denied unless decided by* {request.expires_at.strftime('%H:%M:%S')} UTC"
    )
    return "\n".join(lines)


def build_request_message(request: ApprovalRequest) -> dict[str, Any]:
    """The webhook body asking on-call to approve or deny ``request``."""
    header = f":raised_hand: Approval needed: {request.agent_id} wants {request.action}"
    return {
        "text": escape(f"Approval needed: {request.agent_id} wants {request.action}")[:3000],
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": header[:150], "emoji": True}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _describe(request)[:3000]}},
            {
                "type": "actions",
                "block_id": f"agentwatch_approval:{request.request_id}",
                "elements": [
                    {
                        "type": "button",
                        "action_id": APPROVE_ACTION_ID,
                        "text": {"type": "plain_text", "text": "Approve"},
                        "style": "primary",
                        "value": request.request_id,
                    },
                    {
                        "type": "button",
                        "action_id": DENY_ACTION_ID,
                        "text": {"type": "plain_text", "text": "Deny"},
                        "style": "danger",
                        "value": request.request_id,
                    },
                ],
            },
        ],
    }


def build_settled_message(entry: ApprovalEntry) -> dict[str, Any]:
    """What replaces the message once decided (posted to the click's ``response_url``)."""
    decision = entry.decision
    outcome = entry.status
    who = f" by {escape(decision.decided_by)}" if decision is not None else ""
    text = f"{_EMOJI.get(outcome, '')} {outcome.capitalize()}{who}".strip()
    return {
        "replace_original": True,
        "text": text[:3000],
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": _describe(entry.request)}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:3000]}]},
        ],
    }
