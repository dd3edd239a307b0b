"""``agentwatch up``: the embedded stack makes its control key pair once, and an SDK agent
started beside it (``Monitor.from_settings`` with the same data dir) verifies what it signs."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from agentwatch.config import Settings
from agentwatch.schemas.signing import ControlSigner
from agentwatch.sdk import AgentHalted, Monitor
from agentwatch.streams.broker import free_port
from tests.streams.test_pipeline import wait_for

pytestmark = pytest.mark.integration


def start_up(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    env.update(
        AGENTWATCH_HOME=str(data_dir.parent / "home"),  # its connection file, not ~/.agentwatch
        AGENTWATCH_DATA_DIR=str(data_dir),
        AGENTWATCH_WEB_PORT=str(port),
        AGENTWATCH_OTLP_PORT="0",  # any free port: 4318 may be taken on a shared machine
    )
    return subprocess.Popen(
        [sys.executable, "-m", "agentwatch.cli", "up"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


async def banner(log: Path, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while "metrics" not in (text := log.read_text(errors="replace")):
        assert time.monotonic() < deadline, f"agentwatch up did not start:\n{text[-2000:]}"
        await asyncio.sleep(0.2)
    return text


async def test_up_signs_with_a_key_made_once_in_its_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    log = tmp_path / "up.log"
    proc = start_up(data, port, log)
    try:
        text = await banner(log)
        key_id = ControlSigner.from_file(data / "control.key").key_id
        assert f"signed with key {key_id}" in text
        assert (data / "control.key").stat().st_mode & 0o077 == 0
        bootstrap = re.search(r"^  broker\s+(\S+)", text, re.MULTILINE)
        assert bootstrap is not None
        settings = Settings(data_dir=data, kafka_bootstrap=bootstrap.group(1))  # type: ignore[arg-type]
        token = (data / "api-token").read_text().strip()
        monitor = Monitor.from_settings("beside-1", settings=settings)
        assert monitor.control_verifier is not None
        assert list(monitor.control_verifier.keys) == [key_id]
        async with monitor, aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 60
            while True:  # the worker joins its group a few seconds after the banner
                async with http.post(
                    f"http://127.0.0.1:{port}/agents/beside-1/halt",
                    json={"actor": "t", "reason": "test", "force": True},  # sent no event
                    headers={"Authorization": f"Bearer {token}"},
                ) as resp:
                    if resp.status == 200:
                        break
                    assert time.monotonic() < deadline, await resp.text()
                await asyncio.sleep(0.5)
            await wait_for(lambda: not monitor.allows("x"), timeout=15)
            with pytest.raises(AgentHalted):
                monitor.check("x")
            assert monitor.stats["control_rejected"] == 0
        assert (tmp_path / "home" / "connection.json").is_file()
    finally:
        stop(proc)
    assert proc.returncode == 0  # Ctrl-C: a clean stop, and the connection files go with it
    assert not (tmp_path / "home" / "connection.json").exists()
    assert not (data / "connection.json").exists()
    # a second start keeps the key
    second_log = tmp_path / "up2.log"
    proc = start_up(data, free_port(), second_log)
    try:
        assert f"signed with key {key_id}" in await banner(second_log)
        assert ControlSigner.from_file(data / "control.key").key_id == key_id
    finally:
        stop(proc)
