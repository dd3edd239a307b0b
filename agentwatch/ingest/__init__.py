"""Ingest from where agents already report: OpenTelemetry traces over OTLP/HTTP.

:class:`~agentwatch.ingest.receiver.OtlpReceiver` serves ``POST /v1/traces`` (protobuf and
JSON, gzip) and turns OpenTelemetry GenAI and OpenInference spans into ``ActionEvent`` s on the
actions topic (:mod:`~agentwatch.ingest.mapping`), joining a span to the agent named by its
``invoke_agent`` ancestor (:mod:`~agentwatch.ingest.traces`) and pricing model calls
(:mod:`~agentwatch.ingest.prices`). It runs in a worker or alone (``agentwatch ingest``,
``agentwatch[ingest]``, no faust). docs/otlp.md has the mapping and a Collector pipeline.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentwatch.ingest.mapping import SpanMapper
    from agentwatch.ingest.pipeline import Outcome, SpanPipeline
    from agentwatch.ingest.prices import PriceTable, load_prices
    from agentwatch.ingest.receiver import OtlpReceiver
    from agentwatch.ingest.service import OtlpStartError, run_ingest, start_in_worker
    from agentwatch.ingest.traces import TraceJoiner

# Imported on first use, so an agent process can use the price table
# (``agentwatch.ingest.prices``, needed by the framework adapters) without aiohttp or
# opentelemetry-proto installed.
_LAZY = {
    "SpanMapper": "mapping",
    "Outcome": "pipeline",
    "SpanPipeline": "pipeline",
    "PriceTable": "prices",
    "load_prices": "prices",
    "OtlpReceiver": "receiver",
    "OtlpStartError": "service",
    "run_ingest": "service",
    "start_in_worker": "service",
    "TraceJoiner": "traces",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "OtlpReceiver",
    "OtlpStartError",
    "Outcome",
    "PriceTable",
    "SpanMapper",
    "SpanPipeline",
    "TraceJoiner",
    "load_prices",
    "run_ingest",
    "start_in_worker",
]
