"""What determines a simulation: :class:`SimConfig`, incident and change kinds, incident specs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from agentwatch.lab.sim.catalog import FLEET_SHAPES, FLEETS, FleetSpec

__all__ = [
    "ALL_BENIGN_CHANGES",
    "ALL_INCIDENT_KINDS",
    "BENIGN_CHANGE_KINDS",
    "DEFAULT_START",
    "AgentProfile",
    "ChangePlan",
    "FleetPlan",
    "IncidentPlan",
    "IncidentSpec",
    "SimConfig",
]

DEFAULT_START: Final = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
"""Default simulated start: a Monday, 09:00 UTC."""

ALL_INCIDENT_KINDS: Final[tuple[str, ...]] = (
    "runaway_loop",
    "cost_explosion",
    "error_storm",
    "privilege_probing",
    "exfiltration",
    "mix_shift",
    "cost_drift",
    "unapproved_high_risk",
)
ALL_BENIGN_CHANGES: Final[tuple[str, ...]] = ("model_upgrade", "tool_rollout", "prompt_change")
"""Every benign fleet-wide change kind (a ``prompt_change`` doubles input tokens)."""
BENIGN_CHANGE_KINDS: Final[tuple[str, ...]] = ("model_upgrade", "tool_rollout")
"""The benign changes a :class:`SimConfig` makes by default."""


@dataclass(frozen=True)
class IncidentSpec:
    """An incident to inject (or one that was injected): ``kind`` in ``agent_id`` over
    ``[start, end)``.

    ``fleet`` and ``incident_id`` are filled in by the simulation when left empty;
    ``params`` records the incident's parameters (which action loops, which model, ...).

    Examples
    --------
    >>> from datetime import timedelta
    >>> from agentwatch.lab.sim import Simulation
    >>> spec = IncidentSpec("runaway_loop", "support-000", DEFAULT_START + timedelta(minutes=20),
    ...                     DEFAULT_START + timedelta(minutes=25))
    >>> sim = Simulation(SimConfig(agents=8, minutes=30, incidents=(), explicit_incidents=(spec,),
    ...                            benign_changes=(), error_bursts_per_hour=0))
    >>> [(s.kind, s.agent_id, s.fleet) for s in sim.incidents()]
    [('runaway_loop', 'support-000', 'support')]
    """

    kind: str
    agent_id: str
    start: datetime
    end: datetime
    fleet: str = ""
    incident_id: str = ""
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)
    intensity: float | None = None
    """0 (subtle) to 1 (blatant); ``None`` keeps the kind's classic parameter ranges."""
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)
    """Kind-specific options (the incident class's ``Options``)."""


@dataclass(frozen=True)
class FleetPlan:
    """``agents`` agents of fleet ``spec`` (a world's fleet, derived from a built-in role)."""

    spec: FleetSpec
    agents: int


@dataclass(frozen=True)
class IncidentPlan:
    """``count`` incidents of ``kind``, each in a different random agent (of ``fleet`` if set).

    ``intensity`` runs from 0 (subtle) to 1 (blatant); ``options`` are the kind's options
    (see each incident class's ``Options``).
    """

    kind: str
    count: int = 1
    intensity: float = 0.5
    fleet: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class ChangePlan:
    """A benign fleet-wide change of ``kind`` in ``fleet`` (random if ``None``) at
    ``at_minute`` (random in the first half after the warm-up if ``None``).

    Options: ``model_upgrade``: ``to_model`` (default the fleet's ``upgrade_model``) or
    ``map`` (``{from: to}``, other models stay); ``tool_rollout``: ``share`` of calls to the
    new tool (default 0.10-0.18); ``prompt_change``: ``input_factor`` (default 2.0) and
    ``output_factor`` (default 1.0) on every LLM call's tokens. Any kind: ``rollout_minutes``
    (default 2), the time within which the change reaches every agent of the fleet.
    """

    kind: str
    fleet: str | None = None
    at_minute: float | None = None
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class SimConfig:
    """Everything that determines a simulation; equal configs give identical output.

    Parameters
    ----------
    agents
        Number of agents, split over fleets by ``shape``.
    minutes
        Simulated duration; ``None`` runs forever (live demo), with one round of incidents
        every ``epoch_minutes``.
    seed
        Seed of every random choice.
    start
        Simulated start time (UTC).
    incidents
        Incident kinds to inject, each ``incidents_per_kind`` times (a kind may also be
        repeated), each into a different random agent at a random time after the warm-up.
    incidents_per_kind
        How many incidents of each listed kind (per epoch).
    explicit_incidents
        Incidents at fixed agents and times, on top of the random ones.
    benign_changes
        Fleet-wide benign changes to make (``model_upgrade``, ``tool_rollout``), each in a
        random fleet (different fleets when possible), once.
    shape
        The fleet mix: a name from :data:`FLEET_SHAPES` (``mixed``, ``large-support``) or a
        mapping ``{fleet: share}`` over :data:`FLEETS`.
    warmup_minutes
        Quiet period before the first incident or change so baselines can form; default a
        quarter of the run (of an epoch), at most 30 minutes.
    epoch_minutes
        Length of an incident round when ``minutes`` is ``None``.
    error_bursts_per_hour
        Mean number of benign error bursts (a tool failing for a minute or two for a few
        agents of one fleet) per simulated hour.
    diurnal_amplitude
        Relative day/night swing of every agent's rate (peak at 15:00 UTC); 0 disables it.
    benign_unapproved_rate
        Fraction of normal high/critical calls that lack ``approved_by`` (unlabelled noise;
        0 makes every unapproved high-risk call an incident).
    id_prefix
        Prepended to every ``event_id`` (keeps ids unique across repeated live runs).
    fleets
        The world's fleets and their sizes; when given, ``agents`` must be their total and
        ``shape`` is not used.
    incident_plans
        Incidents with an intensity and options (a world spec's), on top of ``incidents``.
    change_plans
        Benign fleet-wide changes at given fleets and times, on top of ``benign_changes``.
    diurnal_peak_hour
        UTC hour of the diurnal peak.
    """

    agents: int = 50
    minutes: float | None = 60.0
    seed: int = 0
    start: datetime = DEFAULT_START
    incidents: Sequence[str] = ALL_INCIDENT_KINDS
    incidents_per_kind: int = 1
    explicit_incidents: Sequence[IncidentSpec] = ()
    benign_changes: Sequence[str] = BENIGN_CHANGE_KINDS
    shape: str | Mapping[str, float] = "mixed"
    warmup_minutes: float | None = None
    epoch_minutes: float = 60.0
    error_bursts_per_hour: float = 2.0
    diurnal_amplitude: float = 0.2
    benign_unapproved_rate: float = 0.0
    id_prefix: str = ""
    fleets: Sequence[FleetPlan] = ()
    incident_plans: Sequence[IncidentPlan] = ()
    change_plans: Sequence[ChangePlan] = ()
    diurnal_peak_hour: float = 15.0

    def __post_init__(self) -> None:
        if self.agents < 1:
            raise ValueError(f"agents must be >= 1, got {self.agents}")
        if self.minutes is not None and not self.minutes > 0:
            raise ValueError(f"minutes must be > 0 or None, got {self.minutes}")
        if not self.epoch_minutes > 0:
            raise ValueError(f"epoch_minutes must be > 0, got {self.epoch_minutes}")
        if self.start.utcoffset() is None:
            raise ValueError("start must be timezone-aware (UTC)")
        if self.incidents_per_kind < 0:
            raise ValueError("incidents_per_kind must be >= 0")
        kinds = (
            *self.incidents,
            *(s.kind for s in self.explicit_incidents),
            *(p.kind for p in self.incident_plans),
        )
        for kind in kinds:
            if kind not in ALL_INCIDENT_KINDS:
                raise ValueError(f"unknown incident kind {kind!r}; one of {ALL_INCIDENT_KINDS}")
        for kind in (*self.benign_changes, *(c.kind for c in self.change_plans)):
            if kind not in ALL_BENIGN_CHANGES:
                raise ValueError(f"unknown benign change {kind!r}; one of {ALL_BENIGN_CHANGES}")
        if self.fleets:
            self._check_fleets()
        else:
            shares = self.fleet_shares()
            unknown = sorted(set(shares) - set(FLEETS))
            if (
                unknown
                or not shares
                or any(v < 0 for v in shares.values())
                or not any(v > 0 for v in shares.values())
            ):
                raise ValueError(f"bad shape {self.shape!r}: shares over {sorted(FLEETS)}")
        for plan in self.incident_plans:
            if plan.count < 0 or not 0.0 <= plan.intensity <= 1.0:
                raise ValueError(f"{plan.kind}: count >= 0 and intensity in [0, 1]")
        count = len(self.incidents) * self.incidents_per_kind
        count += sum(p.count for p in self.incident_plans)
        if count > self.agents:
            raise ValueError(f"{count} incidents need at least as many agents, got {self.agents}")
        if self.warmup_minutes is not None and self.warmup_minutes < 0:
            raise ValueError("warmup_minutes must be >= 0")
        if not 0 <= self.benign_unapproved_rate <= 1 or not 0 <= self.diurnal_amplitude < 1:
            raise ValueError("benign_unapproved_rate in [0, 1], diurnal_amplitude in [0, 1)")
        if self.error_bursts_per_hour < 0:
            raise ValueError("error_bursts_per_hour must be >= 0")
        if not 0.0 <= self.diurnal_peak_hour < 24.0:
            raise ValueError("diurnal_peak_hour must be in [0, 24)")

    def _check_fleets(self) -> None:
        names = [f.spec.name for f in self.fleets]
        if len(set(names)) != len(names):
            raise ValueError(f"fleet names must be unique, got {names}")
        if any(f.agents < 1 for f in self.fleets):
            raise ValueError("every fleet needs at least one agent")
        if sum(f.agents for f in self.fleets) != self.agents:
            raise ValueError(f"agents ({self.agents}) must be the fleets' total")
        if any(f.spec.role not in FLEETS for f in self.fleets):
            raise ValueError(f"a fleet's role must be one of {sorted(FLEETS)}")
        known = set(names)
        wanted = [(p.kind, p.fleet) for p in self.incident_plans]
        wanted += [(c.kind, c.fleet) for c in self.change_plans]
        for kind, fleet in wanted:
            if fleet is not None and fleet not in known:
                raise ValueError(f"{kind}: unknown fleet {fleet!r}")

    def fleet_shares(self) -> Mapping[str, float]:
        """The fleet mix as ``{fleet: share}``."""
        if isinstance(self.shape, str):
            if self.shape not in FLEET_SHAPES:
                raise ValueError(f"unknown fleet shape {self.shape!r}; one of {list(FLEET_SHAPES)}")
            return FLEET_SHAPES[self.shape]
        return self.shape


@dataclass(frozen=True)
class AgentProfile:
    """The static traits of one simulated agent (see :meth:`~agentwatch.lab.sim.Simulation.agents`).

    ``rate_per_min`` is the agent's target events per minute (LLM calls included; latency,
    sessions and the diurnal swing move the realised rate around it), ``llm_share`` the
    probability that an LLM call precedes a tool call, ``session_actions`` the mean tool calls
    per session and ``error_multiplier`` its error proneness relative to the fleet.
    """

    agent_id: str
    fleet: str
    rate_per_min: float
    model: str
    llm_share: float
    session_actions: float
    error_multiplier: float
