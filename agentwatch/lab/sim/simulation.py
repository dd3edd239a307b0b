"""The simulation: plans incidents and changes epoch by epoch, merges the agents' events."""

from __future__ import annotations

import dataclasses
import gc
import itertools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, Final

from agentwatch.lab.labels import Label
from agentwatch.lab.sim.catalog import FLEETS
from agentwatch.lab.sim.changes import (
    Burst,
    Change,
    plan_bursts,
    plan_change_plans,
    plan_changes,
)
from agentwatch.lab.sim.config import AgentProfile, IncidentSpec, SimConfig
from agentwatch.lab.sim.draws import seeded
from agentwatch.lab.sim.events import construct, validated
from agentwatch.lab.sim.incidents import Incident, incident_class, make_incident
from agentwatch.lab.sim.profiles import Profile
from agentwatch.lab.sim.runner import AgentRunner, Record
from agentwatch.schemas.events import ActionEvent

__all__ = ["Simulation"]

_WINDOW_S: Final = 30.0  # generation window: events are merged and sorted window by window


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


@dataclass(slots=True)
class _Epoch:
    index: int
    incidents: list[Incident]
    bursts: list[Burst]
    changes: list[Change]


class Simulation:
    """A seeded simulated fleet; iterate :meth:`events`, read :meth:`labels`.

    The constructor only stores the configuration. Every call of :meth:`events` regenerates
    the stream from scratch, identically.

    Parameters
    ----------
    config
        The configuration; keyword ``overrides`` replace its fields
        (``Simulation(agents=10, minutes=5)`` works too).

    Examples
    --------
    >>> sim = Simulation(agents=6, minutes=10, seed=1, incidents=("runaway_loop",))
    >>> [a.fleet for a in sim.agents()]
    ['support', 'support', 'coder', 'coder', 'analyst', 'ops']
    >>> sorted({(label.kind, label.benign) for label in sim.labels()})[:3]
    [('error_burst', True), ('model_upgrade', True), ('runaway_loop', False)]
    """

    def __init__(self, config: SimConfig | None = None, **overrides: Any) -> None:
        base = config or SimConfig()
        if overrides:
            base = dataclasses.replace(base, **overrides)
        self.config = base
        self._profiles: list[Profile] | None = None
        self._epochs: dict[int, _Epoch] = {}

    # -- planning ------------------------------------------------------------------------
    @property
    def _t0(self) -> float:
        return self.config.start.timestamp()

    @property
    def _epoch_s(self) -> float:
        cfg = self.config
        return (cfg.minutes if cfg.minutes is not None else cfg.epoch_minutes) * 60.0

    @property
    def _end(self) -> float:
        cfg = self.config
        return math.inf if cfg.minutes is None else self._t0 + cfg.minutes * 60.0

    def _profiles_list(self) -> list[Profile]:
        if self._profiles is None:
            cfg = self.config
            if cfg.fleets:
                plan = [(f.spec, f.agents) for f in cfg.fleets]
            else:
                shares = {k: v for k, v in cfg.fleet_shares().items() if v > 0}
                counts = _apportion(cfg.agents, shares)
                plan = [(FLEETS[name], counts.get(name, 0)) for name in FLEETS]
            profiles: list[Profile] = []
            for spec, agents in plan:
                for j in range(agents):
                    agent_id = f"{spec.name}-{j:03d}"
                    profiles.append(Profile(cfg.seed, len(profiles), agent_id, spec))
            self._profiles = profiles
        return self._profiles

    def agents(self) -> list[AgentProfile]:
        """The simulated agents and their static traits, in a stable order."""
        return [p.public() for p in self._profiles_list()]

    def _epoch(self, k: int) -> _Epoch:
        if k not in self._epochs:
            self._epochs[k] = self._plan_epoch(k)
        return self._epochs[k]

    def _plan_epoch(self, k: int) -> _Epoch:
        cfg = self.config
        profiles = self._profiles_list()
        by_id = {p.agent_id: p for p in profiles}
        e0 = self._t0 + k * self._epoch_s
        e1 = e0 + self._epoch_s
        if k == 0:
            warm = (
                cfg.warmup_minutes * 60.0
                if cfg.warmup_minutes is not None
                else min(0.25 * self._epoch_s, 1800.0)
            )
        else:
            warm = 0.05 * self._epoch_s
        lo = min(e0 + warm, e0 + 0.9 * self._epoch_s)
        rng = seeded(cfg.seed, "plan", k)

        incidents: list[Incident] = []
        kinds = [kind for kind in cfg.incidents for _ in range(cfg.incidents_per_kind)]
        chosen = rng.sample(range(len(profiles)), len(kinds))
        for i, (kind, a) in enumerate(zip(kinds, chosen, strict=True)):
            irng = seeded(cfg.seed, "incident", k, i)
            start, end = incident_class(kind).window(irng, lo, e1)
            incidents.append(
                make_incident(
                    kind, profiles[a], irng, start=start, end=end, incident_id=f"inc-{k}-{i:02d}"
                )
            )
        if k == 0:
            for i, spec in enumerate(cfg.explicit_incidents):
                if spec.agent_id not in by_id:
                    raise ValueError(f"explicit incident for unknown agent {spec.agent_id!r}")
                irng = seeded(cfg.seed, "explicit", i)
                incidents.append(
                    make_incident(
                        spec.kind,
                        by_id[spec.agent_id],
                        irng,
                        start=spec.start.timestamp(),
                        end=spec.end.timestamp(),
                        incident_id=spec.incident_id or f"inc-x-{i:02d}",
                        intensity=spec.intensity,
                        options=spec.options,
                    )
                )
            incidents += self._planned_incidents(profiles, {i.agent_id for i in incidents}, lo, e1)

        fleets_present = list(dict.fromkeys(p.fleet.name for p in profiles))
        specs = {p.fleet.name: p.fleet for p in profiles}
        bursts = plan_bursts(
            cfg.seed,
            k,
            e0=e0,
            e1=e1,
            profiles=profiles,
            fleets_present=fleets_present,
            per_hour=cfg.error_bursts_per_hour,
            epoch_s=self._epoch_s,
        )
        changes: list[Change] = []
        if k == 0 and cfg.benign_changes:
            changes = plan_changes(
                cfg.seed, cfg.benign_changes, lo=lo, hi=e1, profiles=profiles, fleets=specs
            )
        if k == 0 and cfg.change_plans:
            changes += plan_change_plans(
                cfg.seed,
                cfg.change_plans,
                t0=self._t0,
                lo=lo,
                hi=e1,
                profiles=profiles,
                fleets=specs,
            )
        return _Epoch(k, incidents, bursts, changes)

    def _planned_incidents(
        self, profiles: list[Profile], taken: set[str], lo: float, hi: float
    ) -> list[Incident]:
        """The incidents of :attr:`SimConfig.incident_plans`, each in a different agent."""
        cfg = self.config
        rng = seeded(cfg.seed, "incident-plans")
        out: list[Incident] = []
        for i, plan in enumerate(cfg.incident_plans):
            pool = [
                p
                for p in profiles
                if p.agent_id not in taken and plan.fleet in (None, p.fleet.name)
            ]
            if len(pool) < plan.count:
                where = f"fleet {plan.fleet!r}" if plan.fleet else "the world"
                raise ValueError(
                    f"{plan.count} {plan.kind} incidents need as many agents without an "
                    f"incident in {where}; {len(pool)} left"
                )
            for j, prof in enumerate(rng.sample(pool, plan.count)):
                taken.add(prof.agent_id)
                irng = seeded(cfg.seed, "incident-plan", i, j)
                start, end = incident_class(plan.kind).window(
                    irng, lo, hi, plan.intensity, plan.options
                )
                out.append(
                    make_incident(
                        plan.kind,
                        prof,
                        irng,
                        start=start,
                        end=end,
                        incident_id=f"inc-p{i:02d}-{j:02d}",
                        intensity=plan.intensity,
                        options=plan.options,
                    )
                )
        return out

    def _epochs_until(self, until: float) -> Iterator[_Epoch]:
        k = 0
        while self._t0 + k * self._epoch_s < min(until, self._end):
            yield self._epoch(k)
            k += 1

    # -- outputs -------------------------------------------------------------------------
    def incidents(self, until: datetime | None = None) -> list[IncidentSpec]:
        """The injected incidents (random and explicit), by start time.

        ``until`` bounds an endless (``minutes=None``) simulation; it is required there.
        """
        limit = self._limit(until)
        out = [inc.spec for ep in self._epochs_until(limit) for inc in ep.incidents]
        return sorted(
            (s for s in out if s.start.timestamp() < limit), key=lambda s: (s.start, s.incident_id)
        )

    def _limit(self, until: datetime | None) -> float:
        if until is None:
            if self.config.minutes is None:
                raise ValueError("an endless simulation (minutes=None) needs `until`")
            return self._end
        return until.timestamp()

    def labels(self, until: datetime | None = None) -> list[Label]:
        """One :class:`~agentwatch.lab.labels.Label` per injected incident, benign change and
        benign error burst (one per affected agent), sorted by start time.

        ``until`` bounds an endless simulation and is required there.
        """
        limit = self._limit(until)
        labels: list[Label] = []
        for ep in self._epochs_until(limit):
            for inc in ep.incidents:
                spec = inc.spec
                labels.append(
                    Label(
                        id=spec.incident_id,
                        kind=spec.kind,
                        agent_id=spec.agent_id,
                        fleet=spec.fleet,
                        start=spec.start,
                        end=spec.end,
                        benign=False,
                        params=dict(spec.params),
                    )
                )
            for ch in ep.changes:
                labels.append(
                    Label(
                        id=ch.change_id,
                        kind=ch.kind,
                        agent_id=None,
                        fleet=ch.fleet,
                        start=_utc(ch.start_s),
                        end=_utc(ch.end_s),
                        benign=True,
                        params=dict(ch.detail),
                    )
                )
            for b in ep.bursts:
                for agent_id in b.agents:
                    labels.append(
                        Label(
                            id=b.burst_id,
                            kind="error_burst",
                            agent_id=agent_id,
                            fleet=b.fleet,
                            start=_utc(b.start_s),
                            end=_utc(b.end_s),
                            benign=True,
                            params={"tool": b.tool, "error_rate": round(b.error_rate, 3)},
                        )
                    )
        cut = min(limit, self._end)
        labels = [lab for lab in labels if lab.start_s < cut]
        labels.sort(key=lambda lab: (lab.start, lab.id, lab.agent_id or ""))
        return labels

    def event_list(self, *, validate: bool = False, limit: int | None = None) -> list[ActionEvent]:
        """All events (or the first ``limit``) as a list, for benchmarks and backtests.

        Built with the cyclic garbage collector paused: the events hold no reference cycles,
        and hundreds of thousands of new objects would otherwise trigger repeated full
        collections (they halve the throughput). ``validate`` as in :meth:`events`.

        Examples
        --------
        >>> len(Simulation(agents=3, minutes=2, incidents=()).event_list(limit=10))
        10
        """
        if self.config.minutes is None and limit is None:
            raise ValueError("an endless simulation (minutes=None) needs `limit`")
        enabled = gc.isenabled()
        gc.disable()
        try:
            return list(itertools.islice(self.events(validate=validate), limit))
        finally:
            if enabled:
                gc.enable()

    def events(self, *, validate: bool = True) -> Iterator[ActionEvent]:
        """All events in event-time order (endless when ``minutes`` is ``None``).

        Event ids are ``f"{id_prefix}{agent_id}-{n}"`` with ``n`` counting each agent's
        events from 0 in time order.

        Parameters
        ----------
        validate
            Build each event through pydantic validation (the default). ``False`` builds the
            very same models (equal, byte-identical on the wire) without re-validating the
            generator's own output, about twice as fast; :func:`~agentwatch.lab.sim.write_jsonl`,
            :func:`~agentwatch.lab.sim.produce` and benchmarks use it.
        """
        cfg = self.config
        profiles = self._profiles_list()
        t0 = self._t0
        end = self._end
        runners = [AgentRunner(p, cfg.seed, t0, cfg) for p in profiles]
        by_id = {r.agent_id: r for r in runners}
        counters = [0] * len(runners)
        prefix = cfg.id_prefix
        ids = [f"{prefix}{r.agent_id}-" for r in runners]
        key = itemgetter(0, 1)
        fromtimestamp = datetime.fromtimestamp
        build = validated if validate else construct
        planned = 0
        t = t0
        while t < end:
            w1 = min(t + _WINDOW_S, end)
            # Plan one epoch ahead so idle agents wake up for incidents that start soon.
            while t0 + planned * self._epoch_s < min(w1 + self._epoch_s, end):
                ep = self._epoch(planned)
                for ch in ep.changes:
                    for agent_id in ch.per_agent:
                        by_id[agent_id].apply_change(ch)
                for inc in ep.incidents:
                    by_id[inc.agent_id].add_incident(inc)
                for b in ep.bursts:
                    for agent_id in b.agents:
                        by_id[agent_id].add_burst(b)
                planned += 1
            records: list[Record] = []
            for r in runners:
                r.advance(w1, records)
            records.sort(key=key)
            for ts, idx, kw in records:
                n = counters[idx]
                counters[idx] = n + 1
                kw["event_id"] = ids[idx] + str(n)
                kw["ts"] = fromtimestamp(ts, UTC)
                yield build(kw)
            t = w1


def _apportion(total: int, shares: Mapping[str, float]) -> dict[str, int]:
    """Largest-remainder split of ``total`` agents; every fleet gets one when possible."""
    names = [n for n in FLEETS if n in shares]
    weight = sum(shares[n] for n in names)
    raw = {n: total * shares[n] / weight for n in names}
    counts = {n: int(raw[n]) for n in names}
    if total >= len(names):
        for n in names:
            counts[n] = max(counts[n], 1)
    while sum(counts.values()) > total:
        n = max(names, key=lambda m: (counts[m] - raw[m], counts[m]))
        counts[n] -= 1
    for n in sorted(names, key=lambda m: (counts[m] - raw[m], names.index(m))):
        if sum(counts.values()) >= total:
            break
        counts[n] += 1
    return counts
