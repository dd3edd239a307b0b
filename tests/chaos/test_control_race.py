"""Concurrent control requests on one agent: linearizable, strictly increasing versions.

``SCALE.control_requests`` halt/resume/revoke/grant requests (seeded mix) hit the control API
at once, for one agent: of one worker, and at full scale also spread over two worker processes
(the one that does not own the responder forwards). A tenth carry a stale ``If-Match`` and must
be refused with 409. Every accepted request must get its own version (no duplicates, and no
version on the control topic that was not an answer), the stored state must equal the serial
application of the accepted requests in version order (and so must each answer, at its
version), the control topic must carry the versions in strictly increasing order, and the
audit topic one entry per accepted request. A line break in ``actor``/``reason`` must not
forge a log line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agentwatch.config import Settings
from agentwatch.streams.app import create_app
from agentwatch.streams.runner import running_app
from tests.alerting.fakes import FakePagerDuty
from tests.chaos.helpers import SCALE, TopicReader, WorkerProcess, progress

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

AGENT = "race-1"
ACTIONS = ("send_email", "http_post", "sql_query", "read_file", "shell")


@dataclass(frozen=True)
class Request:
    n: int
    op: str
    actions: tuple[str, ...]
    if_match: int | None = None

    @property
    def reason(self) -> str:
        return f"chaos request {self.n}"


@dataclass(frozen=True)
class State:
    halted: bool = False
    revoked: tuple[str, ...] = ()

    def apply(self, req: Request) -> State:
        """What the control API documents for each operation."""
        if req.op == "halt":
            return State(True, self.revoked)
        if req.op == "resume":
            return State(False, self.revoked)
        if req.op == "revoke":
            return State(self.halted, tuple(sorted(set(self.revoked) | set(req.actions))))
        if not req.actions:  # grant without actions restores everything
            return State(self.halted, ())
        return State(self.halted, tuple(a for a in self.revoked if a not in req.actions))

    @classmethod
    def of(cls, doc: dict[str, Any]) -> State:
        return cls(bool(doc["halted"]), tuple(doc["revoked"]))


def requests(seed: int, n: int, stale: int) -> list[Request]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        op = rng.choice(("halt", "resume", "revoke", "grant"))
        count = rng.randrange(1, 4) if op == "revoke" else rng.randrange(0, 3)
        actions = tuple(rng.sample(ACTIONS, count)) if op in ("revoke", "grant") else ()
        out.append(Request(i, op, actions, stale if rng.random() < 0.1 else None))
    return out


@asynccontextmanager
async def control_apis(
    settings: Settings, tmp_path: Path, workers: int
) -> AsyncIterator[tuple[list[str], Callable[[], str]]]:
    """``workers`` workers' API URLs and their log text: one in this process, or subprocesses
    (RocksDB) that forward requests to whichever of them owns the responder."""
    if workers == 1:
        app = create_app(settings)
        async with running_app(app):
            yield [app.web_url], lambda: ""
        return
    async with FakePagerDuty() as pd, aiohttp.ClientSession() as http:
        procs = []
        for n in range(workers):
            (tmp_path / f"w{n}").mkdir()
            procs.append(WorkerProcess(settings, tmp_path / f"w{n}", pd))
        try:
            for proc in procs:
                proc.start()
            for proc in procs:
                await proc.wait_healthy(http)
            yield [p.url for p in procs], lambda: "".join(p.log_text() for p in procs)
        finally:
            for proc in procs:
                proc.kill()


@pytest.mark.parametrize("workers", [1, 2] if SCALE.full else [1])
async def test_concurrent_control_requests_are_linearized(
    settings: Settings,
    auth: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    workers: int,
) -> None:
    caplog.set_level(logging.INFO)
    async with control_apis(settings, tmp_path, workers) as (urls, worker_logs):
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(headers=auth, connector=connector) as http:

            async def send(req: Request, via: int = 0) -> tuple[int, dict[str, Any]]:
                body = {
                    "actor": "chaos",
                    "reason": req.reason,
                    "actions": list(req.actions),
                    "force": True,  # race-1 sends no events: the control path alone is tested
                }
                headers = {} if req.if_match is None else {"If-Match": str(req.if_match)}
                url = f"{urls[via % len(urls)]}/agents/{AGENT}/{req.op}"
                async with http.post(url, json=body, headers=headers) as resp:
                    return resp.status, await resp.json(content_type=None)

            # a first change, so that an older version is stale for every request that follows
            # (with two workers, retried until the responder is assigned: 503 until then)
            deadline = time.monotonic() + 60
            while True:
                status, first = await send(Request(-1, "revoke", ("shell",)), via=len(urls) - 1)
                if status == 200 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            assert status == 200, first
            burst = requests(SCALE.seed, SCALE.control_requests, stale=first["version"] - 1)
            answers = await asyncio.gather(*(send(r, via=r.n) for r in burst))
            async with http.get(f"{urls[0]}/agents/{AGENT}") as resp:
                assert resp.status == 200
                stored = (await resp.json())["control"]
            # compare-and-set, one at a time: the current version wins once, then is stale
            status_ok, cas_ok = await send(Request(-2, "halt", (), stored["version"]))
            status_stale, cas_stale = await send(Request(-3, "resume", (), stored["version"]), 1)
            # user text with a line break is not a forged log line
            forge = {"actor": "mallory\nFORGED actor", "reason": "x\nFORGED reason"}
            async with http.post(f"{urls[-1]}/agents/{AGENT}/halt", json=forge) as resp:
                forged_status = resp.status
                forged_answer = await resp.json(content_type=None)
        async with (
            TopicReader(settings, "control") as control,
            TopicReader(settings, "audit") as audit,
        ):
            changes = 4 + sum(status == 200 for status, _ in answers)  # at most
            await control.drain(idle_s=1.5, until=lambda: len(control.records) >= changes)
            await audit.drain(idle_s=1.5, until=lambda: len(audit.records) >= changes)
        logs = caplog.text + worker_logs()

    problems: list[str] = []
    accepted = [(req, doc) for req, (st, doc) in zip(burst, answers, strict=True) if st == 200]
    refused = [(req, st) for req, (st, _) in zip(burst, answers, strict=True) if st != 200]
    wrong_refusals = [(r.n, r.if_match, st) for r, st in refused if r.if_match is None or st != 409]
    wrong_accepts = [req.n for req, _ in accepted if req.if_match is not None]
    if wrong_refusals:
        problems.append(f"requests refused (n, If-Match, status): {wrong_refusals[:10]}")
    if wrong_accepts:
        problems.append(f"requests with a stale If-Match accepted: {wrong_accepts[:10]}")
    versions = sorted(doc["version"] for _, doc in accepted)
    if len(set(versions)) != len(versions) or (versions and versions[0] <= first["version"]):
        dupes = len(versions) - len(set(versions))
        problems.append(
            f"answered versions are not distinct and above {first['version']}: "
            f"{len(set(versions))} distinct, {dupes} duplicates, "
            f"range {versions[0]}..{versions[-1]}"
        )
    # the serial application of the accepted requests in version order
    state = State.of(first)
    serial: dict[int, State] = {}
    for req, doc in sorted(accepted, key=lambda pair: pair[1]["version"]):
        state = state.apply(req)
        serial[doc["version"]] = state
        if State.of(doc) != state or doc["reason"] != req.reason:
            problems.append(
                f"answer at version {doc['version']} ({req.op} {list(req.actions)}) is "
                f"{State.of(doc)}, the serial application gives {state}"
            )
            break
    if versions and (stored["version"] != versions[-1] or State.of(stored) != state):
        problems.append(
            f"stored state {State.of(stored)} version {stored['version']}, the serial "
            f"application of {len(accepted)} requests gives {state} version {versions[-1]}"
        )
    if status_ok != 200 or not cas_ok.get("version", 0) > stored["version"]:
        problems.append(f"If-Match with the current version: {status_ok} {cas_ok}")
    if status_stale != 409:
        problems.append(f"If-Match with a stale version answered {status_stale}: {cas_stale}")
    # the control topic: exactly the answered versions, in strictly increasing order
    records = [json.loads(r.value) for r in control.records if r.key == AGENT.encode()]
    topic_versions = [doc["version"] for doc in records]
    answered = [first["version"], *versions, cas_ok.get("version"), cas_stale.get("version")]
    if forged_status == 200:
        answered.append(forged_answer.get("version"))
    expected_topic = [v for v in answered if v is not None]
    if topic_versions != sorted(expected_topic) or len(set(topic_versions)) != len(topic_versions):
        problems.append(
            f"control topic versions {topic_versions[:12]}... ({len(topic_versions)}) are not "
            f"the {len(expected_topic)} answered versions in strictly increasing order"
        )
    burst_reasons = {req.reason for req in burst}
    audited = Counter(
        entry["reason"]
        for entry in (json.loads(r.value) for r in audit.records)
        if entry.get("actor") == "chaos" and entry.get("reason") in burst_reasons
    )
    if audited != Counter(req.reason for req, _ in accepted):
        problems.append(
            f"{sum(audited.values())} audit entries for {len(audited)} requests, "
            f"{len(accepted)} requests accepted"
        )
    if forged_status not in (200, 400):
        problems.append(f"a request with a line break in actor/reason answered {forged_status}")
    if "\nFORGED" in logs:
        at = logs.index("\nFORGED")
        problems.append(f"forged log line: {logs[max(0, at - 200) : at + 100]!r}")
    progress(
        f"control race ({workers} worker(s)): {len(burst)} concurrent requests, "
        f"{len(accepted)} accepted "
        f"(versions {versions[0] if versions else '-'}..{versions[-1] if versions else '-'}, "
        f"{len(set(versions))} distinct), {len(refused)} refused, {len(records)} control records"
    )
    assert not problems, f"seed {SCALE.seed}:\n  " + "\n  ".join(problems)
