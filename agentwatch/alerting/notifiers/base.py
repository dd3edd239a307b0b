"""The notifier extension point: one ``send`` per notification, errors say whether to retry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

from agentwatch.config import Settings
from agentwatch.schemas import Notification

__all__ = ["NOTIFIERS", "DeliveryError", "Notifier", "register_notifier"]


class DeliveryError(Exception):
    """A notification could not be delivered.

    ``retryable`` errors (timeouts, connection errors, HTTP 429 and 5xx) are retried with
    backoff until they succeed; ``retry_after`` is the service's hint in seconds (HTTP
    ``Retry-After``) when it gave one. Non-retryable errors (the service rejected the payload)
    are recorded on the audit topic and counted, never retried forever. The message never
    contains a secret (routing key, webhook URL).
    """

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class Notifier(ABC):
    """Delivers notifications to one service. Constructors store settings only (no I/O)."""

    #: The name routes refer to (``settings.routes``).
    name: ClassVar[str]

    @abstractmethod
    async def send(self, notification: Notification) -> None:
        """Deliver one notification, or raise :class:`DeliveryError`."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release clients (optional)."""


#: name -> factory building the notifier from settings; ``None`` if it is not configured.
NOTIFIERS: dict[str, Callable[[Settings], Notifier | None]] = {}


def register_notifier(
    name: str,
) -> Callable[[Callable[[Settings], Notifier | None]], Callable[[Settings], Notifier | None]]:
    """Register a notifier factory under ``name`` (plugins resolve by name)."""

    def deco(
        factory: Callable[[Settings], Notifier | None],
    ) -> Callable[[Settings], Notifier | None]:
        NOTIFIERS[name] = factory
        return factory

    return deco
