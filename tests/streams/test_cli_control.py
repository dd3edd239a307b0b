"""The on-call CLI (`agentwatch agents ...`, `agentwatch incidents ...`) against a live worker."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from agentwatch.config import Settings
from agentwatch.streams.app import create_app
from agentwatch.streams.runner import running_app
from tests.conftest import API_TOKEN
from tests.streams.test_pipeline import encoded, event, produce
from tests.streams.test_response import risky, rules_file, wait_for

pytestmark = pytest.mark.integration


async def cli(
    url: str, *args: str, token: str | None = API_TOKEN, stdin: int | None = None
) -> tuple[int, str, str]:
    """Run the CLI against ``url``; ``stdin`` (a file descriptor) defaults to /dev/null."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    env["AGENTWATCH_API_URL"] = url
    env["AGENTWATCH_ACTOR"] = "carol"
    env["AGENTWATCH_DATA_DIR"] = "/nonexistent"
    if token is not None:
        env["AGENTWATCH_API_TOKEN"] = token
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agentwatch.cli",
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL if stdin is None else stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_halts_revokes_and_handles_incidents(settings: Settings, tmp_path: Path) -> None:
    worker = create_app(settings.replace(rules_file=rules_file(tmp_path)))
    async with running_app(worker):
        url = worker.web_url
        await produce(worker.settings, [encoded(event(0, "cli-1"))])
        await wait_for(lambda: "cli-1" in worker.stage.engine.baselines)
        # a typo'd id is refused, with the known id it probably meant; nothing changes
        code, out, err = await cli(url, "agents", "halt", "cil-1", "--reason", "loop")
        assert code == 1 and out == ""
        assert err.strip().splitlines() == [
            "agentwatch: unknown agent 'cil-1' (did you mean cli-1?) — pass --force to "
            "control it anyway"
        ]
        assert worker.response.control("cil-1") is None
        code, out, err = await cli(url, "agents", "halt", "cli-1", "--reason", "loop")
        assert code == 0, err
        assert "cli-1: HALTED" in out and "by carol: loop" in out
        code, out, _ = await cli(
            url, "agents", "revoke", "cli-1", "send_email", "http_post", "-r", "phish"
        )
        assert code == 0 and "revoked: http_post, send_email" in out
        code, out, _ = await cli(url, "agents", "show", "cli-1", "--json")
        control = json.loads(out)["control"]
        assert control["halted"] and control["revoked"] == ["http_post", "send_email"]
        stored = worker.response.control("cli-1")
        assert stored is not None and control["version"] == stored.version
        assert control["signature"] == stored.signature
        # compare-and-set: a stale --if-version changes nothing and names the current version
        code, _, err = await cli(url, "agents", "resume", "cli-1", "-r", "x", "--if-version", "1")
        assert code == 1 and "HTTP 409" in err and f"control version {stored.version}" in err
        assert worker.response.control("cli-1") == stored
        code, out, err = await cli(
            url, "agents", "halt", "cli-1", "-r", "still", "--if-version", str(stored.version)
        )
        assert code == 0, err
        assert "HALTED" in out and "by carol: still" in out
        code, out, _ = await cli(url, "agents", "list", "--halted")
        assert "cli-1" in out and "HALTED" in out

        code, _, err = await cli(
            url, "agents", "resume", "cli-1", "-r", "x", token="s3cr3t-wrong-token"
        )
        assert code == 1 and "HTTP 401" in err and "s3cr3t" not in err
        code, _, err = await cli(url, "agents", "resume", "cli-1", "-r", "x", token=None)
        assert code == 2 and "AGENTWATCH_API_TOKEN" in err
        assert worker.response.control("cli-1").halted  # type: ignore[union-attr]

        await produce(worker.settings, [risky(i, "cli-2") for i in range(2)])
        await wait_for(lambda: bool(worker.response.incidents_list("open")))
        code, out, _ = await cli(url, "incidents", "list")
        assert code == 0 and "cli-2" in out
        header, row = out.splitlines()
        assert header.split() == ["INCIDENT", "STATUS", "SEVERITY", "AGENT", "ANOMALIES", "TITLE"]
        incident_id = row.split()[0]
        code, out, _ = await cli(url, "incidents", "ack", incident_id, "-r", "mine")
        assert code == 0 and "acknowledged" in out
        # acknowledged incidents stay in the default list (on-call is working on them)
        code, out, _ = await cli(url, "incidents", "list")
        assert code == 0 and f"{incident_id} " in out and "acknowledged" in out
        code, out, _ = await cli(url, "incidents", "list", "--status", "open")
        assert code == 0 and out.strip() == "no open incidents"
        code, out, _ = await cli(url, "incidents", "resolve", incident_id, "-r", "done", "--json")
        assert code == 0 and json.loads(out)["status"] == "resolved"
        code, out, _ = await cli(url, "incidents", "list")
        assert code == 0 and out.strip() == "no open or acknowledged incidents"
        for flags in (["--all"], ["--status", "resolved"], ["--status", "open,resolved"]):
            code, out, _ = await cli(url, "incidents", "list", "--json", *flags)
            assert code == 0 and [i["incident_id"] for i in json.loads(out)] == [incident_id]
        code, _, err = await cli(url, "incidents", "list", "--status", "closed")
        assert code == 2 and "unknown status 'closed'" in err
        code, _, err = await cli(url, "incidents", "ack", "inc-nope", "-r", "x")
        assert code == 1 and "HTTP 404" in err
        code, out, _ = await cli(url, "agents", "grant", "cli-1", "-r", "ok")
        assert code == 0 and "revoked: -" in out
        # --force controls an agent the monitor has never seen (e.g. one about to start)
        code, out, err = await cli(url, "agents", "halt", "new-1", "-r", "pre", "--force", "--json")
        assert code == 0, err
        assert json.loads(out)["halted"] and worker.response.control("new-1") is not None
