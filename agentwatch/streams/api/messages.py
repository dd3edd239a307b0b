"""What the control API reads and answers: the request as handlers see it (:class:`Call`), the
answer they give (:class:`Answer`), the POST body model and the query-string parsers.

Handlers take a :class:`Call` and return an :class:`Answer`, never a web response, so the
on-call console (:mod:`agentwatch.streams.console`) runs the same handlers as the JSON API.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from yarl import URL

from agentwatch.detectors.rules import parse_duration
from agentwatch.schemas._types import Name

__all__ = [
    "INCIDENT_STATUSES",
    "MAX_BODY",
    "Answer",
    "Call",
    "ControlRequest",
    "etag",
    "parse_control_body",
    "parse_if_match",
    "parse_since",
    "parse_statuses",
    "resolve_evidence",
]

MAX_BODY = 64 * 1024
INCIDENT_STATUSES = ("open", "acknowledged", "resolved")
_PASSED_HEADERS = ("authorization", "content-type", "if-match")


class ControlRequest(BaseModel):
    """Body of every POST: who, why, (revoke/grant) which actions, and ``force`` to control an
    agent the monitor has never seen."""

    model_config = ConfigDict(extra="forbid", strict=True)

    actor: Name
    reason: Annotated[str, Field(min_length=1, max_length=1024)]
    actions: Annotated[list[Name], Field(max_length=1024)] = Field(default_factory=list)
    incident_id: Name | None = None
    force: bool = False


@dataclass(frozen=True)
class Call:
    """One request to the control API, as its handlers see it.

    Parameters
    ----------
    method
        ``GET``, ``POST`` or ``DELETE``.
    url
        The URL asked for (its path and query are passed on when forwarded to another worker).
    headers
        The headers passed on to another worker (``Authorization``, ``Content-Type``,
        ``If-Match``), by their usual spelling.
    body
        The request body (empty for a GET).
    """

    method: str
    url: URL
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    @classmethod
    async def of(cls, request: Any) -> Call:
        """The call an aiohttp request makes (its body read once, here)."""
        headers = {k: v for k, v in request.headers.items() if k.lower() in _PASSED_HEADERS}
        body = await request.read() if request.method in ("POST", "PUT", "PATCH") else b""
        return cls(method=request.method, url=request.url, headers=headers, body=body)

    @property
    def query(self) -> Mapping[str, str]:
        """The query-string parameters."""
        return self.url.query

    @property
    def authorization(self) -> str:
        """The ``Authorization`` header, passed on to the other workers asked."""
        return self.header("Authorization") or ""

    def header(self, name: str) -> str | None:
        """A header's value, whatever the case of its name."""
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


@dataclass(frozen=True)
class Answer:
    """A handler's answer: a JSON document, or the bytes another worker answered.

    Examples
    --------
    >>> Answer.problem(404, "unknown incident 'x'").doc()
    {'error': "unknown incident 'x'"}
    >>> Answer(raw=b'{"ok": true}', status=200).doc()
    {'ok': True}
    """

    body: Any = None
    status: int = 200
    headers: Mapping[str, str] | None = None
    raw: bytes | None = None
    content_type: str | None = None

    @classmethod
    def problem(cls, status: int, message: str, **extra: Any) -> Answer:
        """An error answer ``{"error": message, ...}``."""
        return cls({"error": message, **extra}, status=status)

    @property
    def ok(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status < 300

    def doc(self) -> Any:
        """The answer's JSON document (parsed, when another worker answered)."""
        if self.raw is None:
            return self.body
        try:
            return orjson.loads(self.raw)
        except orjson.JSONDecodeError:
            return {"error": self.raw[:512].decode(errors="replace")}

    def error(self) -> str:
        """The error message of a refusal (``""`` for a success)."""
        doc = self.doc()
        if self.ok:
            return ""
        if isinstance(doc, dict) and isinstance(doc.get("error"), str):
            problems = doc.get("problems")
            if isinstance(problems, list) and problems:
                return f"{doc['error']}: {'; '.join(map(str, problems))}"
            return str(doc["error"])
        return f"HTTP {self.status}"

    def render(self, view: Any) -> Any:
        """The web response for ``view`` (a faust view)."""
        headers = dict(self.headers) if self.headers else None
        if self.raw is not None:
            return view.bytes(
                self.raw, content_type=self.content_type, status=self.status, headers=headers
            )
        return view.json(self.body, status=self.status, headers=headers)


def parse_control_body(raw: bytes) -> ControlRequest | Answer:
    """The :class:`ControlRequest` of a POST body, or the 400 answer refusing it."""
    if len(raw) > MAX_BODY:
        return Answer.problem(400, f"body over {MAX_BODY} bytes")
    try:
        doc = orjson.loads(raw or b"null")
    except orjson.JSONDecodeError as exc:
        return Answer.problem(400, f"body is not valid JSON: {exc}")
    if not isinstance(doc, dict):
        return Answer.problem(400, "body must be a JSON object with actor and reason")
    try:
        return ControlRequest.model_validate(doc)
    except ValidationError as exc:
        return Answer.problem(400, "invalid body", problems=validation_problems(exc))


def validation_problems(exc: ValidationError) -> list[str]:
    """One ``field: message`` line per problem pydantic found."""
    return [
        f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
        for e in exc.errors(include_url=False)
    ]


def parse_statuses(value: str | None) -> list[str] | None:
    """The incident statuses a ``?status=`` names (comma-separated); ``None`` = every status.

    Raises
    ------
    ValueError
        for an unknown status.

    Examples
    --------
    >>> parse_statuses("open,acknowledged"), parse_statuses(None), parse_statuses("all")
    (['open', 'acknowledged'], None, None)
    """
    if value is None or value.strip() in ("", "all"):
        return None
    statuses = [part.strip() for part in value.split(",") if part.strip()]
    unknown = [x for x in statuses if x not in INCIDENT_STATUSES]
    if unknown:
        raise ValueError(
            f"unknown status {', '.join(map(repr, unknown))}: use open, acknowledged, "
            "resolved or all (comma-separated)"
        )
    return list(dict.fromkeys(statuses))


def parse_since(value: str | None, now: datetime) -> datetime | None:
    """The time a ``?since=`` names: an ISO 8601 time, or a duration back from ``now``.

    Raises
    ------
    ValueError
        for anything else.

    Examples
    --------
    >>> now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    >>> parse_since("2h", now).hour, parse_since("2026-01-01T03:00:00Z", now).hour
    (10, 3)
    >>> parse_since(None, now) is None
    True
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return now - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"since={value!r} is neither a time (2026-01-01T03:00:00Z) nor a duration (30m, 2h)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when


def resolve_evidence(
    anomalies: list[dict[str, Any]], events: list[bytes] | None
) -> list[dict[str, Any]]:
    """Each anomaly record with ``evidence_events``: its evidence ids resolved against the
    agent's recent events (``held: false`` when the store no longer has one).

    Examples
    --------
    >>> out = resolve_evidence([{"evidence": ["e1", "e9"]}], [b'{"event_id":"e1","x":1}'])
    >>> [(e["event_id"], e["held"]) for e in out[0]["evidence_events"]]
    [('e1', True), ('e9', False)]
    """
    by_id: dict[str, Any] = {}
    for raw in events or []:
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("event_id"), str):
            by_id[doc["event_id"]] = doc
    out = []
    for record in anomalies:
        resolved = []
        for event_id in record.get("evidence", []):
            event = by_id.get(event_id)
            item: dict[str, Any] = {"event_id": event_id, "held": event is not None}
            if event is not None:
                item["event"] = event
            resolved.append(item)
        out.append({**record, "evidence_events": resolved})
    return out


def etag(version: int) -> str:
    """The ``ETag`` of an agent's control state: its version, quoted.

    >>> etag(17)
    '"17"'
    """
    return f'"{version}"'


def parse_if_match(value: str | None) -> int | None:
    """The version an ``If-Match`` header names (``"17"``, ``17`` or ``W/"17"``).

    Raises
    ------
    ValueError
        for anything else (a list, ``*``, not a number).

    Examples
    --------
    >>> parse_if_match('"17"'), parse_if_match("17"), parse_if_match(None)
    (17, 17, None)
    """
    if value is None:
        return None
    text = value.strip().removeprefix("W/").strip('"')
    if not text.isdigit() or len(text) > 19:
        raise ValueError(f"If-Match must name one control version, e.g. '\"17\"', not {value!r}")
    return int(text)
