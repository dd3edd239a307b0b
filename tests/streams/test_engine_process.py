"""The detection engine in a process of its own (``engine_process``, on by default on two cores).

The live worker with it turns events into the same anomalies as the backtest
(tests/streams/test_one_engine.py runs both ways); here: the state it stores is read back by a
restarted worker, the child's death stops ingest without a commit and a restart folds every
event exactly once, and the child does not outlive a killed worker.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agentwatch.config import Settings
from agentwatch.detectors.engine import Engine
from agentwatch.detectors.rules import load_rules
from agentwatch.lab.sim import SimConfig, Simulation, write_jsonl
from agentwatch.schemas import decode_event
from agentwatch.streams.app import create_app
from agentwatch.streams.engine_host import fold_events
from agentwatch.streams.engine_process import EngineProcess, EngineProcessExited
from agentwatch.streams.runner import running_app
from agentwatch.streams.state_codec import encode_state
from tests.streams.fixtures import alive
from tests.streams.test_pipeline import encoded, event, produce

pytestmark = pytest.mark.integration


async def _until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_the_child_folds_a_trace_as_the_engine_does_in_process(tmp_path: Path) -> None:
    sim = Simulation(SimConfig(agents=20, minutes=40, seed=5))
    write_jsonl(sim, tmp_path / "events.jsonl", tmp_path / "labels.jsonl")
    raws = (tmp_path / "events.jsonl").read_bytes().splitlines()
    rules = load_rules()
    local = Engine(rules)
    expected = fold_events(local, (decode_event(r) for r in raws), set())
    assert any(isinstance(v, list) for v in expected.values()), "the trace must raise anomalies"
    child = EngineProcess(rules, max_event_bytes=64 * 1024)
    await child.start()
    try:
        found = {}
        for start in range(0, len(raws), 500):  # batches, as the stage hands them over
            part = raws[start : start + 500]
            events = [decode_event(r) for r in part]
            for agent_id in {e.agent_id for e in events if not child.holds(e.agent_id)}:
                child.load(agent_id, None)  # as the stage does: a new agent, nothing stored
            got = await child.fold(events, part)
            found.update({start + i: v for i, v in got.items()})
        assert {i: [a.model_dump_json() for a in v] for i, v in found.items() if v} == {
            i: [a.model_dump_json() for a in v] for i, v in expected.items() if v
        }
        # the state it encodes is the in-process engine's, byte for byte
        agents = sorted(local.baselines)
        values = await child.encode([(a, 7, None) for a in agents])
        assert sorted(values) == agents
        for agent in agents:
            assert values[agent] == encode_state(7, local.baselines[agent], local.states[agent])
        assert (await child.roster())[agents[0]][1] == local.baselines[agents[0]].count
        # its start-up heap (modules, rules) is kept out of full collections, as the worker's
        assert await child._call("frozen") > 10_000
    finally:
        await child.stop()
    assert child.pid is not None and not alive(child.pid)


async def test_a_dead_child_fails_what_is_in_flight_and_everything_after() -> None:
    child = EngineProcess(load_rules(), max_event_bytes=64 * 1024)
    await child.start()
    assert child.pid is not None
    os.kill(child.pid, signal.SIGKILL)
    _, raw = encoded(event(0))
    with pytest.raises(EngineProcessExited, match=r"exited \(code -9\)"):
        await child.fold([decode_event(raw)], [raw])
    with pytest.raises(EngineProcessExited):
        await child.fold([decode_event(raw)], [raw])
    await child.stop()


def test_the_child_exits_when_its_worker_is_killed(tmp_path: Path) -> None:
    script = (
        "import asyncio, sys\n"
        "from agentwatch.detectors.rules import load_rules\n"
        "from agentwatch.streams.engine_process import EngineProcess\n"
        "async def main():\n"
        "    child = EngineProcess(load_rules(), max_event_bytes=65536)\n"
        "    await child.start()\n"
        "    print(child.pid, flush=True)\n"
        "    await asyncio.sleep(600)\n"
        "asyncio.run(main())\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        assert alive(pid)
        parent.kill()  # SIGKILL: nothing of the worker runs any more
        parent.wait(10)
        deadline = time.monotonic() + 10
        while alive(pid):
            assert time.monotonic() < deadline, "the engine's process outlived its worker"
            time.sleep(0.05)
    finally:
        if parent.poll() is None:
            parent.kill()


async def test_a_restarted_worker_reads_back_what_the_childs_engine_stored(
    settings: Settings, tmp_path: Path
) -> None:
    first = settings.replace(engine_process="on", store="rocksdb", data_dir=tmp_path / "w1")
    worker = create_app(first)
    assert isinstance(worker.stage.engine, EngineProcess)
    async with running_app(worker):
        await produce(settings, [encoded(event(i, agent=f"p{i % 3}")) for i in range(60)])
        await _until(lambda: worker.stage.engine.agents == 3)
        roster = worker.stage.engine.roster
        deadline = time.monotonic() + 30
        while sum(c for _, c in (await roster()).values()) < 60:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        before = {a: (await worker.stage.engine.baseline(a)) for a in ("p0", "p1", "p2")}
        await asyncio.sleep(3 * settings.commit_interval_s)  # committed and written
    pid = worker.stage.engine.pid
    assert pid is not None and not alive(pid)  # stopped with its worker
    second = settings.replace(engine_process="on", store="rocksdb", data_dir=tmp_path / "w2")
    restarted = create_app(second)
    async with running_app(restarted):
        for agent, baseline in before.items():
            again = await restarted.stage.baseline(agent)
            assert baseline is not None and again is not None
            assert again.to_bytes() == baseline.to_bytes()


async def test_the_childs_death_stops_ingest_uncommitted_and_a_restart_folds_once(
    settings: Settings, tmp_path: Path
) -> None:
    one = settings.replace(engine_process="on", topic_partitions=1, data_dir=tmp_path / "a")
    worker = create_app(one)
    engine = worker.stage.engine
    assert isinstance(engine, EngineProcess)
    async with running_app(worker):
        await produce(settings, [encoded(event(i, agent="k1")) for i in range(20)])
        await _until(lambda: engine.agents == 1)
        await asyncio.sleep(3 * settings.commit_interval_s)  # the first 20 are committed
        assert engine.pid is not None
        os.kill(engine.pid, signal.SIGKILL)
        await produce(settings, [encoded(event(i, agent="k1")) for i in range(20, 30)])
        await _until(lambda: worker.stage.interrupted is not None)
        assert "exited (code -9)" in worker.stage.interrupted
        await _until(lambda: bool(worker.app.crashed))  # its next commit stops it
    # a new worker of the same group: the 20 committed events come back from the table, the
    # 10 after the last commit are read again and folded once
    again = create_app(one.replace(data_dir=tmp_path / "b"))
    async with running_app(again):
        await _until(lambda: again.stage.engine.agents == 1)
        deadline = time.monotonic() + 30
        while (baseline := await again.stage.baseline("k1")) is None or baseline.count < 30:
            assert time.monotonic() < deadline, "the events after the crash were not folded"
            await asyncio.sleep(0.1)
        await asyncio.sleep(2 * settings.commit_interval_s)
        baseline = await again.stage.baseline("k1")
        assert baseline is not None and baseline.count == 30
