"""Every kind of problem in a rules file, reported at once, in words (never a Python error)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from agentwatch.detectors.budget import Budget
from agentwatch.detectors.problems import Problem
from agentwatch.detectors.rules import RulesError, load_rules
from agentwatch.detectors.runaway_loop import RunawayLoop
from agentwatch.detectors.validation import (
    check_document,
    check_params,
    describe_type,
    detector_parameters,
)


def rules_doc(*rules: dict[str, Any], name: str = "g") -> dict[str, Any]:
    return {"groups": [{"name": name, "rules": list(rules)}]}


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


def test_a_valid_file_has_no_problems() -> None:
    rules, problems = check_document(
        rules_doc(
            {"alert": "Loop", "detector": "runaway_loop", "params": {"min_run": 6}},
            {"alert": "Budget", "detector": "budget", "params": {"max_actions": 100}},
        ),
        "r.yml",
    )
    assert problems == []
    assert [r.alert for r in rules] == ["Loop", "Budget"]


def test_unknown_parameter_suggests_the_one_meant() -> None:
    _, problems = check_document(
        rules_doc({"alert": "B", "detector": "budget", "params": {"max_actons": 600}}), "r.yml"
    )
    p = only(problems)
    assert (p.file, p.group, p.rule, p.index, p.key) == ("r.yml", "g", "B", 0, "params.max_actons")
    assert p.suggestion == "max_actions"
    assert str(p) == (
        "r.yml: group 'g' rule 'B': key 'params.max_actons': unknown parameter of detector "
        "'budget'; did you mean 'max_actions'?"
    )


def test_unknown_parameter_without_a_close_name_lists_the_known_ones() -> None:
    _, problems = check_document(
        rules_doc({"alert": "B", "detector": "budget", "params": {"colour": 1}}), "r.yml"
    )
    p = only(problems)
    assert p.suggestion is None
    assert "known: max_cost_usd, max_actions, window_s, fleets" in p.reason


@pytest.mark.parametrize(
    ("key", "typo", "meant"),
    [
        ("rule", "cooldwn", "cooldown"),
        ("rule", "detecter", "detector"),
        ("rule", "param", "params"),
    ],
)
def test_unknown_rule_key_suggests_the_one_meant(key: str, typo: str, meant: str) -> None:
    raw = {"alert": "A", "detector": "policy", typo: {} if meant == "params" else "5m"}
    if meant == "detector":
        del raw["detector"]
    _, problems = check_document(rules_doc(raw), "r.yml")
    unknown = [p for p in problems if p.key == typo]
    assert len(unknown) == 1 and unknown[0].suggestion == meant
    assert unknown[0].reason == "unknown key"


def test_unknown_keys_at_the_top_in_a_group_and_in_an_action() -> None:
    doc = {
        "grups": [],
        "groups": [
            {
                "name": "g",
                "rule": [],
                "rules": [
                    {"alert": "A", "detector": "policy", "action": {"type": "revoke", "actons": []}}
                ],
            }
        ],
    }
    _, problems = check_document(doc, "r.yml")
    assert [(p.key, p.suggestion) for p in problems] == [
        ("grups", "groups"),
        ("groups[0].rule", "rules"),
        ("action.actons", "actions"),
    ]


def test_wrong_parameter_type_says_what_was_expected_not_a_python_error() -> None:
    """``min_run: five`` used to reach the constructor: "'<' not supported between ..."."""
    _, problems = check_document(
        rules_doc({"alert": "L", "detector": "runaway_loop", "params": {"min_run": "five"}}),
        "r.yml",
    )
    p = only(problems)
    assert (p.key, p.reason, p.expected, p.found) == (
        "params.min_run",
        "wrong type",
        "an integer",
        "'five' (a string)",
    )
    assert "not supported" not in str(p) and "instances" not in str(p)
    assert str(p).endswith("wrong type: expected an integer, found 'five' (a string)")


@pytest.mark.parametrize(
    ("params", "key", "expected", "found"),
    [
        ({"window_s": "60"}, "params.window_s", "a number", "'60' (a string)"),
        ({"max_actions": 5.5}, "params.max_actions", "an integer or null", "5.5 (a number)"),
        ({"max_actions": True}, "params.max_actions", "an integer or null", "true"),
        (
            {"fleets": ["support"]},
            "params.fleets",
            "a mapping of strings to mappings of strings to numbers or null, or null",
            "['support'] (a list)",
        ),
        (
            {"fleets": {"support": {"max_cost_usd": "5"}}},
            "params.fleets.support.max_cost_usd",
            "a number",
            "'5' (a string)",
        ),
        (
            {"max_cost_usd": float("nan")},
            "params.max_cost_usd",
            "a finite number",
            "nan (a number)",
        ),
    ],
)
def test_wrong_parameter_types(params: dict[str, Any], key: str, expected: str, found: str) -> None:
    _, problems = check_document(
        rules_doc({"alert": "B", "detector": "budget", "params": params}), "r.yml"
    )
    p = only(problems)
    assert (p.key, p.expected, p.found) == (key, expected, found)


def test_an_element_of_a_list_parameter_is_named_by_its_index() -> None:
    _, problems = check_document(
        rules_doc(
            {"alert": "L", "detector": "runaway_loop", "params": {"ignore_kinds": ["llm", 3]}}
        ),
        "r.yml",
    )
    p = only(problems)
    assert (p.key, p.expected, p.found) == ("params.ignore_kinds[1]", "a string", "3 (an integer)")
    # a string where a list of strings belongs is a wrong type, not a list of characters
    _, problems = check_document(
        rules_doc({"alert": "L", "detector": "runaway_loop", "params": {"ignore_kinds": "llm"}}),
        "r.yml",
    )
    assert only(problems).expected == "a list of strings"


def test_wrong_types_of_rule_keys() -> None:
    _, problems = check_document(
        rules_doc(
            {
                "alert": "A",
                "detector": "policy",
                "fleets": "coder",
                "dry_run": "maybe",
                "params": [1],
                "for": "soon",
            }
        ),
        "r.yml",
    )
    by_key = {p.key: p for p in problems}
    assert set(by_key) == {"fleets", "dry_run", "params", "for"}
    assert (by_key["fleets"].expected, by_key["fleets"].found) == (
        "a list of fleet names",
        "'coder' (a string)",
    )
    assert by_key["dry_run"].expected == "true or false"
    assert by_key["params"].expected == "a mapping of the detector's parameters"
    assert by_key["for"].reason == "not a duration"
    assert by_key["for"].expected is not None and "30s, 5m" in by_key["for"].expected


def test_misspelt_severity_and_action_values_get_suggestions() -> None:
    _, problems = check_document(
        rules_doc(
            {
                "alert": "A",
                "detector": "policy",
                "labels": {"severity": "critcal"},
                "action": "hlat",
            }
        ),
        "r.yml",
    )
    by_key = {p.key: p for p in problems}
    assert by_key["labels.severity"].suggestion == "critical"
    assert by_key["labels.severity"].expected == "one of info, warning, error, critical"
    assert by_key["action"].suggestion == "halt"
    assert by_key["action"].expected == "one of notify, revoke, halt, none"


def test_out_of_range_values_are_each_named() -> None:
    _, problems = check_document(
        rules_doc(
            {
                "alert": "L",
                "detector": "runaway_loop",
                "params": {"min_run": 1, "min_speedup": -1, "false_alarms_per_agent_day": 0.01},
            }
        ),
        "r.yml",
    )
    assert [(p.key, p.reason) for p in problems] == [
        (
            "params.min_run",
            "not accepted by detector 'runaway_loop': min_run must be >= 2, got 1",
        ),
        (
            "params.min_speedup",
            "not accepted by detector 'runaway_loop': min_speedup must be >= 0, got -1",
        ),
    ]
    assert problems[0].found == "1 (an integer)"


def test_a_rejected_combination_is_reported_on_params() -> None:
    class Pair(RunawayLoop):
        name = "pair"

        def __init__(self, *, low: int = 1, high: int = 10) -> None:
            if low >= high:
                raise ValueError(f"need low < high, got {low} >= {high}")
            super().__init__()

    issues = check_params(Pair, {"low": 5, "high": 4})
    assert issues == [
        ([], "not accepted by detector 'pair': need low < high, got 5 >= 4", None, None, None)
    ]


def test_unknown_detector_suggests_the_one_meant() -> None:
    _, problems = check_document(rules_doc({"alert": "L", "detector": "runaway_lop"}), "r.yml")
    p = only(problems)
    assert (p.key, p.reason, p.suggestion) == ("detector", "unknown detector", "runaway_loop")
    assert p.found == "'runaway_lop' (a string)"
    _, problems = check_document(rules_doc({"alert": "L", "detector": "zzz"}), "r.yml")
    assert "known: budget, " in only(problems).reason


def test_duplicate_alert_names_name_the_first() -> None:
    rules, problems = check_document(
        {
            "groups": [
                {"name": "a", "rules": [{"alert": "X", "detector": "policy"}]},
                {
                    "name": "b",
                    "rules": [
                        {"alert": "Y", "detector": "policy"},
                        {"alert": "X", "detector": "budget"},
                    ],
                },
            ]
        },
        "r.yml",
    )
    p = only(problems)
    assert (p.group, p.rule, p.index, p.key) == ("b", "X", 1, "alert")
    assert "duplicate alert name (first in group 'a' rule #1)" in p.reason
    assert [r.alert for r in rules] == ["X", "Y"]


def test_rules_without_a_name_or_not_a_mapping_are_named_by_position() -> None:
    _, problems = check_document(rules_doc({"detector": "policy"}, 5), "r.yml")
    assert [str(p) for p in problems] == [
        "r.yml: group 'g' rule #1: key 'alert': missing: this key is required",
        "r.yml: group 'g' rule #2: wrong type: expected a mapping with 'alert' and 'detector', "
        "found 5 (an integer)",
    ]


@pytest.mark.parametrize(
    ("doc", "line"),
    [
        (None, "r.yml: empty file: expected a mapping with a 'groups' list"),
        ([1], "r.yml: wrong type: expected a mapping with a 'groups' list, found [1] (a list)"),
        ({}, "r.yml: key 'groups': missing: this key is required"),
        (
            {"groups": {}},
            "r.yml: key 'groups': wrong type: expected a list of groups, found {} (a mapping)",
        ),
        (
            {"groups": [{"name": "g"}]},
            "r.yml: group 'g': key 'groups[0].rules': missing: every group needs a 'rules' list",
        ),
    ],
)
def test_file_structure_problems(doc: Any, line: str) -> None:
    _, problems = check_document(doc, "r.yml")
    assert [str(p) for p in problems] == [line]


def test_several_problems_in_several_rules_are_all_reported_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(
        """
groups:
  - name: g1
    rules:
      - alert: Budget
        detector: budget
        params: {max_actons: 600, window_s: "60"}
        cooldwn: 5m
      - alert: Loop
        detector: runaway_lop
      - alert: Loop2
        detector: runaway_loop
        params: {min_run: 1}
        labels: {severity: fatal}
      - alert: Budget
        detector: policy
"""
    )
    with pytest.raises(RulesError) as info:
        load_rules(path)
    assert [(p.rule, p.key) for p in info.value.problems] == [
        ("Budget", "cooldwn"),
        ("Budget", "params.max_actons"),
        ("Budget", "params.window_s"),
        ("Loop", "detector"),
        ("Loop2", "labels.severity"),
        ("Loop2", "params.min_run"),
        ("Budget", "alert"),
    ]
    assert all(line.startswith(f"{path}: group 'g1' rule ") for line in info.value.lines)
    assert all("\n" not in line for line in info.value.lines)


def test_unreadable_and_broken_files_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(RulesError) as info:
        load_rules(tmp_path / "missing.yml")
    assert info.value.lines == [
        f"{tmp_path / 'missing.yml'}: cannot read: No such file or directory"
    ]
    broken = tmp_path / "broken.yml"
    broken.write_text("groups:\n  - name: g\n    rules: [\n")
    with pytest.raises(RulesError) as info:
        load_rules(broken)
    (line,) = info.value.lines
    assert line.startswith(f"{broken}: not valid YAML: line 4, column 1: ")


def test_detector_parameters_come_from_the_signature() -> None:
    params, open_ended = detector_parameters(Budget)
    assert params["max_actions"] == int | None and params["window_s"] is float
    assert not open_ended


def test_describe_type() -> None:
    assert describe_type(float) == "a number"
    assert describe_type(Sequence[str] | None) == "a list of strings or null"
    assert describe_type(Mapping[str, Sequence[str]]) == "a mapping of strings to lists of strings"
    assert describe_type(bool) == "true or false"
