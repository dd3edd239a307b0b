"""Slack notifier: one Block Kit message per notification through an incoming webhook.

Uses :class:`slack_sdk.webhook.async_client.AsyncWebhookClient` on our own aiohttp session,
with its retry handlers disabled (the dispatcher retries) and a private, silent logger: the
SDK logs the webhook URL, which is a secret, at DEBUG and on retries.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from pydantic import BaseModel, ConfigDict, SecretStr
from slack_sdk.webhook.async_client import AsyncWebhookClient

from agentwatch.alerting.notifiers.base import (
    DeliveryError,
    Notifier,
    parse_retry_after,
    redact,
    register_notifier,
    status_error,
    truncate,
)
from agentwatch.alerting.ratelimit import Rate
from agentwatch.config import Settings
from agentwatch.schemas import Notification

__all__ = ["SlackConfig", "SlackNotifier", "build_message"]

HEADER_MAX = 150
SECTION_TEXT_MAX = 3000
FIELD_TEXT_MAX = 2000
FIELDS_MAX = 10
CONTEXT_ELEMENTS_MAX = 10
FALLBACK_TEXT_MAX = 3000
ERROR_TEXT_MAX = 200
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

SEVERITY_EMOJI = {
    "critical": ":rotating_light:",
    "error": ":red_circle:",
    "warning": ":warning:",
    "info": ":information_source:",
}
EVENT_EMOJI = {"acknowledge": ":eyes:", "resolve": ":white_check_mark:"}

# The SDK formats the webhook URL into DEBUG and retry log lines: give it a logger that is
# outside the logging tree (no propagation to root handlers) and emits nothing.
_SDK_LOGGER = logging.Logger("agentwatch.slack_sdk", level=logging.CRITICAL + 1)


def escape(text: str) -> str:
    """Escape the three characters Slack's ``mrkdwn`` treats as control characters.

    Examples
    --------
    >>> escape("a<b & c>d")
    'a&lt;b &amp; c&gt;d'
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link(url: str | None, label: str) -> str | None:
    if not url or any(c in url for c in "<>| \n"):
        return None
    if not url.startswith(("http://", "https://")):
        # a relative runbook path (no AGENTWATCH_RUNBOOK_BASE_URL): show it, do not link it
        return f"{escape(label)}: `{escape(url)}`"
    return f"<{url}|{escape(label)}>"


def _mrkdwn(text: str, limit: int) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": truncate(text, limit)}


def _code_block(lines: list[str], limit: int, heading: str) -> str:
    """``heading`` and a code block of ``lines``, cut to whole lines to fit ``limit``."""
    fence = "```"
    kept: list[str] = []
    budget = limit - len(heading) - 2 * len(fence) - 2
    for line in lines:
        clean = escape(line.replace(fence, "'''"))
        if sum(len(k) + 1 for k in kept) + len(clean) + 1 > budget:
            break
        kept.append(clean)
    if not kept:
        return truncate(heading, limit)
    return f"{heading}\n{fence}{chr(10).join(kept)}{fence}"


def _fmt_number(value: float) -> str:
    return f"{value:,.4g}" if abs(value) < 1e15 else f"{value:.3e}"


def _short_message(notification: Notification) -> dict[str, Any]:
    verb = "acknowledged" if notification.event == "acknowledge" else "resolved"
    header = f"{EVENT_EMOJI[notification.event]} {verb.capitalize()}: {notification.title}"
    who = f" by {escape(notification.actor)}" if notification.actor else ""
    text = (
        f"Incident `{escape(notification.incident_id)}` for agent "
        f"`{escape(notification.agent_id)}` (fleet `{escape(notification.fleet)}`) "
        f"was {verb}{who}."
    )
    fallback = f"{verb.capitalize()}: {notification.title} (agent {notification.agent_id})"
    return {
        "text": truncate(escape(fallback), FALLBACK_TEXT_MAX),
        "blocks": [
            {
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "text": truncate(" ".join(header.split()), HEADER_MAX),
                    "emoji": True,
                },
            },
            {"type": "section", "text": _mrkdwn(text, SECTION_TEXT_MAX)},
        ],
    }


def build_message(notification: Notification) -> dict[str, Any]:
    """The webhook body (``text`` fallback and Block Kit ``blocks``) for ``notification``.

    Every text respects Block Kit's limits (header 150, section 3000, at most 10 fields of at
    most 2000 characters), and user-supplied text is escaped for ``mrkdwn``.
    """
    if notification.event != "trigger":
        return _short_message(notification)
    n = notification
    severity = n.severity
    emoji = SEVERITY_EMOJI[severity]
    header = truncate(" ".join(f"{emoji} {n.title}".split()), HEADER_MAX)

    summary_lines = [
        f"*Severity:* `{severity.upper()}`   *Reason:* {escape(n.reason)}"
        f"   *Anomalies:* {n.anomaly_count}",
    ]
    # The header already says the title, which is usually the first anomaly's summary: each
    # text is shown once (the same line three times is noise on a phone at 3 a.m.).
    seen = {" ".join(n.title.split())}
    for anomaly in n.top_anomalies:
        line = " ".join(anomaly.summary.split())
        if line not in seen:
            seen.add(line)
            summary_lines.append(f"• {escape(anomaly.summary)}")
    summary = "\n".join(summary_lines)

    top = n.top_anomalies[0] if n.top_anomalies else None
    detectors = ", ".join(n.detectors) or (top.detector if top else "—")
    fields = [
        ("Agent", f"`{escape(n.agent_id)}`"),
        ("Fleet", f"`{escape(n.fleet)}`"),
        ("Detector" + ("s" if len(n.detectors) > 1 else ""), escape(detectors)),
        ("Observed", _fmt_number(top.observed) if top else "—"),
        ("Baseline", _fmt_number(top.baseline) if top else "—"),
        ("Incident", f"`{escape(n.incident_id)}`"),
    ]
    if n.control is not None:
        state = "halted" if n.control.halted else "running"
        if n.control.revoked:
            shown = ", ".join(n.control.revoked[:10])
            more = f" (+{len(n.control.revoked) - 10})" if len(n.control.revoked) > 10 else ""
            state += f"; revoked: {escape(shown)}{more}"
        fields.append(("Control", f"{state} (v{n.control.version})"))
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}},
        {"type": "section", "text": _mrkdwn(summary, SECTION_TEXT_MAX)},
        {
            "type": "section",
            "fields": [
                _mrkdwn(f"*{label}*\n{value}", FIELD_TEXT_MAX)
                for label, value in fields[:FIELDS_MAX]
            ],
        },
    ]
    if n.actions_taken:
        actions = "*Actions taken*\n" + "\n".join(f"• {escape(a)}" for a in n.actions_taken)
    else:
        actions = "*Actions taken*\nnone (notify only)"
    blocks.append({"type": "section", "text": _mrkdwn(actions, SECTION_TEXT_MAX)})
    if n.commands:
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": _code_block(
                        list(n.commands),
                        SECTION_TEXT_MAX,
                        "*To resume the agent or restore a permission:*",
                    ),
                },
            }
        )
    context = [f"agentwatch · notification `{escape(n.notification_id)}`"]
    context += [
        link
        for link in (
            _link(n.incident_url, f"Incident {n.incident_id}"),
            _link(n.runbook_url, "Runbook"),
            _link(n.agent_url, f"Agent {n.agent_id}"),
        )
        if link
    ]
    blocks.append(
        {
            "type": "context",
            "elements": [_mrkdwn(c, SECTION_TEXT_MAX) for c in context[:CONTEXT_ELEMENTS_MAX]],
        }
    )
    fallback = f"[{severity.upper()}] {n.title} (agent {n.agent_id}, fleet {n.fleet})"
    return {"text": truncate(escape(fallback), FALLBACK_TEXT_MAX), "blocks": blocks}


def _bypass_proxy(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in _LOOPBACK_HOSTS or bool(urllib.request.proxy_bypass(host))


class SlackConfig(BaseModel):
    """The Slack notifier's own settings (``AGENTWATCH_SLACK_WEBHOOK_URL``,
    ``_MESSAGES_PER_SECOND``; validated with the rest of :class:`Settings`)."""

    model_config = ConfigDict(frozen=True)

    webhook_url: SecretStr | None = None
    messages_per_second: float = 1.0

    @classmethod
    def from_settings(cls, settings: Settings) -> SlackConfig:
        return cls(
            webhook_url=settings.slack_webhook_url,
            messages_per_second=settings.slack_messages_per_second,
        )

    def rate(self) -> Rate:
        """Slack's documented limit for incoming webhooks: about one message a second, no
        burst."""
        return Rate(self.messages_per_second, 1.0)


class SlackNotifier(Notifier):
    """Posts notifications to a Slack incoming webhook.

    Parameters
    ----------
    settings
        Read for :class:`SlackConfig` only (the webhook URL is required).
    timeout_s
        Longest one attempt may take.
    """

    name = "slack"

    def __init__(self, settings: Settings, *, timeout_s: float = 10.0) -> None:
        self.config = SlackConfig.from_settings(settings)
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._client: AsyncWebhookClient | None = None

    def rate(self) -> Rate:
        return self.config.rate()

    def _url(self) -> str:
        url = self.config.webhook_url
        if url is None:
            raise DeliveryError("Slack webhook URL is not configured", retryable=False)
        return url.get_secret_value()

    def _secrets(self) -> list[str]:
        url = self._url()
        path = urlsplit(url).path
        return [url, path] if len(path) > 1 else [url]

    def _get_client(self) -> AsyncWebhookClient:
        if self._client is None or self._session is None or self._session.closed:
            url = self._url()
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s)
            )
            client = AsyncWebhookClient(
                url,
                timeout=int(max(1, self.timeout_s)),
                session=self._session,
                logger=_SDK_LOGGER,
                retry_handlers=[],
            )
            if _bypass_proxy(url):
                client.proxy = None
            self._client = client
        return self._client

    async def send(self, notification: Notification) -> None:
        """Post one message, or raise :class:`DeliveryError` (no webhook URL in its message)."""
        body = build_message(notification)
        # Errors are raised outside the except blocks: aiohttp's exceptions may carry the
        # webhook URL, and must not ride along as __context__.
        failure: DeliveryError | None = None
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self._get_client().send_dict(body)
        except TimeoutError:
            failure = DeliveryError(
                f"Slack did not answer within {self.timeout_s:g}s",
                retryable=True,
                reason="timeout",
            )
        except (aiohttp.ClientError, OSError) as exc:
            failure = DeliveryError(
                f"Slack unreachable ({type(exc).__name__})", retryable=True, reason="connection"
            )
        if failure is not None:
            raise failure
        status = response.status_code
        if 200 <= status < 300:
            return
        text = redact(
            truncate(" ".join(str(response.body).split()), ERROR_TEXT_MAX), self._secrets()
        )
        raise status_error(
            "Slack",
            status,
            text,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
            refused="the message",
        )

    async def aclose(self) -> None:
        """Close the HTTP session."""
        session, self._session, self._client = self._session, None, None
        if session is not None and not session.closed:
            await session.close()


@register_notifier("slack")
def _make_slack(settings: Settings) -> Notifier | None:
    """The Slack notifier, or ``None`` without ``slack_webhook_url``."""
    if settings.slack_webhook_url is None:
        return None
    return SlackNotifier(settings)
