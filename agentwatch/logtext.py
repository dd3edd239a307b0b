"""Escaping text that came from outside (ids, actors, reasons, details) for log lines.

A newline, a carriage return, a bidi override or a terminal escape inside an actor name or a
reason must not start a new, forged log line or reorder what an operator reads. Log such text
with :func:`escape` (or ``%r``), never raw.
"""

from __future__ import annotations

__all__ = ["escape"]


def escape(text: object, limit: int = 256) -> str:
    """``text`` on one line: non-printable characters escaped, at most ``limit`` characters kept.

    Printable text is returned as it is (accents and other scripts stay readable); a control
    character, line or paragraph separator, bidi control, BOM, noncharacter or unassigned
    code point is written as its Python escape (``\\n``, ``\\x00``, ``\\u202e``), and a
    backslash as ``\\\\`` so an escape can never be forged. A longer text is cut and
    ``...(+N chars)`` appended.

    Examples
    --------
    >>> escape("ops\\nINFO forged line")
    'ops\\\\nINFO forged line'
    >>> escape("x" * 10, limit=4)
    'xxxx...(+6 chars)'
    """
    value = text if isinstance(text, str) else str(text)
    extra = len(value) - limit
    if extra > 0:
        value = value[:limit]
    if not value.isprintable() or "\\" in value:
        value = repr(value)[1:-1]
    return f"{value}...(+{extra} chars)" if extra > 0 else value
