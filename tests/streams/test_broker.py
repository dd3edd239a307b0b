"""The embedded broker starts on loopback, answers Kafka requests and leaves no orphan."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from agentwatch.streams.broker import EmbeddedBroker, free_port, kafka_ready
from tests.streams.fixtures import alive

pytestmark = pytest.mark.integration


def test_start_answer_and_stop() -> None:
    broker = EmbeddedBroker()
    with broker:
        assert broker.host == "127.0.0.1"
        assert kafka_ready(broker.host, broker.port)
        pid = broker.pid
        assert pid is not None and alive(pid)
    assert broker.pid is None
    assert not alive(pid)
    assert not kafka_ready("127.0.0.1", broker.port, timeout=0.2)
    broker.stop()  # idempotent


def test_nothing_listening_is_not_ready() -> None:
    assert not kafka_ready("127.0.0.1", free_port(), timeout=0.2)


def test_broker_dies_with_a_killed_parent(tmp_path) -> None:
    script = (
        "import sys, time\n"
        "from agentwatch.streams.broker import EmbeddedBroker\n"
        "b = EmbeddedBroker().start()\n"
        "print(b.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    assert alive(child_pid)
    parent.send_signal(signal.SIGKILL)  # no atexit, no cleanup: only PR_SET_PDEATHSIG helps
    parent.wait()
    deadline = time.monotonic() + 5
    while alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child_pid), "broker outlived its parent"
