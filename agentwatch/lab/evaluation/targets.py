"""The acceptance bar a backtest is checked against."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_TTD_KINDS", "TargetCheck", "Targets"]

DEFAULT_TTD_KINDS: tuple[str, ...] = (
    "runaway_loop",
    "cost_explosion",
    "error_storm",
    "privilege_probing",
    "exfiltration",
    "unapproved_high_risk",
)
"""Incident kinds that must be detected fast (median time to detect within a minute)."""


@dataclass(frozen=True)
class Targets:
    """The acceptance bar a backtest is checked against (the defaults are the project's)."""

    min_recall: float = 0.95
    max_false_per_100_agent_hours: float = 1.0
    max_benign_change_episodes: int = 0
    max_median_ttd_s: float = 60.0
    ttd_kinds: tuple[str, ...] = DEFAULT_TTD_KINDS


@dataclass(frozen=True)
class TargetCheck:
    """One line of :meth:`Evaluation.check`."""

    name: str
    ok: bool
    detail: str
