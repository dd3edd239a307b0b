"""Stand-ins shared by the stream tests: a faust message and event, the baselines table, a
source of numbered events, and whether a process is alive."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faust.types import TP

from agentwatch.config import Settings
from agentwatch.streams.engine_host import EngineHost
from agentwatch.streams.metrics import WorkerMetrics
from agentwatch.streams.stage import BaselineStage

__all__ = ["FaustEvent", "Message", "Offsets", "Table", "alive", "bare_stage"]


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, exited and not reaped yet, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


@dataclass(frozen=True)
class Message:
    """What the stage reads of a faust message."""

    offset: int
    value: bytes
    key: bytes
    partition: int = 0
    topic: str = "agentwatch.actions"
    headers: tuple[Any, ...] = ()

    @property
    def tp(self) -> TP:
        return TP(self.topic, self.partition)


@dataclass
class FaustEvent:
    """A faust event: its message, and whether it was acknowledged."""

    message: Message
    acked: bool = False

    def ack(self) -> bool:
        self.acked = True
        return True


class Table(dict[bytes, bytes]):
    """The baselines table: a dict that remembers the order of its writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.written_at: list[float] = []  # time.monotonic() of each write

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.writes.append(key)
        self.written_at.append(time.monotonic())
        super().__setitem__(key, value)


class Offsets:
    """Events of the given agents at consecutive offsets of partition 0."""

    def __init__(self) -> None:
        self.next = 0

    def events(self, agents: list[str]) -> list[FaustEvent]:
        out = []
        for agent in agents:
            doc = {
                "event_id": f"e{self.next}",
                "ts": "2026-01-01T00:00:00Z",
                "agent_id": agent,
                "action": "search",
            }
            out.append(FaustEvent(Message(self.next, json.dumps(doc).encode(), agent.encode())))
            self.next += 1
        return out


def bare_stage(
    tmp_path: Path, engine: EngineHost, table: Table, backlog: Callable[[], int] = lambda: 0
) -> BaselineStage:
    """An ingest stage with no broker behind it: for tests whose records are all folded
    (none dead-lettered, re-keyed or raising an anomaly)."""
    return BaselineStage(
        settings=Settings(data_dir=tmp_path),  # type: ignore[arg-type]
        engine=engine,
        table=table,
        deadletters=None,  # type: ignore[arg-type]
        anomalies=None,
        actions=None,
        metrics=WorkerMetrics(),
        backlog=backlog,
    )
