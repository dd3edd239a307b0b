"""Shared fixtures: one embedded broker per test session, fresh topic names per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agentwatch.config import Settings
from agentwatch.schemas.signing import ControlSigner, ControlVerifier, ensure_key_pair
from agentwatch.streams.broker import EmbeddedBroker
from agentwatch.streams.runner import EMBEDDED_OVERRIDES

API_TOKEN = "test-token-" + uuid.uuid4().hex


@pytest.fixture(scope="session", autouse=True)
def agentwatch_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An empty ``AGENTWATCH_HOME``: no test reads (or writes) the connection file of a
    developer's own ``agentwatch up`` in ``~/.agentwatch``."""
    saved = {k: os.environ.pop(k, None) for k in ("AGENTWATCH_HOME", "AGENTWATCH_CONNECTION_FILE")}
    home = tmp_path_factory.mktemp("agentwatch-home")
    os.environ["AGENTWATCH_HOME"] = str(home)
    try:
        yield home
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A real Kafka-protocol broker (Tansu, memory storage) on a free loopback port."""
    log_file = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_file=log_file) as running:
        yield running


@dataclass(frozen=True)
class ControlKeys:
    """The test session's control key pair: the files, a signer and a verifier."""

    private: Path
    public: Path
    signer: ControlSigner
    verifier: ControlVerifier


@pytest.fixture(scope="session")
def control_keys(tmp_path_factory: pytest.TempPathFactory) -> ControlKeys:
    """One control signing key pair for the session (workers sign, SDK agents verify)."""
    private, public, _ = ensure_key_pair(tmp_path_factory.mktemp("keys"))
    return ControlKeys(
        private, public, ControlSigner.from_file(private), ControlVerifier.load([str(public)])
    )


@pytest.fixture
def settings(
    broker: EmbeddedBroker, tmp_path: pytest.TempPathFactory, control_keys: ControlKeys
) -> Settings:
    """Settings pointing at the embedded broker, with topic and group names unique to the test.

    Workers sign control records with the session key; ``Monitor.from_settings`` verifies them.
    """
    unique = uuid.uuid4().hex[:8]
    return Settings(
        kafka_bootstrap=broker.bootstrap,
        app_id=f"aw-test-{unique}",
        topic_prefix=f"aw{unique}",
        topic_partitions=4,
        **EMBEDDED_OVERRIDES,  # type: ignore[arg-type]
        store="memory",
        data_dir=tmp_path,  # type: ignore[arg-type]
        web_port=0,
        commit_interval_s=0.5,
        batch_within_s=0.02,
        api_token=API_TOKEN,  # type: ignore[arg-type]
        incident_group_wait_s=0.5,
        control_signing_key_file=control_keys.private,
        control_verify_keys=[str(control_keys.public)],
        # in the worker's process, where these tests read baselines and detector state; the
        # engine in its own process (the default on two cores) is tested end to end in
        # tests/streams/test_engine_process.py and by every test that runs `agentwatch run`
        engine_process="off",
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say loudly when tests against real system binaries were skipped (not under make test)."""
    from tests.prometheus_stack import MISSING_BINARIES, REQUIRE_ENV

    if MISSING_BINARIES:
        terminalreporter.section("tests against real binaries NOT run", red=True, bold=True)
        terminalreporter.write_line(
            f"missing: {', '.join(sorted(MISSING_BINARIES))}. Install them with "
            f"`make system-deps` (apt-get, as root); `make test` does, and sets {REQUIRE_ENV}=1 "
            "so a missing binary fails instead.",
            red=True,
            bold=True,
        )


@pytest.fixture
def auth() -> dict[str, str]:
    """The Authorization header the test settings' control API accepts."""
    return {"Authorization": f"Bearer {API_TOKEN}"}
