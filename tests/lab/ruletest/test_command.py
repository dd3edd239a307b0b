"""``agentwatch rules test``: exit status, text and JSON, several files, the shipped example."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from agentwatch.cli import app

Write = Callable[..., Path]
ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "docs" / "examples" / "default-rules-tests.yml"

PASSING = """
tests:
  - name: flood
    agents: {f: [{action: search, target: "q-{i}", repeat: 10, every: 1}]}
    expect: [{rule: Flood, agent: f, at: 5, within_s: 1}]
"""
FAILING = """
tests:
  - name: quiet, it says
    agents: {f: [{action: search, target: "q-{i}", repeat: 10, every: 1}]}
    expect: none
"""


def invoke(*args: str) -> tuple[int, str]:
    done = CliRunner().invoke(app, ["rules", "test", *args])
    return done.exit_code, done.stdout


def test_exit_status_and_report(write_tests: Write) -> None:
    ok = write_tests(PASSING, name="ok.yml")
    bad = write_tests(FAILING, name="bad.yml")
    broken = write_tests("tests: [{name: t}]", name="broken.yml")
    code, out = invoke(str(ok))
    assert code == 0 and out.splitlines()[-1] == "1 tests: 1 passed, 0 failed"
    code, out = invoke(str(ok), str(bad))
    assert code == 1
    assert "  FAIL  quiet, it says  (1 anomaly, 10 events, " in out
    assert "        + Flood on f (action_budget, error) at 5s: " in out
    assert out.splitlines()[-1] == "2 tests: 1 passed, 1 failed"
    code, out = invoke(str(ok), str(bad), str(broken))
    assert code == 2
    assert f"        {broken}: key 'tests[0].agents': missing: this key is required" in out
    assert out.splitlines()[-1] == "2 tests: 1 passed, 1 failed; 1 file(s) with problems"


def test_json(write_tests: Write) -> None:
    ok = write_tests(PASSING, name="ok.yml")
    bad = write_tests(FAILING, name="bad.yml")
    code, out = invoke("--json", str(ok), str(bad))
    assert code == 1
    doc = json.loads(out)
    assert (doc["ok"], doc["passed"], doc["failed"], doc["files_with_problems"]) == (
        False,
        1,
        1,
        0,
    )
    assert [f["file"] for f in doc["files"]] == [str(ok), str(bad)]
    (quiet,) = doc["files"][1]["tests"]
    assert quiet["ok"] is False and quiet["expected"] == []
    assert [(a["rule"], a["agent"], a["at"]) for a in quiet["unexpected"]] == [("Flood", "f", 5.0)]


def test_a_missing_file_exits_2_with_one_line(tmp_path: Path) -> None:
    code, out = invoke(str(tmp_path / "nope.yml"))
    assert code == 2
    assert f"        {tmp_path / 'nope.yml'}: cannot read: No such file or directory" in out


def test_the_shipped_example_passes_with_the_shipped_rules() -> None:
    """docs/examples/default-rules-tests.yml is what the docs show: it must keep passing."""
    code, out = invoke(str(EXAMPLE))
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == f"{EXAMPLE}  (rules: <builtin default.yml>)"
    assert lines[-1] == "8 tests: 8 passed, 0 failed"
    assert all(line.startswith("  ok    ") for line in lines[1:-1])


def test_the_format_example_in_the_docs_passes(tmp_path: Path) -> None:
    """The YAML under "Testing rules" in docs/detectors.md runs as shown."""
    docs = (ROOT / "docs" / "detectors.md").read_text()
    start = docs.index("rules: my-rules.yml")
    body = docs[start : docs.index("```", start)].replace("rules: my-rules.yml", "")
    path = tmp_path / "tests.yml"
    path.write_text(body)
    code, out = invoke(str(path))
    assert code == 0, out
    assert out.splitlines()[-1] == "2 tests: 2 passed, 0 failed"
    path.write_text(body.replace("within_s: 60", "within_s: 10"))  # the failure the docs show
    code, out = invoke(str(path))
    assert code == 1
    assert (
        "        - RunawayLoop on coder-1 (kind runaway_loop, severity critical) between 3000s "
        "and 3010s, exactly once: did not fire" in out.splitlines()
    )
    assert "        + RunawayLoop on coder-1 (runaway_loop, critical) at 3016s: " in out
