"""The control API's answers to refused requests, and its bearer-token check (one place)."""

from __future__ import annotations

import hmac
from typing import Any

from pydantic import SecretStr

from agentwatch.streams.auth_failures import AuthFailures

__all__ = ["bearer_refusal", "problem"]


def problem(
    view: Any, status: int, message: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> Any:
    """A JSON error answer ``{"error": message, ...}``; a 401 names the Bearer realm."""
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": 'Bearer realm="agentwatch"'}
    return view.json({"error": message, **extra}, status=status, headers=headers)


def bearer_refusal(
    view: Any, request: Any, token: SecretStr | None, failures: AuthFailures
) -> Any | None:
    """The answer refusing ``request`` (503 with no token configured; 429 while its address
    has too many refused tokens (:class:`AuthFailures`); 401 with a missing or wrong bearer
    token, compared in constant time), or ``None`` when it may proceed."""
    if token is None:
        return problem(view, 503, "control API disabled: set AGENTWATCH_API_TOKEN on the worker")
    wait = failures.wait_s(request.remote)
    if wait > 0.0:
        after = failures.retry_after(wait)
        return problem(
            view,
            429,
            f"too many wrong tokens from this address; retry in {after} s",
            headers={"Retry-After": after},
        )
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        failures.failed(request.remote)
        return problem(view, 401, "missing or wrong bearer token")
    return None
