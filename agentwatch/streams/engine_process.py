"""The detection engine in a process of its own, beside the worker's event loop.

The worker's process spends most of an event on faust, aiokafka, asyncio and validation; the
rules add ~30 % to that when they run in the same process (issue 13). :class:`EngineProcess`
runs the :class:`~agentwatch.detectors.engine.Engine` in a child process
(``python -m agentwatch.streams.engine_process``) and talks to it over its stdin and stdout:
length-prefixed pickled frames, one request and one reply each, answered in the order they
were sent. On a host with a core to spare, the worker then fetches and validates the next
batch while the child folds the one before.

What stays the same as in-process:

- **Order.** Batches, state loads and fleet-summary updates reach the engine in the order
  the worker sends them, so an agent's events and its fleet's summaries fold as they would
  in the worker (and in ``agentwatch backtest``).
- **Durability.** The stage acknowledges a batch only after its findings came back and its
  anomalies were published; a commit's snapshot asks the child for the agents' encoded
  state after every batch before it was folded. Nothing new is stored in the child.
- **Failure.** If the child dies, every request in flight fails with
  :class:`EngineProcessExited`: the batch stops half done, the stage writes no state and
  commits no offset from then on (as after a kill), and the worker stops; the next start
  reads the events again. When the worker dies, the child reads the end of its stdin and
  exits.

The child decodes each record again from its bytes (cheaper for the worker than sending the
validated objects); the schema is the same code in both, so the events are the same.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import pickle
import struct
import sys
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any, BinaryIO

from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.detectors.engine import Engine
from agentwatch.detectors.fleet_sync import FleetSync
from agentwatch.detectors.rules import RuleSet
from agentwatch.logtext import escape
from agentwatch.schemas import ActionEvent, decode_event
from agentwatch.streams.engine_host import (
    Fold,
    encode_held,
    fold_events,
    load_state,
    roster_of,
)
from agentwatch.streams.heap import freeze_startup_heap
from agentwatch.streams.state_codec import Origins, decode_full_state

__all__ = ["EngineProcess", "EngineProcessExited", "serve"]

log = logging.getLogger(__name__)

_FRAME = struct.Struct(">I")
_PROTOCOL = pickle.HIGHEST_PROTOCOL
#: how long a stop waits for the child to exit after its stdin closed, before killing it
STOP_WAIT_S = 5.0


class EngineProcessExited(RuntimeError):
    """The engine's process is gone: what was in flight is not folded."""


def _frame(message: Any) -> bytes:
    body = pickle.dumps(message, _PROTOCOL)
    return _FRAME.pack(len(body)) + body


# -- the child -------------------------------------------------------------------------------
class _Child:
    """The engine's side: one handler per request kind."""

    def __init__(self, engine: Engine, max_event_bytes: int) -> None:
        self.engine = engine
        self.max_event_bytes = max_event_bytes
        self.errors: set[str] = set()

    def fold(self, loads: list[tuple[str, bytes]], raws: list[bytes]) -> Fold:
        engine, limit = self.engine, self.max_event_bytes
        for agent_id, value in loads:
            load_state(engine, agent_id, value)
        return fold_events(engine, (decode_event(raw, limit) for raw in raws), self.errors)

    def encode(self, items: list[tuple[str, int, Origins | None]]) -> dict[str, bytes]:
        return encode_held(self.engine, items)

    def evict(self, agent_ids: set[str]) -> None:
        self.engine.evict(agent_ids)

    def baseline(self, agent_id: str) -> AgentBaseline | None:
        return self.engine.baselines.get(agent_id)

    def roster(self) -> dict[str, tuple[str, int]]:
        return roster_of(self.engine)

    def fleet_partials(self) -> dict[str, dict[str, Any]]:
        return self.engine.fleet_partials()

    def restore(self, fleet: str, partials: dict[str, Any]) -> bool:
        return self.engine.restore(fleet, partials)

    def absorb_many(self, items: list[tuple[str, str, dict[str, Any], float]]) -> None:
        self.engine.absorb_many(items)

    def forget(self, worker_id: str, fleet: str) -> None:
        self.engine.forget(worker_id, fleet)

    def expire(self, now: float) -> None:
        self.engine.expire(now)

    def frozen(self) -> int:
        """How many objects the start-up freeze keeps out of full collections."""
        return gc.get_freeze_count()


def _read(stream: BinaryIO) -> Any:
    head = stream.read(_FRAME.size)
    if len(head) < _FRAME.size:
        return None
    (size,) = _FRAME.unpack(head)
    body = stream.read(size)
    if len(body) < size:
        return None
    return pickle.loads(body)  # noqa: S301 (the worker, our parent, wrote it)


def serve(requests: BinaryIO, replies: BinaryIO) -> int:
    """The child's loop: an ``init`` frame, then requests until the end of ``requests``.

    Each request ``(seq, kind, args)`` is answered ``(seq, True, result)``, or
    ``(seq, False, text)`` when its handler raised (logged with its traceback).
    """
    init = _read(requests)
    if init is None:
        return 0
    rules, max_event_bytes, worker_id, fleet_ttl_s = init
    child = _Child(Engine(rules, worker_id=worker_id, fleet_ttl_s=fleet_ttl_s), max_event_bytes)
    freeze_startup_heap()  # a full collection holds the batch being folded: keep it short
    while True:
        request = _read(requests)
        if request is None:
            return 0
        seq, kind, args = request
        try:
            reply = (seq, True, getattr(child, kind)(*args))
        except Exception as exc:
            log.exception("the engine's process: %s failed", kind)
            reply = (seq, False, f"{type(exc).__name__}: {exc}")
        replies.write(_frame(reply))
        replies.flush()


def main() -> int:
    """Entry point of the child (``python -m agentwatch.streams.engine_process``)."""
    logging.basicConfig(
        level=os.environ.get("AGENTWATCH_LOG_LEVEL", "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(name)s (engine process): %(message)s",
        stream=sys.stderr,
    )
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print cannot corrupt a frame
    try:
        return serve(sys.stdin.buffer, replies)
    except KeyboardInterrupt:
        return 0


# -- the worker's side -----------------------------------------------------------------------
class EngineProcess:
    """The engine in a child process (see the module's docstring).

    Parameters
    ----------
    rules
        The rules the child's engine runs.
    max_event_bytes
        The record size limit the child decodes with (the worker's).
    worker_id, fleet_ttl_s
        The engine's place among the workers sharing fleet summaries.
    python
        The interpreter the child runs (the worker's).
    """

    #: the stage checks the next batch while the child folds this one
    apart = True

    def __init__(
        self,
        rules: RuleSet | None,
        *,
        max_event_bytes: int,
        worker_id: str = "local",
        fleet_ttl_s: float = 60.0,
        python: str = sys.executable,
    ) -> None:
        self.rules = rules
        self.max_event_bytes = max_event_bytes
        self.python = python
        #: a mirror of the child's: which workers' summaries are held (views, metrics)
        self.sync = FleetSync(worker_id, fleet_ttl_s)
        self._held: set[str] = set()
        self._loads: list[tuple[str, bytes]] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._starting: asyncio.Lock | None = None
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._seq = 0
        self._gone: str | None = None

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._proc is not None:
                return
            self._proc = await asyncio.create_subprocess_exec(
                self.python,
                "-m",
                "agentwatch.streams.engine_process",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            assert self._proc.stdin is not None
            init = (self.rules, self.max_event_bytes, self.sync.worker_id, self.sync.ttl_s)
            self._proc.stdin.write(_frame(init))
            self._reader = asyncio.create_task(self._read_replies(), name="engine-replies")
            log.info("the engine runs in process %d", self._proc.pid)

    async def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if self._gone is None:
            self._gone = "the worker stopped the engine's process"
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), STOP_WAIT_S)
        except TimeoutError:
            log.warning("the engine's process did not exit in %.0f s: killed", STOP_WAIT_S)
            proc.kill()
            await proc.wait()
        if self._reader is not None:
            await self._reader

    @property
    def pid(self) -> int | None:
        """The child's process id, once started."""
        return None if self._proc is None else self._proc.pid

    async def _read_replies(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        stdout = proc.stdout
        try:
            while True:
                head = await stdout.readexactly(_FRAME.size)
                (size,) = _FRAME.unpack(head)
                frame = await stdout.readexactly(size)
                seq, ok, result = pickle.loads(frame)  # noqa: S301 (our child wrote it)
                future = self._waiting.pop(seq, None)
                if future is None or future.done():
                    continue
                if ok:
                    future.set_result(result)
                else:
                    future.set_exception(RuntimeError(f"the engine's process: {result}"))
        except (asyncio.IncompleteReadError, ConnectionError):
            code = await proc.wait()
            if self._gone is None:
                self._gone = f"the engine's process exited (code {code})"
                log.error("%s; the worker stops, and the next start folds again", self._gone)
        except Exception as exc:  # a frame that does not load: nothing after it can be trusted
            self._gone = f"the engine's process sent what does not load ({escape(repr(exc), 200)})"
            log.error("%s; it is stopped, the worker stops, the next start folds again", self._gone)
            proc.kill()
        finally:
            waiting, self._waiting = self._waiting, {}
            for future in waiting.values():
                if not future.done():
                    future.set_exception(EngineProcessExited(self._gone or "engine stopped"))

    def _send(self, kind: str, *args: Any) -> asyncio.Future[Any]:
        """Send one request; the future of its reply (sent in order, never reordered)."""
        if self._gone is not None or self._proc is None or self._proc.stdin is None:
            raise EngineProcessExited(self._gone or "the engine's process is not started")
        self._seq += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[self._seq] = future
        self._proc.stdin.write(_frame((self._seq, kind, args)))
        return future

    async def _call(self, kind: str, *args: Any) -> Any:
        if self._proc is None:
            await self.start()
        return await self._reply(self._send(kind, *args))

    async def _reply(self, future: asyncio.Future[Any]) -> Any:
        """Let the request's bytes out (the pipe's flow control), then wait for its reply."""
        assert self._proc is not None and self._proc.stdin is not None
        try:
            await self._proc.stdin.drain()
        except ConnectionError:  # the child is gone: the reader fails the future, saying how
            log.debug("the engine's process closed its input")
        return await future

    def _post(self, kind: str, *args: Any) -> None:
        """A request whose reply nobody waits for (a failure is logged)."""
        if self._proc is None:
            raise EngineProcessExited("the engine's process is not started")
        self._send(kind, *args).add_done_callback(_log_failure)

    # -- what the stage asks -------------------------------------------------------------
    def holds(self, agent_id: str) -> bool:
        return agent_id in self._held

    @property
    def agents(self) -> int:
        return len(self._held)

    def load(self, agent_id: str, value: bytes | None) -> tuple[int, Origins]:
        if value is None:
            self._held.add(agent_id)  # new: the child starts its state with its first event
            return -1, {}
        offset, _, _, origins = decode_full_state(value)  # raises for a corrupt value here
        self._loads.append((agent_id, value))
        self._held.add(agent_id)
        return offset, origins

    def fold(self, events: Sequence[ActionEvent], raws: list[bytes]) -> Awaitable[Fold]:
        pending, self._loads = self._loads, []
        return self._reply(self._send("fold", pending, raws))  # sent now

    def encode(
        self, items: Sequence[tuple[str, int, Origins | None]]
    ) -> Awaitable[dict[str, bytes]]:
        return self._send("encode", list(items))  # sent now: in order with the batches

    def evict(self, agent_ids: set[str]) -> None:
        self._held -= agent_ids
        if self._proc is not None and self._gone is None:
            self._post("evict", set(agent_ids))

    async def baseline(self, agent_id: str) -> AgentBaseline | None:
        if agent_id not in self._held:
            return None
        result: AgentBaseline | None = await self._call("baseline", agent_id)
        return result

    async def roster(self) -> dict[str, tuple[str, int]]:
        if not self._held:
            return {}
        result: dict[str, tuple[str, int]] = await self._call("roster")
        return result

    # -- fleet summaries -----------------------------------------------------------------
    async def fleet_partials(self) -> dict[str, dict[str, Any]]:
        result: dict[str, dict[str, Any]] = await self._call("fleet_partials")
        return result

    async def restore(self, fleet: str, partials: dict[str, Any]) -> bool:
        return bool(await self._call("restore", fleet, partials))

    def absorb_many(self, items: Iterable[tuple[str, str, dict[str, Any], float]]) -> None:
        batch = list(items)
        for worker_id, fleet, partials, now in batch:
            self.sync.put(worker_id, fleet, partials, now)
        self._post("absorb_many", batch)

    def forget(self, worker_id: str, fleet: str) -> None:
        self.sync.drop(worker_id, fleet)
        self._post("forget", worker_id, fleet)

    def expire(self, now: float) -> None:
        self.sync.expire(now)
        self._post("expire", now)


def _log_failure(future: asyncio.Future[Any]) -> None:
    if future.cancelled():
        return
    exc = future.exception()
    if exc is not None and not isinstance(exc, EngineProcessExited):
        log.error("%s", escape(str(exc), 300))


if __name__ == "__main__":
    sys.exit(main())
