from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentwatch.cli import app
from agentwatch.detectors.rules import RulesError, load_rules, parse_duration


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yml"
    path.write_text(text)
    return path


def test_durations() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("1h30m") == 5400
    assert parse_duration(2.5) == 2.5
    for bad in ("", "5 minutes", "-1s", True):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_shipped_default_rules_load() -> None:
    rules = load_rules()
    assert rules.rules, "the default rules file must not be empty"
    assert all(r.severity in {"info", "warning", "error", "critical"} for r in rules.rules)
    assert all(r.annotations.get("runbook_url") for r in rules.rules)
    assert len({r.alert for r in rules.rules}) == len(rules.rules)


def test_every_problem_is_reported_with_file_rule_and_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
groups:
  - name: g1
    rules:
      - alert: Good
        detector: policy
        labels: {severity: critical}
        action: halt
      - alert: BadSeverity
        detector: policy
        labels: {severity: fatal}
      - alert: BadDetector
        detector: nope
      - alert: BadFor
        detector: policy
        for: soon
      - alert: BadParam
        detector: policy
        params: {no_such_param: 1}
      - alert: Good
        detector: policy
""",
    )
    with pytest.raises(RulesError) as info:
        load_rules(path)
    problems = info.value.problems
    text = "\n".join(problems)
    assert f"{path}: group 'g1' rule 'BadSeverity': key 'labels'" in text
    assert "rule 'BadDetector': key 'detector': Value error, unknown detector 'nope'" in text
    assert "rule 'BadFor': key 'for'" in text
    assert "rule 'BadParam': key 'params'" in text and "no_such_param" in text
    assert "rule 'Good': key 'alert': duplicate" in text
    assert len(problems) == 5


def test_action_shorthand_and_scope(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
groups:
  - name: g
    rules:
      - alert: Revoke
        detector: policy
        fleets: [coder]
        cooldown: 5m
        action: {type: revoke, actions: [shell]}
        dry_run: true
      - alert: Page
        detector: policy
        action: notify
""",
    )
    rules = load_rules(path)
    revoke = rules.by_alert("Revoke")
    assert revoke.action.type == "revoke" and revoke.action.actions == ["shell"]
    assert revoke.fleets == ["coder"] and revoke.cooldown == 300 and revoke.dry_run
    assert rules.by_alert("Page").action.type == "notify"


def test_cli_validate(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["rules", "validate", str(write(tmp_path, "groups: []\n"))])
    assert ok.exit_code == 0 and "0 rules OK" in ok.output
    bad = runner.invoke(app, ["rules", "validate", str(write(tmp_path, "groups: [{}]\n"))])
    assert bad.exit_code == 1
    assert "needs a 'rules' list" in bad.output
    broken = runner.invoke(app, ["rules", "validate", str(write(tmp_path, "groups: [\n"))])
    assert broken.exit_code == 1 and "not valid YAML" in broken.output


def test_default_runbook_links_point_at_runbook_sections() -> None:
    root = Path(__file__).resolve().parents[2]
    runbook = (root / "docs" / "runbook.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", runbook, flags=re.M)
    }
    for rule in load_rules().rules:
        path, _, anchor = rule.annotations["runbook_url"].partition("#")
        assert (root / path).is_file(), rule.alert
        assert anchor in anchors, (rule.alert, anchor)
