"""Readiness: the pure check with a fake clock, and ``/readyz`` on a real worker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import pytest
from faust.types import TP

from agentwatch.config import Settings
from agentwatch.streams.app import WorkerApp, create_app
from agentwatch.streams.health import Readiness, StageProbe
from agentwatch.streams.metrics import WorkerMetrics
from agentwatch.streams.runner import running_app
from tests.streams.test_pipeline import encoded, event, produce, read_topic, wait_for

TOPIC = "aw.actions"
TP0, TP1 = TP(TOPIC, 0), TP(TOPIC, 1)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Msg:
    def __init__(self, tp: TP, offset: int) -> None:
        self.tp, self.offset = tp, offset


class Ev:
    def __init__(self, tp: TP, offset: int) -> None:
        self.message = Msg(tp, offset)


def setup(
    highwater: dict[TP, int], committed: dict[TP, int] | None = None
) -> tuple[Readiness, StageProbe, Clock, WorkerMetrics]:
    clock = Clock()
    probe = StageProbe("ingest", TOPIC, clock=clock, wall=lambda: 1.7e9)
    metrics = WorkerMetrics()
    readiness = Readiness(
        probes=[probe],
        stall_after_s=5.0,
        assignment=lambda: set(highwater),
        highwater=highwater.get,
        committed=(committed or {}).get,
        running=lambda stage: None,
        worker_problems=lambda: [],
        responder=lambda: "here",
        metrics=metrics,
        clock=clock,
    )
    return readiness, probe, clock, metrics


def events(tp: TP, offsets: Sequence[int]) -> list[Any]:
    return [Ev(tp, o) for o in offsets]


def test_caught_up_stage_is_ready_and_gauges_say_so() -> None:
    readiness, probe, _, metrics = setup({TP0: 10, TP1: 0})
    probe.begin()
    probe.done(events(TP0, range(10)))
    report = readiness.check()
    assert report.ready and report.reasons == []
    assert report.stages["ingest"] == {
        "up": True,
        "lag": 0,
        "crashes": 0,
        "last_progress": 1.7e9,
    }
    assert metrics.registry.get_sample_value("agentwatch_stage_up", {"stage": "ingest"}) == 1.0
    assert (
        metrics.registry.get_sample_value(
            "agentwatch_stage_last_progress_timestamp_seconds", {"stage": "ingest"}
        )
        == 1.7e9
    )


def test_waiting_input_without_progress_is_a_stall_after_the_limit() -> None:
    highwater = {TP0: 10}
    readiness, probe, clock, metrics = setup(highwater)
    probe.done(events(TP0, range(10)))
    assert readiness.check().ready
    clock.now += 3600  # idle an hour, then a record arrives: not a stall yet
    highwater[TP0] = 11
    assert readiness.check().ready
    clock.now += 4.9
    assert readiness.check().ready
    clock.now += 0.2
    report = readiness.check()
    assert not report.ready
    assert report.reasons == [
        f"ingest: stalled: 1 record(s) waiting on {TOPIC}[0] at offset 10, no progress for 5s"
    ]
    assert metrics.registry.get_sample_value("agentwatch_stage_up", {"stage": "ingest"}) == 0.0
    probe.done(events(TP0, [10]))  # it moves again: ready at once
    assert readiness.check().ready


def test_committed_offset_counts_as_progress_for_a_partition_never_read_here() -> None:
    readiness, _, clock, _ = setup({TP0: 50, TP1: 7}, committed={TP0: 50, TP1: 3})
    readiness.check()
    clock.now += 10
    report = readiness.check()
    assert report.reasons == [
        f"ingest: stalled: 4 record(s) waiting on {TOPIC}[1] at offset 3, no progress for 10s"
    ]


def test_one_long_batch_is_a_stall_and_a_crash_stays_reported() -> None:
    readiness, probe, clock, _ = setup({TP0: 0})
    probe.begin()
    clock.now += 6
    assert readiness.check().reasons == ["ingest: stalled: one batch in progress for 6s"]
    probe.crashed(RuntimeError("boom\nINFO forged"))
    clock.now += 3600
    (reason,) = readiness.check().reasons
    assert reason.startswith("ingest: crashed 1 time(s), last: RuntimeError: boom\\nINFO forged")


def test_a_batch_finishing_in_the_background_still_counts_as_in_progress() -> None:
    """Ingest begins batch N+1 while batch N finishes: the stall clock runs from the oldest
    batch not finished, not from the newest begun, and stops only when both are done."""
    readiness, probe, clock, _ = setup({TP0: 20})
    probe.begin()  # batch N, at 0 s
    clock.now += 4
    probe.begin()  # batch N+1, checked while N finishes
    clock.now += 2
    assert readiness.check().reasons[0] == "ingest: stalled: one batch in progress for 6s"
    probe.done(events(TP0, range(10)))  # N is out
    assert probe.busy_since == clock.now - 2
    probe.done(events(TP0, range(10, 20)))
    assert probe.busy_since is None and readiness.check().ready


def test_a_notifier_held_up_by_pagerduty_is_reported_but_stays_ready() -> None:
    """An outage of PagerDuty delays pages; it must not take the worker's API out of service."""
    readiness, probe, clock, _ = setup({TP0: 3})
    outage = ["pagerduty"]
    probe.waiting_on = lambda: list(outage)
    probe.begin()
    clock.now += 60
    report = readiness.check()
    assert report.ready, report.reasons
    assert report.stages["ingest"]["waiting_on"] == ["pagerduty"]
    outage.clear()  # service back but the batch still hangs: now it is a stall
    assert readiness.check().reasons == ["ingest: stalled: one batch in progress for 60s"]


def test_revoked_partitions_are_forgotten() -> None:
    highwater = {TP0: 5, TP1: 5}
    readiness, probe, clock, _ = setup(highwater)
    readiness.check()
    clock.now += 10
    assert len(readiness.check().reasons) == 2
    del highwater[TP1], highwater[TP0]
    probe.forget([TP0, TP1])
    report = readiness.check()
    assert report.ready and report.stages["ingest"]["lag"] == 0


# -- /readyz on a real worker -----------------------------------------------------------------


async def readyz(worker: WorkerApp) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{worker.web_url}/readyz") as resp:
        return resp.status, await resp.json()


async def until_status(worker: WorkerApp, status: int, timeout: float) -> tuple[float, Any]:
    started = time.monotonic()
    while True:
        code, body = await readyz(worker)
        elapsed = time.monotonic() - started
        if code == status:
            return elapsed, body
        if elapsed > timeout:
            raise AssertionError(f"/readyz still {code} after {timeout}s: {body}")
        await asyncio.sleep(0.2)


@pytest.mark.integration
async def test_readyz_turns_503_within_10s_of_an_ingest_crash(settings: Settings) -> None:
    worker = create_app(settings)
    async with running_app(worker):
        await until_status(worker, 200, 20)

        async def crash(events: Any, done: Any = None) -> None:
            raise RuntimeError("injected failure")

        worker.stage.process_batch = crash  # type: ignore[method-assign]
        await produce(settings, [encoded(event(1))])
        elapsed, body = await until_status(worker, 503, 10)
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{worker.web_url}/healthz") as resp,
        ):
            alive = resp.status
        await asyncio.sleep(1.5)
        still, _ = await readyz(worker)  # a crash stays reported (events may be lost)
    print(f"/readyz 503 {elapsed:.1f}s after the crash")
    assert elapsed < 10
    assert alive == 200
    assert still == 503
    assert any(
        "ingest: crashed 1 time(s)" in r and "injected failure" in r for r in body["reasons"]
    )
    assert body["stages"]["ingest"]["up"] is False
    assert body["stages"]["responder"]["up"] is True
    registry = worker.metrics.registry
    assert registry.get_sample_value("agentwatch_stage_crashes_total", {"stage": "ingest"}) == 1.0
    assert registry.get_sample_value("agentwatch_stage_up", {"stage": "ingest"}) == 0.0


@pytest.mark.integration
async def test_readyz_turns_503_within_10s_of_a_stall_and_200_when_it_moves(
    settings: Settings,
) -> None:
    worker = create_app(settings)
    async with running_app(worker):
        await until_status(worker, 200, 20)
        original = worker.stage.process_batch
        gate = asyncio.Event()

        async def blocked(events: Any, done: Any = None) -> None:
            await gate.wait()
            await original(events, done)

        worker.stage.process_batch = blocked  # type: ignore[method-assign]
        await produce(settings, [encoded(event(i)) for i in range(5)])
        elapsed, body = await until_status(worker, 503, 10)
        gate.set()
        await wait_for(lambda: worker.stage.engine.baselines.get("a1") is not None)
        recovered, after = await until_status(worker, 200, 10)
    print(f"/readyz 503 {elapsed:.1f}s after the stall began, 200 {recovered:.1f}s after it ended")
    assert elapsed < 10
    assert any(r.startswith("ingest: stalled") for r in body["reasons"]), body
    assert after["status"] == "ready" and after["reasons"] == []
    assert worker.stage.engine.baselines["a1"].count == 5


class Refusing:
    """Wraps a faust topic; every send fails while ``down`` is set (a broker refusing writes)."""

    def __init__(self, topic: Any) -> None:
        self.topic = topic
        self.down = True
        self.refused = 0

    async def send(self, **kwargs: Any) -> Any:
        if self.down:
            self.refused += 1
            raise ConnectionError("NotLeaderForPartition: injected")
        return await self.topic.send(**kwargs)


@pytest.mark.integration
async def test_an_unacknowledged_dead_letter_stalls_ingest_visibly_and_loses_nothing(
    settings: Settings,
) -> None:
    worker = create_app(settings.replace(ready_stall_after_s=2.0))
    refusing = Refusing(worker.deadletters.topic)
    worker.deadletters.topic = refusing
    async with running_app(worker):
        await until_status(worker, 200, 20)
        await produce(settings, [(b"a1", b"{not json")])
        await wait_for(lambda: refusing.refused >= 2)
        await produce(settings, [encoded(event(i)) for i in range(5)])
        _, body = await until_status(worker, 503, 10)
        assert "a1" not in worker.stage.engine.baselines  # nothing past the stuck record
        refusing.down = False
        await wait_for(
            lambda: (
                worker.stage.engine.baselines.get("a1") is not None
                and worker.stage.engine.baselines["a1"].count == 5
            )
        )
        await until_status(worker, 200, 10)
        dead = await read_topic(settings, "deadletter", 1)
    assert any(r.startswith("ingest: stalled") for r in body["reasons"]), body
    assert [dict(r.headers)["agentwatch.reason"] for r in dead] == [b"bad_json"]
    registry = worker.metrics.registry
    failures = registry.get_sample_value("agentwatch_deadletter_send_failures_total")
    assert failures is not None and failures >= 2
    assert registry.get_sample_value("agentwatch_deadletter_retrying") == 0.0
    assert worker.probes["ingest"].crashes == 0
