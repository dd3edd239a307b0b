"""The price table and OTLP payloads: decoding both encodings alike, answers clients read."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from agentwatch.ingest.otlp import (
    PayloadError,
    decode_json,
    decode_protobuf,
    encode_response,
    encode_status,
)
from agentwatch.ingest.prices import PriceError, load_prices
from tests.ingest.spans import json_request, record, request, tool


def test_shipped_prices_and_versioned_model_names() -> None:
    table = load_prices()
    assert len(table) >= 20
    assert table.cost("gpt-4o-mini-2024-07-18", 1_000_000, 1_000_000) == pytest.approx(0.75)
    assert table.cost("gpt-4o-2024-08-06", 1_000_000, 0) == pytest.approx(2.5)
    assert table.cost("anthropic/claude-sonnet-4-20250514", 0, 1_000_000) == pytest.approx(15.0)
    assert table.cost("gpt-4oops", 1, 1) is None  # a prefix must end at a '-'


def test_an_override_file_replaces_and_extends(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(
        '[models]\n"gpt-4o" = { input = 1.0, output = 2.0 }\n'
        '"acme-llm" = { input = 0.5, output = 0.5 }\n'
    )
    table = load_prices(path)
    assert table.cost("gpt-4o", 1_000_000, 1_000_000) == pytest.approx(3.0)
    assert table.cost("acme-llm-v2", 2_000_000, 0) == pytest.approx(1.0)
    assert table.cost("gpt-4o-mini", 1_000_000, 0) == pytest.approx(0.15)  # shipped kept


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[models\n", "not valid TOML"),
        ("[other]\n", "needs a [models] table"),
        ('[models]\n"m" = { input = 1.0 }\n', "model 'm': give exactly input and output"),
        ('[models]\n"m" = { input = -1.0, output = 1 }\n', "finite numbers >= 0"),
    ],
)
def test_bad_price_files_name_file_model_and_reason(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(PriceError, match=re.escape(message)) as info:
        load_prices(path)
    assert str(path) in str(info.value)
    with pytest.raises(PriceError, match="cannot read"):
        load_prices(tmp_path / "missing.toml")


def test_protobuf_and_json_decode_to_the_same_spans() -> None:
    spans = [
        tool("search", attrs={"gen_ai.usage.input_tokens": 5, "x.ignored": "y"}, status=2),
        record({"gen_ai.operation.name": "chat", "gen_ai.usage.cost": 0.5, "flag": True}),
    ]
    from_pb = decode_protobuf(request(spans, "fleet-a").SerializeToString())
    from_json = decode_json(orjson.dumps(json_request(spans, "fleet-a")))
    assert from_pb == from_json
    assert from_pb[0].resource.fleet == "fleet-a"
    assert "x.ignored" not in from_pb[0].attributes  # only what mapping needs is kept
    assert from_pb[0].attributes["gen_ai.usage.input_tokens"] == 5
    assert (from_pb[0].status_code, from_pb[0].trace_id) == (2, spans[0].trace_id)


def test_json_accepts_snake_case_and_enum_names() -> None:
    doc = {
        "resource_spans": [
            {
                "scope_spans": [
                    {
                        "spans": [
                            {
                                "trace_id": "AB" * 16,
                                "span_id": "CD" * 8,
                                "name": "n",
                                "start_time_unix_nano": 5,
                                "end_time_unix_nano": "7",
                                "status": {"code": "STATUS_CODE_ERROR"},
                            }
                        ]
                    }
                ]
            }
        ]
    }
    (span,) = decode_json(orjson.dumps(doc))
    assert (span.trace_id, span.span_id, span.end_ns, span.status_code) == (
        "ab" * 16,
        "cd" * 8,
        7,
        2,
    )


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"resourceSpans": 3}', b'{"resourceSpans": [{"scopeSpans": [5]}]}'],
)
def test_bad_json_bodies(body: bytes) -> None:
    with pytest.raises(PayloadError):
        decode_json(body)


def test_bad_protobuf_body() -> None:
    with pytest.raises(PayloadError, match="protobuf"):
        decode_protobuf(b"\xff\xff\xff\xff")


def test_answers_decode_as_otlp_messages() -> None:
    full = ExportTraceServiceResponse.FromString(encode_response("protobuf"))
    assert not full.HasField("partial_success")
    partial = ExportTraceServiceResponse.FromString(encode_response("protobuf", 3, "why"))
    assert (partial.partial_success.rejected_spans, partial.partial_success.error_message) == (
        3,
        "why",
    )
    assert orjson.loads(encode_response("json", 2, "m")) == {
        "partialSuccess": {"rejectedSpans": "2", "errorMessage": "m"}
    }
    assert encode_response("json") == b"{}"
    from google.rpc.status_pb2 import Status  # the real message, from googleapis-common-protos

    status = Status.FromString(encode_status("protobuf", 14, "x" * 300))
    assert (status.code, status.message) == (14, "x" * 300)
