"""A NAB-layout corpus: labelled series, and the hash rule that splits them into two halves."""

from __future__ import annotations

import csv
import hashlib
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

__all__ = ["CorpusError", "Half", "Series", "half_of", "load_corpus", "parse_time"]

Half = Literal["calibration", "held_out"]


class CorpusError(Exception):
    """A corpus directory that cannot be read; the message says what to fix."""


@dataclass(frozen=True)
class Series:
    """One labelled stream: its NAB name (``category/file.csv``), points and anomaly windows.

    ``timestamps`` are UTC epoch seconds, never decreasing (a few NAB files repeat one);
    ``windows`` are ``(start, end)`` pairs of epoch seconds, both ends inclusive, as in NAB's
    ``combined_windows.json``.
    """

    name: str
    timestamps: tuple[float, ...]
    values: tuple[float, ...]
    windows: tuple[tuple[float, float], ...]

    @property
    def half(self) -> Half:
        """The half this series belongs to (see :func:`half_of`)."""
        return half_of(self.name)


def half_of(name: str) -> Half:
    """``calibration`` when the first hex digit of ``sha256(name)`` is even, else ``held_out``.

    A rule fixed before any result was seen: which half a stream lands in depends on its
    name only, never on how a scorer does on it.

    >>> half_of("realAWSCloudwatch/ec2_cpu_utilization_825cc2.csv")
    'calibration'
    >>> half_of("realAWSCloudwatch/elb_request_count_8c0756.csv")
    'held_out'
    """
    digit = int(hashlib.sha256(name.encode("utf-8")).hexdigest()[0], 16)
    return "calibration" if digit % 2 == 0 else "held_out"


def parse_time(text: str) -> float:
    """UTC epoch seconds of a NAB timestamp (``2014-04-10 00:04:00``, optional fraction)."""
    stamp = datetime.fromisoformat(text.strip())
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def _read_series(path: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    times: list[float] = []
    values: list[float] = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or header[:2] != ["timestamp", "value"]:
            raise CorpusError(f"{path}: expected a 'timestamp,value' header, found {header}")
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                ts, value = parse_time(row[0]), float(row[1])
            except (ValueError, IndexError):
                raise CorpusError(f"{path}:{line}: not a 'timestamp,value' row: {row}") from None
            if not math.isfinite(value):
                raise CorpusError(f"{path}:{line}: value is not a finite number: {row[1]}")
            if times and ts < times[-1]:  # NAB has a few repeated stamps; keep them
                raise CorpusError(f"{path}:{line}: timestamp {row[0]} goes back in time")
            times.append(ts)
            values.append(value)
    if not times:
        raise CorpusError(f"{path}: no rows")
    return tuple(times), tuple(values)


def load_corpus(root: Path) -> tuple[list[Series], list[str]]:
    """The labelled series under ``root`` and the labelled names whose data file is missing.

    ``root`` holds ``labels/combined_windows.json`` and ``data/``; every entry of the labels
    file whose CSV exists is loaded (a subset of NAB is fine), sorted by name.
    """
    labels = root / "labels" / "combined_windows.json"
    if not labels.is_file():
        raise CorpusError(
            f"{labels}: no such file; --nab takes a directory in NAB's layout "
            "(labels/combined_windows.json and data/<category>/<file>.csv)"
        )
    try:
        entries = json.loads(labels.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CorpusError(f"{labels}: {exc}") from None
    if not isinstance(entries, dict):
        raise CorpusError(f"{labels}: expected an object of file name -> windows")
    series: list[Series] = []
    missing: list[str] = []
    for name in sorted(entries):
        path = root / "data" / name
        if not path.is_file():
            missing.append(name)
            continue
        try:
            windows = tuple((parse_time(a), parse_time(b)) for a, b in entries[name])
        except (TypeError, ValueError):
            raise CorpusError(f"{labels}: {name}: windows must be [start, end] pairs") from None
        times, values = _read_series(path)
        series.append(Series(name, times, values, windows))
    if not series:
        raise CorpusError(f"{root}: none of the {len(entries)} labelled files is under data/")
    return series, missing
