"""Readiness: is every stage running and keeping up with its input?

Each stage (the ``ingest``, ``responder`` and ``notifier`` faust agents) owns a
:class:`StageProbe`: it marks the start and end of every batch and the offsets it finished,
and its agent records a crash. :class:`Readiness` turns the probes, the consumer's view
(assignment, high-water marks, committed offsets) and the worker's own state into the answer
of ``/readyz``, ``agentwatch_ready`` and the ``agentwatch_stage_*`` metrics. A stage is not
ready when

- its agent crashed (sticky: records in flight at the crash may be lost, so it stays not ready
  until the worker restarts) or has no running actor;
- one batch has been in progress for longer than ``stall_after_s`` (a blocked send, a hung
  notifier);
- records wait on one of its partitions and its position there has not moved for
  ``stall_after_s``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentwatch.logtext import escape
from agentwatch.streams.metrics import WorkerMetrics

__all__ = ["Readiness", "ReadinessReport", "StageProbe"]


class StageProbe:
    """What one stage reports about itself; updated by its faust agent, read by :class:`Readiness`.

    Parameters
    ----------
    name
        Stage name (a metric label: ``ingest``, ``responder``, ``notifier``).
    topic
        Full name of the input topic.
    clock, wall
        Monotonic and wall clocks (injected for tests).
    waiting_on
        External services the stage is waiting for right now (the notifier: PagerDuty or
        Slack down or rate-limiting). While it names one, a long batch or input waiting is
        reported, not counted as a stall: deliveries are delayed, not stuck.
    """

    def __init__(
        self,
        name: str,
        topic: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        waiting_on: Callable[[], list[str]] | None = None,
    ) -> None:
        self.name = name
        self.waiting_on = waiting_on
        self.topic = topic
        self.clock = clock
        self.wall = wall
        #: Last offset finished per topic-partition.
        self.positions: dict[Any, int] = {}
        #: when each batch not finished yet began, oldest first (ingest finishes a batch in
        #: the background while it checks the next one)
        self._begun: deque[float] = deque()
        self.last_progress_wall = 0.0
        self.crashes = 0
        self.last_crash: str | None = None

    @property
    def busy_since(self) -> float | None:
        """When the oldest batch not finished yet began (None: none is in progress)."""
        return self._begun[0] if self._begun else None

    def begin(self) -> None:
        """A batch starts."""
        self._begun.append(self.clock())

    def done(self, events: Sequence[Any]) -> None:
        """The oldest batch in progress, of these faust events, is finished: record the last
        offset per partition."""
        positions = self.positions
        for fevent in events:
            message = fevent.message
            positions[message.tp] = message.offset
        if events:
            self.last_progress_wall = self.wall()
        if self._begun:
            self._begun.popleft()

    def crashed(self, exc: BaseException) -> None:
        """The stage's agent raised: it is down, and stays reported as crashed."""
        self.crashes += 1
        self.last_crash = f"{type(exc).__name__}: {exc}"
        self._begun.clear()

    def forget(self, tps: Iterable[Any]) -> None:
        """Partitions revoked from this worker."""
        for tp in tps:
            self.positions.pop(tp, None)


@dataclass
class ReadinessReport:
    """The answer of ``/readyz``: ready or not, why not, and per-stage figures."""

    ready: bool
    reasons: list[str]
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    responder: str = "unknown"

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": "ready" if self.ready else "unavailable",
            "reasons": self.reasons,
            "responder": self.responder,
            "stages": self.stages,
        }


class Readiness:
    """Evaluates the probes against the consumer; call :meth:`check` often (every second).

    Parameters
    ----------
    probes
        One per stage.
    stall_after_s
        Input waiting this long without progress (or one batch this long) = stalled.
    assignment
        The partitions assigned to this worker.
    highwater
        A partition's high-water mark (next offset to be written), ``None`` when unknown.
    committed
        A partition's committed offset (next offset to read), ``None`` when unknown.
    running
        A stage name -> why its agent is not running, or ``None`` when it runs.
    worker_problems
        Reasons the worker as a whole is not ready (stopping, starting, recovering).
    responder
        Where the responder is: ``"here"``, ``"elsewhere"`` or ``"recovering"``.
    metrics
        Where ``agentwatch_stage_up`` and the last-progress gauge are set.
    clock
        Monotonic clock (tests inject one).
    """

    def __init__(
        self,
        *,
        probes: Sequence[StageProbe],
        stall_after_s: float,
        assignment: Callable[[], Iterable[Any]],
        highwater: Callable[[Any], int | None],
        committed: Callable[[Any], int | None],
        running: Callable[[str], str | None],
        worker_problems: Callable[[], list[str]],
        responder: Callable[[], str],
        metrics: WorkerMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.probes = list(probes)
        self.stall_after_s = stall_after_s
        self.assignment = assignment
        self.highwater = highwater
        self.committed = committed
        self.running = running
        self.worker_problems = worker_problems
        self.responder = responder
        self.metrics = metrics
        self.clock = clock
        # (stage, tp) -> (position seen waiting, since when): input waiting without progress
        self._waiting: dict[tuple[str, Any], tuple[int, float]] = {}

    def check(self) -> ReadinessReport:
        """Evaluate now; update the stage gauges; return the report."""
        now = self.clock()
        reasons = list(self.worker_problems())
        assigned = list(self.assignment())
        stages: dict[str, dict[str, Any]] = {}
        for probe in self.probes:
            problems, lag = self._stage(probe, assigned, now)
            waiting = probe.waiting_on() if probe.waiting_on is not None else []
            if waiting:  # delayed by an outside service, not stuck: say so, stay ready
                problems = [p for p in problems if not p.startswith("stalled")]
            reasons.extend(f"{probe.name}: {p}" for p in problems)
            stages[probe.name] = {
                "up": not problems,
                "lag": lag,
                "crashes": probe.crashes,
                "last_progress": probe.last_progress_wall or None,
            }
            if waiting:
                stages[probe.name]["waiting_on"] = waiting
            self.metrics.stage_up.labels(probe.name).set(0 if problems else 1)
            self.metrics.stage_last_progress.labels(probe.name).set(probe.last_progress_wall)
            self.metrics.stage_lag.labels(probe.name).set(lag)
        held = set(assigned)
        for key in [k for k in self._waiting if k[1] not in held]:
            del self._waiting[key]
        self.metrics.ready.set(0 if reasons else 1)
        return ReadinessReport(
            ready=not reasons, reasons=reasons, stages=stages, responder=self.responder()
        )

    def _stage(self, probe: StageProbe, assigned: list[Any], now: float) -> tuple[list[str], int]:
        problems: list[str] = []
        if probe.crashes:
            problems.append(
                f"crashed {probe.crashes} time(s), last: {escape(probe.last_crash or '?', 300)}; "
                "records in flight may be lost: check the log and restart the worker"
            )
        not_running = self.running(probe.name)
        if not_running is not None:
            problems.append(not_running)
        busy = probe.busy_since
        if busy is not None and now - busy > self.stall_after_s:
            problems.append(f"stalled: one batch in progress for {now - busy:.0f}s")
        total_lag = 0
        for tp in assigned:
            if tp.topic != probe.topic:
                continue
            key = (probe.name, tp)
            high = self.highwater(tp)
            if high is None:
                continue
            done = probe.positions.get(tp)
            committed = self.committed(tp)
            position = max(done + 1 if done is not None else 0, committed or 0)
            lag = max(0, high - position)
            total_lag += lag
            if lag == 0:
                self._waiting.pop(key, None)
                continue
            seen = self._waiting.get(key)
            if seen is None or seen[0] != position:
                self._waiting[key] = (position, now)
                continue
            waited = now - seen[1]
            if waited > self.stall_after_s:
                problems.append(
                    f"stalled: {lag} record(s) waiting on {tp.topic}[{tp.partition}] at offset "
                    f"{position}, no progress for {waited:.0f}s"
                )
        return problems, total_lag
