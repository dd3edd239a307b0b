"""``novelty``: an action or target domain new to the agent and rare among its fleet peers."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, ClassVar, Final

from agentwatch.detectors.base import JSON, Finding, OneObjectFleet, register_detector
from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.detectors.fleet_agents import FleetAgents
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
_DAY: Final = 86_400.0
_RATE_EVENTS: Final = 30  # events before an agent's own rate is trusted over its fleet's


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
class Novelty(OneObjectFleet):
    """Something an agent never did before and its fleet peers do not do either.

    The detector remembers, per agent, the actions it has called and the registrable
    domains its targets reached (URL hosts, e-mail domains: see :func:`target_domain`),
    and, per fleet, which agents use each of them and how often the fleet calls each. A
    first use by an agent is judged against its fleet:

    * used by a peer (for an egress domain, by ``common_agents`` peers) — the fleet's
      habit, or a change the fleet is making together (a tool rolled out to every agent):
      learned, never flagged. A new agent is judged by its fleet's habits from its first
      call;
    * **egress** (a domain reached by one of ``egress_actions``: ``http_post``,
      ``send_email``, ``upload`` ...) that no peer sends to: judged **at once** (kind
      ``new_egress_domain``): data leaving for a place no peer sends to is how
      exfiltration looks;
    * **anything else** no peer uses: held until the fleet's other agents have made
      ``evidence_calls`` calls of that kind (calls with an action, or with a domain) since
      the first use — evidence counted in calls, so a sparse fleet waits as many calls as
      a busy one, not as many minutes — and learned if a peer used it meanwhile; else
      judged (kind ``new_action`` or ``new_domain``).

    Judged means compared with a false-alarm budget: how often does this fleet meet
    something none of its agents used before? Its Good-Turing estimate is the share of
    the fleet's calls that are the only call of their kind so far, ``p = (n1 + 1) / (N +
    1)`` (actions and domains apart). The agent's calls of that kind a day times ``p`` is
    how many such first uses to expect from it a day in normal work; only when that is at
    most ``false_alarms_per_agent_day`` is a first use a finding. A fleet whose agents
    keep meeting new customers' domains, or a small fleet that has seen little, is
    silent; a large fleet whose agents have called the same tools and domains for hours
    pages on the first unknown one. ``score`` is ``-ln p`` against ``threshold``, the
    ``ln`` of the agent's calls a day over the budget.

    Flagged novelties are neither learned by the agent nor counted as the fleet's normal
    (a detector must not learn from what it flagged), so the agent's next use is judged
    again.

    Parameters
    ----------
    false_alarms_per_agent_day
        The budget: expected false alarms per agent-day. Default 0.01.
    evidence_calls
        Calls of the fleet's other agents a non-egress novelty waits for. Default 200.
    common_agents
        Other agents sending to a domain from which it is a normal egress destination.
        Default 1: any peer's unflagged use.
    min_fleet_agents
        Agents a fleet needs before peers' silence means anything; a smaller fleet learns
        everything silently (the ``sequence`` detector's secret-then-egress check still
        covers exfiltration there). Default 3.
    min_agent_events
        Events before an agent is judged: until then it learns everything silently.
        Default 0 (a new agent is judged by its fleet's habits).
    warmup_s
        Seconds of event time from the fleet's first event (its agents' earliest
        ``first_seen``, so a restart does not start it over) during which everything is
        learned silently, while the peers establish what is common. Default 1200.
    egress_actions
        Actions whose new domains are judged at once. Default
        :data:`DEFAULT_EGRESS_ACTIONS`.
    max_known
        Actions and domains remembered per agent, each (the state stays small; an agent
        that reaches the cap stops learning new ones and relies on the fleet). Default 48.

    Notes
    -----
    Per-fleet state (agents per action and domain, call counts) is in memory and shared by
    the workers (``fleet_partial`` / ``fleet_absorb``); after a restart the worker restores
    its part from the fleets topic (``fleet_restore``) and each agent re-registers its
    persisted history the first time it is seen again. ``observed`` is the number of other
    agents in the fleet that use the novelty and ``baseline`` the fleet's agents.

    Examples
    --------
    >>> import textwrap
    >>> from datetime import UTC, datetime, timedelta
    >>> from agentwatch.detectors.baseline import AgentBaseline
    >>> from agentwatch.schemas import ActionEvent
    >>> novelty = Novelty(warmup_s=60, false_alarms_per_agent_day=0.2)
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
    >>> for second in range(0, 86_400, 10):  # a day of ten agents posting to Slack
    ...     _ = feed(f"ops-{second % 100 // 10}", second, "http_post", "https://hooks.slack.com/x")
    >>> feed("ops-1", 86_400, "http_post", "https://hooks.slack.com/y")
    []
    >>> [found] = feed("ops-1", 86_410, "http_post", "https://paste-drop.io/upload/1")
    >>> found.kind, found.evidence
    ('new_egress_domain', ('ops-1-86410',))
    >>> print(textwrap.fill(found.summary, 88))
    ops-1 sent http_post to paste-drop.io, a domain it never used before and 0 of the 10
    agents of fleet ops use; the fleet meets a new domain in about 1 of 8,642 calls (864 of
    them a day from this agent, a budget of 0.2 false alarms per agent-day).
    """

    name: ClassVar[str] = "novelty"
    fleet_key = "f"  # its fleet object in the fleet state

    def __init__(
        self,
        *,
        false_alarms_per_agent_day: float = 0.01,
        evidence_calls: int = 200,
        common_agents: int = 1,
        min_fleet_agents: int = 3,
        min_agent_events: int = 0,
        warmup_s: float = 1200.0,
        egress_actions: Sequence[str] = DEFAULT_EGRESS_ACTIONS,
        max_known: int = 48,
    ) -> None:
        if false_alarms_per_agent_day <= 0.0 or evidence_calls < 0 or common_agents < 1:
            raise ValueError(
                "need false_alarms_per_agent_day > 0, evidence_calls >= 0, common_agents >= 1"
            )
        self.false_alarms_per_agent_day = false_alarms_per_agent_day
        self.evidence_calls = evidence_calls
        self.common_agents = common_agents
        self.min_fleet_agents = min_fleet_agents
        self.min_agent_events = min_agent_events
        self.warmup_s = warmup_s
        self.egress_actions = list(egress_actions)
        self.max_known = max_known

    def update(
        self,
        event: ActionEvent,
        baseline: AgentBaseline,
        state: dict[str, JSON],
        fleet_state: dict[str, JSON],
    ) -> list[Finding]:
        """Learn or judge the event's action and target domain."""
        agent = event.agent_id
        fleet: _Fleet | None = fleet_state.get("f")
        if fleet is None:
            fleet = fleet_state["f"] = _Fleet(frozenset(self.egress_actions))
        known_actions: dict[str, int] | None = state.get("a")
        if known_actions is None:
            known_actions = state["a"] = {}
            state["d"] = {}
            state["n"] = [0, 0]
        known_domains: dict[str, int] = state["d"]
        action = event.action
        target = event.target
        # most targets are paths: only URLs and e-mail addresses have a domain
        domain = _domain(target) if target and ("://" in target or "@" in target) else None
        ts = event.ts_epoch
        fleet.events += 1
        if ts > fleet.latest:  # noqa: PLR1730 - cheaper than max()
            fleet.latest = ts
        own: list[int] = state["n"]
        own[0] += 1
        if domain is not None:
            own[1] += 1
        if (
            action in known_actions
            and (domain is None or domain in known_domains)
            and agent in fleet.agents
            and not state.get("p")
        ):  # the common case: nothing new, nothing held
            fleet.count(0, action)
            if domain is not None:
                fleet.count(1, domain)
            return []
        if agent not in fleet.agents:
            fleet.register(agent, baseline.first_seen, known_actions, known_domains)
        if ts < fleet.born:  # noqa: PLR1730 - cheaper than min()
            fleet.born = ts
        if (
            baseline.count < self.min_agent_events
            or ts - fleet.fleet_born() < self.warmup_s
            or fleet.fleet_agents() < self.min_fleet_agents
        ):
            self._learn(known_actions, fleet, 0, action, agent)
            if domain is not None:
                self._learn(known_domains, fleet, 1, domain, agent)
            return []
        out: list[Finding] = []
        pending: list[list[Any]] | None = state.get("p")
        if pending:
            out.extend(self._resolve(event, baseline, state, pending, fleet))
        if action in known_actions:
            fleet.count(0, action)
        else:
            self._novel(event, state, known_actions, fleet, space=0, key=action, ts=ts)
        if domain is not None:
            if domain in known_domains:
                fleet.count(1, domain)
            elif action in fleet.egress:
                others = fleet.others(1, domain, agent)
                found = None
                if others < self.common_agents:
                    found = self._judge(event, baseline, fleet, space=1, key=domain, others=others)
                if found is None:
                    self._learn(known_domains, fleet, 1, domain, agent)
                else:
                    out.append(found)
            else:
                self._novel(event, state, known_domains, fleet, space=1, key=domain, ts=ts)
        return out

    # -- across workers ----------------------------------------------------------------
    def new_fleet(self) -> _Fleet:
        return _Fleet(frozenset(self.egress_actions))

    # -- helpers -----------------------------------------------------------------------

    def _learn(
        self, known: dict[str, int], fleet: _Fleet, space: int, key: str, agent: str
    ) -> None:
        if key not in known and len(known) < self.max_known:
            known[key] = 1
        fleet.adopt(space, key, agent)
        fleet.count(space, key)

    def _novel(
        self,
        event: ActionEvent,
        state: dict[str, JSON],
        known: dict[str, int],
        fleet: _Fleet,
        *,
        space: int,
        key: str,
        ts: float,
    ) -> None:
        """A first use of ``key`` by the agent: learn it if a peer uses it, else hold it."""
        agent = event.agent_id
        if fleet.users(space, key, agent):
            self._learn(known, fleet, space, key, agent)
            return
        pending: list[list[Any]] = state.setdefault("p", [])
        if any(item[0] == space and item[1] == key for item in pending):
            return
        if len(pending) >= _MAX_PENDING:
            return  # busy: judge the ones already held first
        own: list[int] = state["n"]
        pending.append([space, key, ts, event.event_id, fleet.calls[space], own[space]])
        fleet.adopt(space, key, agent)  # a tentative user until judged (a rollout's first)

    def _resolve(
        self,
        event: ActionEvent,
        baseline: AgentBaseline,
        state: dict[str, JSON],
        pending: list[list[Any]],
        fleet: _Fleet,
    ) -> list[Finding]:
        """Judge the held novelties the fleet's other agents have made enough calls since."""
        agent = event.agent_id
        own: list[int] = state["n"]
        out: list[Finding] = []
        kept: list[list[Any]] = []
        for item in pending:
            space, key, first_ts, first_id, fleet0, own0 = item
            if fleet.users(space, key, agent):  # a peer took it up too: the fleet's change
                known: dict[str, int] = state["a" if space == 0 else "d"]
                self._learn(known, fleet, space, key, agent)
                continue
            others = (fleet.calls[space] - fleet0) - (own[space] - own0)
            if others < self.evidence_calls:
                kept.append(item)
                continue
            found = self._judge(
                event,
                baseline,
                fleet,
                space=space,
                key=key,
                others=0,
                first=(first_ts, first_id, others),
            )
            if found is None:
                known = state["a" if space == 0 else "d"]
                self._learn(known, fleet, space, key, agent)
            else:
                out.append(found)
        if kept:
            state["p"] = kept
        else:
            del state["p"]
        return out

    def _judge(
        self,
        event: ActionEvent,
        baseline: AgentBaseline,
        fleet: _Fleet,
        *,
        space: int,
        key: str,
        others: int,
        first: tuple[float, str, int] | None = None,
    ) -> Finding | None:
        """A finding if the fleet's rate of first uses predicts fewer than the budget a
        day from this agent; ``None`` (learn it) otherwise."""
        p_new = (fleet.singles[space] + 1.0) / (fleet.calls[space] + 1.0)
        per_day = self._calls_per_day(baseline, fleet, space)
        if p_new * per_day > self.false_alarms_per_agent_day:
            return None
        fleet.flag(space, key, event.agent_id)
        agents = fleet.fleet_agents()
        what = "action" if space == 0 else "domain"
        rate = (
            f"the fleet meets a new {what} in about 1 of {1.0 / p_new:,.0f} calls "
            f"({per_day:,.0f} of them a day from this agent, a budget of "
            f"{self.false_alarms_per_agent_day:g} false alarms per agent-day)"
        )
        score = -math.log(p_new)
        threshold = math.log(per_day / self.false_alarms_per_agent_day)
        if first is None:  # an egress domain, judged at once
            return Finding(
                kind="new_egress_domain",
                score=score,
                threshold=threshold,
                observed=float(others),
                baseline=float(agents),
                summary=(
                    f"{event.agent_id} sent {event.action} to {key}, a domain it never used "
                    f"before and {others} of the {agents} agents of fleet {event.fleet} use; "
                    f"{rate}."
                ),
                evidence=(event.event_id,),
                actions=(event.action,),
                severity="critical",
            )
        first_ts, first_id, calls = first
        verb = f"started calling {key}" if space == 0 else f"started reaching {key}"
        return Finding(
            kind=f"new_{what}",
            score=score,
            threshold=threshold,
            observed=0.0,
            baseline=float(agents),
            summary=(
                f"{event.agent_id} {verb} at {_iso(first_ts)}, new for it, and in the "
                f"{calls:,} calls the other {agents - 1} agents of fleet {event.fleet} made "
                f"since, none used it; {rate}."
            ),
            evidence=(first_id, event.event_id),
            actions=(key,) if space == 0 else (),
        )

    @staticmethod
    def _calls_per_day(baseline: AgentBaseline, fleet: _Fleet, space: int) -> float:
        """The agent's calls of one kind a day: its event rate (or, while it has little
        history, its fleet's per agent) times the fleet's share of such calls."""
        events = fleet.fleet_events()
        share = fleet.calls[space] / events if events else 1.0
        if baseline.count >= _RATE_EVENTS and baseline.rate > 0.0:
            per_day = baseline.rate * _DAY
        else:
            days = max(fleet.fleet_latest() - fleet.fleet_born(), 3600.0) / _DAY
            per_day = events / (max(fleet.fleet_agents(), 1) * days)
        return max(per_day * share, 1.0)


class _Fleet:
    """In-memory state of one fleet: who uses what and how often, when it began.

    Keys live in two spaces, 0 (actions) and 1 (domains); per space the fleet counts its
    learned calls of each key, all of them (``calls``) and how many keys it has called
    exactly once (``singles``, for the Good-Turing estimate).

    Across workers (:meth:`partial`, :meth:`absorb`): ``counts``, ``agents``, ``events``,
    ``born`` and ``latest`` are this worker's agents' own; ``calls``, ``singles``,
    ``adopters`` and ``flagged`` are the whole fleet's (this worker's part is kept apart in
    ``own_calls``, ``own_adopters`` and ``own_flagged``); agents are disjoint across workers,
    so the fleet's counts are sums and its sets unions.
    """

    __slots__ = (
        "adopters",
        "agents",
        "born",
        "calls",
        "counts",
        "egress",
        "events",
        "flagged",
        "latest",
        "own_adopters",
        "own_calls",
        "own_flagged",
        "remote",
        "remote_counts",
        "singles",
    )

    def __init__(self, egress: frozenset[str]) -> None:
        self.adopters: tuple[dict[str, set[str]], dict[str, set[str]]] = ({}, {})
        self.flagged: tuple[dict[str, set[str]], dict[str, set[str]]] = ({}, {})
        self.own_adopters: tuple[dict[str, set[str]], dict[str, set[str]]] = ({}, {})
        self.own_flagged: tuple[dict[str, set[str]], dict[str, set[str]]] = ({}, {})
        self.counts: tuple[dict[str, int], dict[str, int]] = ({}, {})
        self.remote_counts: tuple[dict[str, int], dict[str, int]] = ({}, {})
        self.calls = [0, 0]
        self.own_calls = [0, 0]
        self.singles = [0, 0]
        self.events = 0
        self.agents = FleetAgents()  # agents registered (this worker's and the others')
        self.born = math.inf  # earliest first_seen of the registered agents
        self.latest = -math.inf
        self.egress = egress
        # the other workers' events, born and latest
        self.remote: tuple[int, float, float] = (0, math.inf, -math.inf)

    def fleet_agents(self) -> int:
        return len(self.agents)

    def fleet_events(self) -> int:
        return self.events + self.remote[0]

    def fleet_born(self) -> float:
        born = self.remote[1]
        return self.born if self.born < born else born

    def fleet_latest(self) -> float:
        latest = self.remote[2]
        return self.latest if self.latest > latest else latest

    def register(
        self, agent: str, first_seen: float | None, actions: dict[str, int], domains: dict[str, int]
    ) -> None:
        """First sight of ``agent`` in this process: count what it already knows."""
        self.agents.add(agent)
        if first_seen is not None and first_seen < self.born:
            self.born = first_seen
        for key in actions:
            self.adopt(0, key, agent)
        for key in domains:
            self.adopt(1, key, agent)

    def count(self, space: int, key: str) -> None:
        counts = self.counts[space]
        n = counts.get(key)
        if n is None:
            if len(counts) >= _MAX_FLEET_KEYS:
                return
            counts[key] = 1
            n = 0
        else:
            counts[key] = n + 1
        remote = self.remote_counts[space]
        if remote:
            n += remote.get(key, 0)
        if n == 0:
            self.singles[space] += 1
        elif n == 1:
            self.singles[space] -= 1
        self.calls[space] += 1
        self.own_calls[space] += 1

    def others(self, space: int, key: str, agent: str) -> int:
        members = self.adopters[space].get(key)
        if not members:
            return 0
        return len(members) - (agent in members)

    def adopt(self, space: int, key: str, agent: str) -> None:
        for adopters in (self.adopters[space], self.own_adopters[space]):
            members = adopters.get(key)
            if members is None:
                if len(adopters) >= _MAX_FLEET_KEYS:
                    return
                members = adopters[key] = set()
            members.add(agent)

    def users(self, space: int, key: str, agent: str) -> bool:
        """Has another agent used ``key`` (learned, held or flagged)?"""
        if self.others(space, key, agent):
            return True
        flagged = self.flagged[space].get(key)
        return flagged is not None and bool(flagged - {agent})

    def flag(self, space: int, key: str, agent: str) -> None:
        for adopters, flagged in (
            (self.adopters[space], self.flagged[space]),
            (self.own_adopters[space], self.own_flagged[space]),
        ):
            members = adopters.get(key)
            if members is not None:
                members.discard(agent)
            agents = flagged.get(key)
            if agents is None:
                if len(flagged) >= _MAX_FLEET_KEYS:
                    return
                agents = flagged[key] = set()
            agents.add(agent)

    # -- across workers ---------------------------------------------------------------------
    def partial(self) -> dict[str, Any]:
        """This worker's agents' part, JSON-able."""
        return {
            "n": self.agents.partial(),
            "e": self.events,
            "b": None if self.born == math.inf else self.born,
            "l": None if self.latest == -math.inf else self.latest,
            "c": list(self.counts),
            "k": list(self.own_calls),
            "a": [{k: sorted(v) for k, v in part.items()} for part in self.own_adopters],
            "f": [{k: sorted(v) for k, v in part.items()} for part in self.own_flagged],
        }

    def absorb(self, partials: list[dict[str, Any]]) -> None:
        """The whole fleet again: this worker's part and the other workers' ``partials``."""
        born = min((p["b"] for p in partials if p["b"] is not None), default=math.inf)
        latest = max((p["l"] for p in partials if p["l"] is not None), default=-math.inf)
        self.agents.absorb([p["n"] for p in partials])
        self.remote = (sum(p["e"] for p in partials), born, latest)
        for space in (0, 1):
            remote: dict[str, int] = {}
            for p in partials:
                for key, n in p["c"][space].items():
                    remote[key] = remote.get(key, 0) + n
            self.remote_counts = (
                (remote, self.remote_counts[1]) if space == 0 else (self.remote_counts[0], remote)
            )
            own = self.counts[space]
            self.calls[space] = self.own_calls[space] + sum(p["k"][space] for p in partials)
            total = dict(remote)
            for key, n in own.items():
                total[key] = total.get(key, 0) + n
            self.singles[space] = sum(1 for n in total.values() if n == 1)
            for merged, mine, name in (
                (self.adopters[space], self.own_adopters[space], "a"),
                (self.flagged[space], self.own_flagged[space], "f"),
            ):
                merged.clear()
                for key, members in mine.items():
                    merged[key] = set(members)
                for p in partials:
                    for key, members in p[name][space].items():
                        into = merged.get(key)
                        if into is None:
                            into = merged[key] = set()
                        into.update(members)

    def restore(self, partial: dict[str, Any]) -> None:
        """This worker's own part from before a restart (the merged view follows at the
        next :meth:`absorb`; until then it is this part alone)."""
        self.events = int(partial["e"])
        self.born = math.inf if partial["b"] is None else partial["b"]
        self.latest = -math.inf if partial["l"] is None else partial["l"]
        self.counts = (dict(partial["c"][0]), dict(partial["c"][1]))
        self.own_calls = [int(partial["k"][0]), int(partial["k"][1])]
        self.own_adopters = tuple({k: set(v) for k, v in part.items()} for part in partial["a"])  # type: ignore[assignment]
        self.own_flagged = tuple({k: set(v) for k, v in part.items()} for part in partial["f"])  # type: ignore[assignment]
        self.absorb([])
