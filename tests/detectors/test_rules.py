from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentwatch.cli import app
from agentwatch.detectors.rules import RulesError, load_rules, parse_duration
from tests.fixtures import BAD_RULES


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
    problems = info.value.lines
    text = "\n".join(problems)
    assert f"{path}: group 'g1' rule 'BadSeverity': key 'labels.severity'" in text
    assert "rule 'BadDetector': key 'detector': unknown detector (known: budget, " in text
    assert "found 'nope' (a string)" in text
    assert "rule 'BadFor': key 'for'" in text
    assert "rule 'BadParam': key 'params.no_such_param': unknown parameter of detector" in text
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


def test_cli_validate_lists_every_problem_and_a_count(tmp_path: Path) -> None:
    path = write(tmp_path, BAD_RULES)
    done = CliRunner().invoke(app, ["rules", "validate", str(path)])
    assert done.exit_code == 1
    assert done.output.splitlines() == [
        f"{path}: group 'g' rule 'Budget': key 'params.max_actons': unknown parameter of "
        "detector 'budget'; did you mean 'max_actions'?",
        f"{path}: group 'g' rule 'Loop': key 'params.min_run': wrong type: expected an "
        "integer, found 'five' (a string)",
        f"{path}: 2 problem(s)",
    ]


def test_cli_validate_json(tmp_path: Path) -> None:
    path = write(tmp_path, BAD_RULES)
    done = CliRunner().invoke(app, ["rules", "validate", "--json", str(path)])
    assert done.exit_code == 1
    problems = json.loads(done.stdout)
    assert [(p["rule"], p["key"], p["suggestion"]) for p in problems] == [
        ("Budget", "params.max_actons", "max_actions"),
        ("Loop", "params.min_run", None),
    ]
    assert problems[1] | {"line": None} == {
        "file": str(path),
        "group": "g",
        "rule": "Loop",
        "index": 1,
        "key": "params.min_run",
        "reason": "wrong type",
        "expected": "an integer",
        "found": "'five' (a string)",
        "suggestion": None,
        "message": "wrong type: expected an integer, found 'five' (a string)",
        "line": None,
    }
    ok = CliRunner().invoke(
        app, ["rules", "validate", "--json", str(write(tmp_path, "groups: []"))]
    )
    assert ok.exit_code == 0 and json.loads(ok.stdout) == []


def test_cli_validate_defaults_to_the_configured_then_the_shipped_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AGENTWATCH_RULES_FILE", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./agentwatch.toml
    shipped = CliRunner().invoke(app, ["rules", "validate"])
    assert shipped.exit_code == 0
    assert shipped.output.strip() == f"<builtin default.yml>: {len(load_rules().rules)} rules OK"
    monkeypatch.setenv("AGENTWATCH_RULES_FILE", str(write(tmp_path, BAD_RULES)))
    configured = CliRunner().invoke(app, ["rules", "validate"])
    assert configured.exit_code == 1 and "2 problem(s)" in configured.output


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


def test_the_validate_example_in_the_docs_is_what_validate_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "detectors.md").read_text()
    section = docs[docs.index("### Checking a rules file") :]
    rules_yaml = section[
        section.index("```yaml\n") + 8 : section.index("```\n", section.index("```yaml\n"))
    ]
    text_start = section.index("```text\n") + 8
    shown = section[text_start : section.index("```", text_start)].splitlines()
    monkeypatch.chdir(tmp_path)
    Path("rules.yml").write_text(rules_yaml)
    done = CliRunner().invoke(app, ["rules", "validate", "rules.yml"])
    assert done.exit_code == 1
    assert done.output.splitlines() == shown
