"""Forged control records on the embedded broker change nothing in a live SDK agent.

Anyone who can write to the control topic can try: unsigned records, records signed with
another key, a version of 2^62, a tombstone, a replay of an older genuine record. The agent
keeps exactly the permissions the worker gave it, and a real halt still stops it.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

from agentwatch.config import Settings
from agentwatch.schemas import ControlState
from agentwatch.schemas.approvals import POLICY_KEY
from agentwatch.schemas.signing import ControlSigner
from agentwatch.sdk import AgentHalted, Monitor, PermissionRevoked
from agentwatch.streams.app import create_app
from agentwatch.streams.runner import running_app
from tests.streams.test_pipeline import read_topic, wait_for

pytestmark = pytest.mark.integration


async def test_forged_control_records_change_nothing(
    settings: Settings, auth: dict[str, str], control_keys: Any
) -> None:
    agent = "victim-1"
    attacker = ControlSigner.generate()
    worker = create_app(settings)
    async with running_app(worker):
        url = f"{worker.web_url}/agents/{agent}"
        monitor = Monitor.from_settings(agent, settings=settings)
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
        await producer.start()
        try:
            async with monitor, aiohttp.ClientSession(headers=auth) as http:

                @monitor.tool
                async def search(q: str) -> str:
                    return q

                @monitor.tool
                async def send_email(to: str) -> str:
                    return to

                body = {
                    "actor": "alice",
                    "reason": "phish",
                    "actions": ["send_email"],
                    "force": True,  # before the agent's first event
                }
                async with http.post(f"{url}/revoke", json=body) as resp:
                    assert resp.status == 200
                    genuine = ControlState.model_validate_json(await resp.read())
                await wait_for(lambda: not monitor.allows("send_email"), timeout=10)

                async def forge(value: bytes | None) -> None:
                    await producer.send_and_wait(
                        settings.topic("control"), value, key=agent.encode()
                    )

                def state(**fields: Any) -> ControlState:
                    values: dict[str, Any] = {
                        "agent_id": agent,
                        "updated_at": datetime.now(UTC),
                        "updated_by": "mallory",
                        "version": int(time.time() * 1000) + 1,
                    }
                    values.update(fields)
                    return ControlState(**values)

                forged = [
                    state(revoked=[]).model_dump_json().encode(),  # unsigned "grant all"
                    state(halted=True).model_dump_json().encode(),  # unsigned "halt" (DoS)
                    attacker.sign(state(revoked=[])).model_dump_json().encode(),
                    attacker.sign(state(version=2**62)).model_dump_json().encode(),
                    state(version=2**62).model_dump_json().encode(),
                    # the attacker's signature relabelled with the worker's key id
                    attacker.sign(state(revoked=[]))
                    .model_copy(update={"key_id": control_keys.signer.key_id})
                    .model_dump_json()
                    .encode(),
                    None,  # tombstone
                ]
                for value in forged:
                    await forge(value)
                await wait_for(lambda: monitor.stats["control_rejected"] == len(forged), 10)
                stats = monitor.stats
                assert stats["control_rejected_unsigned"] == 4
                assert stats["control_rejected_unknown_key"] == 2
                assert stats["control_rejected_bad_signature"] == 1
                assert monitor.state == genuine
                assert await search("q") == "q"  # not halted by the forged halt
                with pytest.raises(PermissionRevoked):  # not granted by the forged grants
                    await send_email("bob")

                async with http.post(f"{url}/halt", json=body) as resp:
                    assert resp.status == 200
                    halt_version = (await resp.json())["version"]
                await wait_for(lambda: not monitor.allows("search"), timeout=10)
                with pytest.raises(AgentHalted):  # the real halt applies despite 2^62
                    await search("q")

                await forge(genuine.model_dump_json().encode())  # replay the older record
                await asyncio.sleep(1.0)
                assert monitor.state is not None and monitor.state.version == halt_version
                with pytest.raises(AgentHalted):
                    await search("q")
                assert monitor.stats["control_rejected"] == len(forged)
            stored = worker.response.control(agent)
            assert stored is not None and stored.halted and stored.version == halt_version
        finally:
            await producer.stop()
        records = await read_topic(settings, "control", 11, timeout=3)
        records = [r for r in records if r.key != POLICY_KEY]  # the workers' approval policy
    assert len(records) == 2 + len(forged) + 1  # the forgeries are on the topic, and ignored
