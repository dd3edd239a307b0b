"""Spans as the receiver reads them, and the attribute names it maps.

Decoding keeps, of each span's attributes, only those in :data:`WANTED` (the OpenTelemetry
GenAI conventions, OpenInference's, and a few of agentwatch's own): mapping needs nothing
else, and a span held while its trace is joined stays small.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "ANCHOR_OPERATIONS",
    "LLM_OPERATIONS",
    "TARGET_ATTRIBUTES",
    "WANTED",
    "Resource",
    "Scalar",
    "SpanRecord",
]

Scalar = str | int | float | bool

# OpenTelemetry GenAI semantic conventions
OPERATION = "gen_ai.operation.name"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
TOOL_ARGUMENTS = "gen_ai.tool.call.arguments"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
PROMPT_TOKENS = "gen_ai.usage.prompt_tokens"  # older name of input_tokens
COMPLETION_TOKENS = "gen_ai.usage.completion_tokens"  # older name of output_tokens
AGENT_ID = "gen_ai.agent.id"
AGENT_NAME = "gen_ai.agent.name"
CONVERSATION_ID = "gen_ai.conversation.id"
PROVIDER = "gen_ai.provider.name"
SYSTEM = "gen_ai.system"  # older name of provider.name
ERROR_TYPE = "error.type"
COST = "gen_ai.usage.cost"  # not in the conventions; some SDKs and gateways set it (USD)

# OpenInference semantic conventions
OI_KIND = "openinference.span.kind"
OI_TOOL_NAME = "tool.name"
OI_MODEL = "llm.model_name"
OI_PROMPT_TOKENS = "llm.token_count.prompt"
OI_COMPLETION_TOKENS = "llm.token_count.completion"
OI_COST = "llm.cost.total"
OI_SESSION = "session.id"
OI_AGENT_NAME = "agent.name"
OI_PROVIDER = "llm.provider"
OI_INPUT = "input.value"

# agentwatch's own, for what neither convention names
AW_TARGET = "agentwatch.target"
AW_RISK = "agentwatch.risk"

TARGET_ATTRIBUTES = (AW_TARGET, "url.full", "file.path", "db.collection.name")
"""Where a tool span's ``target`` comes from, first found wins (then a digest of the call's
arguments, see :mod:`agentwatch.ingest.mapping`)."""

LLM_OPERATIONS = frozenset({"chat", "text_completion", "embeddings", "generate_content"})
"""GenAI operations that are model calls (``kind`` ``llm``)."""
ANCHOR_OPERATIONS = frozenset({"invoke_agent", "create_agent"})
"""GenAI operations whose ``gen_ai.agent.*`` names the agent of the spans below them."""

WANTED = frozenset(
    {
        OPERATION,
        TOOL_NAME,
        TOOL_CALL_ID,
        TOOL_ARGUMENTS,
        REQUEST_MODEL,
        RESPONSE_MODEL,
        INPUT_TOKENS,
        OUTPUT_TOKENS,
        PROMPT_TOKENS,
        COMPLETION_TOKENS,
        AGENT_ID,
        AGENT_NAME,
        CONVERSATION_ID,
        PROVIDER,
        SYSTEM,
        ERROR_TYPE,
        COST,
        OI_KIND,
        OI_TOOL_NAME,
        OI_MODEL,
        OI_PROMPT_TOKENS,
        OI_COMPLETION_TOKENS,
        OI_COST,
        OI_SESSION,
        OI_AGENT_NAME,
        OI_PROVIDER,
        OI_INPUT,
        AW_RISK,
        *TARGET_ATTRIBUTES,
    }
)
"""Span attributes decoding keeps."""


@dataclass(slots=True)
class Resource:
    """What the receiver reads from a span's resource (shared by its spans)."""

    fleet: str | None = None
    agent_id: str | None = None
    agent_name: str | None = None


@dataclass(slots=True)
class SpanRecord:
    """One decoded span: ids as lowercase hex, times in Unix nanoseconds.

    ``status_code`` is OTLP's: 0 unset, 1 ok, 2 error.
    """

    trace_id: str
    span_id: str
    parent_id: str
    name: str
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str
    attributes: dict[str, Scalar]
    resource: Resource = field(default_factory=Resource)
