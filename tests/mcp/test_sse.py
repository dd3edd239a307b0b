"""The SSE parser on chunk boundaries that real streams produce."""

from __future__ import annotations

from agentwatch.mcp.sse import SseEvent, SseParser

STREAM = (
    b": primed\r\n\r\n"
    b"id: 1\r\ndata:\r\n\r\n"  # a priming event: an id, empty data (dispatched, per WHATWG)
    b"id: 9\r\nevent: message\r\n\r\n"  # no data field at all: not dispatched
    b"id: 1\r\n"
    b'event: message\r\nid: 2\r\ndata: {"id": 5,\r\ndata:  "result": {}}\r\n\r\n'
    b"retry: 1000\rdata: cr only\r\r"
    b"data: last\n\n"
)
EXPECTED = [
    SseEvent("message", "", "1"),
    SseEvent("message", '{"id": 5,\n "result": {}}', "2"),
    SseEvent("message", "cr only", "2"),
    SseEvent("message", "last", "2"),
]


def test_every_split_of_a_stream_gives_the_same_events() -> None:
    for cut in range(len(STREAM) + 1):
        parser = SseParser()
        events = parser.feed(STREAM[:cut]) + parser.feed(STREAM[cut:])
        assert events == EXPECTED, f"split at {cut}"
        assert parser.last_id == "2"


def test_byte_by_byte() -> None:
    parser = SseParser()
    events = [e for i in range(len(STREAM)) for e in parser.feed(STREAM[i : i + 1])]
    assert events == EXPECTED


def test_an_oversized_event_is_dropped_and_the_next_one_kept() -> None:
    parser = SseParser(max_event_bytes=100)
    big = b"data: " + b"x" * 60 + b"\n"
    assert parser.feed(big + big + b"\n" + b"data: small\n\n") == [
        SseEvent("message", "small", None)
    ]
    assert parser.feed(b"data: " + b"y" * 500) == []  # an endless line is given up
    assert parser.feed(b"\n\ndata: ok\n\n") == [SseEvent("message", "ok", None)]
