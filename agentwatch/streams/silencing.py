"""The silences, stored in a faust table of the responder (``silence_id -> Silence JSON``).

The table's changelog is a compacted topic, so silences survive restarts and move with the
responder partition; the control API forwards every silence request to the worker that owns
it, so every worker answers with the same silences. Expired silences are kept for
:data:`RETENTION_S` (they show in ``agentwatch silences list --all``), then pruned.
"""

from __future__ import annotations

import weakref
from datetime import datetime, timedelta
from typing import Any

from faust.streams import _current_event

from agentwatch.alerting.silences import Silence

__all__ = ["RETENTION_S", "SilenceStore"]

RETENTION_S = 7 * 24 * 3600.0


class SilenceStore:
    """Silences over a faust table.

    Parameters
    ----------
    table
        Faust table ``silence_id (bytes) -> Silence JSON``.
    shim
        The stand-in current event whose partition (0) writes outside a stream use.
    """

    def __init__(self, table: Any, shim: Any) -> None:
        self.table = table
        self.shim = shim

    def all(self) -> list[Silence]:
        """Every stored silence, newest first."""
        out = [Silence.model_validate_json(raw) for _key, raw in list(self.table.items())]
        return sorted(out, key=lambda s: s.created_at, reverse=True)

    def get(self, silence_id: str) -> Silence | None:
        raw = self.table.get(silence_id.encode())
        return None if raw is None else Silence.model_validate_json(raw)

    def put(self, silence: Silence) -> None:
        self._set(silence.silence_id.encode(), silence.model_dump_json().encode())

    def prune(self, now: datetime) -> int:
        """Delete silences that ended more than :data:`RETENTION_S` ago; return how many."""
        cutoff = now - timedelta(seconds=RETENTION_S)
        gone = [s.silence_id for s in self.all() if s.ends_at < cutoff]
        token = _current_event.set(weakref.ref(self.shim))
        try:
            for silence_id in gone:
                del self.table[silence_id.encode()]
        finally:
            _current_event.reset(token)
        return len(gone)

    def _set(self, key: bytes, value: bytes) -> None:
        token = _current_event.set(weakref.ref(self.shim))
        try:
            self.table[key] = value
        finally:
            _current_event.reset(token)
