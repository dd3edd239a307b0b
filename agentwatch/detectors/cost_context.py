"""Fleet context for the cost detectors: the fleet's own change, and who moved to a new model.

Two questions decide whether one agent's costlier calls are its own anomaly or a change of its
whole fleet, and both are answered from the fleet's traffic, never from an absolute level
compared across agents (prices within one fleet differ up to 100x):

* :class:`FleetShift`: *how much did the fleet's calls grow over the same period?* Every
  agent reports its own recent change of log tokens per call against its own baseline; the
  fleet's shift is the median of those reports over the agents active lately. A prompt change
  that doubles every input moves the median; one agent's explosion does not.
* :class:`ModelMoves`: *did one agent move to a pricier model alone, or is its fleet moving?*
  A fleet-wide model upgrade reaches every agent within a rollout time; a lone switch leaves
  the peers on their own models. :meth:`ModelMoves.alone` weighs the peers seen since the
  agent moved with a likelihood ratio (below).

Both live in a detector's ``fleet_state`` and cost a dictionary write per call. Both are
shared across workers (``partial``, ``absorb``, ``restore``): their per-agent entries are
this worker's agents' own (agents are disjoint across workers, so the fleet is the union),
and what is derived from all of them (the shift, when to recompute it, the models the fleet
adopted) is the newest any worker computed.
"""

from __future__ import annotations

import math
from typing import Any

from agentwatch.detectors.partials import keep_earliest, keep_newest

__all__ = ["FleetShift", "ModelMoves", "call_size"]

_MIN_REPORTERS = 3  # the fleet's shift needs at least this many recently active agents


def call_size(input_tokens: int, output_tokens: int, cost: float, output_weight: float) -> float:
    """Log size of one call: ``log(input + output_weight * output)`` tokens, the part of the
    cost the agent controls at constant relative prices; ``log(cost * 1e6)`` for a call with a
    cost but no tokens (a priced API call).

    Examples
    --------
    >>> round(call_size(2_000, 500, 0.001, 4.0), 3) == round(math.log(4_000), 3)
    True
    """
    tokens = input_tokens + output_weight * output_tokens
    if tokens > 0.0:
        return math.log(tokens)
    return math.log(cost * 1e6)


class FleetShift:
    """The fleet's same-period change of log call size: a median over its active agents.

    Each warm agent reports ``recent level - own baseline + phi`` (:meth:`report`), its own
    estimate of how far the fleet has moved, where ``phi`` is what the fleet's shift was, on
    average, over the calls its baseline was learned from. The shift (:attr:`value`) is the
    median of the reports of the agents active in the last ``window_s`` seconds (event
    time), recomputed every few reports; it moves only when that median is more than two
    standard errors away (a change of the fleet, not the noise of a few agents), and is
    held while fewer than three agents are active. An agent's fleet-adjusted deviation is
    then ``size - baseline - (value - phi)``: its change against the fleet's change over the
    same period, whichever period its own baseline spans. Until most of the fleet has moved
    the median lags; :meth:`verdict` asks the peers seen since an agent grew directly.

    Parameters
    ----------
    window_s
        How recently an agent must have reported to count (default 600).
    rollout_s
        The time within which a fleet-wide change reaches every agent (default 120 s).
    error
        Accepted chance of :meth:`verdict` taking a fleet-wide change for an agent's own
        (default 0.01).

    Examples
    --------
    >>> shift = FleetShift()
    >>> for i, agent in enumerate("abcde"):
    ...     shift.report(agent, 0.7 if agent != "e" else 3.0, ts=float(i))
    >>> shift.refresh(5.0)
    0.7
    """

    __slots__ = (
        "_need",
        "_next",
        "_own",
        "_pruned",
        "_remote",
        "_remote_reports",
        "_reports",
        "_seen",
        "_version",
        "error",
        "rollout_s",
        "spread",
        "value",
        "window_s",
    )

    def __init__(
        self, window_s: float = 600.0, rollout_s: float = 120.0, error: float = 0.01
    ) -> None:
        self.window_s = window_s
        self.rollout_s = rollout_s
        self.error = error
        self._need = math.log(1.0 / error)
        self.value = 0.0
        self.spread = 0.25  # of the agents' reports, until measured
        self._reports: dict[str, float] = {}
        self._seen: dict[str, float] = {}
        self._own = 0  # reports of this worker's agents, ever
        self._remote_reports = 0  # ... and of the other workers' (as last absorbed)
        self._next = 0  # the fleet's report count at which to recompute the value
        self._version = 0  # the fleet's report count when the value was last computed
        self._pruned: float | None = None  # agents last seen before it were forgotten
        self._remote: set[str] = set()  # agents of the other workers (as last absorbed)

    def report(self, agent: str, estimate: float, ts: float) -> None:
        """Record ``agent``'s current estimate of the fleet's shift, at event time ``ts``."""
        self._reports[agent] = estimate
        self._seen[agent] = ts
        self._own += 1
        if self._own + self._remote_reports >= self._next:
            self.refresh(ts)

    def refresh(self, now: float) -> float:
        """Recompute :attr:`value` from the agents active at ``now``; returns it."""
        since = now - self.window_s
        seen = self._seen
        reports = self._reports
        active = sorted(reports[a] for a, t in seen.items() if t >= since)
        size = len(active)
        # the next refresh after a quarter of the fleet has reported again (at least 16)
        count = self._own + self._remote_reports
        self._version = count
        self._next = count + max(16, len(seen) >> 2)
        if len(seen) > 2 * size + 256:  # forget agents long gone
            self._pruned = since
            for agent in [a for a, t in seen.items() if t < since]:
                del seen[agent]
                del reports[agent]
        if size >= _MIN_REPORTERS:
            mid = size >> 1
            median = active[mid] if size & 1 else 0.5 * (active[mid - 1] + active[mid])
            # move only when the fleet has moved: by more than twice the median's standard
            # error (the spread from the interquartile range), so that the noise of a few
            # active agents does not random-walk into every agent's deviation
            spread = (active[(3 * size) >> 2] - active[size >> 2]) / 1.349
            if size >= 8:
                self.spread = spread if spread > 0.05 else 0.05
            if abs(median - self.value) > 2.0 * 1.2533 * spread / math.sqrt(size):
                self.value = median
        return self.value

    def peers(self, agent: str) -> int:
        """How many other agents of the fleet have reported."""
        return len(self._seen) - (agent in self._seen)

    # -- across workers ---------------------------------------------------------------------
    def partial(self) -> dict[str, Any]:
        """This worker's agents' reports and the newest shift it computed (JSON-able)."""
        remote = self._remote
        seen = self._seen
        reports = self._reports
        return {
            "r": {a: [reports[a], t] for a, t in seen.items() if a not in remote},
            "n": self._own,
            "v": [self._version, self.value, self.spread, self._next, self._pruned],
        }

    def absorb(self, partials: list[dict[str, Any]]) -> None:
        """The other workers' agents' reports (a union) and the newest shift of all."""
        seen = self._seen
        reports = self._reports
        for agent in self._remote:
            seen.pop(agent, None)
            reports.pop(agent, None)
        remote: set[str] = set()
        for p in partials:
            for agent, (estimate, ts) in p["r"].items():
                if agent not in seen or seen[agent] < ts:  # ours unless theirs is newer
                    seen[agent] = ts
                    reports[agent] = estimate
                    remote.add(agent)
        self._remote = remote
        self._remote_reports = sum(int(p["n"]) for p in partials)
        newest = max((p["v"] for p in partials), default=None, key=lambda v: v[0])
        if newest is not None and newest[0] > self._version:
            pruned = self._pruned
            self._version, self.value, self.spread, self._next, self._pruned = newest
            if pruned is not None and (self._pruned is None or pruned > self._pruned):
                self._pruned = pruned
        pruned = self._pruned
        if pruned is not None:  # agents long gone, forgotten by whoever computed it last
            for agent in [a for a, t in seen.items() if t < pruned]:
                del seen[agent]
                del reports[agent]
                remote.discard(agent)

    def restore(self, partial: dict[str, Any]) -> None:
        """This worker's own part from before a restart."""
        for agent, (estimate, ts) in partial["r"].items():
            self._seen[agent] = ts
            self._reports[agent] = estimate
        self._own = int(partial["n"])
        self._version, self.value, self.spread, self._next, self._pruned = partial["v"]

    def verdict(self, agent: str, *, since: float, base: float, growth: float) -> int:
        """Whether ``agent``, whose calls grew by ``growth`` (log) from ``since`` on, when
        the fleet's shift was ``base``, grew alone (1), with its fleet (-1), or the peers seen
        since do not tell yet (0).

        Under a fleet-wide change that starts at ``since`` and reaches every agent within
        ``rollout_s``, a peer reporting ``d`` seconds later has grown with probability
        ``q = 0.9 * min(d / rollout_s, 1)``, by up to as much as the agent (whose growth,
        measured when it crossed its threshold, is biased up; and a peer's recent level
        lags its own switch): normal around ``growth / 2``, spread ``growth / 2``; otherwise
        not at all. Its report ``r`` (against ``base``; reports spread by ``s``,
        :attr:`spread`) weighs ``-log(1 - q + q * N(r; g/2, s^2 + g^2/4) / N(r; 0, s^2))``
        nats for "alone": about ``-log(1 - q)`` when it did not grow, negative when it did.
        The verdict is taken at ``log(1 / error)`` nats either way.

        Examples
        --------
        >>> shift = FleetShift()
        >>> for k in range(8):  # peers seen 2 minutes after the agent grew, not grown
        ...     shift.report(f"p{k}", 0.0, ts=130.0)
        >>> shift.verdict("a", since=0.0, base=0.0, growth=1.5)
        1
        >>> for k in range(8):  # ...or grown as much
        ...     shift.report(f"p{k}", 1.4, ts=140.0)
        >>> shift.verdict("a", since=0.0, base=0.0, growth=1.5)
        -1
        """
        return self.decide(self.evidence(agent, since=since, base=base, growth=growth))

    def decide(self, evidence: float) -> int:
        """The verdict on ``evidence`` nats for "alone" (:meth:`evidence`): 1, -1 or 0."""
        need = self._need
        if evidence >= need:
            return 1
        if evidence <= -need:
            return -1
        return 0

    def evidence(self, agent: str, *, since: float, base: float, growth: float) -> float:
        """The nats for "alone" that :meth:`verdict` weighs (negative: the peers seen since
        ``since`` lean towards a fleet-wide change; 0 with no peer seen since)."""
        rollout_s = self.rollout_s
        reports = self._reports
        s2 = self.spread * self.spread
        mean = 0.5 * growth
        wide = s2 + mean * mean
        norm = math.sqrt(s2 / wide)
        evidence = 0.0
        for peer, ts in self._seen.items():
            if ts <= since or peer == agent:
                continue
            frac = (ts - since) / rollout_s
            q = 0.9 * (frac if frac < 1.0 else 1.0)
            r = reports[peer] - base
            d = r - mean
            z = 0.5 * (r * r / s2 - d * d / wide)
            ratio = norm * math.exp(z if z < 50.0 else 50.0)
            evidence -= math.log(1.0 - q + q * ratio)
        return evidence


class ModelMoves:
    """Who of a fleet moved off its usual models, and who was seen on its main model, when.

    An agent whose calls move to a pricier model it does not use is either alone (an
    anomaly: its whole price jump counts) or the first of a fleet-wide rollout (benign: the
    new model's price is the fleet's new normal). Under a rollout that starts when the agent
    moved, at ``t0``, a peer on the same main model has moved by ``t0 + d`` with
    probability ``min(d / rollout_s, 1)`` (peers on other models, which an upgrade may keep,
    with half that). Each peer seen on its main model at ``t0 + d`` (its latest call) weighs
    ``-log(1 - pi * min(d / rollout_s, 1))`` nats for "alone"; a peer that moved to the same
    model since ``t0 - rollout_s`` decides "rollout", and so does a peer whose main model
    is the new one while that model is new to the fleet (first called since ``t0 -
    rollout_s``: an upgrade whose agents on the agent's model are idle, while a new agent
    starts on the new model or a peer switches to it). :meth:`alone` says so
    once the evidence reaches ``log(1 / error)`` nats: the chance that a real rollout is
    taken for a lone move is then at most ``error`` (the likelihood ratio's bound), whatever
    the fleet's size or density; a sparse fleet simply takes longer to show it.
    :meth:`others_moved`, :meth:`others_adopted` and :attr:`adopted` tell a rollout.

    Parameters
    ----------
    rollout_s
        The time within which a fleet-wide change reaches every agent (default 120 s).
    error
        Accepted chance of taking a rollout for a lone move (default 0.01).

    Examples
    --------
    >>> moves = ModelMoves()
    >>> for k in range(6):  # peers on gpt-4o-mini, seen after a0 moved at t=0
    ...     moves.on_main(f"a{k + 1}", "gpt-4o-mini", ts=130.0)
    >>> moves.alone("a0", since=0.0, own_main="gpt-4o-mini", model="claude-opus-4")
    True
    >>> moves.moved("a1", "claude-opus-4", ts=10.0)  # ...unless a peer moved there too
    >>> moves.others_moved("a0", "claude-opus-4", since=0.0)
    True
    >>> moves.seen("gpt-4.1-mini", ts=1000.0)  # new to the fleet: a0 moves there first
    >>> moves.others_adopted("a0", "gpt-4.1-mini", since=1000.0)
    False
    >>> moves.on_main("a9", "gpt-4.1-mini", ts=1500.0)  # a peer on it as its main model
    >>> moves.others_adopted("a0", "gpt-4.1-mini", since=1000.0)
    True
    """

    __slots__ = (
        "_first",
        "_main",
        "_main_ts",
        "_moved",
        "_moved_to",
        "_need",
        "_remote",
        "adopted",
        "error",
        "rollout_s",
    )

    def __init__(self, rollout_s: float = 120.0, error: float = 0.01) -> None:
        self.rollout_s = rollout_s
        self.error = error
        # met at equality: one peer on its main model seen after rollout_s is enough
        self._need = math.log(1.0 / error) - 1e-9
        self._main: dict[str, str] = {}
        self._main_ts: dict[str, float] = {}
        self._moved: dict[str, float] = {}
        self._moved_to: dict[str, str] = {}
        #: models the fleet was found rolling out, with when: moving to one is no anomaly
        self.adopted: dict[str, float] = {}
        self._remote: set[str] = set()  # agents of the other workers (as last absorbed)
        self._first: dict[str, float] = {}  # model -> the fleet's first call on it

    def seen(self, model: str, ts: float) -> None:
        """A call of the fleet on ``model`` at ``ts``: the first one dates the model."""
        if model not in self._first:
            self._first[model] = ts

    def on_main(self, agent: str, model: str, ts: float) -> None:
        """``agent`` (warm) made a call on its main model ``model`` at ``ts``."""
        self._main_ts[agent] = ts
        if self._main.get(agent) != model:
            self._main[agent] = model

    def moved(self, agent: str, model: str, ts: float) -> None:
        """``agent`` made a call on ``model``, a pricier one it does not use, at ``ts``."""
        self._moved[agent] = ts
        self._moved_to[agent] = model

    def peers(self, agent: str) -> int:
        """How many other agents of the fleet have been seen on a main model."""
        return len(self._main_ts) - (agent in self._main_ts)

    def others_moved(self, agent: str, model: str, since: float) -> bool:
        """Whether another agent moved to ``model`` since ``since - rollout_s``."""
        start = since - self.rollout_s
        moved_to = self._moved_to
        for peer, ts in self._moved.items():
            if ts >= start and peer != agent and moved_to[peer] == model:
                return True
        return False

    def others_adopted(self, agent: str, model: str, since: float) -> bool:
        """Whether another agent has ``model`` as its main model while the model is new to
        the fleet (its first call came after ``since - rollout_s``)."""
        if self._first.get(model, -math.inf) < since - self.rollout_s:
            return False
        return any(main == model and peer != agent for peer, main in self._main.items())

    # -- across workers ---------------------------------------------------------------------
    def partial(self) -> dict[str, Any]:
        """This worker's agents' main models and moves, and the models the fleet adopted
        as far as this worker knows (JSON-able)."""
        remote = self._remote
        main = self._main
        moved_to = self._moved_to
        return {
            "m": {a: [main[a], t] for a, t in self._main_ts.items() if a not in remote},
            "v": {a: [moved_to[a], t] for a, t in self._moved.items() if a not in remote},
            "a": self.adopted,
            "f": self._first,
        }

    def absorb(self, partials: list[dict[str, Any]]) -> None:
        """The other workers' agents' entries (a union) and adopted models (newest time)."""
        for agent in self._remote:
            for table in (self._main, self._main_ts, self._moved, self._moved_to):
                table.pop(agent, None)
        remote: set[str] = set()
        for p in partials:
            for agent, (model, ts) in p["m"].items():
                if self._main_ts.get(agent, -math.inf) < ts:
                    self._main[agent] = model
                    self._main_ts[agent] = ts
                    remote.add(agent)
            for agent, (model, ts) in p["v"].items():
                if self._moved.get(agent, -math.inf) < ts:
                    self._moved_to[agent] = model
                    self._moved[agent] = ts
                    remote.add(agent)
            keep_newest(self.adopted, p["a"])
            keep_earliest(self._first, p.get("f", {}))  # parts from before it was kept: none
        self._remote = remote

    def restore(self, partial: dict[str, Any]) -> None:
        """This worker's own part from before a restart."""
        for agent, (model, ts) in partial["m"].items():
            self._main[agent] = model
            self._main_ts[agent] = ts
        for agent, (model, ts) in partial["v"].items():
            self._moved_to[agent] = model
            self._moved[agent] = ts
        keep_newest(self.adopted, partial["a"])
        keep_earliest(self._first, partial.get("f", {}))

    def alone(self, agent: str, *, since: float, own_main: str | None, model: str) -> bool:
        """Whether the peers seen on their main models since ``agent`` moved from
        ``own_main`` to ``model`` at ``since`` say it moved alone (see the class).

        A move to a model the fleet already runs (a peer's main model, first called before
        ``since - rollout_s``) is also judged on its own when the peers in sight could never
        say it: all of them seen after the rollout time would weigh under ``log(1 / error)``
        nats (no peer on ``own_main``: the others weigh ``log 2`` each at most, those on
        ``model`` nothing). Any other move then stays held: in a small fleet on mixed
        models, that is what an upgrade of the agent's model to a new one looks like."""
        rollout_s = self.rollout_s
        mains = self._main
        need = self._need
        evidence = 0.0
        most = 0.0  # what the same peers would weigh once each was seen after rollout_s
        on_model = False
        for peer, ts in self._main_ts.items():
            if peer == agent:
                continue
            main = mains[peer]
            if main == model:  # already on it: the same under both hypotheses
                on_model = True
                continue
            pi = 0.99 if main == own_main else 0.5
            most -= math.log1p(-pi)
            if ts > since:
                frac = (ts - since) / rollout_s
                evidence -= math.log1p(-pi * (frac if frac < 1.0 else 1.0))
        if evidence >= need:
            return True
        return most < need and on_model and self._first.get(model, since) < since - rollout_s
