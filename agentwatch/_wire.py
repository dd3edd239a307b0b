"""Small wire-format helpers shared by the protocol code (OTLP answers, the Kafka front)."""

from __future__ import annotations

__all__ = ["uvarint"]


def uvarint(value: int) -> bytes:
    """``value`` (>= 0) as an unsigned LEB128 varint, as protobuf and Kafka encode them.

    Examples
    --------
    >>> uvarint(0), uvarint(3), uvarint(300)
    (b'\\x00', b'\\x03', b'\\xac\\x02')
    """
    if value < 0:
        raise ValueError(f"an unsigned varint cannot hold {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
