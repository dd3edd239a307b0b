"""Alertmanager notifier: incidents as alerts on ``POST /api/v2/alerts``, kept alive until resolved.

Teams route agentwatch's incidents through their own Alertmanager tree (receivers, grouping,
silences, inhibition) this way. Each rule that fired in an incident is one alert:

* labels: ``alertname`` (the rule), ``agent_id``, ``fleet``, ``severity``, ``detector``,
  ``kind``, the rule's own ``labels`` and the configured ``external_labels`` (ours win, then
  the rule's, as Prometheus does); label names are made valid Prometheus names;
* annotations: ``summary``, ``description`` (observed vs baseline), ``runbook_url`` (the
  rule's, made absolute with ``runbook_base_url``), ``incident_id``, ``incident_url``,
  ``agent_url``, ``incident_title``, ``incident_status``, ``acknowledged_by`` and
  ``actions_taken`` when there are any;
* ``startsAt``: the event time of the rule's first anomaly in the incident (never in the
  future); ``endsAt``: four resend intervals ahead while the incident is open, the resolve
  time once it resolves; ``generatorURL``: the incident's link.

Alertmanager resolves an alert on its own once ``endsAt`` passes, so the dispatcher posts every
open incident again each ``resend_interval_s`` (:meth:`AlertmanagerNotifier.refresh`), from a
store that survives restarts (:mod:`agentwatch.alerting.firing`). Alertmanager has no
acknowledgement: an acknowledged incident stays firing with ``incident_status`` =
``acknowledged`` (silence it in Alertmanager to stop its notifications there).

With several Alertmanagers (an HA cluster: alerts are not gossiped between members, so each
must be sent every alert), a post succeeds when at least one accepts it, as Prometheus
counts it; a member that missed one gets it with the next refresh.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from agentwatch.alerting.firing import FiringIncident, FiringRule
from agentwatch.alerting.notifiers.base import (
    DeliveryError,
    Notifier,
    RefreshingNotifier,
    parse_retry_after,
    redact,
    register_notifier,
    status_error,
    truncate,
)
from agentwatch.alerting.ratelimit import Rate
from agentwatch.config import AlertmanagerSettings, Settings
from agentwatch.detectors.rules import RulesError, load_rules
from agentwatch.schemas import Anomaly, Notification
from agentwatch.schemas._types import format_ts

__all__ = ["AlertmanagerNotifier", "build_alerts", "label_name"]

log = logging.getLogger(__name__)

API_PATH = "/api/v2/alerts"
#: Alerts posted with ``endsAt`` this many resend intervals ahead (Prometheus uses four).
LIFETIME_INTERVALS = 4
#: Alerts per request (a refresh of many open incidents is split).
CHUNK = 500
ANNOTATION_MAX = 4096
LABEL_VALUE_MAX = 1024
ERROR_TEXT_MAX = 300
FALLBACK_ALERTNAME = "AgentwatchAnomaly"
_INVALID_LABEL_CHARS = re.compile(r"[^A-Za-z0-9_]")
_OWN_LABELS = ("alertname", "agent_id", "fleet", "severity", "detector", "kind")


def label_name(name: str) -> str:
    """``name`` as a valid Prometheus label name (``[A-Za-z_][A-Za-z0-9_]*``).

    Examples
    --------
    >>> label_name("team"), label_name("app.kubernetes.io/name"), label_name("9lives")
    ('team', 'app_kubernetes_io_name', '_9lives')
    """
    clean = _INVALID_LABEL_CHARS.sub("_", name) or "_"
    return f"_{clean}" if clean[0].isdigit() else clean


def _absolute(url: str | None) -> str | None:
    return url if url and url.startswith(("http://", "https://")) else None


def _fmt(value: float) -> str:
    return f"{value:.6g}"


class _Context:
    """What alerts are built with besides the incident: rules' labels and runbooks, clock."""

    def __init__(
        self,
        *,
        now: datetime,
        lifetime: timedelta,
        rule_labels: Mapping[str, Mapping[str, str]],
        rule_runbooks: Mapping[str, str],
        external_labels: Mapping[str, str],
    ) -> None:
        self.now = now
        self.lifetime = lifetime
        self.rule_labels = rule_labels
        self.rule_runbooks = rule_runbooks
        self.external_labels = external_labels


def _labels(rule: FiringRule, note: Notification, ctx: _Context) -> dict[str, str]:
    anomaly = rule.anomaly
    labels: dict[str, str] = {}
    for source in (ctx.external_labels, ctx.rule_labels.get(anomaly.rule or "", {})):
        for name, value in source.items():
            labels[label_name(name)] = value
    labels.update(
        alertname=anomaly.rule or FALLBACK_ALERTNAME,
        agent_id=note.agent_id,
        fleet=note.fleet,
        severity=anomaly.severity,
        detector=anomaly.detector,
        kind=anomaly.kind,
    )
    # an empty value means "no such label" to Alertmanager: leave those out
    return {k: truncate(v, LABEL_VALUE_MAX) for k, v in labels.items() if v}


def _annotations(rule: FiringRule, note: Notification, ctx: _Context) -> dict[str, str]:
    anomaly = rule.anomaly
    status = {"acknowledge": "acknowledged", "resolve": "resolved"}.get(note.event, "open")
    values = {
        "summary": anomaly.summary,
        "description": (
            f"{anomaly.detector}/{anomaly.kind}: observed {_fmt(anomaly.observed)} vs baseline "
            f"{_fmt(anomaly.baseline)} (score {_fmt(anomaly.score)}, threshold "
            f"{_fmt(anomaly.threshold)})"
        ),
        "runbook_url": ctx.rule_runbooks.get(anomaly.rule or "") or note.runbook_url or "",
        "incident_id": note.incident_id,
        "incident_url": note.incident_url or "",
        "agent_url": note.agent_url or "",
        "incident_title": note.title,
        "incident_status": status,
        "acknowledged_by": (note.actor or "") if note.event == "acknowledge" else "",
        "actions_taken": ", ".join(note.actions_taken),
    }
    return {k: truncate(v, ANNOTATION_MAX) for k, v in values.items() if v}


def _alert(
    rule: FiringRule, note: Notification, ctx: _Context, *, resolved: bool
) -> dict[str, Any]:
    starts = min(rule.since, ctx.now)
    ends = max(min(note.created_at, ctx.now), starts) if resolved else ctx.now + ctx.lifetime
    alert: dict[str, Any] = {
        "labels": _labels(rule, note, ctx),
        "annotations": _annotations(rule, note, ctx),
        "startsAt": format_ts(starts),
        "endsAt": format_ts(ends),
    }
    generator = _absolute(note.incident_url) or _absolute(note.agent_url)
    if generator:
        alert["generatorURL"] = generator
    return alert


def build_alerts(
    firing: FiringIncident,
    *,
    now: datetime,
    resend_interval_s: float,
    rule_labels: Mapping[str, Mapping[str, str]] | None = None,
    rule_runbooks: Mapping[str, str] | None = None,
    external_labels: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The ``/api/v2/alerts`` body for one incident: one alert per rule that fired in it.

    The incident's latest notification decides: a ``resolve`` ends every alert at its time,
    anything else keeps them firing until ``now`` + 4 resend intervals.
    """
    note = firing.notification
    ctx = _Context(
        now=now,
        lifetime=timedelta(seconds=LIFETIME_INTERVALS * resend_interval_s),
        rule_labels=rule_labels or {},
        rule_runbooks=rule_runbooks or {},
        external_labels=external_labels or {},
    )
    rules = list(firing.rules)
    if not rules:  # a notification without anomalies: one alert for the incident
        rules = [
            FiringRule(
                anomaly=Anomaly(
                    anomaly_id=f"{note.incident_id}:incident",
                    ts=note.created_at,
                    agent_id=note.agent_id,
                    fleet=note.fleet,
                    detector=(note.detectors or ["agentwatch"])[0],
                    kind="incident",
                    severity=note.severity,
                    score=0.0,
                    threshold=0.0,
                    observed=0.0,
                    baseline=0.0,
                    summary=note.title,
                ),
                since=note.created_at,
            )
        ]
    resolved = note.event == "resolve"
    return [_alert(rule, note, ctx, resolved=resolved) for rule in rules]


def _error_text(body: str) -> str:
    return truncate(" ".join(body.split()), ERROR_TEXT_MAX)


class AlertmanagerNotifier(RefreshingNotifier):
    """Posts incidents to one or more Alertmanagers (``/api/v2/alerts``).

    Parameters
    ----------
    settings
        ``alertmanager`` (URLs, resend interval, auth, external labels), ``rules_file`` (the
        rules' labels and runbooks) and ``runbook_base_url``.
    clock
        Wall-clock seconds (tests inject one).
    """

    name = "alertmanager"

    def __init__(self, settings: Settings, *, clock: Callable[[], float] | None = None) -> None:
        self.settings = settings
        self.config: AlertmanagerSettings = settings.alertmanager
        self.resend_interval_s = self.config.resend_interval_s
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._rules: tuple[dict[str, dict[str, str]], dict[str, str]] | None = None

    # -- building ------------------------------------------------------------------------

    def rate(self) -> Rate:
        """``requests_per_second`` of the notifier's section, no burst."""
        return Rate(self.config.requests_per_second, 1.0)

    def _now(self) -> datetime:
        seconds = self._clock() if self._clock is not None else time.time()
        return datetime.fromtimestamp(seconds, UTC)

    def _rule_info(self) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
        """Each rule's labels and absolute runbook link, from the worker's rules file."""
        if self._rules is None:
            labels: dict[str, dict[str, str]] = {}
            runbooks: dict[str, str] = {}
            try:
                rules = load_rules(self._rules_file())
            except RulesError as exc:
                # the worker refused to start on this already; keep alerting without them
                log.error(
                    "alertmanager: rules file unreadable (%s); alerts carry no rule labels",
                    exc.lines[0] if exc.lines else exc,
                )
                rules = None
            for rule in rules or ():
                labels[rule.alert] = {k: v for k, v in rule.labels.items() if k != "severity"}
                runbook = rule.annotations.get("runbook_url")
                base = self.settings.runbook_base_url
                if runbook and base and "://" not in runbook:
                    runbook = urljoin(base, runbook)
                if runbook:
                    runbooks[rule.alert] = runbook
            self._rules = (labels, runbooks)
        return self._rules

    def _rules_file(self) -> Path | None:
        return self.settings.rules_file

    def alerts(self, firing: FiringIncident) -> list[dict[str, Any]]:
        """The alerts to post for ``firing`` now."""
        labels, runbooks = self._rule_info()
        return build_alerts(
            firing,
            now=self._now(),
            resend_interval_s=self.resend_interval_s,
            rule_labels=labels,
            rule_runbooks=runbooks,
            external_labels=self.config.external_labels,
        )

    # -- sending -------------------------------------------------------------------------
    async def send_firing(self, notification: Notification, firing: FiringIncident) -> None:
        """Post the incident's alerts (firing, or ended if ``notification`` resolves it)."""
        await self._post_all(self.alerts(firing))

    async def refresh(self, firing: Sequence[FiringIncident]) -> None:
        """Post every incident in ``firing`` again, ``endsAt`` moved four intervals ahead."""
        alerts = [alert for record in firing for alert in self.alerts(record)]
        for start in range(0, len(alerts), CHUNK):
            await self._post_all(alerts[start : start + CHUNK])

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": "agentwatch"}
        config = self.config
        if config.bearer_token is not None:
            headers["Authorization"] = f"Bearer {config.bearer_token.get_secret_value()}"
        return headers

    def _auth(self) -> aiohttp.BasicAuth | None:
        config = self.config
        if config.basic_auth_username is None or config.basic_auth_password is None:
            return None
        return aiohttp.BasicAuth(
            config.basic_auth_username, config.basic_auth_password.get_secret_value()
        )

    def _secrets(self) -> list[str]:
        config = self.config
        return [
            s.get_secret_value()
            for s in (config.bearer_token, config.basic_auth_password)
            if s is not None
        ]

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_s)
            )
        return self._session

    async def _post_all(self, alerts: list[dict[str, Any]]) -> None:
        """Post to every Alertmanager; done when at least one accepted."""
        if not alerts:
            return
        urls = self.config.urls
        if not urls:
            raise DeliveryError("Alertmanager URLs are not configured", retryable=False)
        results = await asyncio.gather(*(self._post(url, alerts) for url in urls))
        errors = [r for r in results if r is not None]
        if len(errors) < len(results):
            return  # accepted by at least one; the others get it with the next refresh
        retryable = [e for e in errors if e.retryable]
        if retryable:
            raise retryable[0] if len(errors) == 1 else _combined(errors, retryable=True)
        raise errors[0] if len(errors) == 1 else _combined(errors, retryable=False)

    async def _post(self, url: str, alerts: list[dict[str, Any]]) -> DeliveryError | None:
        """One POST; ``None`` when accepted, else the error (never raised from here)."""
        target = f"{url}{API_PATH}"
        where = _host(url)
        try:
            async with asyncio.timeout(self.config.timeout_s):
                async with self._get_session().post(
                    target,
                    json=alerts,
                    headers=self._headers(),
                    auth=self._auth(),
                    allow_redirects=False,
                ) as response:
                    status = response.status
                    body = await response.text(errors="replace")
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
        except TimeoutError:
            return DeliveryError(
                f"Alertmanager {where} did not answer within {self.config.timeout_s:g}s",
                retryable=True,
                reason="timeout",
            )
        except (aiohttp.ClientError, OSError) as exc:
            return DeliveryError(
                f"Alertmanager {where} unreachable ({type(exc).__name__})",
                retryable=True,
                reason="connection",
            )
        if 200 <= status < 300:
            return None
        text = redact(_error_text(body), self._secrets())
        return status_error(
            f"Alertmanager {where}", status, text, retry_after=retry_after, refused="the alerts"
        )

    async def aclose(self) -> None:
        """Close the HTTP session."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()


def _host(url: str) -> str:
    """``host:port`` of a base URL (what error messages name: no path, no credentials)."""
    parts = urlsplit(url)
    return parts.hostname + (f":{parts.port}" if parts.port else "") if parts.hostname else "?"


def _combined(errors: list[DeliveryError], *, retryable: bool) -> DeliveryError:
    chosen = [e for e in errors if e.retryable == retryable]
    hints = [e.retry_after for e in chosen if e.retry_after is not None]
    return DeliveryError(
        "; ".join(str(e) for e in errors),
        retryable=retryable,
        retry_after=min(hints) if hints else None,
        reason=chosen[0].reason,
    )


@register_notifier("alertmanager")
def _make_alertmanager(settings: Settings) -> Notifier | None:
    """The Alertmanager notifier, or ``None`` without ``alertmanager.urls``."""
    if not settings.alertmanager.urls:
        return None
    return AlertmanagerNotifier(settings)
