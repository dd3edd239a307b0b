"""The rules file's ``approvals`` section: loaded into the rule set, every problem reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentwatch.detectors.rules import RulesError, load_rules

GROUPS = """
groups:
  - name: g
    rules:
      - alert: Budget
        detector: budget
        params: {max_actions: 10}
"""


def write(tmp_path: Path, approvals: str) -> Path:
    path = tmp_path / "rules.yml"
    path.write_text(GROUPS + approvals, encoding="utf-8")
    return path


def test_approvals_section_loads(tmp_path: Path) -> None:
    ruleset = load_rules(
        write(
            tmp_path,
            """
approvals:
  - name: payments
    actions: payments.*
    risk: [high, critical]
    timeout: 2m
  - name: etc
    targets: ["/etc/*"]
""",
        )
    )
    pay, etc = ruleset.approvals.requirements
    assert (pay.name, pay.actions, pay.risks, pay.timeout_s) == (
        "payments",
        ["payments.*"],
        ["high", "critical"],
        120.0,
    )
    assert (etc.targets, etc.timeout_s) == (["/etc/*"], 300.0)
    assert ruleset.approvals.match("payments.refund", "critical", None) == pay


def test_no_section_needs_no_approval() -> None:
    assert load_rules().approvals.requirements == []


def test_every_problem_is_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
approvals:
  - name: a
    actoins: [x]
  - name: b
    risk: severe
  - name: c
  - name: d
    actions: [x]
    timeout: soon
  - name: e
    actions: [x]
    timeout: 0s
  - name: f
    actions: [x]
  - name: f
    actions: [y]
""",
    )
    with pytest.raises(RulesError) as err:
        load_rules(path)
    text = "\n".join(err.value.lines)
    assert "approvals[0].actoins" in text and "did you mean 'actions'" in text
    assert "approvals[1].risk[0]" in text
    assert "key 'approvals[2]': matches every call: give actions, risk or targets" in text
    assert "approvals[3].timeout" in text and "a duration" in text
    assert "approvals[4].timeout" in text and "more than 0s" in text
    assert "approvals[6].name" in text and "duplicate name 'f'" in text


def test_section_must_be_a_list(tmp_path: Path) -> None:
    with pytest.raises(RulesError) as err:
        load_rules(write(tmp_path, "approvals: {name: x}\n"))
    assert "key 'approvals': wrong type" in "\n".join(err.value.lines)
