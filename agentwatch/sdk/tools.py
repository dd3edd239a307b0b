"""Wrap an agent's tool so that something is asked before each call and told after it.

:func:`wrap_tool` keeps sync functions sync and coroutine functions async (name, docstring and
signature preserved). Before the call it asks the :class:`ToolHooks` (``before`` in the
caller's thread for plain functions, ``abefore`` awaited for coroutine functions), which refuse
by raising; after it, ``after`` gets the outcome. :class:`~agentwatch.sdk.Monitor` enforces
halts and revocations this way; other checks that must run before a call (an approval that
waits for a person) plug in as further hooks without touching the wrapping.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

from agentwatch.sdk._support import Kind, Risk, clip

__all__ = ["ToolCall", "ToolHooks", "wrap_tool"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class ToolCall:
    """One call of a wrapped tool, as the hooks see it."""

    action: str
    kind: Kind
    risk: Risk | None
    target: str | None


class ToolHooks(Protocol):
    """What a wrapped tool asks before and tells after each call."""

    def before(self, call: ToolCall) -> None:
        """Raise to refuse the call (the tool then does not run)."""

    async def abefore(self, call: ToolCall) -> None:
        """Like :meth:`before`, for coroutine tools (may wait without blocking the loop)."""

    def after(self, call: ToolCall, latency_ms: float, exc: BaseException | None) -> None:
        """The call ran: how long it took and what it raised (``None``: it returned)."""


def wrap_tool(
    fn: F,
    hooks: ToolHooks,
    *,
    name: str | None = None,
    risk: Risk | None = None,
    target_arg: str | None = None,
    kind: Kind = "tool",
) -> F:
    """``fn`` wrapped so that ``hooks`` are asked before and told after each call.

    Parameters
    ----------
    fn
        The tool: a plain or a coroutine function (not a generator).
    hooks
        See :class:`ToolHooks`.
    name
        The call's ``action`` (default: ``fn.__name__``), 1 to 128 characters.
    risk, kind
        Passed on in each :class:`ToolCall`.
    target_arg
        Name of a parameter whose value (as text, at most 1024 characters) is the call's
        ``target``.

    Examples
    --------
    >>> class Log:
    ...     def before(self, call): print("before", call.action, call.target)
    ...     async def abefore(self, call): self.before(call)
    ...     def after(self, call, latency_ms, exc): print("after", type(exc).__name__)
    >>> def read(path: str) -> int:
    ...     return len(path)
    >>> wrapped = wrap_tool(read, Log(), name="fs.read", target_arg="path")
    >>> wrapped("/etc/hosts")
    before fs.read /etc/hosts
    after NoneType
    10
    """
    if not callable(fn):
        raise TypeError(f"monitor.tool needs a function, got {type(fn).__name__}")
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise TypeError(
            "monitor.tool cannot wrap generator functions (the call would return before "
            "the work is done); wrap the function that consumes the generator"
        )
    action = name or getattr(fn, "__name__", None) or type(fn).__name__
    if not 0 < len(action) <= 128:
        raise ValueError(f"tool name must be 1 to 128 characters, got {len(action)}")
    signature: inspect.Signature | None = None
    if target_arg is not None:
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):
            signature = None
        if signature is not None and target_arg not in signature.parameters:
            raise ValueError(f"{action}: target_arg {target_arg!r} is not a parameter")

    def call_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> ToolCall:
        target: str | None = None
        if target_arg is not None:
            value: Any = None
            if signature is None:
                value = kwargs.get(target_arg)
            else:
                try:
                    value = signature.bind_partial(*args, **kwargs).arguments.get(target_arg)
                except TypeError:
                    value = None
            target = None if value is None else clip(value, 1024)
        return ToolCall(action=action, kind=kind, risk=risk, target=target)

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            call = call_of(args, kwargs)
            await hooks.abefore(call)
            started = time.perf_counter()
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                hooks.after(call, (time.perf_counter() - started) * 1000.0, exc)
                raise
            hooks.after(call, (time.perf_counter() - started) * 1000.0, None)
            return result

        return cast(F, async_wrapper)

    @functools.wraps(fn)
    def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
        call = call_of(args, kwargs)
        hooks.before(call)
        started = time.perf_counter()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            hooks.after(call, (time.perf_counter() - started) * 1000.0, exc)
            raise
        hooks.after(call, (time.perf_counter() - started) * 1000.0, None)
        return result

    return cast(F, sync_wrapper)
