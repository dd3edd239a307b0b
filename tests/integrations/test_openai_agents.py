"""The OpenAI Agents SDK adapter with the real ``agents`` package and a fake ``Model``.

``Runner.run`` drives an ``Agent`` whose model is :class:`FakeModel` (no network): it asks for
one function tool call, then answers. Like the SDK's own models it reports each call in a
generation span (Chat Completions) or a response span (Responses API) with model and usage.
Trace processors are replaced by the agentwatch processor only (nothing is exported).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any, Literal

import pytest
from agents import (
    Agent,
    FunctionTool,
    ModelResponse,
    Runner,
    ToolInputGuardrailTripwireTriggered,
    function_tool,
    set_trace_processors,
)
from agents.models.interface import Model
from agents.testing import assistant_message, function_call
from agents.tracing import generation_span, response_span
from agents.usage import Usage
from openai.types.responses import Response, ResponseUsage
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

from agentwatch.config import Settings
from agentwatch.integrations.openai_agents import (
    AgentwatchTracingProcessor,
    guard_tools,
    refusal,
    tool_guardrail,
)
from agentwatch.schemas.approvals import (
    ApprovalPolicy,
    ApprovalRequirement,
)
from agentwatch.sdk import AgentHalted, ApprovalDenied, Monitor
from tests.sdk.approvals import answer_approvals, create_approvals_topic
from tests.sdk.test_monitor import agent, control, create_topics, read_actions, write_control

pytestmark = pytest.mark.integration


class FakeModel(Model):
    """Calls ``tool`` with ``args`` once, then answers ``done``; reports usage in a span."""

    def __init__(
        self,
        tool: str,
        args: dict[str, Any],
        *,
        model: str = "gpt-4o-mini-2024-07-18",
        span: Literal["generation", "response"] = "generation",
    ) -> None:
        self.tool = tool
        self.args = args
        self.model = model
        self.span = span
        self.calls = 0

    async def get_response(
        self,
        system_instructions: str | None,
        input: Any,
        model_settings: Any,
        tools: Any,
        output_schema: Any,
        handoffs: Any,
        tracing: Any,
        *,
        previous_response_id: str | None = None,
        conversation_id: str | None = None,
        prompt: Any = None,
        **kwargs: Any,
    ) -> ModelResponse:
        self.calls += 1
        answered = isinstance(input, list) and any(
            isinstance(item, dict) and item.get("type") == "function_call_output" for item in input
        )
        output = (
            [assistant_message("done")]
            if answered
            else [function_call(self.tool, self.args, call_id=f"call-{self.calls}")]
        )
        usage = Usage(requests=1, input_tokens=900, output_tokens=40, total_tokens=940)
        if self.span == "generation":
            span_usage = {"input_tokens": 900, "output_tokens": 40}
            with generation_span(model=self.model, usage=span_usage):
                pass
        else:
            response = Response.model_construct(
                id=f"resp-{self.calls}",
                model=self.model,
                usage=ResponseUsage(
                    input_tokens=900,
                    input_tokens_details=InputTokensDetails(cached_tokens=0, cache_write_tokens=0),
                    output_tokens=40,
                    output_tokens_details=OutputTokensDetails(reasoning_tokens=0),
                    total_tokens=940,
                ),
            )
            with response_span(response=response):
                pass
        return ModelResponse(output=output, usage=usage, response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the tests run without streaming")


class Tools:
    """Real function tools that count their runs."""

    def __init__(self) -> None:
        self.runs = {"send_email": 0, "search": 0, "flaky": 0}

        @function_tool
        def send_email(to: str, body: str) -> str:
            """Send an email."""
            self.runs["send_email"] += 1
            return f"sent to {to}"

        @function_tool
        def search(q: str) -> str:
            """Search the web."""
            self.runs["search"] += 1
            return q.upper()

        @function_tool
        def flaky(q: str) -> str:
            """Always fails."""
            self.runs["flaky"] += 1
            raise ConnectionError("upstream reset")

        self.all: list[FunctionTool] = [send_email, search, flaky]


@pytest.fixture
def only_agentwatch_tracing() -> Iterator[None]:
    """No exporter to OpenAI during the test, and none left behind."""
    set_trace_processors([])
    yield
    set_trace_processors([])


def make_agent(model: FakeModel, tools: Tools) -> Agent[Any]:
    return Agent(name="mailer", instructions="Send mail.", model=model, tools=list(tools.all))


@pytest.mark.usefixtures("only_agentwatch_tracing")
async def test_spans_become_events(settings: Settings) -> None:
    await create_topics(settings)
    agent_id = agent()
    tools = Tools()
    async with Monitor.from_settings(agent_id, "mail", settings=settings) as monitor:
        set_trace_processors(
            [
                AgentwatchTracingProcessor(
                    monitor, risks={"send_email": "high"}, target_args={"send_email": "to"}
                )
            ]
        )
        guard_tools(tools.all, tool_guardrail(monitor))
        args = {"to": "ceo@example.com", "body": "hi"}
        result = await Runner.run(make_agent(FakeModel("send_email", args), tools), "mail")
        assert result.final_output == "done"
        # a failing tool: the SDK tells the model about the error; the event says "error"
        flaky = FakeModel("flaky", {"q": "x"}, model="gpt-4o-2024-08-06", span="response")
        result = await Runner.run(make_agent(flaky, tools), "try")
        assert result.final_output == "done"
        assert await monitor.flush(5.0)

    events = await read_actions(settings, 6)
    assert len(events) == 6
    llm = [e for e in events if e.kind == "llm"]
    assert [e.model for e in llm] == ["gpt-4o-mini-2024-07-18"] * 2 + ["gpt-4o-2024-08-06"] * 2
    for event in llm:
        assert (event.action, event.status) == ("chat", "ok")
        assert (event.input_tokens, event.output_tokens) == (900, 40)
        assert event.agent_id == agent_id and event.fleet == "mail"
    assert llm[0].cost_usd == pytest.approx((900 * 0.15 + 40 * 0.60) / 1e6)
    assert llm[-1].cost_usd == pytest.approx((900 * 2.50 + 40 * 10.00) / 1e6)
    ok, failed = (e for e in events if e.kind == "tool")
    assert (ok.action, ok.status, ok.risk, ok.target) == (
        "send_email",
        "ok",
        "high",
        "ceo@example.com",
    )
    assert ok.latency_ms > 0
    assert (failed.action, failed.status) == ("flaky", "error")
    # the SDK's span error (it redacts the exception's details in spans)
    assert failed.error is not None and failed.error.startswith("Error running tool")
    assert tools.runs == {"send_email": 1, "search": 0, "flaky": 1}


@pytest.mark.usefixtures("only_agentwatch_tracing")
async def test_halt_stops_the_agent_before_its_next_tool_call(settings: Settings) -> None:
    await create_topics(settings)
    agent_id = agent()
    tools = Tools()
    async with Monitor.from_settings(agent_id, settings=settings) as monitor:
        set_trace_processors([AgentwatchTracingProcessor(monitor)])
        guard_tools(tools.all, tool_guardrail(monitor, target_args={"send_email": "to"}))
        args = {"to": "a@example.com", "body": "hi"}
        await Runner.run(make_agent(FakeModel("send_email", args), tools), "mail")
        assert tools.runs["send_email"] == 1
        halt = control(agent_id, 1, halted=True, reason="mail loop", incident_id="inc-5")
        produced_at = await write_control(settings, agent_id, halt)
        with pytest.raises(ToolInputGuardrailTripwireTriggered) as raised:
            while True:  # the agent keeps working; the loop is the measurement
                before = tools.runs["send_email"]
                await Runner.run(make_agent(FakeModel("send_email", args), tools), "mail")
                assert time.perf_counter() - produced_at < 2.0, "halt not enforced"
        latency = time.perf_counter() - produced_at
        print(f"halt-to-refusal latency (OpenAI Agents SDK): {latency * 1000:.1f} ms")
        assert latency < 1.0
        assert tools.runs["send_email"] == before, "the tool ran although the agent is halted"
        denial = refusal(raised.value)
        assert isinstance(denial, AgentHalted)
        assert (denial.agent_id, denial.incident_id) == (agent_id, "inc-5")
        assert refusal(ValueError("unrelated")) is None
        assert await monitor.flush(5.0)
        sent = monitor.stats["sent"]

    events = await read_actions(settings, sent)
    tool_events = [e for e in events if e.kind == "tool"]
    assert [e.status for e in tool_events] == ["ok"] * tools.runs["send_email"] + ["denied"]
    denied = tool_events[-1]
    assert (denied.action, denied.target) == ("send_email", "a@example.com")
    assert denied.error is not None and "AgentHalted" in denied.error
    assert denied.attributes.get("incident_id") == "inc-5"


@pytest.mark.usefixtures("only_agentwatch_tracing")
async def test_revoke_blocks_only_that_tool(settings: Settings) -> None:
    await create_topics(settings)
    agent_id = agent()
    tools = Tools()
    async with Monitor.from_settings(agent_id, settings=settings) as monitor:
        set_trace_processors([AgentwatchTracingProcessor(monitor)])
        assert guard_tools(tools.all, tool_guardrail(monitor, on_revoked="reject")) == 3
        assert guard_tools(tools.all, tool_guardrail(monitor)) == 0  # once per tool
        revoke = control(agent_id, 1, revoked=["send_email"], reason="spam burst")
        await write_control(settings, agent_id, revoke)
        deadline = time.monotonic() + 1.0
        while monitor.allows("send_email"):
            assert time.monotonic() < deadline, "revoke not applied within 1 s"
            await asyncio.sleep(0.005)
        mail = FakeModel("send_email", {"to": "b@example.com", "body": "hi"})
        result = await Runner.run(make_agent(mail, tools), "mail")
        # "reject": the model is told and the run goes on; the tool did not run
        assert result.final_output == "done"
        outputs = [
            item.output
            for item in result.new_items
            if getattr(item, "type", "") == "tool_call_output_item"
        ]
        assert len(outputs) == 1 and "permission revoked by agentwatch" in str(outputs[0])
        assert tools.runs["send_email"] == 0
        result = await Runner.run(make_agent(FakeModel("search", {"q": "ok"}), tools), "look")
        assert result.final_output == "done"
        assert tools.runs["search"] == 1
        assert await monitor.flush(5.0)
        sent = monitor.stats["sent"]

    events = await read_actions(settings, sent)
    assert [(e.action, e.status) for e in events if e.kind == "tool"] == [
        ("send_email", "denied"),
        ("search", "ok"),
    ]
    denied = next(e for e in events if e.status == "denied")
    assert denied.error is not None and "PermissionRevoked" in denied.error
    assert isinstance(denied.attributes.get("control_version"), int)  # the revoking record


@pytest.mark.usefixtures("only_agentwatch_tracing")
async def test_guardrail_waits_for_approval(settings: Settings, control_keys: Any) -> None:
    await create_topics(settings)
    await create_approvals_topic(settings)
    agent_id = agent()
    tools = Tools()
    policy = ApprovalPolicy(
        requirements=[ApprovalRequirement(name="mail", actions=["send_email"], timeout_s=10)]
    )
    async with Monitor.from_settings(agent_id, settings=settings, approvals=policy) as monitor:
        set_trace_processors([AgentwatchTracingProcessor(monitor)])
        guard_tools(tools.all, tool_guardrail(monitor, target_args={"send_email": "to"}))
        worker = asyncio.create_task(
            answer_approvals(
                settings, control_keys.signer, [("approved", "carol"), ("denied", "dave")]
            )
        )
        args = {"to": "a@example.com", "body": "hi"}
        await Runner.run(make_agent(FakeModel("send_email", args), tools), "mail")
        assert tools.runs["send_email"] == 1
        with pytest.raises(ToolInputGuardrailTripwireTriggered) as raised:
            await Runner.run(make_agent(FakeModel("send_email", args), tools), "mail")
        assert tools.runs["send_email"] == 1, "a denied call ran"
        denial = refusal(raised.value)
        assert isinstance(denial, ApprovalDenied) and denial.decided_by == "dave"
        # a tool the policy does not name runs without asking
        await Runner.run(make_agent(FakeModel("search", {"q": "x"}), tools), "search")
        requests = await asyncio.wait_for(worker, 10)
        assert [(r.action, r.target) for r in requests] == [("send_email", "a@example.com")] * 2
        assert await monitor.flush(5.0)
        sent = monitor.stats["sent"]

    tool_events = [e for e in await read_actions(settings, sent) if e.kind == "tool"]
    assert [(e.action, e.status, e.approved_by) for e in tool_events] == [
        ("send_email", "ok", "carol"),
        ("send_email", "denied", None),
        ("search", "ok", None),
    ]
    assert tool_events[0].attributes["approval_id"] == requests[0].request_id
