"""An agent's stored state is read from the table once when the stage first meets it, however
many of its events the batch holds, with the engine in the worker or in its own process (unit
tests of BaselineStage with a dict for table)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentwatch.detectors.engine import Engine
from agentwatch.schemas import decode_event
from agentwatch.streams.engine_host import EngineHost, LocalEngine
from agentwatch.streams.engine_process import EngineProcess
from agentwatch.streams.stage import decode_state
from agentwatch.streams.state_codec import encode_state
from tests.streams.fixtures import Offsets, Table, bare_stage


class CountingTable(Table):
    """The table, counting its reads by key."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: dict[bytes, int] = {}

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        self.reads[key] = self.reads.get(key, 0) + 1
        return super().get(key, default)


@pytest.mark.parametrize("apart", [False, True], ids=["in-worker", "own-process"])
async def test_each_agent_is_read_once_in_its_first_batch(tmp_path: Path, apart: bool) -> None:
    table = CountingTable()
    earlier = Engine(None)  # the agent's life before this worker met it: 40 events
    for fevent in Offsets().events(["old"] * 40):
        earlier.process(decode_event(fevent.message.value))
    assert earlier.baselines["old"].count == 40
    value = encode_state(-1, earlier.baselines["old"], earlier.states["old"])
    dict.__setitem__(table, b"old", value)
    engine: EngineHost = (
        EngineProcess(None, max_event_bytes=64 * 1024) if apart else LocalEngine(Engine(None))
    )
    await engine.start()
    try:
        stage = bare_stage(tmp_path, engine, table)
        offsets = Offsets()
        await stage.process_batch(offsets.events(["new", "old", "new", "old", "new"] * 4))
        assert table.reads == {b"new": 1, b"old": 1}
        await stage.process_batch(offsets.events(["new", "old"]))
        assert table.reads == {b"new": 1, b"old": 1}  # held: not read again
        # the stored state was folded on, and the new agent's from its first event
        assert stage.snapshot() == 2
        await stage.write_snapshot()
        assert decode_state(table[b"old"])[1].count == 40 + 9
        assert decode_state(table[b"new"])[1].count == 12 + 1
    finally:
        await engine.stop()
