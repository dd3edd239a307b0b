"""What the chaos scenarios share: their scale, worker subprocesses, topic readers, metrics.

The suite runs at two sizes from the same code. ``CHAOS_SCALE=short`` (the default, inside
``make test``) runs each scenario small enough to add seconds; ``CHAOS_SCALE=full``
(``make chaos``) runs the sizes issue 11 asks for. ``CHAOS_SEED`` changes the seed of every
random choice (kill moments, fuzzed records, request mixes); a failure names the seed.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord
from prometheus_client.parser import text_string_to_metric_families

from agentwatch.config import Settings
from agentwatch.streams.broker import free_port
from tests.alerting.fakes import FakePagerDuty
from tests.conftest import API_TOKEN
from tests.streams.test_response_crash import kill, start_worker

__all__ = [
    "SCALE",
    "Scale",
    "TopicReader",
    "WorkerProcess",
    "metric_sum",
    "progress",
]


@dataclass(frozen=True)
class Scale:
    """The sizes of one run of the suite."""

    name: str
    seed: int
    kills: int
    """Kill storm: SIGKILLs of the worker."""
    storm_agents: int
    storm_events: int
    """Kill storm: events per agent."""
    lifetime_s: tuple[float, float]
    """Kill storm: a worker lives this long (uniform, seeded) before its SIGKILL."""
    fuzz_records: int
    fuzz_agents: int
    control_requests: int
    """Concurrent control requests on one agent."""
    forgeries: int
    """Forged control records written to the control topic."""

    @property
    def full(self) -> bool:
        return self.name == "full"


def _scale() -> Scale:
    name = os.environ.get("CHAOS_SCALE", "short").strip().lower() or "short"
    seed = int(os.environ.get("CHAOS_SEED", "11"))
    if name == "full":
        return Scale(
            name="full",
            seed=seed,
            kills=20,
            storm_agents=40,
            storm_events=300,
            lifetime_s=(2.0, 9.0),
            fuzz_records=1_000_000,
            fuzz_agents=1000,
            control_requests=200,
            forgeries=2000,
        )
    if name != "short":
        raise ValueError(f"CHAOS_SCALE must be 'short' or 'full', not {name!r}")
    return Scale(
        name="short",
        seed=seed,
        kills=3,
        storm_agents=6,
        storm_events=50,
        lifetime_s=(1.0, 3.0),
        fuzz_records=5_000,
        fuzz_agents=40,
        control_requests=200,
        forgeries=60,
    )


SCALE = _scale()


def progress(message: str) -> None:
    """One progress line on the real stderr (visible with ``pytest -s``, as ``make chaos`` runs)."""
    print(f"[chaos {SCALE.name} seed={SCALE.seed}] {message}", file=sys.__stderr__, flush=True)


def metric_sum(text: str, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` (with these label values) in a /metrics answer."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


class WorkerProcess:
    """One ``agentwatch worker`` subprocess (see ``tests/streams/test_response_crash.py``).

    Every start appends to ``home/worker.log`` and keeps ``home/state`` (the RocksDB store),
    so a restart after :meth:`kill` recovers from what the killed process left behind.
    """

    def __init__(self, settings: Settings, home: Path, pd: FakePagerDuty, **extra: Any) -> None:
        self.settings = settings
        self.home = home
        self.pd = pd
        self.extra = extra
        self.port = int(extra.pop("web_port", 0)) or free_port("127.0.0.1")
        self.proc: Any = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.home / "worker.log"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.proc = start_worker(
            self.settings,
            self.home,
            self.pd,
            web_port=self.port,
            api_token=API_TOKEN,
            **self.extra,
        )
        self.starts += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the worker's process group (no shutdown code runs)."""
        if self.alive():
            kill(self.proc)

    async def wait_healthy(self, http: aiohttp.ClientSession, timeout: float = 60.0) -> float:
        """Wait for ``/healthz`` to answer 200; return how long it took."""
        started = time.monotonic()
        while True:
            if not self.alive():
                raise AssertionError(f"worker exited:\n{self.log_text()[-3000:]}")
            try:
                async with http.get(f"{self.url}/healthz") as resp:
                    if resp.status == 200:
                        return time.monotonic() - started
            except aiohttp.ClientError:
                pass
            if time.monotonic() - started > timeout:
                raise AssertionError(f"worker not healthy in {timeout}s")
            await asyncio.sleep(0.1)

    async def get(self, http: aiohttp.ClientSession, path: str) -> tuple[int, Any]:
        """GET ``path`` on the worker: (status, JSON body or text); (0, error) if unreachable."""
        try:
            async with http.get(f"{self.url}{path}") as resp:
                if resp.content_type == "application/json":
                    return resp.status, await resp.json()
                return resp.status, await resp.text()
        except (TimeoutError, aiohttp.ClientError) as exc:
            return 0, repr(exc)


class TopicReader:
    """Reads a whole topic from the beginning and keeps reading: ``records`` grows.

    Call :meth:`poll` to fetch what has arrived; ``start``/``stop`` around use.
    """

    def __init__(self, settings: Settings, name: str, *, max_fetch_bytes: int = 4 << 20) -> None:
        self.topic = settings.topic(name)
        self.consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=settings.kafka_bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            max_partition_fetch_bytes=max_fetch_bytes,
            fetch_max_bytes=4 * max_fetch_bytes,
        )
        self.records: list[ConsumerRecord[bytes, bytes]] = []

    async def start(self) -> TopicReader:
        await self.consumer.start()
        return self

    async def stop(self) -> None:
        await self.consumer.stop()

    async def __aenter__(self) -> TopicReader:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def poll(self, timeout_ms: int = 200) -> int:
        """Fetch what is there now (one round); return how many records arrived."""
        batches = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=50_000)
        n = 0
        for records in batches.values():
            self.records.extend(records)
            n += len(records)
        return n

    async def drain(self, idle_s: float = 2.0, until: Callable[[], bool] | None = None) -> None:
        """Read until nothing arrived for ``idle_s`` seconds or, sooner, ``until()`` holds
        (then one more short read picks up what was already on its way)."""
        quiet_since = time.monotonic()
        while until is None or not until():
            if await self.poll():
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > idle_s:
                return
        await self.poll(300)
