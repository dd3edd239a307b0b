"""Alerting: responder, incidents, control actions, notifiers and audit (see docs)."""

__all__: list[str] = []
