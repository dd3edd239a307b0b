"""An incremental parser of Server-Sent Events (the WHATWG event-stream format).

The HTTP gateway passes an SSE body through byte for byte and feeds the same chunks to a
:class:`SseParser` to see the JSON-RPC messages in it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAX_EVENT_BYTES", "SseEvent", "SseParser"]

MAX_EVENT_BYTES = 64 * 1024 * 1024
"""An event whose data grows past this is dropped (the stream itself still passes through)."""


@dataclass(frozen=True)
class SseEvent:
    """One dispatched event: its type (``message`` by default), data and id (if it had one)."""

    event: str
    data: str
    id: str | None


class SseParser:
    """Turns chunks of an event stream into :class:`SseEvent` s.

    Lines end with CRLF, LF or CR; a blank line dispatches the event; ``data`` lines are joined
    with newlines; comments (``:``) and unknown fields are ignored; an event without data is
    not dispatched but its ``id`` is remembered (:attr:`last_id`).

    Examples
    --------
    >>> p = SseParser()
    >>> p.feed(b'id: 7\\r\\nevent: message\\r\\ndata: {"a":\\r\\ndata: 1}\\r\\n')
    []
    >>> first, second = p.feed(b"\\r\\n: keep-alive\\n\\ndata: x\\n\\n")
    >>> first
    SseEvent(event='message', data='{"a":\\n1}', id='7')
    >>> second
    SseEvent(event='message', data='x', id='7')
    >>> p.last_id
    '7'
    """

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self.last_id: str | None = None
        self._buffer = b""
        self._pending_cr = False
        self._event = ""
        self._data: list[str] = []
        self._size = 0
        self._oversized = False

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """The events completed by ``chunk``."""
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]  # the LF of a CRLF split across chunks
        self._pending_cr = False
        data = self._buffer + chunk
        events: list[SseEvent] = []
        start = 0
        n = len(data)
        while start < n:
            cr = data.find(b"\r", start)
            lf = data.find(b"\n", start)
            if cr == -1 and lf == -1:
                break
            if cr != -1 and (lf == -1 or cr < lf):
                end, nxt = cr, cr + 1
                if nxt < n and data[nxt : nxt + 1] == b"\n":
                    nxt += 1
                elif nxt == n:
                    self._pending_cr = True
            else:
                end, nxt = lf, lf + 1
            event = self._line(data[start:end])
            if event is not None:
                events.append(event)
            start = nxt
        self._buffer = data[start:]
        if len(self._buffer) > self.max_event_bytes:  # one endless line: give it up
            self._buffer = b""
            self._oversized = True
        return events

    def _line(self, raw: bytes) -> SseEvent | None:
        if not raw:
            return self._dispatch()
        line = raw.decode("utf-8", errors="replace")
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._size += len(value) + 1
            if self._size > self.max_event_bytes:
                self._oversized = True
            elif not self._oversized:
                self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_id = value
        return None

    def _dispatch(self) -> SseEvent | None:
        data, event, oversized = self._data, self._event, self._oversized
        self._data, self._event, self._size, self._oversized = [], "", 0, False
        if oversized or not data:
            return None
        return SseEvent(event or "message", "\n".join(data), self.last_id)
