"""Tests of the framework adapters (LangChain, OpenAI Agents SDK) with their real packages."""
