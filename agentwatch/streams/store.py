"""The worker's RocksDB table store: faust's, without a full collection per table per rebalance.

faust's RocksDB store calls ``gc.collect()`` at the end of ``revoke_partitions``, and every
table's store runs that on every rebalance, even one that revoked nothing (a worker's first
assignment, or a new worker joining that takes none of this worker's partitions). With the
worker's RocksDB tables that is one full collection per table in a row. Each holds the event
loop, and so ingest and every halt in flight, for as long as a full collection of the
worker's heap takes. Measured at the start of ``agentwatch bench --halt-trials`` on a slow
2-core host: 10 of them, 75-95 ms each, about 0.9 s.

The collection is there to release the databases of the revoked partitions: faust closes a
RocksDB database by dropping its last reference. :class:`RocksDBStore` collects only when it
dropped one, once per table; a rebalance that revokes nothing collects nothing.
:data:`SCHEME` names it in a store URL (``agentwatch-rocksdb://``).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Set
from typing import Any

from faust.stores import STORES
from faust.stores.rocksdb import Store as _FaustRocksDBStore

__all__ = ["SCHEME", "RocksDBStore"]

SCHEME = "agentwatch-rocksdb"
"""The store URL scheme of :class:`RocksDBStore` (``agentwatch-rocksdb://``)."""


class RocksDBStore(_FaustRocksDBStore):  # type: ignore[misc]
    """faust's RocksDB store, whose partition revocation collects garbage only when it closed
    a database (see the module)."""

    #: its start-up and shut-down chatter goes with faust's (``agentwatch worker`` logs it from
    #: WARNING at the default level), not with agentwatch's own INFO lines
    logger = logging.getLogger("agentwatch.faust")

    def revoke_partitions(self, table: Any, tps: Set[Any]) -> None:
        """Drop (and so close) the databases of the revoked partitions ``tps`` of ``table``;
        one full collection if any was dropped, none otherwise."""
        dropped = False
        for tp in tps:
            if (
                tp.topic in table.changelog_topic.topics
                and self._dbs.pop(tp.partition, None) is not None
            ):
                self.logger.info(f"closing db {tp.topic} partition {tp.partition}")
                dropped = True
        if dropped:
            gc.collect()


STORES.aliases.setdefault(SCHEME, f"{__name__}:RocksDBStore")
