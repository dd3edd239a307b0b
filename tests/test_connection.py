"""The connection file of ``agentwatch up``: written and removed safely, and read by the SDK
and the CLI only when nothing more explicit names a broker or an API."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agentwatch.client import resolve_api
from agentwatch.config import Settings, load_settings
from agentwatch.connection import (
    Connection,
    ConnectionFileError,
    default_path,
    read_connection,
    remove_connection,
    sdk_bootstrap,
    write_connection,
)
from agentwatch.schemas.signing import ensure_key_pair
from agentwatch.sdk import Monitor
from agentwatch.streams.broker import free_port

ROOT = Path(__file__).parents[1]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No AGENTWATCH_* variable but an empty home of the test's own."""
    for key in list(os.environ):
        if key.startswith("AGENTWATCH_"):
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    monkeypatch.setenv("AGENTWATCH_HOME", str(home))
    monkeypatch.chdir(tmp_path)  # no ./agentwatch.toml, no ./data
    return home


def dead_pid() -> int:
    """The id of a process that has exited (and was reaped)."""
    done = subprocess.run(["true"], check=True)
    assert done.returncode == 0
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def stack(home: Path, data: Path, *, pid: int | None = None, port: int = 6999) -> Connection:
    """A connection file in ``home`` as `agentwatch up` writes it (token and key in ``data``)."""
    data.mkdir(parents=True, exist_ok=True)
    (data / "api-token").write_text("tok-from-file\n")
    _, public, _ = ensure_key_pair(data)
    connection = Connection(
        bootstrap="127.0.0.1:45999",
        api_url=f"http://127.0.0.1:{port}",
        token_file=data / "api-token",
        control_verify_key=public,
        topic_prefix="staging",
        pid=pid or os.getpid(),
    )
    write_connection(connection, [home / "connection.json"])
    return connection


def test_written_atomically_private_and_removed_only_by_its_writer(tmp_path: Path) -> None:
    paths = [tmp_path / "data" / "connection.json", tmp_path / "home" / "connection.json"]
    mine = Connection(bootstrap="127.0.0.1:1234", api_url="http://127.0.0.1:6066", pid=os.getpid())
    assert write_connection(mine, paths) == paths
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert read_connection(path) == mine
    assert sorted(p.name for p in paths[0].parent.iterdir()) == ["connection.json"]  # no temp
    other = mine.model_copy(update={"pid": mine.pid + 1})
    write_connection(other, paths[1:])  # another stack took the well-known place meanwhile
    remove_connection(paths, os.getpid())
    assert not paths[0].exists()
    assert read_connection(paths[1]) == other  # kept: not ours


def test_a_missing_file_is_none_and_a_broken_one_says_what_to_do(tmp_path: Path) -> None:
    assert read_connection(tmp_path / "nope.json") is None
    broken = tmp_path / "connection.json"
    for text in ("{not json", '{"bootstrap": "h:1"}'):
        broken.write_text(text)
        with pytest.raises(ConnectionFileError) as info:
            read_connection(broken)
        message = str(info.value)
        assert str(broken) in message and "agentwatch up" in message and "\n" not in message


def test_where_readers_look(monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> None:
    assert default_path() == clean_env / "connection.json"
    assert load_settings().connection_path == clean_env / "connection.json"
    monkeypatch.setenv("AGENTWATCH_CONNECTION_FILE", "/srv/aw/c.json")
    assert default_path() == Path("/srv/aw/c.json")
    assert load_settings().connection_path == Path("/srv/aw/c.json")
    monkeypatch.delenv("AGENTWATCH_HOME")
    monkeypatch.delenv("AGENTWATCH_CONNECTION_FILE")
    assert default_path() == Path.home() / ".agentwatch" / "connection.json"
    assert Settings().connection_path == Path.home() / ".agentwatch" / "connection.json"


def test_sdk_bootstrap_environment_then_file_then_default(
    monkeypatch: pytest.MonkeyPatch,
    clean_env: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="agentwatch.sdk"):
        assert sdk_bootstrap() == ("127.0.0.1:9092", None)
    assert f"no `agentwatch up` running (no {clean_env / 'connection.json'})" in caplog.text
    assert "start the stack with `agentwatch up`" in caplog.text
    written = stack(clean_env, tmp_path / "stack")
    assert sdk_bootstrap() == ("127.0.0.1:45999", written)
    monkeypatch.setenv("AGENTWATCH_KAFKA_BOOTSTRAP", "kafka.prod:9093")
    assert sdk_bootstrap() == ("kafka.prod:9093", None)  # named explicitly: the file is not used
    monkeypatch.delenv("AGENTWATCH_KAFKA_BOOTSTRAP")
    stale = stack(clean_env, tmp_path / "stack", pid=dead_pid())
    with caplog.at_level(logging.WARNING, logger="agentwatch.sdk"):
        assert sdk_bootstrap() == ("127.0.0.1:45999", stale)
    assert f"(pid {stale.pid}) is not running: start it with `agentwatch up`" in caplog.text
    (clean_env / "connection.json").write_text("garbage")
    with caplog.at_level(logging.WARNING, logger="agentwatch.sdk"):
        assert sdk_bootstrap() == ("127.0.0.1:9092", None)  # never fails an agent
    assert "not an agentwatch connection file" in caplog.text


def test_monitor_from_settings_takes_the_whole_stack_or_nothing(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path, tmp_path: Path
) -> None:
    written = stack(clean_env, tmp_path / "stack")
    monitor = Monitor.from_settings("a1")
    assert monitor.bootstrap == written.bootstrap
    assert monitor.control_topic == "staging.control"
    assert monitor.control_verifier is not None
    monkeypatch.setenv("AGENTWATCH_TOPIC_PREFIX", "mine")
    assert Monitor.from_settings("a1").control_topic == "mine.control"  # explicit wins
    monkeypatch.setenv("AGENTWATCH_KAFKA_BOOTSTRAP", "kafka.prod:9093")
    other = Monitor.from_settings("a1")
    assert other.bootstrap == "kafka.prod:9093"
    assert other.control_verifier is None  # not the dev stack's key for another broker


def test_cli_api_target_precedence(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path, tmp_path: Path
) -> None:
    target = resolve_api(load_settings())
    assert (target.url, target.token, target.source) == (
        "http://127.0.0.1:6066",
        None,
        "the default",
    )
    stack(clean_env, tmp_path / "stack", port=7001)
    target = resolve_api(load_settings())
    assert (target.url, target.token) == ("http://127.0.0.1:7001", "tok-from-file")
    assert target.source == str(clean_env / "connection.json")
    monkeypatch.setenv("AGENTWATCH_WEB_PORT", "7001")  # names the same stack: its token applies
    assert resolve_api(load_settings()).token == "tok-from-file"
    monkeypatch.setenv("AGENTWATCH_WEB_PORT", "7002")
    target = resolve_api(load_settings())
    assert (target.url, target.token, target.source) == (
        "http://127.0.0.1:7002",
        None,  # another stack: not this one's token
        "AGENTWATCH_WEB_PORT",
    )
    monkeypatch.setenv("AGENTWATCH_API_URL", "http://10.0.0.5:6066")
    monkeypatch.setenv("AGENTWATCH_API_TOKEN", "tok-env")
    target = resolve_api(load_settings())
    assert (target.url, target.token, target.source) == (
        "http://10.0.0.5:6066",
        "tok-env",
        "AGENTWATCH_API_URL",
    )
    target = resolve_api(load_settings(), "http://127.0.0.1:7001")
    assert (target.url, target.token, target.source) == (
        "http://127.0.0.1:7001",
        "tok-env",
        "--url",
    )


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    clean.update(PYTHONPATH=str(ROOT), **env)
    return subprocess.run(
        [sys.executable, "-m", "agentwatch.cli", *args],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_says_in_one_line_that_the_stack_is_not_running(
    clean_env: Path, tmp_path: Path
) -> None:
    stale = stack(clean_env, tmp_path / "stack", pid=dead_pid(), port=free_port())
    done = cli("agents", "list", AGENTWATCH_HOME=str(clean_env))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"agentwatch: cannot reach {stale.api_url}: [Errno 111] Connection refused (the stack "
        f"recorded in {clean_env / 'connection.json'} (pid {stale.pid}) is not running: start "
        "it with `agentwatch up` (or `make up`))"
    ]
    port = free_port()
    done = cli(
        "incidents",
        "list",
        AGENTWATCH_HOME=str(tmp_path / "none"),
        AGENTWATCH_API_TOKEN="t",
        AGENTWATCH_WEB_PORT=str(port),
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1 and "Traceback" not in done.stderr
    assert f"cannot reach http://127.0.0.1:{port}" in lines[0]
    assert (
        "URL from AGENTWATCH_WEB_PORT; is the worker running? start one with `agentwatch up`"
        in lines[0]
    )
    done = cli("agents", "list", AGENTWATCH_HOME=str(tmp_path / "none"))
    assert done.returncode == 2
    assert done.stderr.startswith("agentwatch: no API token: set AGENTWATCH_API_TOKEN, or start")
    (clean_env / "connection.json").write_text("{}")
    done = cli("agents", "list", AGENTWATCH_HOME=str(clean_env))
    assert done.returncode == 2 and "not an agentwatch connection file" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.integration
async def test_a_monitor_given_no_broker_reaches_the_one_in_the_connection_file(
    broker: object, clean_env: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from agentwatch.streams.broker import EmbeddedBroker

    assert isinstance(broker, EmbeddedBroker)
    _, public, _ = ensure_key_pair(tmp_path / "keys")
    write_connection(
        Connection(
            bootstrap=broker.bootstrap,
            api_url="http://127.0.0.1:6066",
            control_verify_key=public,
            topic_prefix="quick",
            pid=os.getpid(),
        ),
        [clean_env / "connection.json"],
    )
    monitor = Monitor("file-agent", startup_timeout=0.5)
    assert monitor.bootstrap == "127.0.0.1:9092"  # nothing read before start()
    caplog.set_level(logging.WARNING, logger="agentwatch.sdk")
    async with monitor:
        assert monitor.bootstrap == broker.bootstrap
        assert monitor.emitter.bootstrap == monitor.follower.bootstrap == broker.bootstrap
        assert (monitor.actions_topic, monitor.follower.topic) == ("quick.actions", "quick.control")
        assert monitor.control_verifier is not None and monitor.control.verifier is not None
        monitor.record("chat", model="gpt-x")
        assert await monitor.flush(10.0)
    assert monitor.stats["sent"] == 1
    assert "without verifying" not in caplog.text
    explicit = Monitor("other", bootstrap=broker.bootstrap, startup_timeout=0.5)
    async with explicit:
        assert explicit.control_topic == "agentwatch.control"  # a named broker: no file used
        assert explicit.control_verifier is None
