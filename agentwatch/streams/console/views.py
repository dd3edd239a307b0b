"""The console's web views: login, incidents, an incident, an agent, and the control forms.

Every read and every change goes through the :class:`~agentwatch.streams.api.ControlApi`'s
own handlers (the same validation, forwarding to the worker that owns the state, audit and
logging as the JSON API); the console only adds sessions, CSRF checks and HTML.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import faust
import orjson
from pydantic import TypeAdapter, ValidationError
from yarl import URL

from agentwatch.config import Settings
from agentwatch.detectors.rules import parse_duration
from agentwatch.logtext import escape
from agentwatch.schemas._types import AGENT_ID_PATTERN, Name
from agentwatch.streams.api import Answer, Call, ControlApi
from agentwatch.streams.auth_failures import AuthFailures

from . import pages
from .pages import PREFIX
from .sessions import Session, SessionStore

__all__ = ["COOKIE", "Console", "safe_next", "served_over_tls"]

log = logging.getLogger(__name__)

COOKIE = "agentwatch_console"
HOME = f"{PREFIX}/incidents"
DEFAULT_STATUSES = "open,acknowledged"
MAX_SILENCE_S = 30 * 86400
AGENT_OPS = ("halt", "resume", "revoke", "silence")
DONE = {
    "halt": "Agent halted.",
    "resume": "Agent resumed.",
    "revoke": "Permission revoked.",
    "silence": "Silence created: its anomalies are recorded, not paged.",
    "ack": "Incident acknowledged.",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_NAME: TypeAdapter[str] = TypeAdapter(Name)
_AGENT_RE = re.compile(AGENT_ID_PATTERN)

Page = Callable[..., Awaitable[Any]]


def safe_next(value: str | None) -> str:
    """Where to go after login: ``value`` if it is a console path on this server, else the
    incidents list (no open redirect).

    Examples
    --------
    >>> safe_next("/console/incidents/inc-1"), safe_next("/console/agents/a1?x=1")
    ('/console/incidents/inc-1', '/console/agents/a1?x=1')
    >>> bad = ("https://evil.example/", "//evil.example/console", None, "/consolex",
    ...        "/console\\\\@evil.example", "/console/\\x0a")
    >>> {safe_next(v) for v in bad}
    {'/console/incidents'}
    """
    if not value or len(value) > 2048:
        return HOME
    if value != PREFIX and not value.startswith((f"{PREFIX}/", f"{PREFIX}?")):
        return HOME
    if "\\" in value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return HOME
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return HOME
    return value


def served_over_tls(request_is_https: bool, advertised_url: str | None) -> bool:
    """Whether the session cookie gets ``Secure``: the request came over HTTPS, or the worker
    is advertised at an ``https://`` URL (TLS ends at a proxy in front of it).

    >>> served_over_tls(False, None), served_over_tls(True, None)
    (False, True)
    >>> served_over_tls(False, "https://aw.example"), served_over_tls(False, "http://10.0.0.5:6066")
    (True, False)
    """
    return request_is_https or (advertised_url or "").startswith("https://")


class Console:
    """The on-call console on the worker's web server (``/console/...``).

    Parameters
    ----------
    app
        The worker's faust app (its web server).
    api
        The control API whose handlers read and change state.
    settings
        The worker's settings (the API token a login must give; the advertised URL).
    sessions
        The server-side session store.
    failures
        Wrong tokens per client address, shared with the API: too many, and the login form
        refuses the address (429) before it compares a token.
    """

    def __init__(
        self,
        app: Any,
        *,
        api: ControlApi,
        settings: Settings,
        sessions: SessionStore,
        failures: AuthFailures,
    ) -> None:
        self.app = app
        self.api = api
        self.settings = settings
        self.sessions = sessions
        self.failures = failures

    # -- plumbing --------------------------------------------------------------------------

    def register(self) -> None:
        """Add the console's views to the faust app's web server."""
        self._page(PREFIX, "ConsoleHome", get=self.home)
        self._page(f"{PREFIX}/style.css", "ConsoleStyle", get=self.style)
        self._page(f"{PREFIX}/login", "ConsoleLogin", get=self.login_form, post=self.login)
        self._page(f"{PREFIX}/logout", "ConsoleLogout", post=self.logout)
        self._page(f"{PREFIX}/incidents", "ConsoleIncidents", get=self.incidents)
        self._page(f"{PREFIX}/incidents/{{incident_id}}", "ConsoleIncident", get=self.incident)
        self._page(
            f"{PREFIX}/incidents/{{incident_id}}/{{op}}", "ConsoleIncidentOp", post=self.incident_op
        )
        self._page(f"{PREFIX}/agents/{{agent_id}}", "ConsoleAgent", get=self.agent)
        self._page(f"{PREFIX}/agents/{{agent_id}}/{{op}}", "ConsoleAgentOp", post=self.agent_op)

    def _page(self, path: str, name: str, **methods: Page) -> None:
        attrs = {method: _view_method(handler) for method, handler in methods.items()}
        view = type(name, (faust.web.View,), {**attrs, "__module__": __name__})
        self.app.page(path)(view)

    def _call(
        self, method: str, path: str, query: Mapping[str, str] | None = None, body: Any = None
    ) -> Call:
        """A call to the control API as the console (the worker's own token, for forwarding
        to other workers; it never leaves the servers)."""
        token = self.settings.api_token
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        url = URL(str(self.app.conf.canonical_url)).with_path(path)
        if query:
            url = url.with_query(query)
        raw = orjson.dumps(body) if body is not None else b""
        return Call(method=method, url=url, headers=headers, body=raw)

    def _html(self, view: Any, page: str, status: int = 200) -> Any:
        return view.html(page, status=status, headers=dict(SECURITY_HEADERS))

    def _redirect(self, view: Any, location: str) -> Any:
        return view.text(
            "", status=303, headers={"Location": location, "Cache-Control": "no-store"}
        )

    def _session(self, request: Any) -> Session | None:
        return self.sessions.get(request.cookies.get(COOKIE))

    def _to_login(self, view: Any, request: Any) -> Any:
        target = safe_next(request.rel_url.path_qs)
        return self._redirect(view, str(URL(f"{PREFIX}/login").with_query(next=target)))

    def _secure(self, request: Any) -> bool:
        return served_over_tls(bool(request.secure), self.settings.web_advertised_url)

    async def _form(self, view: Any, request: Any) -> tuple[Session, Mapping[str, str]] | Any:
        """The session and form of a state-changing POST, or the 403 refusing it."""
        session = self._session(request)
        if session is None:
            page = pages.message_page(
                "Session expired",
                "You are not logged in (or your session expired): log in "
                "again, then repeat the action.",
                back=f"{PREFIX}/login",
            )
            return self._html(view, page, status=403)
        form = await request.post()
        if not session.csrf_ok(form.get("csrf") if isinstance(form.get("csrf"), str) else None):
            log.warning(
                "console: %s %s refused: missing or wrong CSRF token",
                request.method,
                escape(request.rel_url.path, 300),  # the path holds ids anyone can send
            )
            page = pages.message_page(
                "Refused",
                "Missing or wrong form token: reload the page and try again.",
                back=HOME,
                csrf=session.csrf,
                actor=session.actor,
            )
            return self._html(view, page, status=403)
        return session, {k: v for k, v in form.items() if isinstance(v, str)}

    def _failed(self, view: Any, session: Session, answer: Answer, back: str) -> Any:
        page = pages.message_page(
            f"Failed (HTTP {answer.status})",
            answer.error(),
            back=back,
            csrf=session.csrf,
            actor=session.actor,
        )
        return self._html(view, page, status=answer.status)

    # -- login -----------------------------------------------------------------------------

    async def home(self, view: Any, request: Any) -> Any:
        """``GET /console``: the incidents list."""
        return self._redirect(view, HOME)

    async def style(self, view: Any, request: Any) -> Any:
        """``GET /console/style.css``."""
        return view.text(
            pages.STYLE,
            content_type="text/css",
            headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"},
        )

    async def login_form(self, view: Any, request: Any) -> Any:
        """``GET /console/login[?next=PATH]``."""
        target = safe_next(request.query.get("next"))
        if self._session(request) is not None:
            return self._redirect(view, target)
        return self._html(view, pages.login_page(target))

    async def login(self, view: Any, request: Any) -> Any:
        """``POST /console/login``: the API token and a name make a session."""
        form = await request.post()
        target = safe_next(_text(form.get("next")))
        expected = self.settings.api_token
        if expected is None:
            page = pages.login_page(
                target, "The console is disabled: set AGENTWATCH_API_TOKEN on the worker."
            )
            return self._html(view, page, status=503)
        actor = _text(form.get("actor")).strip()
        try:
            _NAME.validate_python(actor)
        except ValidationError:
            page = pages.login_page(
                target, "Give your name for the audit log (letters, digits, '.', '_', '-')."
            )
            return self._html(view, page, status=400)
        wait = self.failures.wait_s(request.remote)
        if wait > 0.0:
            after = self.failures.retry_after(wait)
            page = pages.login_page(target, f"Too many wrong tokens; try again in {after} s.")
            resp = self._html(view, page, status=429)
            resp.headers["Retry-After"] = after
            return resp
        given = _text(form.get("token")).strip().encode()
        if not hmac.compare_digest(given, expected.get_secret_value().encode()):
            self.failures.failed(request.remote)
            log.warning("console: failed login from %s", request.remote)
            return self._html(view, pages.login_page(target, "Wrong token."), status=401)
        session = self.sessions.create(actor)
        log.info("console: %s logged in from %s", actor, request.remote)
        resp = self._redirect(view, target)
        resp.set_cookie(
            COOKIE,
            session.session_id,
            path=PREFIX,
            max_age=int(self.sessions.ttl_s),
            httponly=True,
            samesite="Strict",
            secure=self._secure(request),
        )
        return resp

    async def logout(self, view: Any, request: Any) -> Any:
        """``POST /console/logout``."""
        checked = await self._form(view, request)
        if not isinstance(checked, tuple):
            return checked
        session, _ = checked
        self.sessions.drop(session.session_id)
        resp = self._redirect(view, f"{PREFIX}/login")
        resp.del_cookie(COOKIE, path=PREFIX)
        return resp

    # -- incidents -------------------------------------------------------------------------

    async def incidents(self, view: Any, request: Any) -> Any:
        """``GET /console/incidents[?status=...]`` (open and acknowledged by default)."""
        session = self._session(request)
        if session is None:
            return self._to_login(view, request)
        statuses = request.query.get("status") or DEFAULT_STATUSES
        answer = await self.api.list_incidents(
            self._call("GET", "/incidents", {"status": statuses})
        )
        if not answer.ok:
            return self._failed(view, session, answer, HOME)
        page = pages.incidents_page(
            answer.doc()["incidents"], statuses=statuses, csrf=session.csrf, actor=session.actor
        )
        return self._html(view, page)

    async def incident(self, view: Any, request: Any, incident_id: str) -> Any:
        """``GET /console/incidents/{id}``: anomalies, evidence and history."""
        session = self._session(request)
        if session is None:
            return self._to_login(view, request)
        answer = await self.api.show_incident(
            self._call("GET", f"/incidents/{incident_id}"), incident_id
        )
        if not answer.ok:
            return self._failed(view, session, answer, HOME)
        page = pages.incident_page(
            answer.doc(),
            csrf=session.csrf,
            actor=session.actor,
            done=DONE.get(request.query.get("done", "")),
        )
        return self._html(view, page)

    async def incident_op(self, view: Any, request: Any, incident_id: str, op: str) -> Any:
        """``POST /console/incidents/{id}/ack``."""
        checked = await self._form(view, request)
        if not isinstance(checked, tuple):
            return checked
        session, form = checked
        back = pages.incident_href(incident_id)
        if op != "ack":
            return self._failed(
                view, session, Answer.problem(404, f"unknown operation {op!r}"), back
            )
        body = {"actor": session.actor, "reason": form.get("reason") or "acknowledged"}
        path = f"/incidents/{incident_id}/ack"
        answer = await self.api.incident_op(self._call("POST", path, body=body), incident_id, op)
        if not answer.ok:
            return self._failed(view, session, answer, back)
        return self._redirect(view, f"{back}?done=ack")

    # -- agents ----------------------------------------------------------------------------

    async def agent(self, view: Any, request: Any, agent_id: str) -> Any:
        """``GET /console/agents/{id}``: control state, baseline, events, anomalies, history."""
        session = self._session(request)
        if session is None:
            return self._to_login(view, request)
        back = HOME
        shown = await self.api.show_agent(self._call("GET", f"/agents/{agent_id}"), agent_id)
        if not shown.ok:
            return self._failed(view, session, shown, back)
        events = await self.api.list_agent_events(
            self._call("GET", f"/agents/{agent_id}/events"), agent_id
        )
        anomalies = await self.api.list_anomalies(
            self._call("GET", "/anomalies", {"agent": agent_id, "limit": "50"})
        )
        audit = await self.api.list_audit(
            self._call("GET", "/audit", {"agent": agent_id, "limit": "100"})
        )
        silences = await self.api.list_silences(self._call("GET", "/silences"))
        matcher = f'agent="{agent_id}"'
        page = pages.agent_page(
            shown.doc(),
            events=list(reversed(_list(events, "events"))),  # newest first
            anomalies=_list(anomalies, "anomalies"),
            audit=_list(audit, "audit"),
            silences=[
                s for s in _list(silences, "silences") if matcher in s.get("matchers_text", [])
            ],
            csrf=session.csrf,
            actor=session.actor,
            done=DONE.get(request.query.get("done", "")),
            error="; ".join(a.error() for a in (events, anomalies, audit, silences) if not a.ok)
            or None,
        )
        return self._html(view, page)

    async def agent_op(self, view: Any, request: Any, agent_id: str, op: str) -> Any:
        """``POST /console/agents/{id}/halt|resume|revoke|silence``."""
        checked = await self._form(view, request)
        if not isinstance(checked, tuple):
            return checked
        session, form = checked
        back = pages.agent_href(agent_id)
        if op not in AGENT_OPS:
            return self._failed(
                view, session, Answer.problem(404, f"unknown operation {op!r}"), back
            )
        if not _AGENT_RE.fullmatch(agent_id):
            return self._failed(
                view, session, Answer.problem(400, f"invalid agent id {agent_id!r}"), back
            )
        if op == "silence":
            answer = await self._silence(session, agent_id, form)
        else:
            body: dict[str, Any] = {
                "actor": session.actor,
                "reason": form.get("reason") or "from the console",
            }
            if op == "revoke":
                body["actions"] = [
                    a.strip() for a in form.get("action", "").split(",") if a.strip()
                ]
            call = self._call("POST", f"/agents/{agent_id}/{op}", body=body)
            answer = await self.api.control_agent(call, agent_id, op)
        if not answer.ok:
            return self._failed(view, session, answer, back)
        return self._redirect(view, f"{back}?done={op}")

    async def _silence(self, session: Session, agent_id: str, form: Mapping[str, str]) -> Answer:
        """A silence of the agent for the form's duration (``30m``, ``2h``, ``1d``)."""
        text = form.get("duration", "").strip()
        try:
            seconds = parse_duration(text)
        except ValueError:
            return Answer.problem(400, f"duration {text!r}: give e.g. 30m, 2h or 1d")
        if not 0 < seconds <= MAX_SILENCE_S:
            return Answer.problem(400, f"duration {text!r}: from 1s to 30d")
        ends = datetime.fromtimestamp(time.time(), UTC) + timedelta(seconds=seconds)
        body = {
            "matchers": [f'agent="{agent_id}"'],
            "ends_at": ends.isoformat(),
            "created_by": session.actor,
            "comment": form.get("comment", "").strip(),
        }
        return await self.api.create_silence(self._call("POST", "/silences", body=body))


def _view_method(handler: Page) -> Page:
    """``handler`` (a bound method of the console) as a method of a faust view."""

    async def serve(view: Any, request: Any, **params: str) -> Any:
        return await handler(view, request, **params)

    return serve


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _list(answer: Answer, key: str) -> list[dict[str, Any]]:
    if not answer.ok:
        return []
    doc = answer.doc()
    items = doc.get(key) if isinstance(doc, dict) else None
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []
