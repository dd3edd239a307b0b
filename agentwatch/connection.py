"""The connection file: where a running ``agentwatch up`` stack can be reached.

``agentwatch up`` writes it once its worker runs, to ``<data_dir>/connection.json`` and to a
well-known place (``$AGENTWATCH_CONNECTION_FILE``, else ``$AGENTWATCH_HOME/connection.json``,
else ``~/.agentwatch/connection.json``), and removes both when it stops. It holds no secret:
the broker address, the control API's URL, the *path* of the API token file, the workers'
public key and the topic prefix. The SDK (a :class:`~agentwatch.sdk.Monitor` given no
``bootstrap``) and the CLI (no ``--url``) read it when nothing more explicit is set, so an
agent and ``agentwatch agents ...`` started anywhere on the machine reach the stack.

One file describes one stack and is used whole or not at all: a reader that was told another
broker or URL takes nothing from it (not the token, not the key).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "BOOTSTRAP_ENV",
    "CONNECTION_FILE",
    "DEFAULT_BOOTSTRAP",
    "FILE_ENV",
    "HOME_ENV",
    "Connection",
    "ConnectionFileError",
    "default_home",
    "default_path",
    "read_connection",
    "remove_connection",
    "sdk_bootstrap",
    "write_connection",
]

CONNECTION_FILE = "connection.json"
HOME_ENV = "AGENTWATCH_HOME"
FILE_ENV = "AGENTWATCH_CONNECTION_FILE"
BOOTSTRAP_ENV = "AGENTWATCH_KAFKA_BOOTSTRAP"
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"

log = logging.getLogger("agentwatch.sdk")


class ConnectionFileError(ValueError):
    """A connection file exists but cannot be read or is not one."""


class Connection(BaseModel):
    """What ``agentwatch up`` writes: how to reach the stack it runs.

    Examples
    --------
    >>> c = Connection(bootstrap="127.0.0.1:40123", api_url="http://127.0.0.1:6066", pid=1)
    >>> c.topic_prefix, c.token_file is None
    ('agentwatch', True)
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    bootstrap: str = Field(min_length=3, description="Kafka bootstrap (host:port)")
    api_url: str = Field(pattern=r"^https?://[^/\s]+$", description="control API base URL")
    token_file: Path | None = Field(None, description="file holding the API token (0600)")
    control_verify_key: Path | None = Field(None, description="the workers' public key (PEM)")
    topic_prefix: str = "agentwatch"
    otlp_url: str | None = None
    pid: int = Field(ge=1, description="process id of `agentwatch up`")
    written_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    def running(self) -> bool:
        """Whether the process that wrote the file still runs (same machine).

        >>> Connection(bootstrap="h:1", api_url="http://h:1", pid=os.getpid()).running()
        True
        """
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # alive, owned by someone else
            return True
        return True


def default_home(environ: Mapping[str, str] | None = None) -> Path:
    """``$AGENTWATCH_HOME``, else ``~/.agentwatch``.

    >>> default_home({"AGENTWATCH_HOME": "/srv/aw"})
    PosixPath('/srv/aw')
    """
    env = os.environ if environ is None else environ
    value = env.get(HOME_ENV, "").strip()
    return Path(value).expanduser() if value else Path("~/.agentwatch").expanduser()


def default_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where readers look: ``$AGENTWATCH_CONNECTION_FILE``, else ``<home>/connection.json``.

    >>> default_path({"AGENTWATCH_HOME": "/srv/aw"})
    PosixPath('/srv/aw/connection.json')
    >>> default_path({"AGENTWATCH_CONNECTION_FILE": "/tmp/c.json", "AGENTWATCH_HOME": "/x"})
    PosixPath('/tmp/c.json')
    """
    env = os.environ if environ is None else environ
    value = env.get(FILE_ENV, "").strip()
    return Path(value).expanduser() if value else default_home(env) / CONNECTION_FILE


def read_connection(path: Path | None = None) -> Connection | None:
    """The connection file at ``path`` (default :func:`default_path`); ``None`` if there is none.

    Raises
    ------
    ConnectionFileError
        when the file exists but is unreadable or not a connection file (one line, with the
        path and what to do).
    """
    path = default_path() if path is None else path
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConnectionFileError(f"{path}: cannot read the connection file: {exc}") from None
    try:
        return Connection.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as exc:
        first = str(exc).splitlines()[0]
        raise ConnectionFileError(
            f"{path}: not an agentwatch connection file ({first}); delete it or run "
            "`agentwatch up` again"
        ) from None


def write_connection(connection: Connection, paths: Iterable[Path]) -> list[Path]:
    """Write ``connection`` to each of ``paths`` atomically (mode 0600); returns them."""
    text = connection.model_dump_json(indent=2) + "\n"
    written = []
    for path in dict.fromkeys(p.expanduser().absolute() for p in paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".connection-", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        written.append(path)
    return written


def remove_connection(paths: Iterable[Path], pid: int) -> None:
    """Remove each file of ``paths`` that ``pid`` wrote (another stack's file is kept)."""
    for path in paths:
        try:
            current = read_connection(path)
        except ConnectionFileError:
            continue
        if current is not None and current.pid == pid:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def sdk_bootstrap(
    environ: Mapping[str, str] | None = None, path: Path | None = None
) -> tuple[str, Connection | None]:
    """The broker an agent given no ``bootstrap`` uses, and the connection file it came from.

    ``$AGENTWATCH_KAFKA_BOOTSTRAP`` when set (no file then), else the connection file's broker
    (``path``, default :func:`default_path`), else ``127.0.0.1:9092``. A connection file that
    cannot be read is reported (warning) and skipped: an agent never fails to start over it.

    >>> sdk_bootstrap({"AGENTWATCH_KAFKA_BOOTSTRAP": "kafka:9092"})
    ('kafka:9092', None)
    >>> sdk_bootstrap({}, Path("/nonexistent/connection.json"))
    ('127.0.0.1:9092', None)
    """
    env = os.environ if environ is None else environ
    explicit = env.get(BOOTSTRAP_ENV, "").strip()
    if explicit:
        return explicit, None
    where = default_path(env) if path is None else path
    try:
        connection = read_connection(where)
    except ConnectionFileError as exc:
        log.warning("agentwatch: %s; using %s", exc, DEFAULT_BOOTSTRAP)
        return DEFAULT_BOOTSTRAP, None
    if connection is None:
        log.warning(
            "agentwatch: no broker named (bootstrap=, %s) and no `agentwatch up` running (no %s):"
            " using %s; start the stack with `agentwatch up` (or `make up`)",
            BOOTSTRAP_ENV,
            where,
            DEFAULT_BOOTSTRAP,
        )
        return DEFAULT_BOOTSTRAP, None
    if not connection.running():
        log.warning(
            "agentwatch: the stack recorded in %s (pid %d) is not running: start it with "
            "`agentwatch up` (or `make up`); events wait in the buffer meanwhile",
            where,
            connection.pid,
        )
    return connection.bootstrap, connection
