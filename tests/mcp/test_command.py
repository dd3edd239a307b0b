"""``agentwatch mcp-proxy`` refuses what it cannot run with one line and exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    env["AGENTWATCH_KAFKA_BOOTSTRAP"] = "127.0.0.1:1"  # nothing listens: never reached
    return subprocess.run(
        [sys.executable, "-m", "agentwatch.cli", "mcp-proxy", *args],
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--agent-id", "a"], "give either the server command after -- (stdio) or --upstream"),
        (["--agent-id", "a/b", "--", "x"], "--agent-id/--fleet: agent_id 'a/b' may only contain"),
        (
            ["--agent-id", "a", "--listen", "8765", "--upstream", "http://127.0.0.1:1/mcp"],
            "--listen '8765': expected HOST:PORT",
        ),
        (
            ["--agent-id", "a", "--startup-timeout", "0.2", "--", "no-such-mcp-server-xyz"],
            "cannot start the MCP server 'no-such-mcp-server-xyz': No such file or directory",
        ),
    ],
)
def test_unusable_invocations(args: list[str], expected: str) -> None:
    done = run(*args)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("agentwatch mcp-proxy: ") and expected in last


def test_a_bad_risk_map(tmp_path: Path) -> None:
    bad = tmp_path / "risk.yml"
    bad.write_text("send_email: severe\n", encoding="utf-8")
    done = run("--agent-id", "a", "--risk-map", str(bad), "--", "true")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"agentwatch mcp-proxy: risk map {bad}: 'send_email': risk 'severe' is not one of "
        "critical, high, low, medium"
    )
