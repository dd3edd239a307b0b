"""``agentwatch bench --otlp``: spans per second through decode and mapping, on one core.

Measures what the receiver does per request before Kafka: parse the body (protobuf, and
OTLP/JSON separately), map every span, join spans to their agent span, encode and validate
each event. The corpus is synthetic but shaped like real agent traces: per trace an
``invoke_agent`` span (the only one naming the agent in half the traces, so those spans go
through the trace join) with model calls (``chat``, tokens, priced from the table), tool calls
(``execute_tool``) and non-GenAI HTTP client spans (skipped), children before their parent as
a batching exporter sends them.
"""

from __future__ import annotations

import gc
import os
import random
import time
from typing import Any

import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from agentwatch.ingest.mapping import SpanMapper
from agentwatch.ingest.otlp import decode_json, decode_protobuf
from agentwatch.ingest.pipeline import Outcome, SpanPipeline
from agentwatch.ingest.prices import load_prices
from agentwatch.ingest.traces import TraceJoiner

__all__ = ["make_requests", "run_otlp_bench"]

_MODELS = ("gpt-4o-mini", "gpt-4.1-2025-04-14", "claude-sonnet-4-20250514", "gemini-2.0-flash")
_TOOLS = ("search", "read_file", "send_email", "create_ticket", "query_db", "http_get")


def _kv(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def make_requests(
    spans: int, per_request: int = 500, agents: int = 200, seed: int = 0
) -> list[ExportTraceServiceRequest]:
    """Export requests holding about ``spans`` spans, ``per_request`` each."""
    rnd = random.Random(seed)
    requests: list[ExportTraceServiceRequest] = []
    t = 1_767_225_600_000_000_000
    made = 0
    while made < spans:
        request = ExportTraceServiceRequest()
        resource_spans = request.resource_spans.add()
        fleet = f"fleet-{rnd.randrange(8)}"
        resource_spans.resource.attributes.extend(
            [_kv("service.name", fleet), _kv("telemetry.sdk.language", "python")]
        )
        scope = resource_spans.scope_spans.add()
        scope.scope.name = "agent.framework"
        in_request = 0
        while in_request < per_request:
            trace_id = rnd.randbytes(16)
            root = rnd.randbytes(8)
            agent = f"agent-{rnd.randrange(agents)}"
            on_every_span = rnd.random() < 0.5
            children = rnd.randrange(4, 12)
            start = t
            for _ in range(children):
                span = scope.spans.add()
                span.trace_id, span.span_id, span.parent_span_id = trace_id, rnd.randbytes(8), root
                span.start_time_unix_nano = t
                t += rnd.randrange(5, 900) * 1_000_000
                span.end_time_unix_nano = t
                attributes = [_kv("gen_ai.conversation.id", f"conv-{rnd.randrange(10_000)}")]
                if on_every_span:
                    attributes.append(_kv("gen_ai.agent.id", agent))
                roll = rnd.random()
                if roll < 0.45:
                    tool = rnd.choice(_TOOLS)
                    span.name = f"execute_tool {tool}"
                    span.kind = Span.SPAN_KIND_INTERNAL
                    attributes += [
                        _kv("gen_ai.operation.name", "execute_tool"),
                        _kv("gen_ai.tool.name", tool),
                        _kv("gen_ai.tool.call.id", f"call_{rnd.randrange(1 << 30):x}"),
                        _kv("gen_ai.tool.call.arguments", f'{{"q": "{rnd.randrange(50)}"}}'),
                    ]
                    if rnd.random() < 0.05:
                        span.status.code = Status.STATUS_CODE_ERROR
                        attributes.append(_kv("error.type", "TimeoutError"))
                elif roll < 0.85:
                    model = rnd.choice(_MODELS)
                    span.name = f"chat {model}"
                    span.kind = Span.SPAN_KIND_CLIENT
                    attributes += [
                        _kv("gen_ai.operation.name", "chat"),
                        _kv("gen_ai.provider.name", "openai"),
                        _kv("gen_ai.request.model", model),
                        _kv("gen_ai.response.model", model),
                        _kv("gen_ai.usage.input_tokens", rnd.randrange(200, 8000)),
                        _kv("gen_ai.usage.output_tokens", rnd.randrange(10, 800)),
                    ]
                else:
                    span.name = "GET"
                    span.kind = Span.SPAN_KIND_CLIENT
                    attributes += [
                        _kv("http.request.method", "GET"),
                        _kv("url.full", f"https://api.example.com/v1/items/{rnd.randrange(99)}"),
                        _kv("http.response.status_code", 200),
                    ]
                span.attributes.extend(attributes)
            parent = scope.spans.add()
            parent.trace_id, parent.span_id = trace_id, root
            parent.name = f"invoke_agent {agent}"
            parent.start_time_unix_nano, parent.end_time_unix_nano = start, t
            parent.attributes.extend(
                [
                    _kv("gen_ai.operation.name", "invoke_agent"),
                    _kv("gen_ai.agent.id", agent),
                    _kv("gen_ai.agent.name", agent.replace("-", " ").title()),
                ]
            )
            in_request += children + 1
        made += in_request
        requests.append(request)
    return requests


def _to_json(request: ExportTraceServiceRequest) -> bytes:
    """OTLP/JSON of a request (hex ids, as the spec says), built by hand: protobuf's own JSON
    printer writes ids in base64."""

    def value(v: AnyValue) -> dict[str, Any]:
        which = v.WhichOneof("value")
        if which == "int_value":
            return {"intValue": str(v.int_value)}
        return {"stringValue": v.string_value}

    def attrs(items: Any) -> list[dict[str, Any]]:
        return [{"key": kv.key, "value": value(kv.value)} for kv in items]

    doc = {
        "resourceSpans": [
            {
                "resource": {"attributes": attrs(rs.resource.attributes)},
                "scopeSpans": [
                    {
                        "scope": {"name": ss.scope.name},
                        "spans": [
                            {
                                "traceId": s.trace_id.hex(),
                                "spanId": s.span_id.hex(),
                                "parentSpanId": s.parent_span_id.hex(),
                                "name": s.name,
                                "kind": s.kind,
                                "startTimeUnixNano": str(s.start_time_unix_nano),
                                "endTimeUnixNano": str(s.end_time_unix_nano),
                                "status": {"code": s.status.code},
                                "attributes": attrs(s.attributes),
                            }
                            for s in ss.spans
                        ],
                    }
                    for ss in rs.scope_spans
                ],
            }
            for rs in request.resource_spans
        ]
    }
    return orjson.dumps(doc)


def _pipeline() -> SpanPipeline:
    return SpanPipeline(SpanMapper(load_prices()), TraceJoiner())  # the receiver's defaults


def _run(bodies: list[bytes], decode: Any) -> tuple[float, Outcome, int]:
    pipeline = _pipeline()
    out = Outcome()
    n = 0
    gc.collect()
    started = time.process_time()
    for body in bodies:
        spans = decode(body)
        n += len(spans)
        pipeline.process(spans, out)
        pipeline.expire(out)  # as the receiver does twice a second
    return time.process_time() - started, out, n


def run_otlp_bench(spans: int = 100_000, per_request: int = 500) -> str:
    """Decode and map ``spans`` spans (protobuf, then JSON); one JSON line with spans/s.

    CPU time of this process is measured (one core: the path is single-threaded).
    """
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    requests = make_requests(spans, per_request)
    proto_bodies = [r.SerializeToString() for r in requests]
    json_bodies = [_to_json(r) for r in requests]
    _run(proto_bodies[:2], decode_protobuf)  # warm up imports and caches
    seconds, out, n = _run(proto_bodies, decode_protobuf)
    json_seconds, json_out, _ = _run(json_bodies, decode_json)
    assert len(json_out.events) == len(out.events), "protobuf and JSON must map alike"
    return orjson.dumps(
        {
            "otlp_spans": n,
            "requests": len(proto_bodies),
            "events": len(out.events),
            "skipped": sum(out.skipped.values()),
            "rejected": len(out.rejected),
            "protobuf_bytes_per_span": round(sum(map(len, proto_bodies)) / n, 1),
            "cpu_seconds": round(seconds, 3),
            "spans_per_s": round(n / seconds),
            "json_spans_per_s": round(n / json_seconds),
            "event_bytes_per_span": round(sum(len(v) for _, v in out.events) / len(out.events)),
        }
    ).decode()
