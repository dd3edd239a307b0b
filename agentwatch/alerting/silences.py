"""Silences and inhibition with Alertmanager's semantics (pure logic, no I/O).

An anomaly's *labels* are what matchers see: ``agent``, ``fleet``, ``rule``, ``severity``,
``detector`` and ``kind``, plus the labels of the rule that raised it (the built-in names win).

A **matcher** is ``name="value"``, ``name!="value"``, ``name=~"regex"`` or ``name!~"regex"``,
exactly as in Alertmanager: regular expressions are fully anchored, and a label the anomaly does
not carry has the value ``""`` (so ``team=""`` matches anomalies without a ``team`` label).

A **silence** (:class:`Silence`) mutes every anomaly that matches *all* its matchers while it is
active (``starts_at <= now < ends_at``). Expiring a silence sets ``ends_at`` to now. A
maintenance window is a silence with the single matcher ``fleet="F"`` and a future
``starts_at``.

An **inhibit rule** (:class:`InhibitRule`, ``inhibit_rules:`` in the rules file) mutes a
*target* anomaly (one matching ``target_matchers``) while a *source* anomaly (matching
``source_matchers``) has been seen within ``window`` with the same values of every label in
``equal``; an anomaly never inhibits itself. ``min_agents`` (default 1, as in Alertmanager)
asks for sources from at least that many *other* agents: with ``equal: [fleet]`` and
``min_agents: 3`` this is the fleet-wide outage rule — once three agents of a fleet fail, every
further per-agent failure page of that fleet is inhibited.

A silenced or inhibited anomaly is still recorded and shown; it is never paged.

Examples
--------
>>> m = parse_matcher('agent=~"support-.*"')
>>> m.matches({"agent": "support-7"}), m.matches({"agent": "coder-1"})
(True, False)
>>> str(m)
'agent=~"support-.*"'
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from agentwatch.schemas import Anomaly
from agentwatch.schemas._types import Name

__all__ = [
    "InhibitRule",
    "Matcher",
    "MatcherError",
    "Mute",
    "Silence",
    "SilenceRequest",
    "SourceAlert",
    "anomaly_labels",
    "inhibited_by",
    "matches_all",
    "new_silence_id",
    "parse_matcher",
    "silenced_by",
]

Op = Literal["=", "!=", "=~", "!~"]
_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")
BUILTIN_LABELS = ("agent", "fleet", "rule", "severity", "detector", "kind")


class MatcherError(ValueError):
    """A matcher that does not parse, or a regular expression that does not compile."""


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(f"(?:{pattern})", re.DOTALL)
    except re.error as exc:
        raise MatcherError(f"invalid regular expression {pattern!r}: {exc}") from None


class Matcher(BaseModel):
    """One label matcher (Alertmanager's ``name``, ``value``, ``isRegex``, ``isEqual``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=128)]
    op: Op = "="
    value: Annotated[str, Field(max_length=1024)]

    @model_validator(mode="after")
    def _regex_compiles(self) -> Matcher:
        if self.op in ("=~", "!~"):
            _compiled(self.value)
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this matcher (a missing label is ``""``)."""
        value = labels.get(self.name, "")
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        found = _compiled(self.value).fullmatch(value) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{self.op}"{escaped}"'


def parse_matcher(text: str) -> Matcher:
    """A matcher from ``name=value``, ``name!="value"``, ``name=~"re"`` or ``name!~re``.

    Raises
    ------
    MatcherError
        when ``text`` is not a matcher.

    Examples
    --------
    >>> parse_matcher('fleet="support"'), parse_matcher("severity!=info").op
    (Matcher(name='fleet', op='=', value='support'), '!=')
    """
    found = _MATCHER.match(text)
    if found is None:
        raise MatcherError(
            f"not a matcher: {text!r}; write name=value, name!=value, name=~regex or name!~regex"
        )
    name, op, value = found.groups()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    try:
        return Matcher(name=name, op=op, value=value)
    except ValueError as exc:
        raise MatcherError(f"not a matcher: {text!r}: {exc}") from None


def _matcher(value: Any) -> Any:
    return parse_matcher(value) if isinstance(value, str) else value


_MatcherInput = BeforeValidator(_matcher)


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` satisfy every matcher."""
    return all(m.matches(labels) for m in matchers)


def anomaly_labels(
    anomaly: Anomaly, rule_labels: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The labels silences and inhibit rules match an anomaly by.

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> a = Anomaly(anomaly_id="an-1", ts=datetime(2026, 1, 1, tzinfo=timezone.utc),
    ...     agent_id="a1", fleet="support", detector="failure_rate", kind="errors",
    ...     severity="error", score=9, threshold=5, observed=0.5, baseline=0.01,
    ...     summary="failing", rule="FailureRate")
    >>> anomaly_labels(a, {"team": "care", "fleet": "ignored"})["team"], anomaly_labels(a)["fleet"]
    ('care', 'support')
    """
    labels = dict(rule_labels or {})
    labels.update(
        agent=anomaly.agent_id,
        fleet=anomaly.fleet,
        rule=anomaly.rule or "",
        severity=anomaly.severity,
        detector=anomaly.detector,
        kind=anomaly.kind,
    )
    return labels


def new_silence_id() -> str:
    """A fresh silence id (``sil-`` and 16 hex digits)."""
    return "sil-" + secrets.token_hex(8)


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("a time with a timezone (e.g. 2026-01-01T03:00:00Z)")
    return value.astimezone(UTC)


class SilenceRequest(BaseModel):
    """The body of ``POST /silences``: matchers (strings or objects), times, creator, comment.

    ``starts_at`` defaults to now; ``ends_at`` must come after it.
    """

    model_config = ConfigDict(extra="forbid")

    matchers: Annotated[list[Annotated[Matcher, _MatcherInput]], Field(min_length=1, max_length=64)]
    starts_at: datetime | None = None
    ends_at: datetime
    created_by: Name
    comment: Annotated[str, Field(min_length=1, max_length=1024)]

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _utc(value)


class Silence(BaseModel):
    """A stored silence."""

    model_config = ConfigDict(extra="forbid")

    silence_id: str
    matchers: list[Matcher]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    created_at: datetime
    expired_by: str | None = None

    @classmethod
    def create(cls, request: SilenceRequest, now: datetime, silence_id: str) -> Silence:
        """A silence from a request at ``now``.

        Raises
        ------
        ValueError
            when it would end before it starts, or has already ended.
        """
        starts = request.starts_at or now
        if request.ends_at <= now:
            raise ValueError("ends_at is in the past: the silence would never be active")
        if request.ends_at <= starts:
            raise ValueError("ends_at must be after starts_at")
        return cls(
            silence_id=silence_id,
            matchers=list(request.matchers),
            starts_at=starts,
            ends_at=request.ends_at,
            created_by=request.created_by,
            comment=request.comment,
            created_at=now,
        )

    def status(self, now: datetime) -> Literal["pending", "active", "expired"]:
        """Alertmanager's silence states at ``now``."""
        if now >= self.ends_at:
            return "expired"
        return "pending" if now < self.starts_at else "active"

    def mutes(self, labels: Mapping[str, str], now: datetime) -> bool:
        """Whether this silence is active at ``now`` and matches ``labels``."""
        return self.status(now) == "active" and matches_all(self.matchers, labels)

    def expire(self, now: datetime, by: str) -> Silence:
        """The silence ended at ``now`` (a pending one ends before it starts)."""
        if self.status(now) == "expired":
            return self
        ends = max(now, self.starts_at) if self.status(now) == "active" else self.starts_at
        return self.model_copy(update={"ends_at": ends, "expired_by": by})

    def view(self, now: datetime) -> dict[str, Any]:
        """JSON for the API: the stored fields, ``status`` and matchers as strings too."""
        body = self.model_dump(mode="json")
        body["status"] = self.status(now)
        body["matchers_text"] = [str(m) for m in self.matchers]
        return body


def silenced_by(silences: Iterable[Silence], labels: Mapping[str, str], now: datetime) -> list[str]:
    """The ids of the active silences that mute ``labels`` (sorted)."""
    return sorted(s.silence_id for s in silences if s.mutes(labels, now))


class InhibitRule(BaseModel):
    """One ``inhibit_rules:`` entry of the rules file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source_matchers: Annotated[
        list[Annotated[Matcher, _MatcherInput]], Field(min_length=1, max_length=64)
    ]
    target_matchers: Annotated[
        list[Annotated[Matcher, _MatcherInput]], Field(min_length=1, max_length=64)
    ]
    equal: list[str] = Field(default_factory=list)
    window: Annotated[float, Field(gt=0)] = 900.0
    min_agents: Annotated[int, Field(ge=1, le=10_000)] = 1
    name: str = ""

    @field_validator("window", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        from agentwatch.detectors.rules import parse_duration

        return parse_duration(value)

    def label(self, index: int) -> str:
        """The rule's name for the record (``name``, else ``inhibit_rules[i]``)."""
        return self.name or f"inhibit_rules[{index}]"


@dataclass(frozen=True)
class SourceAlert:
    """An anomaly recently seen, as inhibition sees it: when, which, its labels."""

    clock: float
    anomaly_id: str
    labels: Mapping[str, str]


def inhibited_by(
    rules: Sequence[InhibitRule],
    target: Mapping[str, str],
    target_id: str,
    sources: Iterable[SourceAlert],
    now: float,
) -> list[str]:
    """The names of the inhibit rules that mute ``target`` at ``now`` (``now`` in seconds).

    Examples
    --------
    >>> rule = InhibitRule(source_matchers=['rule="FleetDown"'],
    ...                    target_matchers=['rule="FailureRate"'], equal=["fleet"])
    >>> down = SourceAlert(100.0, "an-1", {"rule": "FleetDown", "fleet": "support"})
    >>> inhibited_by([rule], {"rule": "FailureRate", "fleet": "support"}, "an-2", [down], 200.0)
    ['inhibit_rules[0]']
    >>> inhibited_by([rule], {"rule": "FailureRate", "fleet": "coder"}, "an-2", [down], 200.0)
    []
    """
    pool = list(sources)
    out: list[str] = []
    for index, rule in enumerate(rules):
        if not matches_all(rule.target_matchers, target):
            continue
        agents: set[str] = set()
        for source in pool:
            if source.anomaly_id == target_id or not 0 <= now - source.clock <= rule.window:
                continue
            if not matches_all(rule.source_matchers, source.labels):
                continue
            if any(source.labels.get(n, "") != target.get(n, "") for n in rule.equal):
                continue
            agent = source.labels.get("agent", "")
            if rule.min_agents > 1 and agent == target.get("agent", ""):
                continue  # the outage is the *other* agents failing
            agents.add(agent)
            if len(agents) >= rule.min_agents:
                out.append(rule.label(index))
                break
    return out


@dataclass(frozen=True)
class Mute:
    """Why an anomaly is not paged: the silences and inhibit rules that mute it."""

    silenced_by: tuple[str, ...] = ()
    inhibited_by: tuple[str, ...] = ()

    @property
    def muted(self) -> bool:
        return bool(self.silenced_by or self.inhibited_by)
