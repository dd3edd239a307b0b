"""Compiled detection modules: their doctests, their results, the guard against stale builds."""

from __future__ import annotations

import doctest
import importlib
import importlib.machinery
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentwatch import _native

COMPILED = _native.compiled_modules()


@pytest.mark.parametrize("name", COMPILED or ["(none compiled)"])
def test_doctests_of_a_compiled_module_run_and_pass(name: str) -> None:
    if not COMPILED:
        pytest.skip("no compiled detection module in this checkout (pure Python)")
    module = importlib.import_module(f"agentwatch.detectors.{name}")
    source = (Path(_native.__file__).parent / "detectors" / f"{name}.py").read_text()
    tests = [t for t in doctest.DocTestFinder().find(module) if t.examples]
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)  # as pytest runs doctests
    report: list[str] = []
    for test in tests:
        runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(report)
    # every example of the source is found in the compiled module (comment-only lines are none)
    examples = len(doctest.DocTestParser().get_examples(source))
    assert result.attempted >= examples, (result, examples)


def _backtest(tmp_path: Path, trace: Path, out: Path, *, pure: bool) -> str:
    env = dict(os.environ, AGENTWATCH_PURE_PYTHON="1" if pure else "0")
    code = (
        "import sys, agentwatch._native as n; from agentwatch.lab.backtest import run_backtest; "
        "from agentwatch.detectors import load_rules; "
        "r = run_backtest(sys.argv[1], load_rules(None)); "
        "open(sys.argv[2], 'w').write(''.join(a.model_dump_json() + '\\n' for a in r.anomalies)); "
        "print(','.join(n.compiled_modules()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(trace), str(out)],
        env=env, capture_output=True, text=True, check=True, cwd=tmp_path, timeout=240,
    )  # fmt: skip
    return done.stdout.strip()


def test_compiled_and_pure_python_engines_give_identical_anomalies(tmp_path: Path) -> None:
    if not COMPILED:
        pytest.skip("no compiled detection module in this checkout (pure Python)")
    trace = tmp_path / "events.jsonl"
    subprocess.run(
        [sys.executable, "-m", "agentwatch.cli", "simulate", "--agents", "40", "--minutes", "90",
         "--seed", "3", "--out", str(trace)],
        check=True, capture_output=True, timeout=240,
    )  # fmt: skip
    compiled = _backtest(tmp_path, trace, tmp_path / "compiled.jsonl", pure=False)
    pure = _backtest(tmp_path, trace, tmp_path / "pure.jsonl", pure=True)
    assert compiled.split(",") == COMPILED
    assert pure == ""
    anomalies = (tmp_path / "compiled.jsonl").read_bytes()
    assert anomalies.count(b"\n") >= 5  # the run flags the simulated incidents
    assert anomalies == (tmp_path / "pure.jsonl").read_bytes()


def test_a_build_not_made_from_the_current_source_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    for name in ("baseline", "engine", "policy"):
        (tmp_path / f"{name}.py").write_text(f"# {name}\n")
        (tmp_path / f"{name}{suffix}").write_bytes(b"")
    digest = _native.source_digest(tmp_path / "baseline.py")
    (tmp_path / f"baseline{suffix}.sha256").write_text(digest + "\n")  # built from it
    (tmp_path / f"engine{suffix}.sha256").write_text(_native.source_digest(tmp_path / "policy.py"))
    # policy: no record at all
    monkeypatch.setattr(_native, "_DIR", tmp_path)
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))

    routed = ["agentwatch.detectors.engine", "agentwatch.detectors.policy"]
    assert _native.install({}) == routed
    assert "compiled engine, policy not built from the current source" in caplog.text
    finder = sys.meta_path[0]
    spec = finder.find_spec("agentwatch.detectors.engine", None)  # type: ignore[union-attr]
    assert spec is not None and spec.origin == str(tmp_path / "engine.py")
    assert finder.find_spec("agentwatch.detectors.baseline", None) is None  # type: ignore[union-attr]

    (tmp_path / "baseline.py").write_text("# baseline, edited\n")
    assert _native.install({"AGENTWATCH_PURE_PYTHON": "0"}) == [
        "agentwatch.detectors.baseline",
        *routed,
    ]
    (tmp_path / "baseline.py").write_text("# baseline\n")
    assert _native.install({"AGENTWATCH_PURE_PYTHON": "1"}) == [
        "agentwatch.detectors.baseline",
        *routed,
    ]
    assert not _native.pure_python_requested({"AGENTWATCH_PURE_PYTHON": "false"})


def test_every_compiled_module_has_a_matching_record() -> None:
    if not COMPILED:
        pytest.skip("no compiled detection module in this checkout (pure Python)")
    for name in COMPILED:
        module = importlib.import_module(f"agentwatch.detectors.{name}")
        record = Path(str(module.__file__) + ".sha256").read_text().strip()
        source = Path(_native.__file__).parent / "detectors" / f"{name}.py"
        assert record == _native.source_digest(source), name
