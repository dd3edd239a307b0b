"""The stage's pure parts: state layouts and the partition an agent's events belong to."""

from __future__ import annotations

import struct

import orjson
from aiokafka.partitioner import DefaultPartitioner

from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.schemas import decode_event
from agentwatch.streams.stage import decode_full_state, decode_state, encode_state, home_partition


def baseline() -> AgentBaseline:
    b = AgentBaseline("a1", "support")
    b.update(
        decode_event(b'{"event_id":"e1","ts":"2026-01-01T00:00:00Z","agent_id":"a1","action":"x"}')
    )
    return b


def test_state_round_trips_with_origins() -> None:
    b = baseline()
    value = encode_state(41, b, {"d": {"r": 1}}, {3: [10, {12, 11}]})
    offset, restored, detectors, origins = decode_full_state(value)
    assert (offset, restored.to_bytes(), detectors) == (41, b.to_bytes(), {"d": {"r": 1}})
    assert origins == {3: [10, {11, 12}]}
    assert decode_state(value)[0] == 41


def test_layout_1_values_are_still_read() -> None:
    b = baseline()
    for offset in (0, 7, -1):
        packed = b.to_bytes()
        old = struct.pack(">qI", offset, len(packed)) + packed + orjson.dumps({"d": {}})
        got, restored, detectors, origins = decode_full_state(old)
        assert (got, restored.to_bytes(), detectors, origins) == (offset, packed, {"d": {}}, {})


def test_home_partition_is_kafkas_default_partitioner() -> None:
    partitioner = DefaultPartitioner()
    for n in (1, 4, 8, 13):
        parts = list(range(n))
        for i in range(200):
            agent = f"agent-{i}"
            assert home_partition(agent, n) == partitioner(agent.encode(), parts, parts)
