"""Builders shared by tests of several packages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agentwatch.schemas import Anomaly
from agentwatch.schemas.approvals import ApprovalRequest

__all__ = ["BAD_RULES", "make_anomaly"]

#: A rules file with two problems: a misspelt parameter and a parameter of the wrong type.
BAD_RULES = """
groups:
  - name: g
    rules:
      - alert: Budget
        detector: budget
        params: {max_actons: 600}
      - alert: Loop
        detector: runaway_loop
        params: {min_run: "five"}
"""


def make_anomaly(
    n: int, rule: str, *, agent: str = "a1", actions: list[str] | None = None
) -> Anomaly:
    """Anomaly ``an-<n>`` of ``agent`` from ``rule``: critical, score 1.0 over 0.5."""
    return Anomaly(
        anomaly_id=f"an-{n}",
        ts=datetime(2026, 1, 1, tzinfo=UTC),
        agent_id=agent,
        detector="x",
        kind="k",
        severity="critical",
        score=1.0,
        threshold=0.5,
        observed=3.0,
        baseline=1.0,
        summary=f"summary {n}",
        rule=rule,
        actions=actions or [],
    )


def approval_request(
    rid: str = "req00001",
    *,
    ts: datetime | None = None,
    timeout_s: float = 300,
    **fields: object,
) -> ApprovalRequest:
    """An agent's request to run ``payments.refund`` (high risk) under ``payments``."""
    at = ts if ts is not None else datetime.now(UTC)
    values: dict[str, object] = {
        "agent_id": "pay-bot",
        "action": "payments.refund",
        "risk": "high",
        "target": "acct:1",
        "requirement": "payments",
    }
    values.update(fields)
    return ApprovalRequest(
        request_id=rid, ts=at, expires_at=at + timedelta(seconds=timeout_s), **values
    )  # type: ignore[arg-type]
