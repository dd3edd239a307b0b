"""The adapters need only their extra: ``agentwatch[langchain]`` / ``agentwatch[openai-agents]``.

A subprocess hides every worker-only package (faust, aiohttp, river, ...) as if it were not
installed, imports both adapters and prices a model call with the shipped table;
``pyproject.toml`` is checked to keep the extras small and ``[dev]`` complete.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import tomllib

from tests.sdk.test_without_worker import ROOT, WORKER_ONLY, _env, blocker

# opentelemetry-api comes with openai-agents (through mcp): hide only opentelemetry-proto.
HIDDEN = {*WORKER_ONLY.values(), "scipy", "mode", "rocksdict"} - {"opentelemetry"}
SCRIPT = blocker(
    HIDDEN,
    ("agentwatch.streams", "agentwatch.detectors", "agentwatch.alerting", "agentwatch.lab"),
) + textwrap.dedent(
    """
    import json
    import agentwatch.integrations.langchain as lc
    import agentwatch.integrations.openai_agents as oa
    from agentwatch.sdk import Monitor

    handler = lc.AgentwatchCallbackHandler(Monitor("iso-bot"))
    cost = handler.pricing.cost("gpt-4o-mini", 1_000_000, 1_000_000)
    oa.AgentwatchTracingProcessor(Monitor("iso-bot"))
    ingest = sorted(n for n in sys.modules if n.startswith("agentwatch.ingest"))
    proto = sorted(n for n in sys.modules if n.startswith("opentelemetry.proto"))
    print(json.dumps({"cost": cost, "leaked": leaked(), "ingest": ingest, "proto": proto}))
    """
)


def test_adapters_import_without_worker_packages() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["cost"] == 0.15 + 0.60
    assert report["leaked"] == []
    assert report["proto"] == []
    assert report["ingest"] == ["agentwatch.ingest", "agentwatch.ingest.prices"]


def test_adapter_extras_are_small_and_dev_has_them() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert extras["langchain"] == ["agentwatch[sdk]", "langchain-core>=1.0,<2"]
    assert extras["openai-agents"] == ["agentwatch[sdk]", "openai-agents>=0.24,<0.25"]
    dev = extras["dev"][0]
    assert "langchain" in dev and "openai-agents" in dev, "make test installs .[dev]"
