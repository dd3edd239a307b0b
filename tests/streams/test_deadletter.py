"""DeadLetters against a fake faust topic: bounded records, retries until acked, few log lines."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

import pytest

from agentwatch.streams.deadletter import (
    MAX_DETAIL_BYTES,
    MAX_KEY_BYTES,
    DeadLetters,
    bounded_record,
)
from agentwatch.streams.metrics import WorkerMetrics
from agentwatch.streams.produce import Backoff


class Message:
    def __init__(self, value: bytes | None, key: bytes | None = b"a1", offset: int = 7) -> None:
        self.topic, self.partition, self.offset = "aw.actions", 3, offset
        self.key, self.value = key, value


class FlakyTopic:
    """Fails the first ``fail_sends`` sends and the first ``fail_acks`` acks, then accepts."""

    def __init__(self, fail_sends: int = 0, fail_acks: int = 0) -> None:
        self.fail_sends, self.fail_acks = fail_sends, fail_acks
        self.sent: list[dict[str, Any]] = []
        self.attempts = 0

    async def send(self, **kwargs: Any) -> Any:
        self.attempts += 1
        if self.fail_sends:
            self.fail_sends -= 1
            raise RuntimeError("MessageSizeTooLargeError: the producer refused it")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail_acks:
            self.fail_acks -= 1
            fut.set_exception(ConnectionError("broker went away"))
        else:
            self.sent.append(kwargs)
            fut.set_result(None)
        return fut


def dead_letters(topic: Any, metrics: WorkerMetrics, clock: Any = None) -> tuple[DeadLetters, list]:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    kwargs: dict[str, Any] = {"clock": clock} if clock is not None else {}
    return (
        DeadLetters(
            topic=topic,
            metrics=metrics,
            max_bytes=1024,
            backoff=Backoff(0.1, 1.0),
            sleep=sleep,
            **kwargs,
        ),
        waits,
    )


def test_bounded_record_keeps_a_prefix_and_describes_the_whole() -> None:
    value = bytes(range(256)) * 4096  # 1 MiB
    key = b"k" * 5000
    record = bounded_record(
        topic="aw.actions",
        partition=2,
        offset=99,
        key=key,
        value=value,
        reason="too_large",
        detail="line one\nINFO forged \u202e" + "x" * 5000,
        max_bytes=65536,
    )
    headers = dict(record.headers)
    assert record.value == value[:65536]
    assert record.key == key[:MAX_KEY_BYTES]
    assert headers["agentwatch.value.length"] == b"1048576"
    assert headers["agentwatch.value.sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert headers["agentwatch.value.truncated"] == b"true"
    assert headers["agentwatch.key.length"] == b"5000"
    assert headers["agentwatch.key.truncated"] == b"true"
    assert headers["agentwatch.source.partition"] == b"2"
    assert headers["agentwatch.source.offset"] == b"99"
    detail = headers["agentwatch.detail"]
    assert len(detail) <= MAX_DETAIL_BYTES
    assert b"\n" not in detail and "\u202e".encode() not in detail
    assert detail.startswith(b"line one\\nINFO forged \\u202e")


def test_small_and_empty_records_are_kept_whole() -> None:
    small = bounded_record(
        topic="t",
        partition=0,
        offset=1,
        key=None,
        value=b"{bad",
        reason="bad_json",
        detail="",
        max_bytes=1024,
    )
    assert small.value == b"{bad" and small.key is None
    headers = dict(small.headers)
    assert headers["agentwatch.value.truncated"] == b"false"
    assert "agentwatch.key.length" not in headers
    tombstone = bounded_record(
        topic="t",
        partition=0,
        offset=2,
        key=b"a",
        value=None,
        reason="invalid",
        detail="empty message (tombstone)",
        max_bytes=1024,
    )
    assert tombstone.value == b""
    assert dict(tombstone.headers)["agentwatch.value.length"] == b"0"


async def test_failed_sends_are_counted_and_retried_until_acknowledged() -> None:
    topic = FlakyTopic(fail_sends=2, fail_acks=2)
    metrics = WorkerMetrics()
    letters, waits = dead_letters(topic, metrics)
    await letters.send_all([(Message(b"x" * 5000), "too_large", "5000 bytes")])
    assert len(topic.sent) == 1
    assert len(topic.sent[0]["value"]) == 1024
    assert topic.attempts == 5
    assert waits == [0.1, 0.2, 0.4, 0.8]
    r = metrics.registry
    assert r.get_sample_value("agentwatch_deadletter_send_failures_total") == 4.0
    assert r.get_sample_value("agentwatch_deadletters_total", {"reason": "too_large"}) == 1.0
    assert r.get_sample_value("agentwatch_deadletter_retrying") == 0.0
    assert letters.retrying == 0


async def test_a_batch_is_pipelined_and_a_failed_ack_is_sent_again() -> None:
    topic = FlakyTopic(fail_acks=1)
    metrics = WorkerMetrics()
    letters, waits = dead_letters(topic, metrics)
    rejects = [(Message(f"bad {i}".encode(), offset=i), "bad_json", "nope") for i in range(5)]
    await letters.send_all(rejects)
    assert sorted(dict(s["headers"])["agentwatch.source.offset"] for s in topic.sent) == [
        str(i).encode() for i in range(5)
    ]
    assert topic.attempts == 6 and waits == [0.1]
    assert (
        metrics.registry.get_sample_value("agentwatch_deadletters_total", {"reason": "bad_json"})
        == 5.0
    )


async def test_a_send_blocked_until_the_broker_returns_holds_the_caller() -> None:
    topic = FlakyTopic(fail_acks=10**9)
    metrics = WorkerMetrics()
    letters = DeadLetters(
        topic=topic, metrics=metrics, max_bytes=1024, backoff=Backoff(0.001, 0.01)
    )
    task = asyncio.ensure_future(letters.send(Message(b"{"), "bad_json", "x"))
    await asyncio.sleep(0.2)
    assert not task.done()  # waits, never raises, never gives up
    assert letters.retrying == 1
    assert metrics.registry.get_sample_value("agentwatch_deadletter_retrying") == 1.0
    topic.fail_acks = 0
    await asyncio.wait_for(task, 2)
    assert len(topic.sent) == 1 and letters.retrying == 0


async def test_ten_thousand_dead_letters_log_a_handful_of_summary_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Clock:
        now = 0.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()
    letters, _ = dead_letters(FlakyTopic(), WorkerMetrics(), clock=clock)
    caplog.set_level(logging.WARNING, logger="agentwatch.streams.deadletter")
    for i in range(10_000):
        reason = "bad_json" if i % 4 else "too_large"
        await letters.send(Message(b"{", offset=i), reason, "line\nINFO forged")
        clock.now += 0.003  # 10,000 records over 30 s
    letters.flush_log()
    clock.now += 10
    assert letters.flush_log()
    assert not letters.flush_log()  # nothing new
    lines = [r.getMessage() for r in caplog.records]
    assert 3 <= len(lines) <= 6
    assert all("\n" not in line for line in lines)
    totals = sum(int(line.split()[1]) for line in lines)
    assert totals == 10_000
    assert "bad_json=" in lines[-1] and "too_large=" in lines[-1]
