"""Prometheus metrics of the OTLP receiver (no agent label: unbounded cardinality)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from agentwatch.ingest.mapping import IGNORE_REASONS, REJECT_REASONS

__all__ = ["OtlpMetrics"]


class OtlpMetrics:
    """The receiver's metrics on an injected registry (the worker's, or a fresh one)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "agentwatch_otlp_requests",
            "OTLP/HTTP export requests, by encoding and HTTP status.",
            ["encoding", "code"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "agentwatch_otlp_request_seconds",
            "Time to answer an export request (decode, map, Kafka acknowledgement).",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.spans_received = Counter(
            "agentwatch_otlp_spans_received",
            "Spans in accepted export requests.",
            registry=r,
        )
        self.spans_mapped = Counter(
            "agentwatch_otlp_spans_mapped",
            "Spans that became action events, by convention (gen_ai, openinference) and kind.",
            ["convention", "kind"],
            registry=r,
        )
        self.spans_skipped = Counter(
            "agentwatch_otlp_spans_skipped",
            "Spans that are not agent actions (HTTP, database, framework plumbing), by reason.",
            ["reason"],
            registry=r,
        )
        self.spans_rejected = Counter(
            "agentwatch_otlp_spans_rejected",
            "Agent spans that could not be mapped, by reason; each is dead-lettered.",
            ["reason"],
            registry=r,
        )
        self.spans_unpriced = Counter(
            "agentwatch_otlp_spans_unpriced",
            "LLM spans with no cost attribute and a model not in the price table (cost 0).",
            registry=r,
        )
        self.spans_held = Gauge(
            "agentwatch_otlp_spans_held",
            "Spans waiting for their invoke_agent ancestor to name their agent.",
            registry=r,
        )
        self.held_expired_early = Counter(
            "agentwatch_otlp_held_expired_early",
            "Held spans decided before their wait was over because the hold was full.",
            registry=r,
        )
        self.spans_inflight = Gauge(
            "agentwatch_otlp_spans_inflight",
            "Spans received and not yet acknowledged by Kafka (429 above the limit).",
            registry=r,
        )
        for reason in REJECT_REASONS:  # every reason shows from the start, at 0
            self.spans_rejected.labels(reason)
        for reason in IGNORE_REASONS:
            self.spans_skipped.labels(reason)
        self.send_failures = Counter(
            "agentwatch_otlp_send_failures",
            "Produce attempts to Kafka that failed (the request got 503, or a held span's "
            "event is retried).",
            registry=r,
        )
