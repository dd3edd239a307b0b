"""Prometheus metrics of a worker. No metric is labelled by agent (unbounded cardinality)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["RefetchCounts", "WorkerMetrics"]

_BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class RefetchCounts(Protocol):
    """What :meth:`WorkerMetrics.watch_refetches` reads (``streams.refetch.RefetchGuard``)."""

    refetches: int
    accepted: int


class _RefetchCollector(Collector):
    def __init__(self, guard: RefetchCounts) -> None:
        self.guard = guard

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "agentwatch_fetch_refetches",
            "Fetches answered past the offset asked for on a topic never compacted, fetched "
            "again (the embedded broker shows a record late under two producers; "
            "docs/operations.md, offset gaps). Counted for the whole process.",
            value=self.guard.refetches,
        )
        yield CounterMetricFamily(
            "agentwatch_fetch_holes_accepted",
            "Such holes still there after 3 s, read past with a WARNING (then reported as "
            "ingest offset gaps on the actions topic). Counted for the whole process.",
            value=self.guard.accepted,
        )


class WorkerMetrics:
    """The worker's metrics, registered on an injected registry (a fresh one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._refetches_watched = False
        r = self.registry
        self.events_ingested = Counter(
            "agentwatch_events_ingested",
            "Valid action events folded into baselines.",
            ["fleet", "kind", "status"],
            registry=r,
        )
        self.deadletters = Counter(
            "agentwatch_deadletters",
            "Messages sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=r,
        )
        self.deadletter_send_failures = Counter(
            "agentwatch_deadletter_send_failures",
            "Dead-letter sends that failed and were retried (the stage waits meanwhile).",
            registry=r,
        )
        self.deadletter_retrying = Gauge(
            "agentwatch_deadletter_retrying",
            "Dead letters not yet acknowledged after a failed send (each holds up a stage).",
            registry=r,
        )
        self.send_failures = Counter(
            "agentwatch_send_failures",
            "Produce attempts to internal topics that failed and were retried, by purpose.",
            ["purpose"],
            registry=r,
        )
        self.events_rekeyed = Counter(
            "agentwatch_events_rekeyed",
            "Valid events sent again to their agent's own partition with the agent as key, by "
            "reason (no_key, wrong_partition); each is counted when it arrives there.",
            ["reason"],
            registry=r,
        )
        self.processing_errors = Counter(
            "agentwatch_processing_errors",
            "Records whose processing raised (a bug): dead-lettered as processing_error.",
            ["stage"],
            registry=r,
        )
        self.stage_up = Gauge(
            "agentwatch_stage_up",
            "1 while a stage runs and makes progress, 0 when it crashed or stalled.",
            ["stage"],
            registry=r,
        )
        self.stage_lag = Gauge(
            "agentwatch_stage_lag",
            "Records waiting on the partitions of a stage's input topic this worker holds "
            "(notifier: notifications not yet delivered).",
            ["stage"],
            registry=r,
        )
        self.ready = Gauge(
            "agentwatch_ready",
            "1 while /readyz answers 200 (checked every second), else 0.",
            registry=r,
        )
        self.stage_crashes = Counter(
            "agentwatch_stage_crashes",
            "Crashes of a stage's faust agent (in-flight records may be lost: see /readyz).",
            ["stage"],
            registry=r,
        )
        self.stage_last_progress = Gauge(
            "agentwatch_stage_last_progress_timestamp_seconds",
            "Wall-clock time a stage last finished processing input (0 = not yet).",
            ["stage"],
            registry=r,
        )
        self.anomalies = Counter(
            "agentwatch_anomalies",
            "Anomalies published, by detector and severity.",
            ["detector", "severity"],
            registry=r,
        )
        self.duplicates = Counter(
            "agentwatch_duplicate_events",
            "Events dropped because their event_id was already processed.",
            registry=r,
        )
        self.offset_gaps = Counter(
            "agentwatch_ingest_offset_gaps",
            "Holes in the offsets the ingest stage received of an actions partition: a message "
            "beyond the next offset expected (events never folded; see the warning logged).",
            registry=r,
        )
        self.offsets_skipped = Counter(
            "agentwatch_ingest_offsets_skipped",
            "Offsets of the actions topic inside those holes: events the ingest stage never "
            "received (or transaction markers of a transactional producer).",
            registry=r,
        )
        self.batch_seconds = Histogram(
            "agentwatch_batch_seconds",
            "Time to process one batch of action events.",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.batch_events = Histogram(
            "agentwatch_batch_events",
            "Events per processed batch.",
            buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000, 10000),
            registry=r,
        )
        self.flush_seconds = Histogram(
            "agentwatch_baseline_flush_seconds",
            "Time to write changed baselines to the state table.",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.table_writes = Counter(
            "agentwatch_baseline_writes",
            "Baseline states written to the state table (changelog messages).",
            registry=r,
        )
        self.agents = Gauge(
            "agentwatch_agents_tracked",
            "Agents with a baseline held in memory by this worker.",
            registry=r,
        )
        self.consumer_lag = Gauge(
            "agentwatch_consumer_lag",
            "Messages between the partition high-water mark and the last processed offset.",
            ["topic", "partition"],
            registry=r,
        )
        self.fetch_wait = Gauge(
            "agentwatch_consumer_fetch_wait_seconds",
            "The worker consumer's fetch wait now: short while the worker is idle, "
            "AGENTWATCH_FETCH_MAX_WAIT_MS while it is busy.",
            registry=r,
        )
        self.event_time_lag = Gauge(
            "agentwatch_event_time_lag_seconds",
            "Wall clock minus the newest event time processed.",
            registry=r,
        )
        self.control_changes = Counter(
            "agentwatch_control_changes",
            "ControlState changes published, by action and actor kind (rule or person).",
            ["action", "actor_kind"],
            registry=r,
        )
        self.dry_run_actions = Counter(
            "agentwatch_dry_run_actions",
            "Responses a dry-run rule would have taken, by action.",
            ["action"],
            registry=r,
        )
        self.suppressed = Counter(
            "agentwatch_suppressed",
            "Anomalies and due pages kept from paging, by why (silenced or inhibited).",
            ["reason"],
            registry=r,
        )
        self.incident_transitions = Counter(
            "agentwatch_incident_transitions",
            "Incident state changes (opened, reopened, escalated, acknowledged, resolved),"
            " paged or not.",
            ["reason"],
            registry=r,
        )
        self.incident_notifications = Counter(
            "agentwatch_incident_notifications",
            "Incident notifications put in the outbox, by reason (opened, escalated, repeat, ...).",
            ["reason"],
            registry=r,
        )
        self.incidents_open = Gauge(
            "agentwatch_incidents_open",
            "Incidents currently open or acknowledged (on the responder's worker).",
            registry=r,
        )
        self.control_conflicts = Counter(
            "agentwatch_control_conflicts",
            "Control API changes refused because If-Match named another version (409).",
            registry=r,
        )
        self.control_resigned = Counter(
            "agentwatch_control_resigned",
            "Stored control states published again, signed with this worker's key "
            "(unsigned or signed with another key: upgrade, key rotation).",
            registry=r,
        )
        self.api_requests = Counter(
            "agentwatch_api_requests",
            "Control API requests, by endpoint and HTTP status.",
            ["endpoint", "status"],
            registry=r,
        )
        self.fleet_published = Counter(
            "agentwatch_fleet_summaries_published",
            "Fleet summary records this worker published to the fleets topic (one per fleet).",
            registry=r,
        )
        self.fleet_absorbed = Counter(
            "agentwatch_fleet_summaries_absorbed",
            "Other workers' fleet summary records merged into this worker's fleet state.",
            registry=r,
        )
        self.fleet_skipped = Counter(
            "agentwatch_fleet_summaries_skipped",
            "Fleet summary records not published or not merged, by reason "
            "(too_large, undecodable).",
            ["reason"],
            registry=r,
        )
        self.fleet_workers = Gauge(
            "agentwatch_fleet_peer_workers",
            "Other workers whose fleet summaries this worker holds (not yet expired).",
            registry=r,
        )

    def watch_refetches(self, guard: RefetchCounts) -> None:
        """Export ``guard``'s counts (once per registry; they are the process's)."""
        if not self._refetches_watched:
            self.registry.register(_RefetchCollector(guard))
            self._refetches_watched = True
