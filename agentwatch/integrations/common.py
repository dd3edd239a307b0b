"""What the framework adapters share: which tool is how risky, its target, a model's price.

Pure logic, no framework import: :class:`ToolPolicy` names each tool's declared risk and the
argument that is its ``target``; :class:`Pricing` prices a model call from the price table
the OTLP receiver ships (:mod:`agentwatch.ingest.prices`) when the framework reports tokens
but no cost.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from agentwatch.ingest.prices import PriceTable, load_prices
from agentwatch.sdk._support import RISKS, Risk, clip

__all__ = ["Pricing", "ToolPolicy", "guarded", "tokens_of"]

log = logging.getLogger("agentwatch.integrations")

T = TypeVar("T")

TARGET_LIMIT = 1024
"""Longest ``target`` text of an event (longer values are clipped)."""


class ToolPolicy:
    """Per-tool risk and target argument, by tool name.

    Parameters
    ----------
    risks
        Tool name to declared risk (``low`` ``medium`` ``high`` ``critical``); tools not named
        have no risk.
    target_args
        Tool name to the name of its argument whose value is the event's ``target`` (a path,
        URL, table or recipient). A tool whose input is a single string (not named arguments)
        uses that string when it is named here with any argument name.

    Examples
    --------
    >>> policy = ToolPolicy(risks={"send_email": "high"}, target_args={"send_email": "to"})
    >>> policy.risk("send_email"), policy.risk("search")
    ('high', None)
    >>> policy.target("send_email", {"to": "ceo@example.com", "body": "hi"})
    'ceo@example.com'
    >>> policy.target("send_email", '{"to": "cfo@example.com"}')
    'cfo@example.com'
    >>> policy.target("search", {"q": "kafka"}) is None
    True
    """

    def __init__(
        self,
        risks: Mapping[str, Risk] | None = None,
        target_args: Mapping[str, str] | None = None,
    ) -> None:
        bad = {name: risk for name, risk in (risks or {}).items() if risk not in RISKS}
        if bad:
            raise ValueError(f"risks must be one of {sorted(RISKS)}, got {bad}")
        self.risks: dict[str, Risk] = dict(risks or {})
        self.target_args: dict[str, str] = dict(target_args or {})

    def risk(self, tool: str) -> Risk | None:
        """The declared risk of ``tool``, or ``None``."""
        return self.risks.get(tool)

    def target(self, tool: str, arguments: Mapping[str, Any] | str | None) -> str | None:
        """The ``target`` of one call of ``tool`` with ``arguments``, or ``None``.

        ``arguments`` are the named arguments, or their JSON text, or the plain string input
        of a single-input tool.
        """
        arg = self.target_args.get(tool)
        if arg is None or arguments is None:
            return None
        if isinstance(arguments, str):
            try:
                parsed = json.loads(arguments)
            except ValueError:
                return clip(arguments, TARGET_LIMIT)  # a plain string input
            if not isinstance(parsed, dict):
                return clip(arguments, TARGET_LIMIT)
            arguments = parsed
        value = arguments.get(arg)
        return None if value is None else clip(value, TARGET_LIMIT)


class Pricing:
    """USD of a model call from a price table (loaded on first use).

    Parameters
    ----------
    prices
        A :class:`~agentwatch.ingest.prices.PriceTable`, or the path of a TOML file whose
        entries override and extend the shipped table; ``None``: the shipped table.

    Examples
    --------
    >>> Pricing().cost("gpt-4o-mini-2024-07-18", 1_000_000, 0)
    0.15
    >>> Pricing().cost("my-local-llama", 10, 10) is None
    True
    """

    def __init__(self, prices: PriceTable | str | Path | None = None) -> None:
        self._given = prices
        self._table: PriceTable | None = prices if isinstance(prices, PriceTable) else None
        self._lock = threading.Lock()

    def table(self) -> PriceTable:
        """The price table (read at the first call; a bad file raises ``PriceError``)."""
        if self._table is None:
            with self._lock:
                if self._table is None:
                    given = self._given
                    override = None if isinstance(given, PriceTable) else given
                    self._table = load_prices(override)
        return self._table

    def cost(self, model: str | None, input_tokens: int, output_tokens: int) -> float | None:
        """USD of one call, or ``None`` when the model or its price is unknown."""
        if not model:
            return None
        return self.table().cost(model, input_tokens, output_tokens)


def tokens_of(usage: Mapping[str, Any] | None) -> tuple[int, int]:
    """Input and output tokens of a usage mapping, whichever naming it uses.

    OpenAI Responses / Agents SDK and LangChain ``usage_metadata`` say ``input_tokens`` /
    ``output_tokens``; Chat Completions say ``prompt_tokens`` / ``completion_tokens``.

    Examples
    --------
    >>> tokens_of({"input_tokens": 12, "output_tokens": 3}), tokens_of({"prompt_tokens": 7})
    ((12, 3), (7, 0))
    >>> tokens_of(None), tokens_of({"input_tokens": "n/a"})
    ((0, 0), (0, 0))
    """
    if not usage:
        return 0, 0

    def count(*names: str) -> int:
        for name in names:
            value = usage.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return value
        return 0

    return count("input_tokens", "prompt_tokens"), count("output_tokens", "completion_tokens")


def guarded(what: str, fn: Callable[[], T]) -> T | None:
    """Run an observation ``fn``; a failure is logged (``what`` says where), never raised.

    Adapters record from inside the framework's callbacks: a bug or an odd payload there must
    not break the agent.
    """
    try:
        return fn()
    except Exception as exc:
        log.warning("agentwatch: %s failed, the call is not recorded: %r", what, exc)
        return None
