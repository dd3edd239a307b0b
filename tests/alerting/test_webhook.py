"""Signed webhook notifier: a loopback receiver verifies every request as docs/alerting.md says."""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import re
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agentwatch.alerting.dispatch import Dispatcher, MemoryDeliveryLog
from agentwatch.alerting.notifiers import DeliveryError, WebhookNotifier, verify_signature
from agentwatch.alerting.notifiers.webhook import SignatureError, sign
from agentwatch.config import Settings
from agentwatch.schemas import Notification
from tests.alerting.fakes import notify_settings, sample_notification
from tests.prometheus_stack import WebhookReceiver

SECRET = "whsec-" + "0123456789abcdef" * 3


def webhook_settings(url: str, secret: str = SECRET, **kw: Any) -> Settings:
    return notify_settings(
        webhook={"url": url, "secret": secret, **kw},
        routes={"critical": ["webhook"], "warning": ["webhook"]},
    )


def independent_check(request: web.Request, body: bytes) -> int | None:
    """What a receiver written from the docs does (no agentwatch code): 401 unless authentic."""
    timestamp = request.headers.get("X-Agentwatch-Timestamp", "")
    signature = request.headers.get("X-Agentwatch-Signature", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > 300:
        return 401
    expected = hmac.new(
        SECRET.encode(), b"v1:" + timestamp.encode() + b":" + body, hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(signature, f"v1={expected}"):
        return 401
    return None


async def test_requests_verify_with_the_documented_recipe() -> None:
    async with WebhookReceiver(check=independent_check) as receiver:
        notifier = WebhookNotifier(webhook_settings(f"{receiver.url}/hooks/agentwatch?x=1"))
        try:
            note = sample_notification()
            await notifier.send(note)
        finally:
            await notifier.aclose()
    (request,) = receiver.received
    assert request.path == "/hooks/agentwatch"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Agentwatch-Event"] == "trigger"
    assert request.headers["X-Agentwatch-Notification-Id"] == note.notification_id
    assert Notification.model_validate_json(request.body) == note
    verify_signature(
        SECRET,
        request.headers["X-Agentwatch-Timestamp"],
        request.headers["X-Agentwatch-Signature"],
        request.body,
    )


async def test_a_receiver_with_another_secret_refuses_and_it_is_not_retried() -> None:
    async with WebhookReceiver(check=independent_check) as receiver:
        settings = webhook_settings(receiver.url, secret="not-the-receivers-secret-" + "x" * 16)
        notifier = WebhookNotifier(settings)
        try:
            with pytest.raises(DeliveryError) as info:
                await notifier.send(sample_notification())
        finally:
            await notifier.aclose()
    assert not info.value.retryable and "HTTP 401" in str(info.value)
    assert receiver.received == []


def test_verify_refuses_tampering_replays_and_missing_headers() -> None:
    body = b'{"event":"trigger"}'
    now = 1_767_225_600
    good = sign(SECRET, now, body)
    verify_signature(SECRET, str(now), good, body, now=now + 299)
    verify_signature(SECRET, str(now), f"v1=00ff, {good}", body, now=now)  # during a rotation
    cases = [
        (str(now), good, body + b" ", now, "does not match"),
        (str(now), good, body, now + 301, "replay"),
        (str(now), good, body, now - 301, "replay"),
        (str(now + 1), good, body, now, "does not match"),  # timestamp is signed too
        ("", good, body, now, "Timestamp"),
        ("12a", good, body, now, "Timestamp"),
        (str(now), None, body, now, "Signature"),
    ]
    for timestamp, signature, payload, at, why in cases:
        with pytest.raises(SignatureError, match=why):
            verify_signature(SECRET, timestamp, signature, payload, now=at)


async def test_outage_delays_and_retries_resign_with_a_fresh_timestamp() -> None:
    clock = iter([1_767_225_600.0, 1_767_225_900.0])
    async with WebhookReceiver() as receiver:
        receiver.answers.extend([503])
        settings = webhook_settings(receiver.url)
        notifier = WebhookNotifier(settings, clock=lambda: next(clock))
        dispatcher = Dispatcher(
            settings,
            {"webhook": notifier},
            MemoryDeliveryLog(),
            initial_backoff_s=0.01,
            rng=random.Random(2),
        )
        try:
            result = await dispatcher.deliver(sample_notification())
            again = await dispatcher.deliver(sample_notification())  # a replay: skipped
        finally:
            await dispatcher.aclose()
    assert result.sent == ("webhook",) and result.outcomes[0].attempts == 2
    assert again.skipped == ("webhook",)
    (request,) = receiver.received
    assert request.headers["X-Agentwatch-Timestamp"] == "1767225900"
    verify_signature(
        SECRET,
        "1767225900",
        request.headers["X-Agentwatch-Signature"],
        request.body,
        now=1_767_225_900,
    )


@pytest.mark.parametrize(
    ("status", "retryable"), [(400, False), (301, False), (404, False), (408, True), (500, True)]
)
async def test_answers_are_classified(status: int, retryable: bool) -> None:
    async with WebhookReceiver() as receiver:
        receiver.answers.append(status)
        notifier = WebhookNotifier(webhook_settings(receiver.url))
        try:
            with pytest.raises(DeliveryError) as info:
                await notifier.send(sample_notification())
        finally:
            await notifier.aclose()
    assert info.value.retryable is retryable


async def test_unreachable_is_retryable_and_the_secret_is_never_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = webhook_settings("http://127.0.0.1:9/hook")
    notifier = WebhookNotifier(settings)
    try:
        with pytest.raises(DeliveryError) as info:
            await notifier.send(sample_notification())
    finally:
        await notifier.aclose()
    assert info.value.retryable and info.value.reason == "connection"
    assert SECRET not in str(info.value) and SECRET not in caplog.text
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())


def test_settings_require_a_long_secret_with_a_url() -> None:
    with pytest.raises(ValueError, match="secret is required"):
        Settings(webhook={"url": "https://hooks.example.com/x"})
    with pytest.raises(ValueError, match="at least 32"):
        Settings(webhook={"url": "https://hooks.example.com/x", "secret": "short"})
    with pytest.raises(ValueError, match="String should match pattern"):
        Settings(webhook={"url": "hooks.example.com/x", "secret": SECRET})
    assert Settings(webhook={"url": " ", "secret": ""}).webhook.url is None


def documented_verify() -> Any:
    """The ``verify`` function of docs/alerting.md's Python recipe, as published."""
    text = (Path(__file__).parents[2] / "docs" / "alerting.md").read_text(encoding="utf-8")
    code = re.search(r"In Python .*?```python\n(.*?)```", text, re.S)
    assert code, "docs/alerting.md lost its Python verification recipe"
    namespace: dict[str, Any] = {}
    exec(compile(code.group(1), "docs/alerting.md", "exec"), namespace)
    return namespace["verify"]


async def test_the_documented_recipe_verifies_real_requests_and_refuses_forgeries() -> None:
    verify = documented_verify()
    async with WebhookReceiver() as receiver:
        notifier = WebhookNotifier(webhook_settings(receiver.url))
        try:
            await notifier.send(sample_notification())
        finally:
            await notifier.aclose()
    (request,) = receiver.received
    assert verify(SECRET.encode(), request.headers, request.body)
    assert not verify(b"another-secret", request.headers, request.body)
    assert not verify(SECRET.encode(), request.headers, request.body.replace(b"support", b"xx"))
    stale = {**request.headers, "X-Agentwatch-Timestamp": str(int(time.time()) - 301)}
    assert not verify(SECRET.encode(), stale, request.body)
