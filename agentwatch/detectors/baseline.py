"""Per-agent behavioural baseline: plain Python, no I/O, deterministic.

The live faust worker and the offline ``backtest`` fold the very same events through
:meth:`AgentBaseline.update` in the same order, so both end with byte-identical state
(:meth:`AgentBaseline.to_bytes`). Detectors read the baseline; they never mutate it.

What one baseline holds, and how big it gets:

* exact counters and totals (events, errors, denials, kinds, cost, tokens) and event times;
* exponentially weighted (EW) mean and variance of cost per event, latency, the failure
  indicator and the inter-arrival time, with the incremental formulas of West (1979) and
  Finch (2009, *Incremental calculation of weighted mean and variance*);
* a ring of event-time buckets (default 60 x 60 s) with count, errors, denials and cost;
* Space-Saving heavy-hitter tables (Metwally et al., 2005) for actions (default 32) and for
  ``previous action -> action`` transitions (default 64);
* a 128-register HyperLogLog of distinct targets (standard error about 9 %);
* the last action, status and target and the length of the current run of identical
  ``(action, target)`` pairs (for the runaway-loop detector).

The serialized form is a small versioned binary record; a realistic agent (10,000 events,
25 actions, 200 targets, a full hour of buckets) takes about 1.5 KB.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from hashlib import blake2b
from typing import TYPE_CHECKING, Any, Final

from agentwatch.schemas._types import format_ts
from agentwatch.schemas.events import ActionEvent

if TYPE_CHECKING:
    from agentwatch.detectors import _cython_shim as cython
else:
    try:
        import cython
    except ImportError:  # Cython is a build requirement only; the sources run without it
        from agentwatch.detectors import _cython_shim as cython

__all__ = [
    "FORMAT_VERSION",
    "ActionCount",
    "AgentBaseline",
    "EwStats",
    "TransitionCount",
    "WindowStats",
]

FORMAT_VERSION: Final = 1
"""Version of the :meth:`AgentBaseline.to_bytes` layout; bump it and migrate on change."""

_MAGIC: Final = b"AW"
_CONF = struct.Struct("<ddHHH")  # half_life, bucket_seconds, buckets, max_actions, max_trans
_FLOATS = struct.Struct("<12d")  # cost total, first, last, watermark, 4 x (EW mean, EW var)
_TAIL = struct.Struct("<qBB")  # newest bucket index, last status, flags
_ARRAY = struct.Struct("<BH")  # int array header: width code, length
_FLAG_LAST_TARGET: Final = 1

# Int array width codes: all zeros, then the narrowest struct code that fits, then a
# decimal-text fallback so that no sum, however absurd, can make serialization fail.
_ZERO, _TEXT = 0, 5
_WIDTHS: Final = ((1, "B", 1 << 8), (2, "H", 1 << 16), (3, "I", 1 << 32), (4, "Q", 1 << 64))
_CODE_CHAR: Final = {code: (char, struct.calcsize("<" + char)) for code, char, _ in _WIDTHS}

_STATUS_CODE: Final = {"ok": 1, "error": 2, "denied": 3}
_STATUS_NAME: Final = {code: name for name, code in _STATUS_CODE.items()}
_KINDS: Final = ("tool", "llm", "api", "other")
_KIND_SLOT: Final = {kind: slot for slot, kind in enumerate(_KINDS)}

_HLL_BITS: Final = 7
_HLL_M: Final = 1 << _HLL_BITS  # 128 registers
_HLL_MASK: Final = _HLL_M - 1
_HLL_RANK0: Final = 64 - _HLL_BITS + 1  # rank when the remaining 57 bits are all zero
_HLL_ALPHA: Final = 0.7213 / (1.0 + 1.079 / _HLL_M)
_HLL_POW: Final = tuple(2.0**-r for r in range(_HLL_RANK0 + 1))

_MAX_VALUE: Final = 1e9  # clamp for cost (USD) and latency (ms) of one event: keeps EW finite
_NANO: Final = 1e9  # bucket costs are integer nano-USD: exact, order-independent sums
_NO_BUCKET: Final = -(1 << 63)
_MAX_CAPACITY: Final = 4096


@dataclass(slots=True)
class WindowStats:
    """Events of one agent in an event-time interval ``[start, end]`` (epoch seconds).

    ``end`` is the time the window was asked "as of" (the agent's watermark by default) and
    ``start`` the start of the oldest whole bucket included, so ``seconds`` can exceed the
    requested length by up to one bucket width (or fall short of it when the ring is shorter).
    Every call returns a new object (not frozen: a frozen dataclass takes four times as long
    to build, and detectors ask for a window on many events).
    """

    count: int
    errors: int
    denied: int
    cost_usd: float
    start: float
    end: float

    @property
    def seconds(self) -> float:
        """Length of the covered interval."""
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class EwStats:
    """Exponentially weighted mean and standard deviation of one per-event quantity.

    ``count`` is how many observations were folded in; while it is below the half-life's
    ``1 / alpha`` the statistics are the exact (population) mean and std of all of them.
    """

    mean: float
    std: float
    count: int


@dataclass(frozen=True, slots=True)
class ActionCount:
    """A Space-Saving estimate: ``count - error <= true count <= count``."""

    action: str
    count: int
    error: int


@dataclass(frozen=True, slots=True)
class TransitionCount:
    """A Space-Saving estimate of ``prev -> action``: ``count - error <= true <= count``."""

    prev: str
    action: str
    count: int
    error: int


def _hash64(text: str) -> int:
    """Stable 64-bit hash (``hash()`` is salted per process, this is not)."""
    digest = blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


_HASHES: dict[str, int] = {}  # _hash64 of recent targets (read inline: agents reuse paths)
_HASHES_MAX: Final = 1 << 16


def _epoch_to_rfc3339(value: float | None) -> str | None:
    return None if value is None else format_ts(datetime.fromtimestamp(value, tz=UTC))


def _pack_ints(out: list[bytes], values: Sequence[int]) -> None:
    top = max(values, default=0)
    if top == 0:
        out.append(_ARRAY.pack(_ZERO, len(values)))
        return
    for code, char, limit in _WIDTHS:
        if top < limit:
            out.append(_ARRAY.pack(code, len(values)))
            out.append(struct.pack(f"<{len(values)}{char}", *values))
            return
    text = ",".join(map(str, values)).encode("ascii")
    out.append(_ARRAY.pack(_TEXT, len(values)))
    out.append(struct.pack("<I", len(text)))
    out.append(text)


class _Reader:
    """Sequential decoder over one serialized baseline; raises ``ValueError`` when short."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, size: int) -> bytes:
        end = self.pos + size
        if size < 0 or end > len(self.data):
            raise ValueError("truncated baseline record")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def unpack(self, layout: struct.Struct) -> tuple[Any, ...]:
        return layout.unpack(self.take(layout.size))

    def ints(self) -> list[int]:
        code, length = self.unpack(_ARRAY)
        if code == _ZERO:
            return [0] * length
        if code == _TEXT:
            (size,) = struct.unpack("<I", self.take(4))
            text = self.take(size).decode("ascii")
            values = [int(item) for item in text.split(",")]
            if len(values) != length:
                raise ValueError("corrupt baseline record: bad integer array")
            return values
        if code not in _CODE_CHAR:
            raise ValueError(f"corrupt baseline record: unknown array code {code}")
        char, width = _CODE_CHAR[code]
        return list(struct.unpack(f"<{length}{char}", self.take(width * length)))

    def strings(self) -> list[str]:
        lengths = self.ints()
        blob = self.take(sum(lengths))
        out: list[str] = []
        pos = 0
        for length in lengths:
            out.append(blob[pos : pos + length].decode("utf-8", "surrogatepass"))
            pos += length
        return out


@cython.cclass
@cython.annotation_typing(True)  # the C types declared below; methods opt in
class AgentBaseline:
    """Rolling behavioural baseline of one agent, folded one :class:`ActionEvent` at a time.

    Parameters
    ----------
    agent_id
        The agent this baseline belongs to; :meth:`update` rejects other agents' events.
    fleet
        The agent's peer group.
    half_life
        Half-life of the EW statistics, in events: an observation's weight halves after
        this many further events. ``alpha = 1 - 2 ** (-1 / half_life)``.
    bucket_seconds
        Width of one event-time bucket.
    buckets
        Number of buckets in the ring; windows reach back ``buckets * bucket_seconds``.
    max_actions
        Capacity of the Space-Saving action table.
    max_transitions
        Capacity of the Space-Saving ``prev -> action`` table.

    Notes
    -----
    *Determinism.* The state after a sequence of events depends only on that sequence (no
    wall clock, no salted ``hash()``, dict orders are serialized), so the live worker and a
    backtest agree byte for byte.

    *Event time.* ``first_seen`` is the earliest event time seen, ``last_seen`` the time of
    the most recently folded event and ``watermark`` the latest event time seen. The
    inter-arrival time of an event is how far it moves the watermark (0 for late events), so
    its mean is exactly ``span / (events - 1)`` and its inverse the event rate.

    *Windows.* Events go into the bucket of their event time. A late event whose bucket is
    still in the ring is added to it; an event older than the ring counts in the totals and
    EW statistics only. Buckets that fall out of the ring as the watermark advances are
    dropped (lazily: a slot is reset when reused).

    *Bounded tables.* Action and transition tables use Space-Saving: a new key entering a
    full table replaces the key with the smallest count (the oldest such on ties) and
    inherits that count as its ``error``. For ``N`` folded events and capacity ``k``, each
    reported ``count`` over-estimates the true count by at most ``error <= N / k``, and every
    key with a true count above ``N / k`` is in the table. An adversarial stream of unique
    names therefore cannot grow the state beyond the capacities.

    *Latency* of 0 ms is the schema's "not reported" default and is not folded into the
    latency statistics. Cost and latency of one event are clamped to 1e9 so that no valid
    event can make the EW statistics overflow.

    Examples
    --------
    >>> from datetime import UTC, datetime
    >>> from agentwatch.schemas.events import ActionEvent
    >>> b = AgentBaseline("a1", "research")
    >>> for i, action in enumerate(["search", "read", "search", "read"]):
    ...     b.update(ActionEvent(event_id=f"e{i}", agent_id="a1", action=action,
    ...                          ts=datetime(2026, 1, 1, 0, 0, i * 10, tzinfo=UTC),
    ...                          target="https://example.com", cost_usd=0.01,
    ...                          status="error" if i == 3 else "ok"))
    >>> b.count, b.errors, round(b.cost_usd, 2)
    (4, 1, 0.04)
    >>> b.top_actions()
    [ActionCount(action='read', count=2, error=0), ActionCount(action='search', count=2, error=0)]
    >>> b.transition_count("search", "read")
    2
    >>> b.window(60).count, b.ew_failure.mean
    (4, 0.25)
    >>> AgentBaseline.from_bytes(b.to_bytes()) == b
    True
    """

    # Compiled, the numbers :meth:`update` folds are C doubles and the sizes C integers (the
    # arithmetic is IEEE double either way: the same results); the rest are Python objects.
    _alpha: cython.double
    _n0: cython.double
    _half_life: cython.double
    _bucket_s: cython.double
    _cost: cython.double
    _first: cython.double
    _last: cython.double
    _watermark: cython.double
    _cost_mean: cython.double
    _cost_var: cython.double
    _lat_mean: cython.double
    _lat_var: cython.double
    _fail_mean: cython.double
    _fail_var: cython.double
    _dt_mean: cython.double
    _dt_var: cython.double
    _nbuckets: cython.Py_ssize_t
    _max_actions: cython.Py_ssize_t
    _max_trans: cython.Py_ssize_t
    _agent_id: str
    _fleet: str
    _n: int
    _errors: int
    _denied: int
    _kinds: list[int]
    _in_tokens: int
    _out_tokens: int
    _lat_n: int
    _head: int
    _b_idx: list[int]
    _b_n: list[int]
    _b_err: list[int]
    _b_denied: list[int]
    _b_cost: list[int]
    _hist: dict[str, int]
    _hist_err: dict[str, int]
    _trans: dict[tuple[str, str], int]
    _trans_err: dict[tuple[str, str], int]
    _hll: bytearray
    _last_action: str | None
    _last_status: str | None
    _last_target: str | None
    _repeat: int

    __slots__ = (
        "_agent_id",
        "_alpha",
        "_b_cost",
        "_b_denied",
        "_b_err",
        "_b_idx",
        "_b_n",
        "_bucket_s",
        "_cost",
        "_cost_mean",
        "_cost_var",
        "_denied",
        "_dt_mean",
        "_dt_var",
        "_errors",
        "_fail_mean",
        "_fail_var",
        "_first",
        "_fleet",
        "_half_life",
        "_head",
        "_hist",
        "_hist_err",
        "_hll",
        "_in_tokens",
        "_kinds",
        "_last",
        "_last_action",
        "_last_status",
        "_last_target",
        "_lat_mean",
        "_lat_n",
        "_lat_var",
        "_max_actions",
        "_max_trans",
        "_n",
        "_n0",
        "_nbuckets",
        "_out_tokens",
        "_repeat",
        "_trans",
        "_trans_err",
        "_watermark",
    )

    @cython.annotation_typing(False)
    def __init__(
        self,
        agent_id: str,
        fleet: str = "default",
        *,
        half_life: float = 256.0,
        bucket_seconds: float = 60.0,
        buckets: int = 60,
        max_actions: int = 32,
        max_transitions: int = 64,
    ) -> None:
        if not (math.isfinite(half_life) and half_life > 0):
            raise ValueError(f"half_life must be a positive number of events, got {half_life}")
        if not (math.isfinite(bucket_seconds) and bucket_seconds > 0):
            raise ValueError(f"bucket_seconds must be positive, got {bucket_seconds}")
        for name, value, upper in (
            ("buckets", buckets, 65535),
            ("max_actions", max_actions, _MAX_CAPACITY),
            ("max_transitions", max_transitions, _MAX_CAPACITY),
        ):
            if not 1 <= value <= upper:
                raise ValueError(f"{name} must be in 1..{upper}, got {value}")
        self._agent_id = agent_id
        self._fleet = fleet
        self._half_life = float(half_life)
        self._alpha = -math.expm1(-math.log(2.0) / self._half_life)
        self._n0 = 1.0 / self._alpha  # below this many observations the EW stats are exact
        self._bucket_s = float(bucket_seconds)
        self._nbuckets = buckets
        self._max_actions = max_actions
        self._max_trans = max_transitions

        self._n = 0
        self._errors = 0
        self._denied = 0
        self._kinds = [0, 0, 0, 0]
        self._cost = 0.0
        self._in_tokens = 0
        self._out_tokens = 0
        self._first = self._last = self._watermark = 0.0  # meaningful once _n > 0

        self._cost_mean = self._cost_var = 0.0
        self._lat_mean = self._lat_var = 0.0
        self._lat_n = 0
        self._fail_mean = self._fail_var = 0.0
        self._dt_mean = self._dt_var = 0.0

        self._head = _NO_BUCKET
        self._b_idx = [_NO_BUCKET] * buckets
        self._b_n = [0] * buckets
        self._b_err = [0] * buckets
        self._b_denied = [0] * buckets
        self._b_cost = [0] * buckets  # nano-USD

        self._hist = {}
        self._hist_err = {}
        self._trans = {}
        self._trans_err = {}
        self._hll = bytearray(_HLL_M)

        self._last_action = None
        self._last_status = None
        self._last_target = None
        self._repeat = 0

    # ------------------------------------------------------------------ folding events

    def update(self, event: ActionEvent) -> None:
        """Fold one event into the baseline.

        Parameters
        ----------
        event
            An event of this baseline's agent, in the order the stream delivers it.

        Raises
        ------
        ValueError
            If the event belongs to another agent.
        """
        if event.agent_id != self._agent_id:
            raise ValueError(
                f"event of agent {event.agent_id!r} folded into baseline of {self._agent_id!r}"
            )
        when = event.ts_epoch
        ts: float = when  # C doubles once compiled (annotation_typing)
        action = event.action
        status = event.status
        target = event.target
        cost: float = event.cost_usd
        if cost > _MAX_VALUE:  # noqa: PLR1730 - an if is cheaper than min() here
            cost = _MAX_VALUE

        # counters and totals
        n = self._n + 1
        self._n = n
        fail: float
        if status == "ok":
            fail = 0.0
            errored = denied = 0
        elif status == "error":
            self._errors += 1
            fail = 1.0
            errored, denied = 1, 0
        else:
            self._denied += 1
            fail = 1.0
            errored, denied = 0, 1
        self._kinds[_KIND_SLOT[event.kind]] += 1
        self._cost += cost
        self._in_tokens += event.input_tokens
        self._out_tokens += event.output_tokens

        # event time
        dt: float
        if n == 1:
            self._first = self._watermark = ts
            dt = -1.0
        else:
            watermark = self._watermark
            if ts < self._first:  # noqa: PLR1730
                self._first = ts
            if ts > watermark:
                dt = ts - watermark
                self._watermark = ts
            else:
                dt = 0.0
        self._last = ts

        # EW mean and variance (West/Finch); exact mean/variance while warming up
        n0: float = self._n0
        a: float = 1.0 / n if n < n0 else self._alpha
        diff: float = cost - self._cost_mean
        incr: float = a * diff
        self._cost_mean += incr
        self._cost_var = (1.0 - a) * (self._cost_var + diff * incr)
        diff = fail - self._fail_mean
        incr = a * diff
        self._fail_mean += incr
        self._fail_var = (1.0 - a) * (self._fail_var + diff * incr)
        if dt >= 0.0:
            k = n - 1
            a = 1.0 / k if k < n0 else self._alpha
            diff = dt - self._dt_mean
            incr = a * diff
            self._dt_mean += incr
            self._dt_var = (1.0 - a) * (self._dt_var + diff * incr)
        latency: float = event.latency_ms
        if latency > 0.0:
            if latency > _MAX_VALUE:  # noqa: PLR1730
                latency = _MAX_VALUE
            k = self._lat_n + 1
            self._lat_n = k
            a = 1.0 / k if k < n0 else self._alpha
            diff = latency - self._lat_mean
            incr = a * diff
            self._lat_mean += incr
            self._lat_var = (1.0 - a) * (self._lat_var + diff * incr)

        # event-time bucket ring
        bucket = int(when // self._bucket_s)  # Python's float floor division, not C's floor(/)
        head = self._head
        if bucket > head:
            self._head = head = bucket
        size = self._nbuckets
        if bucket > head - size:
            slot = bucket % size
            if self._b_idx[slot] != bucket:
                self._b_idx[slot] = bucket
                self._b_n[slot] = 1
                self._b_err[slot] = errored
                self._b_denied[slot] = denied
                self._b_cost[slot] = round(cost * _NANO)
            else:
                self._b_n[slot] += 1
                if fail:
                    self._b_err[slot] += errored
                    self._b_denied[slot] += denied
                if cost:
                    self._b_cost[slot] += round(cost * _NANO)

        # Space-Saving action histogram
        hist = self._hist
        count = hist.get(action)
        if count is not None:
            hist[action] = count + 1
        elif len(hist) < self._max_actions:
            hist[action] = 1
        else:
            victim = min(hist, key=hist.__getitem__)
            floor = hist.pop(victim)
            self._hist_err.pop(victim, None)
            hist[action] = floor + 1
            self._hist_err[action] = floor

        # Space-Saving transition table
        prev = self._last_action
        if prev is not None:
            trans = self._trans
            pair = (prev, action)
            count = trans.get(pair)
            if count is not None:
                trans[pair] = count + 1
            elif len(trans) < self._max_trans:
                trans[pair] = 1
            else:
                victim_pair = min(trans, key=trans.__getitem__)
                floor = trans.pop(victim_pair)
                self._trans_err.pop(victim_pair, None)
                trans[pair] = floor + 1
                self._trans_err[pair] = floor

        # distinct targets and the current run of identical (action, target)
        last_target = self._last_target
        if target is not None and target != last_target:
            h = _HASHES.get(target)
            if h is None:
                if len(_HASHES) >= _HASHES_MAX:
                    _HASHES.clear()
                h = _HASHES[target] = _hash64(target)
            rank = _HLL_RANK0 - (h >> _HLL_BITS).bit_length()
            registers = self._hll
            if rank > registers[h & _HLL_MASK]:  # noqa: PLR1730
                registers[h & _HLL_MASK] = rank
        if action == prev and target == last_target:
            self._repeat += 1
        else:
            self._repeat = 1
        self._last_action = action
        self._last_status = status
        self._last_target = target

    # ------------------------------------------------------------------ reading

    @property
    @cython.annotation_typing(False)
    def agent_id(self) -> str:
        """The agent this baseline belongs to."""
        return self._agent_id

    @property
    @cython.annotation_typing(False)
    def fleet(self) -> str:
        """The agent's peer group."""
        return self._fleet

    @property
    @cython.annotation_typing(False)
    def count(self) -> int:
        """Events folded in."""
        return self._n

    @property
    @cython.annotation_typing(False)
    def errors(self) -> int:
        """Events with ``status == "error"``."""
        return self._errors

    @property
    @cython.annotation_typing(False)
    def denied(self) -> int:
        """Events with ``status == "denied"``."""
        return self._denied

    @property
    @cython.annotation_typing(False)
    def kinds(self) -> dict[str, int]:
        """Events per kind (``tool``, ``llm``, ``api``, ``other``)."""
        return dict(zip(_KINDS, self._kinds, strict=True))

    @property
    @cython.annotation_typing(False)
    def cost_usd(self) -> float:
        """Total cost (each event clamped at 1e9 USD)."""
        return self._cost

    @property
    @cython.annotation_typing(False)
    def input_tokens(self) -> int:
        """Total input tokens."""
        return self._in_tokens

    @property
    @cython.annotation_typing(False)
    def output_tokens(self) -> int:
        """Total output tokens."""
        return self._out_tokens

    @property
    @cython.annotation_typing(False)
    def first_seen(self) -> float | None:
        """Earliest event time seen (epoch seconds), ``None`` before the first event."""
        return self._first if self._n else None

    @property
    @cython.annotation_typing(False)
    def last_seen(self) -> float | None:
        """Event time of the most recently folded event (epoch seconds)."""
        return self._last if self._n else None

    @property
    @cython.annotation_typing(False)
    def watermark(self) -> float | None:
        """Latest event time seen (epoch seconds); windows are "as of" it."""
        return self._watermark if self._n else None

    @property
    @cython.annotation_typing(False)
    def last_action(self) -> str | None:
        """Action of the most recently folded event."""
        return self._last_action

    @property
    @cython.annotation_typing(False)
    def last_status(self) -> str | None:
        """Status of the most recently folded event."""
        return self._last_status

    @property
    @cython.annotation_typing(False)
    def last_target(self) -> str | None:
        """Target of the most recently folded event (``None`` if it had none)."""
        return self._last_target

    @property
    @cython.annotation_typing(False)
    def repeat(self) -> int:
        """Consecutive events, up to the last one, with the same ``(action, target)``."""
        return self._repeat

    @property
    @cython.annotation_typing(False)
    def alpha(self) -> float:
        """EW smoothing factor derived from the half-life."""
        return self._alpha

    @property
    @cython.annotation_typing(False)
    def ew_cost(self) -> EwStats:
        """EW statistics of cost per event (USD)."""
        return EwStats(self._cost_mean, math.sqrt(max(self._cost_var, 0.0)), self._n)

    @property
    @cython.annotation_typing(False)
    def ew_latency(self) -> EwStats:
        """EW statistics of ``latency_ms`` over events that reported one (> 0)."""
        return EwStats(self._lat_mean, math.sqrt(max(self._lat_var, 0.0)), self._lat_n)

    @property
    @cython.annotation_typing(False)
    def ew_failure(self) -> EwStats:
        """EW statistics of the failure indicator (error or denied = 1): a failure rate."""
        return EwStats(self._fail_mean, math.sqrt(max(self._fail_var, 0.0)), self._n)

    @property
    @cython.annotation_typing(False)
    def ew_interval(self) -> EwStats:
        """EW statistics of the event inter-arrival time (seconds of event time)."""
        return EwStats(self._dt_mean, math.sqrt(max(self._dt_var, 0.0)), max(self._n - 1, 0))

    @property
    @cython.annotation_typing(False)
    def rate(self) -> float:
        """EW event rate (events per second): ``1 / ew_interval.mean``; 0 if unknown."""
        return 1.0 / self._dt_mean if self._dt_mean > 0.0 else 0.0

    @cython.annotation_typing(False)
    def window(self, seconds: float, at: float | None = None) -> WindowStats:
        """Events, errors, denials and cost in the last ``seconds`` of event time.

        Parameters
        ----------
        seconds
            Window length. Whole buckets overlapping ``(at - seconds, at]`` are summed, so
            the result covers up to one bucket more than asked, never less (except when
            capped by the ring's length); :attr:`WindowStats.seconds` is the exact span.
        at
            Event time the window ends at; defaults to the agent's watermark. Pass a later
            time (a fleet-wide watermark) to see an idle agent's buckets age out. An earlier
            ``at`` includes its own bucket whole, which may hold events after ``at``.

        Returns
        -------
        WindowStats
            Zeros (with ``start == end``) before the first event.
        """
        if not seconds > 0.0:
            raise ValueError(f"window length must be positive, got {seconds}")
        if at is None:
            if not self._n:
                return WindowStats(0, 0, 0, 0.0, 0.0, 0.0)
            end = self._watermark
        else:
            end = at
        width = self._bucket_s
        head = self._head
        first = max(int((end - seconds) // width), head - self._nbuckets + 1)
        last = min(int(end // width), head)
        start = min(first * width, end)
        count = errors = denied = cost = 0
        size = self._nbuckets
        index, events, failed, refused, spent = (
            self._b_idx,
            self._b_n,
            self._b_err,
            self._b_denied,
            self._b_cost,
        )
        for bucket in range(first, last + 1):
            slot = bucket % size
            if index[slot] == bucket:
                count += events[slot]
                errors += failed[slot]
                denied += refused[slot]
                cost += spent[slot]
        return WindowStats(count, errors, denied, cost / _NANO, start, end)

    @cython.annotation_typing(False)
    def action_count(self, action: str) -> int:
        """Estimated count of ``action`` (an upper bound; 0 if it is not in the table)."""
        return self._hist.get(action, 0)

    @cython.annotation_typing(False)
    def top_actions(self, limit: int | None = None) -> list[ActionCount]:
        """Tracked actions, most frequent first (ties by name)."""
        items = sorted(self._hist.items(), key=lambda item: (-item[1], item[0]))
        err = self._hist_err
        return [ActionCount(name, count, err.get(name, 0)) for name, count in items[:limit]]

    @cython.annotation_typing(False)
    def transition_count(self, prev: str, action: str) -> int:
        """Estimated count of ``prev -> action`` (upper bound; 0 if not tracked)."""
        return self._trans.get((prev, action), 0)

    @cython.annotation_typing(False)
    def top_transitions(self, limit: int | None = None) -> list[TransitionCount]:
        """Tracked transitions, most frequent first (ties by names)."""
        items = sorted(self._trans.items(), key=lambda item: (-item[1], item[0]))
        err = self._trans_err
        return [
            TransitionCount(pair[0], pair[1], count, err.get(pair, 0))
            for pair, count in items[:limit]
        ]

    @cython.annotation_typing(False)
    def distinct_targets(self) -> float:
        """HyperLogLog estimate of distinct targets (standard error about 9 %)."""
        registers = self._hll
        zeros = registers.count(0)
        if zeros == _HLL_M:
            return 0.0
        pow2 = _HLL_POW
        estimate = _HLL_ALPHA * _HLL_M * _HLL_M / math.fsum(pow2[r] for r in registers)
        if estimate <= 2.5 * _HLL_M and zeros:
            estimate = _HLL_M * math.log(_HLL_M / zeros)  # linear counting for small sets
        return estimate

    @cython.annotation_typing(False)
    def to_dict(self) -> dict[str, Any]:
        """A readable, JSON-able view (for ``GET /agents/{id}``)."""

        def ew(stats: EwStats) -> dict[str, float | int]:
            return {"mean": stats.mean, "std": stats.std, "n": stats.count}

        def win(seconds: float) -> dict[str, Any]:
            stats = self.window(seconds)
            return {
                "count": stats.count,
                "errors": stats.errors,
                "denied": stats.denied,
                "cost_usd": stats.cost_usd,
                "seconds": stats.seconds,
            }

        return {
            "agent_id": self._agent_id,
            "fleet": self._fleet,
            "events": self._n,
            "errors": self._errors,
            "denied": self._denied,
            "kinds": self.kinds,
            "cost_usd": self._cost,
            "input_tokens": self._in_tokens,
            "output_tokens": self._out_tokens,
            "first_seen": _epoch_to_rfc3339(self.first_seen),
            "last_seen": _epoch_to_rfc3339(self.last_seen),
            "watermark": _epoch_to_rfc3339(self.watermark),
            "ew": {
                "cost_usd": ew(self.ew_cost),
                "latency_ms": ew(self.ew_latency),
                "failure": ew(self.ew_failure),
                "interval_s": ew(self.ew_interval),
                "rate_per_s": self.rate,
                "half_life_events": self._half_life,
            },
            "windows": {"1m": win(60.0), "5m": win(300.0), "60m": win(3600.0)},
            "top_actions": [asdict(item) for item in self.top_actions(10)],
            "top_transitions": [asdict(item) for item in self.top_transitions(10)],
            "distinct_targets": round(self.distinct_targets()),
            "last_action": self._last_action,
            "last_status": self._last_status,
            "last_target": self._last_target,
            "repeat": self._repeat,
        }

    # ------------------------------------------------------------------ serialization

    @cython.annotation_typing(False)
    def to_bytes(self) -> bytes:
        """Serialize to the compact, versioned binary record (see :data:`FORMAT_VERSION`).

        Layout (little-endian): ``b"AW"``, version byte, config, 12 doubles, newest bucket
        index/last status/flags, then integer arrays (each a width code, a length and packed
        values) for counters, strings, the two Space-Saving tables and the live buckets,
        then the 128 HyperLogLog registers.
        """
        hist = self._hist
        trans = self._trans
        # every action name once, numbered in first-seen order: the histogram's, then the
        # transitions' (each pair's two ends), then the last action
        index = {name: i for i, name in enumerate(hist)}
        prevs: list[int] = []
        actions: list[int] = []
        for prev, action in trans:
            i = index.get(prev)
            if i is None:
                i = index[prev] = len(index)
            prevs.append(i)
            i = index.get(action)
            if i is None:
                i = index[action] = len(index)
            actions.append(i)
        if self._last_action is not None and self._last_action not in index:
            index[self._last_action] = len(index)

        flags = 0
        strings = [self._agent_id, self._fleet]
        if self._last_target is not None:
            flags |= _FLAG_LAST_TARGET
            strings.append(self._last_target)
        strings.extend(index)
        encoded = [text.encode("utf-8", "surrogatepass") for text in strings]

        out = [
            _MAGIC,
            bytes((FORMAT_VERSION,)),
            _CONF.pack(
                self._half_life,
                self._bucket_s,
                self._nbuckets,
                self._max_actions,
                self._max_trans,
            ),
            _FLOATS.pack(
                self._cost,
                self._first,
                self._last,
                self._watermark,
                self._cost_mean,
                self._cost_var,
                self._lat_mean,
                self._lat_var,
                self._fail_mean,
                self._fail_var,
                self._dt_mean,
                self._dt_var,
            ),
            _TAIL.pack(
                self._head if self._n else 0,
                _STATUS_CODE.get(self._last_status or "", 0),
                flags,
            ),
        ]
        last_action = -1 if self._last_action is None else index[self._last_action]
        _pack_ints(
            out,
            [
                self._n,
                self._errors,
                self._denied,
                *self._kinds,
                self._in_tokens,
                self._out_tokens,
                self._lat_n,
                self._repeat,
                last_action + 1,
            ],
        )
        _pack_ints(out, [len(item) for item in encoded])
        out.extend(encoded)

        hist_err = self._hist_err
        _pack_ints(out, list(hist.values()))
        _pack_ints(out, [hist_err.get(name, 0) for name in hist] if hist_err else [])
        trans_err = self._trans_err
        _pack_ints(out, prevs)
        _pack_ints(out, actions)
        _pack_ints(out, list(trans.values()))
        _pack_ints(out, [trans_err.get(pair, 0) for pair in trans] if trans_err else [])

        columns: list[list[int]] = [[], [], [], []]
        if self._n:
            # oldest-first rotation of the ring, from its first live slot with events (the
            # head is always live); slots after it that are not live are zeroed
            size = self._nbuckets
            start = (self._head + 1) % size
            oldest = self._head - size + 1  # the bucket index a live slot k holds: oldest + k
            idx = self._b_idx[start:] + self._b_idx[:start]
            counts = self._b_n[start:] + self._b_n[:start]
            first = size - 1
            for k in range(size):
                if counts[k] and idx[k] == oldest + k:
                    first = k
                    break
            dead = [k - first for k in range(first + 1, size) if idx[k] != oldest + k]
            columns = [counts[first:]]
            for ring in (self._b_err, self._b_denied, self._b_cost):
                columns.append((ring[start:] + ring[:start])[first:])
            for col in columns:
                for k in dead:
                    col[k] = 0
        for col in columns:
            _pack_ints(out, col)

        out.append(bytes(self._hll))
        return b"".join(out)

    @classmethod
    @cython.annotation_typing(False)
    def from_bytes(cls, data: bytes) -> AgentBaseline:
        """Rebuild a baseline from :meth:`to_bytes` output.

        Raises
        ------
        ValueError
            If ``data`` is not a baseline record or has an unknown format version.
        """
        data = bytes(data)
        if data[:2] != _MAGIC or len(data) < 3:
            raise ValueError("not an agentwatch baseline record")
        version = data[2]
        if version != FORMAT_VERSION:
            raise ValueError(f"unsupported baseline format version {version}")
        try:
            return cls._decode_v1(_Reader(data[3:]))
        except (struct.error, UnicodeDecodeError, IndexError, KeyError) as exc:
            raise ValueError(f"corrupt baseline record: {exc}") from None

    @classmethod
    def _decode_v1(cls, reader: _Reader) -> AgentBaseline:
        half_life, bucket_s, nbuckets, max_actions, max_trans = reader.unpack(_CONF)
        floats = reader.unpack(_FLOATS)
        head, status_code, flags = reader.unpack(_TAIL)
        ints = reader.ints()
        if len(ints) != 12:
            raise ValueError("corrupt baseline record: bad counter block")
        strings = reader.strings()
        agent_id, fleet = strings[0], strings[1]
        last_target = None
        rest = 2
        if flags & _FLAG_LAST_TARGET:
            last_target = strings[2]
            rest = 3
        names = strings[rest:]

        baseline: AgentBaseline = cls(
            agent_id,
            fleet,
            half_life=half_life,
            bucket_seconds=bucket_s,
            buckets=nbuckets,
            max_actions=max_actions,
            max_transitions=max_trans,
        )
        (
            baseline._n,
            baseline._errors,
            baseline._denied,
            baseline._kinds[0],
            baseline._kinds[1],
            baseline._kinds[2],
            baseline._kinds[3],
            baseline._in_tokens,
            baseline._out_tokens,
            baseline._lat_n,
            baseline._repeat,
            last_action,
        ) = ints[:12]
        (
            baseline._cost,
            baseline._first,
            baseline._last,
            baseline._watermark,
            baseline._cost_mean,
            baseline._cost_var,
            baseline._lat_mean,
            baseline._lat_var,
            baseline._fail_mean,
            baseline._fail_var,
            baseline._dt_mean,
            baseline._dt_var,
        ) = floats
        if baseline._n:
            baseline._head = head
        baseline._last_status = _STATUS_NAME.get(status_code)
        baseline._last_target = last_target
        baseline._last_action = names[last_action - 1] if last_action else None

        hist_counts = reader.ints()
        hist_err = reader.ints()
        if len(hist_counts) > len(names):
            raise ValueError("corrupt baseline record: bad action table")
        hist_err = hist_err or [0] * len(hist_counts)
        hist_names = names[: len(hist_counts)]
        for name, count, err in zip(hist_names, hist_counts, hist_err, strict=True):
            baseline._hist[name] = count
            if err:
                baseline._hist_err[name] = err
        froms, tos, counts, errs = reader.ints(), reader.ints(), reader.ints(), reader.ints()
        errs = errs or [0] * len(counts)
        for i, j, count, err in zip(froms, tos, counts, errs, strict=True):
            pair = (names[i], names[j])
            baseline._trans[pair] = count
            if err:
                baseline._trans_err[pair] = err

        b_n, b_err, b_denied, b_cost = reader.ints(), reader.ints(), reader.ints(), reader.ints()
        if not len(b_n) == len(b_err) == len(b_denied) == len(b_cost) <= nbuckets:
            raise ValueError("corrupt baseline record: bad bucket ring")
        oldest = head - len(b_n) + 1
        for offset, events in enumerate(b_n):
            if events:
                bucket = oldest + offset
                slot = bucket % nbuckets
                baseline._b_idx[slot] = bucket
                baseline._b_n[slot] = events
                baseline._b_err[slot] = b_err[offset]
                baseline._b_denied[slot] = b_denied[offset]
                baseline._b_cost[slot] = b_cost[offset]

        baseline._hll[:] = reader.take(_HLL_M)
        if reader.pos != len(reader.data):
            raise ValueError("corrupt baseline record: trailing bytes")
        return baseline

    # ------------------------------------------------------------------ dunder

    @cython.annotation_typing(False)
    def __eq__(self, other: object) -> bool:
        """Baselines are equal when their serialized states are."""
        if not isinstance(other, AgentBaseline):
            return NotImplemented
        return self.to_bytes() == other.to_bytes()

    __hash__ = None  # type: ignore[assignment]

    @cython.annotation_typing(False)
    def __repr__(self) -> str:
        return (
            f"AgentBaseline(agent_id={self._agent_id!r}, fleet={self._fleet!r}, "
            f"events={self._n}, watermark={_epoch_to_rfc3339(self.watermark)})"
        )
