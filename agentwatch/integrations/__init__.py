"""Framework adapters: watch and stop agents built on LangChain or the OpenAI Agents SDK.

Each adapter drives an agentwatch :class:`~agentwatch.sdk.Monitor` (or
:class:`~agentwatch.sdk.SyncMonitor`) from the framework's own hooks: one ``ActionEvent`` per
tool and model call, and a halted agent's or a revoked tool's call refused before the tool
runs. Install the extra of the framework you use and import its module:

- :mod:`agentwatch.integrations.langchain` (``agentwatch[langchain]``): a LangChain callback
  handler.
- :mod:`agentwatch.integrations.openai_agents` (``agentwatch[openai-agents]``): a tracing
  processor and a tool input guardrail for the OpenAI Agents SDK.

:mod:`~agentwatch.integrations.common` holds what both share. docs/integrations.md has the
usage and what is and is not enforced.
"""

__all__: list[str] = []
