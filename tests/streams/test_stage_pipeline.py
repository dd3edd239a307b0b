"""With the engine apart (its own process), the stage checks batch N+1 while the engine folds
batch N, and batch N finishes (anomalies, dead letters) in the background, in order; a commit,
a revocation and a stop still see only whole batches (unit tests of BaselineStage with an
engine whose folds finish when the test says)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any

import pytest

from agentwatch.detectors.engine import Engine
from agentwatch.schemas import ActionEvent
from agentwatch.streams.engine_host import Fold, LocalEngine, fold_events
from agentwatch.streams.stage import BaselineStage, decode_state
from tests.streams.fixtures import FaustEvent, Offsets, Table, bare_stage


class HeldEngine(LocalEngine):
    """An engine apart whose folds are computed when handed over (in order, as a child's
    are) and answered only when the test releases them."""

    apart = True

    def __init__(self) -> None:
        super().__init__(Engine(None))
        self.handed: list[list[str]] = []  # the agents of each batch, in the order handed over
        self.gates: list[asyncio.Event] = []

    def fold(self, events: Sequence[ActionEvent], raws: list[bytes]) -> Awaitable[Fold]:
        self.handed.append([e.agent_id for e in events])
        gate = asyncio.Event()
        self.gates.append(gate)
        self._new.clear()
        found = fold_events(self.engine, events, self._errors)  # now, in order

        async def answer() -> Fold:
            await gate.wait()
            return found

        return answer()


def make_stage(tmp_path: Path) -> tuple[BaselineStage, HeldEngine, Table]:
    engine, table = HeldEngine(), Table()
    return bare_stage(tmp_path, engine, table), engine, table


def count(engine: HeldEngine, agent: str) -> int:
    baseline = engine.engine.baselines.get(agent)
    return 0 if baseline is None else int(baseline.count)


async def test_the_next_batch_is_checked_while_the_engine_folds_this_one(tmp_path: Path) -> None:
    stage, engine, _ = make_stage(tmp_path)
    offsets = Offsets()
    finished: list[list[FaustEvent]] = []
    first, second = offsets.events(["a1", "a2"]), offsets.events(["a1", "a3"])
    await asyncio.wait_for(stage.process_batch(first, finished.append), 1)
    assert stage.busy and finished == []  # handed over; its findings not in yet
    assert stage.pending == 0  # nothing counts as changed before its batch finished
    second_done = asyncio.create_task(stage.process_batch(second, finished.append))
    await asyncio.sleep(0.05)
    # the second batch was checked and handed over; it waits for the first to finish
    assert engine.handed == [["a1", "a2"], ["a1", "a3"]]
    assert not second_done.done()
    engine.gates[0].set()
    await asyncio.wait_for(second_done, 1)
    assert finished == [first]
    assert stage.busy  # the second still in flight
    engine.gates[1].set()
    await asyncio.wait_for(stage.settled(), 1)
    assert finished == [first, second] and not stage.busy
    assert (count(engine, "a1"), count(engine, "a2"), count(engine, "a3")) == (2, 1, 1)
    assert stage.pending == 3


async def test_a_commit_waits_for_the_batch_in_flight_and_writes_it_whole(
    tmp_path: Path,
) -> None:
    stage, engine, table = make_stage(tmp_path)
    offsets = Offsets()
    await stage.process_batch(offsets.events(["a1"]))
    engine.gates[0].set()
    await stage.settled()
    await stage.process_batch(offsets.events(["a1", "a2"]))  # in flight
    hold = asyncio.create_task(stage.hold_for_commit())
    await asyncio.sleep(0.05)
    assert not hold.done(), "a commit must not take its snapshot while a batch is in flight"
    engine.gates[1].set()
    await asyncio.wait_for(hold, 1)
    assert stage.snapshot() == 2
    stage.release_commit()
    assert await stage.write_snapshot() == 2
    offset, baseline, _ = decode_state(table[b"a1"])
    assert (offset, baseline.count) == (1, 2)  # the state and offset of both batches


async def test_a_batch_waits_while_a_commit_holds(tmp_path: Path) -> None:
    stage, engine, _ = make_stage(tmp_path)
    await stage.hold_for_commit()
    batch = asyncio.create_task(stage.process_batch(Offsets().events(["a1"])))
    await asyncio.sleep(0.05)
    assert engine.handed == [] and not batch.done()
    stage.release_commit()
    await asyncio.wait_for(batch, 1)
    assert engine.handed == [["a1"]]


async def test_a_failure_in_the_background_interrupts_and_reaches_the_next_batch(
    tmp_path: Path,
) -> None:
    stage, engine, _ = make_stage(tmp_path)
    offsets = Offsets()
    finish = stage._finish

    async def broker_gone(batch: Any) -> None:
        await finish(batch)
        raise RuntimeError("the broker went away")

    stage._finish = broker_gone  # type: ignore[method-assign]
    first, second = offsets.events(["a1"]), offsets.events(["a2"])
    await stage.process_batch(first)
    engine.gates[0].set()
    await asyncio.wait_for(stage.settled(), 1)
    assert stage.interrupted is not None and "the broker went away" in stage.interrupted
    assert "agentwatch.actions[0] 0-0" in stage.interrupted
    with pytest.raises(RuntimeError, match="the broker went away"):
        await stage.process_batch(second)
    assert all(e.acked for e in first + second)  # faust's stop does not wait for them
    assert not stage.busy
    assert stage.snapshot() == 0 and await stage.flush() == 0


async def test_a_stop_out_of_patience_cancels_the_batch_in_flight(tmp_path: Path) -> None:
    stage, _, table = make_stage(tmp_path)
    events = Offsets().events(["a1"])
    await stage.process_batch(events)
    await asyncio.sleep(0.01)  # it waits for the engine's findings
    assert stage.cut_short()
    await asyncio.wait_for(stage.settled(), 1)
    assert stage.interrupted is not None and "(cancelled)" in stage.interrupted
    assert all(e.acked for e in events)
    assert not stage.cut_short()  # nothing in flight any more
    assert await stage.flush() == 0 and table == {}


async def test_a_batch_cancelled_before_it_began_to_finish_interrupts_too(
    tmp_path: Path,
) -> None:
    stage, _, _ = make_stage(tmp_path)
    await stage.process_batch(Offsets().events(["a1"]))
    assert stage.cut_short()  # at once: its task never ran
    await asyncio.wait_for(stage.settled(), 1)
    assert stage.interrupted is not None and "(cancelled)" in stage.interrupted


async def test_a_revocation_flushes_once_the_batch_in_flight_is_done(tmp_path: Path) -> None:
    stage, engine, table = make_stage(tmp_path)
    await stage.process_batch(Offsets().events(["a1", "a2"]))
    revoked = asyncio.create_task(stage.on_revoked([0]))
    await asyncio.sleep(0.05)
    assert not revoked.done() and table == {}
    engine.gates[0].set()
    await asyncio.wait_for(revoked, 1)
    assert sorted(table) == [b"a1", b"a2"]  # the batch's state, written before the eviction
    assert not engine.holds("a1") and engine.agents == 0
