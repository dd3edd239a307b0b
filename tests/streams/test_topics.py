"""One record-size limit for topics, the worker's producer and its consumer."""

from __future__ import annotations

from agentwatch.config import Settings
from agentwatch.schemas.signing import ensure_key_pair
from agentwatch.streams.app import create_app
from agentwatch.streams.topics import TOPIC_NAMES, topic_configs


def test_every_topic_gets_the_size_limit_and_control_and_fleets_stay_compacted() -> None:
    for name in TOPIC_NAMES:
        configs = topic_configs(name, 2_000_000)
        assert configs["max.message.bytes"] == "2000000"
        assert ("cleanup.policy" in configs) == (name in ("control", "fleets"))
    assert topic_configs("control")["cleanup.policy"] == "compact"
    assert topic_configs("fleets")["cleanup.policy"] == "compact"
    assert "fleets" in TOPIC_NAMES


def test_the_worker_producer_and_consumer_use_the_same_limit(tmp_path: object) -> None:
    ensure_key_pair(tmp_path)  # type: ignore[arg-type]  # workers sign: <data_dir>/control.key
    settings = Settings(store="memory", data_dir=tmp_path, web_port=0, max_message_bytes=2_000_000)
    conf = create_app(settings).app.conf
    assert conf.producer_max_request_size == 2_000_000
    assert conf.consumer_max_fetch_size == 2_000_000
    default = create_app(Settings(store="memory", data_dir=tmp_path, web_port=0)).app.conf
    assert default.producer_max_request_size == 1_048_588  # faust's own default: 1,000,000
