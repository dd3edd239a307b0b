"""Failed authentications per client address: too many, and the address waits.

The control API, the approvals endpoints and the console's login compare a token in constant
time; this stops an address from trying tokens quickly. Every refused token counts against
the address it came from; an address with ``max_failures`` refusals within ``window_s``
seconds is refused *before* its token is compared (429, ``Retry-After``) until the oldest
of them leaves the window. Successful requests change nothing, so an operator who mistypes
the token once is never locked out by others' traffic, and a worker forwarding to a peer
with the right token never counts.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

__all__ = ["AuthFailures"]


class AuthFailures:
    """Sliding-window count of refused tokens per client address.

    Parameters
    ----------
    max_failures
        Refusals within ``window_s`` after which an address must wait (0 turns it off).
    window_s
        The window, in seconds.
    clock
        Monotonic seconds (injectable for tests).
    max_clients
        Addresses remembered at most; beyond it, the one that failed longest ago is
        forgotten first.

    Examples
    --------
    >>> now = [0.0]
    >>> failures = AuthFailures(3, 60.0, clock=lambda: now[0])
    >>> for _ in range(3):
    ...     failures.failed("10.0.0.7")
    >>> failures.wait_s("10.0.0.7"), failures.wait_s("10.0.0.8")
    (60.0, 0.0)
    >>> now[0] = 61.0
    >>> failures.wait_s("10.0.0.7")
    0.0
    """

    def __init__(
        self,
        max_failures: int = 10,
        window_s: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.clock = clock
        self.max_clients = max_clients
        self._times: dict[str, deque[float]] = {}

    def wait_s(self, client: str | None) -> float:
        """Seconds ``client`` must wait before its token is compared again (0: none)."""
        if self.max_failures <= 0:
            return 0.0
        times = self._times.get(client or "")
        if times is None:
            return 0.0
        self._trim(times, self.clock())
        if len(times) < self.max_failures:
            return 0.0
        return times[0] + self.window_s - self.clock()

    def failed(self, client: str | None) -> None:
        """Count one refused token from ``client``."""
        if self.max_failures <= 0:
            return
        key = client or ""
        now = self.clock()
        times = self._times.pop(key, None)  # re-inserted last: the dict runs oldest first
        if times is None:
            times = deque(maxlen=self.max_failures)
        times.append(now)
        self._times[key] = times
        if len(self._times) > self.max_clients:
            del self._times[next(iter(self._times))]

    @staticmethod
    def retry_after(wait_s: float) -> str:
        """``wait_s`` as a ``Retry-After`` header value (whole seconds, at least 1)."""
        return str(max(1, math.ceil(wait_s)))

    def _trim(self, times: deque[float], now: float) -> None:
        while times and times[0] <= now - self.window_s:
            times.popleft()
