"""Dates in what workers publish of a fleet, merged: the earliest or the newest per key.

Fleet-aware detectors date things (a fleet's first call of an action or a model, when the
fleet adopted a model) and publish the dates in their fleet partials. Merging the workers'
partials keeps, per key, the earliest date (when the fleet first did it) or the newest (when
it last did), whatever order the partials arrive in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["keep_earliest", "keep_newest"]


def keep_earliest(into: dict[str, float], part: Mapping[str, float]) -> None:
    """Each key's earlier time of ``into`` and ``part``, kept in ``into``.

    Examples
    --------
    >>> first = {"search": 5.0}
    >>> keep_earliest(first, {"search": 3.0, "fetch": 9.0})
    >>> keep_earliest(first, {"fetch": 12.0})
    >>> first
    {'search': 3.0, 'fetch': 9.0}
    """
    for key, ts in part.items():
        if ts < into.get(key, math.inf):
            into[key] = ts


def keep_newest(into: dict[str, float], part: Mapping[str, float]) -> None:
    """Each key's later time of ``into`` and ``part``, kept in ``into``.

    Examples
    --------
    >>> adopted = {"gpt-4.1": 5.0}
    >>> keep_newest(adopted, {"gpt-4.1": 3.0, "o3": 9.0})
    >>> adopted
    {'gpt-4.1': 5.0, 'o3': 9.0}
    """
    for key, ts in part.items():
        if ts > into.get(key, -math.inf):
            into[key] = ts
