"""Notifiers: PagerDuty, Slack, Alertmanager and a signed webhook, registered by name.

Importing this package registers the built-in notifiers in :data:`NOTIFIERS`; routes
(``settings.routes``) refer to them by name.
"""

from agentwatch.alerting.notifiers.alertmanager import AlertmanagerNotifier, build_alerts
from agentwatch.alerting.notifiers.base import (
    NOTIFIERS,
    DeliveryError,
    Notifier,
    RefreshingNotifier,
    register_notifier,
)
from agentwatch.alerting.notifiers.pagerduty import PagerDutyNotifier, build_event
from agentwatch.alerting.notifiers.slack import SlackNotifier, build_message
from agentwatch.alerting.notifiers.webhook import WebhookNotifier, verify_signature

__all__ = [
    "NOTIFIERS",
    "AlertmanagerNotifier",
    "DeliveryError",
    "Notifier",
    "PagerDutyNotifier",
    "RefreshingNotifier",
    "SlackNotifier",
    "WebhookNotifier",
    "build_alerts",
    "build_event",
    "build_message",
    "register_notifier",
    "verify_signature",
]
