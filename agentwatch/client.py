"""A small client for the worker's control API (used by the CLI; standard library only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentwatch.config import Settings
from agentwatch.connection import Connection, read_connection

__all__ = ["ApiError", "ApiTarget", "ControlClient", "resolve_api", "resolve_token"]


class ApiError(RuntimeError):
    """The API answered with an error (``status`` 0 = not reachable); ``reason`` is the
    answer's machine-readable reason (e.g. ``unknown_agent``), if it gave one."""

    def __init__(self, status: int, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


def _read_token(path: Path) -> str | None:
    if path.is_file():
        return path.read_text(encoding="utf-8").strip() or None
    return None


def resolve_token(settings: Settings, connection: Connection | None = None) -> str | None:
    """``AGENTWATCH_API_TOKEN``, else the token file a ``connection`` names, else the embedded
    stack's ``<data_dir>/api-token`` file."""
    if settings.api_token is not None:
        return settings.api_token.get_secret_value()
    if connection is not None and connection.token_file is not None:
        token = _read_token(connection.token_file)
        if token is not None:
            return token
    return _read_token(Path(settings.data_dir) / "api-token")


@dataclass(frozen=True)
class ApiTarget:
    """Which control API the CLI talks to, with what token, and why (for messages)."""

    url: str
    token: str | None
    source: str
    connection: Connection | None = None
    connection_path: Path | None = None


def resolve_api(settings: Settings, url: str | None = None) -> ApiTarget:
    """The control API to call: ``url`` (``--url``), else ``AGENTWATCH_API_URL``, else
    ``http://AGENTWATCH_WEB_HOST:AGENTWATCH_WEB_PORT`` when either is set, else the connection
    file of a running ``agentwatch up`` (:mod:`agentwatch.connection`), else
    ``http://127.0.0.1:6066``.

    The token: ``AGENTWATCH_API_TOKEN``, else the token file the connection file names when
    it describes that same URL, else ``<data_dir>/api-token``.

    Raises
    ------
    agentwatch.connection.ConnectionFileError
        when the connection file is needed and cannot be read.
    """
    explicit = settings.model_fields_set
    path = settings.connection_path
    source = "--url"
    if url:
        source = "--url"
    elif "api_url" in explicit:
        url, source = settings.api_url, "AGENTWATCH_API_URL"
    elif explicit & {"web_host", "web_port"} and settings.web_port:
        url, source = f"http://{settings.web_host}:{settings.web_port}", "AGENTWATCH_WEB_PORT"
    connection = None
    if url is None or settings.api_token is None:
        connection = read_connection(path)
    if url is None:
        if connection is not None:
            url, source = connection.api_url, str(path)
        else:
            url, source = settings.api_url, "the default"
    same = connection is not None and connection.api_url.rstrip("/") == url.rstrip("/")
    token = resolve_token(settings, connection if same else None)
    return ApiTarget(url, token, source, connection if same else None, path)


class ControlClient:
    """Calls the control API of a worker.

    Parameters
    ----------
    base_url
        e.g. ``http://127.0.0.1:6066``.
    token
        The bearer token (never printed).
    timeout
        Seconds per request.
    """

    def __init__(self, base_url: str, token: str | None, timeout: float = 10.0) -> None:
        if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
            raise ValueError(f"API URL must be http(s): {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"ControlClient({self.base_url!r})"

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """One request; the decoded JSON answer, or :class:`ApiError`."""
        headers = {"Accept": "application/json", **(headers or {})}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
            self.base_url + path, data=data, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            raw = err.read()
            reason = None
            try:
                doc = json.loads(raw)
                message = doc.get("error", raw.decode(errors="replace"))
                if doc.get("problems"):
                    message += ": " + "; ".join(doc["problems"])
                reason = doc.get("reason")
            except (ValueError, AttributeError):
                message = raw.decode(errors="replace")[:500] or err.reason
            raise ApiError(err.code, message, reason) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise ApiError(0, f"cannot reach {self.base_url}: {reason}") from None

    # -- agents ----------------------------------------------------------------------------
    def agents(self, fleet: str | None = None) -> Any:
        """Every worker's agents (``fleet``: only that fleet's)."""
        query = f"?fleet={urllib.parse.quote(fleet, safe='')}" if fleet is not None else ""
        return self.request("GET", f"/agents{query}")

    def agent(self, agent_id: str) -> Any:
        return self.request("GET", f"/agents/{urllib.parse.quote(agent_id, safe='')}")

    def control(
        self,
        op: str,
        agent_id: str,
        *,
        actor: str,
        reason: str,
        actions: list[str] | None = None,
        incident_id: str | None = None,
        if_version: int | None = None,
        force: bool = False,
    ) -> Any:
        """Halt, resume, revoke or grant; ``if_version`` applies it only if the agent's control
        version is still that one (``If-Match``; 409 otherwise); ``force`` controls an agent
        the monitor has never seen (404 otherwise)."""
        body: dict[str, Any] = {"actor": actor, "reason": reason, "actions": actions or []}
        if incident_id:
            body["incident_id"] = incident_id
        if force:
            body["force"] = True
        headers = {"If-Match": f'"{if_version}"'} if if_version is not None else None
        path = f"/agents/{urllib.parse.quote(agent_id, safe='')}/{op}"
        return self.request("POST", path, body, headers=headers)

    def fleet_control(
        self, op: str, fleet: str, *, actor: str, reason: str, incident_id: str | None = None
    ) -> Any:
        """Halt or resume every agent of ``fleet`` (each one audited)."""
        body: dict[str, Any] = {"actor": actor, "reason": reason}
        if incident_id:
            body["incident_id"] = incident_id
        return self.request("POST", f"/fleets/{urllib.parse.quote(fleet, safe='')}/{op}", body)

    # -- incidents -------------------------------------------------------------------------
    def incidents(self, statuses: list[str] | None = None) -> Any:
        """Incidents, newest first (``statuses``: only those; ``None``: every status)."""
        query = f"?status={urllib.parse.quote(','.join(statuses))}" if statuses else ""
        return self.request("GET", f"/incidents{query}")

    def incident(self, incident_id: str) -> Any:
        return self.request("GET", f"/incidents/{urllib.parse.quote(incident_id, safe='')}")

    def incident_op(self, op: str, incident_id: str, *, actor: str, reason: str) -> Any:
        path = f"/incidents/{urllib.parse.quote(incident_id, safe='')}/{op}"
        return self.request("POST", path, {"actor": actor, "reason": reason})

    # -- history ---------------------------------------------------------------------------
    def anomalies(self, agent: str | None = None, since: str | None = None) -> Any:
        """Recorded anomalies, newest first, with their evidence events."""
        query = {k: v for k, v in (("agent", agent), ("since", since)) if v}
        suffix = f"?{urllib.parse.urlencode(query)}" if query else ""
        return self.request("GET", f"/anomalies{suffix}")

    def audit(
        self, agent: str | None = None, since: str | None = None, incident: str | None = None
    ) -> Any:
        """Control and audit history, newest first."""
        pairs = (("agent", agent), ("since", since), ("incident", incident))
        query = {k: v for k, v in pairs if v}
        suffix = f"?{urllib.parse.urlencode(query)}" if query else ""
        return self.request("GET", f"/audit{suffix}")

    # -- silences --------------------------------------------------------------------------
    def silences(self, *, every: bool = False) -> Any:
        """Active and pending silences (``every``: expired ones too)."""
        return self.request("GET", "/silences?all=true" if every else "/silences")

    def silence_create(
        self,
        matchers: list[str],
        *,
        ends_at: str,
        created_by: str,
        comment: str,
        starts_at: str | None = None,
    ) -> Any:
        """Create a silence; the answer is the stored silence with its id."""
        body: dict[str, Any] = {
            "matchers": matchers,
            "ends_at": ends_at,
            "created_by": created_by,
            "comment": comment,
        }
        if starts_at is not None:
            body["starts_at"] = starts_at
        return self.request("POST", "/silences", body)

    def silence_expire(self, silence_id: str, *, actor: str) -> Any:
        """Expire a silence now."""
        path = f"/silences/{urllib.parse.quote(silence_id, safe='')}"
        return self.request("DELETE", f"{path}?{urllib.parse.urlencode({'actor': actor})}")

    # -- approvals -------------------------------------------------------------------------
    def approvals(self, status: str | None = None) -> Any:
        """Approval requests, oldest first (``status``: pending, approved, denied, expired)."""
        query = f"?status={urllib.parse.quote(status)}" if status else ""
        return self.request("GET", f"/approvals{query}")

    def approval(self, request_id: str) -> Any:
        return self.request("GET", f"/approvals/{urllib.parse.quote(request_id, safe='')}")

    def approval_op(self, op: str, request_id: str, *, actor: str, reason: str) -> Any:
        """Approve or deny a pending request as ``actor`` (the call's ``approved_by``)."""
        path = f"/approvals/{urllib.parse.quote(request_id, safe='')}/{op}"
        return self.request("POST", path, {"actor": actor, "reason": reason})
