"""Slack approvals: the button message, Slack's v0 request signatures, click payloads."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agentwatch.alerting.approvals import ApprovalBook
from agentwatch.alerting.slack_approvals import (
    APPROVE_ACTION_ID,
    DENY_ACTION_ID,
    SlackRequestError,
    build_request_message,
    build_settled_message,
    parse_interaction,
    sign,
    verify_signature,
)
from agentwatch.schemas.approvals import ApprovalRequest
from tests.alerting.fakes import FakeSlack, validate_slack_blocks
from tests.fixtures import approval_request

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def request() -> ApprovalRequest:
    return approval_request(ts=NOW, fleet="finance", target="acct:<1>&")


def test_slacks_documented_signature_example() -> None:
    # https://api.slack.com/authentication/verifying-requests-from-slack (worked example)
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&"
        b"channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&"
        b"command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2F"
        b"commands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&"
        b"trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    assert sign(SECRET, "1531420618", body) == expected
    verify_signature(SECRET, "1531420618", expected, body, now=1531420618 + 10)


@pytest.mark.parametrize(
    ("timestamp", "signature", "body", "message"),
    [
        (None, "v0=00", b"x", "missing"),
        ("1531420618", None, b"x", "missing"),
        ("soon", "v0=00", b"x", "not a number"),
        ("1531420000", sign(SECRET, "1531420000", b"x"), b"x", "stale"),
        ("1531420618", sign("other-secret", "1531420618", b"x"), b"x", "bad Slack signature"),
        ("1531420618", sign(SECRET, "1531420618", b"x"), b"y", "bad Slack signature"),
    ],
)
def test_refused_signatures(
    timestamp: str | None, signature: str | None, body: bytes, message: str
) -> None:
    with pytest.raises(SlackRequestError, match=message) as err:
        verify_signature(SECRET, timestamp, signature, body, now=1531420618.0)
    assert err.value.status == 401


def test_request_message_is_valid_block_kit_with_two_buttons() -> None:
    message = build_request_message(request())
    assert validate_slack_blocks(message["blocks"]) == []
    buttons = FakeSlack().buttons(message)
    assert [(b["action_id"], b["value"], b["style"]) for b in buttons] == [
        (APPROVE_ACTION_ID, "req00001", "primary"),
        (DENY_ACTION_ID, "req00001", "danger"),
    ]
    section = message["blocks"][1]["text"]["text"]
    assert "`acct:&lt;1&gt;&amp;`" in section  # user text escaped for mrkdwn
    assert "pay-bot" in message["text"] and "payments.refund" in message["text"]


def test_click_payloads_parse_to_the_request_and_the_slack_user() -> None:
    fake = FakeSlack()
    message = build_request_message(request())
    body, headers = fake.signed_request(fake.interaction(message, DENY_ACTION_ID, "bob"))
    verify_signature(
        fake.signing_secret,
        headers["X-Slack-Request-Timestamp"],
        headers["X-Slack-Signature"],
        body,
    )
    click = parse_interaction(body)
    assert (click.request_id, click.approve, click.approver) == ("req00001", False, "slack:bob")
    assert click.response_url is not None and click.response_url.endswith("/actions/1")
    approve = parse_interaction(
        fake.signed_request(fake.interaction(message, APPROVE_ACTION_ID))[0]
    )
    assert approve.approve and approve.approver == "slack:alice"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not a form", "form with a JSON"),
        (b"payload=%7B%22type%22%3A%22view_submission%22%7D", "block_actions"),
        (b"payload=%7B%22type%22%3A%22block_actions%22%7D", "no user"),
        (
            b"payload=%7B%22type%22%3A%22block_actions%22%2C%22user%22%3A%7B%22id%22%3A%22U1%22"
            b"%7D%2C%22actions%22%3A%5B%7B%22action_id%22%3A%22other%22%7D%5D%7D",
            "no agentwatch approval button",
        ),
    ],
)
def test_foreign_payloads_are_refused(body: bytes, message: str) -> None:
    with pytest.raises(SlackRequestError, match=message) as err:
        parse_interaction(body)
    assert err.value.status == 400


def test_settled_message_names_the_approver() -> None:
    book = ApprovalBook()
    book.on_request(request())
    entry = book.on_decision(book.decide("req00001", "approved", "slack:alice", "slack", "", NOW))
    assert entry is not None
    settled = build_settled_message(entry)
    assert settled["replace_original"] is True
    assert "Approved by slack:alice" in settled["text"]
    assert validate_slack_blocks(settled["blocks"]) == []
