"""The worker's RocksDB table store: no full collection for a rebalance that revoked nothing."""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from agentwatch.config import Settings
from agentwatch.streams.app import create_app
from agentwatch.streams.runner import running_app
from agentwatch.streams.store import RocksDBStore


@contextmanager
def revocation_collections() -> Iterator[list[int]]:
    """Count the full collections run from a store's ``revoke_partitions``."""
    counted: list[int] = []

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase != "start" or info["generation"] != 2:
            return
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_code.co_name == "revoke_partitions":
                counted.append(1)
                return
            frame = frame.f_back  # type: ignore[assignment]

    gc.callbacks.append(on_gc)
    try:
        yield counted
    finally:
        gc.callbacks.remove(on_gc)


def _store(dbs: dict[int, object]) -> Any:
    return SimpleNamespace(_dbs=dbs, logger=logging.getLogger("test.store"))


def _tp(topic: str, partition: int) -> TP:
    return TP(topic, partition)


TABLE = SimpleNamespace(changelog_topic=SimpleNamespace(topics={"app-baselines-changelog"}))


def test_revoking_nothing_collects_nothing() -> None:
    store = _store({0: object(), 1: object()})
    with revocation_collections() as counted:
        RocksDBStore.revoke_partitions(store, TABLE, set())
        # a partition of another topic, or one whose database is not open: nothing to close
        RocksDBStore.revoke_partitions(store, TABLE, {_tp("app-actions", 0)})
        RocksDBStore.revoke_partitions(store, TABLE, {_tp("app-baselines-changelog", 5)})
    assert counted == []
    assert set(store._dbs) == {0, 1}


def test_revoking_open_partitions_closes_them_with_one_collection() -> None:
    store = _store({0: object(), 1: object(), 2: object()})
    revoked = {_tp("app-baselines-changelog", 0), _tp("app-baselines-changelog", 2)}
    with revocation_collections() as counted:
        RocksDBStore.revoke_partitions(store, TABLE, revoked)
    assert counted == [1]
    assert set(store._dbs) == {1}


@pytest.mark.integration
async def test_a_worker_on_rocksdb_starts_without_a_collection_per_table(
    settings: Settings, tmp_path: Path
) -> None:
    worker = create_app(settings.replace(store="rocksdb", data_dir=tmp_path / "state"))
    with revocation_collections() as counted:
        async with running_app(worker):
            stores = [table.data for table in worker.app.tables.values()]
            assert len(stores) >= 5 and all(isinstance(s, RocksDBStore) for s in stores)
            # the first assignment revoked nothing: faust's store collected once per table
            assert counted == []
