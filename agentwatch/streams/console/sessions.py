"""The console's server-side sessions: a random id in the cookie, the rest kept here.

A session holds who logged in (the name they gave, written as the actor of what they do), its
CSRF token (a hidden field of every form, compared in constant time) and when it expires.
Sessions live in the worker's memory: a restart logs everyone out.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MAX_SESSIONS", "Session", "SessionStore"]

MAX_SESSIONS = 1000


@dataclass(frozen=True)
class Session:
    """One login: its id (the cookie's value), CSRF token, actor name and expiry (epoch s)."""

    session_id: str
    csrf: str
    actor: str
    expires_at: float

    def csrf_ok(self, given: str | None) -> bool:
        """Whether ``given`` is this session's CSRF token (constant-time comparison).

        >>> s = Session("sid", "tok", "alice", 0.0)
        >>> s.csrf_ok("tok"), s.csrf_ok("nope"), s.csrf_ok(None), s.csrf_ok("")
        (True, False, False, False)
        """
        if not given:
            return False
        return hmac.compare_digest(given.encode(), self.csrf.encode())


class SessionStore:
    """Sessions by id, each expiring ``ttl_s`` after login; at most ``max_sessions`` (the
    oldest go first).

    Parameters
    ----------
    ttl_s
        Lifetime of a session.
    clock
        Wall clock (epoch seconds); injectable for tests.
    max_sessions
        Bound on the sessions kept.

    Examples
    --------
    >>> now = [1000.0]
    >>> store = SessionStore(60.0, clock=lambda: now[0])
    >>> s = store.create("alice")
    >>> store.get(s.session_id) == s, store.get("forged"), store.get(None)
    (True, None, None)
    >>> now[0] += 61
    >>> store.get(s.session_id) is None
    True
    """

    def __init__(
        self,
        ttl_s: float,
        *,
        clock: Callable[[], float] = time.time,
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def create(self, actor: str) -> Session:
        """A new session for ``actor`` (random 256-bit id and CSRF token)."""
        self.prune()
        while len(self._sessions) >= self.max_sessions:
            self._sessions.popitem(last=False)
        session = Session(
            session_id=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(32),
            actor=actor,
            expires_at=self.clock() + self.ttl_s,
        )
        self._sessions[session.session_id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session with that id, or ``None`` (unknown, expired, no id)."""
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if session.expires_at <= self.clock():
            del self._sessions[session_id]
            return None
        return session

    def drop(self, session_id: str | None) -> None:
        """End a session (logout); unknown ids are ignored."""
        if session_id:
            self._sessions.pop(session_id, None)

    def prune(self) -> None:
        """Forget every expired session."""
        now = self.clock()
        for sid in [sid for sid, s in self._sessions.items() if s.expires_at <= now]:
            del self._sessions[sid]

    def __len__(self) -> int:
        return len(self._sessions)
