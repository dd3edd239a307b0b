"""Unit tests of the OpenAI Agents SDK adapter's edges, without a broker or a model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from agents import Agent, set_trace_processors
from agents.tool_context import ToolContext
from agents.tool_guardrails import ToolInputGuardrailData
from agents.tracing import custom_span, function_span, generation_span, trace

from agentwatch.integrations.openai_agents import (
    AgentwatchTracingProcessor,
    guard_tools,
    tool_guardrail,
)
from agentwatch.schemas import ControlState
from agentwatch.sdk import PermissionRevoked
from tests.integrations.test_handler_units import Recording


@pytest.fixture
def processor() -> Iterator[AgentwatchTracingProcessor]:
    """A processor over a :class:`Recording` monitor, the only one for the test."""
    recorder = AgentwatchTracingProcessor(Recording(), target_args={"fetch": "url"})
    set_trace_processors([recorder])
    yield recorder
    set_trace_processors([])


def events(processor: AgentwatchTracingProcessor) -> list[tuple[str, str, str]]:
    monitor = processor.monitor
    assert isinstance(monitor, Recording)
    return [(e.kind, e.action, e.status) for e in monitor.events]


async def test_guardrail_answers(processor: AgentwatchTracingProcessor) -> None:
    monitor = processor.monitor
    state = ControlState(
        agent_id="bot-1", revoked=["send_email"], updated_at=datetime.now(UTC), updated_by="t"
    )
    monitor.control.apply_record(  # what the control follower does with a record
        "agentwatch.control", 0, 0, monitor.control.key, state.model_dump_json().encode()
    )
    context = ToolContext(
        context=None,
        tool_name="send_email",
        tool_call_id="c1",
        tool_arguments=json.dumps({"to": "x@example.com"}),
    )
    data = ToolInputGuardrailData(context=context, agent=Agent(name="a", tools=[]))
    raised = await tool_guardrail(monitor).run(data)
    assert raised.behavior["type"] == "raise_exception"
    assert isinstance(raised.output_info, PermissionRevoked)
    rejected = await tool_guardrail(monitor, on_revoked="reject").run(data)
    assert rejected.behavior["type"] == "reject_content"
    assert "agentwatch agents grant bot-1 send_email" in rejected.behavior["message"]
    context.tool_name = "search"
    assert (await tool_guardrail(monitor).run(data)).behavior["type"] == "allow"
    assert events(processor) == [("tool", "send_email", "denied")] * 2
    with pytest.raises(ValueError, match="on_revoked"):
        tool_guardrail(monitor, on_revoked="ignore")  # type: ignore[arg-type]
    assert guard_tools([object()], tool_guardrail(monitor)) == 0  # type: ignore[list-item]


def test_spans_outside_actions_are_ignored_and_odd_ones_do_not_raise(
    processor: AgentwatchTracingProcessor, caplog: pytest.LogCaptureFixture
) -> None:
    with trace("units"):
        with custom_span("turn", {"usage": {"input_tokens": 5}}):
            pass
        with function_span("fetch", input="https://example.com/plain"):
            pass
        with generation_span(model=None, usage={"input_tokens": "many"}):
            pass
        span = function_span("broken")
        span.start()
        span.finish()  # recorded once
        span._ended_at = "not a time"  # type: ignore[attr-defined]
        processor.on_span_end(span)  # again, unreadable: logged, not raised, not recorded
    assert events(processor) == [
        ("tool", "fetch", "ok"),
        ("llm", "chat", "ok"),
        ("tool", "broken", "ok"),
    ]
    assert "recording a tool span failed" in caplog.text
    monitor = processor.monitor
    assert isinstance(monitor, Recording)
    tool_event, llm_event, _ = monitor.events
    assert tool_event.target == "https://example.com/plain"
    assert (llm_event.model, llm_event.input_tokens, llm_event.cost_usd) == ("unknown", 0, 0.0)
