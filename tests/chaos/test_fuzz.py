"""Fuzz: fuzzed records interleaved with valid events must never blind the worker.

``SCALE.fuzz_records`` records from :mod:`tests.chaos.fuzz` (one seed, byte-identical every
run) go to the actions topic of a running worker subprocess (RocksDB store, the shipped rules),
produced in batches straight through aiokafka. Every record's position (partition, offset) is
kept, so each dead letter is traced back to the record it came from through its
``agentwatch.source.*`` headers. Afterwards:

* the worker is still up: ``/healthz`` and ``/readyz`` answer 200, its log has no traceback;
* every bad record is dead-lettered with a reason header, the reason the record's category
  calls for where there is one (so the count per reason matches what was generated); records
  of 0.9-1.1 MB carry their length and SHA-256 in headers;
* no valid record is dead-lettered, and every agent's baseline counts exactly its valid
  events (duplicates once);
* no record forged a log line, and dead letters are summarised in the log, not one line each.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections import Counter
from itertools import islice
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

import agentwatch.rules
from agentwatch.config import Settings
from agentwatch.streams.topics import ensure_topics
from tests.alerting.fakes import FakePagerDuty
from tests.chaos.fuzz import CATEGORIES, HUGE, FuzzGenerator
from tests.chaos.helpers import SCALE, TopicReader, WorkerProcess, metric_sum, progress

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

BATCH = 5000
DEFAULT_RULES = Path(agentwatch.rules.__file__).parent / "default.yml"
EXPECTED = {name: expect for name, _, expect in CATEGORIES} | {HUGE[0]: HUGE[1]}


def _pos(partition: int, offset: int) -> int:
    return (partition << 48) | offset


def _headers(record: object) -> dict[str, bytes]:
    return {k: bytes(v) for k, v in getattr(record, "headers", ())}


async def test_fuzzed_records_are_dead_lettered_and_valid_ones_counted_once(
    settings: Settings, tmp_path: Path, auth: dict[str, str]
) -> None:
    gen = FuzzGenerator(SCALE.seed, SCALE.fuzz_records, agents=SCALE.fuzz_agents)
    actions = settings.topic("actions")
    await ensure_topics(settings)
    where: dict[int, str] = {}  # record position -> category
    huge: dict[int, tuple[int, str, bytes]] = {}  # position -> (length, sha256, first bytes)
    async with FakePagerDuty() as pd, aiohttp.ClientSession(headers=auth) as http:
        worker = WorkerProcess(settings, tmp_path, pd, rules_file=DEFAULT_RULES)
        worker.start()
        try:
            await worker.wait_healthy(http)
            producer = AIOKafkaProducer(
                bootstrap_servers=settings.kafka_bootstrap,
                linger_ms=20,
                max_batch_size=512 * 1024,
                max_request_size=4 * 1024 * 1024,
            )
            await producer.start()
            started = time.monotonic()
            try:
                records = gen.records()
                while chunk := list(islice(records, BATCH)):
                    futures = [await producer.send(actions, r.value, key=r.key) for r in chunk]
                    for record, meta in zip(chunk, await asyncio.gather(*futures), strict=True):
                        pos = _pos(meta.partition, meta.offset)
                        where[pos] = record.category
                        if record.category == HUGE[0]:
                            value = record.value or b""
                            digest = hashlib.sha256(value).hexdigest()
                            huge[pos] = (len(value), digest, value[:4096])
                    done = gen.summary.records
                    if done % 100_000 < BATCH or done == gen.n:
                        rate = done / (time.monotonic() - started)
                        progress(f"fuzz: produced {done}/{gen.n} records ({rate:.0f}/s)")
            finally:
                await producer.stop()
            produce_s = time.monotonic() - started
            summary = gen.summary
            progress(
                f"fuzz: {summary.records} records, {summary.bytes / 1e6:.0f} MB in "
                f"{produce_s:.1f}s: {summary.valid} valid for {len(summary.per_agent)} agents, "
                f"{summary.duplicates} duplicates, {summary.bad} bad"
            )

            # wait for the worker to get through them (or to stop making progress)
            stall_s = 120.0 if SCALE.full else 30.0
            last, last_change, last_print = (-1.0, -1.0), time.monotonic(), 0.0
            ingested = dead = 0.0
            while worker.alive():
                status, text = await worker.get(http, "/metrics")
                if status == 200:
                    ingested = metric_sum(text, "agentwatch_events_ingested_total")
                    dead = metric_sum(text, "agentwatch_deadletters_total")
                now = time.monotonic()
                if ingested >= summary.valid and dead >= summary.bad:
                    break
                if (ingested, dead) != last:
                    last, last_change = (ingested, dead), now
                elif now - last_change > stall_s:
                    progress(f"fuzz: no progress for {stall_s:.0f}s")
                    break
                if now - last_print > 10:
                    last_print = now
                    progress(
                        f"fuzz: worker counted {ingested:.0f}/{summary.valid} valid, "
                        f"dead-lettered {dead:.0f}/{summary.bad} "
                        f"({(ingested + dead) / (now - started):.0f} records/s overall)"
                    )
                await asyncio.sleep(1.0)
            process_s = time.monotonic() - started
            await asyncio.sleep(2.0 if SCALE.full else 1.0)  # time to count anything twice

            async with TopicReader(settings, "deadletter") as letters:
                await letters.drain(idle_s=5.0, until=lambda: len(letters.records) >= summary.bad)
            views: dict[str, int | None] = {}
            gate = asyncio.Semaphore(16)

            async def view(agent: str) -> None:
                async with gate:
                    status, body = await worker.get(http, f"/agents/{agent}")
                    views[agent] = body.get("events") if status == 200 else None

            await asyncio.gather(*(view(a) for a in gen.agents))
            health = (await worker.get(http, "/healthz"))[0]
            ready = await worker.get(http, "/readyz")
            status, text = await worker.get(http, "/metrics")
            alive = worker.alive()
        finally:
            worker.kill()
    log = worker.log_text()

    # -- what became of every record ------------------------------------------------------
    problems: list[str] = []
    reasons_seen: Counter[str] = Counter()
    wrong_reason: Counter[tuple[str, str]] = Counter()
    valid_dead: Counter[str] = Counter()
    dead_at: set[int] = set()
    unknown = no_reason = 0
    for letter in letters.records:
        headers = _headers(letter)
        if headers.get("agentwatch.source.topic") != actions.encode():
            continue
        try:
            pos = _pos(
                int(headers["agentwatch.source.partition"]),
                int(headers["agentwatch.source.offset"]),
            )
        except (KeyError, ValueError):
            unknown += 1
            continue
        category = where.get(pos)
        if category is None:
            unknown += 1
            continue
        reason = headers.get("agentwatch.reason", b"").decode()
        if not reason:
            no_reason += 1
        expect = EXPECTED[category]
        if not isinstance(expect, frozenset):
            valid_dead[f"{category}:{reason}"] += 1
            continue
        if pos in dead_at:
            continue  # at least once: a repeat is not a second record
        dead_at.add(pos)
        reasons_seen[reason] += 1
        if expect and reason not in expect:
            wrong_reason[(category, reason)] += 1
        if pos in huge:
            length, digest, head = huge[pos]
            kept = letter.value or b""
            values = b" ".join(headers.values()).decode("utf-8", "replace")
            if len(kept) < length and (str(length) not in values or digest not in values):
                problems.append(f"cut dead letter lacks length and SHA-256 headers: {headers}")
            if not head.startswith(kept[: len(head)]) or len(kept) > length:
                problems.append("a huge record's dead letter is not a prefix of the record")
    missing = Counter(
        category
        for pos, category in where.items()
        if isinstance(EXPECTED[category], frozenset) and pos not in dead_at
    )
    if missing:
        problems.append(f"{sum(missing.values())} bad records not dead-lettered: {dict(missing)}")
    if wrong_reason:
        problems.append(f"unexpected reasons (category, reason): {dict(wrong_reason)}")
    if valid_dead:
        problems.append(f"valid records dead-lettered: {dict(valid_dead)}")
    if unknown or no_reason:
        problems.append(f"{unknown} dead letters without a known source, {no_reason} no reason")
    for reason, n in summary.known_reasons.items():
        if reasons_seen[reason] < n:
            problems.append(f"reason {reason}: {reasons_seen[reason]} dead letters, generated {n}")
    wrong = {a: (views.get(a), n) for a, n in summary.per_agent.items() if views.get(a) != n}
    if wrong:
        lost = sum(n - (views.get(a) or 0) for a, n in summary.per_agent.items())
        problems.append(
            f"{len(wrong)} agents' counts (got, sent) differ, {lost} events missing in total; "
            f"e.g. {dict(list(wrong.items())[:5])}"
        )
    if status == 200:
        counted = metric_sum(text, "agentwatch_events_ingested_total")
        duplicates = metric_sum(text, "agentwatch_duplicate_events_total")
        if counted != summary.valid:
            problems.append(f"ingested metric {counted:.0f} != {summary.valid} valid events")
        if duplicates != summary.duplicates:
            problems.append(f"duplicates metric {duplicates:.0f} != {summary.duplicates}")

    # -- the worker -----------------------------------------------------------------------
    if not alive:
        problems.append("worker process died")
    if health != 200:
        problems.append(f"/healthz answered {health}")
    if ready[0] != 200:
        problems.append(f"/readyz answered {ready[0]}: {str(ready[1])[:300]}")
    for needle in ("Traceback", "crashed"):
        if needle in log:
            at = log.index(needle)
            problems.append(f"{needle!r} in the worker log: {log[max(0, at - 500) : at + 1500]}")
    forged = [line for line in log.splitlines() if line.startswith("FORGED")]
    if forged:
        problems.append(f"{len(forged)} forged log lines, e.g. {forged[0]!r}")
    dl_lines = len(re.findall(r"(?i)dead.?letter", log))
    allowed_lines = 20 + 2 * int(process_s)
    if dl_lines > allowed_lines:
        problems.append(
            f"{dl_lines} dead-letter log lines for {summary.bad} dead letters in {process_s:.0f}s "
            f"(expected a rate-limited summary, at most {allowed_lines})"
        )
    progress(
        f"fuzz done: {summary.records} records in {process_s:.0f}s "
        f"({summary.records / process_s:.0f} records/s end to end), "
        f"{len(dead_at)} bad records dead-lettered by reason {dict(reasons_seen)}, "
        f"{sum(v or 0 for v in views.values())}/{summary.valid} valid counted, "
        f"{len(pd.accepted('trigger'))} pages, log {len(log) / 1e6:.1f} MB"
    )
    assert not problems, f"seed {SCALE.seed}:\n  " + "\n  ".join(problems)
