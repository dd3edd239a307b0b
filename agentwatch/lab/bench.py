"""``agentwatch bench``: one worker on the embedded broker; throughput, latency, memory.

Phase 1 produces ``events`` events for ``agents`` agents, then starts a worker and times how
fast it drains them (first event folded in to last; startup and rebalance excluded).
Phase 2 offers a steady ``rate`` events/s for ``latency_seconds`` and measures, per event,
the time from the producer's ``send`` to the baseline holding the event. Its load generator
runs in a process of its own, as agents do (it shared the worker's event loop until issue 13,
and took a fifth of that loop's time: the figures were the worker's and the generator's);
the worker and the probe share this one (uvloop). Send and fold times are read from the
host's monotonic clock (``time.monotonic``, one clock for every process on Linux). Beside
events/s
(wall time, which a shared host's other load lowers) the result gives the CPU time per event
of the worker process and of the broker over the drain, which other load hardly moves.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import uvloop
from aiokafka import AIOKafkaProducer

from agentwatch.config import Settings
from agentwatch.kafka_security import PLAINTEXT
from agentwatch.lab.bench_tail import FullCollections, snapshot_figures, tail_near_snapshots
from agentwatch.lab.cpu import cpu_seconds
from agentwatch.lab.evaluation.results import rank_quantile
from agentwatch.schemas import ActionEvent
from agentwatch.schemas.signing import ensure_key_pair
from agentwatch.streams.app import create_app
from agentwatch.streams.broker import EmbeddedBroker
from agentwatch.streams.runner import EMBEDDED_OVERRIDES, running_app
from agentwatch.streams.topics import ensure_topics

__all__ = ["combine_rounds", "round_progress", "run_bench"]

_ACTIONS = ("search", "read_file", "write_file", "http_get", "chat", "send_email", "sql_query")
_KINDS = ("tool", "tool", "tool", "api", "llm", "tool", "tool")


def _payloads(n: int, agents: int, seed: int, start: datetime) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    out = []
    base = start.timestamp()
    for i in range(n):
        agent = f"bench-{rng.randrange(agents):05d}"
        j = rng.randrange(len(_ACTIONS))
        ts = datetime.fromtimestamp(base + i * 0.005, UTC).isoformat().replace("+00:00", "Z")
        doc = {
            "event_id": f"b{seed}-{i}",
            "ts": ts,
            "agent_id": agent,
            "fleet": f"fleet-{int(agent[-5:]) % 4}",
            "action": _ACTIONS[j],
            "kind": _KINDS[j],
            "status": "error" if rng.random() < 0.03 else "ok",
            "target": f"/data/{rng.randrange(50)}.txt",
            "cost_usd": round(rng.expovariate(200.0), 6),
            "input_tokens": rng.randrange(2000),
            "output_tokens": rng.randrange(500),
            "latency_ms": round(rng.lognormvariate(3.0, 0.8), 2),
        }
        out.append((agent.encode(), json.dumps(doc).encode()))
    return out


#: the load generator's tick: each tick sends ``rate * TICK_S`` events, then sleeps until the next
TICK_S = 0.01
#: how long the bench waits for the load generator's process to start, and to report
GENERATOR_START_S = 120.0


def _stamped(value: bytes, sent: float) -> bytes:
    """``value`` (a JSON object from :func:`_payloads`) with ``attributes.bench_sent`` set.

    Examples
    --------
    >>> json.loads(_stamped(b'{"a": 1}', 2.5))
    {'a': 1, 'attributes': {'bench_sent': 2.5}}
    """
    return value[:-1] + b', "attributes": {"bench_sent": ' + repr(sent).encode() + b"}}"


def _producer(bootstrap: str) -> AIOKafkaProducer:
    """The benchmarks' producer: batched as a busy fleet's sends are."""
    return AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)


async def _produce(bootstrap: str, topic: str, payloads: list[tuple[bytes, bytes]]) -> float:
    """Send every payload as fast as the broker takes them; the seconds it took."""
    producer = _producer(bootstrap)
    await producer.start()
    try:
        t0 = time.monotonic()
        for key, value in payloads:
            await producer.send(topic, value, key=key)
        await producer.flush()
        return time.monotonic() - t0
    finally:
        await producer.stop()


def _generator_main(
    bootstrap: str, topic: str, payloads: list[tuple[bytes, bytes]], rate: float, conn: Connection
) -> None:
    """The load generator's process: connect, say ``ready``, wait for ``go``, offer ``rate``
    events/s until ``payloads`` are sent, then report ``{"sent": n, "seconds": s}``."""
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    conn.send(asyncio.run(_generate(bootstrap, topic, payloads, rate, conn)))


async def _generate(
    bootstrap: str, topic: str, payloads: list[tuple[bytes, bytes]], rate: float, conn: Connection
) -> dict[str, float]:
    producer = _producer(bootstrap)
    await producer.start()
    try:
        conn.send("ready")
        while not conn.poll():
            await asyncio.sleep(0.01)
        conn.recv()  # go
        per_tick = max(1, round(rate * TICK_S))
        started = next_at = time.monotonic()
        for i in range(0, len(payloads), per_tick):
            for key, value in payloads[i : i + per_tick]:
                await producer.send(topic, _stamped(value, time.monotonic()), key=key)
            next_at += TICK_S
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await producer.flush()
        return {"sent": float(len(payloads)), "seconds": time.monotonic() - started}
    finally:
        await producer.stop()


async def _receive(conn: Connection, proc: Any, within_s: float, what: str) -> Any:
    """The next message of the load generator (polled: the worker shares this loop)."""
    deadline = time.monotonic() + within_s
    while not conn.poll():
        if not proc.is_alive():
            raise RuntimeError(f"the load generator exited (code {proc.exitcode}) before {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the load generator did not report {what} in {within_s:.0f} s")
        await asyncio.sleep(0.01)
    return conn.recv()


def _peak_rss_mb(pid: int | None) -> float | None:
    """A process's peak resident memory (``VmHWM``) in MB; None without one (or no /proc)."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        return None
    return None


def _per_event(marks: list[tuple[float, float, float]], which: int, events: int) -> float | None:
    """CPU µs per event between the first and the last event of the drain (None: unknown)."""
    if len(marks) < 2 or events < 2:
        return None
    return round((marks[-1][which] - marks[0][which]) * 1e6 / (events - 1), 1)


async def _bench(
    events: int, agents: int, rate: float, latency_seconds: float, store: str, *, rules: bool
) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="agentwatch-bench-") as tmp,
        EmbeddedBroker() as broker,
    ):
        rules_file = None
        if not rules:  # the worker without detection: what the stream costs on its own
            rules_file = Path(tmp) / "no-rules.yml"
            rules_file.write_text("groups: []\n", encoding="utf-8")
        settings = Settings(
            rules_file=rules_file,
            kafka_bootstrap=broker.bootstrap,
            app_id="agentwatch-bench",
            store=store,  # type: ignore[arg-type]
            data_dir=tmp,  # type: ignore[arg-type]
            **EMBEDDED_OVERRIDES,  # type: ignore[arg-type]
            web_port=0,
            log_level="WARNING",
            **PLAINTEXT,  # the embedded broker; not AGENTWATCH_KAFKA_SECURITY_* from the env
        )
        ensure_key_pair(tmp)  # the worker signs control records with <data_dir>/control.key
        worker_app = create_app(settings)
        processed = 0
        first_at = 0.0
        last_at = 0.0
        folded: list[tuple[float, float]] = []  # phase 2: (folded at, latency ms) per event
        snapshots: list[tuple[float, float, int]] = []  # the commits' snapshot writes
        # CPU seconds over the drain (this process: worker and probe; the broker), at the
        # first and the last event of phase 1: what an event costs, whatever else the host runs
        # (and the engine's process, with engine_process on)
        cpu_marks: list[tuple[float, float, float]] = []
        engine = worker_app.stage.engine
        engine_rss_mb: float | None = None

        def cpu_now() -> tuple[float, float, float]:
            child = getattr(engine, "pid", None)
            return (
                time.process_time(),
                cpu_seconds(broker.pid) if broker.pid else 0.0,
                cpu_seconds(child) if child else 0.0,
            )

        def probe(event: ActionEvent) -> None:
            nonlocal processed, first_at, last_at
            now = time.perf_counter()
            processed += 1
            if processed in (1, events):
                cpu_marks.append(cpu_now())
            if processed == 1:
                first_at = now
            last_at = now
            sent = event.attributes.get("bench_sent")
            if isinstance(sent, float):
                at = time.monotonic()
                folded.append((at, (at - sent) * 1000.0))

        worker_app.stage.on_event = probe
        worker_app.stage.on_snapshot = lambda start, end, n: snapshots.append((start, end, n))
        full = FullCollections()
        await ensure_topics(settings)
        topic = settings.topic("actions")
        start = datetime(2026, 1, 1, tzinfo=UTC)
        n_latency = int(rate * latency_seconds)
        later = start + timedelta(seconds=events * 0.005 + 60)
        # phase 2's load generator: its own process, started (and connected) before phase 1
        ctx = mp.get_context("spawn")  # a fresh interpreter: no inherited loop or threads
        conn, child_conn = ctx.Pipe()
        template = _payloads(n_latency, agents, seed=2, start=later)
        generator = ctx.Process(
            target=_generator_main,
            args=(broker.bootstrap, topic, template, rate, child_conn),
            daemon=True,
        )
        del template
        generator.start()
        offered: dict[str, float] = {}
        phase2 = float("inf")  # when phase 2 started (time.monotonic)
        try:
            await _receive(conn, generator, GENERATOR_START_S, "ready")
            payloads = _payloads(events, agents, seed=1, start=start)
            produce_s = await _produce(broker.bootstrap, topic, payloads)
            del payloads

            async with running_app(worker_app):
                while processed < events:
                    await asyncio.sleep(0.01)
                drain_s = last_at - first_at
                # Phase 2: steady offered load from the generator's process, latency per event.
                phase2 = time.monotonic()
                with full:
                    conn.send("go")
                    offered = await _receive(
                        conn, generator, latency_seconds * 4 + GENERATOR_START_S, "its load sent"
                    )
                    deadline = time.perf_counter() + 30
                    while processed < events + n_latency and time.perf_counter() < deadline:
                        await asyncio.sleep(0.01)
                held = await engine.roster()
                values = await engine.encode([(a, 0, None) for a in held])
                engine_rss_mb = _peak_rss_mb(getattr(engine, "pid", None))
                sizes = [len(v) for v in values.values()]
        finally:
            generator.join(timeout=10)
            if generator.is_alive():  # it reported or failed; never left behind
                generator.terminate()
                generator.join(timeout=10)
            conn.close()
    latencies = [latency for _, latency in folded]
    worker_cpu = _per_event(cpu_marks, 0, events)
    engine_cpu = _per_event(cpu_marks, 2, events) if getattr(engine, "pid", None) else None
    rss_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {
        "rules": "default" if rules else "none",
        "events": events,
        "agents": agents,
        "store": store,
        "events_per_s": round(events / drain_s, 1) if drain_s > 0 else None,
        "worker_cpu_us_per_event": worker_cpu,
        "broker_cpu_us_per_event": _per_event(cpu_marks, 1, events),
        # the engine's own process (engine_process on; None: it runs in the worker's)
        "engine_cpu_us_per_event": engine_cpu,
        # the worker's and its engine's together: what an event costs in CPU, on any core
        "cpu_us_per_event": (
            round(worker_cpu + (engine_cpu or 0.0), 1) if worker_cpu is not None else None
        ),
        "produce_events_per_s": round(events / produce_s, 1),
        "offered_rate": rate,
        "offered_actual": (
            round(offered["sent"] / offered["seconds"], 1) if offered.get("seconds") else None
        ),
        "latency_events": len(latencies),
        "p50_ms": round(rank_quantile(latencies, 0.50), 1),
        "p99_ms": round(rank_quantile(latencies, 0.99), 1),
        "max_ms": round(max(latencies), 1) if latencies else None,
        # phase 2: the commits' snapshot writes; the share of the slowest 1 % of events folded
        # during one or within a second of its end, and of all events (what chance gives);
        # the full garbage collections
        **snapshot_figures([w for w in snapshots if w[1] >= phase2]),
        "tail_near_snapshot": tail_near_snapshots(folded, snapshots),
        "all_near_snapshot": tail_near_snapshots(folded, snapshots, quantile=0.0),
        "gc_full_collections": full.count,
        "gc_full_max_ms": round(full.max_s * 1000.0, 1),
        "rss_mb": round(rss_peak_mb, 1),
        # the engine's own process (engine_process on), its peak; None: in the worker's
        "engine_rss_mb": engine_rss_mb,
        "bytes_per_agent": round(sum(sizes) / len(sizes), 1) if sizes else None,
        "max_bytes_per_agent": max(sizes) if sizes else None,
    }


#: the figures of a run that a multi-round result gives as medians over the rounds
_MEDIANS = (
    "events_per_s",
    "worker_cpu_us_per_event",
    "engine_cpu_us_per_event",
    "cpu_us_per_event",
    "broker_cpu_us_per_event",
    "produce_events_per_s",
    "offered_actual",
    "p50_ms",
    "p99_ms",
    "max_ms",
    "bytes_per_agent",
    "snapshots",
    "snapshot_median_s",
    "snapshot_agents_median",
    "tail_near_snapshot",
    "all_near_snapshot",
    "gc_full_collections",
    "gc_full_max_ms",
)


#: the figures of the run without rules that ``--baseline`` gives beside the run's own
_BASELINE_KEYS = (
    "events_per_s",
    "worker_cpu_us_per_event",
    "cpu_us_per_event",
    "p50_ms",
    "p99_ms",
    "bytes_per_agent",
    "snapshot_median_s",
    "tail_near_snapshot",
    "all_near_snapshot",
)
#: figures kept to more than one decimal in medians (seconds and shares)
_DIGITS = {"snapshot_median_s": 3, "tail_near_snapshot": 3, "all_near_snapshot": 3}


def _median(values: list[Any], digits: int = 1) -> Any:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), digits) if known else None


def _ratio(top: Any, bottom: Any) -> float | None:
    return round(top / bottom, 3) if top and bottom else None


def combine_rounds(
    runs: Sequence[tuple[dict[str, Any], dict[str, Any] | None]],
) -> dict[str, Any]:
    """One result from ``runs``: pairs of a run with the default rules and, with
    ``--baseline``, the run without rules that followed it.

    One round gives that run's figures as they are. Several give each figure's median over
    the rounds, ``ratio`` as the median of the rounds' own ratios (each pair ran back to back,
    under the same load), and every round's ratios in ``ratios`` and ``cpu_ratios``.
    ``cpu_ratio`` is the CPU per event without rules over the CPU per event with them (the
    worker's and, with the engine in a process of its own, the engine's): what detection
    costs in CPU, which a shared host's other load hardly moves, where events/s (wall time)
    moves with it.
    """
    first, bare = runs[0]
    result = dict(first)
    if len(runs) > 1:
        result.update(
            {key: _median([r.get(key) for r, _ in runs], _DIGITS.get(key, 1)) for key in _MEDIANS}
        )
        result["max_bytes_per_agent"] = max(
            (r["max_bytes_per_agent"] for r, _ in runs if r["max_bytes_per_agent"] is not None),
            default=None,
        )
        result["rounds"] = len(runs)
    if bare is None:
        return result
    pairs = [(r, b) for r, b in runs if b is not None]
    ratios = [_ratio(r["events_per_s"], b["events_per_s"]) for r, b in pairs]
    cpu_ratios = [_ratio(b["cpu_us_per_event"], r["cpu_us_per_event"]) for r, b in pairs]
    for key in _BASELINE_KEYS:
        result[f"baseline_{key}"] = _median([b.get(key) for _, b in pairs], _DIGITS.get(key, 1))
    result["ratio"], result["cpu_ratio"] = _median(ratios, 3), _median(cpu_ratios, 3)
    if len(runs) > 1:
        result["ratios"], result["cpu_ratios"] = ratios, cpu_ratios
    return result


def run_bench(
    *,
    events: int = 200_000,
    agents: int = 1_000,
    rate: float = 2000.0,
    latency_seconds: float = 15.0,
    store: str = "rocksdb",
    baseline: bool = False,
    rounds: int = 1,
    on_round: Callable[[int, dict[str, Any], dict[str, Any] | None], None] | None = None,
) -> str:
    """Run the benchmark and return its one-line JSON result.

    With ``baseline``, each run with the default rules is followed by the same run with an
    empty rules file (a fresh broker and worker), and the result gains
    ``baseline_events_per_s``, ``baseline_worker_cpu_us_per_event``,
    ``baseline_bytes_per_agent``, ``ratio`` (events/s with the rules over events/s without:
    what detection costs) and ``cpu_ratio`` (the same in CPU per event, the engine's
    process included).
    ``rounds`` repeats that, alternating, and gives medians (:func:`combine_rounds`);
    ``on_round`` hears of each round as it ends (its number, from 1, and its two runs).
    """
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    # The policy, not only the main loop: faust's consumer thread makes its own loop.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    runs: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    for number in range(1, rounds + 1):
        with_rules = asyncio.run(_bench(events, agents, rate, latency_seconds, store, rules=True))
        bare = None
        if baseline:
            bare = asyncio.run(_bench(events, agents, rate, latency_seconds, store, rules=False))
        runs.append((with_rules, bare))
        if on_round is not None:
            on_round(number, with_rules, bare)
    return json.dumps(combine_rounds(runs))


def round_progress(rounds: int) -> Callable[[int, dict[str, Any], dict[str, Any] | None], None]:
    """An ``on_round`` for :func:`run_bench` that prints one line per round on stderr."""

    def report(number: int, with_rules: dict[str, Any], bare: dict[str, Any] | None) -> None:
        line = f"bench: round {number}/{rounds}: default rules {with_rules['events_per_s']}"
        line += " events/s"
        if bare is not None:
            line += f", no rules {bare['events_per_s']}"
            ratio = _ratio(with_rules["events_per_s"], bare["events_per_s"])
            if ratio is not None:
                line += f" (ratio {ratio})"
        print(line, file=sys.stderr, flush=True)

    return report
