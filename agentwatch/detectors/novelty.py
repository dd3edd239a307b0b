"""``novelty``: an action or target domain new to the agent and rare among its fleet peers."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, ClassVar, Final

from agentwatch.detectors.base import JSON, AgentDetector, Finding, register_detector
from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.schemas import ActionEvent

__all__ = ["DEFAULT_EGRESS_ACTIONS", "Novelty", "target_domain"]

DEFAULT_EGRESS_ACTIONS: Final[tuple[str, ...]] = (
    "http_post",
    "http_put",
    "http_patch",
    "send_email",
    "send_message",
    "post_message",
    "upload",
    "upload_file",
    "webhook",
    "ftp_put",
    "scp",
)
"""Actions that move data out: a new domain on one of these fires at once."""

_URL: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://(?:[^/?#@]*@)?\[?([^/?#:\]]+)")
_EMAIL: Final = re.compile(r"[^@\s/:<>]+@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)>?$")
_IPV4: Final = re.compile(r"\d+\.\d+\.\d+\.\d+$")
_SECOND_LEVEL: Final = frozenset({"co", "com", "org", "net", "gov", "ac", "edu", "ne", "or"})
_MAX_PENDING: Final = 4
_MAX_FLEET_KEYS: Final = 100_000


def target_domain(target: str | None) -> str | None:
    """The registrable domain a target talks to (URL host or e-mail domain), else ``None``.

    ``a.b.example.com`` becomes ``example.com`` (``x.example.co.uk`` becomes
    ``example.co.uk``), IP addresses stay whole, other hosts (``s3://bucket``) are kept.

    Examples
    --------
    >>> target_domain("https://api.github.com/repos/x?y=1")
    'github.com'
    >>> target_domain("Ana.Kim@Mail.Example.co.uk")
    'example.co.uk'
    >>> target_domain("http://169.254.169.254/latest/meta-data/")
    '169.254.169.254'
    >>> target_domain("git:repo@feat/x-1"), target_domain("/etc/passwd"), target_domain(None)
    (None, None, None)
    """
    if not target:
        return None
    if "://" in target:
        match = _URL.match(target)
    elif "@" in target:
        match = _EMAIL.match(target)
    else:
        return None
    if match is None:
        return None
    host = match.group(1).lower().rstrip(".")
    if _IPV4.match(host) or "." not in host:
        return host
    labels = host.split(".")
    keep = 3 if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL else 2
    return ".".join(labels[-keep:])


_domain = lru_cache(maxsize=4096)(target_domain)  # the same few targets over and over


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%SZ")


@register_detector
class Novelty(AgentDetector):
    """Something an agent never did before and its fleet peers do not do.

    The detector remembers, per agent, the actions it has called and the registrable
    domains its targets reached (URL hosts, e-mail domains: see :func:`target_domain`), and,
    per fleet, which agents use each of them. A new action or domain of a warm agent is

    * **egress** (a domain reached by one of ``egress_actions``: ``http_post``,
      ``send_email``, ``upload`` ...): learned when at least ``common_agents`` other agents
      of the fleet, or ``max_fleet_share`` of its warm agents, send there; otherwise flagged
      **at once** (kind ``new_egress_domain``): data leaving for a place no peer sends to
      is how exfiltration looks;
    * **anything else**: learned when another agent of the fleet has used it; otherwise
      held for ``grace_s`` seconds of event time and flagged (kind ``new_action`` or
      ``new_domain``) only if still no peer has used it by then. A tool rolled out to a
      whole fleet is picked up by many agents within minutes, so it is learned, not
      flagged; a rarely used tool of the role pages once per fleet (the first agent to use
      it after the warm-up), after which the fleet knows it.

    Flagged novelties are neither learned by the agent nor counted as normal destinations
    (a detector must not learn from what it flagged), so the agent's next use fires again.

    Parameters
    ----------
    max_fleet_share
        Share of the fleet's warm agents sending to a domain from which it is a normal
        egress destination. Default 0.05.
    common_agents
        Other agents sending to a domain from which it is a normal egress destination
        whatever the share. Default 3.
    min_fleet_agents
        Warm agents a fleet needs before peers' silence means anything; a smaller fleet
        learns everything silently (the ``sequence`` detector's secret-then-egress check
        still covers exfiltration there). Default 8.
    min_agent_events
        Events before an agent is warm: until then it learns everything silently. Default 30.
    warmup_s
        Seconds of event time from the fleet's first event (its agents' earliest
        ``first_seen``, so a restart does not start it over) during which everything is
        learned silently, while the peers establish what is common. Default 1200.
    grace_s
        How long a non-egress novelty waits for a peer to use it too. Default 180 (a tool
        rolled out to a fleet reaches other agents within a minute or two).
    egress_actions
        Actions whose new domains fire without grace. Default
        :data:`DEFAULT_EGRESS_ACTIONS`.
    max_known
        Actions and domains remembered per agent, each (the state stays small; an agent
        that reaches the cap stops learning new ones and relies on the fleet). Default 48.

    Notes
    -----
    Per-fleet state (agents per action and domain) is in memory: after a restart it is
    rebuilt from each agent's persisted history the first time the agent is seen again.
    ``observed`` is the number of other agents in the fleet that use the novelty and
    ``baseline`` the fleet's warm agents; ``score`` is ``1 - share`` against the threshold
    ``1 - max_fleet_share`` for egress, 1 against 1 (no peer at all) otherwise.

    Examples
    --------
    >>> import textwrap
    >>> from datetime import UTC, datetime, timedelta
    >>> from agentwatch.detectors.baseline import AgentBaseline
    >>> from agentwatch.schemas import ActionEvent
    >>> novelty = Novelty(min_agent_events=3, warmup_s=60)
    >>> baselines, states, fleet = {}, {}, {}
    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> def feed(agent, second, action, target):
    ...     event = ActionEvent(event_id=f"{agent}-{second}", agent_id=agent, fleet="ops",
    ...                         action=action, target=target,
    ...                         ts=t0 + timedelta(seconds=second))
    ...     b = baselines.setdefault(agent, AgentBaseline(agent, "ops"))
    ...     found = novelty.update(event, b, states.setdefault(agent, {}), fleet)
    ...     b.update(event)
    ...     return found
    >>> for second in range(0, 100, 10):
    ...     for n in range(10):
    ...         _ = feed(f"ops-{n}", second, "http_post", "https://hooks.slack.com/x")
    >>> feed("ops-1", 100, "http_post", "https://hooks.slack.com/y")
    []
    >>> [found] = feed("ops-1", 110, "http_post", "https://paste-drop.io/upload/1")
    >>> found.kind, found.evidence
    ('new_egress_domain', ('ops-1-110',))
    >>> print(textwrap.fill(found.summary, 88))
    ops-1 sent http_post to paste-drop.io, a domain it never used before and 0 of the 10
    warm agents of fleet ops use.
    """

    name: ClassVar[str] = "novelty"

    def __init__(
        self,
        *,
        max_fleet_share: float = 0.05,
        common_agents: int = 3,
        min_fleet_agents: int = 8,
        min_agent_events: int = 30,
        warmup_s: float = 1200.0,
        grace_s: float = 180.0,
        egress_actions: Sequence[str] = DEFAULT_EGRESS_ACTIONS,
        max_known: int = 48,
    ) -> None:
        self.max_fleet_share = max_fleet_share
        self.common_agents = common_agents
        self.min_fleet_agents = min_fleet_agents
        self.min_agent_events = min_agent_events
        self.warmup_s = warmup_s
        self.grace_s = grace_s
        self.egress_actions = list(egress_actions)
        self.max_known = max_known

    def update(
        self,
        event: ActionEvent,
        baseline: AgentBaseline,
        state: dict[str, JSON],
        fleet_state: dict[str, JSON],
    ) -> list[Finding]:
        """Learn or flag the event's action and target domain."""
        agent = event.agent_id
        fleet: _Fleet | None = fleet_state.get("f")
        if fleet is None:
            fleet = fleet_state["f"] = _Fleet(frozenset(self.egress_actions))
        known_actions: dict[str, int] | None = state.get("a")
        if known_actions is None:
            known_actions = state["a"] = {}
            state["d"] = {}
        known_domains: dict[str, int] = state["d"]
        action = event.action
        target = event.target
        # most targets are paths: only URLs and e-mail addresses have a domain
        domain = _domain(target) if target and ("://" in target or "@" in target) else None
        ts = event.ts_epoch
        if ts < fleet.born:  # noqa: PLR1730 - cheaper than min()
            fleet.born = ts
        if (
            action in known_actions
            and (domain is None or domain in known_domains)
            and agent in fleet.warm  # so registered too
            and not state.get("p")
        ):
            return []  # the common case: nothing new, nothing held, nothing to learn
        if agent not in fleet.agents:
            fleet.register(agent, baseline.first_seen, known_actions, known_domains)
        if baseline.count < self.min_agent_events or ts - fleet.born < self.warmup_s:
            if action not in known_actions:
                self._learn(known_actions, fleet, "a", action, agent)
            if domain is not None and domain not in known_domains:
                self._learn(known_domains, fleet, "d", domain, agent)
            return []
        warm = fleet.warm
        if agent not in warm:
            warm.add(agent)
        out: list[Finding] = []
        pending: list[list[Any]] | None = state.get("p")
        if pending and ts >= pending[0][2] + self.grace_s:
            out.extend(self._resolve(event, state, pending, fleet))
        if action not in known_actions:
            self._novel(event, state, known_actions, fleet, kind="a", key=action, ts=ts)
        if domain is not None and domain not in known_domains:
            if action in fleet.egress:
                others = fleet.others("d:" + domain, agent)
                if self._common(others, len(warm)):
                    self._learn(known_domains, fleet, "d", domain, agent)
                else:
                    out.append(self._egress_finding(event, domain, others, len(warm)))
            else:
                self._novel(event, state, known_domains, fleet, kind="d", key=domain, ts=ts)
        return out

    # -- helpers -----------------------------------------------------------------------

    def _common(self, others: int, warm: int) -> bool:
        if others >= self.common_agents or warm < self.min_fleet_agents:
            return True  # peers do it (or too few peers to tell)
        return others >= self.max_fleet_share * warm

    def _learn(self, known: dict[str, int], fleet: _Fleet, kind: str, key: str, agent: str) -> None:
        if len(known) < self.max_known:
            known[key] = 1
        fleet.adopt(f"{kind}:{key}", agent)

    def _novel(
        self,
        event: ActionEvent,
        state: dict[str, JSON],
        known: dict[str, int],
        fleet: _Fleet,
        *,
        kind: str,
        key: str,
        ts: float,
    ) -> None:
        """A warm agent's first use of ``key``: learn it if a peer uses it, else hold it."""
        agent = event.agent_id
        full = f"{kind}:{key}"
        if fleet.users(full, agent):
            self._learn(known, fleet, kind, key, agent)
            return
        pending: list[list[Any]] = state.setdefault("p", [])
        if any(item[0] == kind and item[1] == key for item in pending):
            return
        if len(pending) >= _MAX_PENDING:
            return  # busy: judge the ones already held first
        pending.append([kind, key, ts, event.event_id])
        fleet.adopt(full, agent)  # a tentative user until judged

    def _resolve(
        self, event: ActionEvent, state: dict[str, JSON], pending: list[list[Any]], fleet: _Fleet
    ) -> list[Finding]:
        """Judge the pending novelties whose grace period is over."""
        agent = event.agent_id
        ts = event.ts_epoch
        warm = len(fleet.warm)
        out: list[Finding] = []
        while pending and ts >= pending[0][2] + self.grace_s:
            kind, key, first_ts, first_id = pending.pop(0)
            full = f"{kind}:{key}"
            if warm < self.min_fleet_agents or fleet.users(full, agent):
                known: dict[str, int] = state[kind]
                if len(known) < self.max_known:
                    known[key] = 1
                continue  # a peer uses it too (or too few peers to judge by): not flagged
            fleet.flag(full, agent)
            what = "action" if kind == "a" else "domain"
            verb = f"started calling {key}" if kind == "a" else f"started reaching {key}"
            out.append(
                Finding(
                    kind=f"new_{what}",
                    score=1.0,
                    threshold=1.0,
                    observed=0.0,
                    baseline=float(warm),
                    summary=(
                        f"{agent} {verb} at {_iso(first_ts)}, new for it, and "
                        f"{self.grace_s / 60:.0f} min later none of the other {warm - 1} warm "
                        f"agents of fleet {event.fleet} has used it."
                    ),
                    evidence=(first_id, event.event_id),
                    actions=(key,) if kind == "a" else (),
                )
            )
        if not pending:
            del state["p"]
        return out

    def _egress_finding(self, event: ActionEvent, domain: str, others: int, warm: int) -> Finding:
        share = others / warm if warm else 0.0
        return Finding(
            kind="new_egress_domain",
            score=1.0 - share,
            threshold=1.0 - self.max_fleet_share,
            observed=float(others),
            baseline=float(warm),
            summary=(
                f"{event.agent_id} sent {event.action} to {domain}, a domain it never used "
                f"before and {others} of the {warm} warm agents of fleet {event.fleet} use."
            ),
            evidence=(event.event_id,),
            actions=(event.action,),
            severity="critical",
        )


class _Fleet:
    """In-memory state of one fleet: who uses what, which agents are warm, when it began."""

    __slots__ = ("adopters", "agents", "born", "egress", "flagged", "warm")

    def __init__(self, egress: frozenset[str]) -> None:
        self.adopters: dict[str, set[str]] = {}  # "a:action" / "d:domain" -> agents
        self.flagged: dict[str, set[str]] = {}  # novelties flagged, and for whom
        self.agents: set[str] = set()  # agents registered in this process
        self.warm: set[str] = set()
        self.born = math.inf  # earliest first_seen of the registered agents
        self.egress = egress

    def register(
        self, agent: str, first_seen: float | None, actions: dict[str, int], domains: dict[str, int]
    ) -> None:
        """First sight of ``agent`` in this process: count what it already knows."""
        self.agents.add(agent)
        if first_seen is not None and first_seen < self.born:
            self.born = first_seen
        for key in actions:
            self.adopt("a:" + key, agent)
        for key in domains:
            self.adopt("d:" + key, agent)

    def others(self, key: str, agent: str) -> int:
        members = self.adopters.get(key)
        if not members:
            return 0
        return len(members) - (agent in members)

    def adopt(self, key: str, agent: str) -> None:
        members = self.adopters.get(key)
        if members is None:
            if len(self.adopters) >= _MAX_FLEET_KEYS:
                return
            members = self.adopters[key] = set()
        members.add(agent)

    def users(self, key: str, agent: str) -> bool:
        """Has another agent used ``key`` (flagged or not)?"""
        return bool(self.others(key, agent)) or bool(self.flagged.get(key, set()) - {agent})

    def flag(self, key: str, agent: str) -> None:
        members = self.adopters.get(key)
        if members is not None:
            members.discard(agent)
        flagged = self.flagged.get(key)
        if flagged is None:
            if len(self.flagged) >= _MAX_FLEET_KEYS:
                return
            flagged = self.flagged[key] = set()
        flagged.add(agent)
