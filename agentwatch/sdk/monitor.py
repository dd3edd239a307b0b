"""The asyncio :class:`Monitor`: an agent's events out, its halts and revocations enforced.

An agent wraps its tools with :meth:`Monitor.tool`. Before every call the wrapper checks the
agent's :class:`~agentwatch.schemas.ControlState` (read from the compacted ``<prefix>.control``
topic by a :class:`~agentwatch.sdk.follower.ControlFollower` into a
:class:`~agentwatch.sdk.control.ControlBook`) and refuses to run a halted agent's tools or a
revoked action, raising :class:`~agentwatch.sdk.AgentHalted` or
:class:`~agentwatch.sdk.PermissionRevoked`. After every call it emits an
:class:`~agentwatch.schemas.ActionEvent` to ``<prefix>.actions`` through an
:class:`~agentwatch.sdk.emitter.EventEmitter`, which never blocks the agent and never raises.

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
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from agentwatch.config import Settings, load_settings
from agentwatch.connection import (
    DEFAULT_BOOTSTRAP,
    Connection,
    ConnectionFileError,
    read_connection,
    sdk_bootstrap,
)
from agentwatch.kafka_security import KafkaConnectError, check_connection, client_options
from agentwatch.schemas._types import AGENT_ID_PATTERN
from agentwatch.schemas.approvals import POLICY_KEY, ApprovalPolicy
from agentwatch.schemas.signing import ControlVerifier, SigningKeyError, verifier_from_settings
from agentwatch.sdk.approval import ApprovalGate, PolicyBook
from agentwatch.sdk.control import ControlBook
from agentwatch.sdk.emitter import EventEmitter
from agentwatch.sdk.errors import ControlUnavailable
from agentwatch.sdk.follower import ControlFollower
from agentwatch.sdk.surface import AgentSurface

__all__ = ["KAFKA_OPTION_KEYS", "Monitor", "monitor_kwargs_from_settings"]

log = logging.getLogger("agentwatch.sdk")

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


def monitor_kwargs_from_settings(settings: Settings | None, kwargs: dict[str, Any]) -> None:
    """Fill ``kwargs`` of a monitor from ``settings`` (default: :func:`load_settings`).

    Broker, topic prefix, Kafka security (explicit ``kafka_options`` keys win), the control
    verifier, the clock-skew bound and the control fetch wait; keys already in ``kwargs`` are
    kept. When neither
    ``kwargs`` nor the settings name a broker, the connection file of a running
    ``agentwatch up`` (``settings.connection_path``) gives the broker, the topic prefix and the
    public key (:mod:`agentwatch.connection`).
    """
    if settings is None:
        settings = load_settings()
    explicit_set = settings.model_fields_set
    connection = None
    if "bootstrap" not in kwargs and "kafka_bootstrap" not in explicit_set:
        try:  # no broker named anywhere: the stack `agentwatch up` runs, if any
            connection = read_connection(settings.connection_path)
        except ConnectionFileError as exc:
            log.warning("agentwatch: %s; using %s", exc, settings.kafka_bootstrap)
    if connection is not None:
        kwargs["bootstrap"] = connection.bootstrap
        if "topic_prefix" not in explicit_set:
            kwargs.setdefault("topic_prefix", connection.topic_prefix)
        key = connection.control_verify_key
        if "control_verifier" not in kwargs and not settings.control_verify_keys and key:
            kwargs["control_verifier"] = ControlVerifier.load([str(key)])
    kwargs.setdefault("bootstrap", settings.kafka_bootstrap)
    kwargs.setdefault("topic_prefix", settings.topic_prefix)
    explicit = kwargs.get("kafka_options") or {}
    kwargs["kafka_options"] = {**client_options(settings), **explicit}
    if "control_verifier" not in kwargs:
        kwargs["control_verifier"] = verifier_from_settings(settings)
    kwargs.setdefault("max_clock_skew_s", settings.control_max_clock_skew_s)
    kwargs.setdefault("fetch_max_wait_ms", settings.control_fetch_max_wait_ms)


class Monitor(AgentSurface):
    """Runtime monitor and kill switch for one agent (asyncio).

    Parameters
    ----------
    agent_id
        The agent's id (``[A-Za-z0-9._:@-]+``, at most 128 characters, not ``.`` or ``..``);
        the Kafka key of its events and of its control state.
    fleet
        Peer group / role; detectors compare an agent with its fleet.
    bootstrap
        Comma-separated ``host:port`` list of Kafka brokers. Not given: resolved at
        :meth:`start` from ``$AGENTWATCH_KAFKA_BOOTSTRAP``, else the connection file of a
        running ``agentwatch up`` (``~/.agentwatch/connection.json``, see
        :mod:`agentwatch.connection`; its topic prefix and public key come with it unless
        ``topic_prefix`` / ``control_verifier`` are given), else ``127.0.0.1:9092``.
    topic_prefix
        Events go to ``<prefix>.actions``, control state is read from ``<prefix>.control``
        (default ``agentwatch``).
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
        warns at start (see :mod:`agentwatch.sdk.control`).
    max_clock_skew_s
        A control record whose ``version`` (milliseconds) or ``updated_at`` is further than
        this ahead of this host's clock is refused as implausible.
    approvals
        Approval requirements of this agent's own, checked before those the workers publish
        from their rules file (``docs/approvals.md``). A matching call waits for a person's
        decision (:class:`~agentwatch.sdk.ApprovalDenied` when denied or timed out).
    approval_grace_s
        How long after a requirement's timeout a call still waits for the worker's answer
        before it is denied locally (no worker running).

    Attributes
    ----------
    control : ControlBook
        The agent's verified control state (what :meth:`check` asks).
    emitter : EventEmitter
        Builds and sends the agent's events (what :meth:`emit` uses).
    follower : ControlFollower
        Reads the control topic into ``control`` while the monitor runs.

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
    """

    def __init__(
        self,
        agent_id: str,
        fleet: str = "default",
        *,
        bootstrap: str | None = None,
        topic_prefix: str | None = None,
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
        approvals: ApprovalPolicy | None = None,
        approval_grace_s: float = 5.0,
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
        self._resolve_bootstrap = bootstrap is None  # at start(): no I/O in a constructor
        self._prefix_given = topic_prefix is not None
        self.bootstrap = bootstrap or DEFAULT_BOOTSTRAP
        self.topic_prefix = topic_prefix or "agentwatch"
        self.actions_topic = f"{self.topic_prefix}.actions"
        self.control_topic = f"{self.topic_prefix}.control"
        self.startup_timeout = startup_timeout
        self.close_timeout = close_timeout
        self.require_control = require_control
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self._kafka_options = dict(kafka_options or {})
        self.control_verifier = control_verifier
        self.max_clock_skew_s = max_clock_skew_s
        self.emitter = EventEmitter(
            agent_id,
            fleet,
            bootstrap=self.bootstrap,
            topic=self.actions_topic,
            buffer_size=buffer_size,
            producer=producer,
            session_id=session_id,
            close_timeout=close_timeout,
            max_error_chars=max_error_chars,
            error_detail=error_detail,
            kafka_options=self._kafka_options,
        )
        self.control = ControlBook(agent_id, control_verifier, max_clock_skew_s)
        self.policy_book = PolicyBook(control_verifier)
        self.approvals_topic = f"{self.topic_prefix}.approvals"
        self.gate = ApprovalGate(
            agent_id,
            fleet,
            bootstrap=self.bootstrap,
            topic=self.approvals_topic,
            policy_book=self.policy_book,
            local=approvals,
            verifier=control_verifier,
            kafka_options=self._kafka_options,
            grace_s=approval_grace_s,
        )
        self.approvals = self.gate
        self.follower = ControlFollower(
            self.bootstrap,
            self.control_topic,
            {self.control.key: self.control, POLICY_KEY: self.policy_book},
            kafka_options=self._kafka_options,
            fetch_max_wait_ms=fetch_max_wait_ms,
            stop_timeout=close_timeout,
            label=f"agent {agent_id}",
        )
        # runtime (created by start())
        self._started = False
        self._control_ready: asyncio.Event | None = None
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
        monitor_kwargs_from_settings(settings, kwargs)
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
        if self._started:
            raise RuntimeError("this Monitor was already started")
        if self._resolve_bootstrap:
            self._resolve_bootstrap = False
            self._connect(*sdk_bootstrap())
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
        self._started = True
        self._control_ready = asyncio.Event()
        self.emitter.start()
        self._control_task = asyncio.create_task(
            self.follower.run(self._control_ready), name="agentwatch-control"
        )
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

    def _connect(self, bootstrap: str, connection: Connection | None) -> None:
        """Use ``bootstrap``; from a connection file also its topic prefix and public key."""
        self.bootstrap = self.emitter.bootstrap = self.follower.bootstrap = bootstrap
        self.gate.bootstrap = bootstrap
        if connection is None:
            return
        if not self._prefix_given and connection.topic_prefix != self.topic_prefix:
            self.topic_prefix = connection.topic_prefix
            self.actions_topic = self.emitter.topic = f"{self.topic_prefix}.actions"
            self.control_topic = self.follower.topic = f"{self.topic_prefix}.control"
            self.approvals_topic = self.gate.topic = f"{self.topic_prefix}.approvals"
        key = connection.control_verify_key
        if self.control_verifier is None and key is not None:
            try:
                self.control_verifier = self.control.verifier = ControlVerifier.load([str(key)])
                self.policy_book.verifier = self.gate.verifier = self.control_verifier
            except SigningKeyError as exc:
                log.warning("agentwatch: the connection file's public key: %s", exc)
        log.info(
            "agentwatch: agent %s reaches the stack of `agentwatch up` (pid %d) at %s",
            self.agent_id,
            connection.pid,
            bootstrap,
        )

    async def aclose(self) -> None:
        """Deliver buffered events (up to ``close_timeout``), then stop both Kafka clients.

        Idempotent. Events that could not be delivered are counted as dropped and reported.
        """
        if self._closed:
            return
        self._closed = True
        await self.gate.aclose()
        await self.emitter.aclose()
        task = self._control_task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=max(self.close_timeout, 0.5))

    async def flush(self, max_wait: float | None = None) -> bool:
        """Wait until every buffered event is acknowledged (or ``max_wait`` seconds passed).

        Returns whether the buffer is empty. Needs a started monitor.
        """
        return await self.emitter.flush(max_wait)

    # -- monitor-specific views -----------------------------------------------------------

    @property
    def session_id(self) -> str | None:
        """Default ``session_id`` of events."""
        return self.emitter.session_id

    @property
    def buffer_size(self) -> int:
        """Events that may wait in memory for the broker."""
        return self.emitter.buffer_size

    @property
    def max_error_chars(self) -> int:
        """Length limit of ``error`` texts."""
        return self.emitter.max_error_chars

    @property
    def error_detail(self) -> bool:
        """Whether ``error`` texts carry the exception message."""
        return self.emitter.error_detail

    @property
    def control_ready(self) -> bool:
        """Whether the control topic has been read to its end at least once."""
        return self._control_ready is not None and self._control_ready.is_set()
