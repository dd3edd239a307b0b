"""Ingest from where agents already report: OpenTelemetry traces over OTLP/HTTP.

:class:`~agentwatch.ingest.receiver.OtlpReceiver` serves ``POST /v1/traces`` (protobuf and
JSON, gzip) and turns OpenTelemetry GenAI and OpenInference spans into ``ActionEvent`` s on the
actions topic (:mod:`~agentwatch.ingest.mapping`), joining a span to the agent named by its
``invoke_agent`` ancestor (:mod:`~agentwatch.ingest.traces`) and pricing model calls
(:mod:`~agentwatch.ingest.prices`). It runs in a worker or alone (``agentwatch ingest``,
``agentwatch[ingest]``, no faust). docs/otlp.md has the mapping and a Collector pipeline.
"""

from agentwatch.ingest.mapping import SpanMapper
from agentwatch.ingest.pipeline import Outcome, SpanPipeline
from agentwatch.ingest.prices import PriceTable, load_prices
from agentwatch.ingest.receiver import OtlpReceiver
from agentwatch.ingest.service import OtlpStartError, run_ingest, start_in_worker
from agentwatch.ingest.traces import TraceJoiner

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
