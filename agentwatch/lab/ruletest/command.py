"""What ``agentwatch rules test`` runs: every file, the report, the exit status."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from agentwatch.lab.ruletest.render import render_json, render_text, totals
from agentwatch.lab.ruletest.run import run_file

__all__ = ["run_rule_tests"]


def run_rule_tests(
    paths: Sequence[Path], *, as_json: bool = False, out: IO[str] | None = None
) -> int:
    """Run the rule test files, print the report (to ``out``, default stdout); the exit status.

    Returns
    -------
    int
        0 when every test passed, 1 when a test failed, 2 when a file could not run (its
        problems, or its rules file's, are in the report, one line each).
    """
    results = [run_file(path) for path in paths]
    out = out if out is not None else sys.stdout
    if as_json:
        out.write(json.dumps(render_json(results), indent=2) + "\n")
    else:
        out.write(render_text(results) + "\n")
    _, failed, broken = totals(results)
    return 2 if broken else 1 if failed else 0
