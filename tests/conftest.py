"""Shared fixtures: one embedded broker per test session, fresh topic names per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from agentwatch.config import Settings
from agentwatch.streams.broker import EmbeddedBroker
from agentwatch.streams.runner import EMBEDDED_OVERRIDES

API_TOKEN = "test-token-" + uuid.uuid4().hex


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A real Kafka-protocol broker (Tansu, memory storage) on a free loopback port."""
    log_file = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_file=log_file) as running:
        yield running


@pytest.fixture
def settings(broker: EmbeddedBroker, tmp_path: pytest.TempPathFactory) -> Settings:
    """Settings pointing at the embedded broker, with topic and group names unique to the test."""
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
    )


@pytest.fixture
def auth() -> dict[str, str]:
    """The Authorization header the test settings' control API accepts."""
    return {"Authorization": f"Bearer {API_TOKEN}"}
