"""One fleet, several worker processes: each judges its agents against the whole fleet.

Three agents of one fleet, one on each of three partitions: one worker process sees the
three; of three worker processes each sees one. The novelty detector needs three agents in a
fleet before a peer's silence means anything, so a worker that saw only its own agent would
never flag the new egress domain. With the fleet summaries exchanged over ``<prefix>.fleets``
the three workers flag it exactly as the single worker does; a restarted worker restores its
own summaries from the topic.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

from agentwatch.config import Settings
from agentwatch.detectors.rules import load_rules
from agentwatch.lab.backtest import home_partition, run_backtest
from agentwatch.streams.broker import free_port
from agentwatch.streams.runner import EMBEDDED_OVERRIDES
from tests.conftest import API_TOKEN
from tests.streams.test_response import read_topic

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
RULES = """
groups:
  - name: fleets
    rules:
      - alert: NovelDestination
        detector: novelty
        params: {warmup_s: 60, false_alarms_per_agent_day: 5}
        labels: {severity: warning}
        action: notify
"""
ROUNDS = 1500  # each agent posts to Slack every 10 s of event time


def agents_on_three_partitions() -> list[str]:
    """Three agent ids whose events land on partitions 0, 1 and 2 of three."""
    chosen: dict[int, str] = {}
    k = 0
    while len(chosen) < 3:
        agent = f"ops-{k}"
        chosen.setdefault(home_partition(agent, 3), agent)
        k += 1
    return [chosen[p] for p in range(3)]


def doc(agent: str, second: float, target: str) -> dict[str, Any]:
    return {
        "event_id": f"{agent}-{second:g}",
        "ts": (T0 + timedelta(seconds=second)).isoformat().replace("+00:00", "Z"),
        "agent_id": agent,
        "fleet": "ops",
        "action": "http_post",
        "target": target,
    }


def start_worker(settings: Settings, home: Path, rules: Path, port: int) -> Any:
    """``python -m agentwatch.cli worker`` in its own session, logging to ``home/worker.log``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    values: dict[str, Any] = {
        "kafka_bootstrap": settings.kafka_bootstrap,
        "app_id": settings.app_id,
        "topic_prefix": settings.topic_prefix,
        "topic_partitions": 3,
        **EMBEDDED_OVERRIDES,
        "store": "rocksdb",
        "data_dir": home / "state",  # the worker id: this host and this directory
        "web_port": port,
        "otlp_port": 0,
        "commit_interval_s": 0.5,
        "rules_file": rules,
        "fleet_exchange_s": 0.5,
        "log_level": "INFO",
        "control_signing_key_file": settings.control_signing_key_file,
        "api_token": API_TOKEN,
    }
    env.update({f"AGENTWATCH_{k.upper()}": str(v) for k, v in values.items()})
    log = (home / "worker.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "agentwatch.cli", "worker"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill(proc: Any) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


async def fleets_view(http: aiohttp.ClientSession, port: int) -> dict[str, Any] | None:
    try:
        async with http.get(f"http://127.0.0.1:{port}/fleets") as resp:
            return dict(await resp.json()) if resp.status == 200 else None
    except aiohttp.ClientError:
        return None


async def until(
    http: aiohttp.ClientSession, ports: list[int], ok: Any, what: str, timeout: float = 120.0
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        views = [await fleets_view(http, port) for port in ports]
        if all(v is not None for v in views) and ok([v for v in views if v is not None]):
            return [v for v in views if v is not None]
        assert time.monotonic() < deadline, f"{what}: {views}"
        await asyncio.sleep(0.2)


async def produce(settings: Settings, docs: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5)
    await producer.start()
    try:
        for item in docs:
            await producer.send(
                settings.topic("actions"),
                json.dumps(item).encode(),
                key=str(item["agent_id"]).encode(),
            )
        await producer.flush()
    finally:
        await producer.stop()


def fleet_events(views: list[dict[str, Any]]) -> int:
    return sum(int(v["fleets"].get("ops", {}).get("events", 0)) for v in views)


async def test_three_workers_flag_what_one_worker_flags_and_restore_after_a_restart(
    settings: Settings, tmp_path: Path, auth: dict[str, str]
) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES)
    agents = agents_on_three_partitions()
    bulk = [
        doc(agent, 10.0 * i + k, "https://hooks.slack.com/x")
        for i in range(ROUNDS)
        for k, agent in enumerate(agents)
    ]
    novel = doc(agents[0], 10.0 * ROUNDS + 5, "https://paste-drop.io/upload/1")
    trace = tmp_path / "trace.jsonl"
    trace.write_text("".join(json.dumps(d) + "\n" for d in [*bulk, novel]))

    # offline: the flag needs the whole fleet; 3 engines that never exchange do not raise it
    ruleset = load_rules(rules)
    one = [(a.agent_id, a.kind, a.evidence[0]) for a in run_backtest(trace, ruleset).anomalies]
    assert one == [(agents[0], "new_egress_domain", novel["event_id"])]
    apart = run_backtest(trace, ruleset, partitions=3, exchange_s=1e9).anomalies
    assert apart == []

    single = settings.replace(
        topic_prefix=settings.topic_prefix + "one", app_id=settings.app_id + "one"
    )
    ports = [free_port("127.0.0.1") for _ in range(4)]
    homes = [tmp_path / f"w{n}" for n in range(4)]
    for home in homes:
        home.mkdir()
    procs = [start_worker(single, homes[0], rules, ports[0])]
    procs += [start_worker(settings, homes[n], rules, ports[n]) for n in (1, 2, 3)]
    many = ports[1:]
    try:
        async with aiohttp.ClientSession(headers=auth) as http:
            views = await until(http, ports, lambda vs: all(v["ready"] for v in vs), "not ready")
            assert len({v["worker"] for v in views}) == 4  # four distinct worker ids
            async with (
                aiohttp.ClientSession() as bare,  # the view needs the API token
                bare.get(f"http://127.0.0.1:{ports[1]}/fleets") as resp,
            ):
                assert resp.status == 401
            await produce(single, bulk)
            await produce(settings, bulk)
            await until(http, ports[:1], lambda vs: fleet_events(vs) == len(bulk), "one: bulk")
            views = await until(http, many, lambda vs: fleet_events(vs) == len(bulk), "3: bulk")
            assert sorted(int(v["fleets"]["ops"]["agents"]) for v in views) == [1, 1, 1]
            # each of the three holds the other two's summaries, published after the bulk
            done = time.time()
            await until(
                http,
                many,
                lambda vs: all(
                    len(v["fleets"]["ops"].get("workers", {})) == 2
                    and min(v["fleets"]["ops"]["workers"].values()) > done
                    for v in vs
                ),
                "summaries not exchanged",
            )
            async with http.get(f"http://127.0.0.1:{many[0]}/metrics") as resp:
                metrics = await resp.text()
            assert "agentwatch_fleet_peer_workers 2.0" in metrics
            absorbed = [
                float(line.split()[-1])
                for line in metrics.splitlines()
                if line.startswith("agentwatch_fleet_summaries_absorbed_total")
            ]
            assert absorbed and absorbed[0] > 0
            await produce(single, [novel])
            await produce(settings, [novel])
            expected = [(agents[0], "new_egress_domain", novel["event_id"])]
            deadline = time.monotonic() + 60
            while True:
                got = {}
                for name, where in (("one", single), ("three", settings)):
                    anomalies = await read_topic(where, "anomalies", timeout=0.5)
                    got[name] = [(a["agent_id"], a["kind"], a["evidence"][0]) for a in anomalies]
                if got["one"] == expected and got["three"] == expected:
                    break
                assert time.monotonic() < deadline, got
                await asyncio.sleep(0.3)

            # a restarted worker restores its own summaries from the topic, not cold
            kill(procs[2])
            procs[2] = start_worker(settings, homes[2], rules, ports[2])
            [view] = await until(http, [ports[2]], lambda vs: vs[0]["ready"], "no restart")
            assert view["restored"] == 1, view
            assert len(view["fleets"]["ops"].get("workers", {})) == 2, view
    except AssertionError as exc:  # with what the workers said
        tails = "".join(
            f"\n--- {home.name}\n{(home / 'worker.log').read_text(errors='replace')[-2000:]}"
            for home in homes
        )
        raise AssertionError(f"{exc}{tails}") from None
    finally:
        for proc in procs:
            if proc.poll() is None:
                kill(proc)
    assert not [p.returncode for p in procs if p.returncode not in (None, -9)]
