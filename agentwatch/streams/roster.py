"""Which agents the workers know: merged agent rows, fleet members, suggestions for a typo.

An agent is *known* once the monitor has seen it: a worker holds its baseline (it sent an
event) or the responder holds its control state or an incident. The control API refuses to
change the control state of an agent nobody knows unless the caller insists (``force``), so a
typo'd id fails loudly instead of halting nothing; the refusal names the closest known ids.

Pure functions; the control API (:mod:`agentwatch.streams.api`) gathers the rows.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "FORCE_HINT",
    "fleet_members",
    "merge_rows",
    "suggest",
    "unknown_agent_message",
    "unknown_fleet_message",
]

FORCE_HINT = "pass --force to control it anyway"


def suggest(name: str, candidates: Iterable[str], limit: int = 3) -> list[str]:
    """The known names closest to ``name`` (difflib's ratio at least 0.6), best first.

    >>> suggest("suport-7", ["support-7", "support-1", "coder-7", "billing"])
    ['support-7', 'support-1']
    >>> suggest("zzz", ["support-7"])
    []
    """
    return difflib.get_close_matches(name, sorted(set(candidates)), n=limit, cutoff=0.6)


def _alternatives(names: Sequence[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " or " + names[-1]


def unknown_agent_message(agent_id: str, suggestions: Sequence[str]) -> str:
    """The one-line refusal for an agent id the monitor has never seen.

    >>> print(unknown_agent_message("suport-7", ["support-7"]))
    unknown agent 'suport-7' (did you mean support-7?) — pass --force to control it anyway
    >>> print(unknown_agent_message("x", []))
    unknown agent 'x' (the monitor has never seen it) — pass --force to control it anyway
    """
    hint = (
        f"did you mean {_alternatives(suggestions)}?"
        if suggestions
        else "the monitor has never seen it"
    )
    return f"unknown agent {agent_id!r} ({hint}) — {FORCE_HINT}"


def unknown_fleet_message(fleet: str, suggestions: Sequence[str]) -> str:
    """The one-line refusal for a fleet with no known agent.

    >>> print(unknown_fleet_message("suport", ["support"]))
    unknown fleet 'suport' (did you mean support?): no agent of it has sent an event
    >>> print(unknown_fleet_message("x", []))
    unknown fleet 'x': no agent of it has sent an event
    """
    hint = f" (did you mean {_alternatives(suggestions)}?)" if suggestions else ""
    return f"unknown fleet {fleet!r}{hint}: no agent of it has sent an event"


def merge_rows(parts: Iterable[Iterable[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per agent from every worker's rows, sorted by id.

    A worker knows an agent's baseline (fleet, events) or, if it runs the responder, its
    control state (halted, revoked); a value another worker does not know (``None``) never
    overwrites a known one.

    >>> merge_rows([
    ...     [{"agent_id": "b", "fleet": "f", "events": 3, "halted": None}],
    ...     [{"agent_id": "b", "fleet": None, "events": None, "halted": True},
    ...      {"agent_id": "a", "fleet": None, "events": None, "halted": False}],
    ... ])  # doctest: +NORMALIZE_WHITESPACE
    [{'agent_id': 'a', 'fleet': None, 'events': None, 'halted': False},
     {'agent_id': 'b', 'fleet': 'f', 'events': 3, 'halted': True}]
    """
    merged: dict[str, dict[str, Any]] = {}
    for rows in parts:
        for row in rows:
            into = merged.setdefault(row["agent_id"], {})
            for key, value in row.items():
                if value is not None or key not in into:
                    into[key] = value
    return [merged[agent] for agent in sorted(merged)]


def fleet_members(rows: Iterable[dict[str, Any]], fleet: str) -> list[str]:
    """Ids of the agents of ``fleet`` among ``rows``, sorted.

    >>> fleet_members([{"agent_id": "b", "fleet": "s"}, {"agent_id": "a", "fleet": "s"},
    ...                {"agent_id": "c", "fleet": "o"}], "s")
    ['a', 'b']
    """
    return sorted(row["agent_id"] for row in rows if row.get("fleet") == fleet)
