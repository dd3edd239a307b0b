"""Per-call context: ``session_id``, ``approved_by``, ``target`` and attributes for events.

A :class:`contextvars.ContextVar`, so a block's values follow asyncio tasks and stay per
thread. Every emitter (a :class:`~agentwatch.sdk.Monitor`, and later framework adapters or a
gateway) reads it through :func:`current_context`.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["CallContext", "Scalar", "context", "current_context"]

Scalar = str | int | float | bool | None
"""An event attribute value."""


@dataclass(frozen=True)
class CallContext:
    """What the enclosing :func:`context` blocks set (``None``: not set)."""

    session_id: str | None = None
    approved_by: str | None = None
    target: str | None = None
    attributes: Mapping[str, Scalar] = field(default_factory=lambda: MappingProxyType({}))


_NO_CONTEXT = CallContext()
_CONTEXT: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar(
    "agentwatch_call_context", default=None
)


def current_context() -> CallContext:
    """The merged context of the enclosing :func:`context` blocks (empty outside any)."""
    return _CONTEXT.get() or _NO_CONTEXT


@contextlib.contextmanager
def context(
    *,
    session_id: str | None = None,
    approved_by: str | None = None,
    target: str | None = None,
    attributes: Mapping[str, Scalar] | None = None,
) -> Iterator[None]:
    """Attach ``session_id`` / ``approved_by`` / ``target`` / ``attributes`` to events.

    Applies to every event emitted inside the block (by any monitor, in this thread or asyncio
    task). Nested blocks override the outer values they set and merge ``attributes``;
    explicit arguments of :meth:`~agentwatch.sdk.Monitor.emit` win over both.

    Examples
    --------
    >>> with context(session_id="conv-1", approved_by="alice", attributes={"step": 1}):
    ...     with context(approved_by="bob", attributes={"try": 2}):
    ...         ctx = current_context()
    >>> ctx.session_id, ctx.approved_by, dict(ctx.attributes)
    ('conv-1', 'bob', {'step': 1, 'try': 2})
    >>> current_context().session_id is None
    True
    """
    outer = current_context()
    merged = CallContext(
        session_id=session_id if session_id is not None else outer.session_id,
        approved_by=approved_by if approved_by is not None else outer.approved_by,
        target=target if target is not None else outer.target,
        attributes=MappingProxyType({**outer.attributes, **(attributes or {})}),
    )
    token = _CONTEXT.set(merged)
    try:
        yield
    finally:
        _CONTEXT.reset(token)
