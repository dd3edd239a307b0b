"""Span to event mapping: OTel GenAI and OpenInference spans, costs, statuses, rejections."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentwatch.ingest.mapping import Mapped, Reject, Skip, SpanMapper, agent_key
from agentwatch.ingest.prices import load_prices
from agentwatch.ingest.spans import SpanRecord
from agentwatch.schemas import ActionEvent, decode_event
from tests.ingest.spans import T0, agent_span, record, tool


@pytest.fixture
def mapper() -> SpanMapper:
    return SpanMapper(load_prices())


def event(mapper: SpanMapper, span: SpanRecord, agent: str = "bot-1") -> ActionEvent:
    mapped = mapper.classify(span)
    assert isinstance(mapped, Mapped), mapped
    payload = mapper.event(span, mapped, agent, 64 * 1024)
    assert isinstance(payload, bytes), payload
    return decode_event(payload)


def test_execute_tool_span_becomes_a_tool_event(mapper: SpanMapper) -> None:
    span = tool(
        "search",
        attrs={
            "gen_ai.tool.call.id": "call_7",
            "gen_ai.conversation.id": "conv-9",
            "url.full": "https://kb.example.com/a",
        },
        duration_ms=12.5,
    )
    e = event(mapper, span)
    assert (e.kind, e.action, e.status, e.agent_id, e.fleet) == (
        "tool",
        "search",
        "ok",
        "bot-1",
        "support",
    )
    assert e.event_id == f"otel-{span.trace_id}-{span.span_id}"
    assert e.ts.timestamp() == pytest.approx((T0 + 12_500_000) / 1e9)
    assert e.latency_ms == pytest.approx(12.5)
    assert e.session_id == "conv-9" and e.target == "https://kb.example.com/a"
    assert e.attributes["gen_ai.tool.call.id"] == "call_7"
    assert e.attributes["otel.convention"] == "gen_ai"


def test_tool_name_falls_back_to_the_span_name_and_is_required(mapper: SpanMapper) -> None:
    span = record({"gen_ai.operation.name": "execute_tool"}, name="execute_tool get_weather")
    assert event(mapper, span).action == "get_weather"
    bare = record({"gen_ai.operation.name": "execute_tool"}, name="execute_tool")
    result = mapper.classify(bare)
    assert isinstance(result, Reject) and result.reason == "no_tool_name"


def test_identical_arguments_share_a_target_without_their_content(mapper: SpanMapper) -> None:
    args = '{"query": "secret customer name"}'
    a = event(mapper, tool("search", attrs={"gen_ai.tool.call.arguments": args}))
    b = event(mapper, tool("search", attrs={"gen_ai.tool.call.arguments": args}))
    c = event(mapper, tool("search", attrs={"gen_ai.tool.call.arguments": '{"query": "x"}'}))
    assert a.target == b.target != c.target
    assert a.target is not None and a.target.startswith("args:") and "secret" not in a.target


@pytest.mark.parametrize("operation", ["chat", "text_completion", "embeddings", "generate_content"])
def test_inference_spans_become_llm_events_priced_from_the_table(
    mapper: SpanMapper, operation: str
) -> None:
    span = record(
        {
            "gen_ai.operation.name": operation,
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.usage.input_tokens": 1_000_000,
            "gen_ai.usage.output_tokens": 100_000,
            "gen_ai.provider.name": "openai",
        }
    )
    e = event(mapper, span)
    assert (e.kind, e.action, e.model) == ("llm", operation, "gpt-4o-2024-08-06")
    assert (e.input_tokens, e.output_tokens) == (1_000_000, 100_000)
    assert e.cost_usd == pytest.approx(2.5 + 1.0)
    assert e.attributes["cost_source"] == "price_table"
    assert e.attributes["gen_ai.provider.name"] == "openai"


def test_a_cost_on_the_span_wins_and_unknown_models_cost_zero(mapper: SpanMapper) -> None:
    priced = record(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 10,
            "gen_ai.usage.cost": 0.25,
        }
    )
    e = event(mapper, priced)
    assert e.cost_usd == 0.25 and e.attributes["cost_source"] == "span"
    unknown = record(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "my-finetune",
            "gen_ai.usage.input_tokens": 5,
        }
    )
    assert event(mapper, unknown).cost_usd == 0.0
    assert mapper.unpriced == 1


def test_older_token_names_count_too(mapper: SpanMapper) -> None:
    span = record(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.prompt_tokens": 200,
            "gen_ai.usage.completion_tokens": 20,
        }
    )
    e = event(mapper, span)
    assert (e.input_tokens, e.output_tokens) == (200, 20)


def test_status_and_error_type_make_an_error_event(mapper: SpanMapper) -> None:
    failed = event(mapper, tool("deploy", status=2, message="exit 1"))
    assert failed.status == "error" and failed.error == "exit 1"
    typed = event(mapper, tool("deploy", attrs={"error.type": "TimeoutError"}))
    assert typed.status == "error" and typed.error == "TimeoutError"
    ok = event(mapper, tool("deploy", status=1))
    assert ok.status == "ok" and ok.error is None


def test_invoke_agent_is_an_anchor_without_tokens(mapper: SpanMapper) -> None:
    span = agent_span("bot-1", attrs={"gen_ai.usage.input_tokens": 9000})
    mapped = mapper.classify(span)
    assert isinstance(mapped, Mapped) and mapped.anchor and mapped.agent == "bot-1"
    e = event(mapper, span)
    assert (e.kind, e.action, e.input_tokens) == ("other", "invoke_agent", 0)


@pytest.mark.parametrize(
    ("attrs", "kind", "action"),
    [
        ({"openinference.span.kind": "TOOL", "tool.name": "lookup"}, "tool", "lookup"),
        ({"openinference.span.kind": "LLM", "llm.model_name": "claude-sonnet-4"}, "llm", "chat"),
        ({"openinference.span.kind": "EMBEDDING"}, "llm", "embeddings"),
        ({"openinference.span.kind": "AGENT", "agent.name": "Planner"}, "other", "invoke_agent"),
        ({"openinference.span.kind": "RETRIEVER"}, "api", "retrieve"),
    ],
)
def test_openinference_spans(
    mapper: SpanMapper, attrs: dict[str, Any], kind: str, action: str
) -> None:
    e = event(mapper, record(attrs))
    assert (e.kind, e.action, e.attributes["otel.convention"]) == (kind, action, "openinference")


def test_openinference_llm_tokens_and_cost(mapper: SpanMapper) -> None:
    span = record(
        {
            "openinference.span.kind": "LLM",
            "llm.model_name": "claude-sonnet-4-20250514",
            "llm.token_count.prompt": 2000,
            "llm.token_count.completion": 100,
            "session.id": "s-1",
        }
    )
    e = event(mapper, span)
    assert (e.model, e.input_tokens, e.output_tokens, e.session_id) == (
        "claude-sonnet-4-20250514",
        2000,
        100,
        "s-1",
    )
    assert e.cost_usd == pytest.approx((2000 * 3.0 + 100 * 15.0) / 1e6)
    agent = mapper.classify(record({"openinference.span.kind": "AGENT", "agent.name": "Planner"}))
    assert isinstance(agent, Mapped) and agent.anchor and agent.agent == "Planner"


@pytest.mark.parametrize(
    ("attrs", "reason"),
    [
        ({"http.request.method": "GET"}, "not_genai"),
        ({"openinference.span.kind": "CHAIN"}, "not_an_action"),
        ({"openinference.span.kind": "GUARDRAIL"}, "not_an_action"),
    ],
)
def test_spans_that_are_not_actions_are_skipped(
    mapper: SpanMapper, attrs: dict[str, Any], reason: str
) -> None:
    assert mapper.classify(record(attrs)) == Skip(reason)


def test_bad_ids_and_missing_times_are_rejected(mapper: SpanMapper) -> None:
    zero = tool("x", trace="0" * 32)
    short = tool("x", span="abc")
    timeless = tool("x", start=0, duration_ms=0)
    for span, reason in ((zero, "bad_ids"), (short, "bad_ids"), (timeless, "no_time")):
        result = mapper.classify(span)
        assert isinstance(result, Reject) and result.reason == reason


def test_agent_names_become_valid_ids() -> None:
    assert agent_key("Support Agent") == "Support-Agent"
    assert agent_key("ops/bot#1") == "ops-bot-1"
    assert agent_key("..") != ".." and agent_key("..").startswith("agent-")
    assert agent_key("a" * 200) != agent_key("a" * 201) and len(agent_key("a" * 200)) == 128


scalars = st.one_of(
    st.text(max_size=300),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
keys = st.sampled_from(
    [
        "gen_ai.tool.name",
        "gen_ai.request.model",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.cost",
        "gen_ai.conversation.id",
        "gen_ai.agent.id",
        "gen_ai.agent.name",
        "error.type",
        "agentwatch.target",
        "agentwatch.risk",
        "url.full",
        "gen_ai.tool.call.id",
        "gen_ai.provider.name",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    operation=st.sampled_from(["execute_tool", "chat", "invoke_agent", "weird\x00op", "x" * 300]),
    attrs=st.dictionaries(keys, scalars, max_size=10),
    name=st.text(max_size=200),
    agent=st.text(min_size=1, max_size=300),
    status=st.integers(0, 2),
    message=st.text(max_size=3000),
    fleet=st.one_of(st.none(), st.text(max_size=300)),
)
def test_whatever_a_span_holds_the_event_is_valid_or_the_span_rejected(
    operation: str,
    attrs: dict[str, Any],
    name: str,
    agent: str,
    status: int,
    message: str,
    fleet: str | None,
) -> None:
    mapper = SpanMapper(load_prices())
    span = record(
        {"gen_ai.operation.name": operation, **attrs},
        name=name,
        status=status,
        message=message,
        fleet=fleet,
    )
    result = mapper.classify(span)
    if isinstance(result, Reject):
        return
    assert isinstance(result, Mapped)
    payload = mapper.event(span, result, agent_key(agent), 64 * 1024)
    if isinstance(payload, Reject):
        pytest.fail(f"a mappable span was rejected: {payload}")
    decode_event(payload)  # what the worker accepts
