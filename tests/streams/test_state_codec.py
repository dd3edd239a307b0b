"""The baselines table's value: v3 (compressed against the shipped dictionary), and the
older layouts it must still read."""

from __future__ import annotations

from importlib import resources

import pytest
import zstandard

from agentwatch.detectors.engine import Engine
from agentwatch.detectors.persisted import persisted
from agentwatch.detectors.rules import load_rules
from agentwatch.lab.sim import Simulation
from agentwatch.streams.state_codec import (
    DICTIONARY_ID,
    decode_full_state,
    encode_raw_state,
    encode_state,
)


@pytest.fixture(scope="module")
def engine() -> Engine:
    """An engine after a simulated fleet's first events (its own seed: not the training's)."""
    engine = Engine(load_rules())
    for event in Simulation(agents=40, minutes=90, seed=424242).event_list(limit=20_000):
        engine.process(event)
    return engine


def test_values_round_trip_and_are_at_most_half_the_raw_size(engine: Engine) -> None:
    raw = compressed = 0
    for agent, baseline in engine.baselines.items():
        state = engine.states.get(agent, {})
        value = encode_state(9, baseline, state, {2: [5, {7, 6}]})
        assert value[:2] == bytes((3, DICTIONARY_ID))
        offset, restored, detectors, origins = decode_full_state(value)
        # the detector state as persisted: its floats to seven significant digits
        assert (offset, restored.to_bytes(), detectors) == (
            9,
            baseline.to_bytes(),
            persisted(state),
        )
        assert origins == {2: [5, {6, 7}]}
        # a restored agent written again unchanged writes the same value
        assert encode_state(9, restored, detectors, origins) == value
        raw += len(encode_raw_state(9, baseline, state, {2: [5, {7, 6}]}))
        compressed += len(value)
    assert compressed * 2 <= raw, (compressed, raw)


def test_layout_2_values_are_still_read(engine: Engine) -> None:
    agent, baseline = next(iter(engine.baselines.items()))
    old = encode_raw_state(3, baseline, engine.states[agent])
    assert old[0] == 2
    offset, restored, detectors, _ = decode_full_state(old)
    assert (offset, restored.to_bytes(), detectors) == (
        3,
        baseline.to_bytes(),
        persisted(engine.states[agent]),
    )


def test_an_unknown_dictionary_or_a_corrupt_frame_is_a_clear_error(engine: Engine) -> None:
    agent, baseline = next(iter(engine.baselines.items()))
    value = encode_state(1, baseline, engine.states[agent])
    with pytest.raises(ValueError, match="dictionary 9, which this agentwatch does not ship"):
        decode_full_state(bytes((3, 9)) + value[2:])
    with pytest.raises(ValueError, match="corrupt baseline value"):
        decode_full_state(value[:2] + b"\x00" * 12 + value[14:])


def test_values_written_with_the_first_dictionary_are_still_read(engine: Engine) -> None:
    assert DICTIONARY_ID == 2
    first = zstandard.ZstdCompressor(
        level=3,
        dict_data=zstandard.ZstdCompressionDict(
            resources.files("agentwatch.streams").joinpath("state-1.zdict").read_bytes()
        ),
        write_checksum=False,
        write_content_size=True,
        write_dict_id=False,
    )
    for agent, baseline in list(engine.baselines.items())[:10]:
        raw = encode_raw_state(4, baseline, engine.states[agent])
        old = bytes((3, 1)) + first.compress(raw)
        offset, restored, detectors, _ = decode_full_state(old)
        assert (offset, restored.to_bytes(), detectors) == (
            4,
            baseline.to_bytes(),
            persisted(engine.states[agent]),
        )
        assert encode_state(4, restored, detectors)[:2] == bytes((3, 2))  # rewritten with 2
