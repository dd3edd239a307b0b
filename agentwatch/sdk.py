"""What an agent process imports: emit one event per action, enforce halt/revoke locally.

An agent wraps its tools with :meth:`Monitor.tool`. Before every call the wrapper checks the
agent's :class:`~agentwatch.schemas.ControlState` (read from the compacted
``<prefix>.control`` topic) and refuses to run a halted agent's tools or a revoked action,
raising :class:`AgentHalted` or :class:`PermissionRevoked`. After every call it emits an
:class:`~agentwatch.schemas.ActionEvent` to ``<prefix>.actions``.

Emission never blocks the agent and never raises: events go into a bounded in-memory buffer
that a background task sends with aiokafka. While the broker is unreachable events wait in the
buffer; when it is full the *oldest* are dropped, counted in :attr:`Monitor.stats` and
reported with a rate-limited warning.

Per-call context
----------------
Three ways to attach ``target``, ``approved_by`` and ``session_id`` to events:

* ``@monitor.tool(target_arg="path")`` takes the target from the named argument of each call;
* ``with monitor.context(approved_by="alice", session_id="s-42"):`` (a
  :class:`contextvars.ContextVar`, so it follows asyncio tasks and stays per thread) applies to
  every event emitted inside the block, by any monitor; blocks nest and merge;
* explicit keyword arguments of :meth:`Monitor.emit` / :meth:`Monitor.record` win over both.

Example
-------
>>> import asyncio
>>> async def main():  # doctest: +SKIP
...     async with Monitor("billing-bot", fleet="finance", bootstrap="kafka:9092") as monitor:
...         @monitor.tool(risk="high", target_arg="to")
...         async def send_email(to: str, body: str) -> None: ...
...         with monitor.context(session_id="conv-17"):
...             await send_email("ceo@example.com", "hello")
>>> asyncio.run(main())  # doctest: +SKIP

Synchronous agents use :class:`SyncMonitor`, which runs the same machinery on a background
thread.

Authenticated control
---------------------
Workers sign every control record (Ed25519, :mod:`agentwatch.schemas.signing`). Given the
workers' public keys (``control_verifier``; :meth:`Monitor.from_settings` reads
``AGENTWATCH_CONTROL_VERIFY_KEYS``, else ``<data_dir>/control.pub``), the monitor obeys only
records one of them verifies: an unsigned, badly signed or foreign-key record, a tombstone, or
one whose ``version``/``updated_at`` lies implausibly far ahead of this host's clock is refused,
counted in :attr:`Monitor.stats` and logged once per reason; it never raises into the agent
and never changes what the agent may do. A record older than the one held is ignored (a
replayed record cannot undo a later change).

Without a key the monitor still obeys control records, unverified (fail-open for
authenticity, so that a missing setting cannot silently disable the kill switch), refuses
implausible ones all the same, and warns once at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import logging
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType, TracebackType
from typing import Any, Literal, TypeVar, cast, overload

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError
from pydantic import ValidationError

from agentwatch.config import Settings, load_settings
from agentwatch.kafka_security import KafkaConnectError, check_connection, client_options
from agentwatch.logtext import escape
from agentwatch.schemas import ActionEvent, ControlState, encode_event
from agentwatch.schemas._types import AGENT_ID_PATTERN
from agentwatch.schemas.events import MAX_EVENT_BYTES
from agentwatch.schemas.signing import ControlVerifier, VerificationError, verifier_from_settings

__all__ = [
    "AgentHalted",
    "ControlError",
    "ControlUnavailable",
    "Monitor",
    "PermissionRevoked",
    "SyncMonitor",
    "context",
]

log = logging.getLogger(__name__)

Kind = Literal["tool", "llm", "api", "other"]
Status = Literal["ok", "error", "denied"]
Risk = Literal["low", "medium", "high", "critical"]
Scalar = str | int | float | bool | None
F = TypeVar("F", bound=Callable[..., Any])

RISKS: frozenset[str] = frozenset({"low", "medium", "high", "critical"})
KINDS: frozenset[str] = frozenset({"tool", "llm", "api", "other"})
WARN_INTERVAL_S = 10.0
"""At most one warning per this many seconds for each kind of trouble (drops, send errors)."""
MAX_BATCH = 500
"""Events handed to the producer in one go."""
TOPIC_POLL_S = 2.0
"""How often to look again for a control topic that does not exist yet."""
MAX_PERMANENT_FAILURES = 3
"""Attempts before an event the broker rejects for good (not a connection problem) is dropped."""
CONTROL_REJECTIONS = ("unsigned", "unknown_key", "bad_signature", "implausible")
"""Why a control record is refused; each is counted as ``stats["control_rejected_<reason>"]``."""

# Connection settings that may be passed to both the producer and the control consumer.
KAFKA_OPTION_KEYS: frozenset[str] = frozenset(
    {
        "client_id",
        "security_protocol",
        "ssl_context",
        "sasl_mechanism",
        "sasl_plain_username",
        "sasl_plain_password",
        "sasl_kerberos_service_name",
        "sasl_kerberos_domain_name",
        "sasl_oauth_token_provider",
        "request_timeout_ms",
        "retry_backoff_ms",
        "metadata_max_age_ms",
        "connections_max_idle_ms",
    }
)


# -- exceptions -------------------------------------------------------------------------------


class ControlError(RuntimeError):
    """The agent's control state forbids what it tried to do; the tool did not run."""


class AgentHalted(ControlError):
    """The agent is halted: no tool may run until someone resumes it.

    Examples
    --------
    >>> err = AgentHalted("bot-1", "cost 40x baseline", "inc-7")
    >>> print(err)  # doctest: +NORMALIZE_WHITESPACE
    agent 'bot-1' is halted by agentwatch (incident inc-7): cost 40x baseline. The tool was
    not run. Once the cause is understood, resume it with: agentwatch agents resume bot-1
    """

    def __init__(self, agent_id: str, reason: str = "", incident_id: str | None = None) -> None:
        self.agent_id = agent_id
        self.reason = reason
        self.incident_id = incident_id
        where = f" (incident {incident_id})" if incident_id else ""
        super().__init__(
            f"agent {agent_id!r} is halted by agentwatch{where}: "
            f"{reason or 'no reason given'}. The tool was not run. Once the cause is "
            f"understood, resume it with: agentwatch agents resume {agent_id}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.agent_id, self.reason, self.incident_id))


class PermissionRevoked(ControlError):
    """One action was revoked for this agent; other actions still run.

    Examples
    --------
    >>> print(PermissionRevoked("bot-1", "send_email", "spam burst"))
    ... # doctest: +NORMALIZE_WHITESPACE
    agent 'bot-1' may not run 'send_email': permission revoked by agentwatch (spam burst). The
    tool was not run. To allow it again: agentwatch agents grant bot-1 send_email
    """

    def __init__(self, agent_id: str, action: str, reason: str = "") -> None:
        self.agent_id = agent_id
        self.action = action
        self.reason = reason
        super().__init__(
            f"agent {agent_id!r} may not run {action!r}: permission revoked by agentwatch "
            f"({reason or 'no reason given'}). The tool was not run. To allow it again: "
            f"agentwatch agents grant {agent_id} {action}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.agent_id, self.action, self.reason))


class ControlUnavailable(ControlError):
    """Raised at start when ``require_control=True`` and the control topic could not be read."""


# -- per-call context -------------------------------------------------------------------------


@dataclass(frozen=True)
class _CallContext:
    session_id: str | None = None
    approved_by: str | None = None
    target: str | None = None
    attributes: Mapping[str, Scalar] = field(default_factory=lambda: MappingProxyType({}))


_NO_CONTEXT = _CallContext()
_CONTEXT: contextvars.ContextVar[_CallContext | None] = contextvars.ContextVar(
    "agentwatch_call_context", default=None
)


def _current_context() -> _CallContext:
    return _CONTEXT.get() or _NO_CONTEXT


@contextlib.contextmanager
def context(
    *,
    session_id: str | None = None,
    approved_by: str | None = None,
    target: str | None = None,
    attributes: Mapping[str, Scalar] | None = None,
) -> Iterator[None]:
    """Attach ``session_id`` / ``approved_by`` / ``target`` / ``attributes`` to events.

    Applies to every event emitted inside the block (by any monitor, in this thread or asyncio
    task). Nested blocks override the outer values they set and merge ``attributes``.

    Examples
    --------
    >>> monitor = Monitor("bot-1")  # not started: events just wait in the buffer
    >>> with context(session_id="conv-1", approved_by="alice"):
    ...     event = monitor.emit("deploy", risk="critical")
    >>> event.session_id, event.approved_by, event.risk
    ('conv-1', 'alice', 'critical')
    """
    outer = _current_context()
    merged = _CallContext(
        session_id=session_id if session_id is not None else outer.session_id,
        approved_by=approved_by if approved_by is not None else outer.approved_by,
        target=target if target is not None else outer.target,
        attributes=MappingProxyType({**outer.attributes, **(attributes or {})}),
    )
    token = _CONTEXT.set(merged)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


# -- helpers ----------------------------------------------------------------------------------


def _clip(value: object, limit: int) -> str | None:
    if value is None:
        return None
    try:
        text = value if isinstance(value, str) else str(value)
    except Exception:  # a __str__ that raises
        text = f"<unprintable {type(value).__name__}>"
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def _describe_error(exc: BaseException, limit: int, detail: bool) -> str:
    name = type(exc).__name__
    if not detail:
        return name
    try:
        message = str(exc)
    except Exception:
        message = ""
    return _clip(f"{name}: {message}" if message else name, limit) or name


def _validation_reason(exc: ValidationError) -> str:
    """A short reason without the offending input (it might hold a secret)."""
    errors = exc.errors(include_url=False, include_input=False)
    if not errors:
        return "invalid"
    first = errors[0]
    loc = ".".join(str(p) for p in first["loc"]) or "value"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{loc}: {first['msg']}{more}"


def _is_permanent(exc: BaseException) -> bool:
    """Whether a send failure will not go away by retrying (broker rejected the record)."""
    if isinstance(exc, KafkaTimeoutError | OSError):  # includes TimeoutError
        return False
    if isinstance(exc, KafkaError):
        return not exc.retriable
    return True


class _Backoff:
    def __init__(self, first: float = 0.1, cap: float = 5.0) -> None:
        self.first = first
        self.cap = cap
        self.current = first

    def next(self) -> float:
        delay, self.current = self.current, min(self.current * 2, self.cap)
        return delay

    def reset(self) -> None:
        self.current = self.first


class _RateLimited:
    """Logs one warning per ``interval`` per topic, with a count of what happened meanwhile."""

    def __init__(self, interval: float = WARN_INTERVAL_S) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def warning(self, topic: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(topic)
            if last is not None and now - last < self.interval:
                self._suppressed[topic] = self._suppressed.get(topic, 0) + 1
                return
            self._last[topic] = now
            suppressed = self._suppressed.pop(topic, 0)
        if suppressed:
            msg += " (%d similar warnings suppressed)"
            args = (*args, suppressed)
        log.warning(msg, *args)


@dataclass
class _Pending:
    payload: bytes
    failures: int = 0


def _control_defaults(kwargs: dict[str, Any], settings: Settings) -> None:
    """Fill in the control verifier and clock-skew bound from ``settings`` (unless given)."""
    if "control_verifier" not in kwargs:
        kwargs["control_verifier"] = verifier_from_settings(settings)
    kwargs.setdefault("max_clock_skew_s", settings.control_max_clock_skew_s)


# -- the monitor ------------------------------------------------------------------------------


class Monitor:
    """Runtime monitor and kill switch for one agent (asyncio).

    Parameters
    ----------
    agent_id
        The agent's id (``[A-Za-z0-9._:@/-]+``, at most 128 characters); the Kafka key of its
        events and of its control state.
    fleet
        Peer group / role; detectors compare an agent with its fleet.
    bootstrap
        Comma-separated ``host:port`` list of Kafka brokers.
    topic_prefix
        Events go to ``<prefix>.actions``, control state is read from ``<prefix>.control``.
    buffer_size
        Events that may wait in memory for the broker. When full, the oldest are dropped
        (counted in :attr:`stats`, reported by a rate-limited warning).
    producer
        An already started ``AIOKafkaProducer`` (or compatible object with an async
        ``send(topic, value, key=...)`` returning a delivery future) to share between
        monitors of one process. It must belong to the running event loop. The monitor uses it
        but never starts or stops it; by default the monitor owns a producer of its own.
    session_id
        Default ``session_id`` of events (overridden by :func:`context` and by arguments).
    startup_timeout
        How long entering the monitor waits for the control consumer to read the control topic
        to its end, so an agent halted before it restarted cannot run a tool meanwhile.
    close_timeout
        How long leaving the monitor waits to deliver buffered events (then for each Kafka
        client to stop). Events still undelivered are counted as dropped and reported.
    require_control
        Raise :class:`ControlUnavailable` at start when the control topic could not be read
        within ``startup_timeout`` (fail closed). By default the agent starts with a warning and
        enforcement begins as soon as the control state arrives (fail open).
    fetch_max_wait_ms
        Long-poll time of control-topic fetches; bounds the halt-to-enforcement latency.
    max_error_chars
        Length limit of the ``error`` text of events (exception type and message).
    error_detail
        ``False`` sends only the exception type as ``error``, never its message (use it when
        tool exception messages may contain credentials or personal data).
    kafka_options
        Connection settings for both Kafka clients: ``security_protocol``, ``ssl_context``,
        ``sasl_*``, ``client_id``, ``request_timeout_ms``, ``retry_backoff_ms``,
        ``metadata_max_age_ms``, ``connections_max_idle_ms``. They are never logged.
    control_verifier
        The workers' public keys (:class:`~agentwatch.schemas.signing.ControlVerifier`):
        only control records they verify are obeyed. ``None`` obeys records unverified and
        warns at start (see the module docstring).
    max_clock_skew_s
        A control record whose ``version`` (milliseconds) or ``updated_at`` is further than
        this ahead of this host's clock is refused as implausible.

    Examples
    --------
    Without a broker, tools still run and their events wait in the buffer:

    >>> monitor = Monitor("bot-1", buffer_size=100)
    >>> @monitor.tool(risk="low")
    ... def search(query: str) -> str:
    ...     return query.upper()
    >>> search("kafka")
    'KAFKA'
    >>> monitor.stats["emitted"], monitor.stats["buffered"]
    (1, 1)

    In an agent:

    >>> async def run_agent():  # doctest: +SKIP
    ...     async with Monitor("bot-1", bootstrap="127.0.0.1:9092") as monitor:
    ...         wrapped = monitor.tool(search)
    ...         wrapped("kafka")  # raises AgentHalted once someone halts bot-1
    """

    def __init__(
        self,
        agent_id: str,
        fleet: str = "default",
        *,
        bootstrap: str = "127.0.0.1:9092",
        topic_prefix: str = "agentwatch",
        buffer_size: int = 10_000,
        producer: Any = None,
        session_id: str | None = None,
        startup_timeout: float = 5.0,
        close_timeout: float = 5.0,
        require_control: bool = False,
        fetch_max_wait_ms: int = 100,
        max_error_chars: int = 1024,
        error_detail: bool = True,
        kafka_options: Mapping[str, Any] | None = None,
        control_verifier: ControlVerifier | None = None,
        max_clock_skew_s: float = 300.0,
    ) -> None:
        if not isinstance(agent_id, str) or not 0 < len(agent_id) <= 128:
            raise ValueError("agent_id must be a string of 1 to 128 characters")
        if not re.fullmatch(AGENT_ID_PATTERN, agent_id):
            raise ValueError(
                f"agent_id {agent_id!r} may only contain A-Z a-z 0-9 . _ : @ - "
                "and must not be '.' or '..'"
            )
        if not isinstance(fleet, str) or not 0 < len(fleet) <= 128:
            raise ValueError("fleet must be a string of 1 to 128 characters")
        if buffer_size < 1:
            raise ValueError("buffer_size must be at least 1")
        if startup_timeout < 0 or close_timeout < 0:
            raise ValueError("timeouts must not be negative")
        if not max_clock_skew_s > 0:
            raise ValueError("max_clock_skew_s must be positive")
        unknown = set(kafka_options or {}) - KAFKA_OPTION_KEYS
        if unknown:
            raise ValueError(
                f"unsupported kafka_options {sorted(unknown)}; allowed: {sorted(KAFKA_OPTION_KEYS)}"
            )
        self.agent_id = agent_id
        self.fleet = fleet
        self.bootstrap = bootstrap
        self.topic_prefix = topic_prefix
        self.actions_topic = f"{topic_prefix}.actions"
        self.control_topic = f"{topic_prefix}.control"
        self.buffer_size = buffer_size
        self.session_id = session_id
        self.startup_timeout = startup_timeout
        self.close_timeout = close_timeout
        self.require_control = require_control
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.max_error_chars = min(max_error_chars, 4096)
        self.error_detail = error_detail
        self._kafka_options = dict(kafka_options or {})
        self._shared_producer = producer
        self._key = agent_id.encode()
        self.control_verifier = control_verifier
        self.max_clock_skew_s = max_clock_skew_s

        # buffer (shared between the caller's threads and the loop thread)
        self._lock = threading.Lock()
        self._queue: deque[_Pending] = deque()
        self._in_flight = 0
        self._counts = {
            "emitted": 0,
            "sent": 0,
            "dropped": 0,
            "send_errors": 0,
            "connect_errors": 0,
            "rejected": 0,
            "control_errors": 0,
            "control_rejected": 0,
            **{f"control_rejected_{reason}": 0 for reason in CONTROL_REJECTIONS},
        }
        self._warn = _RateLimited()
        self._unreported_drops = 0

        # control state; replaced as a whole (a reference swap), so readers need no lock
        self._state: ControlState | None = None
        self._version = 0  # highest version obeyed: older records are replays
        self._refusals_logged: set[str] = set()

        # runtime (created by start())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._wake: asyncio.Event | None = None
        self._drainer_idle = False
        self._control_ready: asyncio.Event | None = None
        self._producer: Any = None
        self._drain_task: asyncio.Task[None] | None = None
        self._control_task: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    def from_settings(
        cls,
        agent_id: str,
        fleet: str = "default",
        *,
        settings: Settings | None = None,
        **kwargs: Any,
    ) -> Monitor:
        """A monitor configured from :class:`~agentwatch.config.Settings`.

        ``settings`` defaults to :func:`~agentwatch.config.load_settings` (``AGENTWATCH_*``
        environment variables and ``agentwatch.toml``). Its Kafka security settings (TLS,
        SASL) become ``kafka_options``; keys given in ``kafka_options`` take precedence. The
        control verifier comes from ``control_verify_keys``, else ``<data_dir>/control.pub``
        when it exists.

        Raises
        ------
        agentwatch.schemas.signing.SigningKeyError
            when a configured public key cannot be read.

        Examples
        --------
        >>> from agentwatch.config import Settings
        >>> m = Monitor.from_settings("bot-1", settings=Settings(topic_prefix="staging"))
        >>> m.actions_topic, m.control_topic
        ('staging.actions', 'staging.control')
        """
        if settings is None:
            settings = load_settings()
        kwargs.setdefault("bootstrap", settings.kafka_bootstrap)
        kwargs.setdefault("topic_prefix", settings.topic_prefix)
        explicit = kwargs.get("kafka_options") or {}
        kwargs["kafka_options"] = {**client_options(settings), **explicit}
        _control_defaults(kwargs, settings)
        return cls(agent_id, fleet, **kwargs)

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Monitor:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Start the event sender and the control consumer; wait for the control state.

        Never fails because the broker is down (unless ``require_control``): events then wait
        in the buffer and both clients keep reconnecting in the background. With
        ``require_control`` one connection is tried first: a refused login or certificate, or no
        broker within ``startup_timeout``, raises :class:`ControlUnavailable` with the reason.
        """
        if self._loop is not None:
            raise RuntimeError("this Monitor was already started")
        if self.require_control:  # fail closed at once, with the reason (wrong password, TLS)
            try:
                await check_connection(self.bootstrap, self._kafka_options, self.startup_timeout)
            except KafkaConnectError as exc:
                await self.aclose()
                raise ControlUnavailable(
                    f"agent {self.agent_id!r}: {exc}; require_control is set, refusing to start"
                ) from None
        if self.control_verifier is None:
            log.warning(
                "agentwatch: agent %s obeys control records without verifying them (no public "
                "key: set AGENTWATCH_CONTROL_VERIFY_KEYS); anyone who can write to %s can halt "
                "or resume it",
                self.agent_id,
                self.control_topic,
            )
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
        self._control_ready = asyncio.Event()
        self._drain_task = asyncio.create_task(self._drain_loop(), name="agentwatch-sender")
        self._control_task = asyncio.create_task(self._control_loop(), name="agentwatch-control")
        try:
            await asyncio.wait_for(self._control_ready.wait(), self.startup_timeout)
        except TimeoutError:
            if self.require_control:
                await self.aclose()
                raise ControlUnavailable(
                    f"agent {self.agent_id!r}: could not read {self.control_topic} from "
                    f"{self.bootstrap} within {self.startup_timeout:g}s and require_control "
                    "is set; refusing to start"
                ) from None
            log.warning(
                "agentwatch: agent %s starts without its control state (%s on %s not read "
                "within %gs); halts and revocations apply as soon as it is read",
                self.agent_id,
                self.control_topic,
                self.bootstrap,
                self.startup_timeout,
            )

    async def aclose(self) -> None:
        """Deliver buffered events (up to ``close_timeout``), then stop both Kafka clients.

        Idempotent. Events that could not be delivered are counted as dropped and reported.
        """
        if self._closed:
            return
        self._closed = True
        if self._loop is None:  # never started
            self._account_undelivered()
            return
        await self.flush(self.close_timeout)
        for task in (self._drain_task, self._control_task):
            if task is not None and not task.done():
                task.cancel()
        tasks = [t for t in (self._drain_task, self._control_task) if t is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=max(self.close_timeout, 0.5))
        if self._producer is not None and self._producer is not self._shared_producer:
            await self._stop_client(self._producer)
        self._producer = None
        self._account_undelivered()

    async def flush(self, max_wait: float | None = None) -> bool:
        """Wait until every buffered event is acknowledged (or ``max_wait`` seconds passed).

        Returns whether the buffer is empty. Needs a started monitor.
        """
        deadline = None if max_wait is None else time.monotonic() + max_wait
        while self._buffered() > 0:
            if self._drain_task is None or self._drain_task.done():
                return False
            if deadline is not None and time.monotonic() >= deadline:
                return False
            self._wakeup()
            await asyncio.sleep(0.01)
        return True

    def _account_undelivered(self) -> None:
        with self._lock:
            lost = len(self._queue) + self._in_flight
            self._queue.clear()
            self._in_flight = 0
            self._counts["dropped"] += lost
        if lost:
            log.warning(
                "agentwatch: agent %s closed with %d events not delivered to %s on %s "
                "(broker unreachable?); they are lost",
                self.agent_id,
                lost,
                self.actions_topic,
                self.bootstrap,
            )
        self._report_drops(force=True)

    # -- public surface -----------------------------------------------------------------------

    @property
    def state(self) -> ControlState | None:
        """The agent's latest control state, or ``None`` (never restricted, or cleared)."""
        return self._state

    @property
    def control_ready(self) -> bool:
        """Whether the control topic has been read to its end at least once."""
        return self._control_ready is not None and self._control_ready.is_set()

    @property
    def stats(self) -> dict[str, int]:
        """Counters: ``emitted`` (accepted into the buffer), ``sent`` (acknowledged by the
        broker), ``dropped`` (buffer overflow, rejected by the broker, or lost at close),
        ``buffered`` (waiting or in flight), ``send_errors`` (failed delivery attempts),
        ``connect_errors`` (failed producer connections), ``rejected`` (invalid or oversized
        events never buffered), ``control_errors`` (malformed control messages skipped) and
        ``control_rejected`` (control records refused: not authentic or implausible), split
        by reason into ``control_rejected_unsigned``, ``..._unknown_key``,
        ``..._bad_signature`` and ``..._implausible``.
        """
        with self._lock:
            out = dict(self._counts)
            out["buffered"] = len(self._queue) + self._in_flight
        return out

    def allows(self, action: str) -> bool:
        """Whether ``action`` may run now (no event, no exception)."""
        state = self._state
        return state is None or state.allows(action)

    def check(
        self,
        action: str,
        *,
        kind: Kind = "tool",
        risk: Risk | None = None,
        target: str | None = None,
    ) -> None:
        """Raise :class:`AgentHalted` or :class:`PermissionRevoked` if ``action`` may not run.

        For agents that do not use :meth:`tool`: call it right before the action. A refusal
        emits a ``denied`` event, as the tool wrapper does.

        Examples
        --------
        >>> Monitor("bot-1").check("send_email")  # no control state: allowed
        """
        denial = self._denial(action)
        if denial is not None:
            self._emit_denied(action, kind, risk, target, denial)
            raise denial

    def context(
        self,
        *,
        session_id: str | None = None,
        approved_by: str | None = None,
        target: str | None = None,
        attributes: Mapping[str, Scalar] | None = None,
    ) -> contextlib.AbstractContextManager[None]:
        """Same as the module-level :func:`context` (shared by all monitors)."""
        return context(
            session_id=session_id, approved_by=approved_by, target=target, attributes=attributes
        )

    @overload
    def tool(self, func: F, /) -> F: ...

    @overload
    def tool(
        self,
        func: None = None,
        /,
        *,
        name: str | None = None,
        risk: Risk | None = None,
        target_arg: str | None = None,
        kind: Kind = "tool",
    ) -> Callable[[F], F]: ...

    def tool(
        self,
        func: F | None = None,
        /,
        *,
        name: str | None = None,
        risk: Risk | None = None,
        target_arg: str | None = None,
        kind: Kind = "tool",
    ) -> F | Callable[[F], F]:
        """Decorate a tool (sync or async) with enforcement and an event per call.

        Used bare (``@monitor.tool``) or with options (``@monitor.tool(risk="high")``).

        Parameters
        ----------
        func
            The tool. Coroutine functions stay coroutine functions, plain functions stay plain;
            name, docstring and signature are preserved.
        name
            The ``action`` of its events (default: the function's ``__name__``).
        risk
            Declared risk (``low`` ``medium`` ``high`` ``critical``).
        target_arg
            Name of a parameter whose value (as text, at most 1024 characters) is the event's
            ``target``: a path, URL, table or recipient.
        kind
            Event ``kind``; ``tool`` by default.

        Before each call: a halted agent raises :class:`AgentHalted`, a revoked action raises
        :class:`PermissionRevoked`; the tool does not run and a ``denied`` event is emitted.
        After it: an event with status ``ok`` or ``error`` (exception type and message) and
        ``latency_ms``; the tool's exception propagates unchanged.

        Examples
        --------
        >>> monitor = Monitor("bot-1")
        >>> @monitor.tool(name="fs.read", risk="medium", target_arg="path")
        ... def read_file(path: str) -> int:
        ...     return len(path)
        >>> read_file("/etc/hosts"), read_file.__name__
        (10, 'read_file')
        """
        if risk is not None and risk not in RISKS:
            raise ValueError(f"risk must be one of {sorted(RISKS)}, got {risk!r}")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")

        def decorate(fn: F) -> F:
            return self._wrap(fn, name=name, risk=risk, target_arg=target_arg, kind=kind)

        if func is None:
            return decorate
        return decorate(func)

    def record(
        self,
        action: str = "chat",
        *,
        model: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost_usd: float | None = None,
        latency_ms: float = 0.0,
        status: Status = "ok",
        error: str | BaseException | None = None,
        session_id: str | None = None,
        attributes: Mapping[str, Scalar] | None = None,
        kind: Kind = "llm",
    ) -> ActionEvent | None:
        """Emit one LLM call (``kind="llm"``). ``cost_usd=None`` records a cost of 0.

        Returns the event, or ``None`` if it was invalid (logged and counted, never raised).

        Examples
        --------
        >>> m = Monitor("bot-1")
        >>> e = m.record(model="gpt-4o", input_tokens=1200, output_tokens=80, cost_usd=0.004,
        ...              latency_ms=850.0)
        >>> e.kind, e.action, e.model, e.input_tokens, e.cost_usd
        ('llm', 'chat', 'gpt-4o', 1200, 0.004)
        """
        return self.emit(
            action,
            kind=kind,
            status=status,
            error=error,
            model=model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=0.0 if cost_usd is None else cost_usd,
            latency_ms=latency_ms,
            session_id=session_id,
            attributes=attributes,
        )

    def emit(
        self,
        action: str,
        *,
        kind: Kind = "tool",
        status: Status = "ok",
        error: str | BaseException | None = None,
        risk: Risk | None = None,
        target: str | None = None,
        approved_by: str | None = None,
        session_id: str | None = None,
        model: str | None = None,
        cost_usd: float = 0.0,
        input_tokens: int = 0,
        output_tokens: int = 0,
        latency_ms: float = 0.0,
        attributes: Mapping[str, Scalar] | None = None,
    ) -> ActionEvent | None:
        """Emit one event with the given fields; never blocks, never raises.

        ``event_id`` (uuid4 hex), ``ts`` (now, UTC), ``agent_id`` and ``fleet`` are filled in;
        ``session_id``, ``approved_by``, ``target`` and ``attributes`` default to the current
        :func:`context`. Free text (``error``, ``target``, ...) is truncated to the wire
        limits. Returns the event, or ``None`` if it was invalid (logged and counted in
        ``stats["rejected"]``).

        Examples
        --------
        >>> Monitor("bot-1").emit("http.get", kind="api", target="https://x.test", latency_ms=3)
        ... # doctest: +ELLIPSIS
        ActionEvent(event_id='...', ..., action='http.get', kind='api', ...)
        """
        try:
            ctx = _current_context()
            if isinstance(error, BaseException):
                error = _describe_error(error, self.max_error_chars, self.error_detail)
            attrs = dict(ctx.attributes)
            if attributes:
                attrs.update(attributes)
            event = ActionEvent(
                event_id=uuid.uuid4().hex,
                ts=datetime.now(UTC),
                agent_id=self.agent_id,
                fleet=self.fleet,
                session_id=_clip(
                    session_id if session_id is not None else ctx.session_id or self.session_id,
                    128,
                ),
                action=action,
                kind=kind,
                status=status,
                error=_clip(error, self.max_error_chars),
                risk=risk,
                target=_clip(target if target is not None else ctx.target, 1024),
                approved_by=_clip(approved_by if approved_by is not None else ctx.approved_by, 128),
                model=_clip(model, 128),
                cost_usd=float(cost_usd),
                input_tokens=int(input_tokens),
                output_tokens=int(output_tokens),
                latency_ms=float(latency_ms),
                attributes=attrs,
            )
            payload = encode_event(event)
        except ValidationError as exc:
            self._reject(action, _validation_reason(exc))
            return None
        except Exception as exc:
            self._reject(action, f"{type(exc).__name__}")
            return None
        if len(payload) > MAX_EVENT_BYTES:
            self._reject(action, f"{len(payload)} bytes > {MAX_EVENT_BYTES} (trim attributes)")
            return None
        self._enqueue(payload)
        return event

    # -- tool wrapping ------------------------------------------------------------------------

    def _wrap(
        self, fn: F, *, name: str | None, risk: Risk | None, target_arg: str | None, kind: Kind
    ) -> F:
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

        def target_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
            if target_arg is None:
                return None
            if signature is None:
                value = kwargs.get(target_arg)
            else:
                try:
                    bound = signature.bind_partial(*args, **kwargs)
                except TypeError:
                    return None
                value = bound.arguments.get(target_arg)
            return None if value is None else _clip(value, 1024)

        def before(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
            target = target_of(args, kwargs)
            denial = self._denial(action)
            if denial is not None:
                self._emit_denied(action, kind, risk, target, denial)
                raise denial
            return target

        def after(target: str | None, started: float, exc: BaseException | None) -> None:
            self.emit(
                action,
                kind=kind,
                status="ok" if exc is None else "error",
                error=exc,
                risk=risk,
                target=target,
                latency_ms=(time.perf_counter() - started) * 1000.0,
            )

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                target = before(args, kwargs)
                started = time.perf_counter()
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as exc:
                    after(target, started, exc)
                    raise
                after(target, started, None)
                return result

            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            target = before(args, kwargs)
            started = time.perf_counter()
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                after(target, started, exc)
                raise
            after(target, started, None)
            return result

        return cast(F, sync_wrapper)

    # -- control ------------------------------------------------------------------------------

    def _denial(self, action: str) -> ControlError | None:
        state = self._state
        if state is None:
            return None
        if state.halted:
            return AgentHalted(self.agent_id, state.reason, state.incident_id)
        if action in state.revoked:
            return PermissionRevoked(self.agent_id, action, state.reason)
        return None

    def _emit_denied(
        self,
        action: str,
        kind: Kind,
        risk: Risk | None,
        target: str | None,
        denial: ControlError,
    ) -> None:
        state = self._state
        attributes: dict[str, Scalar] = {}
        if state is not None:
            attributes["control_version"] = state.version
            if state.incident_id:
                attributes["incident_id"] = state.incident_id
        self.emit(
            action,
            kind=kind,
            status="denied",
            error=_clip(
                f"{type(denial).__name__}: {state.reason if state else ''}".rstrip(": "),
                self.max_error_chars,
            ),
            risk=risk,
            target=target,
            attributes=attributes,
        )

    def _apply_record(self, topic: str, partition: int, offset: int, key: Any, value: Any) -> None:
        """Apply one control-topic record (ignoring other agents' keys)."""
        if key is None:
            self._bad_control(topic, partition, offset, "message has no key")
            return
        if key != self._key:
            return
        if value is None and self.control_verifier is not None:
            self._refuse(topic, partition, offset, "unsigned", "a tombstone cannot be signed")
            return
        if value is None:  # tombstone (unverified mode): the agent is no longer restricted
            if self._state is not None:
                log.warning(
                    "agentwatch: control state of agent %s cleared (tombstone at %s[%d]@%d)",
                    self.agent_id,
                    topic,
                    partition,
                    offset,
                )
            self._state = None
            return
        try:
            state = ControlState.model_validate_json(value)
        except ValidationError as exc:
            self._bad_control(topic, partition, offset, _validation_reason(exc))
            return
        except Exception as exc:  # defensive: parser edge cases
            self._bad_control(topic, partition, offset, type(exc).__name__)
            return
        if state.agent_id != self.agent_id:
            self._bad_control(
                topic, partition, offset, f"key {self.agent_id!r} but agent_id {state.agent_id!r}"
            )
            return
        if self.control_verifier is not None:
            try:
                self.control_verifier.verify(state)
            except VerificationError as exc:
                self._refuse(topic, partition, offset, exc.reason, exc.detail)
                return
            except Exception as exc:  # defensive: never let a record stop the control loop
                self._refuse(topic, partition, offset, "bad_signature", type(exc).__name__)
                return
        implausible = self._implausible(state)
        if implausible is not None:
            self._refuse(topic, partition, offset, "implausible", implausible)
            return
        if state.version < self._version:
            log.debug(
                "agentwatch: ignoring control version %d < held %d for %s",
                state.version,
                self._version,
                self.agent_id,
            )
            return
        held = self._state
        self._version = state.version
        self._state = state
        self._log_transition(held, state)

    def _implausible(self, state: ControlState) -> str | None:
        """Why ``state`` cannot be real (from the future), or None."""
        now = time.time()
        ahead = state.version / 1000.0 - now
        if ahead > self.max_clock_skew_s:
            return (
                f"version {state.version} is {ahead:.0f}s ahead of this host's clock "
                f"(versions are milliseconds; at most {self.max_clock_skew_s:g}s allowed)"
            )
        ahead = state.updated_at.timestamp() - now
        if ahead > self.max_clock_skew_s:
            return f"updated_at is {ahead:.0f}s ahead of this host's clock"
        return None

    def _refuse(self, topic: str, partition: int, offset: int, reason: str, detail: str) -> None:
        """Count a refused control record; log the first of each reason."""
        with self._lock:
            self._counts["control_rejected"] += 1
            self._counts[f"control_rejected_{reason}"] += 1
        if reason in self._refusals_logged:
            return
        self._refusals_logged.add(reason)
        log.warning(
            "agentwatch: agent %s refused control record %s[%d]@%d (%s: %s); it changes "
            "nothing. Further %s records are only counted (stats['control_rejected_%s'])",
            self.agent_id,
            topic,
            partition,
            offset,
            reason,
            detail,
            reason,
            reason,
        )

    def _log_transition(self, old: ControlState | None, new: ControlState) -> None:
        was_halted = old is not None and old.halted
        old_revoked = set(old.revoked) if old is not None else set()
        if new.halted and not was_halted:
            log.warning(
                "agentwatch: agent %s HALTED by %s (incident %s): %s",
                self.agent_id,
                escape(new.updated_by),
                escape(new.incident_id or "-"),
                escape(new.reason or "no reason given", 1024),
            )
        elif was_halted and not new.halted:
            log.warning("agentwatch: agent %s resumed by %s", self.agent_id, escape(new.updated_by))
        if set(new.revoked) != old_revoked:
            log.warning(
                "agentwatch: agent %s revoked actions now %s (by %s)",
                self.agent_id,
                escape(sorted(new.revoked), 2048),
                escape(new.updated_by),
            )

    def _bad_control(self, topic: str, partition: int, offset: int, reason: str) -> None:
        with self._lock:
            self._counts["control_errors"] += 1
        log.warning(
            "agentwatch: skipping malformed control message %s[%d]@%d: %s",
            topic,
            partition,
            offset,
            escape(reason, 500),
        )

    async def _control_loop(self) -> None:
        backoff = _Backoff(0.2, 5.0)
        while True:
            consumer = None
            try:
                consumer = AIOKafkaConsumer(
                    bootstrap_servers=self.bootstrap,
                    group_id=None,
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                    fetch_max_wait_ms=self.fetch_max_wait_ms,
                    **self._kafka_options,
                )
                await consumer.start()
                await self._follow_control(consumer, backoff)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._warn.warning(
                    "control",
                    "agentwatch: cannot read control topic %s on %s for agent %s: %s; retrying",
                    self.control_topic,
                    self.bootstrap,
                    self.agent_id,
                    _describe_error(exc, 300, True),
                )
            finally:
                if consumer is not None:
                    await self._stop_client(consumer)
            await asyncio.sleep(backoff.next())

    async def _follow_control(self, consumer: Any, backoff: _Backoff) -> None:
        assert self._control_ready is not None
        # Listing all topics does not auto-create the control topic (it must be compacted).
        while self.control_topic not in await consumer.topics():
            if not self._control_ready.is_set():
                log.info(
                    "agentwatch: control topic %s does not exist yet; agent %s unrestricted",
                    self.control_topic,
                    self.agent_id,
                )
                self._control_ready.set()
            backoff.reset()
            await asyncio.sleep(TOPIC_POLL_S)
        consumer.subscribe([self.control_topic])  # no group: all partitions, from the start
        deadline = time.monotonic() + 10.0
        while not consumer.assignment():
            if time.monotonic() > deadline:
                raise TimeoutError("no partitions assigned for the control topic")
            await asyncio.sleep(0.01)
        partitions = list(consumer.assignment())
        ends: dict[Any, int] = await consumer.end_offsets(partitions)
        caught_up = False
        while True:
            batches = await consumer.getmany(timeout_ms=200 if not caught_up else 1000)
            for records in batches.values():
                for r in records:
                    self._apply_record(r.topic, r.partition, r.offset, r.key, r.value)
            backoff.reset()
            if not caught_up:
                positions = [await consumer.position(tp) for tp in partitions]
                if all(
                    pos >= ends.get(tp, 0) for pos, tp in zip(positions, partitions, strict=True)
                ):
                    caught_up = True
                    self._control_ready.set()

    # -- sending ------------------------------------------------------------------------------

    def _buffered(self) -> int:
        with self._lock:
            return len(self._queue) + self._in_flight

    def _enqueue(self, payload: bytes) -> None:
        try:
            closed = self._closed
            with self._lock:
                self._counts["emitted"] += 1
                if closed:
                    self._counts["dropped"] += 1
                    self._unreported_drops += 1
                else:
                    if len(self._queue) >= self.buffer_size:
                        self._queue.popleft()
                        self._counts["dropped"] += 1
                        self._unreported_drops += 1
                    self._queue.append(_Pending(payload))
            if self._unreported_drops:
                self._report_drops()
            self._wakeup()
        except Exception:  # never let monitoring break the agent
            log.debug("agentwatch: enqueue failed", exc_info=True)

    def _report_drops(self, force: bool = False) -> None:
        with self._lock:
            n, self._unreported_drops = self._unreported_drops, 0
            total = self._counts["dropped"]
        if not n:
            return
        if force:
            log.warning(
                "agentwatch: agent %s dropped %d events (%d in total)", self.agent_id, n, total
            )
            return
        self._warn.warning(
            "drops",
            "agentwatch: agent %s dropped events: buffer of %d full (broker %s unreachable?) "
            "or monitor closed; %d dropped in total",
            self.agent_id,
            self.buffer_size,
            self.bootstrap,
            total,
        )

    def _wakeup(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or not self._drainer_idle:
            return
        self._drainer_idle = False
        try:
            if threading.get_ident() == self._loop_thread:
                wake.set()
            else:
                loop.call_soon_threadsafe(wake.set)
        except RuntimeError:  # loop closed
            pass

    def _take_batch(self) -> list[_Pending]:
        with self._lock:
            n = min(len(self._queue), MAX_BATCH)
            batch = [self._queue.popleft() for _ in range(n)]
            self._in_flight += n
        return batch

    def _settle(self, batch_size: int, sent: int, retry: list[_Pending], lost: int) -> None:
        """Book the outcome of one batch; ``retry`` goes back to the front of the queue."""
        with self._lock:
            self._in_flight -= batch_size
            self._counts["sent"] += sent
            self._counts["dropped"] += lost
            self._unreported_drops += lost
            for item in reversed(retry):
                if len(self._queue) >= self.buffer_size:  # full: the retries are the oldest
                    self._counts["dropped"] += 1
                    self._unreported_drops += 1
                else:
                    self._queue.appendleft(item)
        if self._unreported_drops:
            self._report_drops()

    async def _drain_loop(self) -> None:
        assert self._wake is not None
        backoff = _Backoff(0.1, 5.0)
        while True:
            producer = await self._ensure_producer()
            if producer is None:
                await asyncio.sleep(backoff.next())
                continue
            batch = self._take_batch()
            if not batch:
                self._wake.clear()
                self._drainer_idle = True
                if not self._queue:  # re-check: an emit may have raced the idle flag
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), 1.0)
                self._drainer_idle = False
                continue
            if await self._send_batch(producer, batch):
                backoff.reset()
            else:
                await asyncio.sleep(backoff.next())

    async def _ensure_producer(self) -> Any:
        if self._producer is not None:
            return self._producer
        if self._shared_producer is not None:
            self._producer = self._shared_producer
            return self._producer
        options = {"request_timeout_ms": 10_000, **self._kafka_options}
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5, **options)
        try:
            await producer.start()
        except asyncio.CancelledError:
            await self._stop_client(producer)
            raise
        except Exception as exc:
            await self._stop_client(producer)
            with self._lock:
                self._counts["connect_errors"] += 1
            self._warn.warning(
                "connect",
                "agentwatch: cannot connect to %s to send events of agent %s: %s; %d buffered, "
                "retrying",
                self.bootstrap,
                self.agent_id,
                _describe_error(exc, 300, True),
                self._buffered(),
            )
            return None
        log.info("agentwatch: agent %s sending events to %s", self.agent_id, self.bootstrap)
        self._producer = producer
        return producer

    async def _send_batch(self, producer: Any, batch: list[_Pending]) -> bool:
        """Send one batch; return whether everything was delivered."""
        futures: list[Any] = []
        handoff_error: BaseException | None = None
        for item in batch:
            try:
                futures.append(await producer.send(self.actions_topic, item.payload, key=self._key))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                handoff_error = exc
                break
        results: list[Any] = list(await asyncio.gather(*futures, return_exceptions=True))
        if handoff_error is not None:
            results.extend([handoff_error] * (len(batch) - len(futures)))
        sent = 0
        retry: list[_Pending] = []
        lost = 0
        first_error: BaseException | None = None
        for item, result in zip(batch, results, strict=True):
            if not isinstance(result, BaseException):
                sent += 1
                continue
            first_error = first_error or result
            if _is_permanent(result):
                item.failures += 1
                if item.failures >= MAX_PERMANENT_FAILURES:
                    lost += 1
                    continue
            retry.append(item)
        failed = len(batch) - sent
        if failed:
            with self._lock:
                self._counts["send_errors"] += failed
            assert first_error is not None
            self._warn.warning(
                "send",
                "agentwatch: sending %d events of agent %s to %s failed: %s; %d will be retried",
                failed,
                self.agent_id,
                self.actions_topic,
                _describe_error(first_error, 300, True),
                len(retry),
            )
        self._settle(len(batch), sent, retry, lost)
        return failed == 0

    async def _stop_client(self, client: Any) -> None:
        try:
            await asyncio.wait_for(client.stop(), max(self.close_timeout, 0.5))
        except BaseException as exc:
            log.debug("agentwatch: stopping a Kafka client failed: %r", exc)
            if isinstance(exc, asyncio.CancelledError):
                raise

    def _reject(self, action: str, reason: str) -> None:
        with self._lock:
            self._counts["rejected"] += 1
        self._warn.warning(
            "reject",
            "agentwatch: agent %s: invalid event for action %r not emitted: %s",
            self.agent_id,
            _clip(action, 128),
            reason,
        )


# -- synchronous facade -----------------------------------------------------------------------


class SyncMonitor:
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
        if settings is None:
            settings = load_settings()
        kwargs.setdefault("bootstrap", settings.kafka_bootstrap)
        kwargs.setdefault("topic_prefix", settings.topic_prefix)
        explicit = kwargs.get("kafka_options") or {}
        kwargs["kafka_options"] = {**client_options(settings), **explicit}
        _control_defaults(kwargs, settings)
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

    # -- delegation ---------------------------------------------------------------------------

    @property
    def agent_id(self) -> str:
        return self.monitor.agent_id

    @property
    def state(self) -> ControlState | None:
        """See :attr:`Monitor.state`."""
        return self.monitor.state

    @property
    def stats(self) -> dict[str, int]:
        """See :attr:`Monitor.stats`."""
        return self.monitor.stats

    @property
    def control_ready(self) -> bool:
        """See :attr:`Monitor.control_ready`."""
        return self.monitor.control_ready

    def allows(self, action: str) -> bool:
        """See :meth:`Monitor.allows`."""
        return self.monitor.allows(action)

    def check(
        self,
        action: str,
        *,
        kind: Kind = "tool",
        risk: Risk | None = None,
        target: str | None = None,
    ) -> None:
        """See :meth:`Monitor.check`."""
        self.monitor.check(action, kind=kind, risk=risk, target=target)

    def context(
        self,
        *,
        session_id: str | None = None,
        approved_by: str | None = None,
        target: str | None = None,
        attributes: Mapping[str, Scalar] | None = None,
    ) -> contextlib.AbstractContextManager[None]:
        """See :func:`context`."""
        return context(
            session_id=session_id, approved_by=approved_by, target=target, attributes=attributes
        )

    @overload
    def tool(self, func: F, /) -> F: ...

    @overload
    def tool(
        self,
        func: None = None,
        /,
        *,
        name: str | None = None,
        risk: Risk | None = None,
        target_arg: str | None = None,
        kind: Kind = "tool",
    ) -> Callable[[F], F]: ...

    def tool(
        self,
        func: F | None = None,
        /,
        *,
        name: str | None = None,
        risk: Risk | None = None,
        target_arg: str | None = None,
        kind: Kind = "tool",
    ) -> F | Callable[[F], F]:
        """See :meth:`Monitor.tool`; only plain (non-async) functions."""

        def decorate(fn: F) -> F:
            if inspect.iscoroutinefunction(fn):
                raise TypeError(
                    f"SyncMonitor.tool wraps plain functions; {getattr(fn, '__name__', fn)!r} "
                    "is async: "
                    "use Monitor in async agents"
                )
            return self.monitor.tool(name=name, risk=risk, target_arg=target_arg, kind=kind)(fn)

        if func is None:
            return decorate
        return decorate(func)

    def record(
        self,
        action: str = "chat",
        *,
        model: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost_usd: float | None = None,
        latency_ms: float = 0.0,
        status: Status = "ok",
        error: str | BaseException | None = None,
        session_id: str | None = None,
        attributes: Mapping[str, Scalar] | None = None,
        kind: Kind = "llm",
    ) -> ActionEvent | None:
        """See :meth:`Monitor.record`."""
        return self.monitor.record(
            action,
            model=model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=cost_usd,
            latency_ms=latency_ms,
            status=status,
            error=error,
            session_id=session_id,
            attributes=attributes,
            kind=kind,
        )

    def emit(self, action: str, **fields: Any) -> ActionEvent | None:
        """See :meth:`Monitor.emit`."""
        return self.monitor.emit(action, **fields)

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
