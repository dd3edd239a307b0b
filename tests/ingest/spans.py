"""Building OTLP spans and requests for the ingest tests."""

from __future__ import annotations

import itertools
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from agentwatch.ingest.spans import Resource, SpanRecord

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z in ns
_ids = itertools.count(1)


def span_id() -> str:
    return f"{next(_ids):016x}"


def trace_id() -> str:
    return f"{next(_ids):032x}"


def record(
    attributes: dict[str, Any] | None = None,
    *,
    trace: str | None = None,
    span: str | None = None,
    parent: str = "",
    name: str = "span",
    start: int = T0,
    duration_ms: float = 5.0,
    status: int = 0,
    message: str = "",
    fleet: str | None = "support",
    resource_agent: str | None = None,
) -> SpanRecord:
    return SpanRecord(
        trace or trace_id(),
        span or span_id(),
        parent,
        name,
        start,
        start + int(duration_ms * 1e6),
        status,
        message,
        dict(attributes or {}),
        Resource(fleet=fleet, agent_id=resource_agent),
    )


def tool(name: str, agent: str | None = "bot-1", **kw: Any) -> SpanRecord:
    attrs: dict[str, Any] = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name}
    if agent:
        attrs["gen_ai.agent.id"] = agent
    attrs.update(kw.pop("attrs", {}))
    return record(attrs, name=f"execute_tool {name}", **kw)


def agent_span(agent: str, **kw: Any) -> SpanRecord:
    attrs = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.id": agent}
    attrs.update(kw.pop("attrs", {}))
    return record(attrs, name=f"invoke_agent {agent}", **kw)


def _value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=value)


def request(spans: list[SpanRecord], service: str = "support") -> ExportTraceServiceRequest:
    """A protobuf export request holding ``spans`` under one resource."""
    out = ExportTraceServiceRequest()
    rs = out.resource_spans.add()
    rs.resource.attributes.append(KeyValue(key="service.name", value=_value(service)))
    scope = rs.scope_spans.add()
    for s in spans:
        p = scope.spans.add()
        p.trace_id = bytes.fromhex(s.trace_id)
        p.span_id = bytes.fromhex(s.span_id)
        if s.parent_id:
            p.parent_span_id = bytes.fromhex(s.parent_id)
        p.name = s.name
        p.start_time_unix_nano = s.start_ns
        p.end_time_unix_nano = s.end_ns
        p.status.code = s.status_code  # type: ignore[assignment]
        p.status.message = s.status_message
        for key, value in s.attributes.items():
            p.attributes.append(KeyValue(key=key, value=_value(value)))
    return out


def json_request(spans: list[SpanRecord], service: str = "support") -> dict[str, Any]:
    """The same request in OTLP/JSON."""

    def value(v: Any) -> dict[str, Any]:
        if isinstance(v, bool):
            return {"boolValue": v}
        if isinstance(v, int):
            return {"intValue": str(v)}
        if isinstance(v, float):
            return {"doubleValue": v}
        return {"stringValue": v}

    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": service}}]
                },
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": s.trace_id,
                                "spanId": s.span_id,
                                "parentSpanId": s.parent_id,
                                "name": s.name,
                                "kind": 1,
                                "startTimeUnixNano": str(s.start_ns),
                                "endTimeUnixNano": str(s.end_ns),
                                "status": {"code": s.status_code, "message": s.status_message},
                                "attributes": [
                                    {"key": k, "value": value(v)} for k, v in s.attributes.items()
                                ],
                            }
                            for s in spans
                        ]
                    }
                ],
            }
        ]
    }
