"""The incident base class and the registry of incident kinds, resolved by name."""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import UTC, datetime
from operator import itemgetter
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentwatch.lab.sim.config import IncidentSpec

if TYPE_CHECKING:
    from agentwatch.lab.sim.profiles import Profile
    from agentwatch.lab.sim.runner import AgentRunner

__all__ = [
    "INCIDENTS",
    "Incident",
    "IncidentOptions",
    "incident_class",
    "make_incident",
    "register_incident",
]

Injected = tuple[float, dict[str, Any]]


def utc(ts: float) -> datetime:
    """An aware UTC datetime from epoch seconds."""
    return datetime.fromtimestamp(ts, UTC)


class IncidentOptions(BaseModel):
    """Options every incident kind takes (a world spec's incident entry); kinds add theirs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    minutes: tuple[float, float] | None = Field(default=None)
    """Range of the incident's length in minutes (default: the kind's)."""

    @field_validator("minutes")
    @classmethod
    def _ordered(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not 0 < value[0] <= value[1]:
            raise ValueError("must be [low, high] with 0 < low <= high")
        return value


def lerp(lo: float, hi: float, intensity: float) -> float:
    """``lo`` at intensity 0 (subtle), ``hi`` at 1 (blatant).

    Examples
    --------
    >>> lerp(20.0, 60.0, 0.25)
    30.0
    """
    return lo + (hi - lo) * intensity


class Incident(ABC):
    """One injected incident in one agent: it plans its parameters, then shapes the traffic.

    A subclass per kind sets :attr:`kind` (its registry name) and implements :meth:`plan`,
    which chooses the incident's parameters (recorded in its label) and may pre-plan events
    to inject (:attr:`injected`). While the incident runs, the agent's runner asks it through
    the hooks below how to deviate from normal traffic; the defaults change nothing and draw
    nothing from the agent's generator.

    Parameters
    ----------
    agent_id, fleet
        The affected agent and its fleet.
    start_s, end_s
        The incident window in epoch seconds.
    incident_id
        The label id.
    intensity
        0 (subtle) to 1 (blatant), or ``None`` for the kind's classic parameter ranges.
    options
        The kind's options (validated by its :attr:`Options`).
    """

    kind: ClassVar[str]
    #: Range of the incident's length in minutes, drawn uniformly.
    durations_min: ClassVar[tuple[float, float]] = (5.0, 12.0)
    #: The incident replaces the agent's normal steps (:meth:`loop_step` runs instead).
    takes_over: ClassVar[bool] = False
    #: Failed tool calls are retried more eagerly (a storm, not a blip).
    storm: ClassVar[bool] = False
    #: Probability that an LLM call fails.
    llm_error_rate: ClassVar[float] = 0.004
    #: The options the kind takes.
    Options: ClassVar[type[IncidentOptions]] = IncidentOptions

    def __init__(
        self,
        agent_id: str,
        fleet: str,
        start_s: float,
        end_s: float,
        incident_id: str,
        *,
        intensity: float | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.fleet = fleet
        self.start_s = start_s
        self.end_s = end_s
        self.incident_id = incident_id
        self.intensity = intensity
        self.options = self.Options.model_validate(options or {})
        self.injected: list[Injected] = []
        self.spec = IncidentSpec(self.kind, agent_id, utc(start_s), utc(end_s), fleet, incident_id)

    @property
    def newborn(self) -> bool:
        """The agent does nothing before the incident (its first event is the incident's)."""
        return False

    # -- planning --------------------------------------------------------------------------
    @classmethod
    def window(
        cls,
        rng: random.Random,
        lo: float,
        hi: float,
        intensity: float | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> tuple[float, float]:
        """Draw ``(start, end)`` in ``[lo, hi]``: a duration from :attr:`durations_min`
        (or the ``minutes`` option)."""
        avail = hi - lo
        minutes = cls.Options.model_validate(options or {}).minutes
        dmin, dmax = minutes or cls.durations_min
        duration = max(min(rng.uniform(dmin, dmax) * 60.0, 0.6 * avail), min(60.0, avail))
        start = math.floor(rng.uniform(lo, max(lo, hi - duration)))
        return float(start), min(start + math.floor(duration), hi)

    @abstractmethod
    def plan(self, prof: Profile, rng: random.Random) -> dict[str, Any]:
        """Choose the incident's parameters for ``prof``'s agent; return them (JSON-able)."""

    def base_event(self) -> dict[str, Any]:
        """The fields every injected event of the incident carries."""
        return {"agent_id": self.agent_id, "fleet": self.fleet}

    # -- runtime hooks ---------------------------------------------------------------------
    def llm_share(self, base: float) -> float:
        """Probability that an LLM call precedes a tool call (the agent's is ``base``)."""
        return base

    def extra_llm_call(self, rng: random.Random) -> bool:
        """Whether a second LLM call follows the first in this step."""
        return False

    def llm_call(self, t: float, model: str) -> tuple[str, float, float]:
        """``(model, input factor, output factor)`` of an LLM call at ``t`` on ``model``."""
        return model, 1.0, 1.0

    def chain(self) -> list[list[float]] | None:
        """Cumulative transition rows replacing the agent's own, or ``None``."""
        return None

    def tool_error_rate(self, base: float) -> float:
        """Probability that a tool call fails (the agent's is ``base``)."""
        return base

    def loop_step(self, runner: AgentRunner) -> None:
        """One step of an incident that :attr:`takes_over` the agent."""
        raise NotImplementedError(f"{self.kind} does not take over the agent")


INCIDENTS: dict[str, type[Incident]] = {}
"""Every incident kind, by name."""


def register_incident(cls: type[Incident]) -> type[Incident]:
    """Class decorator: make an incident kind resolvable by its ``kind`` name."""
    INCIDENTS[cls.kind] = cls
    return cls


def incident_class(kind: str) -> type[Incident]:
    """The incident class registered as ``kind``.

    Examples
    --------
    >>> incident_class("error_storm").__name__
    'ErrorStorm'
    >>> incident_class("meltdown")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown incident kind 'meltdown'; one of ...
    """
    try:
        return INCIDENTS[kind]
    except KeyError:
        raise ValueError(f"unknown incident kind {kind!r}; one of {', '.join(INCIDENTS)}") from None


def make_incident(
    kind: str,
    prof: Profile,
    rng: random.Random,
    *,
    start: float,
    end: float,
    incident_id: str,
    intensity: float | None = None,
    options: Mapping[str, Any] | None = None,
) -> Incident:
    """Build an incident of ``kind`` in ``prof``'s agent over ``[start, end)`` and plan it."""
    inc = incident_class(kind)(
        prof.agent_id,
        prof.fleet.name,
        start,
        end,
        incident_id,
        intensity=intensity,
        options=options,
    )
    params = inc.plan(prof, rng)
    if intensity is not None:
        params["intensity"] = round(intensity, 3)
    inc.injected.sort(key=itemgetter(0))
    inc.spec = IncidentSpec(
        kind,
        prof.agent_id,
        utc(start),
        utc(end),
        prof.fleet.name,
        incident_id,
        params,
        intensity,
        inc.options.model_dump(exclude_none=True),
    )
    return inc
