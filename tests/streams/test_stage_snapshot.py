"""A commit's snapshot: which agents it writes is fixed when it starts; it writes them in
slices, each while no batch is in progress, with batches running between slices and the
slices paced by the producer's backlog (unit tests of BaselineStage with a dict for table)."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import pytest

from agentwatch.config import Settings
from agentwatch.detectors.engine import Engine
from agentwatch.schemas import ActionEvent
from agentwatch.streams import stage as stage_module
from agentwatch.streams.engine_host import LocalEngine
from agentwatch.streams.engine_process import EngineProcessExited
from agentwatch.streams.stage import SNAPSHOT_SLICE, BaselineStage, decode_state
from tests.streams.fixtures import Offsets, Table, bare_stage


def make_stage(tmp_path: Path, backlog: list[int]) -> tuple[BaselineStage, Table]:
    table = Table()
    return bare_stage(tmp_path, LocalEngine(Engine(None)), table, lambda: backlog[0]), table


AGENTS = [f"a{i:03d}" for i in range(3 * SNAPSHOT_SLICE + 7)]


async def test_the_snapshot_is_written_in_slices_with_a_batch_between_them(
    tmp_path: Path,
) -> None:
    stage, table = make_stage(tmp_path, [0])
    offsets = Offsets()
    await stage.process_batch(offsets.events(AGENTS))
    assert stage.snapshot() == len(AGENTS)
    written_at_fold: list[int] = []

    def probe(event: ActionEvent) -> None:
        written_at_fold.append(len(table.writes))

    stage.on_event = probe
    writer = asyncio.create_task(stage.write_snapshot())
    await asyncio.sleep(0)  # the writer wrote its first slice and let batches run
    # a batch after the snapshot: an agent in it, and one that is not
    await stage.process_batch(offsets.events([AGENTS[-1], "late"]))
    assert await writer == len(AGENTS)

    assert written_at_fold == [SNAPSHOT_SLICE] * 2, "the batch ran between the first slices"
    assert sorted(table.writes) == sorted(a.encode() for a in AGENTS)
    # written after its second event was folded in: the newer state, with its offset
    offset, baseline, _ = decode_state(table[AGENTS[-1].encode()])
    assert (offset, baseline.count) == (offsets.next - 2, 2)
    assert b"late" not in table  # changed after the snapshot: the next commit's
    assert stage.pending == 2  # both changed since the snapshot
    assert stage.snapshot() == 2
    assert await stage.write_snapshot() == 2
    assert stage.pending == 0


async def test_a_slice_waits_until_the_producer_backlog_is_down_to_a_slice(
    tmp_path: Path,
) -> None:
    backlog = [10 * SNAPSHOT_SLICE]
    stage, table = make_stage(tmp_path, backlog)
    await stage.process_batch(Offsets().events(AGENTS))
    stage.snapshot()
    writer = asyncio.create_task(stage.write_snapshot())
    await asyncio.sleep(0.05)
    assert table.writes == [], "nothing written while the producer holds a backlog"
    backlog[0] = SNAPSHOT_SLICE
    assert await asyncio.wait_for(writer, timeout=5) == len(AGENTS)


async def test_a_backlog_that_never_drains_delays_each_slice_only_so_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stage_module, "BACKLOG_WAIT_S", 0.02)
    stage, table = make_stage(tmp_path, [10**6])
    await stage.process_batch(Offsets().events(AGENTS))
    stage.snapshot()
    assert await asyncio.wait_for(stage.write_snapshot(), timeout=5) == len(AGENTS)
    assert len(table.writes) == len(AGENTS)


async def test_the_slices_are_spread_over_half_the_commit_interval(tmp_path: Path) -> None:
    """Back to back, a commit's slices took most of the worker for 0.4-0.8 s (1,000 agents)
    and ingest fell behind; spread, they leave it room."""
    stage, table = make_stage(tmp_path, [0])
    stage.settings = Settings(data_dir=tmp_path, commit_interval_s=0.8)  # type: ignore[arg-type]
    await stage.process_batch(Offsets().events(AGENTS))  # 4 slices: one every 0.1 s
    stage.snapshot()
    assert await stage.write_snapshot() == len(AGENTS)
    written = table.written_at
    starts = [written[i] for i in range(0, len(AGENTS), stage_module.SNAPSHOT_SLICE)]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(gaps) == 3 and all(0.08 <= g <= 0.3 for g in gaps), gaps
    # the last slice is not followed by a wait: the commit goes on at once
    assert time.monotonic() - written[-1] < 0.05


async def test_flush_writes_the_unwritten_snapshot_and_the_changes_since(
    tmp_path: Path,
) -> None:
    stage, table = make_stage(tmp_path, [0])
    offsets = Offsets()
    await stage.process_batch(offsets.events(["a", "b"]))
    stage.snapshot()  # a commit that committed nothing leaves it unwritten
    await stage.process_batch(offsets.events(["b", "c"]))
    assert stage.pending == 3
    assert await stage.flush() == 3  # on revocation: everything, at once
    assert sorted(table.writes) == [b"a", b"b", b"c"]
    assert decode_state(table[b"b"])[1].count == 2
    assert stage.pending == 0 and await stage.flush() == 0


async def test_a_batch_stopped_half_done_stops_every_later_state_write(tmp_path: Path) -> None:
    """Its events are folded while its side effects are not out: writing that state (or any
    later one) would let a restart skip them, so nothing is written any more; its messages
    are acked so that faust's stop does not wait for them (no commit follows)."""
    stage, table = make_stage(tmp_path, [0])
    offsets = Offsets()
    await stage.process_batch(offsets.events(["a1", "a2"]))  # a whole batch
    finish = stage._finish

    async def half_done(batch: Any) -> None:
        await finish(batch)
        raise RuntimeError("the broker went away")

    stage._finish = half_done  # type: ignore[method-assign]
    events = offsets.events(["a1", "a3"])
    with pytest.raises(RuntimeError):
        await stage.process_batch(events)
    assert stage.interrupted is not None
    assert "agentwatch.actions[0] 2-3" in stage.interrupted
    assert "the broker went away" in stage.interrupted
    assert all(e.acked for e in events)
    assert stage.snapshot() == 0
    assert await stage.write_snapshot() == 0
    assert await stage.flush() == 0
    assert table == {}


async def test_each_snapshot_write_is_reported_with_its_span_and_size(tmp_path: Path) -> None:
    stage, _ = make_stage(tmp_path, [0])
    reports: list[tuple[float, float, int]] = []
    stage.on_snapshot = lambda start, end, written: reports.append((start, end, written))
    offsets = Offsets()
    await stage.process_batch(offsets.events(AGENTS))
    before = time.monotonic()
    stage.snapshot()
    assert await stage.write_snapshot() == len(AGENTS)
    stage.snapshot()
    assert await stage.write_snapshot() == 0  # nothing changed: nothing written, no report
    assert len(reports) == 1
    start, end, written = reports[0]
    assert before <= start <= end <= time.monotonic() and written == len(AGENTS)


class _GoneEngine(LocalEngine):
    """An engine whose process died after the batches: it cannot give the state to write."""

    def encode(self, items: Any) -> Any:
        raise EngineProcessExited("the engine's process exited (code -9)")


async def test_state_the_engine_cannot_give_is_never_committed_past(tmp_path: Path) -> None:
    stage, table = make_stage(tmp_path, [0])
    stage.engine = _GoneEngine(Engine(None))
    await stage.process_batch(Offsets().events(["a", "b"]))
    assert stage.snapshot() == 2
    assert await stage.write_snapshot() == 0 and table == {}
    # the commit that began with this snapshot must not commit its offsets (transport._commit)
    assert stage.interrupted is not None and "exited (code -9)" in stage.interrupted
    assert await stage.flush() == 0
