"""The fleets topic's records: keys, values, and what is not one."""

from __future__ import annotations

import pytest

from agentwatch.config import Settings
from agentwatch.streams.fleets import FleetRecord, decode_record, encode_record, record_key


def test_a_record_round_trips_and_is_keyed_by_fleet_and_worker() -> None:
    record = FleetRecord("host:/data", "support", 1_767_000_000.5, {"CostSpike": {"c": 3}})
    assert decode_record(encode_record(record)) == record
    assert record_key("support", "host:/data") == b"support|host:/data"


def test_a_large_record_is_compressed_and_still_decodes() -> None:
    agents = {f"support-{k:04d}": [1_767_000_000.0 + k, 0.25 * k] for k in range(5000)}
    record = FleetRecord("w", "support", 1.0, {"CostSpike": ["cost_spike", {"r": agents}]})
    raw = encode_record(record)
    assert raw[:1] == b"z"
    assert len(raw) < len(encode_record(record, compress_over=10**9)) / 2
    assert decode_record(raw) == record
    with pytest.raises(ValueError, match="compressed"):
        decode_record(b"z" + b"not zlib at all")


@pytest.mark.parametrize(
    "raw",
    [
        b"[]",
        b'{"v": 2, "worker": "w", "fleet": "f", "ts": 1, "partials": {}}',
        b'{"v": 1, "fleet": "f", "ts": 1, "partials": {}}',
        b'{"v": 1, "worker": "w", "fleet": "f", "ts": "now", "partials": {}}',
        b'{"v": 1, "worker": "w", "fleet": "f", "ts": 1, "partials": []}',
    ],
)
def test_what_is_not_a_fleet_summary_is_refused(raw: bytes) -> None:
    with pytest.raises(ValueError):
        decode_record(raw)


def test_the_worker_id_is_stable_per_data_dir_and_can_be_set(tmp_path: object) -> None:
    a = Settings(data_dir=tmp_path / "a")  # type: ignore[operator]
    b = Settings(data_dir=tmp_path / "b")  # type: ignore[operator]
    assert a.fleet_worker_id() == Settings(data_dir=tmp_path / "a").fleet_worker_id()  # type: ignore[operator]
    assert a.fleet_worker_id() != b.fleet_worker_id()
    assert Settings(worker_id="w-1").fleet_worker_id() == "w-1"
    with pytest.raises(ValueError):
        Settings(worker_id="a|b")  # the key separator
