"""The faust app class with a Kafka transport whose consumer fetch wait is configurable.

faust 0.15.3 hard-codes ``fetch_max_wait_ms=1500`` for the worker consumer. Brokers that
hold a fetch until that wait expires (Tansu does, measured: ~1 s median produce-to-process
latency) then add up to 1.5 s to every event's detection time. The subclasses below set the
wait from :attr:`Settings.fetch_max_wait_ms` instead; nothing else changes.
"""

from __future__ import annotations

import logging
from typing import Any

import faust
from faust.transport.drivers import aiokafka as driver

__all__ = ["AgentwatchApp"]


#: the start-up and shut-down chatter of agentwatch's faust services goes with faust's
#: (``agentwatch worker`` logs it from WARNING at the default level)
_CHATTER = logging.getLogger("agentwatch.faust")


class _ConsumerThread(driver.AIOKafkaConsumerThread):  # type: ignore[misc]
    logger = _CHATTER

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        if wait_ms is not None:
            consumer._fetch_max_wait_ms = int(wait_ms)  # read once, in consumer.start()
        return consumer


class _Consumer(driver.Consumer):  # type: ignore[misc]
    logger = _CHATTER

    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(driver.Transport):  # type: ignore[misc]
    logger = _CHATTER
    Consumer = _Consumer


class AgentwatchApp(faust.App):  # type: ignore[misc]
    """A :class:`faust.App` whose Kafka consumer uses ``fetch_max_wait_ms``."""

    logger = _CHATTER

    def __init__(self, *args: Any, fetch_max_wait_ms: int = 100, **kwargs: Any) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)
