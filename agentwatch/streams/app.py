"""The faust app factory: topics, the baseline table, the stream agent, timers and web views.

There is no module-level app: :func:`create_app` builds one from
:class:`~agentwatch.config.Settings` with its metrics registry and engine injected, so tests and
tools can run several side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from faust.types import TP
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agentwatch.alerting.dispatch import Dispatcher, NotificationMetrics
from agentwatch.alerting.firing import FiringStore
from agentwatch.alerting.incidents import IncidentBook, IncidentPolicy
from agentwatch.alerting.responder import Responder
from agentwatch.config import Settings
from agentwatch.detectors.engine import Engine
from agentwatch.detectors.rules import RuleSet, load_rules
from agentwatch.kafka_security import faust_credentials
from agentwatch.logtext import escape
from agentwatch.schemas.signing import signer_from_settings
from agentwatch.streams import refetch
from agentwatch.streams.api import ControlApi
from agentwatch.streams.approvals import register_approvals
from agentwatch.streams.auth_failures import AuthFailures
from agentwatch.streams.batching import take_batches
from agentwatch.streams.broker import free_port
from agentwatch.streams.console import Console, SessionStore
from agentwatch.streams.deadletter import DeadLetters
from agentwatch.streams.engine_host import EngineHost, LocalEngine
from agentwatch.streams.engine_process import EngineProcess
from agentwatch.streams.fleets import FleetExchange
from agentwatch.streams.health import Readiness, StageProbe
from agentwatch.streams.heap import freeze_startup_heap
from agentwatch.streams.http_auth import bearer_refusal
from agentwatch.streams.metrics import WorkerMetrics
from agentwatch.streams.response import DeliveryStage, ResponseStage, TableLog
from agentwatch.streams.stage import BaselineStage, CommitGuard
from agentwatch.streams.store import SCHEME as STORE_SCHEME
from agentwatch.streams.topics import COMPACTED, TOPIC_NAMES
from agentwatch.streams.transport import AgentwatchApp, FetchWait

__all__ = ["WorkerApp", "create_app"]

log = logging.getLogger(__name__)

BASELINE_TABLE = "baselines"
COMMIT_EVERY_MESSAGES = 10_000_000
METRICS_INTERVAL_S = 1.0
TICK_INTERVAL_S = 1.0
FETCH_WAIT_INTERVAL_S = 0.5


@dataclass
class WorkerApp:
    """A configured faust app and the parts tests and tools reach into."""

    app: Any
    settings: Settings
    stage: BaselineStage
    metrics: WorkerMetrics
    table: Any
    response: ResponseStage
    delivery: DeliveryStage
    controls: Any
    incidents: Any
    deliveries: Any
    deadletters: DeadLetters
    probes: dict[str, StageProbe]
    topics: dict[str, Any] = field(default_factory=dict)
    web_port: int = 0
    readiness: Readiness | None = None
    otlp_url: str | None = None
    approvals: Any = None
    fleets: FleetExchange | None = None
    auth_failures: AuthFailures = field(default_factory=AuthFailures)

    @property
    def web_url(self) -> str:
        return f"http://{self.settings.web_host}:{self.web_port}"


def create_app(
    settings: Settings,
    *,
    metrics: WorkerMetrics | None = None,
    engine: Engine | None = None,
    dispatcher: Dispatcher | None = None,
    clock: Any = None,
) -> WorkerApp:
    """Build the agentwatch faust app (not started).

    ``dispatcher`` (notifier delivery) and ``clock`` (the responder's wall clock) are
    injectable for tests; by default the notifiers come from ``settings``.

    Raises
    ------
    agentwatch.schemas.signing.SigningKeyError
        when there is no usable control signing key (workers sign every control record).
    """
    signer = signer_from_settings(settings)
    metrics = metrics if metrics is not None else WorkerMetrics()
    metrics.watch_refetches(refetch.GUARD)
    rules: RuleSet = load_rules(settings.rules_file)
    worker_id = settings.fleet_worker_id()
    host: EngineHost
    if engine is None and _engine_apart(settings.engine_process, rules):
        host = EngineProcess(
            rules,
            max_event_bytes=settings.max_event_bytes,
            worker_id=worker_id,
            fleet_ttl_s=settings.fleet_ttl_s,
        )
    elif engine is None:
        host = LocalEngine(Engine(rules, worker_id=worker_id, fleet_ttl_s=settings.fleet_ttl_s))
    else:  # the worker's settings name it among the workers sharing fleet summaries
        engine.sync.worker_id = worker_id
        engine.sync.ttl_s = settings.fleet_ttl_s
        host = LocalEngine(engine)
    clock = clock if clock is not None else time.time
    web_port = settings.web_port or free_port(settings.web_host)
    app = AgentwatchApp(
        settings.app_id,
        # the consumer starts with the idle wait; FetchWait lengthens it while busy
        fetch_max_wait_ms=min(settings.fetch_idle_wait_ms, settings.fetch_max_wait_ms),
        # a hole in these is fetched again (streams/refetch.py)
        refetch_topics=frozenset(settings.topic(n) for n in TOPIC_NAMES if n not in COMPACTED),
        broker=settings.broker_url,
        broker_credentials=faust_credentials(settings),
        store=f"{STORE_SCHEME}://" if settings.store == "rocksdb" else "memory://",
        datadir=str(settings.data_dir),
        autodiscover=False,
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.replication_factor,
        broker_rebalance_timeout=settings.rebalance_timeout_s,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        producer_max_batch_size=settings.producer_max_batch_bytes,
        # one size limit for every record (docs/operations.md, "Record sizes")
        producer_max_request_size=settings.max_message_bytes,
        consumer_max_fetch_size=settings.max_message_bytes,
        broker_commit_interval=settings.commit_interval_s,
        # commit by time only: every commit writes each changed agent's state once
        broker_commit_every=COMMIT_EVERY_MESSAGES,
        consumer_auto_offset_reset="earliest",
        stream_buffer_maxsize=max(4096, settings.batch_max * 2),
        web_enabled=True,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        web_port=web_port,
        canonical_url=settings.web_advertised_url or f"http://{settings.web_host}:{web_port}",
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
    )
    topics = {
        name: app.topic(settings.topic(name), key_type=bytes, value_type=bytes)
        for name in ("actions", "deadletter", "anomalies", "notifications", "audit")
    }
    topics["control"] = app.topic(
        settings.topic("control"),
        key_type=bytes,
        value_type=bytes,
        config={"cleanup.policy": "compact"},
    )
    table = app.Table(
        BASELINE_TABLE,
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.topic_partitions,
    )
    evidence_table = app.Table(
        "evidence",
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.topic_partitions,
    )
    deadletters = DeadLetters(
        topic=topics["deadletter"],
        metrics=metrics,
        max_bytes=settings.deadletter_max_bytes,
        log_interval_s=settings.deadletter_log_interval_s,
    )
    actions_name = settings.topic("actions")

    stage = BaselineStage(
        settings=settings,
        engine=host,
        table=table,
        deadletters=deadletters,
        anomalies=topics["anomalies"],
        actions=topics["actions"],
        metrics=metrics,
        partitions=lambda: app.consumer.topic_partitions(actions_name),
        committed=lambda tp: _committed(app, tp),
        evidence_table=evidence_table,
        backlog=lambda: _producer_backlog(app),
    )
    app.sensors.add(CommitGuard(stage))
    app.commit_barrier = stage  # every commit flushes whole batches only (CommitGuard)
    app.stop_grace_s = settings.stop_grace_s
    app.stop_overdue = lambda: _cut_batch_short(app, stage)
    app.after_stop = host.stop  # an engine process: its stdin closes, it exits
    # The responder's state: one partition each, like its input topics (see topics.py).
    controls = app.Table("controls", default=None, key_type=bytes, value_type=bytes, partitions=1)
    incidents = app.Table("incidents", default=None, key_type=bytes, value_type=bytes, partitions=1)
    deliveries = app.Table(
        "deliveries", default=None, key_type=bytes, value_type=bytes, partitions=1
    )
    # what refreshing notifiers (Alertmanager) hold firing: written beside the deliveries
    firing = app.Table("firing", default=None, key_type=bytes, value_type=bytes, partitions=1)
    anomaly_log, audit_log, silences = (
        app.Table(name, default=None, key_type=bytes, value_type=bytes, partitions=1)
        for name in ("anomaly_log", "audit_log", "silences")
    )
    anomalies_name = settings.topic("anomalies")
    owned = TP(anomalies_name, 0)

    def owns() -> bool:
        recovered = app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
        return owned in app.assignor.assigned_actives() and bool(recovered)

    base_url = settings.web_advertised_url or f"http://{settings.web_host}:{web_port}"
    response = ResponseStage(
        responder=Responder(
            host.rules or rules,
            IncidentBook(IncidentPolicy.from_settings(settings)),
            agent_url=f"{base_url}/console",  # pages link the on-call console's pages
            runbook_base_url=settings.runbook_base_url,
        ),
        controls=controls,
        incidents=incidents,
        topics=topics,
        anomalies_topic=anomalies_name,
        owns=owns,
        metrics=metrics,
        signer=signer,
        deadletters=deadletters,
        history=(anomaly_log, audit_log),
        silences=silences,
        clock=clock,
    )
    if dispatcher is None:
        dispatcher = Dispatcher.from_settings(
            settings,
            TableLog(deliveries),
            metrics=NotificationMetrics(metrics.registry),
            firing=FiringStore(firing),
        )
    history = response.history
    delivery = DeliveryStage(
        dispatcher=dispatcher,
        audit=topics["audit"],
        deadletters=deadletters,
        clock=clock,
        on_audit=history.record_audit if history is not None else None,
        mute=response.mute_page,
        on_muted=response.mark_muted,
    )
    probes = {
        "ingest": StageProbe("ingest", actions_name),
        "responder": StageProbe("responder", anomalies_name),
        "notifier": StageProbe(
            "notifier", settings.topic("notifications"), waiting_on=dispatcher.waiting_on
        ),
    }
    worker = WorkerApp(
        app=app,
        settings=settings,
        stage=stage,
        metrics=metrics,
        table=table,
        response=response,
        delivery=delivery,
        controls=controls,
        incidents=incidents,
        deliveries=deliveries,
        deadletters=deadletters,
        probes=probes,
        topics=topics,
        web_port=web_port,
        fleets=FleetExchange(settings, host, metrics=metrics),
        auth_failures=AuthFailures(settings.auth_max_failures, settings.auth_failure_window_s),
    )
    worker.readiness = _readiness(worker, owned)
    _register_agents(worker)
    _register_views(worker)
    api = ControlApi(
        app,
        settings=settings,
        metrics=metrics,
        stage=stage,
        response=response,
        baselines=table,
        controls=controls,
        failures=worker.auth_failures,
    )
    api.register()
    sessions = SessionStore(settings.console_session_ttl_s, clock=clock)
    Console(
        app, api=api, settings=settings, sessions=sessions, failures=worker.auth_failures
    ).register()
    register_approvals(worker, signer, rules.approvals)
    return worker


def _cut_batch_short(app: Any, stage: BaselineStage) -> None:
    """A stop still waits for the ingest batch in progress after ``app.stop_grace_s`` (the
    broker does not acknowledge its anomalies): cancel it. The stage then writes and commits
    nothing more, and the next start reads its events again (:meth:`BaselineStage._interrupt`)."""
    if not stage.busy:
        return
    log.warning(
        "stopping: the ingest batch in progress still waits for the broker after %.0f s "
        "(AGENTWATCH_STOP_GRACE_S); cancelling it, the next start reads its events again",
        app.stop_grace_s,
    )
    if stage.cut_short():  # it finishes in the background: the agent waits for events
        return
    agent = app.agents.get("baselines")
    for actor in getattr(agent, "_actors", ()):  # faust keeps no public view
        task = actor.actor_task
        if task is not None:
            task.cancel()


def _producer_backlog(app: Any) -> int:
    """Records in faust's producer buffer not yet handed to the Kafka client (0 while the
    buffer is not running: nothing drains it then, so nothing is worth waiting for)."""
    buffer = app.producer.buffer
    return int(buffer.size) if buffer.state == "running" else 0


def _committed(app: Any, tp: TP) -> int | None:
    """The last offset faust committed for ``tp`` (the next to read), ``None`` if none yet.

    faust keeps it in ``Consumer._committed_offset`` (no public accessor in 0.15.3).
    """
    offset = getattr(app.consumer, "_committed_offset", {}).get(tp)
    return None if offset is None else int(offset)


def _readiness(worker: WorkerApp, owned: TP) -> Readiness:
    """The readiness check of a worker: its probes against its faust consumer and tables."""
    app = worker.app

    def recovered() -> bool:
        return bool(app.tables.recovery.completed.is_set())

    def assignment() -> set[TP]:
        return set(app.consumer.assignment())

    def highwater(tp: TP) -> int | None:
        try:
            high = app.consumer.highwater(tp)
        except Exception:  # unknown right after an assignment
            return None
        return None if high is None else int(high)

    agent_of = {"ingest": "baselines", "responder": "responder", "notifier": "notifier"}

    def running(stage: str) -> str | None:
        agent = app.agents.get(agent_of[stage])
        states = [a.state for a in getattr(agent, "_actors", ())]  # faust keeps no public view
        if "running" in states:
            return None
        return f"agent not running (actors: {', '.join(states) or 'none'})"

    def worker_problems() -> list[str]:
        if app.should_stop or app.crashed:
            return ["worker: stopping"]
        problems = []
        if worker.stage.interrupted is not None:
            problems.append(f"ingest: {worker.stage.interrupted}; restart the worker")
        if not app.consumer.assignment():
            problems.append("worker: no partitions assigned yet (starting or rebalancing)")
        if not recovered():
            problems.append("worker: tables are recovering from their changelogs")
        return problems

    def responder() -> str:
        if owned not in app.assignor.assigned_actives():
            return "elsewhere"
        return "here" if recovered() else "recovering"

    return Readiness(
        probes=list(worker.probes.values()),
        stall_after_s=worker.settings.ready_stall_after_s,
        assignment=assignment,
        highwater=highwater,
        committed=lambda tp: _committed(app, tp),
        running=running,
        worker_problems=worker_problems,
        responder=responder,
        metrics=worker.metrics,
    )


def _check_readiness(worker: WorkerApp) -> tuple[dict[str, Any], bool]:
    """Run the readiness check (it also sets the stage gauges); a failing check is not ready."""
    if worker.readiness is None:
        return {"status": "unavailable", "reasons": ["worker: not set up"]}, False
    try:
        report = worker.readiness.check()
    except Exception as exc:  # e.g. the consumer is being replaced during a rebalance
        log.warning("readiness check failed: %r", exc)
        worker.metrics.ready.set(0)
        return {"status": "unavailable", "reasons": [f"readiness check failed: {exc!r}"]}, False
    return report.to_dict(), report.ready


def _crashed(worker: WorkerApp, probe: StageProbe, exc: BaseException) -> None:
    probe.crashed(exc)
    worker.metrics.stage_crashes.labels(probe.name).inc()
    worker.metrics.stage_up.labels(probe.name).set(0)
    log.error("stage %s crashed: %s (see /readyz)", probe.name, escape(repr(exc), 500))


def _update_consumer_lag(worker: WorkerApp, reported: set[TP]) -> None:
    """Set ``agentwatch_consumer_lag`` for each actions partition this worker holds now, and
    drop the series of partitions that moved away (a stale value would count twice)."""
    app, actions_topic = worker.app, worker.settings.topic("actions")
    consumer = app.consumer
    try:
        assigned = {tp for tp in consumer.assignment() if tp.topic == actions_topic}
    except Exception as exc:  # the consumer is being replaced during a rebalance
        log.debug("no assignment for consumer lag: %r", exc)
        return
    positions = worker.stage.positions()
    for tp in assigned:
        try:
            highwater = consumer.highwater(tp)
        except Exception as exc:  # highwater unknown right after a rebalance
            log.debug("no highwater for %s: %r", tp, exc)
            continue
        if highwater is None:
            continue
        done = positions.get(tp)
        position = max(done + 1 if done is not None else 0, _committed(app, tp) or 0)
        worker.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(
            max(0, int(highwater) - position)
        )
        reported.add(tp)
    for tp in reported - assigned:
        with contextlib.suppress(KeyError):  # already gone
            worker.metrics.consumer_lag.remove(tp.topic, str(tp.partition))
        reported.discard(tp)


def _register_agents(worker: WorkerApp) -> None:
    app, stage, settings = worker.app, worker.stage, worker.settings
    actions_topic = worker.settings.topic("actions")
    probes = worker.probes
    reported_lag: set[TP] = set()
    fetch_wait = FetchWait(
        settings.fetch_max_wait_ms, settings.fetch_idle_wait_ms, settings.fetch_busy_events_per_s
    )
    worker.metrics.fetch_wait.set(fetch_wait.current / 1000.0)
    folded = [0]  # events ingested since the fetch wait was last chosen

    def batch_window() -> float:
        """Long batches while busy (each costs ~0.2 ms), short ones while idle (latency)."""
        return settings.batch_within_s if fetch_wait.busy else settings.batch_idle_within_s

    chosen_at = [time.monotonic()]
    quiet = (lambda: settings.batch_quiet_s) if settings.batch_quiet_s > 0 else None

    fleets = worker.fleets
    # Ingest does not wait for the fleet summaries' restore (it runs beside it, typically well
    # under a second). Holding the stream's first batch for it once lost events after a restart
    # (tests/streams/test_changelog_durability.py, 7 of 13 counted, 9 runs in 15): faust dropped
    # the events buffered when the table recovery ended, on a partition with no committed
    # offset, for good; the worker's consumer reads them again since (streams/transport.py).

    @app.agent(worker.topics["actions"], name="baselines")  # type: ignore[untyped-decorator]
    async def ingest(stream: Any) -> None:
        probe = probes["ingest"]
        folded[0], chosen_at[0] = 0, time.monotonic()  # the load counts from here
        try:
            await stage.engine.start()
            async for events in take_batches(stream, settings.batch_max, batch_window, quiet):
                probe.begin()
                await stage.process_batch(events, probe.done)  # done: maybe in the background
                folded[0] += len(events)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            _crashed(worker, probe, exc)
            raise

    @app.task  # type: ignore[untyped-decorator]
    async def settle_heap() -> None:
        """Keep the start-up heap out of every later full collection (freeze_startup_heap)."""
        frozen = freeze_startup_heap()
        if frozen:
            log.debug("froze %d start-up objects out of garbage collection", frozen)

    if fleets is not None:

        @app.task  # type: ignore[untyped-decorator]
        async def exchange_fleets() -> None:
            """Publish this worker's fleet summaries, absorb the others' (streams/fleets.py)."""
            await fleets.run()

    @app.timer(METRICS_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def update_metrics() -> None:
        stage.update_metrics()
        worker.deadletters.flush_log()
        _check_readiness(worker)
        _update_consumer_lag(worker, reported_lag)

    @app.timer(FETCH_WAIT_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def choose_fetch_wait() -> None:
        """Short fetches while idle, long ones while busy (transport.FetchWait)."""
        now = time.monotonic()
        events, folded[0] = folded[0], 0
        held = fetch_wait.current
        wait_ms = fetch_wait.choose(events, now - chosen_at[0])
        chosen_at[0] = now
        if app.set_fetch_wait(wait_ms, fetch_wait.prefetch_backoff_s, fetch_wait.poll_timeout_s):
            worker.metrics.fetch_wait.set(wait_ms / 1000.0)
        elif wait_ms != held:
            fetch_wait.busy = not fetch_wait.busy  # no consumer yet: try again next time

    @app.agent(worker.topics["anomalies"], name="responder")  # type: ignore[untyped-decorator]
    async def respond(stream: Any) -> None:
        probe = probes["responder"]
        try:
            async for events in stream.take_events(100, 0.01):
                probe.begin()
                await worker.response.process_anomalies(events)
                probe.done(events)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            _crashed(worker, probe, exc)
            raise

    @app.agent(worker.topics["notifications"], name="notifier")  # type: ignore[untyped-decorator]
    async def notify(stream: Any) -> None:
        probe = probes["notifier"]
        try:
            async for event in stream.events():
                probe.begin()
                await worker.delivery.process(event)
                probe.done((event,))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            _crashed(worker, probe, exc)
            raise

    @app.timer(TICK_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def incidents_due() -> None:
        await worker.response.tick()

    outbox = TP(settings.topic("notifications"), 0)
    dispatcher = worker.delivery.dispatcher

    @app.timer(TICK_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def refresh_firing() -> None:
        """Post open incidents to Alertmanager again (it resolves alerts not refreshed)."""
        if not dispatcher.refreshing():
            return
        if outbox in app.assignor.assigned_actives() and app.tables.recovery.completed.is_set():
            await dispatcher.refresh_due()

    @app.on_before_shutdown.connect  # type: ignore[untyped-decorator]
    async def on_shutdown(sender: Any, **kwargs: Any) -> None:
        worker.deadletters.flush_log(force=True)  # the last summary line is not lost

    @app.on_partitions_revoked.connect  # type: ignore[untyped-decorator]
    async def on_revoked(sender: Any, revoked: set[Any], **kwargs: Any) -> None:
        await stage.on_revoked(tp.partition for tp in revoked if tp.topic == actions_topic)
        for probe in probes.values():
            probe.forget(revoked)


def _engine_apart(choice: str, rules: RuleSet) -> bool:
    """Whether the engine runs in a process of its own (``engine_process``): ``auto`` when
    this process may run on two cores or more and there are rules to run (an engine without
    rules only counts events, less work than handing them over)."""
    if choice != "auto":
        return choice == "on"
    return len(os.sched_getaffinity(0)) >= 2 and any(True for _ in rules)


def _register_views(worker: WorkerApp) -> None:
    app, stage, registry = worker.app, worker.stage, worker.metrics.registry

    @app.page("/healthz")  # type: ignore[untyped-decorator]
    async def healthz(self: Any, request: Any) -> Any:
        ok = not app.should_stop and not app.crashed
        body = {
            "status": "ok" if ok else "unavailable",
            "agents": stage.engine.agents,
            "pending_agents": stage.pending,
        }
        return self.json(body, status=200 if ok else 503)

    @app.page("/fleets")  # type: ignore[untyped-decorator]
    async def fleets(self: Any, request: Any) -> Any:
        """This worker's part in the fleet summaries: its id, its agents and events per
        fleet, and which other workers' summaries it holds (published when, wall time)."""
        refused = bearer_refusal(self, request, worker.settings.api_token, worker.auth_failures)
        if refused is not None:
            return refused
        engine = stage.engine
        exchange = worker.fleets
        by_fleet: dict[str, dict[str, Any]] = {}
        for fleet, count in (await engine.roster()).values():
            entry = by_fleet.setdefault(fleet, {"agents": 0, "events": 0})
            entry["agents"] += 1
            entry["events"] += count
        for fleet in engine.sync.fleets():
            entry = by_fleet.setdefault(fleet, {"agents": 0, "events": 0})
            entry["workers"] = engine.sync.published(fleet)
        body = {
            "worker": engine.sync.worker_id,
            "ready": exchange is not None and exchange.ready.is_set(),
            "published": exchange.published if exchange is not None else 0,
            "absorbed": exchange.absorbed if exchange is not None else 0,
            "restored": exchange.restored if exchange is not None else 0,
            "fleets": by_fleet,
        }
        return self.json(body)

    @app.page("/readyz")  # type: ignore[untyped-decorator]
    async def readyz(self: Any, request: Any) -> Any:
        body, ready = _check_readiness(worker)
        return self.json(body, status=200 if ready else 503)

    @app.page("/metrics")  # type: ignore[untyped-decorator]
    async def metrics(self: Any, request: Any) -> Any:
        return self.bytes(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
