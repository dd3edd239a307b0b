"""Forged control records: whatever lands on the control topic, only the worker's word counts.

A live SDK agent (``agentwatch.sdk.Monitor``, configured from the test settings) runs under a
revoke the worker signed. ``SCALE.forgeries`` seeded records are then written straight to the
control topic under its key: unsigned states (a "grant all" and a "halt" among them, versions
up to 2^62), tombstones, garbage, a 1.1 MB junk record, states signed with another key or
relabelled with the worker's key id, genuine records tampered with, another agent's genuine
records, and replays of the agent's own older records. After each wave a genuine change from
the control API must take effect, the agent's state must be exactly what the worker signed, and
every forgery must be counted as refused or malformed (replays are ignored). Finally a real
halt must stop the agent, and forged resumes after it must not start it again (the worker's
stored state must be the last change it answered).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

from agentwatch.config import Settings
from agentwatch.sdk import AgentHalted, Monitor, PermissionRevoked
from agentwatch.streams.app import create_app
from agentwatch.streams.runner import running_app
from tests.chaos.helpers import SCALE, progress

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

VICTIM = "victim-1"
OTHER = "bystander-1"
SETTLE_S = 15.0


def _now_ms() -> int:
    return int(time.time() * 1000)


def _state(agent: str, **fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "agent_id": agent,
        "halted": False,
        "revoked": [],
        "reason": "forged",
        "incident_id": None,
        "updated_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "updated_by": "mallory",
        "version": _now_ms() + 1,
    }
    doc.update(fields)
    return doc


def _dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def unsigned_forgeries(
    rng: random.Random, n: int, genuine: dict[str, Any], other: dict[str, Any]
) -> list[tuple[str, bytes | None]]:
    """Forgeries anyone can write without a key: (kind, value); kinds ``unsigned``,
    ``tombstone`` and ``malformed`` must be counted, ``replay`` only ignored."""
    future = (datetime.now(UTC) + timedelta(days=3650)).isoformat().replace("+00:00", "Z")
    makers = [
        ("unsigned", lambda: _dumps(_state(VICTIM, version=2**62))),  # the kill-switch killer
        ("unsigned", lambda: _dumps(_state(VICTIM, version=2**62, halted=True))),
        ("unsigned", lambda: _dumps(_state(VICTIM, version=rng.choice((1, 2**31, 2**62))))),
        ("unsigned", lambda: _dumps(_state(VICTIM, updated_at=future))),
        ("unsigned", lambda: _dumps({**genuine, "signature": None, "revoked": []})),
        ("unsigned", lambda: _dumps({**genuine, "key_id": None, "signature": None})),
        ("tombstone", lambda: None),
        ("malformed", lambda: rng.randbytes(rng.randrange(1, 300))),
        ("malformed", lambda: _dumps(genuine)[: rng.randrange(1, len(_dumps(genuine)))]),
        ("malformed", lambda: _dumps({**genuine, "version": "9" * 30})),
        ("malformed", lambda: _dumps({**genuine, "halted": "no"})),
        ("malformed", lambda: _dumps({**genuine, "admin": True})),
        ("malformed", lambda: b"[" * 5000 + b"]" * 5000),
        ("malformed", lambda: _dumps(other)),  # another agent's genuine record, this key
        ("replay", lambda: _dumps(genuine)),  # the agent's own record, superseded
    ]
    out = [("malformed", b'{"pad": "' + b"z" * 1_100_000 + b'"}')]  # 1.1 MB junk
    out += [(kind, make()) for kind, make in makers]  # each kind at least once
    while len(out) < n:
        kind, make = rng.choice(makers)
        out.append((kind, make()))
    rng.shuffle(out)
    return out


def signed_forgeries(
    rng: random.Random,
    n: int,
    genuine: dict[str, Any],
    other: dict[str, Any],
    attacker: Any,
) -> list[tuple[str, bytes | None]]:
    """Forgeries that need a key, or a genuine signature: all must be counted as refused."""
    from agentwatch.schemas import ControlState

    worker_key_id = genuine["key_id"]

    def signed(**fields: Any) -> dict[str, Any]:
        state = ControlState.model_validate_json(_dumps(_state(VICTIM, **fields)))
        return dict(attacker.sign(state).model_dump(mode="json"))

    makers = [
        lambda: _dumps(signed(version=2**62)),
        lambda: _dumps(signed(halted=True)),
        lambda: _dumps(signed()),
        lambda: _dumps({**signed(), "key_id": worker_key_id}),  # relabelled as the worker's
        lambda: _dumps({**genuine, "revoked": []}),  # tampered: signature kept
        lambda: _dumps({**genuine, "version": genuine["version"] + 1}),
        lambda: _dumps({**genuine, "halted": True}),
        lambda: _dumps({**other, "agent_id": VICTIM}),  # another agent's signature
        lambda: _dumps({**genuine, "signature": "A" * 86}),
    ]
    out = [make() for make in makers]
    while len(out) < n:
        out.append(rng.choice(makers)())
    rng.shuffle(out)
    return [("signed", value) for value in out]


async def test_forged_control_records_change_nothing_in_an_sdk_agent(
    settings: Settings, auth: dict[str, str]
) -> None:
    rng = random.Random(SCALE.seed)
    worker = create_app(settings)
    problems: list[str] = []
    async with running_app(worker):
        url = f"{worker.web_url}/agents"
        monitor = Monitor.from_settings(VICTIM, settings=settings)
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap, max_request_size=4 * 1024 * 1024
        )
        await producer.start()
        try:
            async with monitor, aiohttp.ClientSession(headers=auth) as http:

                @monitor.tool
                async def search(q: str) -> str:
                    return q

                @monitor.tool
                async def send_email(to: str) -> str:
                    return to

                async def change(agent: str, op: str, *actions: str) -> dict[str, Any]:
                    body = {
                        "actor": "alice",
                        "reason": f"{op} for chaos",
                        "actions": actions,
                        "force": True,  # the agents send no events: the control path is tested
                    }
                    async with http.post(f"{url}/{agent}/{op}", json=body) as resp:
                        assert resp.status == 200, await resp.text()
                        return dict(await resp.json())

                async def obeys(doc: dict[str, Any], wave: str) -> None:
                    """Wait for the agent to hold exactly the state the worker answered."""
                    deadline = time.monotonic() + SETTLE_S
                    while time.monotonic() < deadline:
                        held = monitor.state
                        if held is not None and held.model_dump(mode="json") == doc:
                            return
                        await asyncio.sleep(0.05)
                    held = monitor.state
                    problems.append(
                        f"after {wave}: the agent holds "
                        f"{held.model_dump(mode='json') if held else None}, the worker set {doc}"
                    )

                async def forge(values: list[tuple[str, bytes | None]]) -> None:
                    topic = settings.topic("control")
                    futures = [
                        await producer.send(topic, value, key=VICTIM.encode())
                        for _, value in values
                    ]
                    await asyncio.gather(*futures)  # every forgery is on the topic

                def refused() -> int:
                    stats = monitor.stats
                    return stats.get("control_rejected", 0) + stats["control_errors"]

                genuine = await change(VICTIM, "revoke", "send_email")
                other = await change(OTHER, "halt")
                await obeys(genuine, "the first revoke")

                # wave 1: what anyone who can write to the topic can send
                wave = unsigned_forgeries(rng, max(20, SCALE.forgeries // 2), genuine, other)
                await forge(wave)
                sentinel = await change(VICTIM, "revoke", "sentinel_1")
                await obeys(sentinel, "unsigned forgeries")
                counted = sum(kind != "replay" for kind, _ in wave)
                if refused() != counted:
                    problems.append(f"wave 1: {refused()} forgeries counted, expected {counted}")
                if not monitor.allows("search") or monitor.allows("send_email"):
                    problems.append("wave 1 changed what the agent may do")
                assert not problems, f"seed {SCALE.seed}:\n  " + "\n  ".join(problems)

                # wave 2: signed with another key, or genuine signatures on other content
                from agentwatch.schemas.signing import ControlSigner

                wave2 = signed_forgeries(
                    rng, max(20, SCALE.forgeries // 2), sentinel, other, ControlSigner.generate()
                )
                await forge(wave2)
                sentinel = await change(VICTIM, "revoke", "sentinel_2")
                await obeys(sentinel, "signed forgeries")
                if refused() != counted + len(wave2):
                    problems.append(
                        f"wave 2: {refused() - counted} forgeries counted, expected {len(wave2)}"
                    )
                with pytest.raises(PermissionRevoked):
                    await send_email("bob")
                assert await search("still allowed") == "still allowed"

                # a real halt stops the agent; forged resumes after it do not start it again
                halt = await change(VICTIM, "halt")
                await obeys(halt, "the real halt")
                with pytest.raises(AgentHalted):
                    await search("halted")
                resumes = [
                    ("unsigned", _dumps({**halt, "halted": False, "signature": None})),
                    ("signed", _dumps({**halt, "halted": False})),
                    ("unsigned", _dumps(_state(VICTIM, version=2**62))),
                    ("tombstone", None),
                ]
                await forge(resumes)
                last = await change(VICTIM, "revoke", "sentinel_3")  # still halted
                await obeys(last, "forged resumes")
                if monitor.allows("search"):
                    problems.append("a forged resume after the real halt started the agent again")
                if refused() != counted + len(wave2) + len(resumes):
                    problems.append(f"{refused()} forgeries counted in all, expected more")
                stats = monitor.stats
            stored = worker.response.control(VICTIM)
        finally:
            await producer.stop()
    if stored is None or stored.model_dump(mode="json") != last:
        problems.append(f"the worker's stored state {stored} is not the last change it answered")
    progress(
        f"forged control: {len(wave)} unsigned/malformed + {len(wave2)} signed + "
        f"{len(resumes)} forged resumes; agent stats {stats}"
    )
    assert not problems, f"seed {SCALE.seed}:\n  " + "\n  ".join(problems)
