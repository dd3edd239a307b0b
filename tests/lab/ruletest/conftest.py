from __future__ import annotations

from pathlib import Path

import pytest

#: Two deterministic rules: a small action budget and the policy detector.
RULES = """
groups:
  - name: t
    rules:
      - alert: Flood
        detector: budget
        params: {max_actions: 5, window_s: 60}
        cooldown: 10m
        labels: {severity: error}
      - alert: Unapproved
        detector: policy
        labels: {severity: critical}
"""


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yml"
    path.write_text(RULES)
    return path


@pytest.fixture
def write_tests(tmp_path: Path, rules_file: Path):  # type: ignore[no-untyped-def]
    """Write a test file beside ``rules.yml`` (``rules: rules.yml`` unless it sets one)."""

    def write(body: str, name: str = "tests.yml", rules: str | None = "rules.yml") -> Path:
        path = tmp_path / name
        head = f"rules: {rules}\n" if rules is not None else ""
        path.write_text(head + body)
        return path

    return write
