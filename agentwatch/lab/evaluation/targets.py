"""The acceptance bar a backtest is checked against, and reading it from a file.

The defaults are the project's bar (issue 12): recall at least 0.97, at most 0.5 false alert
episodes per 100 agent-hours, no episode on a benign fleet-wide change, a median time to
detect of at most 45 s for the fast kinds, and fast cost ramps (3x within 2 h) flagged within
30 minutes of crossing twice their starting cost rate. A targets file (YAML) overrides any
of them::

    min_recall: 0.95
    max_false_per_100_agent_hours: 1.0
    max_median_ttd_s: 60
    ttd_kinds: [runaway_loop, error_storm]
    max_median_after_evidence_s: 30

``max_median_after_evidence_s`` (off unless set) bounds the detectors' own delay: for each of
``ttd_kinds``, the median time from an incident's first evidence (its first failed call of a
storm, first egress call of an exfiltration, first call at twice the usual cost of an
explosion...) to its detection, which needs the agents' events (``backtest`` keeps them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["DEFAULT_TTD_KINDS", "TargetCheck", "Targets", "TargetsError", "load_targets"]

DEFAULT_TTD_KINDS: tuple[str, ...] = (
    "runaway_loop",
    "cost_explosion",
    "error_storm",
    "privilege_probing",
    "exfiltration",
    "unapproved_high_risk",
)
"""Incident kinds that must be detected fast (median time to detect within 45 s)."""


@dataclass(frozen=True)
class Targets:
    """The acceptance bar a backtest is checked against (the defaults are the project's)."""

    min_recall: float = 0.97
    max_false_per_100_agent_hours: float = 0.5
    max_benign_change_episodes: int = 0
    max_median_ttd_s: float = 45.0
    ttd_kinds: tuple[str, ...] = DEFAULT_TTD_KINDS
    max_after_2x_s: float = 1800.0
    """Fast cost ramps must be flagged at most this long after crossing 2x."""
    max_median_after_evidence_s: float | None = None
    """If set, each of ``ttd_kinds``' median delay after the first evidence (unchecked by
    default: the project's bar counts from the incident's start)."""


@dataclass(frozen=True)
class TargetCheck:
    """One line of :meth:`Evaluation.check`."""

    name: str
    ok: bool
    detail: str


class TargetsError(ValueError):
    """A targets file that cannot be used: ``"<file>: <key>: <reason>"``."""


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_recall: float = Field(default=Targets.min_recall, ge=0.0, le=1.0)
    max_false_per_100_agent_hours: float = Field(
        default=Targets.max_false_per_100_agent_hours, ge=0.0
    )
    max_benign_change_episodes: int = Field(default=Targets.max_benign_change_episodes, ge=0)
    max_median_ttd_s: float = Field(default=Targets.max_median_ttd_s, gt=0.0)
    ttd_kinds: tuple[str, ...] = DEFAULT_TTD_KINDS
    max_after_2x_s: float = Field(default=Targets.max_after_2x_s, ge=0.0)
    max_median_after_evidence_s: float | None = Field(default=None, ge=0.0)


def load_targets(path: str | Path) -> Targets:
    """Read a targets file (YAML mapping; missing keys keep their defaults).

    Raises
    ------
    TargetsError
        The file, the key and the reason.
    """
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise TargetsError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise TargetsError(f"{path}: not YAML: {exc}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise TargetsError(f"{path}: a targets file is a YAML mapping")
    try:
        parsed = _File.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        key = ".".join(str(p) for p in err["loc"]) or "(top)"
        raise TargetsError(f"{path}: {key}: {err['msg']}") from None
    return Targets(**parsed.model_dump())
