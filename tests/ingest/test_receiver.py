"""The OTLP/HTTP receiver against a real broker, over real loopback HTTP."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from prometheus_client import CollectorRegistry

from agentwatch.config import Settings
from agentwatch.ingest.metrics import OtlpMetrics
from agentwatch.ingest.pipeline import Outcome
from agentwatch.ingest.receiver import OtlpReceiver
from agentwatch.ingest.sink import KafkaSink
from agentwatch.schemas import decode_event
from agentwatch.streams.broker import EmbeddedBroker
from agentwatch.streams.topics import ensure_topics
from tests.ingest.spans import agent_span, json_request, record, request, span_id, tool, trace_id
from tests.streams.test_pipeline import read_topic

pytestmark = pytest.mark.integration

PB = {"Content-Type": "application/x-protobuf"}


@asynccontextmanager
async def receiving(settings: Settings, **kw: Any) -> AsyncIterator[OtlpReceiver]:
    await ensure_topics(settings)
    receiver = OtlpReceiver(settings.replace(otlp_port=0), **kw)
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


def sample(n_tools: int = 3) -> tuple[list[Any], str]:
    """``n_tools`` tool spans and a chat span under an invoke_agent span sent last."""
    trace, root = trace_id(), span_id()
    children = [
        tool("search", agent=None, trace=trace, parent=root, attrs={"agentwatch.target": "kb"})
        for _ in range(n_tools)
    ]
    children.append(
        record(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 1000,
                "gen_ai.usage.output_tokens": 100,
            },
            trace=trace,
            parent=root,
        )
    )
    return [*children, agent_span("Billing Bot", trace=trace, span=root)], "Billing-Bot"


async def test_gzipped_protobuf_spans_become_events_keyed_by_agent(settings: Settings) -> None:
    spans, agent = sample()
    body = gzip.compress(request(spans, service="finance").SerializeToString())
    async with receiving(settings) as receiver, aiohttp.ClientSession() as http:
        for _ in range(2):  # a re-sent request makes the same events (duplicates by event_id)
            async with http.post(
                receiver.url, data=body, headers={**PB, "Content-Encoding": "gzip"}
            ) as resp:
                assert resp.status == 200, await resp.text()
                assert resp.content_type == "application/x-protobuf"
                answer = ExportTraceServiceResponse.FromString(await resp.read())
                assert not answer.HasField("partial_success")
    records = await read_topic(settings, "actions", 10)
    assert len(records) == 10 and {r.key for r in records} == {agent.encode()}
    partitions = list(range(settings.topic_partitions))  # where every producer puts the key
    assert {r.partition for r in records} == {
        DefaultPartitioner()(agent.encode(), partitions, partitions)
    }
    events = [decode_event(r.value) for r in records]
    assert len({e.event_id for e in events}) == 5  # the second request repeated the first
    first = sorted(events[:5], key=lambda e: e.action)
    assert [(e.kind, e.action) for e in first] == [
        ("llm", "chat"),
        ("other", "invoke_agent"),
        ("tool", "search"),
        ("tool", "search"),
        ("tool", "search"),
    ]
    chat = first[0]
    assert (chat.fleet, chat.model, chat.input_tokens, chat.output_tokens) == (
        "finance",
        "gpt-4o-mini",
        1000,
        100,
    )
    assert chat.cost_usd == pytest.approx((1000 * 0.15 + 100 * 0.6) / 1e6)
    assert first[2].target == "kb"


async def test_json_with_unmappable_spans_gets_partial_success_and_dead_letters(
    settings: Settings,
) -> None:
    registry = CollectorRegistry()
    good = tool("ok_tool", agent="json-bot")
    nameless = record(
        {"gen_ai.operation.name": "execute_tool", "gen_ai.agent.id": "json-bot"},
        name="execute_tool",
    )
    orphan = tool("orphan", agent=None)  # a root span: no agent anywhere
    http_span = record({"http.request.method": "GET"})  # not an action: accepted, skipped
    doc = json_request([good, nameless, orphan, http_span])
    async with (
        receiving(settings, metrics=OtlpMetrics(registry)) as receiver,
        aiohttp.ClientSession() as http,
        http.post(
            receiver.url, data=orjson.dumps(doc), headers={"Content-Type": "application/json"}
        ) as resp,
    ):
        assert resp.status == 200
        answer = orjson.loads(await resp.read())
    partial = answer["partialSuccess"]
    assert partial["rejectedSpans"] == "2"
    assert (
        "no_tool_name=1" in partial["errorMessage"] and "no_agent_id=1" in partial["errorMessage"]
    )
    (event,) = [decode_event(r.value) for r in await read_topic(settings, "actions", 1)]
    assert (event.agent_id, event.action) == ("json-bot", "ok_tool")
    letters = await read_topic(settings, "deadletter", 2)
    by_reason = {dict(r.headers)["agentwatch.reason"]: r for r in letters}
    assert set(by_reason) == {b"no_tool_name", b"no_agent_id"}
    headers = dict(by_reason[b"no_agent_id"].headers)
    assert headers["agentwatch.source.otlp"] == b"/v1/traces"
    assert headers["agentwatch.source.span_id"] == orphan.span_id.encode()
    assert "agentwatch.source.partition" not in headers
    assert orjson.loads(by_reason[b"no_agent_id"].value)["name"] == "execute_tool orphan"

    def value(name: str, **labels: str) -> float:
        found = registry.get_sample_value(name, labels)
        return 0.0 if found is None else found

    assert value("agentwatch_otlp_spans_rejected_total", reason="no_agent_id") == 1
    assert value("agentwatch_otlp_spans_skipped_total", reason="not_genai") == 1
    assert value("agentwatch_otlp_spans_mapped_total", convention="gen_ai", kind="tool") == 1
    assert value("agentwatch_otlp_requests_total", encoding="json", code="200") == 1


async def test_requests_it_cannot_take_are_refused_with_the_right_status(
    settings: Settings,
) -> None:
    small = settings.replace(otlp_max_request_bytes=64 * 1024)
    big = request([tool(f"t{i}", attrs={"url.full": "u" * 900}) for i in range(100)])
    bomb = gzip.compress(b"\0" * (1024 * 1024))
    cases: list[tuple[dict[str, str], bytes, int]] = [
        ({"Content-Type": "text/plain"}, b"x", 415),
        (PB, b"\xff\xff\xff", 400),
        ({"Content-Type": "application/json"}, b"{", 400),
        (PB, big.SerializeToString(), 413),
        ({**PB, "Content-Encoding": "gzip"}, bomb, 413),
        ({**PB, "Content-Encoding": "gzip"}, b"not gzip", 400),
        ({**PB, "Content-Encoding": "br"}, b"x", 415),
    ]
    async with receiving(small) as receiver, aiohttp.ClientSession() as http:
        for headers, body, status in cases:
            async with http.post(receiver.url, data=body, headers=headers) as resp:
                assert resp.status == status, (headers, await resp.text())
                assert "Retry-After" not in resp.headers  # not to be retried
        async with http.get(receiver.url.replace("/v1/traces", "/healthz")) as resp:
            assert resp.status == 200


class GatedSink(KafkaSink):
    """The real sink, whose sends wait until the test opens the gate."""

    gate: asyncio.Event

    async def send(self, outcome: Outcome) -> None:
        await self.gate.wait()
        await super().send(outcome)


async def test_too_many_unacknowledged_spans_get_429_with_retry_after(
    settings: Settings,
) -> None:
    tight = settings.replace(otlp_max_inflight_spans=100)
    metrics = OtlpMetrics()
    sink = GatedSink(tight, metrics)
    sink.gate = asyncio.Event()
    first = request([tool(f"t{i}", agent="busy") for i in range(150)]).SerializeToString()
    async with (
        receiving(tight, metrics=metrics, sink=sink) as receiver,
        aiohttp.ClientSession() as http,
    ):
        pending = asyncio.create_task(http.post(receiver.url, data=first, headers=PB))
        while receiver.inflight == 0:
            await asyncio.sleep(0.01)
        async with http.post(receiver.url, data=first, headers=PB) as resp:
            assert resp.status == 429
            assert resp.headers["Retry-After"] == "1"
        sink.gate.set()
        resp = await pending
        assert resp.status == 200
        resp.release()
        async with http.post(receiver.url, data=first, headers=PB) as again:
            assert again.status == 200  # room again once Kafka acknowledged
    assert receiver.inflight == 0


async def test_kafka_down_gets_503_with_retry_after(settings: Settings, tmp_path: Path) -> None:
    with EmbeddedBroker(log_file=tmp_path / "broker.log") as broker:
        own = settings.replace(kafka_bootstrap=broker.bootstrap, otlp_ack_timeout_s=1.0)
        body = request([tool("t", agent="a")]).SerializeToString()
        async with receiving(own) as receiver, aiohttp.ClientSession() as http:
            async with http.post(receiver.url, data=body, headers=PB) as resp:
                assert resp.status == 200
            broker.stop()
            started = time.monotonic()
            async with http.post(receiver.url, data=body, headers=PB) as resp:
                assert resp.status == 503
                assert int(resp.headers["Retry-After"]) >= 1
            assert time.monotonic() - started < 5
            async with http.post(receiver.url, data=body, headers=PB) as resp:
                assert resp.status == 503  # at once now, without decoding
            async with http.get(receiver.url.replace("/v1/traces", "/healthz")) as resp:
                assert resp.status == 503


async def test_a_held_span_whose_agent_never_comes_is_dead_lettered(settings: Settings) -> None:
    brief = settings.replace(otlp_hold_s=0.5)
    stuck = tool("stuck", agent=None, parent=span_id())  # its parent is never sent
    async with receiving(brief) as receiver, aiohttp.ClientSession() as http:
        async with http.post(
            receiver.url, data=request([stuck]).SerializeToString(), headers=PB
        ) as r:
            assert r.status == 200
            assert not ExportTraceServiceResponse.FromString(await r.read()).HasField(
                "partial_success"
            )
        assert receiver.pipeline is not None and receiver.pipeline.held == 1
        (letter,) = await read_topic(settings, "deadletter", 1, timeout=10)
    assert dict(letter.headers)["agentwatch.reason"] == b"no_agent_id"
    assert dict(letter.headers)["agentwatch.source.span_id"] == stuck.span_id.encode()
