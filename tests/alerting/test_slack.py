"""Slack notifier against the loopback incoming-webhook fake."""

from __future__ import annotations

import json
import logging
import socket
from typing import Any

import pytest

from agentwatch.alerting.notifiers import NOTIFIERS, DeliveryError, SlackNotifier, build_message
from agentwatch.alerting.notifiers import slack as slack_module
from agentwatch.config import Settings
from agentwatch.schemas import Notification
from tests.alerting.fakes import (
    SLACK_WEBHOOK_PATH,
    FakeSlack,
    notify_settings,
    sample_notification,
    validate_slack_blocks,
)


async def _send(settings: Settings, notification: Notification, **kw: Any) -> None:
    notifier = SlackNotifier(settings, **kw)
    try:
        await notifier.send(notification)
    finally:
        await notifier.aclose()


def _texts(message: dict[str, Any]) -> list[str]:
    """Every text string in the blocks."""
    out: list[str] = []
    for block in message["blocks"]:
        if "text" in block:
            out.append(block["text"]["text"])
        out += [f["text"] for f in block.get("fields", [])]
        out += [e["text"] for e in block.get("elements", [])]
    return out


async def test_trigger_message_is_accepted_and_complete(fake_slack: FakeSlack) -> None:
    await _send(notify_settings(slack=fake_slack), sample_notification())
    (message,) = fake_slack.messages
    assert message["text"].startswith("[CRITICAL] support-7: cost spike 10x baseline")
    blocks = message["blocks"]
    assert blocks[0]["type"] == "header"
    assert blocks[0]["text"]["type"] == "plain_text"
    assert blocks[0]["text"]["text"] == ":rotating_light: support-7: cost spike 10x baseline"
    summary = blocks[1]["text"]["text"]
    assert "`CRITICAL`" in summary and "cost $12.50 in 5 min" in summary
    fields = {f["text"].split("\n")[0]: f["text"].split("\n", 1)[1] for f in blocks[2]["fields"]}
    assert fields["*Agent*"] == "`support-7`"
    assert fields["*Fleet*"] == "`support`"
    assert fields["*Detector*"] == "cost_spike"
    assert fields["*Observed*"] == "12.5"
    assert fields["*Baseline*"] == "1.25"
    assert fields["*Incident*"] == "`inc-1`"
    assert "halted" in fields["*Control*"] and "refund" in fields["*Control*"]
    texts = _texts(message)
    assert any("• halted agent support-7" in t and "• revoked refund" in t for t in texts)
    (commands,) = [t for t in texts if "```" in t]
    assert (
        "```agentwatch agents resume support-7\nagentwatch agents grant support-7 refund```"
        in commands
    )
    assert any("<https://runbooks.example.com/cost-spike|Runbook>" in t for t in texts)


@pytest.mark.parametrize(
    ("severity", "emoji"),
    [("critical", ":rotating_light:"), ("warning", ":warning:"), ("info", ":information_source:")],
)
def test_header_emoji_follows_severity(severity: str, emoji: str) -> None:
    message = build_message(sample_notification(severity=severity))
    assert message["blocks"][0]["text"]["text"].startswith(emoji)
    assert f"`{severity.upper()}`" in message["blocks"][1]["text"]["text"]


async def test_long_content_respects_block_kit_limits(fake_slack: FakeSlack) -> None:
    n = sample_notification(
        title="T" * 1024,
        commands=[f"agentwatch agents grant support-7 tool_{i} " + "x" * 450 for i in range(16)],
        actions_taken=["a" * 256] * 32,
        detectors=[f"detector_{i}" for i in range(64)],
    )
    message = build_message(n)
    assert validate_slack_blocks(message["blocks"]) == []
    header = message["blocks"][0]["text"]["text"]
    assert len(header) == 150 and header.endswith("…")
    for text in _texts(message):
        assert len(text) <= 3000
    commands = next(t for t in _texts(message) if "```" in t)
    assert commands.endswith("```")  # cut on whole lines, the code block stays closed
    await _send(notify_settings(slack=fake_slack), n)
    assert len(fake_slack.messages) == 1


def test_user_text_is_escaped_for_mrkdwn() -> None:
    evil = "<!channel> & <https://evil|click>"
    base = sample_notification()
    anomaly = base.top_anomalies[0].model_copy(update={"summary": evil})
    message = build_message(sample_notification(title=evil, top_anomalies=[anomaly]))
    assert message["blocks"][0]["text"]["type"] == "plain_text"  # Slack parses no markup there
    assert "<!channel>" not in message["text"]
    other = anomaly.model_copy(update={"anomaly_id": "an-2", "summary": "then " + evil})
    message = build_message(sample_notification(top_anomalies=[anomaly, other]))
    summary = message["blocks"][1]["text"]["text"]
    assert "• &lt;!channel&gt; &amp; &lt;https://evil|click&gt;" in summary
    assert "• then &lt;!channel&gt;" in summary
    assert "<!channel>" not in "".join(_texts(message))


def test_each_summary_is_shown_once() -> None:
    """An incident's title is its first anomaly's summary: the header says it, the body
    lists only the other anomalies (it used to repeat the same line three times)."""
    base = sample_notification()
    first = base.top_anomalies[0]
    second = first.model_copy(update={"anomaly_id": "an-2", "summary": "failures 9 of 10"})
    again = first.model_copy(update={"anomaly_id": "an-3"})  # the same summary, later
    message = build_message(
        sample_notification(title=first.summary, top_anomalies=[first, second, again])
    )
    texts = [message["blocks"][0]["text"]["text"], *_texts(message)[1:]]
    assert sum(t.count(first.summary) for t in texts) == 1
    assert sum(t.count("failures 9 of 10") for t in texts) == 1


@pytest.mark.parametrize(
    ("event", "word"), [("acknowledge", "acknowledged"), ("resolve", "resolved")]
)
async def test_acknowledge_and_resolve_are_short(
    fake_slack: FakeSlack, event: str, word: str
) -> None:
    n = sample_notification(event=event, reason="resolved", actor="alice")
    await _send(notify_settings(slack=fake_slack), n)
    (message,) = fake_slack.messages
    assert [b["type"] for b in message["blocks"]] == ["header", "section"]
    assert f"was {word} by alice" in message["blocks"][1]["text"]["text"]


def test_fake_rejects_what_slack_rejects() -> None:
    header = {"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}
    assert validate_slack_blocks([header])
    mrkdwn_header = {"type": "header", "text": {"type": "mrkdwn", "text": "h"}}
    assert validate_slack_blocks([mrkdwn_header])
    eleven = {
        "type": "section",
        "fields": [{"type": "mrkdwn", "text": "f"} for _ in range(11)],
    }
    assert validate_slack_blocks([eleven])
    long_field = {"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2001}]}
    assert validate_slack_blocks([long_field])
    assert validate_slack_blocks([{"type": "bogus"}])
    assert validate_slack_blocks([{"type": "divider"}] * 51)
    assert validate_slack_blocks([{"type": "section", "text": {"type": "mrkdwn", "text": ""}}])


async def test_invalid_blocks_is_not_retryable(
    fake_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_: Notification) -> dict[str, Any]:
        return {
            "text": "x",
            "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 200}}],
        }

    monkeypatch.setattr(slack_module, "build_message", broken)
    with pytest.raises(DeliveryError) as info:
        await _send(notify_settings(slack=fake_slack), sample_notification())
    assert info.value.retryable is False and info.value.reason == "rejected"
    assert "invalid_blocks" in str(info.value) and "400" in str(info.value)


async def test_unknown_webhook_is_not_retryable_and_the_url_stays_secret(
    fake_slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = fake_slack.url + "/services/T000/B000/WRONGSECRET"
    with pytest.raises(DeliveryError) as info:
        await _send(notify_settings(slack_webhook_url=wrong), sample_notification())
    assert info.value.retryable is False
    assert "404" in str(info.value) and "no_service" in str(info.value)
    assert "WRONGSECRET" not in str(info.value)
    await _send(notify_settings(slack=fake_slack), sample_notification())
    assert fake_slack.messages
    assert "WRONGSECRET" not in caplog.text
    assert SLACK_WEBHOOK_PATH not in caplog.text and "XXXX" not in caplog.text


@pytest.mark.parametrize(
    ("status", "body"),
    [(400, "invalid_payload"), (403, "action_prohibited"), (410, "channel_is_archived")],
)
async def test_client_errors_are_not_retryable(
    fake_slack: FakeSlack, status: int, body: str
) -> None:
    fake_slack.fail_next(1, status)
    with pytest.raises(DeliveryError) as info:
        await _send(notify_settings(slack=fake_slack), sample_notification())
    assert info.value.retryable is False
    assert body in str(info.value)


async def test_429_is_retryable_with_retry_after(fake_slack: FakeSlack) -> None:
    fake_slack.fail_next(1, 429, retry_after=2)
    with pytest.raises(DeliveryError) as info:
        await _send(notify_settings(slack=fake_slack), sample_notification())
    assert info.value.retryable is True
    assert info.value.reason == "rate_limited"
    assert info.value.retry_after == 2.0
    assert len(fake_slack.requests) == 1  # the SDK's own 429 retry handler is off


@pytest.mark.parametrize("status", [500, 503])
async def test_5xx_is_retryable(fake_slack: FakeSlack, status: int) -> None:
    fake_slack.fail_next(1, status)
    with pytest.raises(DeliveryError) as info:
        await _send(notify_settings(slack=fake_slack), sample_notification())
    assert info.value.retryable is True and info.value.reason == "server_error"


async def test_timeout_is_retryable(fake_slack: FakeSlack) -> None:
    fake_slack.delay_next(1, 0.5)
    with pytest.raises(DeliveryError) as info:
        await _send(notify_settings(slack=fake_slack), sample_notification(), timeout_s=0.1)
    assert info.value.retryable is True and info.value.reason == "timeout"


async def test_connection_refused_is_retryable_and_hides_the_url() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}{SLACK_WEBHOOK_PATH}"
    with pytest.raises(DeliveryError) as info:
        await _send(notify_settings(slack_webhook_url=url), sample_notification())
    assert info.value.retryable is True and info.value.reason == "connection"
    assert SLACK_WEBHOOK_PATH not in str(info.value)
    assert info.value.__context__ is None and info.value.__cause__ is None


async def test_one_session_is_reused_across_sends(fake_slack: FakeSlack) -> None:
    notifier = SlackNotifier(notify_settings(slack=fake_slack))
    assert notifier._session is None  # the constructor does no I/O
    await notifier.send(sample_notification())
    session = notifier._session
    await notifier.send(sample_notification(notification_id="inc-1:1"))
    assert notifier._session is session is not None
    await notifier.aclose()
    assert session.closed
    assert len(fake_slack.messages) == 2


def test_factory_is_registered_and_needs_a_webhook() -> None:
    assert NOTIFIERS["slack"](notify_settings()) is None
    built = NOTIFIERS["slack"](notify_settings(slack_webhook_url="https://hooks.example.com/x"))
    assert isinstance(built, SlackNotifier)


def test_relative_runbook_path_is_shown_not_linked() -> None:
    from agentwatch.alerting.notifiers.slack import build_message

    text = json.dumps(
        build_message(sample_notification(runbook_url="docs/runbook.md#exfiltration"))
    )
    assert "<docs/runbook.md" not in text and "docs/runbook.md#exfiltration" in text
