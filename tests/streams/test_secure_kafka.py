"""Workers, the CLI and the SDK against the embedded broker with TLS and SASL required."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from agentwatch.config import Settings
from agentwatch.kafka_security import KafkaConnectError, check_connection, client_options
from agentwatch.schemas.signing import ensure_key_pair
from agentwatch.sdk import AgentHalted, ControlUnavailable, Monitor
from agentwatch.streams.app import create_app
from agentwatch.streams.broker import EmbeddedBroker
from agentwatch.streams.runner import EMBEDDED_OVERRIDES, running_app
from agentwatch.streams.secure_listener import BrokerSecurity
from tests.pki import Pki, make_pki

pytestmark = pytest.mark.integration

PASSWORD = "correct horse " + uuid.uuid4().hex
WRONG = "wrong-" + uuid.uuid4().hex
TOKEN = "oauth-" + uuid.uuid4().hex
API_TOKEN = "api-" + uuid.uuid4().hex
ROOT = Path(__file__).resolve().parents[2]
SIMULATE = ["simulate", "--kafka", "--agents", "2", "--minutes", "2", "--incidents", "none"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secure_broker(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """TLS (server certificate from the test CA) and SASL: user ``svc`` and one bearer token."""
    security = BrokerSecurity(
        certfile=pki.server_cert,
        keyfile=pki.server_key,
        users={"svc": PASSWORD},
        oauth_tokens=(TOKEN,),
    )
    log_file = tmp_path_factory.mktemp("secure-broker") / "tansu.log"
    with EmbeddedBroker(log_file=log_file, security=security) as running:
        yield running


def secure(broker: EmbeddedBroker, pki: Pki, tmp_path: Path, **overrides: Any) -> Settings:
    unique = uuid.uuid4().hex[:8]
    ensure_key_pair(tmp_path)  # workers sign control records (found in data_dir)
    values: dict[str, Any] = {
        "kafka_bootstrap": broker.bootstrap,
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": "svc",
        "kafka_sasl_password": PASSWORD,
        "kafka_ssl_cafile": pki.ca,
        "app_id": f"aw-sec-{unique}",
        "topic_prefix": f"aws{unique}",
        "topic_partitions": 2,
        **EMBEDDED_OVERRIDES,
        "store": "memory",
        "data_dir": tmp_path,
        "web_port": 0,
        "commit_interval_s": 0.5,
        "batch_within_s": 0.02,
        "api_token": API_TOKEN,
    }
    values.update(overrides)
    return Settings(**values)


async def wait_for(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_worker_and_sdk_agent_end_to_end_over_sasl_ssl(
    secure_broker: EmbeddedBroker, pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = secure(secure_broker, pki, tmp_path)
    assert secure_broker.security_protocol == "SASL_SSL"
    authenticated_before = secure_broker.listener.authenticated  # type: ignore[union-attr]
    worker = create_app(settings)
    async with running_app(worker):  # topics via the admin client, faust consumer and producer
        monitor = Monitor.from_settings(
            "sec-agent", "ops", settings=settings, require_control=True, startup_timeout=10
        )
        async with monitor, aiohttp.ClientSession() as http:

            @monitor.tool(risk="low")
            async def search(q: str) -> str:
                return q

            for i in range(5):
                assert await search(f"q{i}") == f"q{i}"
            assert await monitor.flush(10)
            deadline = time.monotonic() + 15  # the engine in its own process (the default)
            while getattr(await worker.stage.baseline("sec-agent"), "count", 0) != 5:
                assert time.monotonic() < deadline, "the worker did not fold the five calls"
                await asyncio.sleep(0.05)
            body = {"actor": "alice", "reason": "test halt"}
            headers = {"Authorization": f"Bearer {API_TOKEN}"}
            async with http.post(
                f"{worker.web_url}/agents/sec-agent/halt", json=body, headers=headers
            ) as resp:
                assert resp.status == 200, await resp.text()
            await wait_for(lambda: not monitor.allows("search"))
            with pytest.raises(AgentHalted):
                await search("after halt")
    assert monitor.stats["sent"] == 6  # five calls and the denied one, all over TLS + SCRAM
    listener = secure_broker.listener
    assert listener is not None and listener.authenticated > authenticated_before + 3
    assert "Authenticated as svc via SCRAM-SHA-512" in caplog.text  # aiokafka's own line
    assert PASSWORD not in caplog.text


@pytest.mark.parametrize(
    "sasl",
    [
        {"kafka_sasl_mechanism": "PLAIN"},
        {"kafka_sasl_mechanism": "SCRAM-SHA-256"},
        {
            "kafka_sasl_mechanism": "OAUTHBEARER",
            "kafka_sasl_username": None,
            "kafka_sasl_password": None,
            "kafka_sasl_oauth_token": TOKEN,
        },
        {
            "kafka_sasl_mechanism": "OAUTHBEARER",
            "kafka_sasl_username": None,
            "kafka_sasl_password": None,
            "kafka_sasl_oauth_token_file": "TOKEN_FILE",
        },
    ],
    ids=["plain", "scram-sha-256", "oauth-token", "oauth-token-file"],
)
async def test_every_mechanism_produces_and_consumes(
    secure_broker: EmbeddedBroker, pki: Pki, tmp_path: Path, sasl: dict[str, Any]
) -> None:
    if sasl.get("kafka_sasl_oauth_token_file"):
        (tmp_path / "token").write_text(TOKEN + "\n")
        sasl = {**sasl, "kafka_sasl_oauth_token_file": tmp_path / "token"}
    settings = secure(secure_broker, pki, tmp_path, **sasl)
    options = client_options(settings)
    await check_connection(settings.kafka_bootstrap, options, timeout_s=5)
    topic = settings.topic("probe")
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, **options)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"hello", key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest", **options
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), 10)
    finally:
        await consumer.stop()
    assert record.value == b"hello"


def run_cli(args: list[str], env: dict[str, str], timeout: float = 60) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "agentwatch.cli", *args],
        cwd=ROOT,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return proc.returncode, proc.stdout, proc.stderr


def secure_env(broker: EmbeddedBroker, pki: Pki, tmp_path: Path, **extra: str) -> dict[str, str]:
    ensure_key_pair(tmp_path)  # so the worker gets as far as connecting
    env = {
        "AGENTWATCH_KAFKA_BOOTSTRAP": broker.bootstrap,
        "AGENTWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "AGENTWATCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "AGENTWATCH_KAFKA_SASL_USERNAME": "svc",
        "AGENTWATCH_KAFKA_SASL_PASSWORD": WRONG,
        "AGENTWATCH_KAFKA_SSL_CAFILE": str(pki.ca),
        "AGENTWATCH_DATA_DIR": str(tmp_path),
        "AGENTWATCH_STORE": "memory",
        "AGENTWATCH_WEB_PORT": "0",
    }
    env.update(extra)
    return env


def test_worker_cli_with_a_wrong_password_fails_with_one_line(
    secure_broker: EmbeddedBroker, pki: Pki, tmp_path: Path
) -> None:
    started = time.monotonic()
    code, out, err = run_cli(["worker"], secure_env(secure_broker, pki, tmp_path))
    elapsed = time.monotonic() - started
    lines = err.strip().splitlines()
    assert code == 1 and out == ""
    assert len(lines) == 1, err
    assert lines[0].startswith(f"agentwatch: cannot connect to Kafka at {secure_broker.bootstrap}")
    assert "SCRAM-SHA-512 as 'svc'" in lines[0] and "authentication failed" in lines[0]
    assert "AGENTWATCH_KAFKA_SASL_PASSWORD" in lines[0]
    assert WRONG not in err and PASSWORD not in err and "Traceback" not in err
    assert elapsed < 30


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"AGENTWATCH_KAFKA_SSL_CAFILE": "OTHER_CA"}, "TLS certificate was not accepted"),
        (
            {"AGENTWATCH_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"},
            "the broker closed the connection",
        ),
    ],
    ids=["untrusted-ca", "plaintext-on-tls-port"],
)
def test_simulate_to_kafka_explains_tls_mismatches_in_one_line(
    secure_broker: EmbeddedBroker, pki: Pki, tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    values = secure_env(secure_broker, pki, tmp_path, AGENTWATCH_KAFKA_SASL_PASSWORD=PASSWORD)
    values.update(env)
    if values.get("AGENTWATCH_KAFKA_SSL_CAFILE") == "OTHER_CA":
        values["AGENTWATCH_KAFKA_SSL_CAFILE"] = str(pki.other_ca)
    if values["AGENTWATCH_KAFKA_SECURITY_PROTOCOL"] == "PLAINTEXT":
        for key in list(values):
            if key.startswith(("AGENTWATCH_KAFKA_SASL", "AGENTWATCH_KAFKA_SSL")):
                del values[key]
    code, _, err = run_cli(SIMULATE, values)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    assert expected in lines[0] and "Traceback" not in err and PASSWORD not in err


def test_simulate_to_kafka_over_sasl_ssl(
    secure_broker: EmbeddedBroker, pki: Pki, tmp_path: Path
) -> None:
    env = secure_env(secure_broker, pki, tmp_path, AGENTWATCH_KAFKA_SASL_PASSWORD=PASSWORD)
    env["AGENTWATCH_TOPIC_PREFIX"] = "awsim" + uuid.uuid4().hex[:8]
    code, out, err = run_cli(SIMULATE, env)
    assert code == 0, err
    sent = int(out.split()[1])
    assert sent > 0 and out.strip().endswith(f"{env['AGENTWATCH_TOPIC_PREFIX']}.actions")


async def test_sdk_with_require_control_and_a_wrong_password_refuses_to_start(
    secure_broker: EmbeddedBroker, pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = secure(secure_broker, pki, tmp_path, kafka_sasl_password=WRONG)
    monitor = Monitor.from_settings(
        "locked-out", settings=settings, require_control=True, startup_timeout=10
    )
    started = time.monotonic()
    with pytest.raises(ControlUnavailable) as info:
        await monitor.start()
    message = str(info.value)
    assert time.monotonic() - started < 3  # at once, not after startup_timeout
    assert "\n" not in message and "authentication failed" in message
    assert "SASL_SSL, SCRAM-SHA-512 as 'svc'" in message and "refusing to start" in message
    assert WRONG not in message and WRONG not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


async def test_mutual_tls_needs_the_client_certificate(pki: Pki, tmp_path: Path) -> None:
    security = BrokerSecurity(
        certfile=pki.server_cert, keyfile=pki.server_key, client_cafile=pki.ca
    )
    with EmbeddedBroker(security=security) as broker:
        assert broker.security_protocol == "SSL"
        base = {
            "kafka_security_protocol": "SSL",
            "kafka_sasl_mechanism": None,
            "kafka_sasl_username": None,
            "kafka_sasl_password": None,
        }
        without = secure(broker, pki, tmp_path, **base)
        with pytest.raises(KafkaConnectError, match="closed the connection") as info:
            await check_connection(broker.bootstrap, client_options(without), timeout_s=5)
        assert "AGENTWATCH_KAFKA_SSL_CERTFILE" in str(info.value)
        with_cert = secure(
            broker,
            pki,
            tmp_path,
            **base,
            kafka_ssl_certfile=pki.client_cert,
            kafka_ssl_keyfile=pki.client_key,
        )
        await check_connection(broker.bootstrap, client_options(with_cert), timeout_s=5)
        from agentwatch.streams.topics import ensure_topics

        created = await ensure_topics(with_cert)
        assert with_cert.topic("control") in created  # the admin client used mutual TLS
