"""``agentwatch backtest``: replay recorded events through the live engine, offline.

The events go through :meth:`agentwatch.detectors.engine.Engine.process`, the very code the
worker runs, in file order (which must be event-time order per agent, as a Kafka partition
delivers it). Lines that are not valid events are counted and reported, as the worker would
dead-letter them.

With ``partitions > 1`` the replay is the one ``partitions`` workers would make: each agent's
events go to the engine of the partition Kafka's default partitioner gives its key (murmur2
of the agent id, as the SDK keys events), and every ``exchange_s`` seconds of event time each
engine publishes its fleet summaries (:meth:`Engine.fleet_partials`) and absorbs the others'
(:meth:`Engine.absorb`), as the workers do over the ``<prefix>.fleets`` topic. With
``exchange_s = 0`` they are exchanged after every event.
"""

from __future__ import annotations

import hashlib
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import IO, Any, NamedTuple

from aiokafka.partitioner import murmur2

from agentwatch.detectors.engine import Engine
from agentwatch.detectors.novelty import DEFAULT_EGRESS_ACTIONS
from agentwatch.detectors.rules import DEFAULT_RULES, RuleSet
from agentwatch.lab.evaluation import Evaluation, FleetSummary, evaluate
from agentwatch.lab.labels import Label
from agentwatch.schemas import ActionEvent, Anomaly, DecodeError, decode_event

__all__ = [
    "BacktestResult",
    "home_partition",
    "read_events",
    "rules_fingerprint",
    "run_backtest",
]

EGRESS_ACTIONS = frozenset(DEFAULT_EGRESS_ACTIONS)
"""What the evaluation counts as an exfiltration's evidence (its first egress call)."""

#: Fleet summaries are exchanged this often (event time) unless told otherwise, as the
#: workers' default ``AGENTWATCH_FLEET_EXCHANGE_S``.
DEFAULT_EXCHANGE_S = 5.0


class _Times(NamedTuple):
    """One tracked agent's event times: all, failed calls, egress calls, calls with a cost
    (with their costs)."""

    events: list[float]
    failed: list[float]
    egress: list[float]
    costed: list[tuple[float, float]]


@dataclass
class BacktestResult:
    """What a replay produced, and how fast."""

    anomalies: list[Anomaly]
    summary: FleetSummary
    events: int
    invalid: int
    duplicates: int
    out_of_order: int
    seconds: float
    engine_seconds: float
    first_errors: list[str] = field(default_factory=list)
    tracked: dict[str, list[float]] = field(default_factory=dict)
    """Event times of the agents asked for with ``track`` (to count evidence in events)."""
    tracked_failed: dict[str, list[float]] = field(default_factory=dict)
    """... and the times of their failed calls (``status`` other than ``ok``)."""
    tracked_egress: dict[str, list[float]] = field(default_factory=dict)
    """... of their egress calls (``DEFAULT_EGRESS_ACTIONS`` of the ``novelty`` detector)."""
    tracked_costed: dict[str, list[float]] = field(default_factory=dict)
    """... and of their calls with a cost."""
    tracked_costs: dict[str, list[float]] = field(default_factory=dict)
    """The costs (USD) of those calls, in the order of ``tracked_costed``."""

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def engine_events_per_s(self) -> float:
        return self.events / self.engine_seconds if self.engine_seconds > 0 else 0.0

    def score(self, labels: Sequence[Label]) -> Evaluation:
        """The anomalies scored against ``labels``, with the evidence of the tracked agents
        (run with ``track=incident_agents(labels)``)."""
        return evaluate(
            self.anomalies,
            labels,
            self.summary,
            events=self.tracked,
            failed=self.tracked_failed,
            egress=self.tracked_egress,
            costed=self.tracked_costed,
            costs=self.tracked_costs,
        )


def rules_fingerprint(path: str | Path | None) -> dict[str, str]:
    """Which rules a figure came from: the file (``<builtin default.yml>`` for the shipped
    one) and the SHA-256 of its bytes.

    Examples
    --------
    >>> fp = rules_fingerprint(None)
    >>> fp["source"], len(fp["sha256"])
    ('<builtin default.yml>', 64)
    """
    if path is None:
        data = resources.files("agentwatch.rules").joinpath(DEFAULT_RULES).read_bytes()
        return {"source": f"<builtin {DEFAULT_RULES}>", "sha256": hashlib.sha256(data).hexdigest()}
    return {"source": str(path), "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()}


#: Lines decoded at a time by :func:`read_events` (about 32 KiB of a trace): decoding a batch,
#: then detecting on it, keeps each one's code and data in the CPU caches (~5 % faster).
_CHUNK_BYTES = 32 * 1024


def read_events(
    path: str | Path,
    errors: list[str] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Iterator[ActionEvent | None]:
    """Decode a JSONL file line by line; yield ``None`` for an invalid line.

    Each line goes to :func:`~agentwatch.schemas.decode_event` as it is (the trailing
    newline is JSON whitespace); blank lines are skipped. Lines are read and decoded some
    32 KiB at a time, and yielded in file order.
    """
    number = 0
    with open(path, "rb") as fh:
        while lines := fh.readlines(_CHUNK_BYTES):
            decoded: list[ActionEvent | None] = []
            for line in lines:
                number += 1
                if on_progress is not None and number % 50_000 == 0:
                    on_progress(fh.tell())
                try:
                    decoded.append(decode_event(line))
                except DecodeError as err:
                    if line.isspace():
                        continue
                    if errors is not None and len(errors) < 10:
                        errors.append(f"{path}:{number}: {err.code}: {err.detail}")
                    decoded.append(None)
            yield from decoded


def _progress_printer(total: int, stream: IO[str]) -> Callable[[int], None]:
    started = time.perf_counter()

    def show(done: int) -> None:
        elapsed = time.perf_counter() - started
        share = done / total if total else 1.0
        bar = "#" * int(share * 30)
        stream.write(f"\r  replaying [{bar:<30}] {share:6.1%} {elapsed:6.1f}s")
        stream.flush()

    return show


def home_partition(agent_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives the key ``agent_id`` (murmur2).

    Examples
    --------
    >>> home_partition("a1", 1), home_partition("a1", 4)
    (0, 3)
    """
    return int(murmur2(agent_id.encode()) & 0x7FFFFFFF) % partitions


class _Workers:
    """``partitions`` engines sharing fleet summaries every ``exchange_s`` of event time."""

    def __init__(self, rules: RuleSet, partitions: int, exchange_s: float) -> None:
        self.engines = [Engine(rules, worker_id=f"w{i}") for i in range(partitions)]
        self.partitions = partitions
        self.exchange_s = exchange_s
        self.home: dict[str, Engine] = {}
        self.next_exchange = -math.inf
        self.touched: dict[int, set[str]] = {id(engine): set() for engine in self.engines}

    def process(self, event: ActionEvent) -> list[Anomaly] | None:
        engine = self.home.get(event.agent_id)
        if engine is None:
            engine = self.engines[home_partition(event.agent_id, self.partitions)]
            self.home[event.agent_id] = engine
        ts = event.ts_epoch
        if self.exchange_s > 0.0 and ts >= self.next_exchange:
            if self.next_exchange > -math.inf:
                self.exchange(ts, None)
            self.next_exchange = (ts // self.exchange_s + 1.0) * self.exchange_s
        found = engine.process(event)
        if self.exchange_s <= 0.0:
            self.exchange(ts, (engine, event.fleet))
        else:
            self.touched[id(engine)].add(event.fleet)
        return found

    def exchange(self, now: float, only: tuple[Engine, str] | None) -> None:
        """Every engine (or ``only`` one, of one fleet) publishes the fleets it saw events
        of since its last exchange (the others' copies of the rest are still current; the
        workers republish everything, the TTL aside, to the same effect); the others absorb.
        """
        published: list[tuple[Engine, str, dict[str, Any]]] = []
        for engine in self.engines if only is None else [only[0]]:
            if only is None:
                fleets = self.touched[id(engine)]
                if not fleets:
                    continue
                partials: dict[str, dict[str, Any]] = {}
                for fleet in fleets:
                    partials.update(engine.fleet_partials(fleet))
                fleets.clear()
            else:
                partials = engine.fleet_partials(only[1])
            published += [(engine, fleet, parts) for fleet, parts in partials.items()]
        for other in self.engines:
            items = [(e.sync.worker_id, f, p, now) for e, f, p in published if e is not other]
            if items:
                other.absorb_many(items)


def run_backtest(
    events_path: str | Path,
    rules: RuleSet,
    *,
    progress: bool = False,
    stream: IO[str] = sys.stderr,
    track: Collection[str] = (),
    partitions: int = 1,
    exchange_s: float = DEFAULT_EXCHANGE_S,
) -> BacktestResult:
    """Replay ``events_path`` through a fresh engine configured with ``rules`` (or through
    ``partitions`` engines exchanging fleet summaries every ``exchange_s``, see the module).

    ``seconds`` is the whole replay (building the engine, reading, decoding, detecting);
    ``engine_seconds`` the time spent in :meth:`Engine.process` alone (with the exchanges).
    The event times of the agents in ``track`` are kept in ``tracked``, those of their failed
    calls in ``tracked_failed``, of their egress calls in ``tracked_egress`` and of their calls
    with a cost in ``tracked_costed`` (their costs in ``tracked_costs``; the evaluation counts
    an incident's evidence in its agent's events with them).
    """
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    perf = time.perf_counter
    started = perf()
    workers: _Workers | None = None
    if partitions == 1:
        engine = Engine(rules)  # builds and prepares the detectors (imports scikit-learn)
        engines = [engine]
        process = engine.process
    else:
        workers = _Workers(rules, partitions, exchange_s)
        engines = workers.engines
        process = workers.process
    anomalies: list[Anomaly] = []
    errors: list[str] = []
    events = invalid = duplicates = out_of_order = 0
    last_ts: dict[str, float] = {}  # per agent: the latest event time so far
    on_progress = None
    if progress:
        on_progress = _progress_printer(Path(events_path).stat().st_size, stream)
    engine_seconds = 0.0
    tracked = {agent: _Times([], [], [], []) for agent in track}
    for event in read_events(events_path, errors, on_progress):
        if event is None:
            invalid += 1
            continue
        events += 1
        t0 = perf()  # the engine first: it pays for the event's ts_epoch, as in the worker
        found = process(event)
        engine_seconds += perf() - t0
        if not found:
            if found is None:
                duplicates += 1
        else:
            anomalies.extend(found)
        ts = event.ts_epoch
        if tracked:
            record = tracked.get(event.agent_id)
            if record is not None:
                record.events.append(ts)
                if event.status != "ok":
                    record.failed.append(ts)
                if event.action in EGRESS_ACTIONS:
                    record.egress.append(ts)
                if event.cost_usd > 0.0:
                    record.costed.append((ts, event.cost_usd))
        previous = last_ts.get(event.agent_id, ts)
        if ts < previous:
            out_of_order += 1
        else:
            last_ts[event.agent_id] = ts
    seconds = perf() - started
    if progress:
        stream.write("\n")
    baselines = [b for one in engines for b in one.baselines.values()]
    summary = FleetSummary(
        agents=len(baselines),
        start=min((b.first_seen or 0.0 for b in baselines), default=0.0),
        end=max((b.watermark or 0.0 for b in baselines), default=0.0),
        agents_by_fleet=dict(sorted(Counter(b.fleet for b in baselines).items())),
    )
    return BacktestResult(
        anomalies=anomalies,
        summary=summary,
        events=events,
        invalid=invalid,
        duplicates=duplicates,
        out_of_order=out_of_order,
        seconds=seconds,
        engine_seconds=engine_seconds,
        first_errors=errors,
        tracked={agent: sorted(record.events) for agent, record in tracked.items()},
        tracked_failed={agent: sorted(record.failed) for agent, record in tracked.items()},
        tracked_egress={agent: sorted(record.egress) for agent, record in tracked.items()},
        tracked_costed={agent: [t for t, _ in sorted(r.costed)] for agent, r in tracked.items()},
        tracked_costs={agent: [c for _, c in sorted(r.costed)] for agent, r in tracked.items()},
    )
