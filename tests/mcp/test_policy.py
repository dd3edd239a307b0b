"""The risk map: risk levels and target arguments per tool name or pattern."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentwatch.mcp.policy import PolicyError, ToolPolicy, arguments_digest, load_policy


def test_exact_name_wins_over_patterns_and_first_pattern_wins(tmp_path: Path) -> None:
    path = tmp_path / "risk.yml"
    path.write_text(
        "fs.delete: critical\n"
        '"fs.*": {risk: medium, target: [path, file]}\n'
        '"*": low\n'
        "send_email: {risk: high, target: to}\n",
        encoding="utf-8",
    )
    policy = load_policy(path)
    assert policy.risk("fs.delete") == "critical"
    assert policy.risk("fs.read") == "medium"
    assert policy.risk("search") == "low"
    assert policy.risk("send_email") == "high"
    assert policy.target("fs.read", {"file": "/tmp/x", "mode": "r"}) == "/tmp/x"
    assert policy.target("fs.read", {"path": "/a", "file": "/b"}) == "/a"
    assert policy.target("send_email", {"to": ["a@x", "b@x"]}) == '["a@x", "b@x"]'


def test_target_falls_back_to_a_digest_of_the_arguments() -> None:
    policy = ToolPolicy.from_mapping({"send_email": {"target": "to"}})
    args = {"body": "hi", "cc": None}
    assert policy.target("send_email", args) == arguments_digest(args)
    assert policy.target("other", {"q": 1}) == arguments_digest({"q": 1})
    assert policy.target("other", None) is None
    assert policy.risk("send_email") is None
    assert arguments_digest({"q": 1}) != arguments_digest({"q": 2})


def test_long_targets_are_clipped() -> None:
    policy = ToolPolicy.from_mapping({"w": {"target": "path"}})
    target = policy.target("w", {"path": "x" * 5000})
    assert target is not None and len(target) == 1024


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("send_email: hgih\n", "'send_email': risk 'hgih' is not one of critical, high, low"),
        ("send_email: {risk: high, targte: to}\n", "unknown keys ['targte']"),
        ("send_email: {target: 3}\n", "target must be an argument name"),
        ("send_email: [high]\n", "expected a risk level or {risk, target}"),
        ("- send_email\n", "expected a mapping of tool names"),
        ("a: [\n", "line 2: not valid YAML"),
    ],
)
def test_bad_risk_maps_fail_with_one_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "risk.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert expected in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read risk map"):
        load_policy(tmp_path / "nope.yml")
    empty = tmp_path / "empty.yml"
    empty.write_text("", encoding="utf-8")
    assert load_policy(empty).risk("x") is None
    assert load_policy(None).rule("x") is None
