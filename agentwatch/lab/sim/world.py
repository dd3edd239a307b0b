"""World specs: a YAML file that fixes a simulated world, and its loader.

A world spec names its fleets (each derived from a built-in role: ``support``, ``coder``,
``analyst``, ``ops``) with the knobs real fleets differ in: agents per fleet, the events a
minute of each agent (a lognormal per fleet, clipped), the models its agents use (prices that
differ up to ~100x inside one fleet), the idle gaps between sessions, the diurnal swing; the
benign fleet-wide changes (``model_upgrade``, ``tool_rollout``, ``prompt_change``) and the
incidents, each kind with an ``intensity`` from 0 (subtle) to 1 (blatant) and its options::

    name: example
    seed: 7
    minutes: 240
    diurnal: {amplitude: 0.3, peak_hour: 15}
    fleets:
      - {name: support, agents: 40, rate_per_min: {median: 0.8, sigma: 0.9, min: 0.2, max: 6},
         idle_minutes: {median: 20, sigma: 1.0},
         models: {gemini-2.0-flash: 0.5, claude-sonnet-4: 0.5}}
    benign_changes:
      - {kind: prompt_change, fleet: support, at_minute: 120, input_factor: 2.0}
    incidents:
      - {kind: runaway_loop, count: 2, intensity: 0.2, llm_between: false, new_agent: true}
      - {kind: cost_drift, intensity: 0.5, ramp_minutes: 90}

The same file always gives the same events, byte for byte (the seed is in the file). A spec
with ``half: sealed`` belongs to the sealed half of the evaluation matrix: it loads only when
the caller says it may (``allow_sealed``), since looking at a sealed world's traffic or
results before the end breaks the seal. Every error names the file, the key and the reason.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agentwatch.lab.sim.catalog import FLEETS, FleetSpec
from agentwatch.lab.sim.config import (
    ALL_BENIGN_CHANGES,
    DEFAULT_START,
    ChangePlan,
    FleetPlan,
    IncidentPlan,
    SimConfig,
)
from agentwatch.lab.sim.incidents import INCIDENTS
from agentwatch.lab.sim.prices import MODEL_PRICES

__all__ = ["SealedWorldError", "World", "WorldError", "load_world", "parse_world"]


class WorldError(ValueError):
    """A world spec that cannot be used: ``"<file>: <key>: <reason>"``."""


class SealedWorldError(WorldError):
    """A sealed world asked for without leave to break the seal."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _known_model(name: str) -> str:
    if name not in MODEL_PRICES:
        raise ValueError(f"unknown model {name!r}; one of {', '.join(MODEL_PRICES)}")
    return name


class _Rate(_Strict):
    median: float = Field(gt=0.0, le=600.0)
    sigma: float = Field(default=0.5, ge=0.0, le=3.0)
    min: float = Field(default=0.05, gt=0.0)
    max: float = Field(default=120.0, gt=0.0, le=600.0)


class _Idle(_Strict):
    median: float = Field(gt=0.0, le=24 * 60.0)
    sigma: float = Field(default=0.5, ge=0.0, le=3.0)


class _Fleet(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")
    role: Literal["support", "coder", "analyst", "ops"] | None = None
    agents: int = Field(ge=1, le=5000)
    rate_per_min: _Rate | None = None
    idle_minutes: _Idle | None = None
    models: dict[str, float] | None = None
    secondary_model: str | None = None
    upgrade_model: str | None = None
    premium_model: str | None = None
    session_actions: float | None = Field(default=None, gt=1.0, le=1000.0)
    llm_share: tuple[float, float] | None = None

    @field_validator("models")
    @classmethod
    def _models(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is not None:
            if not value:
                raise ValueError("at least one model")
            for name, weight in value.items():
                _known_model(name)
                if not weight > 0:
                    raise ValueError(f"weight of {name} must be > 0")
        return value

    @field_validator("secondary_model", "upgrade_model", "premium_model")
    @classmethod
    def _model(cls, value: str | None) -> str | None:
        return None if value is None else _known_model(value)

    @field_validator("llm_share")
    @classmethod
    def _share(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not 0.0 <= value[0] <= value[1] <= 1.0:
            raise ValueError("must be [low, high] with 0 <= low <= high <= 1")
        return value


class _Diurnal(_Strict):
    amplitude: float = Field(default=0.2, ge=0.0, lt=1.0)
    peak_hour: float = Field(default=15.0, ge=0.0, lt=24.0)


class _Spec(_Strict):
    version: Literal[1] = 1
    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    description: str = ""
    half: Literal["tuning", "sealed", "example"] | None = None
    seed: int = Field(ge=0)
    start: datetime = DEFAULT_START
    minutes: float = Field(gt=0.0, le=14 * 24 * 60.0)
    warmup_minutes: float | None = Field(default=None, ge=0.0)
    error_bursts_per_hour: float = Field(default=2.0, ge=0.0, le=100.0)
    benign_unapproved_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    diurnal: _Diurnal = _Diurnal()
    factors: dict[str, str] = {}
    fleets: list[_Fleet] = Field(min_length=1)
    benign_changes: list[dict[str, Any]] = []
    incidents: list[dict[str, Any]] = []

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.utcoffset() is None:
            raise ValueError("must carry a UTC offset (end it with Z)")
        return value


class _Change(_Strict):
    rollout_minutes: float | None = Field(default=None, gt=0.0, le=1440.0)


class _ModelUpgrade(_Change):
    to_model: str | None = None
    map: dict[str, str] | None = None

    @field_validator("to_model")
    @classmethod
    def _to(cls, value: str | None) -> str | None:
        return None if value is None else _known_model(value)

    @field_validator("map")
    @classmethod
    def _map(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for a, b in (value or {}).items():
            _known_model(a)
            _known_model(b)
        return value


class _ToolRollout(_Change):
    share: float | None = Field(default=None, gt=0.0, lt=1.0)


class _PromptChange(_Change):
    input_factor: float = Field(default=2.0, gt=0.0, le=50.0)
    output_factor: float = Field(default=1.0, gt=0.0, le=50.0)


_CHANGE_OPTIONS: Mapping[str, type[_Change]] = {
    "model_upgrade": _ModelUpgrade,
    "tool_rollout": _ToolRollout,
    "prompt_change": _PromptChange,
}


@dataclass(frozen=True)
class World:
    """A loaded world spec.

    Attributes
    ----------
    path
        The spec file.
    name, seed, half
        From the spec (``half`` is ``tuning``, ``sealed``, ``example`` or ``None``).
    sha256
        SHA-256 of the file's bytes (what a sealed half's manifest records).
    factors
        The design levels the spec declares (``density: sparse``, ...), for reports.
    config
        The :class:`~agentwatch.lab.sim.config.SimConfig` it describes.
    """

    path: Path
    name: str
    seed: int
    half: str | None
    sha256: str
    description: str
    factors: Mapping[str, str]
    config: SimConfig

    @property
    def agent_hours(self) -> float:
        """Agents times simulated hours."""
        return self.config.agents * (self.config.minutes or 0.0) / 60.0


def load_world(path: str | Path, *, allow_sealed: bool = False) -> World:
    """Read and check a world spec file.

    Raises
    ------
    WorldError
        ``"<file>: <key>: <reason>"``; :class:`SealedWorldError` for a sealed spec without
        ``allow_sealed``.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WorldError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_world(data, path, allow_sealed=allow_sealed)


def parse_world(data: bytes, path: str | Path, *, allow_sealed: bool = False) -> World:
    """Check a world spec's bytes (``path`` names it in errors); see :func:`load_world`.

    Examples
    --------
    >>> w = parse_world(b"name: tiny\\nseed: 1\\nminutes: 30\\n"
    ...                 b"fleets: [{name: support, agents: 4}]\\n", "tiny.yml")
    >>> w.config.agents, w.config.minutes, w.agent_hours
    (4, 30.0, 2.0)
    >>> parse_world(b"name: x\\nseed: 1\\nminutes: 30\\nfleets: [{name: support, agents: 0}]",
    ...             "x.yml")
    Traceback (most recent call last):
    ...
    agentwatch.lab.sim.world.WorldError: x.yml: fleets[0].agents: Input should be greater than or equal to 1
    """  # noqa: E501
    where = str(path)
    try:
        raw = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise WorldError(f"{where}{line}: not YAML: {problem}") from None
    if not isinstance(raw, dict):
        raise WorldError(f"{where}: a world spec is a YAML mapping")
    try:
        spec = _Spec.model_validate(raw)
    except ValidationError as exc:
        raise WorldError(f"{where}: {_first_error(exc)}") from None
    if spec.half == "sealed" and not allow_sealed:
        raise SealedWorldError(
            f"{where}: half: sealed: this world is sealed; evaluate it only at the end, with "
            "--sealed (that breaks the seal)"
        )
    fleets = [_fleet(f, where, i) for i, f in enumerate(spec.fleets)]
    names = [f.spec.name for f in fleets]
    if len(set(names)) != len(names):
        raise WorldError(f"{where}: fleets: fleet names must be unique, got {names}")
    changes = [_change(c, where, i, names, spec.minutes) for i, c in enumerate(spec.benign_changes)]
    incidents = [_incident(c, where, i, names) for i, c in enumerate(spec.incidents)]
    try:
        config = SimConfig(
            agents=sum(f.agents for f in fleets),
            minutes=spec.minutes,
            seed=spec.seed,
            start=spec.start,
            incidents=(),
            benign_changes=(),
            warmup_minutes=spec.warmup_minutes,
            error_bursts_per_hour=spec.error_bursts_per_hour,
            diurnal_amplitude=spec.diurnal.amplitude,
            diurnal_peak_hour=spec.diurnal.peak_hour,
            benign_unapproved_rate=spec.benign_unapproved_rate,
            fleets=tuple(fleets),
            incident_plans=tuple(incidents),
            change_plans=tuple(changes),
        )
    except ValueError as exc:
        raise WorldError(f"{where}: incidents: {exc}") from None
    _check_room(config, where)
    return World(
        path=Path(path),
        name=spec.name,
        seed=spec.seed,
        half=spec.half,
        sha256=hashlib.sha256(data).hexdigest(),
        description=spec.description,
        factors=dict(spec.factors),
        config=config,
    )


def _first_error(exc: ValidationError, prefix: str = "") -> str:
    err = exc.errors(include_url=False)[0]
    key = prefix
    for part in err["loc"]:
        if isinstance(part, int):
            key += f"[{part}]"
        elif not re.match(r"^function-|^tagged-union", str(part)):
            key += f".{part}" if key else str(part)
    reason = str(err["msg"]).removeprefix("Value error, ")
    return f"{key or '(top)'}: {reason}"


def _fleet(entry: _Fleet, where: str, i: int) -> FleetPlan:
    role = entry.role or entry.name
    if role not in FLEETS:
        raise WorldError(
            f"{where}: fleets[{i}].role: needed when the name is not a role; one of "
            f"{', '.join(FLEETS)}"
        )
    base = FLEETS[role]
    changes: dict[str, Any] = {"name": entry.name, "role": role}
    if entry.rate_per_min is not None:
        rate = entry.rate_per_min
        if rate.min > rate.max:
            raise WorldError(f"{where}: fleets[{i}].rate_per_min: min must be <= max")
        changes |= {
            "rate_per_min": rate.median,
            "rate_sigma": rate.sigma,
            "rate_min": rate.min,
            "rate_max": rate.max,
        }
    if entry.idle_minutes is not None:
        changes["idle_minutes"] = (entry.idle_minutes.median, entry.idle_minutes.sigma)
    if entry.models is not None:
        changes["models"] = dict(entry.models)
    for key in ("secondary_model", "upgrade_model", "premium_model", "session_actions"):
        value = getattr(entry, key)
        if value is not None:
            changes[key] = value
    if entry.llm_share is not None:
        changes["llm_share"] = tuple(entry.llm_share)
    spec: FleetSpec = dataclasses.replace(base, **changes)
    return FleetPlan(spec=spec, agents=entry.agents)


def _common(
    entry: Mapping[str, Any], where: str, key: str, kinds: Sequence[str], fleets: Sequence[str]
) -> tuple[str, str | None]:
    kind = entry.get("kind")
    if kind not in kinds:
        raise WorldError(f"{where}: {key}.kind: must be one of {', '.join(kinds)}, got {kind!r}")
    fleet = entry.get("fleet")
    if fleet is not None and fleet not in fleets:
        raise WorldError(f"{where}: {key}.fleet: no fleet {fleet!r}; fleets: {', '.join(fleets)}")
    return str(kind), fleet


def _change(
    entry: Mapping[str, Any], where: str, i: int, fleets: Sequence[str], minutes: float
) -> ChangePlan:
    key = f"benign_changes[{i}]"
    if not isinstance(entry, Mapping):
        raise WorldError(f"{where}: {key}: a mapping with a kind")
    kind, fleet = _common(entry, where, key, ALL_BENIGN_CHANGES, fleets)
    at = entry.get("at_minute")
    if at is not None and (not isinstance(at, int | float) or not 0 <= at < minutes):
        raise WorldError(f"{where}: {key}.at_minute: must be a number in [0, {minutes:g})")
    rest = {k: v for k, v in entry.items() if k not in ("kind", "fleet", "at_minute")}
    try:
        opts = _CHANGE_OPTIONS[kind].model_validate(rest)
    except ValidationError as exc:
        raise WorldError(f"{where}: {_first_error(exc, key)}") from None
    return ChangePlan(
        kind=kind,
        fleet=fleet,
        at_minute=None if at is None else float(at),
        options=opts.model_dump(exclude_none=True),
    )


def _incident(entry: Mapping[str, Any], where: str, i: int, fleets: Sequence[str]) -> IncidentPlan:
    key = f"incidents[{i}]"
    if not isinstance(entry, Mapping):
        raise WorldError(f"{where}: {key}: a mapping with a kind")
    kind, fleet = _common(entry, where, key, list(INCIDENTS), fleets)
    count = entry.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise WorldError(f"{where}: {key}.count: must be an integer >= 0")
    intensity = entry.get("intensity", 0.5)
    if not isinstance(intensity, int | float) or not 0.0 <= intensity <= 1.0:
        raise WorldError(f"{where}: {key}.intensity: must be a number in [0, 1] (0 subtle)")
    rest = {k: v for k, v in entry.items() if k not in ("kind", "fleet", "count", "intensity")}
    try:
        opts = INCIDENTS[kind].Options.model_validate(rest)
    except ValidationError as exc:
        raise WorldError(f"{where}: {_first_error(exc, key)}") from None
    return IncidentPlan(
        kind=kind,
        count=count,
        intensity=float(intensity),
        fleet=fleet,
        options=opts.model_dump(exclude_none=True, exclude_defaults=True),
    )


def _check_room(config: SimConfig, where: str) -> None:
    """Incidents need agents without one: check per fleet before generating anything."""
    free = {f.spec.name: f.agents for f in config.fleets}
    for i, plan in enumerate(config.incident_plans):
        if plan.fleet is not None:
            free[plan.fleet] -= plan.count
            if free[plan.fleet] < 0:
                raise WorldError(
                    f"{where}: incidents[{i}].count: fleet {plan.fleet!r} has too few agents "
                    "for its incidents (one incident per agent)"
                )
    if sum(free.values()) < sum(p.count for p in config.incident_plans if p.fleet is None):
        raise WorldError(f"{where}: incidents: more incidents than agents (one per agent)")
