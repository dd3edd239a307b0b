"""The control API's answers to refused requests, and its bearer-token check (one place)."""

from __future__ import annotations

import hmac
from typing import Any

from pydantic import SecretStr

__all__ = ["bearer_refusal", "problem"]


def problem(view: Any, status: int, message: str, **extra: Any) -> Any:
    """A JSON error answer ``{"error": message, ...}``; a 401 names the Bearer realm."""
    headers = {"WWW-Authenticate": 'Bearer realm="agentwatch"'} if status == 401 else None
    return view.json({"error": message, **extra}, status=status, headers=headers)


def bearer_refusal(view: Any, request: Any, token: SecretStr | None) -> Any | None:
    """The answer refusing ``request`` (503 with no token configured, 401 with a missing or
    wrong bearer token, compared in constant time), or ``None`` when it may proceed."""
    if token is None:
        return problem(view, 503, "control API disabled: set AGENTWATCH_API_TOKEN on the worker")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        return problem(view, 401, "missing or wrong bearer token")
    return None
