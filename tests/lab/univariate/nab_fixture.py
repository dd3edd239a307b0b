"""A tiny NAB-layout corpus, generated: one series with a spike, one with a level shift."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["SHIFT", "SPIKE", "START", "STEP_S", "stamp", "write_corpus"]

START = datetime(2024, 3, 1, tzinfo=UTC).timestamp()
STEP_S = 300.0
POINTS = 2016  # a week of 5-minute points; NAB's probationary period is its first 302
SPIKE = ("synthetic/spike.csv", 1200, (1150, 1250))  # name, anomaly index, window indexes
SHIFT = ("synthetic/shift.csv", 1600, (1560, 1640))


def stamp(index: int) -> str:
    """NAB's timestamp text of point ``index``."""
    moment = datetime.fromtimestamp(START + STEP_S * index, tz=UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _values(kind: str, rng: random.Random) -> list[float]:
    values = []
    for i in range(POINTS):
        day = 2.0 * math.sin(2.0 * math.pi * i / 288.0)
        value = 50.0 + day + rng.gauss(0.0, 0.5)
        if kind == "spike" and i == SPIKE[1]:
            value += 15.0
        if kind == "shift" and i >= SHIFT[1]:
            value += 10.0
        values.append(value)
    return values


def write_corpus(root: Path, seed: int = 7) -> Path:
    """Write both series and ``labels/combined_windows.json`` under ``root``; returns it."""
    rng = random.Random(seed)
    windows: dict[str, list[list[str]]] = {}
    for kind, (name, _, (left, right)) in (("spike", SPIKE), ("shift", SHIFT)):
        path = root / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [f"{stamp(i)},{v:.3f}" for i, v in enumerate(_values(kind, rng))]
        path.write_text("timestamp,value\n" + "\n".join(rows) + "\n", encoding="utf-8")
        windows[name] = [[stamp(left) + ".000000", stamp(right) + ".000000"]]
    (root / "labels").mkdir(parents=True, exist_ok=True)
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows, indent=4))
    return root
