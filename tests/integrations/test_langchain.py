"""The LangChain callback handler with langchain-core's fake chat model and real ``@tool`` s.

A small tool-calling agent loop (model ``ainvoke`` -> tool calls -> tool ``ainvoke`` -> model)
runs with the handler in its callbacks, no network. Events are read back from the embedded
broker's actions topic; halts and revocations are signed control records, as a worker writes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, tool

from agentwatch.config import Settings
from agentwatch.integrations.langchain import AgentwatchCallbackHandler
from agentwatch.schemas.approvals import ApprovalPolicy, ApprovalRequirement
from agentwatch.sdk import AgentHalted, ApprovalDenied, Monitor, PermissionRevoked, SyncMonitor
from tests.sdk.approvals import answer_approvals, create_approvals_topic
from tests.sdk.test_monitor import agent, control, create_topics, read_actions, write_control

pytestmark = pytest.mark.integration

USAGE = {"input_tokens": 1200, "output_tokens": 80, "total_tokens": 1280}


def tool_call_messages(name: str, args: dict[str, Any]) -> Iterator[AIMessage]:
    """An endless model script: always ask for one call of ``name`` with ``args``."""
    n = 0
    while True:
        n += 1
        yield AIMessage(
            content="",
            tool_calls=[{"name": name, "args": args, "id": f"call-{n}"}],
            usage_metadata=USAGE,  # type: ignore[arg-type]
            response_metadata={"model_name": "gpt-4o-mini-2024-07-18"},
        )


class Tools:
    """Real LangChain tools that count their runs."""

    def __init__(self) -> None:
        self.runs: dict[str, int] = {"send_email": 0, "search": 0, "flaky": 0}

        @tool
        def send_email(to: str, body: str) -> str:
            """Send an email."""
            self.runs["send_email"] += 1
            return f"sent to {to}"

        @tool
        def search(q: str) -> str:
            """Search the web."""
            self.runs["search"] += 1
            return q.upper()

        @tool
        def flaky(q: str) -> str:
            """Always fails."""
            self.runs["flaky"] += 1
            raise ConnectionError("upstream reset")

        self.by_name: dict[str, BaseTool] = {t.name: t for t in (send_email, search, flaky)}


async def agent_step(
    model: GenericFakeChatModel, tools: Tools, messages: list[BaseMessage], config: RunnableConfig
) -> None:
    """One turn of a tool-calling agent: ask the model, run the tools it calls."""
    reply = await model.ainvoke(messages, config=config)
    assert isinstance(reply, AIMessage)
    messages.append(reply)
    for call in reply.tool_calls:
        messages.append(await tools.by_name[call["name"]].ainvoke(call, config=config))


async def test_tool_and_model_calls_become_events(settings: Settings) -> None:
    await create_topics(settings)
    agent_id = agent()
    tools = Tools()
    script = iter(
        [
            next(tool_call_messages("send_email", {"to": "ceo@example.com", "body": "hi"})),
            next(tool_call_messages("flaky", {"q": "x"})),
            AIMessage(
                content="done",
                usage_metadata=USAGE,  # type: ignore[arg-type]
                response_metadata={"model_name": "gpt-4o-mini-2024-07-18"},
            ),
        ]
    )
    model = GenericFakeChatModel(messages=script)
    async with Monitor.from_settings(agent_id, "mail", settings=settings) as monitor:
        handler = AgentwatchCallbackHandler(
            monitor, risks={"send_email": "high"}, target_args={"send_email": "to"}
        )
        config: RunnableConfig = {"callbacks": [handler]}
        messages: list[BaseMessage] = [HumanMessage("mail the ceo")]
        await agent_step(model, tools, messages, config)
        with pytest.raises(ConnectionError, match="upstream reset"):
            await agent_step(model, tools, messages, config)
        final = await model.ainvoke(messages, config=config)
        assert final.content == "done"
        assert await monitor.flush(5.0)

    events = await read_actions(settings, 5)
    assert len(events) == 5
    llm = [e for e in events if e.kind == "llm"]
    assert len(llm) == 3
    for event in llm:
        assert (event.action, event.model, event.status) == ("chat", "gpt-4o-mini-2024-07-18", "ok")
        assert (event.input_tokens, event.output_tokens) == (1200, 80)
        assert event.cost_usd == pytest.approx((1200 * 0.15 + 80 * 0.60) / 1e6)
        assert event.agent_id == agent_id and event.fleet == "mail"
    ok, failed = (e for e in events if e.kind == "tool")
    assert (ok.action, ok.status, ok.risk, ok.target) == (
        "send_email",
        "ok",
        "high",
        "ceo@example.com",
    )
    assert ok.latency_ms > 0
    assert (failed.action, failed.status, failed.risk, failed.target) == (
        "flaky",
        "error",
        None,
        None,
    )
    assert failed.error == "ConnectionError: upstream reset"
    assert tools.runs == {"send_email": 1, "search": 0, "flaky": 1}


async def test_halt_refuses_the_next_tool_call_before_it_runs(settings: Settings) -> None:
    await create_topics(settings)
    agent_id = agent()
    tools = Tools()
    model = GenericFakeChatModel(
        messages=tool_call_messages("send_email", {"to": "a@example.com", "body": "hi"})
    )
    async with Monitor.from_settings(agent_id, settings=settings) as monitor:
        handler = AgentwatchCallbackHandler(monitor, target_args={"send_email": "to"})
        config: RunnableConfig = {"callbacks": [handler]}
        messages: list[BaseMessage] = [HumanMessage("spam everyone")]
        await agent_step(model, tools, messages, config)
        assert tools.runs["send_email"] == 1
        halt = control(agent_id, 1, halted=True, reason="mail loop", incident_id="inc-4")
        produced_at = await write_control(settings, agent_id, halt)
        with pytest.raises(AgentHalted) as raised:  # the agent loop is the measurement
            while True:
                before = tools.runs["send_email"]
                await agent_step(model, tools, messages, config)
                assert time.perf_counter() - produced_at < 2.0, "halt not enforced"
        latency = time.perf_counter() - produced_at
        print(f"halt-to-refusal latency (LangChain): {latency * 1000:.1f} ms")
        assert latency < 1.0
        assert tools.runs["send_email"] == before, "the tool ran although the agent is halted"
        assert raised.value.incident_id == "inc-4"
        assert f"agentwatch agents resume {agent_id}" in str(raised.value)
        assert await monitor.flush(5.0)
        sent = monitor.stats["sent"]

    events = await read_actions(settings, sent)
    denied = [e for e in events if e.status == "denied"]
    assert len(denied) == 1
    assert (denied[0].action, denied[0].target) == ("send_email", "a@example.com")
    assert denied[0].error is not None and "AgentHalted" in denied[0].error
    assert denied[0].attributes.get("incident_id") == "inc-4"
    tool_events = [e for e in events if e.kind == "tool"]
    assert [e.status for e in tool_events].count("ok") == tools.runs["send_email"]


def test_revoke_blocks_only_that_tool_in_a_sync_agent(settings: Settings) -> None:
    import asyncio

    asyncio.run(create_topics(settings))
    agent_id = agent()
    tools = Tools()
    send, search = tools.by_name["send_email"], tools.by_name["search"]
    with SyncMonitor.from_settings(agent_id, settings=settings) as monitor:
        handler = AgentwatchCallbackHandler(monitor)
        config: RunnableConfig = {"callbacks": [handler]}
        assert send.invoke({"to": "a@example.com", "body": "hi"}, config=config) == (
            "sent to a@example.com"
        )
        revoke = control(agent_id, 1, revoked=["send_email"], reason="spam burst")
        asyncio.run(write_control(settings, agent_id, revoke))
        deadline = time.monotonic() + 1.0
        while monitor.allows("send_email"):
            assert time.monotonic() < deadline, "revoke not applied within 1 s"
            time.sleep(0.005)
        with pytest.raises(PermissionRevoked, match="send_email"):
            send.invoke({"to": "b@example.com", "body": "hi"}, config=config)
        assert tools.runs["send_email"] == 1
        assert search.invoke({"q": "still allowed"}, config=config) == "STILL ALLOWED"
        assert tools.runs["search"] == 1
        assert monitor.flush(5.0)

    events = asyncio.run(read_actions(settings, 3))
    assert [(e.action, e.status) for e in events] == [
        ("send_email", "ok"),
        ("send_email", "denied"),
        ("search", "ok"),
    ]


def test_sync_agent_waits_for_approval(settings: Settings, control_keys: Any) -> None:
    import asyncio
    import threading

    asyncio.run(create_topics(settings))
    asyncio.run(create_approvals_topic(settings))
    agent_id = agent()
    tools = Tools()
    send, search = tools.by_name["send_email"], tools.by_name["search"]
    policy = ApprovalPolicy(
        requirements=[ApprovalRequirement(name="mail", actions=["send_email"], timeout_s=10)]
    )
    answered: list[Any] = []
    worker = threading.Thread(
        target=lambda: answered.extend(
            asyncio.run(
                answer_approvals(
                    settings, control_keys.signer, [("approved", "carol"), ("denied", "dave")]
                )
            )
        )
    )
    worker.start()
    with SyncMonitor.from_settings(agent_id, settings=settings, approvals=policy) as monitor:
        handler = AgentwatchCallbackHandler(monitor, target_args={"send_email": "to"})
        config: RunnableConfig = {"callbacks": [handler]}
        assert search.invoke({"q": "no approval"}, config=config) == "NO APPROVAL"
        assert send.invoke({"to": "a@example.com", "body": "hi"}, config=config) == (
            "sent to a@example.com"
        )
        with pytest.raises(ApprovalDenied, match="approval denied by dave"):
            send.invoke({"to": "b@example.com", "body": "hi"}, config=config)
        assert tools.runs["send_email"] == 1
        assert monitor.flush(5.0)
    worker.join(10)
    assert [r.target for r in answered] == ["a@example.com", "b@example.com"]

    events = asyncio.run(read_actions(settings, 3))
    assert [(e.action, e.status, e.approved_by) for e in events] == [
        ("search", "ok", None),
        ("send_email", "ok", "carol"),
        ("send_email", "denied", None),
    ]
    assert events[1].attributes["approval_id"] == answered[0].request_id
