from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from agentwatch.config import ConfigError, Settings, load_settings

DOCS = Path(__file__).parents[1] / "docs" / "operations.md"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("AGENTWATCH_"):
            monkeypatch.delenv(key)


def test_defaults_listen_on_loopback_only() -> None:
    settings = load_settings(config_file=None)
    assert settings.web_host == "127.0.0.1"
    assert settings.web_port == 6066
    assert settings.topic("actions") == "agentwatch.actions"


def test_file_then_environment_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "agentwatch.toml"
    config.write_text('[agentwatch]\ntopic_partitions = 12\nstore = "memory"\n')
    monkeypatch.setenv("AGENTWATCH_TOPIC_PARTITIONS", "3")
    settings = load_settings(config)
    assert settings.topic_partitions == 3  # environment wins
    assert settings.store == "memory"  # from the file


def test_bad_file_value_names_file_key_and_reason(tmp_path: Path) -> None:
    config = tmp_path / "agentwatch.toml"
    config.write_text('[agentwatch]\nstore = "redis"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    message = str(info.value)
    assert str(config) in message and "'store'" in message and "rocksdb" in message


def test_unknown_key_is_rejected(tmp_path: Path) -> None:
    config = tmp_path / "agentwatch.toml"
    config.write_text("[agentwatch]\ntopic_partition = 4\n")
    with pytest.raises(ConfigError, match="topic_partition"):
        load_settings(config)


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTWATCH_KAFKA_BOOTSTRAP", "no-port-here")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "AGENTWATCH_KAFKA_BOOTSTRAP" in str(info.value)


def test_missing_explicit_file_and_broken_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[agentwatch\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(broken)


def test_settings_are_frozen_and_replace_validates() -> None:
    settings = Settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.web_port = 1  # type: ignore[misc]
    assert settings.replace(data_dir="/tmp/x").data_dir == Path("/tmp/x")
    with pytest.raises(ValueError, match="heartbeat"):
        settings.replace(heartbeat_interval_s=50.0)


def test_every_setting_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    missing = [f for f in Settings.model_fields if f"AGENTWATCH_{f.upper()}" not in text]
    assert not missing, f"docs/operations.md lacks {missing}"
    sections = {
        name: field.annotation
        for name, field in Settings.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    }
    assert {"alertmanager", "webhook"} <= set(sections)
    nested = [
        f"AGENTWATCH_{name.upper()}__{key.upper()}"
        for name, model in sections.items()
        for key in model.model_fields
    ]
    assert not [v for v in nested if v not in text], "docs/operations.md lacks section keys"


def test_secrets_never_print_and_empty_means_unset() -> None:
    settings = Settings(api_token="tok-123456", pagerduty_routing_key="", slack_webhook_url=" ")
    assert "tok-123456" not in repr(settings) and "tok-123456" not in str(settings.model_dump())
    assert settings.pagerduty_routing_key is None and settings.slack_webhook_url is None


def test_record_size_limits_are_coherent() -> None:
    settings = Settings()
    assert settings.max_message_bytes == 1_048_588  # Kafka's default message.max.bytes
    assert settings.deadletter_max_bytes == settings.max_event_bytes == 65536
    with pytest.raises(ValueError, match="deadletter_max_bytes must be at most"):
        Settings(max_message_bytes=200_000, deadletter_max_bytes=199_000)
    with pytest.raises(ValueError, match="max_event_bytes must be at most"):
        Settings(max_message_bytes=131_072, max_event_bytes=130_000)
