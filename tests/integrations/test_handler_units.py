"""Unit tests of the LangChain handler's edges, without a broker.

:class:`Recording` is a real :class:`~agentwatch.sdk.Monitor` (not started: events wait in its
buffer) that also keeps each event it builds, so the handler's output can be inspected.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.outputs import Generation, LLMResult
from langchain_core.tools import ToolException, tool

from agentwatch.integrations.langchain import AgentwatchCallbackHandler
from agentwatch.schemas import ActionEvent, ControlState
from agentwatch.sdk import Monitor


class Recording(Monitor):
    """A monitor that keeps the events it emits."""

    def __init__(self) -> None:
        super().__init__("bot-1", "units")
        self.events: list[ActionEvent] = []

    def emit(self, action: str, **fields: Any) -> ActionEvent | None:
        event = super().emit(action, **fields)
        assert event is not None, "the handler built an invalid event"
        self.events.append(event)
        return event


def halt(monitor: Monitor) -> None:
    state = ControlState(
        agent_id="bot-1", halted=True, updated_at=datetime.now(UTC), updated_by="t"
    )
    monitor.control.apply_record(  # what the control follower does with a record
        "agentwatch.control", 0, 0, monitor.control.key, state.model_dump_json().encode()
    )


def test_text_model_usage_from_llm_output() -> None:
    monitor = Recording()
    handler = AgentwatchCallbackHandler(monitor)
    run_id = uuid4()
    handler.on_llm_start({"kwargs": {"model_name": "gpt-3.5-turbo"}}, ["hi"], run_id=run_id)
    result = LLMResult(
        generations=[[Generation(text="hello")]],
        llm_output={
            "token_usage": {"prompt_tokens": 1000, "completion_tokens": 100},
            "model_name": "gpt-3.5-turbo-0125",
        },
    )
    handler.on_llm_end(result, run_id=run_id)
    (event,) = monitor.events
    assert (event.kind, event.action, event.model) == (
        "llm",
        "text_completion",
        "gpt-3.5-turbo-0125",
    )
    assert (event.input_tokens, event.output_tokens) == (1000, 100)
    assert event.cost_usd == pytest.approx((1000 * 0.50 + 100 * 1.50) / 1e6)
    handler.on_llm_end(result, run_id=uuid4())  # an end without a start: ignored
    assert len(monitor.events) == 1


def test_failed_model_call_and_unknown_model() -> None:
    monitor = Recording()
    handler = AgentwatchCallbackHandler(monitor)
    model = GenericFakeChatModel(messages=iter([]))  # nothing to answer: raises
    with pytest.raises(StopIteration):
        model.invoke("hi", config={"callbacks": [handler]})
    (event,) = monitor.events
    assert (event.kind, event.action, event.status, event.model) == (
        "llm",
        "chat",
        "error",
        "unknown",
    )
    assert event.error == "StopIteration"
    assert event.cost_usd == 0.0


def test_handled_tool_error_is_an_error_event() -> None:
    monitor = Recording()
    handler = AgentwatchCallbackHandler(monitor, target_args={"fetch": "url"})

    @tool
    def fetch(url: str) -> str:
        """Fetch a page."""
        raise ToolException("404 for " + url)

    fetch.handle_tool_error = True  # the error becomes the tool's answer to the model
    call = {"name": "fetch", "args": {"url": "https://example.com/x"}, "id": "c1"}
    out = fetch.invoke({**call, "type": "tool_call"}, config={"callbacks": [handler]})
    assert out.status == "error" and "404 for https://example.com/x" in out.content
    (event,) = monitor.events
    assert (event.action, event.status, event.target) == ("fetch", "error", "https://example.com/x")
    assert event.error == "404 for https://example.com/x"


def test_single_string_input_is_the_target() -> None:
    monitor = Recording()
    handler = AgentwatchCallbackHandler(monitor, target_args={"fetch": "url"})

    @tool
    def fetch(url: str) -> str:
        """Fetch a page."""
        return url[-1]

    assert fetch.invoke("https://example.com/x", config={"callbacks": [handler]}) == "x"
    (event,) = monitor.events
    assert (event.action, event.status, event.target) == ("fetch", "ok", "https://example.com/x")
    assert event.latency_ms > 0


def test_enforce_false_only_records() -> None:
    monitor = Recording()
    halt(monitor)
    runs = 0

    @tool
    def search(q: str) -> str:
        """Search."""
        nonlocal runs
        runs += 1
        return q

    observing = AgentwatchCallbackHandler(monitor, enforce=False)
    assert search.invoke({"q": "a"}, config={"callbacks": [observing]}) == "a"
    enforcing = AgentwatchCallbackHandler(monitor)
    with pytest.raises(RuntimeError, match="is halted by agentwatch"):
        search.invoke({"q": "b"}, config={"callbacks": [enforcing]})
    assert runs == 1
    assert [(e.action, e.status) for e in monitor.events] == [
        ("search", "ok"),
        ("search", "denied"),
    ]


def test_bad_risk_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="risks must be one of"):
        AgentwatchCallbackHandler(Recording(), risks={"x": "extreme"})  # type: ignore[dict-item]
