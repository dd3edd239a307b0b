"""The console's session store: random ids, expiry, logout, a bound on sessions, CSRF."""

from __future__ import annotations

from agentwatch.streams.console import SessionStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_sessions_are_random_and_expire_after_their_lifetime() -> None:
    clock = Clock()
    store = SessionStore(12 * 3600.0, clock=clock)
    a, b = store.create("alice"), store.create("bob")
    assert a.session_id != b.session_id and a.csrf != b.csrf
    assert len(a.session_id) >= 40 and len(a.csrf) >= 40  # 256 random bits, URL-safe
    assert a.csrf != a.session_id
    assert store.get(a.session_id) == a and a.actor == "alice"
    clock.now += 12 * 3600 - 1
    assert store.get(a.session_id) == a
    clock.now += 1
    assert store.get(a.session_id) is None and store.get(b.session_id) is None
    assert len(store) == 0  # the expired one was forgotten on read, the other by prune
    store.prune()
    assert len(store) == 0


def test_logout_drops_the_session_and_unknown_ids_are_ignored() -> None:
    store = SessionStore(60.0, clock=Clock())
    session = store.create("alice")
    store.drop("nobody")
    store.drop(None)
    assert store.get(session.session_id) == session
    store.drop(session.session_id)
    assert store.get(session.session_id) is None


def test_the_oldest_sessions_go_when_the_store_is_full() -> None:
    store = SessionStore(60.0, clock=Clock(), max_sessions=3)
    first, *rest = [store.create(f"u{i}") for i in range(4)]
    assert len(store) == 3
    assert store.get(first.session_id) is None
    assert all(store.get(s.session_id) == s for s in rest)


def test_csrf_tokens_are_checked_exactly() -> None:
    store = SessionStore(60.0, clock=Clock())
    session, other = store.create("alice"), store.create("bob")
    assert session.csrf_ok(session.csrf)
    for wrong in (None, "", other.csrf, session.csrf[:-1], session.csrf + "x", session.session_id):
        assert not session.csrf_ok(wrong), wrong
