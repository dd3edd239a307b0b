"""The fleet simulator: realistic, seeded agent traffic with labelled incidents and benign changes.

The simulator is the test bed of agentwatch: the ``up --demo`` live demo, the benchmark and,
above all, the backtests that measure detector recall and precision all run on its output. It
therefore aims to look like a real fleet rather than like a textbook distribution:

* **Fleets** (roles: ``support``, ``coder``, ``analyst``, ``ops``) each have their own tool
  registry (risk level, latency distribution, error rate and error messages per tool), a
  Markov chain over tools (the action *sequence*, not only the mix), preferred LLM models and
  token profiles. Two fleet shapes are built in (:data:`FLEET_SHAPES`): ``mixed`` and
  ``large-support``; any mapping ``{fleet: share}`` works too.
* **Agents** differ from their peers: rate (lognormal around the fleet median), duty cycle,
  how often they call the LLM, model choice, token sizes, error proneness and a perturbed
  transition matrix. They work in **sessions** (a ``session_id`` each, geometric length, idle
  gaps between) whose context grows the LLM input tokens; targets are realistic and
  session-coherent (one ticket per support session, a few focus files per coding session).
* **Benign noise**: per-tool errors with retries, rare benign ``denied`` statuses, short
  **error bursts** (one tool failing for a minute or two for a few agents of a fleet, labelled
  ``error_burst``) and an optional diurnal rate swing.
* **Incidents** (:data:`ALL_INCIDENT_KINDS`, one class each in
  :mod:`agentwatch.lab.sim.incidents`) are injected into distinct random agents at
  random times after a warm-up: ``runaway_loop``, ``cost_explosion``, ``error_storm``,
  ``privilege_probing``, ``exfiltration``, ``mix_shift``, ``cost_drift`` and
  ``unapproved_high_risk``. They are sized to be realistic (a handful to a few dozen times the
  baseline, never a thousand) but plainly visible to a good detector.
* **Benign fleet-wide changes** (:data:`ALL_BENIGN_CHANGES`) that a detector must *not* page
  on: ``model_upgrade`` (a whole fleet moves to a pricier model), ``tool_rollout`` (a whole
  fleet gains a new tool) and ``prompt_change`` (a new prompt doubles every call's input).
* **Worlds** (:mod:`~agentwatch.lab.sim.world`): a YAML spec fixes fleets of 3 to thousands
  of agents, their event rates (0.2 to 30 a minute and more), models (prices 100x apart in
  one fleet), idle gaps, diurnal swing, benign changes at given times and incidents with an
  intensity from subtle to blatant (loops with or without LLM calls, in new agents; cost
  explosions by model switch or context growth; cost ramps over 30 minutes to 8 hours).

Modules: :mod:`~agentwatch.lab.sim.config` (what determines a run),
:mod:`~agentwatch.lab.sim.catalog` (fleets, tools, domains), :mod:`~agentwatch.lab.sim.prices`,
:mod:`~agentwatch.lab.sim.profiles` (agents), :mod:`~agentwatch.lab.sim.runner` (one agent at run
time), :mod:`~agentwatch.lab.sim.incidents`, :mod:`~agentwatch.lab.sim.changes` (benign noise),
:mod:`~agentwatch.lab.sim.simulation`, :mod:`~agentwatch.lab.sim.output` (files) and
:mod:`~agentwatch.lab.sim.kafka` (``produce``, the demo fleet). Labels are
:class:`agentwatch.lab.labels.Label`.

Everything is a pure function of :class:`SimConfig`: the same seed yields the same events
(byte for byte, event ids included) and the same labels; no global random state is touched.
Each agent draws from its own generator, so agents untouched by an incident produce the same
traffic whether or not incidents are injected.

Time model. Events are stamped in simulated event time starting at ``SimConfig.start``.
``minutes=None`` runs forever (the live demo): time is cut into epochs of ``epoch_minutes``
and every epoch gets a fresh round of the requested incidents (benign changes happen once, in
the first epoch); :meth:`Simulation.labels` then needs an ``until`` bound.
:func:`produce` paces events to Kafka and, when paced, rewrites ``ts`` onto the wall clock.

Examples
--------
>>> sim = Simulation(SimConfig(agents=12, minutes=20, seed=7))
>>> events = list(sim.events())
>>> len(events) > 500, all(a.ts <= b.ts for a, b in zip(events, events[1:]))
(True, True)
>>> sorted({label.kind for label in sim.labels() if not label.benign}) == sorted(
...     ALL_INCIDENT_KINDS)
True
>>> events[0].event_id == list(Simulation(SimConfig(agents=12, minutes=20, seed=7)).events())[
...     0].event_id
True
"""

from agentwatch.lab.labels import Label, load_labels
from agentwatch.lab.sim.catalog import (
    EXFIL_DOMAINS,
    FLEET_SHAPES,
    FLEETS,
    KNOWN_DOMAINS,
    FleetSpec,
    ToolSpec,
)
from agentwatch.lab.sim.config import (
    ALL_BENIGN_CHANGES,
    ALL_INCIDENT_KINDS,
    BENIGN_CHANGE_KINDS,
    DEFAULT_START,
    AgentProfile,
    ChangePlan,
    FleetPlan,
    IncidentPlan,
    IncidentSpec,
    SimConfig,
)
from agentwatch.lab.sim.incidents import INCIDENTS, Incident, incident_class
from agentwatch.lab.sim.kafka import demo_config, demo_task, produce
from agentwatch.lab.sim.output import parse_kinds, write_jsonl
from agentwatch.lab.sim.prices import MODEL_PRICES, llm_cost
from agentwatch.lab.sim.simulation import Simulation
from agentwatch.lab.sim.world import SealedWorldError, World, WorldError, load_world

__all__ = [
    "ALL_BENIGN_CHANGES",
    "ALL_INCIDENT_KINDS",
    "BENIGN_CHANGE_KINDS",
    "DEFAULT_START",
    "EXFIL_DOMAINS",
    "FLEETS",
    "FLEET_SHAPES",
    "INCIDENTS",
    "KNOWN_DOMAINS",
    "MODEL_PRICES",
    "AgentProfile",
    "ChangePlan",
    "FleetPlan",
    "FleetSpec",
    "Incident",
    "IncidentPlan",
    "IncidentSpec",
    "Label",
    "SealedWorldError",
    "SimConfig",
    "Simulation",
    "ToolSpec",
    "World",
    "WorldError",
    "demo_config",
    "demo_task",
    "incident_class",
    "llm_cost",
    "load_labels",
    "load_world",
    "parse_kinds",
    "produce",
    "write_jsonl",
]
