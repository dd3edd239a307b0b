"""The fuzz generator itself: deterministic, complete, and right about what it labels."""

from __future__ import annotations

import hashlib
import json

import pytest

from agentwatch.schemas import DecodeError, decode_event
from tests.chaos.fuzz import BAD_AGENT_IDS, CATEGORIES, HUGE_MAX, HUGE_MIN, FuzzGenerator

pytestmark = pytest.mark.chaos

N = 6000


def digest(gen: FuzzGenerator) -> str:
    h = hashlib.sha256()
    for r in gen.records():
        h.update(repr((r.key, r.value, r.category, r.agent, sorted(r.reasons or ()))).encode())
    return h.hexdigest()


def test_same_seed_same_records_other_seed_other_records() -> None:
    assert digest(FuzzGenerator(3, 500, agents=7)) == digest(FuzzGenerator(3, 500, agents=7))
    assert digest(FuzzGenerator(3, 500, agents=7)) != digest(FuzzGenerator(4, 500, agents=7))


def test_every_category_appears_and_the_summary_adds_up() -> None:
    gen = FuzzGenerator(11, N, agents=20)
    records = list(gen.records())
    summary = gen.summary
    assert summary.records == len(records) == N
    assert set(summary.by_category) == {name for name, _, _ in CATEGORIES} | {"huge"}
    assert summary.by_category["huge"] == 3
    assert summary.valid + summary.duplicates + summary.bad == N
    assert summary.valid == sum(1 for r in records if r.agent is not None)
    assert sum(summary.known_reasons.values()) <= summary.bad
    huge = [r for r in records if r.category == "huge"]
    assert all(HUGE_MIN <= len(r.value or b"") < HUGE_MAX for r in huge)
    ids = [json.loads(r.value)["event_id"] for r in records if r.agent is not None]
    assert len(ids) == len(set(ids))  # only the duplicates repeat an event_id
    assert {r.key for r in records if r.category == "valid_keyless"} == {None}
    assert all(r.key is not None for r in records if r.category in ("valid", "key_mismatch"))


def test_labels_agree_with_the_event_schema() -> None:
    """Valid records decode to their agent; bad ones fail with a reason they allow.

    Ids and names (the charset) and key checks are the ingest stage's and are asserted end to
    end in test_fuzz.py; everything else here is the schema's alone.
    """
    for r in FuzzGenerator(5, N, agents=20).records():
        if r.category in ("bad_agent_id", "bad_name", "key_mismatch", "tombstone", "duplicate"):
            continue
        try:
            event = decode_event(r.value or b"")
        except DecodeError as err:
            assert r.reasons is not None, (r.category, err)
            assert not r.reasons or err.code in r.reasons, (r.category, err.code, err.detail)
        else:
            assert r.agent == event.agent_id, (r.category, r.value[:200] if r.value else None)


def test_bad_agent_ids_cover_the_documented_charset() -> None:
    assert {"/", "..", ".", "team/a", "../../etc"} <= set(BAD_AGENT_IDS)
    odd = "".join(BAD_AGENT_IDS)
    assert all(c in odd for c in ("\x00", "\ufeff", "\u202e", "\uffff", "\n"))
