"""OTLP/HTTP trace payloads: decode requests (protobuf and JSON), encode answers.

Protobuf uses the ``opentelemetry-proto`` messages. JSON follows OTLP/JSON: lowerCamelCase keys
(snake_case accepted too), trace and span ids as hex, enums as integers (names accepted),
64-bit integers as strings or numbers. Answers are ``ExportTraceServiceResponse`` (with
``partial_success`` when spans were rejected) or, for a refused request, a ``google.rpc.Status``
in the request's encoding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import orjson
from google.protobuf.message import DecodeError as _ProtoDecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from agentwatch._wire import uvarint
from agentwatch.ingest.spans import AGENT_ID, AGENT_NAME, WANTED, Resource, Scalar, SpanRecord

__all__ = [
    "Encoding",
    "PayloadError",
    "decode_json",
    "decode_protobuf",
    "encode_response",
    "encode_status",
]

Encoding = Literal["protobuf", "json"]
_SCALARS = frozenset({"string_value", "bool_value", "int_value", "double_value"})
_STATUS_NAMES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}


class PayloadError(ValueError):
    """A request body that is not an OTLP trace export (answered 400)."""


# -- protobuf ---------------------------------------------------------------------------------


def _pb_resource(attributes: Any, fleet_attribute: str) -> Resource:
    resource = Resource()
    for kv in attributes:
        key = kv.key
        if key in (fleet_attribute, AGENT_ID, AGENT_NAME):
            value = kv.value
            if value.WhichOneof("value") != "string_value":
                continue
            text = value.string_value
            if key == fleet_attribute:
                resource.fleet = text
            elif key == AGENT_ID:
                resource.agent_id = text
            else:
                resource.agent_name = text
    return resource


def decode_protobuf(body: bytes, fleet_attribute: str = "service.name") -> list[SpanRecord]:
    """The spans of an ``ExportTraceServiceRequest`` in protobuf.

    Raises
    ------
    PayloadError
        when ``body`` does not parse.
    """
    try:
        request = ExportTraceServiceRequest.FromString(body)
    except _ProtoDecodeError as exc:
        raise PayloadError(f"not an ExportTraceServiceRequest (protobuf): {exc}") from None
    wanted = WANTED
    scalars = _SCALARS
    out: list[SpanRecord] = []
    append = out.append
    for resource_spans in request.resource_spans:
        resource = _pb_resource(resource_spans.resource.attributes, fleet_attribute)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                attributes: dict[str, Scalar] = {}
                for kv in span.attributes:
                    key = kv.key
                    if key in wanted:
                        value = kv.value
                        which = value.WhichOneof("value")
                        if which in scalars:
                            attributes[key] = getattr(value, which)
                status = span.status
                append(
                    SpanRecord(
                        span.trace_id.hex(),
                        span.span_id.hex(),
                        span.parent_span_id.hex(),
                        span.name,
                        span.start_time_unix_nano,
                        span.end_time_unix_nano,
                        status.code,
                        status.message,
                        attributes,
                        resource,
                    )
                )
    return out


# -- JSON -------------------------------------------------------------------------------------


def _get(obj: Mapping[str, Any], camel: str, snake: str, default: Any = None) -> Any:
    value = obj.get(camel)
    if value is None:
        value = obj.get(snake, default)
    return default if value is None else value


def _list(obj: Mapping[str, Any], camel: str, snake: str, what: str) -> list[Any]:
    value = _get(obj, camel, snake, [])
    if not isinstance(value, list):
        raise PayloadError(f"{what}: {camel} must be an array")
    return value


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise PayloadError(f"{what}: not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise PayloadError(f"{what}: not an integer: {str(value)[:40]!r}")


def _json_scalar(value: Any) -> Scalar | None:
    """An OTLP/JSON ``AnyValue`` as a scalar (``None`` for arrays, maps, bytes, empty)."""
    if not isinstance(value, dict):
        return None
    for camel, snake in (("stringValue", "string_value"), ("boolValue", "bool_value")):
        if camel in value or snake in value:
            found = _get(value, camel, snake)
            return found if isinstance(found, str | bool) else None
    if "intValue" in value or "int_value" in value:
        try:
            return _int(_get(value, "intValue", "int_value"), "intValue")
        except PayloadError:
            return None
    if "doubleValue" in value or "double_value" in value:
        found = _get(value, "doubleValue", "double_value")
        if isinstance(found, int | float) and not isinstance(found, bool):
            return float(found)
        if isinstance(found, str):  # "NaN", "Infinity" and numbers as text
            try:
                return float(found)
            except ValueError:
                return None
    return None


def _json_attributes(items: list[Any], keep: Callable[[str], bool]) -> dict[str, Scalar]:
    out: dict[str, Scalar] = {}
    for item in items:
        if not isinstance(item, dict):
            continue
        key = item.get("key")
        if isinstance(key, str) and keep(key):
            value = _json_scalar(item.get("value"))
            if value is not None:
                out[key] = value
    return out


def _json_status(status: Any) -> tuple[int, str]:
    if not isinstance(status, dict):
        return 0, ""
    code = status.get("code", 0)
    if isinstance(code, str):
        code = _STATUS_NAMES.get(code, _int(code, "status.code") if code.isdigit() else 0)
    message = status.get("message", "")
    return (code if isinstance(code, int) else 0), (message if isinstance(message, str) else "")


def _hex(value: Any) -> str:
    return value.lower() if isinstance(value, str) else ""


def decode_json(body: bytes, fleet_attribute: str = "service.name") -> list[SpanRecord]:
    """The spans of an ``ExportTraceServiceRequest`` in OTLP/JSON.

    Raises
    ------
    PayloadError
        when ``body`` is not JSON or not shaped like a trace export.
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise PayloadError("the body must be a JSON object with resourceSpans")
    resource_keys = {fleet_attribute, AGENT_ID, AGENT_NAME}
    out: list[SpanRecord] = []
    for i, resource_spans in enumerate(_list(doc, "resourceSpans", "resource_spans", "request")):
        where = f"resourceSpans[{i}]"
        if not isinstance(resource_spans, dict):
            raise PayloadError(f"{where}: must be an object")
        raw_resource = _get(resource_spans, "resource", "resource", {})
        found = _json_attributes(
            _list(raw_resource, "attributes", "attributes", where) if raw_resource else [],
            resource_keys.__contains__,
        )

        def text(key: str, found: dict[str, Scalar] = found) -> str | None:
            value = found.get(key)
            return value if isinstance(value, str) else None

        resource = Resource(text(fleet_attribute), text(AGENT_ID), text(AGENT_NAME))
        scopes = _list(resource_spans, "scopeSpans", "scope_spans", where)
        for j, scope_spans in enumerate(scopes):
            if not isinstance(scope_spans, dict):
                raise PayloadError(f"{where}.scopeSpans[{j}]: must be an object")
            for k, span in enumerate(_list(scope_spans, "spans", "spans", where)):
                at = f"{where}.scopeSpans[{j}].spans[{k}]"
                if not isinstance(span, dict):
                    raise PayloadError(f"{at}: must be an object")
                code, message = _json_status(span.get("status"))
                name = span.get("name", "")
                out.append(
                    SpanRecord(
                        _hex(_get(span, "traceId", "trace_id", "")),
                        _hex(_get(span, "spanId", "span_id", "")),
                        _hex(_get(span, "parentSpanId", "parent_span_id", "")),
                        name if isinstance(name, str) else "",
                        _int(_get(span, "startTimeUnixNano", "start_time_unix_nano", 0), at),
                        _int(_get(span, "endTimeUnixNano", "end_time_unix_nano", 0), at),
                        code,
                        message,
                        _json_attributes(
                            _list(span, "attributes", "attributes", at), WANTED.__contains__
                        ),
                        resource,
                    )
                )
    return out


# -- answers ----------------------------------------------------------------------------------


def encode_response(encoding: Encoding, rejected: int = 0, message: str = "") -> bytes:
    """An ``ExportTraceServiceResponse``; ``partial_success`` set when anything was rejected
    (or a warning ``message`` is given)."""
    if encoding == "json":
        if not rejected and not message:
            return b"{}"
        return orjson.dumps(
            {"partialSuccess": {"rejectedSpans": str(rejected), "errorMessage": message}}
        )
    response = ExportTraceServiceResponse()
    if rejected or message:
        response.partial_success.CopyFrom(
            ExportTracePartialSuccess(rejected_spans=rejected, error_message=message)
        )
    return response.SerializeToString()


def encode_status(encoding: Encoding, code: int, message: str) -> bytes:
    """A ``google.rpc.Status`` (``code``: a gRPC status code) for a refused request.

    Examples
    --------
    >>> encode_status("json", 3, "bad")
    b'{"code":3,"message":"bad"}'
    >>> encode_status("protobuf", 3, "bad")
    b'\\x08\\x03\\x12\\x03bad'
    """
    if encoding == "json":
        return orjson.dumps({"code": code, "message": message})
    text = message.encode()
    return b"\x08" + uvarint(code) + b"\x12" + uvarint(len(text)) + text
