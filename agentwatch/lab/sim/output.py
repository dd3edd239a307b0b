"""Writing a simulation out: JSON Lines files, and the helpers of ``agentwatch simulate``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from agentwatch.lab.labels import write_labels
from agentwatch.lab.sim.simulation import Simulation
from agentwatch.schemas.events import encode_event

__all__ = ["parse_kinds", "write_jsonl"]


def write_jsonl(
    sim: Simulation, events_path: str | Path, labels_path: str | Path | None = None
) -> tuple[int, int]:
    """Write the events (wire JSON, one per line) and the labels (one JSON per line).

    Returns ``(events, labels)`` counts; missing parent directories are created. Only for a
    finite simulation.

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> sim = Simulation(agents=5, minutes=5, incidents=("error_storm",))
    >>> n, m = write_jsonl(sim, os.path.join(d, "e.jsonl"), os.path.join(d, "l.jsonl"))
    >>> n > 0 and m >= 1
    True
    """
    if sim.config.minutes is None:
        raise ValueError("write_jsonl needs a finite simulation (minutes is None)")
    count = 0
    for path in (events_path, labels_path):
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    with Path(events_path).open("wb") as fh:
        for event in sim.events(validate=False):
            fh.write(encode_event(event))
            fh.write(b"\n")
            count += 1
    labels = sim.labels()
    if labels_path is not None:
        write_labels(labels, labels_path)
    return count, len(labels)


def parse_kinds(text: str, allowed: Sequence[str]) -> tuple[str, ...]:
    """Parse a comma-separated list of kinds; ``all`` is every allowed kind, ``none`` none.

    Examples
    --------
    >>> from agentwatch.lab.sim import ALL_INCIDENT_KINDS, BENIGN_CHANGE_KINDS
    >>> parse_kinds("all", BENIGN_CHANGE_KINDS)
    ('model_upgrade', 'tool_rollout')
    >>> parse_kinds("runaway_loop, exfiltration", ALL_INCIDENT_KINDS)
    ('runaway_loop', 'exfiltration')
    >>> parse_kinds("none", ALL_INCIDENT_KINDS)
    ()
    """
    words = [w.strip() for w in text.split(",") if w.strip()]
    if words == ["all"]:
        return tuple(allowed)
    if words in ([], ["none"]):
        return ()
    unknown = [w for w in words if w not in allowed]
    if unknown:
        raise ValueError(f"unknown kind(s) {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return tuple(words)
