"""Per-agent baselines and the engine that the live worker and ``backtest`` share."""

from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.detectors.engine import Engine

__all__ = ["AgentBaseline", "Engine"]
