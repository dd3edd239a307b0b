"""The ``approvals`` section of a rules file: which calls wait for a person's approval.

.. code-block:: yaml

    approvals:
      - name: payments                  # unique; shown to on-call and in the audit
        actions: ["payments.*"]         # globs of action names (any may match)
        risk: [high, critical]          # declared risk levels (a string or a list)
        targets: ["acct:*"]             # globs of targets; a call without a target never matches
        timeout: 2m                     # the call is denied when nobody decides in time

Every listed matcher must match (a missing one matches anything); at least one is required.
The first requirement a call matches applies. Problems are reported like the rules' own
(:class:`~agentwatch.detectors.problems.Problem`), all at once.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from agentwatch.detectors.problems import Problem, describe, from_validation_error, key_path
from agentwatch.detectors.rules import Duration
from agentwatch.schemas.approvals import ApprovalPolicy, ApprovalRequirement

__all__ = ["APPROVAL_KEYS", "ApprovalRule", "check_approvals"]

DEFAULT_TIMEOUT_S = 300.0


def _listify(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class ApprovalRule(BaseModel):
    """One entry of the ``approvals`` section, as written in the file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")
    actions: Annotated[list[Annotated[str, Field(min_length=1)]], BeforeValidator(_listify)] = (
        Field(default_factory=list)
    )
    risk: Annotated[
        list[Literal["low", "medium", "high", "critical"]], BeforeValidator(_listify)
    ] = Field(default_factory=list)
    targets: Annotated[list[Annotated[str, Field(min_length=1)]], BeforeValidator(_listify)] = (
        Field(default_factory=list)
    )
    timeout: Duration = DEFAULT_TIMEOUT_S

    def requirement(self) -> ApprovalRequirement:
        """The wire form of this entry."""
        return ApprovalRequirement(
            name=self.name,
            actions=list(self.actions),
            risks=list(self.risk),
            targets=list(self.targets),
            timeout_s=self.timeout,
        )


APPROVAL_KEYS = tuple(ApprovalRule.model_fields)


def check_approvals(raw: Any, source: str) -> tuple[ApprovalPolicy, list[Problem]]:
    """The policy of a parsed ``approvals`` section (``None``: absent), and its problems.

    Examples
    --------
    >>> policy, problems = check_approvals(
    ...     [{"name": "pay", "actions": "payments.*", "timeout": "2m"}], "r.yml")
    >>> policy.requirements[0].actions, policy.requirements[0].timeout_s, problems
    (['payments.*'], 120.0, [])
    >>> _, problems = check_approvals([{"name": "x", "risk": "severe"}], "r.yml")
    >>> print(problems[0])  # doctest: +ELLIPSIS
    r.yml: key 'approvals[0].risk[0]': ...
    """
    if raw is None:
        return ApprovalPolicy(), []
    if not isinstance(raw, list):
        found = describe(raw)
        problem = Problem(
            source, "approvals", "wrong type", expected="a list of requirements", found=found
        )
        return ApprovalPolicy(), [problem]
    problems: list[Problem] = []
    requirements: list[ApprovalRequirement] = []
    names: set[str] = set()
    for i, entry in enumerate(raw):
        at: list[int | str] = ["approvals", i]
        try:
            rule = ApprovalRule.model_validate(entry)
        except ValidationError as exc:
            problems += from_validation_error(
                exc,
                file=source,
                prefix=at,
                known_keys={(): APPROVAL_KEYS},
                expected_by_key={
                    ("timeout",): "a duration such as 30s, 5m or 1h30m",
                    ("name",): "a name of letters, digits and . _ : @ -",
                },
            )
            continue
        if not (rule.actions or rule.risk or rule.targets):
            problems.append(
                Problem(
                    source,
                    key_path(at),
                    "matches every call: give actions, risk or targets",
                )
            )
            continue
        if not 0 < rule.timeout <= 86_400:
            problems.append(
                Problem(
                    source,
                    key_path([*at, "timeout"]),
                    "out of range",
                    expected="more than 0s and at most 24h",
                    found=describe(entry.get("timeout")),
                )
            )
            continue
        if rule.name in names:
            problems.append(
                Problem(source, key_path([*at, "name"]), f"duplicate name {rule.name!r}")
            )
            continue
        names.add(rule.name)
        requirements.append(rule.requirement())
    return ApprovalPolicy(requirements=requirements), problems
