"""Labels: what the simulator injected, as the evaluation reads it (one typed model).

A :class:`Label` is an incident (``benign`` false, one agent), a benign per-agent event (an
``error_burst``) or a benign fleet-wide change (``agent_id`` ``None``: ``model_upgrade``,
``tool_rollout``, ``prompt_change``). ``agentwatch simulate`` writes them one JSON object per
line; ``agentwatch backtest --labels`` reads them back with :func:`load_labels`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agentwatch.schemas._types import format_ts

__all__ = ["Label", "LabelError", "load_labels", "parse_time", "write_labels"]


class LabelError(ValueError):
    """A label that cannot be read: the message names the file, the line and the reason."""


def parse_time(value: Any) -> float:
    """Epoch seconds from an RFC 3339 string, an aware ``datetime`` or a number.

    Examples
    --------
    >>> parse_time("2026-01-05T09:00:00Z")
    1767603600.0
    >>> parse_time(1767603600)
    1767603600.0
    """
    if isinstance(value, datetime):
        aware = value if value.utcoffset() is not None else value.replace(tzinfo=UTC)
        return aware.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value)
        if parsed.utcoffset() is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    raise TypeError(f"not a timestamp: {value!r}")


@dataclass(frozen=True, slots=True)
class Label:
    """One labelled incident, benign per-agent event or benign fleet-wide change.

    Parameters
    ----------
    id
        Label id (an incident's id; shared by the per-agent labels of one error burst).
    kind
        Incident kind (``runaway_loop``, ...) or benign kind (``error_burst``,
        ``model_upgrade``, ``tool_rollout``, ``prompt_change``).
    agent_id
        The affected agent; ``None`` for a fleet-wide change.
    fleet
        The affected agent's fleet, or the changed fleet.
    start, end
        The window (aware UTC). An incident starts at its agent's first anomalous event.
    benign
        Whether a detector should stay quiet about it.
    params
        Kind-specific parameters (JSON-able): which action loops, which model, and for a
        cost ramp ``crosses_2x_at`` and ``crosses_3x_at``, when its cost rate reaches twice
        and three times the starting one.

    Examples
    --------
    >>> lab = Label.from_dict({"kind": "runaway_loop", "agent_id": "a1", "fleet": "ops",
    ...                        "start": "2026-01-05T09:10:00Z", "end": "2026-01-05T09:15:00Z"})
    >>> lab.incident, lab.end_s - lab.start_s, lab.to_dict()["start"]
    (True, 300.0, '2026-01-05T09:10:00Z')
    """

    id: str
    kind: str
    agent_id: str | None
    fleet: str
    start: datetime
    end: datetime
    benign: bool = False
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.start.utcoffset() is None or self.end.utcoffset() is None:
            raise ValueError("label start and end must be timezone-aware")
        if self.end < self.start:
            raise ValueError(f"label ends before it starts: {self.start} > {self.end}")

    @property
    def start_s(self) -> float:
        """``start`` in epoch seconds."""
        return self.start.timestamp()

    @property
    def end_s(self) -> float:
        """``end`` in epoch seconds."""
        return self.end.timestamp()

    @property
    def incident(self) -> bool:
        """An incident: not benign, in one agent (what recall counts)."""
        return not self.benign and self.agent_id is not None

    @property
    def fleet_wide(self) -> bool:
        """A benign change of a whole fleet."""
        return self.benign and self.agent_id is None

    @property
    def crosses_2x_s(self) -> float | None:
        """For a cost ramp, when its cost rate reaches twice the starting one (epoch s)."""
        value = self.params.get("crosses_2x_at")
        return None if value is None else parse_time(value)

    @property
    def crosses_3x_s(self) -> float | None:
        """For a cost ramp, when its cost rate reaches three times the starting one."""
        value = self.params.get("crosses_3x_at")
        return None if value is None else parse_time(value)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (RFC 3339 times), as :func:`write_labels` writes it."""
        return {
            "id": self.id,
            "kind": self.kind,
            "agent_id": self.agent_id,
            "fleet": self.fleet,
            "start": format_ts(self.start),
            "end": format_ts(self.end),
            "benign": self.benign,
            "params": dict(self.params),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], index: int = 0) -> Label:
        """Read the JSON form; ``end`` defaults to ``start``, ``fleet`` to ``default``, ``id``
        to ``label-<index>``; ``details`` (older files) is read as ``params``.

        Raises
        ------
        ValueError
            What is missing or wrong.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"a label is a JSON object, got {type(data).__name__}")
        if "kind" not in data or "start" not in data:
            raise ValueError("a label needs 'kind' and 'start'")
        try:
            start = datetime.fromtimestamp(parse_time(data["start"]), UTC)
            end = datetime.fromtimestamp(parse_time(data.get("end") or data["start"]), UTC)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad time: {exc}") from None
        agent = data.get("agent_id")
        params = data.get("params", data.get("details")) or {}
        if not isinstance(params, Mapping):
            raise ValueError("'params' must be a JSON object")
        return cls(
            id=str(data.get("id") or f"label-{index}"),
            kind=str(data["kind"]),
            agent_id=None if agent is None else str(agent),
            fleet=str(data.get("fleet") or "default"),
            start=start,
            end=max(start, end),
            benign=bool(data.get("benign", False)),
            params=dict(params),
        )


def load_labels(path: str | Path) -> list[Label]:
    """Read labels: JSON Lines (one object per line) or one JSON array.

    Raises
    ------
    LabelError
        ``"<file>:<line>: <reason>"`` for the first bad label.
    """
    text = Path(path).read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LabelError(f"{path}: not JSON: {exc}") from None
        if not isinstance(data, list):
            raise LabelError(f"{path}: expected a JSON array of labels")
        rows: Iterable[tuple[int, Any]] = enumerate(data, 1)
        where = "item"
    else:
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append((number, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise LabelError(f"{path}:{number}: not JSON: {exc}") from None
        where = "line"
    out: list[Label] = []
    for number, item in rows:
        try:
            out.append(Label.from_dict(item, len(out)))
        except ValueError as exc:
            sep = ":" if where == "line" else f": {where} "
            raise LabelError(f"{path}{sep}{number}: {exc}") from None
    return out


def write_labels(labels: Iterable[Label], path: str | Path) -> int:
    """Write labels one JSON object per line (keys sorted); return how many."""
    count = 0
    with Path(path).open("w", encoding="utf-8") as fh:
        for label in labels:
            fh.write(json.dumps(label.to_dict(), sort_keys=True) + "\n")
            count += 1
    return count
