"""Run a worker: in production against Kafka, or with the embedded broker (``agentwatch up``)."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import secrets
import shutil
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import faust
import uvloop
from prometheus_client import CollectorRegistry

from agentwatch.config import Settings
from agentwatch.connection import Connection, remove_connection, write_connection
from agentwatch.detectors.rules import RulesError, load_rules
from agentwatch.kafka_security import PLAINTEXT, check_connection, client_options
from agentwatch.schemas.signing import ensure_key_pair, signer_from_settings
from agentwatch.streams.app import WorkerApp, create_app
from agentwatch.streams.broker import EmbeddedBroker
from agentwatch.streams.topics import TOPIC_NAMES, ensure_topics

__all__ = [
    "EMBEDDED_OVERRIDES",
    "TOKEN_FILE",
    "StartError",
    "check_port_free",
    "ensure_token_file",
    "rules_usable",
    "run_embedded",
    "run_worker",
    "running_app",
]

log = logging.getLogger(__name__)

TOKEN_FILE = "api-token"  # noqa: S105 - a file name, not a secret
BROKER_WATCH_INTERVAL_S = 0.5


class StartError(RuntimeError):
    """The stack cannot start or keep running; the message says why and what to do (one line)."""


def check_port_free(host: str, port: int, what: str, variable: str) -> None:
    """Raise :class:`StartError` when ``host:port`` cannot be bound now (``port`` 0: any).

    Binds and closes a socket the way the server will (``SO_REUSEADDR``), so a port in
    ``TIME_WAIT`` passes and one somebody listens on does not.
    """
    if port == 0:
        return
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except OSError as exc:  # a host name that does not resolve: the server would fail the same
        raise StartError(f"cannot listen on {host}:{port} for {what}: {exc}") from None
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                reason = "the port is in use (another `agentwatch up` or worker?)"
            else:
                reason = exc.strerror or str(exc)
            raise StartError(
                f"cannot listen on {host}:{port} for {what}: {reason}; stop what holds it, or "
                f"set {variable} to a free port (0 = any free port)"
            ) from None


#: Settings for the embedded Tansu broker (v0.6.0-510f3e2, memory storage), measured here:
#: - it admits a group member only after half the session timeout, so keep that short
#:   (a worker starts in ~2 s instead of ~23 s);
#: - its ``ListOffsets`` counts the end of a partition in record batches, not records; readers
#:   that read to the end take it from a fetch instead (:mod:`agentwatch.log_end`), so the
#:   producers batch as they do on Kafka.
EMBEDDED_OVERRIDES: dict[str, float | int] = {
    "rebalance_timeout_s": 3.0,
    "session_timeout_s": 4.0,
    "heartbeat_interval_s": 1.0,
    # Tansu holds a fetch until its wait expires: an agent of the embedded stack (a few, on
    # one host) follows the control topic with a short wait, so a halt is obeyed in ~10 ms
    "control_fetch_max_wait_ms": 20,
}


def run_worker(
    settings: Settings,
    *,
    tasks: Sequence[Callable[[WorkerApp], Awaitable[None]]] = (),
    banner: Callable[[WorkerApp], None] | None = None,
) -> int:
    """Run a faust worker until SIGINT/SIGTERM; return its exit code.

    A rules file with problems stops it before it connects to anything: one line per
    problem on stderr (as ``agentwatch rules validate`` prints them), then exit status 2.
    ``banner`` is called once the worker runs (its web server listening, its tables
    recovered), not before: a worker that fails to start prints no banner.

    Raises
    ------
    StartError
        when the web server's port is taken.
    KafkaConnectError
        when no broker accepts a connection with the settings' security (one line; the CLI
        prints it).
    agentwatch.ingest.service.OtlpStartError
        when the OTLP receiver (``otlp_enabled``) cannot bind its port or read its prices.
    agentwatch.schemas.signing.SigningKeyError
        before connecting to anything, when there is no usable control signing key.
    """
    signer_from_settings(settings)  # fail before touching the broker
    if not rules_usable(settings):
        return 2
    check_port_free(settings.web_host, settings.web_port, "the web server", "AGENTWATCH_WEB_PORT")
    # The policy, not only this loop: faust's consumer thread creates its own loop (~10% faster).
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(
            check_connection(settings.kafka_bootstrap, client_options(settings))
        )
    except BaseException:
        loop.close()
        raise
    loop.run_until_complete(ensure_topics(settings))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    worker_app = create_app(settings)
    if banner is not None:
        show = banner

        async def announce(app: WorkerApp) -> None:
            show(app)

        _add_task(worker_app, announce)
    for task in tasks:
        _add_task(worker_app, task)
    if settings.otlp_enabled:  # bound now: a port in use stops the worker before it joins
        from agentwatch.ingest.service import start_in_worker

        try:
            receiver = loop.run_until_complete(start_in_worker(settings, worker_app))
        except BaseException:
            loop.close()
            raise
        worker_app.otlp_url = receiver.url
    worker = faust.Worker(
        worker_app.app,
        loop=loop,
        loglevel=settings.log_level,
        quiet=True,
        redirect_stdouts=False,
    )
    for name in _FRAMEWORKS:  # faust configures the root logger, not these
        logging.getLogger(name).setLevel(_framework_level(settings.log_level))
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


# (agentwatch's own faust services log their start-up chatter as agentwatch.faust)
_FRAMEWORKS = ("faust", "mode", "aiokafka", "agentwatch.faust")


def _framework_level(level: str) -> str:
    """The log level of faust, mode and aiokafka for agentwatch's ``level``.

    At INFO, faust prints ~120 lines of start-up chatter (services starting, subscription
    tables); they say nothing an operator acts on, so the framework logs from WARNING then.
    DEBUG shows everything.
    """
    return "WARNING" if level.upper() == "INFO" else level


def rules_usable(settings: Settings) -> bool:
    """Whether the settings' rules file loads; if not, print its problems, one per line."""
    try:
        load_rules(settings.rules_file)
    except RulesError as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        path = settings.rules_file
        todo = (
            "reinstall agentwatch (the shipped rules are damaged)"
            if path is None
            else f"fix them (check with: agentwatch rules validate {path}) or unset "
            "AGENTWATCH_RULES_FILE"
        )
        print(
            f"agentwatch: not started: {len(exc.problems)} problem(s) in "
            f"{path or 'the shipped rules'}; {todo}",
            file=sys.stderr,
        )
        return False
    return True


def _add_task(worker_app: WorkerApp, task: Callable[[WorkerApp], Awaitable[None]]) -> None:
    async def run() -> None:
        try:
            await task(worker_app)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background task %s failed", getattr(task, "__name__", task))

    worker_app.app.task(run)


def run_embedded(
    settings: Settings,
    *,
    tasks: Sequence[Callable[[WorkerApp], Awaitable[None]]] = (),
) -> int:
    """Start the embedded broker, create topics and run a worker against it.

    Unless a signing key is configured, the control key pair is made once in ``data_dir``
    (``control.key``, ``control.pub``); the worker signs with it and the settings handed to
    tasks name the public key, so SDK agents started beside the worker verify control records.

    Once the worker runs, the connection file (:mod:`agentwatch.connection`) is written to
    ``<data_dir>/connection.json`` and ``settings.connection_path``; both are removed when the
    stack stops. If the broker process stops, the process exits with one line on stderr and
    code 1 (:func:`_watch_broker`).

    Raises
    ------
    StartError
        when the broker cannot start or a port is taken (one line; the CLI prints it).
    """
    from agentwatch.streams.broker import BrokerError

    if not rules_usable(settings):  # before starting a broker for nothing
        return 2
    token_note = "AGENTWATCH_API_TOKEN"  # noqa: S105 - where the token comes from
    token_file: Path | None = None
    if settings.api_token is None:
        token_file = ensure_token_file(settings.data_dir)
        settings = settings.replace(api_token=token_file.read_text().strip())
        token_note = f"{token_file} (the agentwatch CLI reads it)"
    if settings.control_signing_key is None and settings.control_signing_key_file is None:
        private, public, _ = ensure_key_pair(settings.data_dir)
        settings = settings.replace(control_signing_key_file=private)
        if not settings.control_verify_keys:
            settings = settings.replace(control_verify_keys=[str(public)])
    signer = signer_from_settings(settings)
    key_note = f"{signer.key_id}"
    if settings.control_verify_keys:
        key_note += f"  (agents: AGENTWATCH_CONTROL_VERIFY_KEYS={settings.control_verify_keys[0]})"
    check_port_free(settings.web_host, settings.web_port, "the web server", "AGENTWATCH_WEB_PORT")
    if settings.otlp_enabled:
        check_port_free(
            settings.otlp_host, settings.otlp_port, "the OTLP receiver", "AGENTWATCH_OTLP_PORT"
        )
    connection_paths = [Path(settings.data_dir) / "connection.json", settings.connection_path]
    with tempfile.TemporaryDirectory(prefix="agentwatch-") as tmp:
        try:
            broker = EmbeddedBroker(log_file=f"{tmp}/broker.log").start()
        except BrokerError as exc:
            raise StartError(f"the embedded broker did not start: {exc}") from None
        try:
            embedded = settings.replace(  # the embedded broker is plaintext, on loopback
                kafka_bootstrap=broker.bootstrap,
                data_dir=f"{tmp}/state",
                **EMBEDDED_OVERRIDES,
                **PLAINTEXT,
            )

            def banner(worker_app: WorkerApp) -> None:
                verify_key = (
                    settings.control_verify_keys[0] if settings.control_verify_keys else None
                )
                written = write_connection(
                    Connection(
                        bootstrap=broker.bootstrap,
                        api_url=worker_app.web_url,
                        token_file=token_file.absolute() if token_file else None,
                        control_verify_key=(
                            Path(verify_key).absolute()
                            if verify_key and Path(verify_key).is_file()
                            else None
                        ),
                        topic_prefix=settings.topic_prefix,
                        otlp_url=worker_app.otlp_url,
                        pid=os.getpid(),
                    ),
                    connection_paths,
                )
                lines = [
                    "agentwatch is up (embedded stack; Ctrl-C stops everything)",
                    f"  broker    {broker.bootstrap}  (Tansu, in-memory, pid {broker.pid})",
                    f"  connect   {written[-1]}  (the SDK and the CLI read it; also in "
                    f"{written[0].parent})",
                    f"  health    {worker_app.web_url}/healthz",
                    f"  ready     {worker_app.web_url}/readyz  (every stage running and keeping "
                    "up)",
                    f"  agents    {worker_app.web_url}/agents/<agent_id>",
                    f"  otlp      {worker_app.otlp_url or 'off (AGENTWATCH_OTLP_ENABLED=false)'}"
                    "  (OpenTelemetry traces: OTLP/HTTP, protobuf or JSON)",
                    f"  incidents {worker_app.web_url}/incidents",
                    f"  api token {token_note}",
                    f"  control   signed with key {key_note}",
                    f"  metrics   {worker_app.web_url}/metrics",
                    "  topics    " + ", ".join(embedded.topic(n) for n in TOPIC_NAMES),
                    f"  state     {embedded.data_dir} ({embedded.store})",
                ]
                print("\n".join(lines), file=sys.stderr, flush=True)

            async def watch_broker(worker_app: WorkerApp) -> None:
                await _watch_broker(broker, tmp, connection_paths)

            code = run_worker(
                embedded, tasks=[watch_broker, *tasks, report_progress], banner=banner
            )
        finally:
            remove_connection(connection_paths, os.getpid())
            broker.stop()
    return code


async def _watch_broker(broker: EmbeddedBroker, state_dir: str, connection: list[Path]) -> None:
    """Exit, with one line, when the embedded broker process exits under the worker.

    The broker kept everything in memory, so there is nothing left to flush or commit: a
    graceful faust shutdown would only retry against the dead broker (for minutes, logging each
    attempt). The Kafka clients' errors are dropped from the moment the broker is gone, the
    connection file and the temporary state are removed, and the process exits with code 1.
    """
    pid = broker.pid
    quiet = _WhileRunning(broker)
    for handler in logging.getLogger().handlers:
        handler.addFilter(quiet)
    refused = 0  # a stopping broker refuses connections a few seconds before it exits
    while broker.running and refused < 2:
        await asyncio.sleep(BROKER_WATCH_INTERVAL_S)
        refused = 0 if await asyncio.to_thread(quiet.accepts) else refused + 1
    how = "stopped" if broker.exit_code is None else f"stopped (exit code {broker.exit_code})"
    print(
        f"agentwatch up: the embedded broker (pid {pid}) {how}; the stack stopped with it: "
        "run `agentwatch up` (or `make up`) again",
        file=sys.stderr,
        flush=True,
    )
    broker.stop(timeout=1.0)
    remove_connection(connection, os.getpid())
    shutil.rmtree(state_dir, ignore_errors=True)
    os._exit(1)


class _WhileRunning(logging.Filter):
    """Drops the Kafka clients' warnings and errors once the broker is going away.

    A stopping broker closes its connections a moment before its process exits, so a record
    passes only while the process runs *and* its port still accepts a connection (checked
    only for such records: none while the broker is healthy).
    """

    def __init__(self, broker: EmbeddedBroker) -> None:
        super().__init__()
        self.broker = broker

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(_CLIENT_LOGGERS):
            return True
        return self.broker.running and self.accepts()

    def accepts(self) -> bool:
        """Whether the broker's port accepts a TCP connection now."""
        try:
            socket.create_connection((self.broker.host, self.broker.port), timeout=0.5).close()
        except OSError:
            return False
        return True


_CLIENT_LOGGERS = ("aiokafka", "faust", "mode", "kafka")


def ensure_token_file(data_dir: Path) -> Path:
    """The embedded stack's control-API token: ``<data_dir>/api-token`` (0600), made once."""
    path = Path(data_dir) / TOKEN_FILE
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
    return path


async def report_progress(worker_app: WorkerApp, every_s: float = 10.0) -> None:
    """Print one line every ``every_s`` seconds: events, agents, dead letters, rate."""
    registry = worker_app.metrics.registry
    previous = 0.0
    while True:
        await asyncio.sleep(every_s)
        events = _sum_samples(registry, "agentwatch_events_ingested_total")
        dead = _sum_samples(registry, "agentwatch_deadletters_total")
        agents = worker_app.stage.engine.agents
        rate = (events - previous) / every_s
        previous = events
        print(
            f"agentwatch: {events:.0f} events from {agents} agents ({rate:.1f}/s), "
            f"{dead:.0f} dead letters",
            file=sys.stderr,
            flush=True,
        )


def _sum_samples(registry: CollectorRegistry, name: str) -> float:
    return sum(
        sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == name
    )


@asynccontextmanager
async def running_app(worker_app: WorkerApp, timeout_s: float = 30.0) -> AsyncIterator[WorkerApp]:
    """Start a worker app inside the running event loop (tests, bench); stop it on exit."""
    await ensure_topics(worker_app.settings)
    worker_app.settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = worker_app.app
    await app.start()
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not app.consumer.assignment():
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("worker got no partitions assigned")
            await asyncio.sleep(0.05)
        yield worker_app
    finally:
        await app.stop()
        await worker_app.delivery.dispatcher.aclose()  # notifiers' HTTP sessions
