"""The baselines table's value: one agent's offset, baseline, detector state and origins.

Three layouts, all readable; :func:`encode_state` writes the newest:

- **v1** (oldest): ``>qI`` offset and baseline length, the baseline, the detector state (JSON).
- **v2**: ``>BqII`` (2, offset, baseline length, detector-state length), the baseline
  (:meth:`~agentwatch.detectors.baseline.AgentBaseline.to_bytes`), the detector state (JSON,
  its floats to seven significant digits: :func:`~agentwatch.detectors.persisted.persisted`),
  then the re-keyed origins (JSON).
- **v3**: ``>BB`` (3, dictionary id), then the v2 value compressed with Zstandard against the
  shipped dictionary of that id (``state-<id>.zdict``, trained on detector states of simulated
  fleets: ``python -m agentwatch.lab.statedict``). Detector state is small JSON with the same
  keys in every agent; a dictionary that knows them shrinks a value about 2.5x for some 15 µs
  of the flush, which makes the table, its changelog and a restore smaller by as much.

A value whose dictionary id this build does not ship fails to decode with a clear
``ValueError`` (never silently as another agent's state).

Examples
--------
>>> from agentwatch.detectors.baseline import AgentBaseline
>>> value = encode_state(7, AgentBaseline("a1", "f"), {"d": {"CostSpike": {"n": 3}}})
>>> value[0], decode_state(value)[0], decode_state(value)[2]
(3, 7, {'d': {'CostSpike': {'n': 3}}})
"""

from __future__ import annotations

import struct
from functools import cache
from importlib import resources
from typing import Any, Final

import orjson
import zstandard

from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.detectors.persisted import persisted

__all__ = [
    "DICTIONARY_ID",
    "Origins",
    "decode_full_state",
    "decode_state",
    "encode_raw_state",
    "encode_state",
]

#: Per agent: origin partition -> [floor, origin offsets folded at or above the floor].
Origins = dict[int, list[Any]]

_HEADER = struct.Struct(">qI")  # v1: source offset of the last event folded in, baseline length
_HEADER_V2 = struct.Struct(">BqII")  # 2, offset, baseline length, detector-state length
_V2: Final = 2
_V3: Final = 3
DICTIONARY_ID: Final = 2
"""The dictionary new values are compressed with (``state-2.zdict``: trained on states whose
floats are rounded as :func:`~agentwatch.detectors.persisted.persisted` writes them; 3.7 %
smaller values than ``state-1.zdict`` on the bench's traffic, which neither saw. Values
written with ``state-1.zdict`` are still read)."""
_LEVEL: Final = 3
_MAX_VALUE: Final = 64 << 20  # a decompressed value larger than this is corrupt, not state


@cache
def _dictionary(dict_id: int) -> zstandard.ZstdCompressionDict:
    name = f"state-{dict_id}.zdict"
    try:
        data = resources.files("agentwatch.streams").joinpath(name).read_bytes()
    except FileNotFoundError:
        raise ValueError(
            f"baseline value compressed with dictionary {dict_id}, which this agentwatch does "
            "not ship (written by a newer version?)"
        ) from None
    return zstandard.ZstdCompressionDict(data)


@cache
def _compressor() -> zstandard.ZstdCompressor:
    return zstandard.ZstdCompressor(
        level=_LEVEL,
        dict_data=_dictionary(DICTIONARY_ID),
        write_checksum=False,
        write_content_size=True,
        write_dict_id=False,
    )


@cache
def _decompressor(dict_id: int) -> zstandard.ZstdDecompressor:
    return zstandard.ZstdDecompressor(dict_data=_dictionary(dict_id))


def encode_raw_state(
    offset: int,
    baseline: AgentBaseline,
    detectors: dict[str, Any],
    origins: Origins | None = None,
) -> bytes:
    """The v2 value (uncompressed): what v3 compresses, and what the dictionary is trained on."""
    packed = baseline.to_bytes()
    state = orjson.dumps(persisted(detectors))
    tail = orjson.dumps(
        {str(p): [e[0], sorted(e[1])] for p, e in origins.items()} if origins else {}
    )
    return _HEADER_V2.pack(_V2, offset, len(packed), len(state)) + packed + state + tail


def encode_state(
    offset: int,
    baseline: AgentBaseline,
    detectors: dict[str, Any],
    origins: Origins | None = None,
) -> bytes:
    """Table value (v3): offset, baseline, detector state and origins, compressed."""
    raw = encode_raw_state(offset, baseline, detectors, origins)
    return bytes((_V3, DICTIONARY_ID)) + _compressor().compress(raw)


def decode_state(value: bytes) -> tuple[int, AgentBaseline, dict[str, Any]]:
    """Inverse of :func:`encode_state` without the origins (reads v1 and v2 values too)."""
    offset, baseline, detectors, _ = decode_full_state(value)
    return offset, baseline, detectors


def decode_full_state(value: bytes) -> tuple[int, AgentBaseline, dict[str, Any], Origins]:
    """Inverse of :func:`encode_state` (reads the v1 and v2 layouts too).

    Raises
    ------
    ValueError
        A value that is not one of the three layouts (a corrupt frame, an unknown
        dictionary).
    """
    if value[0] == _V3:
        try:
            value = _decompressor(value[1]).decompress(value[2:], max_output_size=_MAX_VALUE)
        except zstandard.ZstdError as exc:
            raise ValueError(f"corrupt baseline value: {exc}") from None
        if not value or value[0] != _V2:
            raise ValueError("corrupt baseline value: not a v2 value inside")
    if value[0] != _V2:  # v1: the offset's high byte (0x00, or 0xff for -1) comes first
        offset, size = _HEADER.unpack_from(value)
        start = _HEADER.size
        baseline = AgentBaseline.from_bytes(value[start : start + size])
        return offset, baseline, orjson.loads(value[start + size :]), {}
    _, offset, size, state_size = _HEADER_V2.unpack_from(value)
    start = _HEADER_V2.size
    baseline = AgentBaseline.from_bytes(value[start : start + size])
    start += size
    detectors = orjson.loads(value[start : start + state_size])
    origins = {
        int(p): [floor, set(offsets)]
        for p, (floor, offsets) in orjson.loads(value[start + state_size :]).items()
    }
    return offset, baseline, detectors, origins
