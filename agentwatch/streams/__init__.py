"""Stream processing: faust app factory, topics, the ingest/baseline stage, embedded broker."""

from agentwatch.streams.app import WorkerApp, create_app
from agentwatch.streams.broker import EmbeddedBroker

__all__ = ["EmbeddedBroker", "WorkerApp", "create_app"]
