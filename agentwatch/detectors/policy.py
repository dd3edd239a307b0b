"""``policy``: hard rules on what an agent may do, independent of any baseline."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final

from agentwatch.detectors.base import JSON, AgentDetector, Finding, register_detector
from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.schemas import ActionEvent

__all__ = ["DEFAULT_DENY_TARGETS", "Policy"]

DEFAULT_DENY_TARGETS: Final[tuple[str, ...]] = (
    r"(?:^|[\s'\"=:])/etc/",  # system configuration: /etc/shadow, cat /etc/sudoers
    r"/\.ssh/",  # ssh keys
    r"(?i)shadow\b",
    r"\.\./",  # path traversal
    r"/var/run/secrets/",  # kubernetes service-account tokens
    r"/\.aws/credentials\b",
    r"(?i)(?:^|\s)sudo\b",
    r"(?i)\bdrop\s+table\b",
    r"(?i)\btruncate\b",
    r"(?i)/admin\b",  # admin endpoints and hosts (https://admin.corp/...)
    r"169\.254\.169\.254",  # cloud instance metadata (credential theft)
)
"""Targets no agent should touch: the default of :attr:`Policy.deny_targets`."""

_FLAGS: Final = re.compile(r"^\(\?([aiLmsux]+)\)")
_CACHE_SIZE: Final = 16_384  # targets; cleared when full (high-cardinality ids miss anyway)
_SEVERITY: Final = {"critical": "critical", "high": "error"}


def _scoped(pattern: str) -> str:
    """Rewrite a leading global flag group ``(?i)x`` as a scoped one ``(?i:x)``."""
    match = _FLAGS.match(pattern)
    if match is None:
        return f"(?:{pattern})"
    return f"(?{match.group(1)}:{pattern[match.end() :]})"


@register_detector
class Policy(AgentDetector):
    r"""Policy rules: allow-lists, approvals for risky actions, forbidden targets.

    Stateless and baseline-free: a violation is a violation from an agent's first event, so
    this is the detector that catches ``unapproved_high_risk`` and ``privilege_probing``
    at once (every probe is a risky call without approval, and most touch a forbidden
    target). It never learns, so it cannot be trained into accepting a violation.

    Parameters
    ----------
    allowed_actions
        Per-fleet allow-lists ``{fleet: [action, ...]}``; an action outside its fleet's list is
        a ``disallowed_action`` finding. The key ``"*"`` applies to fleets not listed; fleets
        with neither are unrestricted. Default ``None``: no allow-lists.
    require_approval
        Risk levels (the event's ``risk``) that need ``approved_by``; a call at such a level
        without it is an ``unapproved_high_risk`` finding, whatever its status (a denied
        attempt is still an attempt). Default ``["high", "critical"]``.
    deny_targets
        Regular expressions searched in ``target``; a match is a ``forbidden_target``
        finding. A leading ``(?i)`` applies to its own pattern only. Default
        :data:`DEFAULT_DENY_TARGETS` (``/etc/``, ``.ssh``, ``shadow``, ``../``, Kubernetes
        and AWS credentials, ``sudo``, ``DROP TABLE``, ``TRUNCATE``, ``/admin`` and the cloud
        metadata address ``169.254.169.254``); ``[]`` disables the check.
    allowed_roots
        Filesystem roots; a path target (one starting with ``/`` or ``~``) under none of them
        is an ``outside_allowed_roots`` finding. Default ``None``: no root restriction.

    Notes
    -----
    One event yields at most one finding per kind (the engine's cooldown is per kind). The
    finding's ``actions`` is the event's action, which a ``revoke`` response removes.
    Severity suggestions: ``critical`` for a critical-risk call or a forbidden target,
    ``error`` otherwise. Regexes are compiled once, on first use, into one alternation;
    verdicts on recent targets are cached, so the common path costs a dictionary lookup.

    Examples
    --------
    >>> import textwrap
    >>> from datetime import UTC, datetime
    >>> from agentwatch.detectors.baseline import AgentBaseline
    >>> from agentwatch.schemas import ActionEvent
    >>> policy = Policy(allowed_actions={"ops": ["query_metrics", "restart_service"]})
    >>> def check(**fields):
    ...     event = ActionEvent(event_id="e1", ts=datetime(2026, 1, 1, tzinfo=UTC),
    ...                         agent_id="ops-1", fleet="ops", **fields)
    ...     return policy.update(event, AgentBaseline("ops-1", "ops"), {}, {})
    >>> check(action="query_metrics", target="prometheus:payments/cpu")
    []
    >>> [f.kind for f in check(action="restart_service", risk="high", target="k8s:prod/api")]
    ['unapproved_high_risk']
    >>> check(action="restart_service", risk="high", approved_by="alice")
    []
    >>> [(f.kind, f.actions) for f in check(action="read_file", target="/etc/shadow")]
    [('disallowed_action', ('read_file',)), ('forbidden_target', ('read_file',))]
    >>> [found] = check(action="query_metrics", target="http://169.254.169.254/latest/")
    >>> print(textwrap.fill(found.summary, 88))
    ops-1 called query_metrics on forbidden target 'http://169.254.169.254/latest/' (matches
    deny pattern '169\\.254\\.169\\.254').
    """

    name: ClassVar[str] = "policy"

    def __init__(
        self,
        *,
        allowed_actions: Mapping[str, Sequence[str]] | None = None,
        require_approval: Sequence[str] = ("high", "critical"),
        deny_targets: Sequence[str] | None = None,
        allowed_roots: Sequence[str] | None = None,
    ) -> None:
        self.allowed_actions = (
            None
            if allowed_actions is None
            else {fleet: list(actions) for fleet, actions in allowed_actions.items()}
        )
        self.require_approval = list(require_approval)
        self.deny_targets = list(DEFAULT_DENY_TARGETS if deny_targets is None else deny_targets)
        self.allowed_roots = None if allowed_roots is None else list(allowed_roots)
        self._compiled: tuple[Any, ...] | None = None

    def _compile(self) -> tuple[Any, ...]:
        patterns = [re.compile(p) for p in self.deny_targets]
        joined = re.compile("|".join(_scoped(p) for p in self.deny_targets)) if patterns else None
        allowed = (
            None
            if self.allowed_actions is None
            else {fleet: frozenset(actions) for fleet, actions in self.allowed_actions.items()}
        )
        roots = None if self.allowed_roots is None else tuple(self.allowed_roots)
        compiled: tuple[Any, ...] = (
            joined,
            patterns,
            frozenset(self.require_approval),
            allowed,
            roots,
            {},
        )
        self._compiled = compiled
        return compiled

    def update(
        self,
        event: ActionEvent,
        baseline: AgentBaseline,
        state: dict[str, JSON],
        fleet_state: dict[str, JSON],
    ) -> list[Finding]:
        """Return one finding per violated rule (usually none)."""
        compiled = self._compiled or self._compile()
        joined, patterns, approval, allowed, roots, cache = compiled
        out: list[Finding] = []
        action = event.action
        if allowed is not None:
            fleet_allowed = allowed.get(event.fleet)
            if fleet_allowed is None:
                fleet_allowed = allowed.get("*")
            if fleet_allowed is not None and action not in fleet_allowed:
                out.append(self._disallowed(event, len(fleet_allowed)))
        risk = event.risk
        if risk is not None and risk in approval and not event.approved_by:
            out.append(self._unapproved(event, risk))
        target = event.target
        if target:
            if joined is not None:
                hit = cache.get(target)
                if hit is None:
                    hit = joined.search(target) is not None
                    if len(cache) >= _CACHE_SIZE:
                        cache.clear()
                    cache[target] = hit
                if hit:
                    pattern = next(p.pattern for p in patterns if p.search(target))
                    out.append(self._forbidden(event, target, pattern))
            if roots is not None and target[0] in "/~" and not target.startswith(roots):
                out.append(self._outside_roots(event, target, roots))
        return out

    @staticmethod
    def _finding(event: ActionEvent, kind: str, summary: str, severity: str) -> Finding:
        return Finding(
            kind=kind,
            score=1.0,
            threshold=1.0,
            observed=1.0,
            baseline=0.0,
            summary=summary,
            evidence=(event.event_id,),
            actions=(event.action,),
            severity=severity,  # type: ignore[arg-type]
        )

    def _disallowed(self, event: ActionEvent, allowed: int) -> Finding:
        summary = (
            f"{event.agent_id} called {event.action}, which is not among the {allowed} "
            f"actions allowed for fleet {event.fleet}."
        )
        return self._finding(event, "disallowed_action", summary, "error")

    def _unapproved(self, event: ActionEvent, risk: str) -> Finding:
        where = f" on {event.target!r}" if event.target else ""
        summary = (
            f"{event.agent_id} called {risk}-risk {event.action}{where} without approved_by "
            f"(status {event.status}); {risk} risk requires approval."
        )
        return self._finding(event, "unapproved_high_risk", summary, _SEVERITY.get(risk, "error"))

    def _forbidden(self, event: ActionEvent, target: str, pattern: str) -> Finding:
        summary = (
            f"{event.agent_id} called {event.action} on forbidden target {target[:200]!r} "
            f"(matches deny pattern {pattern!r})."
        )
        return self._finding(event, "forbidden_target", summary, "critical")

    def _outside_roots(self, event: ActionEvent, target: str, roots: tuple[str, ...]) -> Finding:
        summary = (
            f"{event.agent_id} called {event.action} on path {target[:200]!r}, outside the "
            f"allowed roots {list(roots)}."
        )
        return self._finding(event, "outside_allowed_roots", summary, "error")
