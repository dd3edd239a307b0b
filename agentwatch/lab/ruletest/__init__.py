"""Unit tests for alerting rules, the way ``promtool test rules`` works for Prometheus.

A test file (:mod:`~agentwatch.lab.ruletest.spec`) names a rules file and holds tests: fixture
events per agent in a compact form (:mod:`~agentwatch.lab.ruletest.fixtures`) and the
anomalies expected. :mod:`~agentwatch.lab.ruletest.run` feeds the events through the worker's
own engine and compares; :mod:`~agentwatch.lab.ruletest.render` prints a diff per test (or
JSON) and :mod:`~agentwatch.lab.ruletest.command` is ``agentwatch rules test``.
"""

from agentwatch.lab.ruletest.command import run_rule_tests
from agentwatch.lab.ruletest.run import CaseResult, FileResult, run_file
from agentwatch.lab.ruletest.spec import load_test_file

__all__ = ["CaseResult", "FileResult", "load_test_file", "run_file", "run_rule_tests"]
