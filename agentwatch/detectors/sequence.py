"""``sequence``: improbable action transitions, and a secret read followed by egress."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, ClassVar, Final

from agentwatch.detectors.base import JSON, Finding, OneObjectFleet, register_detector
from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.detectors.novelty import DEFAULT_EGRESS_ACTIONS, target_domain
from agentwatch.detectors.partials import keep_earliest
from agentwatch.schemas import ActionEvent

__all__ = ["DEFAULT_SECRET_ACTIONS", "DEFAULT_SECRET_TARGETS", "SequenceSurprise"]

DEFAULT_SECRET_ACTIONS: Final[tuple[str, ...]] = (
    "get_secret",
    "read_secret",
    "get_credentials",
    "get_api_key",
)
"""Actions that read a secret whatever their target."""

DEFAULT_SECRET_TARGETS: Final[tuple[str, ...]] = (
    r"(?:^|/)\.env(?:\.\w+)?$",  # dotenv files
    r"(?i)(?:^|/)secrets?(?:/|\.)",  # secrets/ directories, secrets.json
    r"(?i)credentials",  # .aws/credentials, credentials.json
    r"(?i)\bid_(?:rsa|dsa|ecdsa|ed25519)\b",  # ssh keys
    r"(?i)\.(?:pem|key|p12|pfx|keystore)$",  # key files
    r"(?i)^vault:",  # anything read from a vault
    r"(?i)^[/~.]\S*(?:passw(?:or)?d|private[_-]?key|api[_-]?key|token)",  # paths named so
)
"""Targets that hold secrets, whatever action reads them."""

_START: Final = "^"  # the previous action at the start of a session
_MAX_DESTINATIONS: Final = 16  # egress domains remembered per agent
_MAX_KEYS: Final = 100_000  # bound of each per-fleet table


@register_detector
class SequenceSurprise(OneObjectFleet):
    """What an agent does next, given what it just did.

    Two checks on the agent's (non-LLM) calls:

    * **exfiltration**: a secret read (an action in ``secret_actions``, or any call whose
      target matches ``secret_targets``: ``.env``, ``secrets/``, ``credentials``,
      ``id_rsa``, ``*.pem``, ``password`` ...) followed within ``window_s`` seconds by an
      egress call (``egress_actions``: ``http_post``, ``send_email``, ``upload`` ...) to a
      domain the agent never sent to and fewer than ``common_agents`` of its fleet peers
      send to (by default: none). Kind ``exfiltration``, evidence the egress call then the
      secret read. Judged once the fleet has ``warmup_s`` seconds of history, so that its
      normal destinations are known; a new agent is judged by them from its first call.
    * **rare transition**: ``P(action | previous action)`` under the fleet's transition
      counts (what all agents of the fleet did after the same action, add-``alpha``
      smoothed) is below ``max_probability``, both actions being established in the fleet
      (each seen ``min_support`` times and for ``establish_s`` seconds, so a tool rolled
      out today is judged only once the fleet has a feel for it). The transition model
      resets at a session change, and retrying a failed call is not a transition. Surprise
      ``-ln P`` is the score. Kind ``rare_transition``.

    The fleet's transition counts and egress destinations are learned from events this
    detector did not flag; a rare transition flagged in ``habit_agents`` different agents
    is a habit of the fleet, not of one agent, and is learned from then on. The per-fleet
    model is in memory (rebuilt from traffic after a restart: ``establish_s`` again before
    rare transitions are judged); the agents' known destinations are persisted.

    Parameters
    ----------
    window_s
        Seconds after a secret read in which egress counts. Default 600.
    secret_actions
        Default :data:`DEFAULT_SECRET_ACTIONS`.
    secret_targets
        Regular expressions; default :data:`DEFAULT_SECRET_TARGETS`.
    egress_actions
        Default :data:`agentwatch.detectors.novelty.DEFAULT_EGRESS_ACTIONS`.
    common_agents
        Other fleet agents that must send to a domain (without being flagged for it) for it
        to be a normal destination. Default 1: a destination any peer uses is the fleet's.
    habit_agents
        Different agents flagged for the same rare transition from which it is a habit of
        the fleet, learned from then on. Default 3.
    min_agent_events
        Events before an agent's egress is judged. Default 0: a new agent is judged by its
        fleet's destinations from its first call.
    warmup_s
        Seconds from the fleet's first event (its agents' earliest ``first_seen``) before
        egress is judged. Default 1200.
    max_probability
        Transition probability below which a call is a rare transition; 0 disables the
        check. Default 0.0005.
    min_support
        Fleet calls of each action of a transition before it is judged. Default 500.
    establish_s
        Seconds an action must have been in the fleet's use before it is judged.
        Default 3600.
    alpha
        Smoothing pseudo-count spread over the fleet's actions. Default 1.0.
    ignore_kinds
        Event kinds outside the sequence (LLM calls sit between tool calls). Default
        ``["llm"]``.

    Examples
    --------
    >>> import textwrap
    >>> from datetime import UTC, datetime, timedelta
    >>> from agentwatch.detectors.baseline import AgentBaseline
    >>> from agentwatch.schemas import ActionEvent
    >>> detector, fleet, states = SequenceSurprise(min_agent_events=0, warmup_s=0), {}, {}
    >>> def feed(agent, second, action, target):
    ...     event = ActionEvent(event_id=f"{agent}-{second}", agent_id=agent, fleet="ops",
    ...                         action=action, target=target,
    ...                         ts=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=second))
    ...     return detector.update(event, AgentBaseline(agent, "ops"),
    ...                            states.setdefault(agent, {}), fleet)
    >>> for n in range(4):
    ...     _ = feed(f"ops-{n}", n, "http_post", "https://hooks.slack.com/services/T1")
    >>> feed("ops-9", 10, "get_secret", "vault:kv/prod/payments/db-password")
    []
    >>> feed("ops-9", 20, "http_post", "https://hooks.slack.com/services/T1")
    []
    >>> [found] = feed("ops-9", 40, "http_post", "https://paste-drop.io/upload/1f")
    >>> found.kind, found.evidence
    ('exfiltration', ('ops-9-40', 'ops-9-10'))
    >>> print(textwrap.fill(found.summary, 88))
    ops-9 read a secret (get_secret on 'vault:kv/prod/payments/db-password') and 30 s later
    sent http_post to paste-drop.io, a destination 0 of its fleet's agents use.
    """

    name: ClassVar[str] = "sequence"
    fleet_key = "f"  # its fleet object in the fleet state

    def __init__(
        self,
        *,
        window_s: float = 600.0,
        secret_actions: Sequence[str] = DEFAULT_SECRET_ACTIONS,
        secret_targets: Sequence[str] = DEFAULT_SECRET_TARGETS,
        egress_actions: Sequence[str] = DEFAULT_EGRESS_ACTIONS,
        common_agents: int = 1,
        habit_agents: int = 3,
        min_agent_events: int = 0,
        warmup_s: float = 1200.0,
        max_probability: float = 0.0005,
        min_support: int = 500,
        establish_s: float = 3600.0,
        alpha: float = 1.0,
        ignore_kinds: Sequence[str] = ("llm",),
    ) -> None:
        self.window_s = window_s
        self.secret_actions = list(secret_actions)
        self.secret_targets = list(secret_targets)
        self.egress_actions = list(egress_actions)
        self.common_agents = common_agents
        self.habit_agents = habit_agents
        self.min_agent_events = min_agent_events
        self.warmup_s = warmup_s
        self.max_probability = max_probability
        self.min_support = min_support
        self.establish_s = establish_s
        self.alpha = alpha
        self.ignore_kinds = list(ignore_kinds)
        self._compiled: tuple[Any, ...] | None = None

    def _compile(self) -> tuple[Any, ...]:
        pattern = "|".join(f"(?:{_unflag(p)})" for p in self.secret_targets)
        compiled: tuple[Any, ...] = (
            re.compile(pattern) if self.secret_targets else None,
            frozenset(self.secret_actions),
            frozenset(self.egress_actions),
            {},  # target -> is it a secret (a bounded cache)
            bool(self.secret_targets or self.secret_actions),  # is the egress check on?
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
        """Check the transition into the event and the secret-then-egress pattern."""
        if event.kind in self.ignore_kinds:
            return []
        secret_re, secret_actions, egress, cache, secrets = self._compiled or self._compile()
        fleet: _Fleet | None = fleet_state.get("f")
        if fleet is None:
            fleet = fleet_state["f"] = _Fleet()
        ts = event.ts_epoch
        action = event.action
        out: list[Finding] = []
        # Each check keeps its own bookkeeping, and only while it is on: nothing else reads
        # it (the default rules run one check per rule).
        if secrets:
            agent = event.agent_id
            if agent not in fleet.agents:
                fleet.register(agent, baseline.first_seen, state.get("e"))
            if ts < fleet.born:  # noqa: PLR1730 - cheaper than min()
                fleet.born = ts
            if action in egress:
                found = self._egress(event, baseline, state, fleet, ts)
                if found is not None:
                    out.append(found)
        if self.max_probability:
            prev: str = state.get("p") or _START
            retry = prev == action and state.get("x", False)
            session = event.session_id
            if session != state.get("q"):
                prev = _START
                state["q"] = session
            if not retry:
                # common path inlined: a transition the fleet makes often is learned, not judged
                row = fleet.model.get(prev)
                seen = 0 if row is None else row.get(action, 0)
                if row is not None and seen and seen >= self.max_probability * fleet.out[prev]:
                    row[action] = seen + 1
                    fleet.out[prev] += 1
                    fleet.calls[action] += 1
                else:
                    rare = self._transition(event, prev, fleet, ts)
                    if rare is None:
                        fleet.learn(prev, action, ts)
                    else:
                        out.append(rare)
            state["p"] = action
            state["x"] = event.status == "error"
        if secrets:
            target = event.target
            secret = action in secret_actions
            if not secret and target and secret_re is not None:
                secret = cache.get(target)
                if secret is None:
                    secret = secret_re.search(target) is not None
                    if len(cache) >= 16_384:
                        cache.clear()
                    cache[target] = secret
            if secret:
                state["s"] = [ts, event.event_id, action, (target or "")[:120]]
        return out

    # -- across workers ----------------------------------------------------------------
    def new_fleet(self) -> _Fleet:
        return _Fleet()

    def _egress(
        self,
        event: ActionEvent,
        baseline: AgentBaseline,
        state: dict[str, JSON],
        fleet: _Fleet,
        ts: float,
    ) -> Finding | None:
        domain = target_domain(event.target)
        if domain is None:
            return None
        agent = event.agent_id
        known: dict[str, int] | None = state.get("e")
        if known is not None and domain in known:
            return None
        others = fleet.senders(domain, agent)
        secret = state.get("s")
        if (
            secret is None
            or not 0.0 <= ts - secret[0] <= self.window_s
            or others >= self.common_agents
            or baseline.count < self.min_agent_events
            or ts - fleet.born < self.warmup_s
        ):
            if known is None:
                known = state["e"] = {}
            if len(known) < _MAX_DESTINATIONS:
                known[domain] = 1
            fleet.send(domain, agent)
            return None
        delay = ts - secret[0]
        return Finding(
            kind="exfiltration",
            score=1.0 - others / max(self.common_agents, 1),
            threshold=0.0,
            observed=delay,
            baseline=float(others),
            summary=(
                f"{agent} read a secret ({secret[2]} on {secret[3]!r}) and {delay:.0f} s later "
                f"sent {event.action} to {domain}, a destination {others} of its fleet's "
                f"agents use."
            ),
            evidence=(event.event_id, secret[1]),
            actions=(event.action, secret[2]),
            severity="critical",
        )

    def _transition(
        self, event: ActionEvent, prev: str, fleet: _Fleet, ts: float
    ) -> Finding | None:
        action = event.action
        support = self.min_support
        calls = fleet.calls
        if calls.get(action, 0) < support:
            return None
        row = fleet.model.get(prev)
        if row is None:
            return None
        seen = row.get(action, 0)
        out_total = fleet.out.get(prev, 0)
        if out_total < support or seen >= self.max_probability * out_total:
            return None
        horizon = ts - self.establish_s
        first = fleet.first
        if first.get(action, ts) > horizon or (prev != _START and first.get(prev, ts) > horizon):
            return None
        probability = (seen + self.alpha / max(len(calls), 1)) / (out_total + self.alpha)
        if probability >= self.max_probability:
            return None
        if fleet.flagged_by(prev, action, event.agent_id) >= self.habit_agents:
            return None  # several agents do it: a habit of the fleet (learned by the caller)
        surprise = -math.log(probability)
        after = "the start of a session" if prev == _START else prev
        return Finding(
            kind="rare_transition",
            score=surprise,
            threshold=-math.log(self.max_probability),
            observed=float(seen),
            baseline=float(out_total),
            summary=(
                f"{event.agent_id} called {action} right after {after}, which {seen} of the "
                f"fleet's {out_total} calls after {after} did (P = {probability:.1e}, "
                f"surprise {surprise:.1f} nats)."
            ),
            evidence=(event.event_id,),
            actions=(action,),
        )


class _Fleet:
    """In-memory state of one fleet: transition counts and egress destinations.

    Across workers (:meth:`partial`, :meth:`absorb`) the counts are the whole fleet's and
    ``remote`` the other workers' part of them as last absorbed, so this worker's own part
    is their difference (nothing extra on the per-event path). First times, the fleet's
    birth, the agents that made a rare pair and the senders to a domain merge by minimum and
    union, which repeating a value does not change: every worker publishes all it knows.
    """

    __slots__ = (
        "agents",
        "born",
        "calls",
        "dest",
        "first",
        "flagged",
        "model",
        "out",
        "remote",
    )

    def __init__(self) -> None:
        self.model: dict[str, dict[str, int]] = {}  # prev -> action -> count
        self.out: dict[str, int] = {}  # prev -> transitions out of it
        self.calls: dict[str, int] = {}  # action -> count
        self.first: dict[str, float] = {}  # action -> first event time in this process
        self.flagged: dict[tuple[str, str], set[str]] = {}  # rare pair -> agents flagged
        self.dest: dict[str, set[str]] = {}  # egress domain -> agents sending there
        self.agents: set[str] = set()
        self.born = math.inf
        self.remote: dict[str, dict[str, int]] = {}  # the other workers' transition counts

    def register(self, agent: str, first_seen: float | None, known: dict[str, int] | None) -> None:
        self.agents.add(agent)
        if first_seen is not None and first_seen < self.born:
            self.born = first_seen
        for domain in known or ():
            self.send(domain, agent)

    def learn(self, prev: str, action: str, ts: float) -> None:
        row = self.model.get(prev)
        if row is None:
            row = self.model[prev] = {}
        row[action] = row.get(action, 0) + 1
        self.out[prev] = self.out.get(prev, 0) + 1
        calls = self.calls
        count = calls.get(action)
        if count is None:
            calls[action] = 1
            self.first[action] = ts
        else:
            calls[action] = count + 1

    def flagged_by(self, prev: str, action: str, agent: str) -> int:
        """Record ``agent`` making the rare pair; return how many other agents made it."""
        agents = self.flagged.get((prev, action))
        if agents is None:
            if len(self.flagged) >= _MAX_KEYS:
                return 0
            agents = self.flagged[prev, action] = set()
        agents.add(agent)
        return len(agents) - 1

    def senders(self, domain: str, agent: str) -> int:
        agents = self.dest.get(domain)
        return 0 if agents is None else len(agents) - (agent in agents)

    def send(self, domain: str, agent: str) -> None:
        agents = self.dest.get(domain)
        if agents is None:
            if len(self.dest) >= _MAX_KEYS:
                return
            agents = self.dest[domain] = set()
        agents.add(agent)

    # -- across workers ---------------------------------------------------------------------
    def own_model(self) -> dict[str, dict[str, int]]:
        """This worker's agents' transition counts: the fleet's less the others'."""
        remote = self.remote
        out: dict[str, dict[str, int]] = {}
        for prev, row in self.model.items():
            theirs = remote.get(prev, {})
            mine = {a: n - theirs.get(a, 0) for a, n in row.items()}
            mine = {a: n for a, n in mine.items() if n > 0}
            if mine:
                out[prev] = mine
        return out

    def partial(self) -> dict[str, Any]:
        """This worker's counts, and all it knows of the rest (JSON-able)."""
        return {
            "m": self.own_model(),
            "f": self.first,
            "b": None if self.born == math.inf else self.born,
            "g": [
                [prev, action, sorted(agents)] for (prev, action), agents in self.flagged.items()
            ],
            "d": {domain: sorted(agents) for domain, agents in self.dest.items()},
        }

    def absorb(self, partials: list[dict[str, Any]]) -> None:
        """This worker's counts plus the other workers' ``partials``."""
        model = self.own_model()
        remote: dict[str, dict[str, int]] = {}
        for p in partials:
            for prev, row in p["m"].items():
                into = remote.setdefault(prev, {})
                for action, n in row.items():
                    into[action] = into.get(action, 0) + n
        self.remote = remote
        self._rebuild(model)
        for p in partials:
            self._union(p)

    def restore(self, partial: dict[str, Any]) -> None:
        """This worker's own part from before a restart."""
        model = {prev: dict(row) for prev, row in partial["m"].items()}
        self.remote = {}
        self._rebuild(model)
        self._union(partial)

    def _rebuild(self, own: dict[str, dict[str, int]]) -> None:
        model: dict[str, dict[str, int]] = {prev: dict(row) for prev, row in own.items()}
        for prev, row in self.remote.items():
            into = model.setdefault(prev, {})
            for action, n in row.items():
                into[action] = into.get(action, 0) + n
        out: dict[str, int] = {}
        calls: dict[str, int] = {}
        for prev, row in model.items():
            out[prev] = sum(row.values())
            for action, n in row.items():
                calls[action] = calls.get(action, 0) + n
        self.model, self.out, self.calls = model, out, calls

    def _union(self, partial: dict[str, Any]) -> None:
        keep_earliest(self.first, partial["f"])
        if partial["b"] is not None and partial["b"] < self.born:
            self.born = partial["b"]
        for prev, action, agents in partial["g"]:
            members = self.flagged.get((prev, action))
            if members is None:
                if len(self.flagged) >= _MAX_KEYS:
                    continue
                members = self.flagged[prev, action] = set()
            members.update(agents)
        for domain, agents in partial["d"].items():
            members = self.dest.get(domain)
            if members is None:
                if len(self.dest) >= _MAX_KEYS:
                    continue
                members = self.dest[domain] = set()
            members.update(agents)


_FLAGS: Final = re.compile(r"^\(\?([aiLmsux]+)\)")


def _unflag(pattern: str) -> str:
    """``(?i)x`` as a scoped ``(?i:x)`` so patterns can be joined into one alternation."""
    match = _FLAGS.match(pattern)
    return pattern if match is None else f"(?{match.group(1)}:{pattern[match.end() :]})"
