"""The quickstart as written: `agentwatch up`, then the README's SDK example file, unchanged and
from another directory, reaches the stack through the connection file; so does the CLI. A busy
port or a broker that stops under the stack is one line that says what to do."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentwatch.streams.broker import free_port
from tests.streams.test_runner import banner, stop

ROOT = Path(__file__).parents[1]
EXAMPLE = ROOT / "examples" / "quickstart_agent.py"


def env_with(**values: str) -> dict[str, str]:
    """The environment without any AGENTWATCH_* variable, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    env["PYTHONPATH"] = str(ROOT)  # this checkout's package, whatever the working directory
    env.update(values)
    return env


def run(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env_with(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_readme_shows_the_example_file() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    source = EXAMPLE.read_text(encoding="utf-8")
    body = source.split('"""', 2)[2].lstrip("\n")  # the file without its docstring
    assert body in blocks, "README.md's SDK example must be examples/quickstart_agent.py's code"
    assert "examples/quickstart_agent.py" in readme
    assert "make up" in readme and "make test" in readme


def test_up_on_a_busy_port_is_one_line_and_no_banner(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run(
            "-m",
            "agentwatch.cli",
            "up",
            cwd=tmp_path,
            AGENTWATCH_HOME=str(tmp_path / "home"),
            AGENTWATCH_DATA_DIR=str(tmp_path / "data"),
            AGENTWATCH_WEB_PORT=str(port),
            AGENTWATCH_OTLP_PORT="0",
        )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"agentwatch up: cannot listen on 127.0.0.1:{port} for the web server: the port is in "
        "use (another `agentwatch up` or worker?); stop what holds it, or set "
        "AGENTWATCH_WEB_PORT to a free port (0 = any free port)"
    ]
    assert not (tmp_path / "home" / "connection.json").exists()


@pytest.mark.integration
async def test_quickstart_example_and_cli_reach_the_stack_through_the_connection_file(
    tmp_path: Path,
) -> None:
    home, data, web = tmp_path / "home", tmp_path / "data", free_port()
    elsewhere = tmp_path / "elsewhere"  # not where `up` ran: no ./data here
    elsewhere.mkdir()
    log = tmp_path / "up.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentwatch.cli", "up"],
        cwd=tmp_path,
        env=env_with(
            AGENTWATCH_HOME=str(home),
            AGENTWATCH_DATA_DIR=str(data),
            AGENTWATCH_WEB_PORT=str(web),
            AGENTWATCH_OTLP_PORT="0",
        ),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        text = await banner(log)
        written = json.loads((home / "connection.json").read_text())
        assert json.loads((data / "connection.json").read_text()) == written
        assert written["api_url"] == f"http://127.0.0.1:{web}"
        assert written["token_file"] == str(data / "api-token")
        assert written["control_verify_key"] == str(data / "control.pub")
        assert written["pid"] == proc.pid
        assert re.search(rf"^  broker\s+{re.escape(written['bootstrap'])}\s", text, re.MULTILINE)
        assert f"connect   {home / 'connection.json'}" in text

        # the example, unchanged, knowing nothing but where the connection file is
        ran = await asyncio.to_thread(run, str(EXAMPLE), cwd=elsewhere, AGENTWATCH_HOME=str(home))
        assert ran.returncode == 0, ran.stderr[-3000:]
        assert ran.stdout.startswith("refunded 20.00 on T-1\n"), ran.stdout
        sent = int(re.findall(r"^events sent: (\d+)$", ran.stdout, re.MULTILINE)[-1])
        assert sent >= 2
        assert "without verifying" not in ran.stderr  # the stack's key came with the file
        assert "Traceback" not in ran.stderr and "ERROR" not in ran.stderr, ran.stderr

        # the CLI, from elsewhere too: the API URL and the token come from the file
        def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
            return run("-m", "agentwatch.cli", *args, cwd=elsewhere, **env)

        deadline = time.monotonic() + 30
        while True:
            shown = await asyncio.to_thread(
                cli, "agents", "show", "support-7", "--json", AGENTWATCH_HOME=str(home)
            )
            if shown.returncode == 0 and json.loads(shown.stdout).get("events") == sent:
                break
            assert time.monotonic() < deadline, (shown.stdout, shown.stderr)
            await asyncio.sleep(0.5)
        halted = await asyncio.to_thread(
            cli, "agents", "halt", "support-7", "-r", "quickstart", AGENTWATCH_HOME=str(home)
        )
        assert halted.returncode == 0 and "support-7: HALTED" in halted.stdout, halted.stderr
        again = await asyncio.to_thread(run, str(EXAMPLE), cwd=elsewhere, AGENTWATCH_HOME=str(home))
        assert again.returncode == 0, again.stderr[-3000:]
        assert "stopped by agentwatch: agent 'support-7' is halted" in again.stdout
        assert "refunded" not in again.stdout

        # AGENTWATCH_WEB_PORT is followed (token from the data dir when no file names one)
        listed = await asyncio.to_thread(
            cli,
            "agents",
            "list",
            AGENTWATCH_HOME=str(tmp_path / "empty"),
            AGENTWATCH_WEB_PORT=str(web),
            AGENTWATCH_DATA_DIR=str(data),
        )
        assert listed.returncode == 0 and "support-7" in listed.stdout, listed.stderr

        # the broker stops under the stack: one line, exit 1, the connection files go
        broker_pid = int(re.search(r"\(Tansu, in-memory, pid (\d+)\)", text).group(1))  # type: ignore[union-attr]
        before = len(log.read_text(errors="replace"))
        os.kill(broker_pid, signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 60)
        after = log.read_text(errors="replace")[before:]
        assert code == 1, after[-3000:]
        assert "Traceback" not in after and "ERROR" not in after, after[-3000:]
        last = after.strip().splitlines()[-1]
        assert last.startswith(f"agentwatch up: the embedded broker (pid {broker_pid}) stopped")
        assert last.endswith("the stack stopped with it: run `agentwatch up` (or `make up`) again")
        assert not (home / "connection.json").exists()
        assert not (data / "connection.json").exists()
    finally:
        stop(proc)


@pytest.mark.integration
async def test_the_demo_raises_its_first_incident_within_a_minute_and_starts_quietly(
    tmp_path: Path,
) -> None:
    home, data, web = tmp_path / "home", tmp_path / "data", free_port()
    log = tmp_path / "up.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentwatch.cli", "up", "--demo"],
        cwd=tmp_path,
        env=env_with(
            AGENTWATCH_HOME=str(home),
            AGENTWATCH_DATA_DIR=str(data),
            AGENTWATCH_WEB_PORT=str(web),
            AGENTWATCH_OTLP_PORT="0",
        ),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    started = time.monotonic()
    try:
        text = await banner(log)
        # quiet at the default level: no faust start-up chatter or subscription tables
        assert "Subscription" not in text and "Starting..." not in text, text[:3000]
        assert len(text.splitlines()) < 40, text[:3000]
        while True:
            listed = await asyncio.to_thread(
                run, "-m", "agentwatch.cli", "incidents", "list", "--json",
                cwd=tmp_path, AGENTWATCH_HOME=str(home),
            )  # fmt: skip
            incidents = json.loads(listed.stdout) if listed.returncode == 0 else []
            if incidents:
                break
            assert time.monotonic() - started < 60.0, (listed.stdout, listed.stderr)
            await asyncio.sleep(1.0)
        assert incidents[0]["agent_id"] == "ops-000", incidents
    finally:
        stop(proc)
