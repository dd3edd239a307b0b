"""Kafka security settings: validation at start, client options, faust credentials, tokens."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import time
from pathlib import Path
from typing import Any

import faust
import pytest
from aiokafka import errors as kafka_errors
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from agentwatch.config import ConfigError, Settings, load_settings
from agentwatch.kafka_security import (
    PLAINTEXT,
    FileTokenProvider,
    KafkaConnectError,
    StaticTokenProvider,
    check_connection,
    client_options,
    describe,
    explain,
    faust_credentials,
    ssl_context,
)
from agentwatch.sdk import Monitor, SyncMonitor
from agentwatch.streams.broker import free_port
from tests.pki import Pki, make_pki

SCRAM = {
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_mechanism": "SCRAM-SHA-512",
    "kafka_sasl_username": "svc",
    "kafka_sasl_password": "s3cret-pw",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("AGENTWATCH_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def config_error(**values: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(None, **values)
    return str(info.value)


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "key", "reason"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "kafka_sasl_mechanism", "required with"),
        ({"kafka_sasl_mechanism": "PLAIN"}, "kafka_sasl_mechanism", "is PLAINTEXT"),
        (
            {**SCRAM, "kafka_sasl_username": None},
            "kafka_sasl_username",
            "required with kafka_sasl_mechanism SCRAM-SHA-512",
        ),
        ({**SCRAM, "kafka_sasl_password": ""}, "kafka_sasl_password", "required with"),
        (
            {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "OAUTHBEARER"},
            "kafka_sasl_oauth_token_file",
            "needs kafka_sasl_oauth_token or kafka_sasl_oauth_token_file",
        ),
        ({**SCRAM, "kafka_sasl_oauth_token": "t"}, "kafka_sasl_oauth_token", "SCRAM-SHA-512"),
        ({"kafka_sasl_username": "svc"}, "kafka_sasl_username", "mechanism is not set"),
        ({"kafka_ssl_cafile": "/etc/hosts"}, "kafka_ssl_cafile", "uses no TLS"),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "/no/such/ca.pem"},
            "kafka_ssl_cafile",
            "/no/such/ca.pem: no such file",
        ),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_keyfile": "/etc/hosts"},
            "kafka_ssl_keyfile",
            "kafka_ssl_certfile is not",
        ),
    ],
)
def test_bad_combinations_fail_with_key_and_reason(
    values: dict[str, Any], key: str, reason: str
) -> None:
    message = config_error(**values)
    assert f"key {key!r}" in message and reason in message, message
    assert "s3cret-pw" not in message


def test_errors_name_the_environment_variable_or_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "agentwatch.toml"
    config.write_text(
        '[agentwatch]\nkafka_security_protocol = "SASL_SSL"\n'
        'kafka_sasl_mechanism = "PLAIN"\nkafka_sasl_password = "pw"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    message = str(info.value)
    assert "key 'kafka_sasl_username'" in message and "required with" in message
    monkeypatch.setenv("AGENTWATCH_KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("AGENTWATCH_KAFKA_SSL_CAFILE", str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    message = str(info.value)
    assert "environment AGENTWATCH_KAFKA_SSL_CAFILE: key 'kafka_ssl_cafile'" in message
    assert "missing.pem: no such file" in message and "'pw'" not in message


def test_files_must_hold_what_they_claim(pki: Pki, tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("hello\n")
    message = config_error(kafka_security_protocol="SSL", kafka_ssl_cafile=not_pem)
    assert "not a PEM CA certificate" in message
    message = config_error(  # a key that is not the certificate's
        kafka_security_protocol="SSL",
        kafka_ssl_certfile=pki.client_cert,
        kafka_ssl_keyfile=pki.server_key,
    )
    assert "key 'kafka_ssl_keyfile'" in message and "not a certificate and its key" in message
    empty = tmp_path / "token"
    empty.write_text("\n")
    message = config_error(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="OAUTHBEARER",
        kafka_sasl_oauth_token_file=empty,
    )
    assert "the token file is empty" in message
    message = config_error(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="OAUTHBEARER",
        kafka_sasl_oauth_token="t",
        kafka_sasl_oauth_token_file=empty,
    )
    assert "not both" in message


def test_case_insensitive_names_and_secrets_that_never_print(pki: Pki) -> None:
    settings = Settings(
        kafka_security_protocol="sasl_ssl",
        kafka_sasl_mechanism="scram-sha-256",
        kafka_sasl_username="svc",
        kafka_sasl_password="s3cret-pw",
        kafka_ssl_cafile=pki.ca,
    )
    assert settings.kafka_security_protocol == "SASL_SSL"
    assert settings.kafka_sasl_mechanism == "SCRAM-SHA-256"
    assert "s3cret-pw" not in repr(settings) and "s3cret-pw" not in str(settings.model_dump())
    assert describe(client_options(settings)) == "SASL_SSL, SCRAM-SHA-256 as 'svc'"


def test_plaintext_overrides_switch_everything_off(pki: Pki) -> None:
    secured = Settings(**SCRAM, kafka_ssl_cafile=pki.ca)
    plain = secured.replace(**PLAINTEXT)
    assert client_options(plain) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(plain) is None


# -- client options and faust credentials ----------------------------------------------------


def test_tls_context_trusts_the_ca_presents_the_client_certificate(pki: Pki) -> None:
    settings = Settings(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=pki.ca,
        kafka_ssl_certfile=pki.client_cert,
        kafka_ssl_keyfile=pki.client_key,
        kafka_ssl_check_hostname=False,
    )
    ctx = ssl_context(settings)
    assert ctx is not None and ctx.verify_mode == ssl.CERT_REQUIRED and not ctx.check_hostname
    assert any(
        c["subject"] == ((("commonName", "agentwatch test CA"),),) for c in ctx.get_ca_certs()
    )
    assert ssl_context(Settings()) is None
    assert client_options(settings)["ssl_context"].check_hostname is False


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        ({"kafka_security_protocol": "SSL"}, faust.SSLCredentials),
        (SCRAM, faust.SASLCredentials),
        ({**SCRAM, "kafka_security_protocol": "SASL_PLAINTEXT"}, faust.SASLCredentials),
        (
            {
                "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_mechanism": "OAUTHBEARER",
                "kafka_sasl_oauth_token": "t0k",
            },
            faust.OAuthCredentials,
        ),
    ],
)
def test_faust_gets_the_same_connection_as_every_other_client(
    values: dict[str, Any], kind: type
) -> None:
    settings = Settings(**values)
    credentials = faust_credentials(settings)
    assert isinstance(credentials, kind)
    # what faust hands aiokafka equals what our own clients use (contexts are new objects)
    from_faust = dict(credentials_to_aiokafka_auth(credentials))
    ours = client_options(settings)
    for options in (from_faust, ours):
        ctx = options.pop("ssl_context", None)
        assert (ctx is not None) == settings.kafka_security_protocol.endswith("SSL")
        if "sasl_oauth_token_provider" in options:
            provider = options.pop("sasl_oauth_token_provider")
            assert asyncio.run(provider.token()) == "t0k"
    assert from_faust == ours


def test_sdk_from_settings_applies_security_and_keeps_explicit_options() -> None:
    settings = Settings(**{**SCRAM, "kafka_security_protocol": "SASL_PLAINTEXT"})
    monitor = Monitor.from_settings("bot-1", settings=settings)
    assert monitor._kafka_options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert monitor._kafka_options["sasl_plain_password"] == "s3cret-pw"
    explicit = Monitor.from_settings(
        "bot-2", settings=settings, kafka_options={"sasl_plain_username": "other", "client_id": "x"}
    )
    assert explicit._kafka_options["sasl_plain_username"] == "other"
    assert explicit._kafka_options["security_protocol"] == "SASL_PLAINTEXT"
    sync = SyncMonitor.from_settings("bot-3", settings=settings)
    assert sync.monitor._kafka_options["sasl_plain_username"] == "svc"


# -- tokens ------------------------------------------------------------------------------


def jwt(exp: float, sub: str) -> str:
    def part(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part({'exp': exp, 'sub': sub})}.sig"


def test_static_token_provider_hides_its_token() -> None:
    from pydantic import SecretStr

    provider = StaticTokenProvider(SecretStr("very-secret"))
    assert asyncio.run(provider.token()) == "very-secret"
    assert "very-secret" not in repr(provider)


def test_token_file_is_read_again_when_it_changes_or_the_token_expires(tmp_path: Path) -> None:
    now = [1_000_000.0]
    path = tmp_path / "token"
    first, second = jwt(now[0] + 600, "a"), jwt(now[0] + 1200, "b")
    path.write_text(first + "\n")
    provider = FileTokenProvider(path, clock=lambda: now[0])
    assert asyncio.run(provider.token()) == first
    # same size, same mtime: the file looks unchanged, so the cached token is used ...
    stat = path.stat()
    path.write_text(second + "\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert asyncio.run(provider.token()) == first
    # ... until the token is about to expire: then the file is read again
    now[0] += 600 - 10
    assert asyncio.run(provider.token()) == second
    # a changed file is read at once
    path.write_text("opaque-token-3\n")
    assert asyncio.run(provider.token()) == "opaque-token-3"
    path.write_text("")
    with pytest.raises(KafkaConnectError, match="is empty"):
        asyncio.run(provider.token())


# -- connection check --------------------------------------------------------------------


def test_explain_separates_fixable_settings_from_outages() -> None:
    scram = {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512"}
    fatal, reason = explain(kafka_errors.SaslAuthenticationFailed("bad"), scram)
    assert fatal and "AGENTWATCH_KAFKA_SASL_PASSWORD" in reason
    fatal, reason = explain(
        kafka_errors.SaslAuthenticationFailed("bad"), {**scram, "sasl_mechanism": "OAUTHBEARER"}
    )
    assert fatal and "AGENTWATCH_KAFKA_SASL_OAUTH_TOKEN" in reason
    fatal, reason = explain(kafka_errors.UnsupportedSaslMechanismError(), scram)
    assert fatal and "does not offer SASL mechanism SCRAM-SHA-512" in reason
    fatal, reason = explain(ConnectionRefusedError(111, "refused"), {})
    assert not fatal and "connection refused" in reason
    fatal, reason = explain(TimeoutError(), {"security_protocol": "PLAINTEXT"})
    assert not fatal and "use SSL" in reason


async def test_check_connection_gives_up_after_its_timeout_with_one_line() -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(KafkaConnectError) as info:
        await check_connection(f"127.0.0.1:{port}", {"security_protocol": "PLAINTEXT"}, 1.0)
    assert 0.9 < time.monotonic() - started < 5
    message = str(info.value)
    assert message == (
        f"cannot connect to Kafka at 127.0.0.1:{port} (PLAINTEXT): connection refused "
        "(is the broker running, is the port right?)"
    )
