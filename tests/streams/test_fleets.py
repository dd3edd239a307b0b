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


def test_the_exchange_merges_others_ignores_its_own_and_forgets_on_a_tombstone() -> None:
    from types import SimpleNamespace

    from agentwatch.detectors.engine import Engine
    from agentwatch.detectors.rules import load_rules
    from agentwatch.streams.fleets import FleetExchange
    from agentwatch.streams.metrics import WorkerMetrics

    engine = Engine(load_rules(), worker_id="me")
    metrics = WorkerMetrics()
    exchange = FleetExchange(Settings(), engine, metrics=metrics, clock=lambda: 100.0)

    def record(fleet: str, worker: str, value: bytes | None, offset: int) -> SimpleNamespace:
        return SimpleNamespace(
            topic="agentwatch.fleets",
            partition=0,
            offset=offset,
            key=record_key(fleet, worker),
            value=value,
        )

    runaway = {"RunawayLoop": ["runaway_loop", {"t": [0, 3, 1, 2, 5, 9, 3], "a": ["x", "y"]}]}
    ours = encode_record(FleetRecord("me", "a|b", 99.0, runaway))
    theirs = encode_record(FleetRecord("w2", "a|b", 99.0, runaway))
    exchange._absorb(
        [record("a|b", "me", ours, 0), record("a|b", "w2", theirs, 1), record("x", "w3", b"{", 2)]
    )
    assert engine.sync.published("a|b") == {"w2": 99.0}
    assert len(engine.fleet_states[("RunawayLoop", "a|b")]["a"]) == 2
    assert exchange.absorbed == 1
    exchange._absorb([record("a|b", "w2", None, 3)])  # w2 left: forgotten at once
    assert engine.sync.published("a|b") == {}
    assert len(engine.fleet_states[("RunawayLoop", "a|b")]["a"]) == 0
    sample = metrics.registry.get_sample_value
    assert sample("agentwatch_fleet_summaries_absorbed_total") == 1.0
    assert sample("agentwatch_fleet_summaries_skipped_total", {"reason": "undecodable"}) == 1.0
