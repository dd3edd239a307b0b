"""Loopback fakes of the PagerDuty Events API v2 and a Slack incoming webhook.

Both are real aiohttp servers on 127.0.0.1 (random port). They validate requests the way the
services document them, answer with the documented status codes and bodies, record every
request (``requests``) and every accepted one (``events`` / ``messages``), and can be scripted
to fail for the next N requests or N seconds (:meth:`_FakeService.fail_next`,
:meth:`_FakeService.fail_for`) to test outages.

Use them as async context managers, or through the ``fake_pagerduty`` / ``fake_slack``
fixtures (re-exported by ``tests/alerting/conftest.py``; import them into any conftest)::

    async with FakePagerDuty() as pd:
        settings = Settings(pagerduty_url=pd.url, pagerduty_routing_key=pd.routing_key)
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest_asyncio
from aiohttp import ClientSession, web

from agentwatch.config import Settings
from agentwatch.schemas import Anomaly, ControlState, Notification

__all__ = [
    "PAGERDUTY_ROUTING_KEY",
    "SLACK_SIGNING_SECRET",
    "SLACK_WEBHOOK_PATH",
    "Failure",
    "FakeClock",
    "FakePagerDuty",
    "FakeSlack",
    "RecordedRequest",
    "fake_pagerduty",
    "fake_slack",
    "notify_settings",
    "sample_notification",
    "validate_pagerduty_event",
    "validate_slack_blocks",
    "validate_slack_button",
]

PAGERDUTY_ROUTING_KEY = "0123456789abcdef0123456789abcdef"  # 32 characters, as documented
SLACK_WEBHOOK_PATH = "/services/T000/B000/XXXX"
SLACK_SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # the format Slack documents


@dataclass
class RecordedRequest:
    """One request as received: method, path, headers, raw body, parsed JSON (if any)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    status: int = 0
    at: float = 0.0


@dataclass
class Failure:
    """A scripted failure: answer ``status`` (or just wait ``delay_s``) for a while.

    ``count`` requests, or ``seconds`` from the first request it answers; rules apply in the
    order they were added.
    """

    status: int | None
    count: int | None = None
    seconds: float | None = None
    retry_after: str | None = None
    delay_s: float = 0.0
    errors: list[str] | None = None
    started: float | None = None
    answered: int = 0

    def active(self, now: float) -> bool:
        if self.count is not None:
            return self.answered < self.count
        if self.seconds is not None:
            return self.started is None or now - self.started < self.seconds
        return False


class _FakeService:
    """Server plumbing shared by the fakes."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        """Every request received, in order (``status`` is what was answered)."""
        self.failures: list[Failure] = []
        self._runner: web.AppRunner | None = None
        self._port = 0

    # -- scripting ---------------------------------------------------------------------
    def fail_next(
        self,
        count: int,
        status: int = 500,
        *,
        retry_after: float | str | None = None,
        delay_s: float = 0.0,
        errors: list[str] | None = None,
    ) -> None:
        """Answer the next ``count`` requests with ``status`` (after the earlier rules).

        ``errors`` replaces the ``errors`` list of a PagerDuty 400 body.
        """
        self.failures.append(
            Failure(
                status, count=count, retry_after=_ra(retry_after), delay_s=delay_s, errors=errors
            )
        )

    def fail_for(
        self,
        seconds: float,
        status: int = 500,
        *,
        retry_after: float | str | None = None,
        delay_s: float = 0.0,
    ) -> None:
        """Answer ``status`` for ``seconds`` from the first request this rule answers."""
        self.failures.append(
            Failure(status, seconds=seconds, retry_after=_ra(retry_after), delay_s=delay_s)
        )

    def delay_next(self, count: int, seconds: float) -> None:
        """Answer the next ``count`` requests normally, but only after ``seconds``."""
        self.failures.append(Failure(None, count=count, delay_s=seconds))

    def _scripted(self) -> Failure | None:
        now = time.monotonic()
        while self.failures:
            rule = self.failures[0]
            if rule.started is None:
                rule.started = now
            if rule.active(now):
                rule.answered += 1
                return rule
            self.failures.pop(0)
        return None

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self._port}"

    def _app(self) -> web.Application:
        raise NotImplementedError

    async def start(self) -> None:
        """Listen on a free loopback port."""
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> _FakeService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _record(self, request: web.Request) -> RecordedRequest:
        body = await request.read()
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = None
        entry = RecordedRequest(
            request.method, request.path, dict(request.headers), body, parsed, at=time.monotonic()
        )
        self.requests.append(entry)
        return entry


def _ra(value: float | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return f"{value:g}"


async def _sleep(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)


# ------------------------------------------------------------------------------------------
# PagerDuty Events API v2
# ------------------------------------------------------------------------------------------

PD_EVENT_ACTIONS = ("trigger", "acknowledge", "resolve")
PD_SEVERITIES = ("critical", "error", "warning", "info")
PD_TOP_LEVEL = {
    "routing_key",
    "event_action",
    "dedup_key",
    "payload",
    "client",
    "client_url",
    "links",
    "images",
}
PD_PAYLOAD = {
    "summary",
    "source",
    "severity",
    "timestamp",
    "component",
    "group",
    "class",
    "custom_details",
}
PD_MAX_BYTES = 512 * 1024
_ISO8601 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$")


def _is_iso8601(value: object) -> bool:
    if not isinstance(value, str) or not _ISO8601.match(value):
        return False
    text = value.replace("Z", "+00:00")
    if re.search(r"[+-]\d{4}$", text):
        text = text[:-2] + ":" + text[-2:]
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def validate_pagerduty_event(event: Any, routing_keys: set[str] | None = None) -> list[str]:
    """Problems with an Events API v2 alert event, in PagerDuty's words where it has them.

    Checks what "Send an Alert Event" documents: required ``routing_key`` (32 characters)
    and ``event_action`` (trigger/acknowledge/resolve); ``dedup_key`` at most 255 characters
    and required unless triggering; for a trigger a ``payload`` with ``summary`` (at most
    1024), ``source`` and ``severity`` (critical/error/warning/info), an ISO 8601
    ``timestamp`` if given, string ``component``/``group``/``class``, an object
    ``custom_details``; ``links`` [{href, text?}] and ``images`` [{src (https), href?, alt?}].
    Stricter than PagerDuty in one way: unknown fields are errors (they catch typos).
    """
    if not isinstance(event, dict):
        return ["Event object is invalid: not a JSON object"]
    errors: list[str] = []
    unknown = sorted(set(event) - PD_TOP_LEVEL)
    if unknown:
        errors.append(f"Unknown field(s): {', '.join(unknown)}")
    key = event.get("routing_key")
    if not isinstance(key, str):
        errors.append("'routing_key' is missing or blank")
    elif len(key) != 32:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    elif routing_keys is not None and key not in routing_keys:
        errors.append("'routing_key' is invalid")
    action = event.get("event_action")
    if action not in PD_EVENT_ACTIONS:
        errors.append("'event_action' is invalid (must be one of trigger, acknowledge, resolve)")
    dedup = event.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or not dedup):
        errors.append("'dedup_key' must be a non-empty string")
    elif isinstance(dedup, str) and len(dedup) > 255:
        errors.append("Length of 'dedup_key' is too long (maximum is 255 characters)")
    if action in ("acknowledge", "resolve") and dedup is None:
        errors.append("'dedup_key' is required for acknowledge and resolve events")
    for name in ("client", "client_url"):
        if name in event and not isinstance(event[name], str):
            errors.append(f"'{name}' must be a string")
    if action == "trigger":
        errors += _validate_payload(event.get("payload"))
    errors += _validate_list(event, "links", required="href", allowed={"href", "text"})
    errors += _validate_list(event, "images", required="src", allowed={"src", "href", "alt"})
    for image in event.get("images") or []:
        if isinstance(image, dict) and not str(image.get("src", "")).startswith("https://"):
            errors.append("'images[].src' must be served over HTTPS")
    return errors


def _validate_payload(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["'payload' is missing or not an object"]
    errors = [f"Unknown payload field: {k}" for k in sorted(set(payload) - PD_PAYLOAD)]
    summary = payload.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        errors.append("'payload.summary' is missing or blank")
    elif len(summary) > 1024:
        errors.append("Length of 'payload.summary' is too long (maximum is 1024 characters)")
    source = payload.get("source")
    if not isinstance(source, str) or not source.strip():
        errors.append("'payload.source' is missing or blank")
    if payload.get("severity") not in PD_SEVERITIES:
        errors.append(
            "'payload.severity' is invalid (must be one of critical, error, warning, info)"
        )
    if "timestamp" in payload and not _is_iso8601(payload["timestamp"]):
        errors.append("'payload.timestamp' is not a valid ISO 8601 timestamp")
    for name in ("component", "group", "class"):
        if name in payload and not isinstance(payload[name], str):
            errors.append(f"'payload.{name}' must be a string")
    if "custom_details" in payload and not isinstance(payload["custom_details"], dict):
        errors.append("'payload.custom_details' must be an object")
    return errors


def _validate_list(
    event: dict[str, Any], name: str, *, required: str, allowed: set[str]
) -> list[str]:
    if name not in event:
        return []
    items = event[name]
    if not isinstance(items, list):
        return [f"'{name}' must be an array"]
    errors: list[str] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            errors.append(f"'{name}[{i}]' must be an object")
            continue
        if not isinstance(item.get(required), str) or not item[required]:
            errors.append(f"'{name}[{i}].{required}' is required")
        for key in sorted(set(item) - allowed):
            errors.append(f"Unknown field '{name}[{i}].{key}'")
        for key in allowed & set(item):
            if not isinstance(item[key], str):
                errors.append(f"'{name}[{i}].{key}' must be a string")
    return errors


class FakePagerDuty(_FakeService):
    """PagerDuty Events API v2 (``POST /v2/enqueue``) on loopback.

    Parameters
    ----------
    routing_key
        The integration key it accepts (any 32-character key if ``None``).
    """

    def __init__(self, routing_key: str | None = PAGERDUTY_ROUTING_KEY) -> None:
        super().__init__()
        self.routing_key = routing_key or PAGERDUTY_ROUTING_KEY
        self._keys = {routing_key} if routing_key else None
        self.events: list[dict[str, Any]] = []
        """Accepted events, in order."""

    async def __aenter__(self) -> FakePagerDuty:
        await self.start()
        return self

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=4 * PD_MAX_BYTES)
        app.router.add_post("/v2/enqueue", self._enqueue)
        return app

    def accepted(self, action: str | None = None) -> list[dict[str, Any]]:
        """Accepted events, optionally only those with ``event_action == action``."""
        return [e for e in self.events if action is None or e.get("event_action") == action]

    async def _enqueue(self, request: web.Request) -> web.Response:
        entry = await self._record(request)
        rule = self._scripted()
        if rule is not None:
            await _sleep(rule.delay_s)
            if rule.status is not None:
                entry.status = rule.status
                return self._failure(rule)
        if len(entry.body) > PD_MAX_BYTES:
            return self._invalid(entry, ["Event payload is too large (maximum is 512 KB)"])
        if not request.content_type.startswith("application/json") or entry.json is None:
            return self._invalid(entry, ["JSON parse error"])
        errors = validate_pagerduty_event(entry.json, self._keys)
        if errors:
            return self._invalid(entry, errors)
        event = entry.json
        self.events.append(event)
        entry.status = 202
        dedup = event.get("dedup_key") or uuid.uuid4().hex
        return web.json_response(
            {"status": "success", "message": "Event processed", "dedup_key": dedup}, status=202
        )

    @staticmethod
    def _invalid(entry: RecordedRequest, errors: list[str]) -> web.Response:
        entry.status = 400
        return web.json_response(
            {"status": "invalid event", "message": "Event object is invalid", "errors": errors},
            status=400,
        )

    @staticmethod
    def _failure(rule: Failure) -> web.Response:
        status = rule.status or 500
        headers = {"Retry-After": rule.retry_after} if rule.retry_after else None
        body: dict[str, Any]
        if status == 429:
            body = {
                "status": "throttle event",
                "message": "Requests for this service are arriving too quickly; retry later.",
            }
        elif status == 400:
            body = {
                "status": "invalid event",
                "message": "Event object is invalid",
                "errors": rule.errors or ["scripted rejection"],
            }
        else:
            body = {"status": "error", "message": "Internal server error", "errors": ["scripted"]}
        return web.json_response(body, status=status, headers=headers)


# ------------------------------------------------------------------------------------------
# Slack incoming webhook
# ------------------------------------------------------------------------------------------

SLACK_BLOCK_TYPES = {
    "actions",
    "context",
    "divider",
    "file",
    "header",
    "image",
    "input",
    "markdown",
    "rich_text",
    "section",
    "video",
    "table",
}
SLACK_MESSAGE_FIELDS = {
    "text",
    "blocks",
    "attachments",
    "thread_ts",
    "mrkdwn",
    "unfurl_links",
    "unfurl_media",
    "username",
    "icon_emoji",
    "icon_url",
    "channel",
    "metadata",
    "response_type",
    "replace_original",
    "delete_original",
}


def _text_object(obj: Any, where: str, limit: int, *, plain_only: bool = False) -> list[str]:
    if not isinstance(obj, dict):
        return [f"{where} must be a text object"]
    errors: list[str] = []
    kind = obj.get("type")
    allowed_types = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
    if kind not in allowed_types:
        errors.append(f"{where}.type must be one of {allowed_types}")
    allowed = {"type", "text", "emoji"} if kind == "plain_text" else {"type", "text", "verbatim"}
    errors += [f"{where}.{k} is not allowed" for k in sorted(set(obj) - allowed)]
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        errors.append(f"{where}.text must be a non-empty string")
    elif len(text) > limit:
        errors.append(f"{where}.text must be at most {limit} characters (got {len(text)})")
    return errors


def validate_slack_blocks(blocks: Any) -> list[str]:
    """Block Kit problems Slack answers ``invalid_blocks`` for (the subset we use, strictly).

    At most 50 blocks of known types; ``block_id`` at most 255; header: plain_text at most
    150; section: ``text`` at most 3000 and/or 1-10 ``fields`` of at most 2000 each; context:
    1-10 text elements; divider: nothing else.
    """
    if not isinstance(blocks, list):
        return ["blocks must be an array"]
    if len(blocks) > 50:
        return [f"at most 50 blocks (got {len(blocks)})"]
    errors: list[str] = []
    for i, block in enumerate(blocks):
        where = f"blocks[{i}]"
        if not isinstance(block, dict):
            errors.append(f"{where} must be an object")
            continue
        kind = block.get("type")
        if kind not in SLACK_BLOCK_TYPES:
            errors.append(f"{where}.type {kind!r} is not a known block type")
            continue
        block_id = block.get("block_id")
        if block_id is not None and (not isinstance(block_id, str) or len(block_id) > 255):
            errors.append(f"{where}.block_id must be a string of at most 255 characters")
        if kind == "header":
            errors += _only(block, {"type", "text", "block_id"}, where)
            errors += _text_object(block.get("text"), f"{where}.text", 150, plain_only=True)
        elif kind == "section":
            errors += _only(block, {"type", "text", "fields", "block_id", "accessory"}, where)
            if "text" not in block and "fields" not in block:
                errors.append(f"{where} needs text or fields")
            if "text" in block:
                errors += _text_object(block["text"], f"{where}.text", 3000)
            if "fields" in block:
                fields = block["fields"]
                if not isinstance(fields, list) or not 1 <= len(fields) <= 10:
                    errors.append(f"{where}.fields must be an array of 1-10 text objects")
                else:
                    for j, f in enumerate(fields):
                        errors += _text_object(f, f"{where}.fields[{j}]", 2000)
        elif kind == "context":
            errors += _only(block, {"type", "elements", "block_id"}, where)
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
                errors.append(f"{where}.elements must be an array of 1-10 elements")
            else:
                for j, element in enumerate(elements):
                    errors += _text_object(element, f"{where}.elements[{j}]", 3000)
        elif kind == "divider":
            errors += _only(block, {"type", "block_id"}, where)
        elif kind == "actions":
            errors += _only(block, {"type", "elements", "block_id"}, where)
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 25:
                errors.append(f"{where}.elements must be an array of 1-25 elements")
            else:
                ids = [e.get("action_id") for e in elements if isinstance(e, dict)]
                if len(ids) != len(set(ids)):
                    errors.append(f"{where}.elements: action_id must be unique in the block")
                for j, element in enumerate(elements):
                    errors += validate_slack_button(element, f"{where}.elements[{j}]")
    return errors


def validate_slack_button(element: Any, where: str) -> list[str]:
    """Problems of a Block Kit ``button`` element (the only element we accept here).

    ``text`` plain_text at most 75; ``action_id`` at most 255; ``value`` at most 2000;
    ``style`` ``primary`` or ``danger``; ``url`` at most 3000.
    """
    if not isinstance(element, dict) or element.get("type") != "button":
        return [f"{where} must be a button element"]
    errors = _only(
        element,
        {"type", "text", "action_id", "value", "style", "url", "confirm", "accessibility_label"},
        where,
    )
    errors += _text_object(element.get("text"), f"{where}.text", 75, plain_only=True)
    action_id = element.get("action_id")
    if not isinstance(action_id, str) or not 0 < len(action_id) <= 255:
        errors.append(f"{where}.action_id must be a string of 1-255 characters")
    value = element.get("value")
    if value is not None and (not isinstance(value, str) or not 0 < len(value) <= 2000):
        errors.append(f"{where}.value must be a string of 1-2000 characters")
    style = element.get("style")
    if style is not None and style not in ("primary", "danger"):
        errors.append(f"{where}.style must be primary or danger")
    return errors


def _only(block: dict[str, Any], allowed: set[str], where: str) -> list[str]:
    return [f"{where}.{k} is not allowed" for k in sorted(set(block) - allowed)]


class FakeSlack(_FakeService):
    """A Slack incoming webhook (``POST /services/T000/B000/XXXX``) on loopback.

    Answers ``200 ok``; ``400 invalid_payload`` (not JSON, not an object),
    ``400 no_text`` (neither text nor blocks), ``400 invalid_blocks`` (Block Kit limits),
    ``404 no_service`` (another path); scripted ``429`` carry ``Retry-After``.

    Interactivity: :meth:`click` plays a person pressing a button of an accepted message the
    way Slack does: a ``block_actions`` payload built from that very button (only buttons the
    message carries can be pressed), form-encoded, signed with the app's signing secret
    (``X-Slack-Signature`` v0, ``X-Slack-Request-Timestamp``) and posted to the app's
    interactivity URL; its ``response_url`` (``POST /actions/<n>``) records what the app
    answers there in :attr:`responses`.
    """

    def __init__(self, signing_secret: str = SLACK_SIGNING_SECRET) -> None:
        super().__init__()
        self.signing_secret = signing_secret
        self.messages: list[dict[str, Any]] = []
        """Accepted messages, in order."""
        self.last_errors: list[str] = []
        """Why the last ``invalid_blocks`` was answered."""
        self.responses: list[dict[str, Any]] = []
        """Messages the app posted to a ``response_url``, in order."""
        self._clicks = 0

    def buttons(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        """The buttons of a message, each with its block's ``block_id`` (``_block_id``)."""
        found = []
        for block in message.get("blocks") or []:
            if block.get("type") == "actions":
                for element in block["elements"]:
                    found.append({**element, "_block_id": block.get("block_id")})
        return found

    def interaction(
        self, message: dict[str, Any], action_id: str, user: str = "alice"
    ) -> dict[str, Any]:
        """The ``block_actions`` payload Slack sends when ``user`` presses a button."""
        matching = [b for b in self.buttons(message) if b.get("action_id") == action_id]
        if len(matching) != 1:
            raise AssertionError(f"message has no single button {action_id!r}: {message}")
        button = matching[0]
        self._clicks += 1
        return {
            "type": "block_actions",
            "user": {"id": f"U{abs(hash(user)) % 10**8:08d}", "username": user, "name": user},
            "team": {"id": "T000", "domain": "example"},
            "api_app_id": "A000",
            "trigger_id": f"{self._clicks}.1.abc",
            "response_url": f"{self.url}/actions/{self._clicks}",
            "actions": [
                {
                    "type": "button",
                    "action_id": button["action_id"],
                    "block_id": button["_block_id"],
                    "text": button["text"],
                    "value": button.get("value"),
                    "style": button.get("style"),
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }

    def signed_request(
        self, payload: dict[str, Any], *, secret: str | None = None, timestamp: int | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """Body and headers of an interactivity request, signed as Slack signs it."""
        body = urlencode({"payload": json.dumps(payload)}).encode()
        ts = str(int(time.time()) if timestamp is None else timestamp)
        base = b"v0:" + ts.encode() + b":" + body
        key = (self.signing_secret if secret is None else secret).encode()
        signature = "v0=" + hmac.new(key, base, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signature,
        }
        return body, headers

    async def click(
        self, interactivity_url: str, message: dict[str, Any], action_id: str, user: str = "alice"
    ) -> tuple[int, Any]:
        """Press a button of ``message`` as ``user``: post the signed payload; the answer."""
        body, headers = self.signed_request(self.interaction(message, action_id, user))
        async with (
            ClientSession() as http,
            http.post(interactivity_url, data=body, headers=headers) as resp,
        ):
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text

    async def __aenter__(self) -> FakeSlack:
        await self.start()
        return self

    @property
    def webhook_url(self) -> str:
        """The webhook URL (a secret in production)."""
        return self.url + SLACK_WEBHOOK_PATH

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        entry = await self._record(request)
        if request.path.startswith("/actions/") and request.method == "POST":
            if not isinstance(entry.json, dict) or not (
                entry.json.get("text") or entry.json.get("blocks")
            ):
                return self._answer(entry, 400, "invalid_payload")
            errors = validate_slack_blocks(entry.json.get("blocks", []))
            if errors:
                self.last_errors = errors
                return self._answer(entry, 400, "invalid_blocks")
            self.responses.append(entry.json)
            return self._answer(entry, 200, "ok")
        if request.path != SLACK_WEBHOOK_PATH:
            return self._answer(entry, 404, "no_service")
        if request.method != "POST":
            return self._answer(entry, 405, "invalid_method")
        rule = self._scripted()
        if rule is not None:
            await _sleep(rule.delay_s)
            if rule.status is not None:
                body = {
                    429: "rate_limited",
                    400: "invalid_payload",
                    403: "action_prohibited",
                    404: "no_service",
                    410: "channel_is_archived",
                }.get(rule.status, "rollup_error")
                headers = {"Retry-After": rule.retry_after} if rule.retry_after else None
                return self._answer(entry, rule.status, body, headers)
        if not request.content_type.startswith("application/json"):
            return self._answer(entry, 400, "invalid_payload")
        message = entry.json
        if not isinstance(message, dict):
            return self._answer(entry, 400, "invalid_payload")
        unknown = set(message) - SLACK_MESSAGE_FIELDS
        if unknown:
            self.last_errors = [f"unknown field(s) {sorted(unknown)}"]
            return self._answer(entry, 400, "invalid_payload")
        text, blocks = message.get("text"), message.get("blocks")
        if text is not None and not isinstance(text, str):
            return self._answer(entry, 400, "invalid_payload")
        if not text and not blocks and not message.get("attachments"):
            return self._answer(entry, 400, "no_text")
        if blocks is not None:
            errors = validate_slack_blocks(blocks)
            if errors:
                self.last_errors = errors
                return self._answer(entry, 400, "invalid_blocks")
        self.messages.append(message)
        return self._answer(entry, 200, "ok")

    @staticmethod
    def _answer(
        entry: RecordedRequest, status: int, body: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        entry.status = status
        return web.Response(status=status, text=body, content_type="text/html", headers=headers)


# ------------------------------------------------------------------------------------------
# fixtures (re-exported by tests/alerting/conftest.py; import them into any conftest)
# ------------------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def fake_pagerduty() -> AsyncIterator[FakePagerDuty]:
    """A running :class:`FakePagerDuty` accepting :data:`PAGERDUTY_ROUTING_KEY`."""
    async with FakePagerDuty() as fake:
        yield fake


@pytest_asyncio.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    """A running :class:`FakeSlack`; its webhook URL is ``fake_slack.webhook_url``."""
    async with FakeSlack() as fake:
        yield fake


# ------------------------------------------------------------------------------------------
# settings, a fake clock and sample data
# ------------------------------------------------------------------------------------------


def notify_settings(
    pagerduty: FakePagerDuty | None = None, slack: FakeSlack | None = None, **overrides: object
) -> Settings:
    """Settings pointing the notifiers at the fakes (the ones given), with fast retries."""
    values: dict[str, object] = {
        "notify_max_backoff_s": 0.05,
        "pagerduty_events_per_minute": 10_000,
        "slack_messages_per_second": 100.0,
    }
    if pagerduty is not None:
        values["pagerduty_url"] = pagerduty.url
        values["pagerduty_routing_key"] = PAGERDUTY_ROUTING_KEY
    if slack is not None:
        values["slack_webhook_url"] = slack.webhook_url
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# a fake clock
# ------------------------------------------------------------------------------------------


class FakeClock:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


# ------------------------------------------------------------------------------------------
# sample data
# ------------------------------------------------------------------------------------------


def sample_notification(**overrides: Any) -> Notification:
    """A realistic trigger notification (critical cost spike, agent halted); override fields."""
    at = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    anomaly = Anomaly(
        anomaly_id="an-1",
        ts=at,
        agent_id="support-7",
        fleet="support",
        detector="cost_spike",
        kind="cost",
        severity="critical",
        score=9.5,
        threshold=4.0,
        observed=12.5,
        baseline=1.25,
        summary="cost $12.50 in 5 min vs $1.25 baseline (10x)",
        evidence=[f"ev-{i}" for i in range(15)],
        rule="CostSpike",
        actions=["refund"],
    )
    values: dict[str, Any] = {
        "notification_id": "inc-1:0",
        "incident_id": "inc-1",
        "dedup_key": "inc-1",
        "event": "trigger",
        "reason": "opened",
        "created_at": at,
        "agent_id": "support-7",
        "fleet": "support",
        "severity": "critical",
        "title": "support-7: cost spike 10x baseline",
        "detectors": ["cost_spike"],
        "anomaly_count": 3,
        "top_anomalies": [anomaly],
        "control": ControlState(
            agent_id="support-7",
            halted=True,
            revoked=["refund"],
            reason="CostSpike",
            incident_id="inc-1",
            updated_at=at,
            updated_by="CostSpike",
            version=4,
        ),
        "actions_taken": ["halted agent support-7", "revoked refund"],
        "commands": [
            "agentwatch agents resume support-7",
            "agentwatch agents grant support-7 refund",
        ],
        "runbook_url": "https://runbooks.example.com/cost-spike",
        "agent_url": "http://127.0.0.1:6066/agents/support-7",
    }
    values.update(overrides)
    return Notification(**values)
