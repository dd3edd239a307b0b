"""The :class:`SyncMonitor`: a :class:`~agentwatch.sdk.Monitor` for synchronous agents.

The asyncio machinery (event sender, control follower) runs on a private event loop in a
daemon thread; the agent's tools run in the caller's thread, checked there before each call.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from agentwatch.config import Settings
from agentwatch.schemas.approvals import ApprovalDecision, ApprovalRequirement
from agentwatch.sdk.approval import ApprovalGate
from agentwatch.sdk.errors import ApprovalDenied
from agentwatch.sdk.monitor import Monitor, monitor_kwargs_from_settings
from agentwatch.sdk.surface import AgentSurface
from agentwatch.sdk.tools import ToolCall

__all__ = ["SyncMonitor"]

log = logging.getLogger("agentwatch.sdk")


class SyncMonitor(AgentSurface):
    """:class:`Monitor` for synchronous agents: the asyncio machinery runs in a daemon thread.

    Takes the same arguments as :class:`Monitor` (except ``producer``). Tools it wraps must be
    plain functions; they run in the caller's thread, and the halt/revoke check happens there
    before the call.

    Examples
    --------
    >>> with SyncMonitor("etl-bot", bootstrap="127.0.0.1:9092") as monitor:  # doctest: +SKIP
    ...     @monitor.tool(risk="high", target_arg="table")
    ...     def drop_table(table: str) -> None: ...
    ...     drop_table("staging.tmp")
    ...     monitor.record(model="gpt-4o-mini", input_tokens=900, output_tokens=40)
    """

    def __init__(self, agent_id: str, fleet: str = "default", **kwargs: Any) -> None:
        if kwargs.get("producer") is not None:
            raise TypeError("SyncMonitor owns its producer (it lives on a private event loop)")
        self.monitor = Monitor(agent_id, fleet, **kwargs)
        self.agent_id = self.monitor.agent_id
        self.control = self.monitor.control
        self.emitter = self.monitor.emitter
        self.approvals = self.monitor.approvals
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    @classmethod
    def from_settings(
        cls,
        agent_id: str,
        fleet: str = "default",
        *,
        settings: Settings | None = None,
        **kwargs: Any,
    ) -> SyncMonitor:
        """Like :meth:`Monitor.from_settings`."""
        monitor_kwargs_from_settings(settings, kwargs)
        return cls(agent_id, fleet, **kwargs)

    def start(self) -> SyncMonitor:
        """Start the background loop and the monitor; returns once the control state is read
        (or ``startup_timeout`` passed)."""
        if self._thread is not None:
            raise RuntimeError("this SyncMonitor was already started")
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(
            target=run, name=f"agentwatch-{self.monitor.agent_id}", daemon=True
        )
        self._thread.start()
        ready.wait()
        future = asyncio.run_coroutine_threadsafe(self.monitor.start(), loop)
        try:
            future.result(timeout=self.monitor.startup_timeout + 10.0)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Deliver buffered events (bounded by ``close_timeout``) and stop the thread."""
        if self._closed:
            return
        self._closed = True
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        budget = 2 * max(self.monitor.close_timeout, 0.5) + 5.0
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        try:
            future.result(timeout=budget)
        except BaseException as exc:
            log.warning("agentwatch: SyncMonitor shutdown incomplete: %r", exc)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5.0)
        if not thread.is_alive():
            loop.close()

    async def _shutdown(self) -> None:
        await self.monitor.aclose()
        current = asyncio.current_task()
        others = [t for t in asyncio.all_tasks() if t is not current]
        for task in others:
            task.cancel()
        if others:
            await asyncio.wait(others, timeout=2.0)

    def __enter__(self) -> SyncMonitor:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def control_ready(self) -> bool:
        """See :attr:`Monitor.control_ready`."""
        return self.monitor.control_ready

    def _wait_approval(
        self, gate: ApprovalGate, call: ToolCall, requirement: ApprovalRequirement
    ) -> ApprovalDecision:
        loop = self._loop
        if loop is None or self._closed:
            raise ApprovalDenied(
                self.agent_id, call.action, "agentwatch", "the SyncMonitor is not running"
            )
        session = self._session_for_request()
        future = asyncio.run_coroutine_threadsafe(gate.ask(call, requirement, session), loop)
        return future.result(timeout=requirement.timeout_s + gate.grace_s + 30.0)

    async def _await_approval(
        self, gate: ApprovalGate, call: ToolCall, requirement: ApprovalRequirement
    ) -> ApprovalDecision:
        # the gate's Kafka clients live on the monitor's own loop: ask there, wait here
        loop = self._loop
        if loop is None or self._closed:
            raise ApprovalDenied(
                self.agent_id, call.action, "agentwatch", "the SyncMonitor is not running"
            )
        session = self._session_for_request()
        future = asyncio.run_coroutine_threadsafe(gate.ask(call, requirement, session), loop)
        return await asyncio.wrap_future(future)

    def _accept_tool(self, fn: Callable[..., Any]) -> None:
        if inspect.iscoroutinefunction(fn):
            raise TypeError(
                f"SyncMonitor.tool wraps plain functions; {getattr(fn, '__name__', fn)!r} "
                "is async: use Monitor in async agents"
            )

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until buffered events are delivered (at most ``timeout`` seconds)."""
        loop = self._loop
        if loop is None or self._closed:
            return self.monitor.stats["buffered"] == 0
        future = asyncio.run_coroutine_threadsafe(self.monitor.flush(timeout), loop)
        try:
            return bool(future.result(timeout=timeout + 1.0))
        except Exception:
            return False
