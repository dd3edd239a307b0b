"""Fixtures for notifier and dispatcher tests: loopback fakes of PagerDuty and Slack.

The fixtures live in :mod:`tests.alerting.fakes`; another test directory gets them with
``from tests.alerting.fakes import fake_pagerduty, fake_slack`` in its conftest.
"""

from __future__ import annotations

import pytest

from tests.alerting.fakes import fake_pagerduty, fake_slack

__all__ = ["fake_pagerduty", "fake_slack"]


@pytest.fixture(autouse=True)
def _no_agentwatch_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings built in these tests ignore the developer's AGENTWATCH_* environment."""
    import os

    for key in list(os.environ):
        if key.startswith("AGENTWATCH_"):
            monkeypatch.delenv(key)
