"""One agent's control state as the SDK obeys it: verified, plausible, never rolled back.

:class:`ControlBook` is the pure logic (no I/O): it takes control-topic records (from
:class:`~agentwatch.sdk.follower.ControlFollower`, or a test) and answers whether an action may
run. Whatever enforces halts and revocations in an agent process (the monitors, framework
adapters, a gateway) asks a book.

Authenticated control
---------------------
Workers sign every control record (Ed25519, :mod:`agentwatch.schemas.signing`). Given the
workers' public keys (``verifier``), the book obeys only records one of them verifies: an
unsigned, badly signed or foreign-key record, a tombstone, or one whose ``version`` /
``updated_at`` lies implausibly far ahead of this host's clock is refused, counted and logged
once per reason; it never raises and never changes what the agent may do. A record older than
the one held is ignored (a replayed record cannot undo a later change).

Without a key the book still obeys control records, unverified (fail-open for authenticity, so
that a missing setting cannot silently disable the kill switch), and refuses implausible ones
all the same.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pydantic import ValidationError

from agentwatch.logtext import escape
from agentwatch.schemas import ControlState
from agentwatch.schemas.signing import ControlVerifier, VerificationError
from agentwatch.sdk._support import Counters, validation_reason
from agentwatch.sdk.errors import AgentHalted, ControlError, PermissionRevoked

__all__ = ["CONTROL_COUNTERS", "CONTROL_REJECTIONS", "ControlBook"]

log = logging.getLogger("agentwatch.sdk")

CONTROL_REJECTIONS = ("unsigned", "unknown_key", "bad_signature", "implausible")
"""Why a control record is refused; each is counted as ``control_rejected_<reason>``."""
CONTROL_COUNTERS = (
    "control_errors",
    "control_rejected",
    *(f"control_rejected_{reason}" for reason in CONTROL_REJECTIONS),
)
"""The counters of a :class:`ControlBook` (see :attr:`ControlBook.counters`)."""


class ControlBook:
    """The control state of one agent, fed record by record; answers :meth:`denial`.

    Parameters
    ----------
    agent_id
        Whose records to obey (the record key and its ``agent_id`` must both match).
    verifier
        The workers' public keys; ``None`` obeys records unverified.
    max_clock_skew_s
        A record whose ``version`` (milliseconds) or ``updated_at`` is further than this ahead
        of this host's clock is refused as implausible.

    Examples
    --------
    >>> from datetime import UTC, datetime
    >>> book = ControlBook("bot-1", None)
    >>> book.denial("send_email") is None
    True
    >>> state = ControlState(agent_id="bot-1", revoked=["send_email"], reason="spam",
    ...     version=1, updated_at=datetime.now(UTC), updated_by="ops")
    >>> book.apply_record("t", 0, 0, b"bot-1", state.model_dump_json().encode())
    >>> print(book.denial("send_email"))  # doctest: +ELLIPSIS
    agent 'bot-1' may not run 'send_email': permission revoked by agentwatch (spam)...
    >>> book.denial("search") is None
    True
    """

    def __init__(
        self, agent_id: str, verifier: ControlVerifier | None, max_clock_skew_s: float = 300.0
    ) -> None:
        self.agent_id = agent_id
        self.key = agent_id.encode()
        self.verifier = verifier
        self.max_clock_skew_s = max_clock_skew_s
        self.counters = Counters(CONTROL_COUNTERS)
        # replaced as a whole (a reference swap), so readers on other threads need no lock
        self._state: ControlState | None = None
        self._version = 0  # highest version obeyed: older records are replays
        self._refusals_logged: set[str] = set()

    @property
    def state(self) -> ControlState | None:
        """The latest obeyed state, or ``None`` (never restricted, or cleared)."""
        return self._state

    def allows(self, action: str) -> bool:
        """Whether ``action`` may run now."""
        state = self._state
        return state is None or state.allows(action)

    def denial(self, action: str) -> ControlError | None:
        """The exception to raise instead of running ``action``, or ``None`` if it may run."""
        state = self._state
        if state is None:
            return None
        if state.halted:
            return AgentHalted(self.agent_id, state.reason, state.incident_id)
        if action in state.revoked:
            return PermissionRevoked(self.agent_id, action, state.reason)
        return None

    def apply_record(self, topic: str, partition: int, offset: int, key: Any, value: Any) -> None:
        """Apply one control-topic record (other agents' keys are ignored); never raises."""
        if key is None:
            self._bad_control(topic, partition, offset, "message has no key")
            return
        if key != self.key:
            return
        if value is None and self.verifier is not None:
            self._refuse(topic, partition, offset, "unsigned", "a tombstone cannot be signed")
            return
        if value is None:  # tombstone (unverified mode): the agent is no longer restricted
            if self._state is not None:
                log.warning(
                    "agentwatch: control state of agent %s cleared (tombstone at %s[%d]@%d)",
                    self.agent_id,
                    topic,
                    partition,
                    offset,
                )
            self._state = None
            return
        try:
            state = ControlState.model_validate_json(value)
        except ValidationError as exc:
            self._bad_control(topic, partition, offset, validation_reason(exc))
            return
        except Exception as exc:  # defensive: parser edge cases
            self._bad_control(topic, partition, offset, type(exc).__name__)
            return
        if state.agent_id != self.agent_id:
            self._bad_control(
                topic, partition, offset, f"key {self.agent_id!r} but agent_id {state.agent_id!r}"
            )
            return
        if self.verifier is not None:
            try:
                self.verifier.verify(state)
            except VerificationError as exc:
                self._refuse(topic, partition, offset, exc.reason, exc.detail)
                return
            except Exception as exc:  # defensive: never let a record stop the control loop
                self._refuse(topic, partition, offset, "bad_signature", type(exc).__name__)
                return
        implausible = self._implausible(state)
        if implausible is not None:
            self._refuse(topic, partition, offset, "implausible", implausible)
            return
        if state.version < self._version:
            log.debug(
                "agentwatch: ignoring control version %d < held %d for %s",
                state.version,
                self._version,
                self.agent_id,
            )
            return
        held = self._state
        self._version = state.version
        self._state = state
        self._log_transition(held, state)

    def _implausible(self, state: ControlState) -> str | None:
        """Why ``state`` cannot be real (from the future), or None."""
        now = time.time()
        ahead = state.version / 1000.0 - now
        if ahead > self.max_clock_skew_s:
            return (
                f"version {state.version} is {ahead:.0f}s ahead of this host's clock "
                f"(versions are milliseconds; at most {self.max_clock_skew_s:g}s allowed)"
            )
        ahead = state.updated_at.timestamp() - now
        if ahead > self.max_clock_skew_s:
            return f"updated_at is {ahead:.0f}s ahead of this host's clock"
        return None

    def _refuse(self, topic: str, partition: int, offset: int, reason: str, detail: str) -> None:
        """Count a refused control record; log the first of each reason."""
        self.counters.add("control_rejected")
        self.counters.add(f"control_rejected_{reason}")
        if reason in self._refusals_logged:
            return
        self._refusals_logged.add(reason)
        log.warning(
            "agentwatch: agent %s refused control record %s[%d]@%d (%s: %s); it changes "
            "nothing. Further %s records are only counted (stats['control_rejected_%s'])",
            self.agent_id,
            topic,
            partition,
            offset,
            reason,
            detail,
            reason,
            reason,
        )

    def _log_transition(self, old: ControlState | None, new: ControlState) -> None:
        was_halted = old is not None and old.halted
        old_revoked = set(old.revoked) if old is not None else set()
        if new.halted and not was_halted:
            log.warning(
                "agentwatch: agent %s HALTED by %s (incident %s): %s",
                self.agent_id,
                escape(new.updated_by),
                escape(new.incident_id or "-"),
                escape(new.reason or "no reason given", 1024),
            )
        elif was_halted and not new.halted:
            log.warning("agentwatch: agent %s resumed by %s", self.agent_id, escape(new.updated_by))
        if set(new.revoked) != old_revoked:
            log.warning(
                "agentwatch: agent %s revoked actions now %s (by %s)",
                self.agent_id,
                escape(sorted(new.revoked), 2048),
                escape(new.updated_by),
            )

    def _bad_control(self, topic: str, partition: int, offset: int, reason: str) -> None:
        self.counters.add("control_errors")
        log.warning(
            "agentwatch: skipping malformed control message %s[%d]@%d: %s",
            topic,
            partition,
            offset,
            escape(reason, 500),
        )
