"""Signed webhook notifier: each notification's JSON, POSTed with an HMAC-SHA256 signature.

The body is the :class:`~agentwatch.schemas.Notification` itself (its JSON Schema is exported by
``agentwatch schema export``). Every request carries::

    Content-Type: application/json
    X-Agentwatch-Event: trigger | acknowledge | resolve
    X-Agentwatch-Notification-Id: <notification_id>     (idempotency key: dedupe on it)
    X-Agentwatch-Timestamp: <unix seconds when this attempt was signed>
    X-Agentwatch-Signature: v1=<hex HMAC-SHA256(secret, "v1:" + timestamp + ":" + body)>

To verify, a receiver recomputes the HMAC over the exact bytes of the body it received, compares
it with a constant-time comparison, and refuses a timestamp more than five minutes from its own
clock (the replay window); it deduplicates on the notification id, because a notification is
delivered at least once (a retry after a timeout, a replay after a crash sends it again, each
time signed anew). :func:`verify_signature` does exactly this.

Retries: 408, 429 and 5xx answers, timeouts and connection errors are retried by the dispatcher
(an outage delays, never drops); any other non-2xx answer (redirects are not followed) means
the receiver refused it and is recorded as a failed delivery. The secret never appears in a
log line or an error.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp

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
from agentwatch.config import Settings, WebhookSettings
from agentwatch.schemas import Notification

__all__ = [
    "EVENT_HEADER",
    "ID_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "SignatureError",
    "WebhookNotifier",
    "sign",
    "verify_signature",
]

EVENT_HEADER = "X-Agentwatch-Event"
ID_HEADER = "X-Agentwatch-Notification-Id"
TIMESTAMP_HEADER = "X-Agentwatch-Timestamp"
SIGNATURE_HEADER = "X-Agentwatch-Signature"
VERSION = "v1"
REPLAY_WINDOW_S = 300.0
ERROR_TEXT_MAX = 300


class SignatureError(ValueError):
    """A webhook request whose signature does not verify; the message says why."""


def _as_bytes(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def sign(secret: str | bytes, timestamp: int | str, body: bytes) -> str:
    """The ``X-Agentwatch-Signature`` value for ``body`` signed at ``timestamp``.

    Examples
    --------
    >>> sign("k" * 32, 1767225600, b'{"a":1}')[:10]
    'v1=fd9fb2e'
    """
    message = f"{VERSION}:{timestamp}:".encode() + body
    digest = hmac.new(_as_bytes(secret), message, hashlib.sha256).hexdigest()
    return f"{VERSION}={digest}"


def verify_signature(
    secret: str | bytes,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    *,
    now: float | None = None,
    tolerance_s: float = REPLAY_WINDOW_S,
) -> None:
    """Check a received request; raise :class:`SignatureError` unless it is authentic and fresh.

    Parameters
    ----------
    secret
        The shared secret (``AGENTWATCH_WEBHOOK__SECRET``).
    timestamp, signature
        The ``X-Agentwatch-Timestamp`` and ``X-Agentwatch-Signature`` headers.
    body
        The raw request body, exactly as received (before any JSON parsing).
    now
        The receiver's clock (seconds); ``time.time()`` by default.
    tolerance_s
        The replay window: older (or further in the future) timestamps are refused.

    Examples
    --------
    >>> body = b'{"event":"trigger"}'
    >>> verify_signature("k" * 32, "1767225600", sign("k" * 32, 1767225600, body), body,
    ...                  now=1767225630)
    >>> verify_signature("k" * 32, "1767225600", sign("k" * 32, 1767225600, body), body,
    ...                  now=1767226600)
    Traceback (most recent call last):
    ...
    agentwatch.alerting.notifiers.webhook.SignatureError: timestamp is 1000s away from now \
(more than 300s): a replay or a wrong clock
    """
    if not timestamp or not timestamp.strip().isdigit():
        raise SignatureError(f"missing or malformed {TIMESTAMP_HEADER}")
    if not signature:
        raise SignatureError(f"missing {SIGNATURE_HEADER}")
    current = time.time() if now is None else now
    skew = abs(current - int(timestamp))
    if skew > tolerance_s:
        raise SignatureError(
            f"timestamp is {skew:.0f}s away from now (more than {tolerance_s:.0f}s): "
            "a replay or a wrong clock"
        )
    expected = sign(secret, timestamp.strip(), body)
    offered = [part.strip() for part in signature.split(",")]
    if not any(hmac.compare_digest(expected, part) for part in offered):
        raise SignatureError("signature does not match the body (wrong secret, or altered body)")


class WebhookNotifier(Notifier):
    """POSTs each notification as JSON, signed, to ``webhook.url``.

    Parameters
    ----------
    settings
        The ``webhook`` section: ``url``, ``secret``, ``timeout_s``.
    clock
        Wall-clock seconds for the signature timestamp (tests inject one).
    """

    name = "webhook"

    def __init__(self, settings: Settings, *, clock: Callable[[], float] | None = None) -> None:
        self.config: WebhookSettings = settings.webhook
        self._clock = clock if clock is not None else time.time
        self._session: aiohttp.ClientSession | None = None

    def rate(self) -> Rate:
        """``requests_per_second`` of the notifier's section, no burst."""
        return Rate(self.config.requests_per_second, 1.0)

    def _target(self) -> tuple[str, str]:
        config = self.config
        if config.url is None or config.secret is None:
            raise DeliveryError("webhook url and secret are not configured", retryable=False)
        return config.url, config.secret.get_secret_value()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_s)
            )
        return self._session

    def headers(self, notification: Notification, body: bytes, secret: str) -> dict[str, str]:
        """The headers of one attempt, signed now."""
        timestamp = int(self._clock())
        return {
            "Content-Type": "application/json",
            "User-Agent": "agentwatch",
            EVENT_HEADER: notification.event,
            ID_HEADER: notification.notification_id,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(secret, timestamp, body),
        }

    async def send(self, notification: Notification) -> None:
        """POST one notification, or raise :class:`DeliveryError` (never naming the secret)."""
        url, secret = self._target()
        where = urlsplit(url).netloc.rpartition("@")[2]  # host:port, no credentials
        body = notification.model_dump_json().encode()
        failure: DeliveryError | None = None
        try:
            async with asyncio.timeout(self.config.timeout_s):
                async with self._get_session().post(
                    url,
                    data=body,
                    headers=self.headers(notification, body, secret),
                    allow_redirects=False,
                ) as response:
                    status = response.status
                    text = await response.text(errors="replace")
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
        except TimeoutError:
            failure = DeliveryError(
                f"webhook {where} did not answer within {self.config.timeout_s:g}s",
                retryable=True,
                reason="timeout",
            )
        except (aiohttp.ClientError, OSError) as exc:
            failure = DeliveryError(
                f"webhook {where} unreachable ({type(exc).__name__})",
                retryable=True,
                reason="connection",
            )
        if failure is not None:
            raise failure
        if 200 <= status < 300:
            return
        detail = redact(truncate(" ".join(text.split()), ERROR_TEXT_MAX), [secret, url])
        raise status_error(
            f"webhook {where}", status, detail, retry_after=retry_after, refused="the notification"
        )

    async def aclose(self) -> None:
        """Close the HTTP session."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()


@register_notifier("webhook")
def _make_webhook(settings: Settings) -> Notifier | None:
    """The webhook notifier, or ``None`` without ``webhook.url``."""
    if settings.webhook.url is None:
        return None
    return WebhookNotifier(settings)
