"""Rules files in the style of Prometheus alerting rules.

.. code-block:: yaml

    groups:
      - name: runaway
        rules:
          - alert: RunawayLoop            # unique name; becomes Anomaly.rule
            detector: runaway_loop        # a registered detector
            params: {min_run: 6}          # the detector's constructor arguments
            for: 0s                       # findings must persist this long before firing
            cooldown: 15m                 # one anomaly per agent, rule and kind per cooldown
            fleets: [coder, ops]          # optional: only these fleets
            labels: {severity: critical}  # info | warning | error | critical
            annotations:
              summary: "Agent {agent_id} repeats one action"
              runbook_url: https://runbooks.example.com/agentwatch/runaway-loop
            action: halt                  # notify, revoke, halt, none; or {type: revoke, ...}
            dry_run: false                # record what the response would do, do nothing

Durations are Prometheus-style (``90s``, ``5m``, ``1h30m``) or plain seconds.
:func:`load_rules` raises :class:`RulesError` listing every problem at once, each with the file,
the rule, the key, what was expected and what was found (see
:mod:`agentwatch.detectors.validation`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from agentwatch.alerting.silences import InhibitRule
from agentwatch.detectors.base import DETECTORS, AgentDetector
from agentwatch.detectors.problems import Problem, RulesError
from agentwatch.schemas.approvals import ApprovalPolicy

__all__ = [
    "DEFAULT_RULES",
    "SEVERITIES",
    "Problem",
    "Rule",
    "RuleAction",
    "RuleSet",
    "RulesError",
    "load_rules",
    "parse_yaml",
]

DEFAULT_RULES = "default.yml"
SEVERITIES = ("info", "warning", "error", "critical")
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_duration(value: Any) -> float:
    """``"1h30m"`` -> 5400.0; numbers are seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration, not a boolean")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError("a duration such as 30s, 5m or 1h")
    match = _DURATION.match(value.strip())
    if not match or not any(match.groups()):
        raise ValueError(f"{value!r} is not a duration such as 30s, 5m or 1h")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class RuleAction(BaseModel):
    """What the responder does when the rule fires."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["notify", "revoke", "halt", "none"] = "notify"
    actions: list[str] = Field(
        default_factory=list, description="for revoke: the actions; empty = those in the finding"
    )


def _action(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value


class Rule(BaseModel):
    """One alerting rule: a detector, its parameters, and what firing means."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    alert: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$", max_length=128)
    detector: str
    params: dict[str, Any] = Field(default_factory=dict)
    for_: Duration = Field(0.0, alias="for")
    cooldown: Duration = 900.0
    fleets: list[str] | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    action: Annotated[RuleAction, BeforeValidator(_action)] = RuleAction()
    dry_run: bool = False

    @field_validator("detector")
    @classmethod
    def _known_detector(cls, value: str) -> str:
        if value not in DETECTORS:
            known = ", ".join(sorted(DETECTORS))
            raise ValueError(f"unknown detector {value!r} (known: {known})")
        return value

    @field_validator("labels")
    @classmethod
    def _severity(cls, value: dict[str, str]) -> dict[str, str]:
        severity = value.get("severity")
        if severity is not None and severity not in SEVERITIES:
            raise ValueError(f"severity {severity!r} is not one of info, warning, error, critical")
        return value

    @property
    def severity(self) -> str | None:
        return self.labels.get("severity")

    def build(self) -> AgentDetector:
        """A detector configured with this rule's parameters."""
        return DETECTORS[self.detector](**self.params)


@dataclass(frozen=True)
class RuleSet:
    """The rules of one file, in file order."""

    rules: tuple[Rule, ...]
    source: str
    inhibit_rules: tuple[InhibitRule, ...] = ()
    """``inhibit_rules:`` of the file (:mod:`agentwatch.alerting.silences`)."""
    approvals: ApprovalPolicy = field(default_factory=ApprovalPolicy)
    """Which calls wait for a person's approval (the file's ``approvals`` section)."""

    def __iter__(self) -> Any:
        return iter(self.rules)

    def by_alert(self, alert: str) -> Rule:
        for rule in self.rules:
            if rule.alert == alert:
                return rule
        raise KeyError(alert)


def _read(path: str | Path | None) -> tuple[str, str]:
    if path is None:
        text = resources.files("agentwatch.rules").joinpath(DEFAULT_RULES).read_text("utf-8")
        return f"<builtin {DEFAULT_RULES}>", text
    path = Path(path)
    try:
        return str(path), path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError([Problem(str(path), "(file)", f"cannot read: {exc.strerror}")]) from None
    except UnicodeDecodeError:
        raise RulesError([Problem(str(path), "(file)", "not UTF-8 text")]) from None


def parse_yaml(text: str, source: str) -> Any:
    """``text`` parsed as YAML; a :class:`RulesError` with one line saying where it breaks.

    Examples
    --------
    >>> try:
    ...     parse_yaml("groups: [", "r.yml")
    ... except RulesError as exc:
    ...     print(exc.lines[0])
    r.yml: not valid YAML: line 1, column 10: expected the node content, but found \
'<stream end>' (while parsing a flow node)
    """
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        reason = "not valid YAML"
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            reason += f": line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None)
        if problem:
            reason += f": {problem}"
        context = getattr(exc, "context", None)
        if context:
            reason += f" ({context})"
        raise RulesError([Problem(source, "(file)", reason)]) from None


def load_rules(path: str | Path | None = None) -> RuleSet:
    """Load and validate a rules file (the shipped default when ``path`` is None).

    Raises
    ------
    RulesError
        listing every problem of the file at once.
    """
    import agentwatch.detectors  # noqa: F401 - registers the built-in detectors
    from agentwatch.detectors.approval_rules import check_approvals
    from agentwatch.detectors.validation import check_document, check_inhibit_rules

    source, text = _read(path)
    doc = parse_yaml(text, source)
    rules, problems = check_document(doc, source)
    inhibit, inhibit_problems = check_inhibit_rules(doc, source)
    problems += inhibit_problems
    approvals, more = check_approvals(
        doc.get("approvals") if isinstance(doc, dict) else None, source
    )
    problems += more
    if problems:
        raise RulesError(problems)
    return RuleSet(
        rules=tuple(rules), source=source, inhibit_rules=tuple(inhibit), approvals=approvals
    )
