"""The on-call console: server-rendered pages on the worker's web server (``/console``).

Incidents, an incident with its evidence and history, an agent with its baseline, recent
events, anomalies and control history, and halt / resume / revoke / silence / acknowledge
forms. Login with the API token makes a server-side session (cookie HttpOnly, SameSite=Strict,
Secure over TLS); every form carries a per-session CSRF token. Reads and changes go through
the control API's own handlers (:class:`~agentwatch.streams.api.ControlApi`). See
``docs/console.md``.
"""

from __future__ import annotations

from .sessions import Session, SessionStore
from .views import COOKIE, Console, safe_next

__all__ = ["COOKIE", "Console", "Session", "SessionStore", "safe_next"]
