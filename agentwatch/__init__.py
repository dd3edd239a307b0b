"""agentwatch: runtime monitor, anomaly detector and kill switch for fleets of LLM agents."""

from agentwatch.schemas import ActionEvent, Anomaly, ControlState, Incident

__all__ = ["ActionEvent", "Anomaly", "ControlState", "Incident", "__version__"]

__version__ = "0.1.0"
