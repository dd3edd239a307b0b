"""Extension points: river-style scorers, per-agent detectors, and their registries.

Two levels (see ``docs/detectors.md``):

* a :class:`Scorer` follows river's ``AnomalyDetector`` interface: ``learn_one(x)`` and
  ``score_one(x) -> float`` (higher = more anomalous) on any numeric stream;
* an :class:`AgentDetector` reads one agent's event, the agent's shared
  :class:`~agentwatch.detectors.baseline.AgentBaseline` (as it was *before* this event) and its
  own small per-agent and per-fleet state, and returns explained :class:`Finding` objects.

Detectors are instantiated once per rule with the rule's parameters (constructors only store
them) and shared by all agents; everything per agent lives in the JSON-able ``state`` dict the
engine hands in, so it can be written to the state table and replayed identically offline.
A detector must not learn from an observation it flagged.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.schemas import ActionEvent
from agentwatch.schemas._types import Severity

__all__ = [
    "DETECTORS",
    "SCORERS",
    "AgentDetector",
    "FeatureScorer",
    "Finding",
    "OneObjectFleet",
    "Params",
    "Scorer",
    "register_detector",
    "register_scorer",
]

JSON = Any  # a JSON-able value: dict/list/str/int/float/bool/None


@runtime_checkable
class Scorer(Protocol):
    """river's anomaly-detector interface; usable inside river pipelines."""

    def learn_one(self, x: dict[str, float]) -> None: ...

    def score_one(self, x: dict[str, float]) -> float: ...


@dataclass(frozen=True, slots=True)
class Finding:
    """One explained deviation found by a detector for one event.

    ``summary`` is one human sentence with the numbers (observed vs baseline, the feature
    that moved); ``evidence`` are event ids, most relevant first (at most 20).
    """

    kind: str
    score: float
    threshold: float
    observed: float
    baseline: float
    summary: str
    evidence: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()  # the actions involved (what a `revoke` response removes)
    severity: Severity | None = None  # a detector's suggestion; the rule's label wins


class Params:
    """Parameter plumbing shared by scorers and detectors.

    Subclasses store each constructor argument as a public attribute of the same name (and
    nothing else public), so :meth:`params` and :meth:`clone` round-trip.
    """

    def params(self) -> dict[str, Any]:
        """The constructor parameters."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def clone(self) -> Self:
        """A fresh, untrained instance with the same parameters."""
        return type(self)(**self.params())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


class FeatureScorer(Params):
    """A one-feature scorer: reads ``x[feature]``, or the first value when ``feature`` is None."""

    feature: str | None

    def _value(self, x: Mapping[str, float]) -> float:
        if self.feature is None:
            return float(next(iter(x.values())))
        return float(x[self.feature])


class AgentDetector(Params, ABC):
    """Base class of per-agent detectors.

    Subclasses set :attr:`name` (the registry key used by rules files), take their parameters
    as keyword arguments with defaults, store them, and implement :meth:`update`.
    """

    name: ClassVar[str]
    #: Whether :meth:`update` looks only at events with a cost (``cost_usd > 0``).
    needs_cost: ClassVar[bool] = False
    #: Event kinds :meth:`update` ignores; detectors that take an ``ignore_kinds``
    #: parameter store it here.
    ignore_kinds: Sequence[str] = ()

    @abstractmethod
    def update(
        self,
        event: ActionEvent,
        baseline: AgentBaseline,
        state: dict[str, JSON],
        fleet_state: dict[str, JSON],
    ) -> list[Finding]:
        """Score ``event``, then learn from it unless it was flagged.

        Parameters
        ----------
        event
            The agent's newest event (events arrive per agent in event-time order).
        baseline
            The agent's shared baseline *before* ``event`` (the engine updates it after all
            detectors ran). Read it, never mutate it.
        state
            This detector's per-agent state (starts empty; JSON-able; keep it under ~1 KB).
        fleet_state
            This detector's state for the agent's fleet, shared by the fleet's agents. It is
            held in memory (any Python objects). On several workers each sees the fleet
            agents of its own partitions; a detector that implements :meth:`fleet_partial`
            and :meth:`fleet_absorb` shares it (see ``docs/detectors.md``, "Fleet state
            across workers"), one that does not keeps it to its own worker.
        """

    def fleet_partial(self, fleet_state: dict[str, JSON]) -> JSON | None:
        """What this worker's own agents contributed to ``fleet_state``, JSON-able.

        Published to the other workers every exchange interval; ``None`` (the default)
        when the detector keeps no shareable fleet state, or has none yet.
        """
        return None

    def fleet_absorb(self, fleet_state: dict[str, JSON], partials: list[JSON]) -> None:
        """Replace the other workers' part of ``fleet_state`` by the merge of ``partials``
        (their :meth:`fleet_partial` outputs, newest per worker). The default does nothing."""

    def fleet_restore(self, fleet_state: dict[str, JSON], partial: JSON) -> None:
        """Start this worker's own part of ``fleet_state`` from ``partial``, the
        :meth:`fleet_partial` it published before a restart. The default does nothing."""

    def prepare(self) -> None:
        """Load what the first :meth:`update` would otherwise load (heavy imports).

        The engine calls it once, when it builds the detector, so that the first event
        that needs it does not stall the stream. The default does nothing.
        """

    def skips(self, kind: str, costed: bool) -> bool:
        """Whether events of ``kind``, with a cost or without, are none of its business.

        ``True`` promises that :meth:`update` returns no finding for such events and changes
        no state, so the engine does not call it for them. The default skips the kinds in
        :attr:`ignore_kinds` and, when :attr:`needs_cost` is set, events without a cost.
        """
        return (self.needs_cost and not costed) or kind in self.ignore_kinds


class OneObjectFleet(AgentDetector):
    """A detector whose fleet state is one object under :attr:`fleet_key`, which shares
    itself across workers with ``partial()``, ``absorb(partials)`` and ``restore(partial)``.

    Subclasses name the key and build an empty object (:meth:`new_fleet`); the three
    ``fleet_*`` methods are then written once, here.
    """

    fleet_key: ClassVar[str]

    def new_fleet(self) -> Any:
        """An empty fleet object (its class has ``partial``, ``absorb``, ``restore``)."""
        raise NotImplementedError

    def fleet_object(self, fleet_state: dict[str, JSON]) -> Any:
        """The fleet object in ``fleet_state``, made on first use."""
        fleet = fleet_state.get(self.fleet_key)
        if fleet is None:
            fleet = fleet_state[self.fleet_key] = self.new_fleet()
        return fleet

    def fleet_partial(self, fleet_state: dict[str, JSON]) -> JSON | None:
        """This worker's own agents' part of the fleet object (``None`` before any)."""
        fleet = fleet_state.get(self.fleet_key)
        return None if fleet is None else fleet.partial()

    def fleet_absorb(self, fleet_state: dict[str, JSON], partials: list[JSON]) -> None:
        """The other workers' part: counts summed, agents and keys united."""
        self.fleet_object(fleet_state).absorb(partials)

    def fleet_restore(self, fleet_state: dict[str, JSON], partial: JSON) -> None:
        """This worker's own part from before a restart."""
        self.fleet_object(fleet_state).restore(partial)


DETECTORS: dict[str, type[AgentDetector]] = {}
SCORERS: dict[str, type[Any]] = {}


def register_detector(cls: type[AgentDetector]) -> type[AgentDetector]:
    """Class decorator: make a detector resolvable by its ``name`` in rules files."""
    DETECTORS[cls.name] = cls
    return cls


def register_scorer(name: str) -> Any:
    """Class decorator: register a scorer class under ``name`` (conformance suite, rules)."""

    def wrap(cls: type[Any]) -> type[Any]:
        SCORERS[name] = cls
        return cls

    return wrap
