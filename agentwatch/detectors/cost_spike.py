"""``cost_spike``: an agent's cost per call jumps, on its own, far above its own normal."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from agentwatch.detectors.base import AgentDetector, Finding, register_detector
from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.detectors.calibration import BudgetThreshold
from agentwatch.detectors.cost_context import FleetShift, ModelMoves, call_size
from agentwatch.detectors.fleet_tail import FleetTail
from agentwatch.schemas import ActionEvent

__all__ = ["CostSpike"]

_EVIDENCE = 4  # most recent calls kept per agent for the evidence list
_MAX_MODELS = 4  # models whose share an agent keeps
_CHEAPER = math.log(1.25)  # a model at most this much pricier than the usual one is no jump
_PRICE_CALLS = 3  # calls after which a warm agent's own models tell a switch to its fleet's
_FLEET_CALLS = 20_000.0  # the fleet's model shares forget by halving at this many calls
_MAX_LOG = 709.0  # largest exponent reported: exp(709) ~ 8e307 (valid costs span e^-744..e^709)

# per-agent state "v": learned calls, baseline log size, fleet shift at baseline, typical
# |deviation|, CUSUM, price CUSUM, pending since (0: not pending), pending verdict (1: alone),
# pending calls, calls seen, when the baseline last learned, usual log cost, peak of the
# CUSUM's current excursion (-1: flagged or held, never learned), its calls, its start, the
# fleet's shift then, the sum of its calls' deviations
_N, _MU, _PHI, _DEV, _S, _SP, _SINCE, _ALONE, _PEND, _CALLS, _LAST, _UCOST = range(12)
_PEAK, _M, _XS, _FS, _SUM = range(12, 17)


class _Fleet:
    """Per-fleet memory: its shift in call size, who moved models, its models, its tail.

    Shared across workers (:meth:`partial`, :meth:`absorb`): the shift and the moves merge
    as :mod:`~agentwatch.detectors.cost_context` says, the tail as a
    :class:`~agentwatch.detectors.fleet_tail.FleetTail`, and the model counts as sums of
    every worker's own counts, each halved at the same points of the fleet's count of calls
    (:func:`_halvings`), so the sum is what one worker counting every call would hold.
    """

    __slots__ = (
        "calls",
        "counted",
        "models",
        "moves",
        "own",
        "own_halvings",
        "remote",
        "remote_counted",
        "shift",
        "tail",
    )

    def __init__(self, shift: FleetShift, moves: ModelMoves, keep: float) -> None:
        self.shift = shift
        self.moves = moves
        self.tail = FleetTail(keep)
        self.models: dict[str, float] = {}  # model -> calls of the fleet's agents (halved)
        self.calls = 0.0
        self.own: dict[str, float] = {}  # model -> this worker's agents' calls (halved)
        self.own_halvings = 0  # halvings own has had
        self.counted = 0  # calls this worker counted, ever
        self.remote: list[tuple[dict[str, float], int]] = []  # other workers' (own, halvings)
        self.remote_counted = 0

    def common(self, model: str, share: float) -> bool:
        """Whether ``model`` has at least ``share`` of the fleet's calls."""
        return self.models.get(model, 0.0) >= share * self.calls

    def rare(self, model: str, share: float) -> bool:
        """Whether the fleet's calls show ``model`` under ``share`` of them (by the rule of
        three: the calls counted on it plus 3 fall short; a fleet that has just started
        shows no model rare)."""
        return self.models.get(model, 0.0) + 3.0 < share * self.calls

    def count(self, model: str) -> None:
        """Count one call of a fleet agent on ``model`` (old calls fade by halving)."""
        models = self.models
        models[model] = models.get(model, 0.0) + 1.0
        calls = self.calls + 1.0
        if calls >= _FLEET_CALLS:
            for key in models:
                models[key] *= 0.5
            calls *= 0.5
        self.calls = calls
        # this worker's part, halved where the fleet's count is halved
        index = self.counted + self.remote_counted + 1  # this call's number in the fleet
        before = _halvings(index - 1)
        own = self.own
        if before > self.own_halvings:
            _scale(own, 0.5 ** (before - self.own_halvings))
        own[model] = own.get(model, 0.0) + 1.0
        after = _halvings(index)
        if after > before:
            _scale(own, 0.5 ** (after - before))
        self.own_halvings = after
        self.counted += 1

    def partial(self) -> dict[str, Any]:
        """This worker's part (JSON-able)."""
        return {
            "o": self.own,
            "h": self.own_halvings,
            "c": self.counted,
            "t": self.tail.partial(),
            "s": self.shift.partial(),
            "m": self.moves.partial(),
        }

    def absorb(self, partials: list[dict[str, Any]]) -> None:
        """The other workers' parts."""
        self.remote = [(dict(p["o"]), int(p["h"])) for p in partials]
        self.remote_counted = sum(int(p["c"]) for p in partials)
        self.tail.absorb([p["t"] for p in partials])
        self.shift.absorb([p["s"] for p in partials])
        self.moves.absorb([p["m"] for p in partials])
        self._rebuild()

    def restore(self, partial: dict[str, Any]) -> None:
        """This worker's own part from before a restart."""
        self.own = dict(partial["o"])
        self.own_halvings = int(partial["h"])
        self.counted = int(partial["c"])
        self.tail.restore(partial["t"])
        self.shift.restore(partial["s"])
        self.moves.restore(partial["m"])
        self._rebuild()

    def _rebuild(self) -> None:
        halvings = _halvings(self.counted + self.remote_counted)
        models: dict[str, float] = {}
        for part, done in [(self.own, self.own_halvings), *self.remote]:
            factor = 0.5 ** (halvings - done)
            for model, n in part.items():
                models[model] = models.get(model, 0.0) + n * factor
        self.models = models
        self.calls = sum(models.values())


def _halvings(counted: int) -> int:
    """How many times the fleet's model counts were halved after ``counted`` calls: at
    ``_FLEET_CALLS``, then at every ``_FLEET_CALLS / 2`` more."""
    half = int(_FLEET_CALLS) // 2
    return 0 if counted < 2 * half else (counted - half) // half


def _scale(counts: dict[str, float], factor: float) -> None:
    for key in counts:
        counts[key] *= factor


@register_detector
class CostSpike(AgentDetector):
    """Sudden cost explosion of one agent: its cost per call jumps to several times its own
    normal, while its fleet's does not.

    Every event with a cost is one *call*, and the evidence is counted in calls, so an agent
    making one call every five minutes and one making thirty a minute are judged on the same
    evidence. A call's cost is split in two parts its fleet explains differently; no level is
    ever compared across agents, whose models differ up to 100x in price:

    * its **size**, ``log(input_tokens + output_weight * output_tokens)`` (what context
      stuffing and context growth inflate), against the agent's own baseline (exponentially
      weighted, half-life ``half_life`` calls) *minus the fleet's change over the same
      period* (:class:`~agentwatch.detectors.cost_context.FleetShift`: the median over the
      fleet's active agents of their own recent change), so a prompt change that doubles
      every input is no agent's anomaly;
    * its **price** per token, which jumps when the call uses a pricier model the agent does
      not use (under ``model_share`` of its calls; for a young agent, one its fleet does not
      use either, and on its second and third calls one its fleet's calls show rare). The
      jump counts once the agent is known to have moved *alone*
      (:class:`~agentwatch.detectors.cost_context.ModelMoves`: the peers seen on their own
      models since it moved outweigh a fleet-wide rollout at ``rollout_error``); a peer moving
      too makes it a rollout, and the new price the agent's normal.

    The per-call deviation ``x`` feeds an upward CUSUM ``S = max(0, S + x - log(min_factor)
    / 2)``, Page's test for a jump of ``min_factor`` times the usual cost per call. Its
    threshold ``h`` is where a :class:`~agentwatch.detectors.calibration.BudgetThreshold`
    fitted to the peaks of the agent's own past excursions of ``S`` (shrunk to its fleet's
    while the agent is young) predicts ``false_alarms_per_agent_day``: a CUSUM regenerates
    at zero, its excursions are independent and their heights have an exponential tail
    (Siegmund, *Sequential Analysis*, 1985), the model that threshold fits; an excursion is
    learned when it ends without an alarm, never while it runs. So the alarms of a normal
    agent number about the budget, whatever its noise or its rate. ``S >= h`` then fires
    when the growth is the agent's own:

    * the peers seen since the excursion started did not grow with it
      (:meth:`FleetShift.verdict <agentwatch.detectors.cost_context.FleetShift.verdict>`,
      at ``rollout_error``), or the agent has no peers; or
    * its calls since grew by more than a benign fleet-wide change would bring
      (``benign_factor``) by three standard errors, so it cannot be one, and the peers seen
      since do not lean towards a fleet-wide change (a rollout under way, on top of the
      agent's own swing within a session, passes that margin too).

    Until then the excursion is held (neither fired nor learned); if the fleet grew too, it
    is dropped. A 10x jump fires on its first or second call; a 3-5x one once the fleet has
    shown it did not move, within seconds in a busy fleet.

    Parameters
    ----------
    false_alarms_per_agent_day
        The false-alarm budget: expected anomalies of a normal agent per day (default 0.01).
    min_factor
        The smallest jump of the cost per call worth a page, as a multiple (default 3.0).
    benign_factor
        The largest jump of every call a fleet-wide change (a new system prompt) may bring
        unannounced (default 2.0): larger jumps of an agent's calls need no fleet verdict.
    half_life
        Half-life of the agent's baseline, in calls (default 200).
    min_calls
        Calls an agent makes before its size is judged (default 10); its threshold leans on
        its fleet's excursions until it has many of its own.
    model_share
        Share of an agent's calls that makes a model one it uses (default 0.05).
    rollout_s
        The time within which a fleet-wide change reaches every agent (default 120).
    rollout_error
        Accepted chance of taking an agent of a fleet-wide change for a lone one (default
        0.01).
    output_weight
        Weight of an output token against an input token in a call's size (default 4,
        typical of price lists).

    Notes
    -----
    Catches cost explosions by context stuffing (a prompt several times longer at once),
    context growth on the same model (once the growth passes about ``min_factor``) and a lone
    switch to a pricier model (once the peers seen since show it is alone: within seconds in
    a busy fleet, a few minutes in a sparse one; at once in a fleet of one). Silent on
    fleet-wide model upgrades and prompt changes, on agents whose cost is high but usual and
    on a cheap secondary model. Limits: a slow creep moves the baseline with it (that is
    :class:`~agentwatch.detectors.cost_drift.CostDrift`'s job); more calls at an unchanged
    cost per call is the ``budget`` detector's; moving calls to a model the agent already
    uses regularly shows its size change only; an agent that moves to a pricier model while
    its peers change models is taken for part of that change; in a sparse fleet a jump below
    ``benign_factor`` plus its noise waits for peers to show up.

    Examples
    --------
    >>> import random
    >>> from datetime import UTC, datetime, timedelta
    >>> from agentwatch.lab.sim import llm_cost
    >>> rng = random.Random(7)
    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> def call(agent, i, tokens, model="gpt-4o-mini"):
    ...     out = int(300 * rng.lognormvariate(0.0, 0.4))
    ...     return ActionEvent(event_id=f"{agent}-{i}", agent_id=agent, fleet="support",
    ...                        ts=t0 + timedelta(seconds=10 * i), action="chat", kind="llm",
    ...                        model=model, input_tokens=tokens, output_tokens=out,
    ...                        cost_usd=llm_cost(model, tokens, out))
    >>> det, fleet, states, found = CostSpike(), {}, {}, []
    >>> for i in range(400):
    ...     for agent in ("a", "b", "c", "d"):
    ...         tokens = int(2500 * rng.lognormvariate(0.0, 0.35))
    ...         if agent == "a" and i >= 390:
    ...             tokens *= 10  # agent a stuffs its context
    ...         found += det.update(call(agent, i, tokens), None, states.setdefault(agent, {}),
    ...                             fleet)
    >>> first = found[0]
    >>> first.kind, first.evidence[0], {f.evidence[0][0] for f in found}
    ('cost_spike', 'a-390', {'a'})
    """

    name: ClassVar[str] = "cost_spike"
    needs_cost = True  # events without a cost are skipped (the engine does not call)
    #: whether a pricier model's price jump counts (subclasses may watch sizes only)
    watch_prices: ClassVar[bool] = True
    #: standard errors by which an excursion's mean growth must pass ``benign_factor`` to
    #: be the agent's own without a fleet verdict (its mean is measured when it crossed the
    #: threshold, so biased up: three, not two)
    benign_z: ClassVar[float] = 3.0
    #: whether growth beyond ``benign_factor`` fires without a fleet verdict (see above)
    fast_path: ClassVar[bool] = True
    #: seconds after a step of its fleet's shift during which an agent's excursions are
    #: followed and learned but not judged (0: never; see ``CostDrift``)
    settle_s: float = 0.0

    def __init__(
        self,
        *,
        false_alarms_per_agent_day: float = 0.01,
        min_factor: float = 3.0,
        benign_factor: float = 2.0,
        half_life: float = 200.0,
        min_calls: int = 10,
        model_share: float = 0.05,
        rollout_s: float = 120.0,
        rollout_error: float = 0.01,
        output_weight: float = 4.0,
    ) -> None:
        self.false_alarms_per_agent_day = false_alarms_per_agent_day
        self.min_factor = min_factor
        self.benign_factor = benign_factor
        self.half_life = half_life
        self.min_calls = min_calls
        self.model_share = model_share
        self.rollout_s = rollout_s
        self.rollout_error = rollout_error
        self.output_weight = output_weight
        self._setup(min_factor, benign_factor, half_life, false_alarms_per_agent_day)

    def _setup(
        self, min_factor: float, benign_factor: float, half_life: float, budget: float
    ) -> None:
        """The constants the parameters imply (no state)."""
        self._k = 0.5 * math.log(min_factor)
        self._benign = math.log(benign_factor)
        self._alpha = -math.expm1(-math.log(2.0) / half_life)
        self._share_alpha = -math.expm1(-math.log(2.0) / 100.0)
        self._recent = -math.expm1(-math.log(2.0) / 2.0)  # recent level: half-life 2 calls
        # a weak prior: five excursions of half the reference's height, until the fleet's
        # and the agent's own excursions say better
        self._tail = BudgetThreshold(
            budget_per_day=budget,
            floor=0.0,
            prior_checks=5.0,
            prior_share=1.0,
            prior_excess=0.5 * self._k,
        )

    def update(
        self,
        event: ActionEvent,
        baseline: AgentBaseline | None,
        state: dict[str, Any],
        fleet_state: dict[str, Any],
    ) -> list[Finding]:
        cost = event.cost_usd
        if cost <= 0.0:
            return []
        fleet: _Fleet | None = fleet_state.get(self.name)
        if fleet is None:
            fleet = self._fleet(fleet_state)
        v = state.get("v")
        if v is None:
            v = state["v"] = [0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, 0, 0, event.ts_epoch, 0.0]
            v += [0.0, 0, 0.0, 0.0, 0.0]
            if self.watch_prices:
                state["m"] = {}
            state["t"] = BudgetThreshold.new_state()
            state["ids"] = [""] * _EVIDENCE
        size = call_size(event.input_tokens, event.output_tokens, cost, self.output_weight)
        log_cost = math.log(cost)
        model = event.model
        agent = event.agent_id
        ts = event.ts_epoch
        if model is not None and self.watch_prices:
            fleet.moves.seen(model, ts)
        calls = v[_CALLS]
        state["ids"][calls % _EVIDENCE] = event.event_id
        v[_CALLS] = calls + 1
        n = v[_N]
        shift = fleet.shift.value
        if n == 0:
            v[_MU], v[_PHI], v[_UCOST] = size, shift, log_cost
            v[_N] = 1
            if model is not None and self.watch_prices:
                state["m"][model] = [1.0, log_cost - size]
                state["mm"] = model
            return []
        x = size - v[_MU] - (shift - v[_PHI])  # the call's change against its fleet's
        warm = n >= self.min_calls
        k = self._k
        # a pricier model the agent does not use: its price jump, held until the agent is
        # known to have moved alone (pending: neither counted nor learned)
        jump = 0.0
        if self.watch_prices and model is not None:
            models: dict[str, list[float]] = state["m"]
            entry = models.get(model)
            share = self.model_share
            if (entry is None or entry[0] < share) and (
                (warm or not fleet.common(model, share))  # a young agent: its fleet's habits
                if n >= _PRICE_CALLS
                # its first calls on a model the fleet does not use would make it its own
                else fleet.rare(model, share)
            ):
                main = state.get("mm")
                if main is not None:
                    price = log_cost - size
                    step = price - models[main][1]
                    if step > _CHEAPER and self._pending(
                        state, fleet, agent=agent, model=model, price=price, ts=ts
                    ):
                        jump = step
        if not jump and v[_SINCE] and model == state.get("mm"):
            self._end_pending(state, v, accept=False)  # back on its main model: a one-off
        s = v[_S] + x - k
        if s <= 0.0:
            s = 0.0
        elif v[_S] <= 0.0:  # an excursion starts
            v[_M], v[_XS], v[_FS], v[_SUM] = 0, ts, shift, 0.0
        v[_S] = s
        if s > 0.0:
            v[_M] += 1
            v[_SUM] += x
        if jump:
            sp = v[_SP] + x + jump - k
            v[_SP] = sp if sp > 0.0 else 0.0
            if v[_ALONE] and sp > 0.0:
                h = self._tail.state_threshold(state["t"], fleet.tail.view())
                if sp >= h:
                    v[_SP] = h  # clears on the first normal call
                    v[_PEAK] = -1.0
                    return [self._finding(event, state, h, jump)]
        held = False
        settling = self.settle_s > 0.0 and self._settling(state, shift, ts)
        if warm and s > 0.0 and not settling:
            h = self._tail.state_threshold(state["t"], fleet.tail.view())
            if s >= h:
                if self.settle_s and self._held_too_long(state, v, ts):
                    verdict = -1  # no verdict within settle_s: a warning that late helps no one
                else:
                    verdict = self._own_growth(agent, v, fleet)
                if verdict > 0:
                    v[_S] = h  # clears on the first normal call
                    v[_PEAK] = -1.0
                    return [self._finding(event, state, h, None)]
                if verdict < 0:  # the fleet grew too: not this agent's anomaly
                    v[_S] = s = 0.0
                    v[_PEAK] = -1.0
                else:
                    held = True  # until the fleet shows whether it grew too
                    v[_PEAK] = -1.0
                    if self.settle_s and state.get("h", (None,))[0] != v[_XS]:
                        state["h"] = [v[_XS], int(ts)]  # when this excursion was first held
        if jump or held:
            return []
        self._learn(event, state, fleet, size=size, log_cost=log_cost, x=x)
        self._calibrate(state, fleet, s=s, warm=warm, ts=ts)
        return []

    def _fleet(self, fleet_state: dict[str, Any]) -> _Fleet:
        fleet: _Fleet | None = fleet_state.get(self.name)
        if fleet is None:
            fleet = fleet_state[self.name] = _Fleet(
                FleetShift(rollout_s=self.rollout_s, error=self.rollout_error),
                ModelMoves(rollout_s=self.rollout_s, error=self.rollout_error),
                0.5 ** (1.0 / self._tail.half_life),
            )
        return fleet

    def fleet_partial(self, fleet_state: dict[str, Any]) -> Any:
        """This worker's agents' reports, moves, model counts and excursion peaks."""
        fleet: _Fleet | None = fleet_state.get(self.name)
        return None if fleet is None else fleet.partial()

    def fleet_absorb(self, fleet_state: dict[str, Any], partials: list[Any]) -> None:
        """The other workers' parts (see :class:`_Fleet`)."""
        self._fleet(fleet_state).absorb(partials)

    def fleet_restore(self, fleet_state: dict[str, Any], partial: Any) -> None:
        """This worker's own part from before a restart."""
        self._fleet(fleet_state).restore(partial)

    def _own_growth(self, agent: str, v: list[Any], fleet: _Fleet) -> int:
        """1 if the agent's growth since its excursion started is its own, -1 if its fleet
        grew too, 0 while that is not known."""
        m = v[_M]
        growth = v[_SUM] / m  # mean deviation of the excursion's calls
        sigma = 1.2533 * v[_DEV]  # robust standard deviation of one call
        shift = fleet.shift
        if shift.peers(agent) < 2:
            return 1  # no fleet to tell: judged on its own
        evidence = shift.evidence(agent, since=v[_XS], base=v[_FS], growth=growth)
        if (
            self.fast_path
            and evidence >= 0.0
            and growth - self._benign >= self.benign_z * sigma / math.sqrt(m)
        ):
            # more than a benign fleet-wide change brings, and the peers seen since do not
            # lean towards one (a rollout under way, on top of the agent's own swing: its
            # calls within a session grow too, and then the verdict decides)
            return 1
        return shift.decide(evidence)

    def _settling(self, state: dict[str, Any], shift: float, ts: float) -> bool:
        """Whether the agent's fleet shift moved by a step (``log(benign_factor) / 2``)
        within the last ``settle_s``, as the agent saw it at its calls.

        The agent keeps an anchor ``[shift, when anchored, when it last moved]``: a shift
        that has moved a step from the anchor is a step (and the new anchor); one that has
        not moved a step in ``settle_s`` is re-anchored, so a slow swing is never one.
        """
        anchor = state.get("a")
        if anchor is None:
            state["a"] = [round(shift, 3), int(ts), 0]
            return False
        if abs(shift - anchor[0]) >= 0.5 * self._benign:
            anchor[0], anchor[1], anchor[2] = round(shift, 3), int(ts), int(ts)
        elif ts - anchor[1] >= self.settle_s:
            anchor[0], anchor[1] = round(shift, 3), int(ts)
        return bool(ts - anchor[2] < self.settle_s)

    def _held_too_long(self, state: dict[str, Any], v: list[Any], ts: float) -> bool:
        """Whether the excursion in progress has waited for its verdict over ``settle_s``
        (0: never): a sparse agent's next call can come hours later, and its peers seen
        since would then judge calls that old."""
        hold = state.get("h")
        return hold is not None and hold[0] == v[_XS] and ts - hold[1] > self.settle_s

    def _pending(
        self,
        state: dict[str, Any],
        fleet: _Fleet,
        *,
        agent: str,
        model: str,
        price: float,
        ts: float,
    ) -> bool:
        """A call on a pricier model the agent does not use: ``True`` while it is pending
        (its price jump counts once the agent is known to be alone), ``False`` once the
        fleet is found moving too (the new price is then the agent's normal)."""
        v = state["v"]
        moves = fleet.moves
        moves.moved(agent, model, ts)
        if not v[_SINCE]:
            v[_SINCE], v[_SP], v[_ALONE], v[_PEND] = ts, v[_S], 0, 0
            state["p"] = [model, price]
        v[_PEND] += 1
        since = v[_SINCE]
        if (
            model in moves.adopted
            or moves.others_moved(agent, model, since)
            or moves.others_adopted(agent, model, since)
        ):
            # the fleet is moving too (even after a verdict of "alone", within the rollout
            # time): the new price is the agent's new normal
            moves.adopted[model] = ts
            self._end_pending(state, v, accept=True)
            state["m"][model] = [self.model_share, price]
            return False
        if not v[_ALONE] and (
            moves.peers(agent) < 2  # no fleet to tell a rollout by: judged on its own
            or moves.alone(agent, since=since, own_main=state.get("mm"), model=model)
        ):
            v[_ALONE] = 1
        return True

    def _end_pending(self, state: dict[str, Any], v: list[Any], *, accept: bool) -> None:
        """Close a pending move; a one-off's calls count towards the model's share."""
        pending = state.pop("p", None)
        if pending is not None and not accept:
            model, price = pending
            models: dict[str, list[float]] = state["m"]
            share = v[_PEND] * self._share_alpha
            entry = models.get(model)
            if entry is not None:
                entry[0] += share
            elif len(models) < _MAX_MODELS:
                models[model] = [share, price]
        v[_SINCE], v[_SP], v[_ALONE], v[_PEND] = 0.0, 0.0, 0, 0

    def _learn(
        self,
        event: ActionEvent,
        state: dict[str, Any],
        fleet: _Fleet,
        *,
        size: float,
        log_cost: float,
        x: float,
    ) -> None:
        """Fold an unflagged call into the baseline and the model shares."""
        v = state["v"]
        ts = event.ts_epoch
        n = v[_N] + 1
        v[_N] = n
        alpha = self._baseline_alpha(v, n, ts)
        v[_LAST] = ts
        shift = fleet.shift.value
        v[_MU] += alpha * (size - v[_MU])
        v[_PHI] += alpha * (shift - v[_PHI])
        v[_UCOST] += alpha * (log_cost - v[_UCOST])
        v[_DEV] += alpha * ((x if x >= 0.0 else -x) - v[_DEV])
        model = event.model
        warm = n > self.min_calls
        if model is not None and self.watch_prices:
            models: dict[str, list[float]] = state["m"]
            a = self._share_alpha
            if n * a < 1.0:
                a = 1.0 / n
            keep = 1.0 - a
            for shares in models.values():
                shares[0] *= keep
            price = log_cost - size
            entry = models.get(model)
            if entry is None:
                if len(models) >= _MAX_MODELS:
                    del models[min(models, key=lambda m: models[m][0])]
                entry = models[model] = [a, price]
            else:
                entry[0] += a
                entry[1] += 0.1 * (price - entry[1])
            main = state.get("mm")
            if model != main:
                other = models.get(main) if main is not None else None
                if other is None or entry[0] > other[0]:
                    state["mm"] = main = model
            if warm and model == main:
                fleet.moves.on_main(event.agent_id, model, ts)
            if n & 3 == 0:  # the fleet's model shares: every fourth call is plenty
                fleet.count(model)
        if warm:
            # the agent's estimate of how far its fleet has moved: its own recent change
            # (the last few calls) plus the shift its baseline already holds
            size_now = v[_MU] + x + (shift - v[_PHI])
            recent = state.get("r", size_now)
            recent += self._recent * (size_now - recent)
            state["r"] = recent
            fleet.shift.report(event.agent_id, recent - v[_MU] + v[_PHI], ts)

    def _baseline_alpha(self, v: list[Any], n: int, ts: float) -> float:
        """Weight of the ``n``-th learned call in the baseline: half-life ``half_life``
        calls, exact running means at first."""
        alpha = self._alpha
        return 1.0 / n if n * alpha < 1.0 else alpha

    def _calibrate(
        self, state: dict[str, Any], fleet: _Fleet, *, s: float, warm: bool, ts: float
    ) -> None:
        """Follow the CUSUM's excursion; learn its peak when it ends without an alarm."""
        v = state["v"]
        peak = v[_PEAK]
        if s > 0.0:
            if 0.0 <= peak < s:
                v[_PEAK] = s
        elif peak != 0.0:
            v[_PEAK] = 0.0
            if peak > 0.0 and warm:
                tail = self._tail
                tail.learn_state(state["t"], peak, ts)
                fleet.tail.learn(peak, ts)

    def _finding(
        self, event: ActionEvent, state: dict[str, Any], h: float, jump: float | None
    ) -> Finding:
        v, ids = state["v"], state["ids"]
        stat = v[_SP] if jump is not None else v[_S]
        usual = math.exp(min(v[_UCOST], _MAX_LOG))
        # the cost per call over the excursion: its calls' mean growth, and the price jump
        growth = v[_SUM] / v[_M] if v[_M] else 0.0
        ratio = math.exp(min(growth + (jump or 0.0), _MAX_LOG))
        recent = usual * ratio  # inf past the float range: published as its largest value
        if jump is not None:
            why = (
                f"it moved alone to {event.model} at {_times(math.exp(min(jump, _MAX_LOG)))}x "
                f"the price per token of its usual {state.get('mm')}"
            )
        else:
            what = f"model {event.model}" if event.model else f"action {event.action}"
            why = f"its calls on {what} grew on their own, not with fleet {event.fleet}"
        summary = (
            f"{event.agent_id} cost per call is {_times(ratio)}x its usual (${_usd(recent)} vs "
            f"${_usd(usual)}): {why}; CUSUM {stat:.2f} >= {h:.2f}, the threshold of its "
            f"false-alarm budget ({self.false_alarms_per_agent_day:g} per agent-day)"
        )
        calls = v[_CALLS]
        recent_ids = (ids[(calls - k) % _EVIDENCE] for k in range(1, _EVIDENCE + 1))
        return Finding(
            kind="cost_spike",
            score=stat,
            threshold=h,
            observed=recent,
            baseline=usual,
            summary=summary,
            evidence=tuple(item for item in recent_ids if item),
            actions=(event.action,),
        )


def _times(ratio: float) -> str:
    """A ratio as a summary shows it: one decimal, or three digits once it is huge."""
    return f"{ratio:.1f}" if ratio < 1e6 else f"{ratio:.3g}"


def _usd(amount: float) -> str:
    """Dollars as a summary shows them: four decimals, or three digits when that would show
    nothing or too much."""
    return f"{amount:.4f}" if 1e-4 <= amount < 1e9 or amount == 0.0 else f"{amount:.3g}"
