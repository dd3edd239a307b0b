"""The self-monitoring alert rules (deploy/prometheus/rules) checked and unit-tested by promtool.

``promtool`` is Debian's ``prometheus`` package; ``make test`` installs it and requires it (see
``tests/prometheus_stack.py``). Besides promtool's own checks: every alert has a unit test that
makes it fire, every metric a rule reads is one a worker exports, and every runbook link points
at a section of docs/alerting.md.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from agentwatch.alerting.dispatch import NotificationMetrics
from agentwatch.streams.metrics import WorkerMetrics
from tests.prometheus_stack import MISSING_BINARIES, REQUIRE_ENV, require_binary
from tests.test_compose import PROMETHEUS_FILE, promql_metric_names

ROOT = Path(__file__).resolve().parents[1]
RULES_DIR = ROOT / "deploy" / "prometheus" / "rules"
RULES_FILE = RULES_DIR / "agentwatch.rules.yml"
RULES_TESTS = RULES_DIR / "agentwatch.rules.test.yml"
ALERTING_DOC = ROOT / "docs" / "alerting.md"
#: Series Prometheus makes itself for every scrape target.
SYNTHETIC = {"up"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("promtool"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def exported_metric_names() -> set[str]:
    """Every sample name a worker's /metrics can carry (counters with ``_total``)."""
    registry = CollectorRegistry()
    WorkerMetrics(registry)
    NotificationMetrics(registry)
    names: set[str] = set()
    for family in registry.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{s}" for s in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


def test_promtool_checks_the_prometheus_config_and_its_rules() -> None:
    result = promtool("check", "config", str(PROMETHEUS_FILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout
    checked = promtool("check", "rules", str(RULES_FILE))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    result = promtool("test", "rules", str(RULES_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test_that_makes_it_fire() -> None:
    tests = yaml.safe_load(RULES_TESTS.read_text(encoding="utf-8"))
    fired = {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    alerts = {rule["alert"] for rule in rules()}
    assert alerts - fired == set(), "alerts no promtool test makes fire"
    assert fired <= alerts


def test_rules_read_only_metrics_a_worker_exports() -> None:
    exported = exported_metric_names() | SYNTHETIC
    for rule in rules():
        used = promql_metric_names(rule["expr"])
        assert used, rule["alert"]
        assert used <= exported, f"{rule['alert']} reads {sorted(used - exported)}"


def test_every_alert_is_labelled_and_documented() -> None:
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in ALERTING_DOC.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }
    for rule in rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["labels"]["service"] == "agentwatch"
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])
        page, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert page == "docs/alerting.md" and anchor == rule["alert"].lower()
        assert anchor in anchors, f"docs/alerting.md has no section {rule['alert']}"


def test_a_missing_binary_fails_under_make_test_and_skips_loudly_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    installed = shutil.which("promtool") is not None
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match=r"promtool not found.*make system-deps"):
        require_binary("promtool")
    monkeypatch.delenv(REQUIRE_ENV)
    with (
        pytest.warns(UserWarning, match="SKIPPED: promtool is not installed"),
        pytest.raises(pytest.skip.Exception),
    ):
        require_binary("promtool")
    assert "promtool" in MISSING_BINARIES
    if installed:  # only this test hid it: keep the session summary true
        MISSING_BINARIES.discard("promtool")
