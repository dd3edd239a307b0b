"""``agentwatch bench --workers N``: N worker processes share the partitions; where the CPU goes.

The embedded broker runs; N worker processes (one consumer group, the default rules, RocksDB)
start and the bench waits until the group is stable (every ``actions`` partition assigned, each
worker holding at least one, tables recovered). Then the bench process (the load generator)
produces ``events`` events for ``agents`` agents as fast as it can, and each worker counts the
events it folds. The window runs from the first event folded (by any worker) to the last; the
figures are total events/s over the window, each worker's share and events/s, and the CPU time
every process spent in the window (``/proc/<pid>/stat``: user + system): the broker, the
producer (this process), each worker and each worker's engine process (``engine_cpu_pct``,
``engines``; ``None`` and 0 with the engine inside the worker), as a percentage of one core,
beside the whole host's busy time (``/proc/stat``) and what other processes took of it
(``others``: a shared host).

On a host with fewer cores than workers + broker + producer, the workers compete with the
broker and the producer: the CPU split shows where the cores went.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing as mp
import os
import tempfile
import time
from datetime import UTC, datetime
from multiprocessing.sharedctypes import SynchronizedArray
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

import uvloop

from agentwatch.config import Settings
from agentwatch.kafka_security import PLAINTEXT
from agentwatch.lab.bench import _payloads, _produce
from agentwatch.lab.cpu import child_pids, cpu_seconds, host_cpu
from agentwatch.schemas.signing import ensure_key_pair
from agentwatch.streams.broker import EmbeddedBroker
from agentwatch.streams.runner import EMBEDDED_OVERRIDES
from agentwatch.streams.topics import ensure_topics

__all__ = ["run_workers_bench"]

log = logging.getLogger(__name__)

# per worker, in its row of the shared array
_FOLDED, _FIRST, _LAST, _PARTITIONS, _READY, _FAILED = range(6)
_ROW = 6


def _engines(pid: int) -> list[int]:
    """The engine processes (``agentwatch.streams.engine_process``) a worker started."""
    found = []
    for child in child_pids(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        if b"agentwatch.streams.engine_process" in command:
            found.append(child)
    return found


def _settings(base: dict[str, Any], index: int) -> Settings:
    fields: dict[str, Any] = {
        **base,
        "data_dir": Path(base["data_dir"]) / f"worker-{index}",  # its own RocksDB
        **EMBEDDED_OVERRIDES,
        "web_port": 0,
        "log_level": "WARNING",
        **PLAINTEXT,  # the embedded broker; not AGENTWATCH_KAFKA_SECURITY_* from the env
    }
    return Settings(**fields)


def _worker_main(base: dict[str, Any], index: int, shared: Any, stop: Any) -> None:
    """One worker process: fold events, report counts into ``shared`` until ``stop``."""
    logging.basicConfig(level=logging.ERROR)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        asyncio.run(_worker(base, index, shared, stop))
    except Exception:
        shared[index * _ROW + _FAILED] = 1.0
        raise


async def _worker(base: dict[str, Any], index: int, shared: Any, stop: Any) -> None:
    from agentwatch.streams.app import create_app
    from agentwatch.streams.runner import running_app

    settings = _settings(base, index)
    worker = create_app(settings)
    row = index * _ROW
    folded = 0
    first = last = 0.0

    def probe(event: Any) -> None:
        nonlocal folded, first, last
        now = time.monotonic()
        if not folded:
            first = now
        folded += 1
        last = now

    worker.stage.on_event = probe
    actions = settings.topic("actions")
    async with running_app(worker, timeout_s=120.0):
        app = worker.app
        while not stop.is_set():
            held = [tp for tp in app.consumer.assignment() if tp.topic == actions]
            recovered = app.tables.recovery.completed.is_set()
            shared[row + _PARTITIONS] = float(len(held))
            shared[row + _READY] = 1.0 if recovered and held else 0.0
            shared[row + _FOLDED] = float(folded)
            shared[row + _FIRST] = first
            shared[row + _LAST] = last
            await asyncio.sleep(0.05)


def _rows(shared: Any, workers: int) -> list[list[float]]:
    return [list(shared[k * _ROW : (k + 1) * _ROW]) for k in range(workers)]


def _wait(
    shared: Any, workers: int, procs: list[Any], *, until: Any, what: str, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while not until(_rows(shared, workers)):
        rows = _rows(shared, workers)
        dead = [k for k, p in enumerate(procs) if not p.is_alive() or rows[k][_FAILED]]
        if dead:
            raise RuntimeError(f"worker process {dead[0]} died while the bench waited for {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the workers did not reach {what} within {timeout:g} s: {rows}")
        time.sleep(0.05)


def _bench(workers: int, events: int, agents: int, partitions: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")  # a fresh interpreter: no inherited loop, threads or broker
    shared: SynchronizedArray[float] = ctx.Array("d", workers * _ROW)
    stop: MpEvent = ctx.Event()
    with (
        tempfile.TemporaryDirectory(prefix="agentwatch-workers-") as tmp,
        EmbeddedBroker() as broker,
    ):
        private, _, _ = ensure_key_pair(f"{tmp}/keys")  # all workers of one app share the key
        base: dict[str, Any] = {
            "kafka_bootstrap": broker.bootstrap,
            "app_id": "agentwatch-bench-workers",
            "store": "rocksdb",
            "data_dir": tmp,
            "topic_partitions": partitions,
            "control_signing_key_file": str(private),
        }
        settings = _settings(base, 0)
        asyncio.run(ensure_topics(settings))
        procs = [
            ctx.Process(target=_worker_main, args=(base, k, shared, stop), daemon=True)
            for k in range(workers)
        ]
        for proc in procs:
            proc.start()
        try:
            # a stable group: every partition held, by every worker, tables recovered
            _wait(
                shared,
                workers,
                procs,
                until=lambda rows: (
                    all(r[_READY] and r[_PARTITIONS] for r in rows)
                    and sum(r[_PARTITIONS] for r in rows) == partitions
                ),
                what="a stable consumer group",
                timeout=120.0,
            )
            time.sleep(1.0)  # let the last rebalance settle
            payloads = _payloads(events, agents, seed=1, start=datetime(2026, 1, 1, tzinfo=UTC))
            pids = {"broker": broker.pid, "producer": os.getpid()}
            pids.update({f"worker-{k}": p.pid for k, p in enumerate(procs)})
            for k, proc in enumerate(procs):  # its engine's own process (engine_process on)
                pids.update({f"engine-{k}": c for c in _engines(proc.pid or 0)[:1]})
            cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items() if pid}
            host0 = host_cpu()
            wall0 = time.monotonic()
            produce_s = asyncio.run(_produce(broker.bootstrap, settings.topic("actions"), payloads))
            del payloads
            _wait(
                shared,
                workers,
                procs,
                until=lambda rows: sum(r[_FOLDED] for r in rows) >= events,
                what=f"{events} events folded",
                timeout=600.0,
            )
            wall1 = time.monotonic()
            cpu1 = {name: cpu_seconds(pid) for name, pid in pids.items() if pid}
            host1 = host_cpu()
            rows = _rows(shared, workers)
        finally:
            stop.set()
            for proc in procs:
                proc.join(timeout=30)
                if proc.is_alive():
                    proc.terminate()
                    proc.join(timeout=5)
    starts = [r[_FIRST] for r in rows if r[_FOLDED]]
    window = max(r[_LAST] for r in rows) - min(starts)
    wall = wall1 - wall0
    per_worker: list[dict[str, Any]] = []
    for k, r in enumerate(rows):
        own = r[_LAST] - r[_FIRST]
        per_worker.append(
            {
                "partitions": int(r[_PARTITIONS]),
                "events": int(r[_FOLDED]),
                "events_per_s": round(r[_FOLDED] / own, 1) if own > 0 else None,
                "cpu_pct": round(100.0 * (cpu1[f"worker-{k}"] - cpu0[f"worker-{k}"]) / wall, 1),
                "engine_cpu_pct": (
                    round(100.0 * (cpu1[f"engine-{k}"] - cpu0[f"engine-{k}"]) / wall, 1)
                    if f"engine-{k}" in cpu1
                    else None
                ),
            }
        )
    cpu = {
        name: round(100.0 * (cpu1[name] - cpu0[name]) / wall, 1)
        for name in cpu1
        if not name.startswith(("worker-", "engine-"))
    }
    cpu["workers"] = round(sum(w["cpu_pct"] for w in per_worker), 1)
    cpu["engines"] = round(sum(w["engine_cpu_pct"] or 0.0 for w in per_worker), 1)
    cpu["total"] = round(sum(100.0 * (cpu1[n] - cpu0[n]) / wall for n in cpu1), 1)
    # the whole host in the same window: what other processes took, and what stayed idle
    busy, total = host1[0] - host0[0], host1[1] - host0[1]
    host_busy = 100.0 * (os.cpu_count() or 1) * busy / total if total > 0 else 0.0
    cpu["host_busy"] = round(host_busy, 1)
    cpu["others"] = round(max(0.0, host_busy - cpu["total"]), 1)
    return {
        "workers": workers,
        "events": events,
        "agents": agents,
        "partitions": partitions,
        "store": "rocksdb",
        "events_per_s": round(events / window, 1) if window > 0 else None,
        "window_s": round(window, 2),
        "produce_events_per_s": round(events / produce_s, 1),
        "per_worker": per_worker,
        "cpu_pct": cpu,
        "cpu_window_s": round(wall, 2),
        "cores": os.cpu_count(),
    }


def run_workers_bench(
    workers: int, *, events: int = 200_000, agents: int = 1_000, partitions: int = 0
) -> str:
    """Run ``workers`` worker processes over ``partitions`` partitions (default: 8, or
    ``workers`` if more); return one JSON line."""
    if workers < 1:
        raise ValueError("workers must be at least 1")
    partitions = partitions or max(8, workers)
    if partitions < workers:
        raise ValueError(f"{workers} workers need at least {workers} partitions")
    return json.dumps(_bench(workers, events, agents, partitions))
