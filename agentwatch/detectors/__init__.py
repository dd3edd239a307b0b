"""Detection: per-agent baselines, river-style scorers, agent detectors, rules and the engine.

Importing this package registers every built-in scorer and detector by name, so rules files
can refer to them.
"""

from agentwatch.detectors import (  # noqa: F401 - imported to register
    budget,
    cost_drift,
    cost_spike,
    drift,
    failure_rate,
    fleet_outlier,
    half_space_trees,
    mix_shift,
    novelty,
    policy,
    rate_test,
    robust_zscore,
    runaway_loop,
    sequence,
    thresholded,
)
from agentwatch.detectors.base import DETECTORS, SCORERS, AgentDetector, Finding, Scorer
from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.detectors.engine import Engine
from agentwatch.detectors.rules import RuleSet, load_rules

__all__ = [
    "DETECTORS",
    "SCORERS",
    "AgentBaseline",
    "AgentDetector",
    "Engine",
    "Finding",
    "RuleSet",
    "Scorer",
    "load_rules",
]
