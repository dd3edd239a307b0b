"""Notifiers: PagerDuty Events API v2 and Slack incoming webhooks, registered by name.

Importing this package registers the built-in notifiers in :data:`NOTIFIERS`; routes
(``settings.routes``) refer to them by name.
"""

from agentwatch.alerting.notifiers.base import (
    NOTIFIERS,
    DeliveryError,
    Notifier,
    register_notifier,
)
from agentwatch.alerting.notifiers.pagerduty import PagerDutyNotifier, build_event
from agentwatch.alerting.notifiers.slack import SlackNotifier, build_message

__all__ = [
    "NOTIFIERS",
    "DeliveryError",
    "Notifier",
    "PagerDutyNotifier",
    "SlackNotifier",
    "build_event",
    "build_message",
    "register_notifier",
]
