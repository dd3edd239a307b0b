"""Run the OTLP receiver: standalone (``agentwatch ingest``) or inside a worker.

Standalone it needs no faust (``agentwatch[ingest]``): it creates the topics if missing and
serves ``/v1/traces``, ``/healthz`` and ``/metrics`` on ``AGENTWATCH_OTLP_HOST:PORT``. In a
worker (``agentwatch up``, ``agentwatch worker``) it shares the worker's event loop and metrics
registry (so the worker's ``/metrics`` shows it) and stops with it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Any

from agentwatch.config import Settings
from agentwatch.ingest.metrics import OtlpMetrics
from agentwatch.ingest.prices import PriceError
from agentwatch.ingest.receiver import OtlpReceiver
from agentwatch.kafka_security import check_connection, client_options

__all__ = ["OtlpStartError", "run_ingest", "start_in_worker"]

log = logging.getLogger(__name__)


class OtlpStartError(RuntimeError):
    """The receiver cannot start; the message says why and what to do (one line)."""


async def _start(receiver: OtlpReceiver, check_kafka: bool) -> None:
    settings = receiver.settings
    where = f"{settings.otlp_host}:{settings.otlp_port}"
    try:
        await receiver.start(check_kafka=check_kafka)
    except PriceError as exc:
        raise OtlpStartError(f"{exc} (AGENTWATCH_OTLP_PRICES_FILE)") from None
    except OSError as exc:
        raise OtlpStartError(
            f"cannot serve OTLP/HTTP on {where}: {exc.strerror or exc}; set AGENTWATCH_OTLP_PORT "
            "(or AGENTWATCH_OTLP_ENABLED=false in a worker)"
        ) from None


async def start_in_worker(settings: Settings, worker_app: Any) -> OtlpReceiver:
    """Start a receiver on the running loop for ``worker_app`` and stop it with the worker.

    Raises
    ------
    OtlpStartError
        when the port cannot be bound or the price table cannot be used.
    """
    receiver = OtlpReceiver(settings, metrics=OtlpMetrics(worker_app.metrics.registry))
    await _start(receiver, check_kafka=False)  # the worker checked the broker already

    @worker_app.app.on_before_shutdown.connect  # type: ignore[untyped-decorator]
    async def stop_receiver(sender: Any, **kwargs: Any) -> None:
        await receiver.stop()

    return receiver


async def _serve(settings: Settings) -> OtlpReceiver:
    from agentwatch.streams.topics import ensure_topics  # aiokafka only, no faust

    await check_connection(settings.kafka_bootstrap, client_options(settings))
    await ensure_topics(settings)
    receiver = OtlpReceiver(settings, serve_metrics=True)
    await _start(receiver, check_kafka=False)
    return receiver


def run_ingest(settings: Settings) -> int:
    """Serve OTLP/HTTP until SIGINT/SIGTERM; return the exit code.

    Raises
    ------
    agentwatch.kafka_security.KafkaConnectError
        when no broker accepts a connection.
    OtlpStartError
        when the port or the price table cannot be used.
    """

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        receiver = await _serve(settings)
        print(
            f"agentwatch ingest: OTLP/HTTP traces on {receiver.url} -> "
            f"{settings.topic('actions')} on {settings.kafka_bootstrap}; "
            f"metrics on http://{settings.otlp_host}:{receiver.port}/metrics (Ctrl-C stops)",
            file=sys.stderr,
            flush=True,
        )
        try:
            await stop.wait()
        finally:
            await receiver.stop()

    asyncio.run(main())
    return 0
