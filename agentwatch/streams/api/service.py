"""The :class:`ControlApi`: every control API endpoint, served on the worker's web server."""

from __future__ import annotations

from .base import Label
from .controls import AGENT_OPS, FLEET_OPS, INCIDENT_OPS, ControlEndpoints
from .reads import ReadEndpoints

__all__ = ["ControlApi"]


class ControlApi(ReadEndpoints, ControlEndpoints):
    """The on-call control API (endpoints: :mod:`agentwatch.streams.api`).

    Built with the worker parts it needs (see :class:`~agentwatch.streams.api.base.ApiBase`);
    :meth:`register` adds its views to the worker's web server. Its handlers take a
    :class:`~agentwatch.streams.api.messages.Call` and return an
    :class:`~agentwatch.streams.api.messages.Answer`, so the on-call console calls the very
    same ones.
    """

    def register(self) -> None:
        """Add every endpoint to the faust app's web server (each behind the token check)."""

        def op_label(prefix: str, ops: tuple[str, ...]) -> Label:
            return lambda params: (
                f"{prefix}_{params['op']}" if params["op"] in ops else f"{prefix}_op"
            )

        self.page("/agents", "AgentsView", get=("agents", self.list_agents))
        self.page("/agents/{agent_id}", "AgentView", get=("agent", self.show_agent))
        self.page(
            "/agents/{agent_id}/response", "AgentResponseView", get=(None, self.agent_response)
        )
        self.page(
            "/agents/{agent_id}/events",
            "AgentEventsView",
            get=("agent_events", self.list_agent_events),
        )
        self.page(
            "/agents/{agent_id}/{op}",
            "AgentControlView",
            post=(op_label("agent", AGENT_OPS), self.control_agent),
        )
        self.page(
            "/fleets/{fleet}/{op}",
            "FleetControlView",
            post=(op_label("fleet", FLEET_OPS), self.control_fleet),
        )
        self.page("/incidents", "IncidentsView", get=("incidents", self.list_incidents))
        self.page("/incidents/{incident_id}", "IncidentView", get=("incident", self.show_incident))
        self.page(
            "/incidents/{incident_id}/{op}",
            "IncidentOpView",
            post=(op_label("incident", INCIDENT_OPS), self.incident_op),
        )
        self.page("/anomalies", "AnomaliesView", get=("anomalies", self.list_anomalies))
        self.page("/audit", "AuditView", get=("audit", self.list_audit))
        self.page(
            "/silences",
            "SilencesView",
            get=("silences", self.list_silences),
            post=("silence_create", self.create_silence),
        )
        self.page(
            "/silences/{silence_id}",
            "SilenceView",
            get=("silence", self.show_silence),
            delete=("silence_expire", self.expire_silence),
        )
