"""Junk on the responder's and the notifier's input topics is dead-lettered, never a crash."""

from __future__ import annotations

import hashlib

import pytest

from agentwatch.config import Settings
from agentwatch.streams.app import create_app
from agentwatch.streams.runner import running_app
from tests.fixtures import make_anomaly
from tests.streams.test_ingest_guarantees import send_records
from tests.streams.test_pipeline import read_topic, wait_for

pytestmark = pytest.mark.integration


def anomaly(n: int, agent: str) -> bytes:
    # an unknown rule opens an incident and notifies
    return make_anomaly(n, "NotInTheRules", agent=agent).model_dump_json().encode()


async def test_a_megabyte_of_junk_between_anomalies_does_not_stop_the_responder(
    settings: Settings,
) -> None:
    junk = b"\x00\xff" * 500_050  # 1,000,100 bytes
    worker = create_app(settings)
    async with running_app(worker):
        await send_records(
            settings,
            [
                (b"before", anomaly(1, "before"), None),
                (b"junk", junk, None),
                (None, b'{"anomaly_id": "half', None),
                (b"after", anomaly(2, "after"), None),
            ],
            topic="anomalies",
        )
        await wait_for(lambda: worker.response.incident_state("after") is not None, timeout=30)
        assert worker.response.incident_state("before") is not None
        dead = await read_topic(settings, "deadletter", 2)
        assert worker.probes["responder"].crashes == 0
    by_length = {int(dict(r.headers)["agentwatch.value.length"]): dict(r.headers) for r in dead}
    assert sorted(by_length) == [20, 1_000_100]
    big = by_length[1_000_100]
    assert big["agentwatch.reason"] == b"invalid_anomaly"
    assert big["agentwatch.value.sha256"] == hashlib.sha256(junk).hexdigest().encode()
    assert big["agentwatch.source.topic"] == settings.topic("anomalies").encode()
    assert by_length[20]["agentwatch.detail"].startswith(b"value: Invalid JSON")


async def test_invalid_notifications_are_dead_lettered_not_dropped(settings: Settings) -> None:
    junk = b"x" * 1_048_000
    worker = create_app(settings)
    async with running_app(worker):
        await send_records(
            settings,
            [(b"a1", junk, None), (b"a1", b'{"notification_id": "n1"}', None)],
            topic="notifications",
        )
        dead = await read_topic(settings, "deadletter", 2)
        await wait_for(lambda: worker.probes["notifier"].positions != {})
        assert worker.probes["notifier"].crashes == 0
    reasons = sorted(
        (dict(r.headers)["agentwatch.reason"], int(dict(r.headers)["agentwatch.value.length"]))
        for r in dead
    )
    assert reasons == [(b"invalid_notification", 25), (b"invalid_notification", 1_048_000)]
    assert all(len(r.value) <= settings.deadletter_max_bytes for r in dead)
