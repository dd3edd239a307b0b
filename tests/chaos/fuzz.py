"""A seeded generator of fuzzed ``actions`` records, each with the outcome it must have.

Every record is either **valid** (``agent`` is set: that agent's baseline must count it
exactly once), a **duplicate** of an earlier valid record (counted once, never dead-lettered)
or **bad** (it must reach the dead-letter topic; ``reasons`` holds the acceptable values of
its ``agentwatch.reason`` header, empty when any reason will do). The same seed and size give
the same records, byte for byte.

Bad records cover what a careless producer or an attacker sends: random bytes, truncated and
deeply nested JSON, NaN and Infinity, wrong types, negative numbers, missing and unknown
fields, records of 64 KiB to 1.1 MB, odd unicode (NUL, BOM, U+202E, U+FFFF, lone surrogates,
invalid UTF-8) in ids and names, ids with ``/`` and ``..``, key/agent_id mismatches and
tombstones. Valid records include events without a Kafka key, odd unicode in free text,
extreme numbers, and agents that move to another fleet.
"""

from __future__ import annotations

import json
import random
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

__all__ = [
    "BAD_AGENT_IDS",
    "BAD_NAME_CHARS",
    "CATEGORIES",
    "FuzzGenerator",
    "FuzzRecord",
    "FuzzSummary",
]

T0 = datetime(2026, 6, 1, tzinfo=UTC)
MAX_EVENT_BYTES = 64 * 1024  # the documented per-event limit (DESIGN.md)
HUGE_MIN, HUGE_MAX = 900_000, 1_100_000

BAD_JSON = frozenset({"bad_json"})
INVALID = frozenset({"invalid"})
TOO_LARGE = frozenset({"too_large"})
KEY_MISMATCH = frozenset({"key_mismatch"})
UNPARSEABLE = frozenset({"bad_json", "invalid"})  # syntax or schema, the parser's choice
ANY = frozenset[str]()

#: Agent ids the documented charset (``[A-Za-z0-9._:@-]+``, not ``.`` or ``..``, at most
#: 128 characters) forbids: path separators and traversal, control, bidi and non-characters,
#: a newline that would forge a log line, and the empty and over-long ids.
BAD_AGENT_IDS = (
    "/",
    "team/a",
    "a/",
    ".",
    "..",
    "../../etc",
    "a/../b",
    "a\x00b",
    "\ufeffa",
    "a\u202eb",
    "a\uffffb",
    "a\nFORGED log line",
    "a\tb",
    "a b",
    "\u00e4gent",
    "x" * 129,
    "",
)

#: What no name (action, fleet, event_id) may hold: controls, bidi overrides, the BOM,
#: non-characters and line separators.
BAD_NAME_CHARS = ("\x00", "\n", "\x1b[31m", "\u202e", "\ufeff", "\uffff", "\u2028", "\x85")

#: Free text that must pass through untouched (counted, escaped wherever it is logged).
ODD_TEXT = (
    "nul\x00inside",
    "\ufeffbom first",
    "invoice\u202etxt.exe",
    "non-character \uffff and \ufffe",
    "emoji \U0001f600 and \u4e2d\u6587",
    "line one\nFORGED log line",
    "carriage\rreturn",
    "../../etc/passwd",
    "C:\\Windows\\system32",
    "'; DROP TABLE users; --",
    "\u0085next line\u2028separator",
    "zero\u200bwidth",
)

EXTREME_FLOATS = (0.0, -0.0, 5e-324, 1e-300, 1e300, 1.7976931348623157e308)
EXTREME_INTS = (0, 1, 2**53)

ACTIONS = ("search", "read_file", "write_file", "http_get", "chat", "send_email", "sql_query")
KINDS = ("tool", "llm", "api", "other")
STATUSES = ("ok", "ok", "ok", "error", "denied")

#: (category, weight, expected). ``expected``: "count" (valid), "dup" (a repeat of a valid
#: record) or the frozenset of acceptable dead-letter reasons.
CATEGORIES: tuple[tuple[str, float, object], ...] = (
    ("valid", 0.30, "count"),
    ("valid_keyless", 0.06, "count"),
    ("valid_unicode", 0.06, "count"),
    ("valid_extreme", 0.04, "count"),
    ("valid_refleet", 0.01, "count"),
    ("duplicate", 0.01, "dup"),
    ("random_bytes", 0.05, BAD_JSON),
    ("truncated", 0.06, BAD_JSON),
    ("nested_deep", 0.01, UNPARSEABLE),
    ("nested_shallow", 0.02, INVALID),
    ("nan_inf", 0.04, INVALID),
    ("wrong_type", 0.05, INVALID),
    ("negative", 0.03, INVALID),
    ("missing_field", 0.04, INVALID),
    ("not_object", 0.02, INVALID),
    ("extra_field", 0.02, INVALID),
    ("bad_ts", 0.02, INVALID),
    ("bad_agent_id", 0.05, INVALID),
    ("bad_name", 0.02, INVALID),
    ("surrogate", 0.02, UNPARSEABLE),
    ("invalid_utf8", 0.02, BAD_JSON),
    ("key_mismatch", 0.03, KEY_MISMATCH),
    ("bad_keyless", 0.03, ANY),
    ("oversize", 0.002, TOO_LARGE),
    ("tombstone", 0.005, ANY),
)
#: Not drawn by weight: placed at even intervals (see :attr:`FuzzGenerator.huge`).
HUGE = ("huge", TOO_LARGE)


@dataclass(frozen=True, slots=True)
class FuzzRecord:
    """One record to produce, and what must become of it."""

    index: int
    key: bytes | None
    value: bytes | None
    category: str
    agent: str | None = None
    """For valid records: the agent whose baseline must count it."""
    reasons: frozenset[str] | None = None
    """For bad records: acceptable dead-letter reasons (empty = any); None if not bad."""

    @property
    def bad(self) -> bool:
        return self.reasons is not None


@dataclass
class FuzzSummary:
    """What a run of the generator produced, for the assertions."""

    records: int = 0
    bytes: int = 0
    by_category: Counter[str] = field(default_factory=Counter)
    per_agent: Counter[str] = field(default_factory=Counter)
    """Valid events per agent: what each baseline must count."""
    duplicates: int = 0
    bad: int = 0
    known_reasons: Counter[str] = field(default_factory=Counter)
    """Bad records per reason, for the categories with exactly one acceptable reason."""

    @property
    def valid(self) -> int:
        return sum(self.per_agent.values())

    def add(self, record: FuzzRecord) -> None:
        self.records += 1
        self.bytes += len(record.value or b"") + len(record.key or b"")
        self.by_category[record.category] += 1
        if record.agent is not None:
            self.per_agent[record.agent] += 1
        elif record.reasons is None:
            self.duplicates += 1
        else:
            self.bad += 1
            if len(record.reasons) == 1:
                self.known_reasons[next(iter(record.reasons))] += 1


def _ts(i: int) -> str:
    return (T0 + timedelta(milliseconds=10 * i)).isoformat().replace("+00:00", "Z")


class FuzzGenerator:
    """Deterministic fuzzed records for ``agents`` agents.

    Parameters
    ----------
    seed
        The random seed: the same seed and ``n`` give the same records.
    n
        How many records :meth:`records` yields.
    agents
        How many agents the valid events are spread over (ids ``fz-00000``...).
    huge
        How many records of 0.9-1.1 MB to place at even intervals (default: one per 5,000
        records, at least 3).
    """

    def __init__(self, seed: int, n: int, agents: int = 100, huge: int | None = None) -> None:
        self.seed = seed
        self.n = n
        self.agents = [f"fz-{a:05d}" for a in range(agents)]
        self.huge = max(3, n // 5000) if huge is None else huge
        self.summary = FuzzSummary()

    def records(self) -> Iterator[FuzzRecord]:
        """Yield the records in production order (and fill :attr:`summary`)."""
        rng = random.Random(self.seed)
        names = [c[0] for c in CATEGORIES]
        weights = [c[1] for c in CATEGORIES]
        expected = {c[0]: c[2] for c in CATEGORIES}
        every = max(1, self.n // self.huge) if self.huge else 0
        recent: deque[tuple[bytes, bytes, str]] = deque(maxlen=256)
        self.summary = FuzzSummary()
        for i in range(self.n):
            if every and i % every == every // 2 and i // every < self.huge:
                category = HUGE[0]
            else:
                category = rng.choices(names, weights)[0]
                if category == "duplicate" and not recent:
                    category = "valid"
            record = self._make(rng, i, category, expected.get(category, HUGE[1]), recent)
            self.summary.add(record)
            yield record

    # -- building blocks -------------------------------------------------------------------
    def _event(self, rng: random.Random, i: int, agent: str) -> dict[str, object]:
        kind = rng.choice(KINDS)
        status = rng.choice(STATUSES)
        doc: dict[str, object] = {
            "event_id": f"fz{self.seed}-{i}",
            "ts": _ts(i),
            "agent_id": agent,
            "fleet": f"fleet-{int(agent[-5:]) % 5}" if agent.startswith("fz-") else "fuzz",
            "action": rng.choice(ACTIONS) if kind != "llm" else "chat",
            "kind": kind,
            "status": status,
            "cost_usd": round(rng.expovariate(100.0), 6),
            "latency_ms": round(rng.lognormvariate(3.0, 1.0), 3),
        }
        if kind == "llm":
            doc.update(
                model="gpt-x", input_tokens=rng.randrange(4000), output_tokens=rng.randrange(900)
            )
        if status == "error":
            doc["error"] = rng.choice(("timeout", "HTTP 500", "permission denied"))
        if rng.random() < 0.5:
            doc["target"] = f"/data/{rng.randrange(40)}.txt"
        if rng.random() < 0.2:
            doc["session_id"] = f"s-{rng.randrange(1000)}"
        if rng.random() < 0.1:
            doc["risk"] = rng.choice(("low", "medium"))
        if rng.random() < 0.2:
            doc["attributes"] = {"n": rng.randrange(10), "ok": rng.random() < 0.5, "x": None}
        return doc

    @staticmethod
    def _dumps(doc: object, rng: random.Random) -> bytes:
        return json.dumps(doc, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")

    def _make(
        self,
        rng: random.Random,
        i: int,
        category: str,
        expect: object,
        recent: deque[tuple[bytes, bytes, str]],
    ) -> FuzzRecord:
        agent = rng.choice(self.agents)
        key = agent.encode()
        doc = self._event(rng, i, agent)
        reasons = expect if isinstance(expect, frozenset) else None

        def bad(value: bytes | None, record_key: bytes | None = key) -> FuzzRecord:
            assert reasons is not None
            return FuzzRecord(i, record_key, value, category, reasons=reasons)

        if expect == "count":
            record_key: bytes | None = key
            if category == "valid_keyless":
                record_key = None
            elif category == "valid_unicode":
                doc["target"] = rng.choice(ODD_TEXT)
                doc["attributes"] = {"note": rng.choice(ODD_TEXT), "n": 1}
                if doc["status"] == "error":
                    doc["error"] = rng.choice(ODD_TEXT)
            elif category == "valid_refleet":  # the agent moved to another fleet
                doc["fleet"] = f"fleet-{rng.randrange(5, 8)}"
                doc["status"] = rng.choice(("error", "denied"))
            elif category == "valid_extreme":
                doc["cost_usd"] = rng.choice(EXTREME_FLOATS)
                doc["latency_ms"] = rng.choice(EXTREME_FLOATS)
                doc["input_tokens"] = rng.choice(EXTREME_INTS)
                doc["output_tokens"] = rng.choice(EXTREME_INTS)
                doc["attributes"] = {
                    "big": 1.7e308,
                    "tiny": -5e-324,
                    "i64": 2**63 - 1,
                    "huge_int": 10**30,
                    "long": "y" * 1024,
                }
            value = self._dumps(doc, rng)
            if record_key is not None and category == "valid":
                recent.append((record_key, value, agent))
            return FuzzRecord(i, record_key, value, category, agent=agent)
        if expect == "dup":
            dup_key, value, _ = rng.choice(recent)
            return FuzzRecord(i, dup_key, value, category)

        if category == "random_bytes":
            size = rng.choice((0, 1, 2, 8, 64, 512, 2000))
            body = rng.randbytes(rng.randrange(size + 1))
            # a first byte no JSON text starts with: never valid by chance
            return bad(bytes([rng.choice(b"\x00\x01\x7f\xfe\xff#%<")]) + body)
        if category == "truncated":
            full = self._dumps(doc, rng)
            return bad(full[: rng.randrange(len(full))])  # any proper prefix of an object
        if category == "nested_deep":
            depth = rng.randrange(300, 3000)
            if rng.random() < 0.5:
                return bad(b"[" * depth + b"]" * depth)
            doc["attributes"] = {"deep": None}
            text = self._dumps(doc, rng).decode()
            return bad(text.replace("null", '{"a":' * depth + "1" + "}" * depth).encode())
        if category == "nested_shallow":
            depth = rng.randrange(1, 20)
            doc["attributes"] = {"n": json.loads("[" * depth + "1" + "]" * depth)}
            return bad(self._dumps(doc, rng))
        if category == "nan_inf":
            token = rng.choice(("NaN", "Infinity", "-Infinity", "1e999", "-1e999"))
            where = rng.choice(("cost_usd", "latency_ms", "attributes"))
            doc[where] = "@@" if where != "attributes" else {"v": "@@"}
            return bad(self._dumps(doc, rng).replace(b'"@@"', token.encode()))
        if category == "wrong_type":
            field_, value = rng.choice(
                (
                    ("cost_usd", "0.1"),
                    ("cost_usd", True),
                    ("input_tokens", 1.5),
                    ("input_tokens", "12"),
                    ("status", 5),
                    ("kind", "robot"),
                    ("ts", 1767225600),
                    ("event_id", 123),
                    ("agent_id", None),
                    ("agent_id", ["a"]),
                    ("attributes", [1, 2]),
                    ("attributes", "x"),
                    ("action", {"name": "x"}),
                    ("risk", "extreme"),
                )
            )
            doc[field_] = value
            return bad(self._dumps(doc, rng))
        if category == "negative":
            doc[
                rng.choice(("cost_usd", "latency_ms", "input_tokens", "output_tokens"))
            ] = -rng.choice((1, 0.5, 1e-9, 10**6))
            return bad(self._dumps(doc, rng))
        if category == "missing_field":
            for name in rng.sample(("event_id", "ts", "agent_id", "action"), rng.randrange(1, 4)):
                del doc[name]
            return bad(self._dumps(doc, rng))
        if category == "not_object":
            return bad(rng.choice((b"null", b"[]", b"[1,2,3]", b'"event"', b"42", b"true", b"{}")))
        if category == "extra_field":
            doc[rng.choice(("admin", "halted", "__proto__", "Agent_Id"))] = True
            return bad(self._dumps(doc, rng))
        if category == "bad_ts":
            doc["ts"] = rng.choice(
                (
                    "2026-01-01T00:00:00",  # no offset
                    "2026-01-01T00:00:00+02:00",  # not UTC
                    "yesterday",
                    "2026-13-45T99:99:99Z",
                    "",
                )
            )
            return bad(self._dumps(doc, rng))
        if category == "bad_agent_id":
            bad_id = rng.choice(BAD_AGENT_IDS)
            doc["agent_id"] = bad_id
            return bad(self._dumps(doc, rng), bad_id.encode() or None)
        if category == "bad_name":
            name = rng.choice(("action", "fleet", "event_id"))
            doc[name] = f"{doc[name]}{rng.choice(BAD_NAME_CHARS)}x"
            return bad(self._dumps(doc, rng))
        if category == "surrogate":
            doc["target"] = "@@"
            text = self._dumps(doc, rng)
            if rng.random() < 0.5:  # escaped: syntax allows it, no parser should accept it
                return bad(text.replace(b"@@", rng.choice((b"\\ud800", b"\\udfff", b"x\\udc00y"))))
            return bad(text.replace(b"@@", rng.choice((b"\xed\xa0\x80", b"\xed\xbf\xbf"))))
        if category == "invalid_utf8":
            doc["target"] = "@@"
            junk = rng.choice((b"\xff", b"\xc3\x28", b"\xe2\x82", b"\xf0\x28\x8c\xbc", b"\x80"))
            return bad(self._dumps(doc, rng).replace(b"@@", junk))
        if category == "key_mismatch":
            other = rng.choice([a for a in self.agents if a != agent] or ["someone-else"])
            return bad(self._dumps(doc, rng), other.encode())
        if category == "bad_keyless":  # a bad record without a key: whatever the reason
            doc["cost_usd"] = -1
            return bad(self._dumps(doc, rng)[: rng.choice((10**9, 40))], None)
        if category == "oversize":
            doc["attributes"] = {"pad": "@@"}
            size = rng.randrange(MAX_EVENT_BYTES + 1, 2 * MAX_EVENT_BYTES)
            return bad(self._pad(self._dumps(doc, rng), size))
        if category == "huge":
            doc["attributes"] = {"pad": "@@"}
            size = rng.randrange(HUGE_MIN, HUGE_MAX)
            return bad(self._pad(self._dumps(doc, rng), size))
        if category == "tombstone":
            return bad(None)
        raise AssertionError(f"unknown category {category}")

    @staticmethod
    def _pad(text: bytes, size: int) -> bytes:
        """``text`` with its ``"@@"`` grown so that the record is exactly ``size`` bytes."""
        filler = b"z" * max(0, size - len(text) + 2)
        return text.replace(b"@@", filler, 1)
