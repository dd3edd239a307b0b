"""Detection: per-agent baselines, river-style scorers, agent detectors, rules and the engine
(and :func:`persisted`: their state as the table stores it).

Importing this package registers every built-in scorer and detector by name, so rules files
can refer to them. The per-event modules may run compiled (see :mod:`agentwatch._native`).
"""

from agentwatch import _native

_native.install()  # before the first import of a compiled module: never run a stale build

from agentwatch.detectors import (  # noqa: E402, F401 - imported to register
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
    seasonal_zscore,
    sequence,
    thresholded,
)
from agentwatch.detectors.base import (  # noqa: E402
    DETECTORS,
    SCORERS,
    AgentDetector,
    Finding,
    Scorer,
)
from agentwatch.detectors.baseline import AgentBaseline  # noqa: E402
from agentwatch.detectors.engine import Engine  # noqa: E402
from agentwatch.detectors.persisted import persisted  # noqa: E402
from agentwatch.detectors.rules import RuleSet, load_rules  # noqa: E402

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
    "persisted",
]
