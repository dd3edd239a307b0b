"""PagerDuty notifier: one Events API v2 alert per incident (``dedup_key`` = incident id).

Uses the ``pagerduty`` package's :class:`~pagerduty.EventsApiV2Client`, which is synchronous
(httpx2) and retries on its own (429 without limit, 5xx a few times, network errors three
times, sleeping in between). Here the client makes exactly one attempt per :meth:`send`, in a
worker thread with a timeout, and every failure becomes a :class:`DeliveryError` saying
whether to retry, so the dispatcher owns retries, backoff and rate limiting.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pagerduty
from pydantic import BaseModel, ConfigDict, SecretStr

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
from agentwatch.schemas import Anomaly, Notification
from agentwatch.schemas._types import format_ts

__all__ = ["PagerDutyConfig", "PagerDutyNotifier", "build_event"]

log = logging.getLogger(__name__)

SUMMARY_MAX = 1024
DEDUP_KEY_MAX = 255
EVIDENCE_MAX = 10
REVOKED_MAX = 50
ERROR_TEXT_MAX = 300
CLIENT_NAME = "agentwatch"
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def _anomaly_details(anomaly: Anomaly) -> dict[str, Any]:
    return {
        "detector": anomaly.detector,
        "kind": anomaly.kind,
        "severity": anomaly.severity,
        "summary": anomaly.summary,
        "observed": anomaly.observed,
        "baseline": anomaly.baseline,
        "score": anomaly.score,
        "threshold": anomaly.threshold,
        "rule": anomaly.rule,
        "actions": list(anomaly.actions),
        "evidence": list(anomaly.evidence[:EVIDENCE_MAX]),
        "evidence_count": len(anomaly.evidence),
        "ts": format_ts(anomaly.ts),
    }


def _custom_details(notification: Notification) -> dict[str, Any]:
    details: dict[str, Any] = {
        "incident_id": notification.incident_id,
        "notification_id": notification.notification_id,
        "reason": notification.reason,
        "agent_id": notification.agent_id,
        "fleet": notification.fleet,
        "detectors": list(notification.detectors),
        "anomaly_count": notification.anomaly_count,
    }
    if notification.top_anomalies:
        top = notification.top_anomalies[0]
        details["observed"] = top.observed
        details["baseline"] = top.baseline
        details["observed_vs_baseline"] = (
            f"{top.detector}/{top.kind}: observed {top.observed:g} vs baseline {top.baseline:g}"
        )
        details["top_anomalies"] = [_anomaly_details(a) for a in notification.top_anomalies]
    control = notification.control
    if control is not None:
        details["control"] = {
            "halted": control.halted,
            "revoked": list(control.revoked[:REVOKED_MAX]),
            "revoked_count": len(control.revoked),
            "version": control.version,
            "reason": control.reason,
            "updated_by": control.updated_by,
            "updated_at": format_ts(control.updated_at),
        }
    details["actions_taken"] = list(notification.actions_taken)
    details["commands"] = list(notification.commands)
    if notification.actor:
        details["actor"] = notification.actor
    return details


def build_event(notification: Notification) -> dict[str, Any]:
    """The Events API v2 event for ``notification``, without the routing key.

    A ``trigger`` carries the PD-CEF payload (summary, source, severity, timestamp, component,
    group, class, custom_details), links and ``client``; ``acknowledge`` and ``resolve`` carry
    only ``event_action`` and ``dedup_key``, as PagerDuty documents.
    """
    dedup_key = notification.dedup_key[:DEDUP_KEY_MAX]
    if notification.event != "trigger":
        return {"event_action": notification.event, "dedup_key": dedup_key}
    summary = truncate(" ".join(notification.title.split()), SUMMARY_MAX)
    if not summary:
        summary = f"agentwatch incident {notification.incident_id}"
    payload: dict[str, Any] = {
        "summary": summary,
        "source": notification.agent_id,
        "severity": notification.severity,
        "timestamp": format_ts(notification.created_at),
        "component": notification.agent_id,
        "group": notification.fleet,
        "class": ", ".join(notification.detectors) or "agentwatch",
        "custom_details": _custom_details(notification),
    }
    event: dict[str, Any] = {
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "client": CLIENT_NAME,
        "payload": payload,
    }
    links = []
    if notification.runbook_url and notification.runbook_url.startswith(("http://", "https://")):
        links.append({"href": notification.runbook_url, "text": "Runbook"})
    elif notification.runbook_url:  # relative (no AGENTWATCH_RUNBOOK_BASE_URL): keep it visible
        payload["custom_details"]["runbook"] = notification.runbook_url
    incident_url = notification.incident_url  # the console's incident page
    if incident_url:
        links.append({"href": incident_url, "text": f"Incident {notification.incident_id}"})
    if notification.agent_url:
        links.append({"href": notification.agent_url, "text": f"Agent {notification.agent_id}"})
        event["client_url"] = incident_url or notification.agent_url
    if links:
        event["links"] = links
    return event


def _error_text(response: httpx2.Response) -> str:
    """PagerDuty's own words about a rejected event: ``message: errors``."""
    try:
        body = response.json()
    except ValueError:
        return truncate(" ".join(response.text.split()), ERROR_TEXT_MAX)
    if not isinstance(body, dict):
        return truncate(str(body), ERROR_TEXT_MAX)
    parts = [str(body.get("message") or body.get("status") or "")]
    errors = body.get("errors")
    if isinstance(errors, list) and errors:
        parts.append("; ".join(str(e) for e in errors))
    return truncate(": ".join(p for p in parts if p), ERROR_TEXT_MAX)


def _status_error(response: httpx2.Response, secret: str) -> DeliveryError:
    """The :class:`DeliveryError` for a non-2xx answer; ``secret`` never appears in it."""
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    detail = redact(_error_text(response), [secret])
    return status_error("PagerDuty", status, detail, retry_after=retry_after, refused="the event")


class _EventsClient(pagerduty.EventsApiV2Client):
    """One attempt per call: no retries of its own; non-2xx raises :class:`DeliveryError`.

    Also accepts a plain-HTTP base URL on the loopback interface (local fakes in tests);
    anything else must be HTTPS, as upstream requires.
    """

    max_network_attempts = 0

    def __init__(self, routing_key: str, base_url: str, timeout_s: float) -> None:
        super().__init__(routing_key, base_url=base_url.rstrip("/"), follow_redirects=False)
        self.retry = {}
        self.timeout = timeout_s  # type: ignore[assignment]  # upstream annotates int

    @property
    def url(self) -> str:
        return str(self._url)

    @url.setter
    def url(self, new_base_url: str) -> None:
        parts = urlsplit(new_base_url)
        loopback = parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS
        if parts.scheme != "https" and not loopback:
            raise pagerduty.UrlError("API base URL must use https:// (http:// only on loopback)")
        self._url = new_base_url

    def postprocess(self, response: httpx2.Response) -> None:
        if not response.is_success:
            raise _status_error(response, str(self.auth_method.secret))


class PagerDutyConfig(BaseModel):
    """The PagerDuty notifier's own settings (``AGENTWATCH_PAGERDUTY_ROUTING_KEY``,
    ``_URL``, ``_EVENTS_PER_MINUTE``; validated with the rest of :class:`Settings`)."""

    model_config = ConfigDict(frozen=True)

    routing_key: SecretStr | None = None
    url: str = "https://events.pagerduty.com"
    events_per_minute: int = 120

    @classmethod
    def from_settings(cls, settings: Settings) -> PagerDutyConfig:
        return cls(
            routing_key=settings.pagerduty_routing_key,
            url=settings.pagerduty_url,
            events_per_minute=settings.pagerduty_events_per_minute,
        )

    def rate(self) -> Rate:
        """The Events API's limit per routing key, with a burst of a tenth of it (12 at 120
        a minute), so a wave of incidents pages quickly."""
        return Rate(self.events_per_minute / 60.0, max(1.0, self.events_per_minute / 10.0))


class PagerDutyNotifier(Notifier):
    """Sends notifications as PagerDuty Events API v2 alert events.

    Parameters
    ----------
    settings
        Read for :class:`PagerDutyConfig` only (the routing key is required).
    timeout_s
        Longest one attempt may take (HTTP timeout; the thread is abandoned a second later).
    """

    name = "pagerduty"

    def __init__(self, settings: Settings, *, timeout_s: float = 10.0) -> None:
        self.config = PagerDutyConfig.from_settings(settings)
        self.timeout_s = timeout_s
        self._client: _EventsClient | None = None
        self._client_lock = threading.Lock()

    def rate(self) -> Rate:
        return self.config.rate()

    def _routing_key(self) -> str:
        key = self.config.routing_key
        if key is None:
            raise DeliveryError("PagerDuty routing key is not configured", retryable=False)
        return key.get_secret_value()

    def _get_client(self) -> _EventsClient:
        with self._client_lock:
            if self._client is None:
                self._client = _EventsClient(self._routing_key(), self.config.url, self.timeout_s)
            return self._client

    def _post(self, event: dict[str, Any]) -> None:
        """Blocking: one POST to ``/v2/enqueue`` (runs in a worker thread)."""
        properties = {k: v for k, v in event.items() if k not in ("event_action", "dedup_key")}
        try:
            self._get_client().send_event(
                event["event_action"], dedup_key=event["dedup_key"], **properties
            )
        except DeliveryError:
            raise
        except pagerduty.UrlError:
            raise DeliveryError(
                "PagerDuty URL must use https:// (http:// only on loopback)",
                retryable=False,
                reason="error",
            ) from None
        except pagerduty.HttpError as exc:
            response = exc.response
            if response is not None and response.is_success:
                # Accepted (2xx) but the body was not the documented JSON: PagerDuty has the
                # event, so retrying would only add a duplicate trigger to the alert's log.
                log.warning("PagerDuty accepted the event with an unexpected response body")
                return
            raise DeliveryError(
                f"PagerDuty request failed: {type(exc).__name__}", retryable=True, reason="error"
            ) from None
        except pagerduty.Error as exc:
            cause = exc.__cause__
            if isinstance(cause, httpx2.TimeoutException):
                raise DeliveryError(
                    f"PagerDuty timed out ({type(cause).__name__})",
                    retryable=True,
                    reason="timeout",
                ) from None
            if isinstance(cause, httpx2.TransportError):
                raise DeliveryError(
                    f"PagerDuty unreachable ({type(cause).__name__})",
                    retryable=True,
                    reason="connection",
                ) from None
            raise DeliveryError(
                f"PagerDuty client error: {type(exc).__name__}", retryable=False, reason="error"
            ) from None

    async def send(self, notification: Notification) -> None:
        """Send one event, or raise :class:`DeliveryError` (no secret in its message)."""
        event = build_event(notification)
        timed_out = False
        try:
            async with asyncio.timeout(self.timeout_s + 1.0):
                await asyncio.to_thread(self._post, event)
        except TimeoutError:
            timed_out = True
        if timed_out:
            raise DeliveryError(
                f"PagerDuty did not answer within {self.timeout_s:g}s",
                retryable=True,
                reason="timeout",
            )

    async def aclose(self) -> None:
        """Close the HTTP client (its connection pool)."""
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)


@register_notifier("pagerduty")
def _make_pagerduty(settings: Settings) -> Notifier | None:
    """The PagerDuty notifier, or ``None`` without ``pagerduty_routing_key``."""
    if settings.pagerduty_routing_key is None:
        return None
    return PagerDutyNotifier(settings)
