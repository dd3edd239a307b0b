"""Stream processing: faust app factory, topics, the ingest/baseline stage, embedded broker.

The names below load on first use, so that the modules that need no faust
(:mod:`~agentwatch.streams.deadletter`, :mod:`~agentwatch.streams.produce`,
:mod:`~agentwatch.streams.metrics`) import without it: the OTLP receiver
(``agentwatch[ingest]``) uses them on its own.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentwatch.streams.app import WorkerApp, create_app
    from agentwatch.streams.broker import EmbeddedBroker

__all__ = ["EmbeddedBroker", "WorkerApp", "create_app"]

_WHERE = {
    "EmbeddedBroker": "agentwatch.streams.broker",
    "WorkerApp": "agentwatch.streams.app",
    "create_app": "agentwatch.streams.app",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
