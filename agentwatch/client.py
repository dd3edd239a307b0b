"""A small client for the worker's control API (used by the CLI; standard library only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from agentwatch.config import Settings

__all__ = ["ApiError", "ControlClient", "resolve_token"]


class ApiError(RuntimeError):
    """The API answered with an error (``status`` 0 = not reachable)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def resolve_token(settings: Settings) -> str | None:
    """``AGENTWATCH_API_TOKEN``, else the embedded stack's ``<data_dir>/api-token`` file."""
    if settings.api_token is not None:
        return settings.api_token.get_secret_value()
    path = Path(settings.data_dir) / "api-token"
    if path.is_file():
        return path.read_text(encoding="utf-8").strip() or None
    return None


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
            try:
                doc = json.loads(raw)
                message = doc.get("error", raw.decode(errors="replace"))
                if doc.get("problems"):
                    message += ": " + "; ".join(doc["problems"])
            except (ValueError, AttributeError):
                message = raw.decode(errors="replace")[:500] or err.reason
            raise ApiError(err.code, message) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise ApiError(0, f"cannot reach {self.base_url}: {reason}") from None

    # -- agents ----------------------------------------------------------------------------
    def agents(self) -> Any:
        return self.request("GET", "/agents")

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
    ) -> Any:
        """Halt, resume, revoke or grant; ``if_version`` applies it only if the agent's control
        version is still that one (``If-Match``; 409 otherwise)."""
        body: dict[str, Any] = {"actor": actor, "reason": reason, "actions": actions or []}
        if incident_id:
            body["incident_id"] = incident_id
        headers = {"If-Match": f'"{if_version}"'} if if_version is not None else None
        path = f"/agents/{urllib.parse.quote(agent_id, safe='')}/{op}"
        return self.request("POST", path, body, headers=headers)

    # -- incidents -------------------------------------------------------------------------
    def incidents(self, status: str | None = None) -> Any:
        query = f"?status={urllib.parse.quote(status)}" if status else ""
        return self.request("GET", f"/incidents{query}")

    def incident(self, incident_id: str) -> Any:
        return self.request("GET", f"/incidents/{urllib.parse.quote(incident_id, safe='')}")

    def incident_op(self, op: str, incident_id: str, *, actor: str, reason: str) -> Any:
        path = f"/incidents/{urllib.parse.quote(incident_id, safe='')}/{op}"
        return self.request("POST", path, {"actor": actor, "reason": reason})
