"""Incident kinds: one class per kind, registered by name (as detectors are).

Importing this package registers every built-in kind in :data:`INCIDENTS`;
:func:`make_incident` builds and plans one by name.
"""

from agentwatch.lab.sim.incidents import (  # noqa: F401 - imported to register
    cost_drift,
    cost_explosion,
    error_storm,
    exfiltration,
    mix_shift,
    privilege_probing,
    runaway_loop,
    unapproved_high_risk,
)
from agentwatch.lab.sim.incidents.base import (
    INCIDENTS,
    Incident,
    incident_class,
    make_incident,
    register_incident,
)

__all__ = ["INCIDENTS", "Incident", "incident_class", "make_incident", "register_incident"]
