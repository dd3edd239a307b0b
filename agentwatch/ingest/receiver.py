"""The OTLP/HTTP trace receiver: ``POST /v1/traces`` on aiohttp (no faust).

Follows OTLP/HTTP: protobuf (``application/x-protobuf``) or JSON (``application/json``),
``Content-Encoding: gzip`` or none; the answer is in the request's encoding. A request is
answered 200 once its events (and the dead letters of its unmappable spans) are acknowledged
by Kafka, with ``partial_success`` (``rejected_spans``, ``error_message``) when spans were
rejected; spans still waiting for their agent span are held in memory (see
:mod:`agentwatch.ingest.traces`). Under pressure it refuses before decoding: 429 with
``Retry-After`` while too many spans are unacknowledged, 503 with ``Retry-After`` while Kafka
is failing (and when it does not acknowledge in time); OTLP clients retry both. A body over
the size limit (compressed or not) gets 413, an unsupported type or encoding 415, one that
does not decode 400; those are not retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agentwatch.config import Settings
from agentwatch.ingest.mapping import SpanMapper
from agentwatch.ingest.metrics import OtlpMetrics
from agentwatch.ingest.otlp import (
    Encoding,
    PayloadError,
    decode_json,
    decode_protobuf,
    encode_response,
    encode_status,
)
from agentwatch.ingest.pipeline import Outcome, SpanPipeline
from agentwatch.ingest.prices import load_prices
from agentwatch.ingest.sink import KafkaSink, SinkUnavailable
from agentwatch.ingest.traces import TraceJoiner
from agentwatch.logtext import escape

__all__ = ["CHUNK_SPANS", "OtlpReceiver"]

log = logging.getLogger(__name__)

CHUNK_SPANS = 2000
"""Spans mapped between two yields to the event loop (a big request must not stall a worker)."""
EXPIRE_EVERY_S = 0.5
_TYPES: dict[str, Encoding] = {
    "application/x-protobuf": "protobuf",
    "application/protobuf": "protobuf",
    "application/json": "json",
}
_MEDIA: dict[Encoding, str] = {"protobuf": "application/x-protobuf", "json": "application/json"}
# gRPC status codes for google.rpc.Status bodies
_INVALID_ARGUMENT, _RESOURCE_EXHAUSTED, _UNAVAILABLE = 3, 8, 14


class OtlpReceiver:
    """Serves ``/v1/traces`` (and ``/healthz``; ``/metrics`` when standalone).

    Parameters
    ----------
    settings
        ``otlp_*`` settings, the broker and the topic prefix.
    metrics
        Where to count; a worker passes one on its own registry so ``/metrics`` shows both.
    serve_metrics
        Also serve ``GET /metrics`` (standalone ``agentwatch ingest``).
    sink
        The Kafka producer side (injected for tests); by default one from ``settings``.
    clock
        Monotonic seconds (the trace join's hold; injected for tests).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: OtlpMetrics | None = None,
        serve_metrics: bool = False,
        sink: KafkaSink | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else OtlpMetrics()
        self.serve_metrics = serve_metrics
        self.sink = sink if sink is not None else KafkaSink(settings, self.metrics)
        self.clock = clock
        self.pipeline: SpanPipeline | None = None
        self.inflight = 0
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._expiry: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """Where clients send traces (``.../v1/traces``)."""
        return f"http://{self.settings.otlp_host}:{self.port}/v1/traces"

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self, check_kafka: bool = True) -> None:
        """Load the price table, connect to Kafka and bind the port.

        Raises
        ------
        agentwatch.ingest.prices.PriceError
            when ``otlp_prices_file`` cannot be used.
        agentwatch.kafka_security.KafkaConnectError
            when no broker answers (with ``check_kafka``).
        OSError
            when the address cannot be bound (port in use).
        """
        settings = self.settings
        prices = load_prices(settings.otlp_prices_file)
        self.pipeline = SpanPipeline(
            SpanMapper(prices),
            TraceJoiner(
                hold_s=settings.otlp_hold_s,
                max_held=settings.otlp_max_held_spans,
                max_links=5 * settings.otlp_max_held_spans,
                clock=self.clock,
            ),
            max_event_bytes=settings.max_event_bytes,
        )
        await self.sink.start(check=check_kafka)
        app = web.Application(client_max_size=settings.otlp_max_request_bytes)
        app.router.add_post("/v1/traces", self.handle_traces)
        app.router.add_get("/healthz", self.handle_health)
        if self.serve_metrics:
            app.router.add_get("/metrics", self.handle_metrics)
        # bodies are inflated here, bounded (aiohttp would inflate gzip, deflate and br itself)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, auto_decompress=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, settings.otlp_host, settings.otlp_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            await self.sink.stop()
            raise
        self._runner = runner
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else settings.otlp_port
        self._expiry = asyncio.create_task(self._expire_loop(), name="agentwatch-otlp-expiry")
        log.info("OTLP/HTTP receiver on %s", self.url)

    async def stop(self) -> None:
        """Stop serving; send the events of held spans that got their agent; close Kafka."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._expiry is not None:
            self._expiry.cancel()
            await asyncio.gather(self._expiry, return_exceptions=True)
            self._expiry = None
        if self.pipeline is not None and self.pipeline.held:
            log.warning(
                "OTLP receiver: %d span(s) still waiting for their agent span are dropped "
                "at shutdown",
                self.pipeline.held,
            )
        await self.sink.stop()

    async def _expire_loop(self) -> None:
        assert self.pipeline is not None
        while True:
            await asyncio.sleep(EXPIRE_EVERY_S)
            try:
                outcome = Outcome()
                self.pipeline.expire(outcome)
                self.metrics.spans_held.set(self.pipeline.held)
                if outcome.events or outcome.rejected:
                    self._count(outcome)
                    await self.sink.send_until_acked(outcome)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug: keep the receiver serving, say so
                log.exception("OTLP receiver: deciding held spans failed")

    # -- HTTP ---------------------------------------------------------------------------------

    def _status(
        self,
        encoding: Encoding,
        http: int,
        grpc: int,
        message: str,
        retry_after: int | None = None,
    ) -> web.Response:
        self.metrics.requests.labels(encoding, str(http)).inc()
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return web.Response(
            status=http,
            body=encode_status(encoding, grpc, message),
            content_type=_MEDIA[encoding],
            headers=headers,
        )

    async def handle_traces(self, request: web.Request) -> web.Response:
        """``POST /v1/traces``."""
        started = time.perf_counter()
        encoding = _TYPES.get(request.content_type)
        if encoding is None:
            return self._status(
                "json",
                415,
                _INVALID_ARGUMENT,
                f"unsupported Content-Type {escape(request.content_type, 100)!r}: send "
                "application/x-protobuf or application/json",
            )
        retry_after = self.sink.retry_after
        if retry_after is not None:
            return self._status(
                encoding, 503, _UNAVAILABLE, "Kafka is unavailable; retry later", retry_after
            )
        if self.inflight >= self.settings.otlp_max_inflight_spans:
            return self._status(
                encoding,
                429,
                _RESOURCE_EXHAUSTED,
                f"{self.inflight} spans are waiting for Kafka; retry later",
                1,
            )
        body = await self._body(request, encoding)
        if isinstance(body, web.Response):
            return body
        try:
            decode = decode_protobuf if encoding == "protobuf" else decode_json
            spans = decode(body, self.settings.otlp_fleet_attribute)
        except PayloadError as exc:
            return self._status(encoding, 400, _INVALID_ARGUMENT, str(exc)[:1000])
        n = len(spans)
        self.inflight += n
        self.metrics.spans_inflight.set(self.inflight)
        try:
            outcome = Outcome()
            assert self.pipeline is not None
            for first in range(0, n, CHUNK_SPANS):
                if first:
                    await asyncio.sleep(0)
                self.pipeline.process(spans[first : first + CHUNK_SPANS], outcome)
            self.metrics.spans_held.set(self.pipeline.held)
            try:
                await self.sink.send(outcome)
            except SinkUnavailable as exc:
                return self._status(encoding, 503, _UNAVAILABLE, str(exc), self.sink.retry_after)
        finally:
            self.inflight -= n
            self.metrics.spans_inflight.set(self.inflight)
        self.metrics.spans_received.inc(n)
        self._count(outcome)
        rejected = 0
        message = ""
        if outcome.rejected:  # this request's (others' held spans may be decided meanwhile)
            mine = {id(span) for span in spans}
            own = Outcome(rejected=[r for r in outcome.rejected if id(r[0]) in mine])
            rejected = len(own.rejected)
            if rejected:
                message = own.summary()
        self.metrics.requests.labels(encoding, "200").inc()
        self.metrics.request_seconds.observe(time.perf_counter() - started)
        return web.Response(
            body=encode_response(encoding, rejected, message), content_type=_MEDIA[encoding]
        )

    async def _body(self, request: web.Request, encoding: Encoding) -> bytes | web.Response:
        limit = self.settings.otlp_max_request_bytes
        too_large = f"request body over {limit} bytes (AGENTWATCH_OTLP_MAX_REQUEST_BYTES)"
        if request.content_length is not None and request.content_length > limit:
            return self._status(encoding, 413, _INVALID_ARGUMENT, too_large)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._status(encoding, 413, _INVALID_ARGUMENT, too_large)
        coding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if coding in ("", "identity"):
            return body
        if coding != "gzip":
            return self._status(
                encoding, 415, _INVALID_ARGUMENT, f"unsupported Content-Encoding {coding[:40]!r}"
            )
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            plain = inflater.decompress(body, limit + 1)
        except zlib.error as exc:
            return self._status(encoding, 400, _INVALID_ARGUMENT, f"bad gzip body: {exc}")
        if len(plain) > limit or inflater.unconsumed_tail:
            return self._status(encoding, 413, _INVALID_ARGUMENT, too_large + " once unzipped")
        if not inflater.eof:
            return self._status(encoding, 400, _INVALID_ARGUMENT, "truncated gzip body")
        return plain

    def _count(self, outcome: Outcome) -> None:
        metrics = self.metrics
        for (convention, kind), n in outcome.mapped.items():
            metrics.spans_mapped.labels(convention, kind).inc(n)
        for reason, n in outcome.skipped.items():
            metrics.spans_skipped.labels(reason).inc(n)
        for _, reason, _ in outcome.rejected:
            metrics.spans_rejected.labels(reason).inc()
        if outcome.expired_early:
            metrics.held_expired_early.inc(outcome.expired_early)
        assert self.pipeline is not None
        unpriced = self.pipeline.mapper.unpriced
        if unpriced:
            metrics.spans_unpriced.inc(unpriced)
            self.pipeline.mapper.unpriced = 0

    async def handle_health(self, request: web.Request) -> web.Response:
        """``GET /healthz``: 200 while Kafka accepts events, else 503."""
        held = self.pipeline.held if self.pipeline is not None else 0
        ok = self.sink.retry_after is None
        return web.json_response(
            {
                "status": "ok" if ok else "unavailable",
                "held_spans": held,
                "inflight": self.inflight,
            },
            status=200 if ok else 503,
        )

    async def handle_metrics(self, request: web.Request) -> web.Response:
        """``GET /metrics`` (Prometheus text format)."""
        return web.Response(
            body=generate_latest(self.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )
