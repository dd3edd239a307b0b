"""Backtest scoring: incident recall, time to detect, false alert episodes, precision.

:func:`evaluate` compares the anomalies a backtest produced with the simulator's labels
(:meth:`agentwatch.lab.sim.Simulation.labels`, :func:`agentwatch.lab.labels.load_labels`) and
returns an :class:`Evaluation`: the numbers users tune detector thresholds against, and what
``agentwatch backtest --labels`` prints. Everything here is a pure function of its inputs.

The definitions are spelled out in :func:`evaluate`; in short, what pages a human is an
*episode* (a chain of one agent's anomalies), so precision and the false alert rate count
episodes, not anomalies, while recall and time to detect count incidents.
"""

from agentwatch.lab.evaluation.evaluation import Evaluation
from agentwatch.lab.evaluation.results import (
    DetectorStats,
    Episode,
    FleetSummary,
    IncidentResult,
    KindStats,
)
from agentwatch.lab.evaluation.scoring import evaluate, incident_agents
from agentwatch.lab.evaluation.targets import DEFAULT_TTD_KINDS, TargetCheck, Targets
from agentwatch.lab.labels import parse_time

__all__ = [
    "DEFAULT_TTD_KINDS",
    "DetectorStats",
    "Episode",
    "Evaluation",
    "FleetSummary",
    "IncidentResult",
    "KindStats",
    "TargetCheck",
    "Targets",
    "evaluate",
    "incident_agents",
    "parse_time",
]
