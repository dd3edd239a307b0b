"""Persisted detector state: floats to seven significant digits, everything else as it is."""

from __future__ import annotations

import copy
import math
import random

import orjson
import pytest

from agentwatch.detectors.persisted import DIGITS, MIN_DECIMALS, persisted


def _significant(text: str) -> int:
    mantissa = text.split("e", maxsplit=1)[0].replace("-", "").replace(".", "").lstrip("0")
    return len(mantissa.rstrip("0")) if "e" in text or "." in text else len(mantissa)


@pytest.mark.parametrize("seed", range(3))
def test_floats_keep_seven_significant_digits_or_three_decimals(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(20_000):
        x = rng.choice((1, -1)) * 10 ** rng.uniform(-30, 15)
        r = persisted(x)
        assert isinstance(r, float)
        exponent = math.floor(math.log10(abs(x)))
        decimals = max(DIGITS - 1 - exponent, MIN_DECIMALS)
        if abs(x) * 10.0**decimals >= 2**50:  # too large to round: kept
            assert r == x
            continue
        assert abs(r - x) <= 0.5 * 10.0**-decimals * (1 + 1e-9) + abs(x) * 2**-52, (x, r)
        text = repr(r)  # what it prints as is short
        if decimals > MIN_DECIMALS:
            assert _significant(text) <= DIGITS, (x, text)
        else:
            assert len(text.split(".")[1]) <= MIN_DECIMALS, (x, text)
        assert persisted(r) == r  # written again unchanged: the same value


def test_timestamps_keep_their_milliseconds() -> None:
    assert persisted(1767225857.365) == 1767225857.365
    assert persisted(1767225857.36549) == 1767225857.365
    assert persisted(86.48345405228513) == 86.48345
    assert persisted(-0.0031575908021066806) == -0.003157591


def test_only_floats_change_and_the_live_state_is_not_touched() -> None:
    state = {
        "v": [105, 7.5284487758496725, True, None, "b1-1.23456789", math.inf, -math.inf],
        "m": {"gpt-4o": [3, 2.9995841597329695]},
        "x": (1.0000000001, 2),
        "nan": math.nan,
    }
    before = copy.deepcopy(state)
    out = persisted(state)
    assert out["v"] == [105, 7.528449, True, None, "b1-1.23456789", math.inf, -math.inf]
    assert type(out["v"][0]) is int and out["v"][2] is True
    assert out["m"] == {"gpt-4o": [3, 2.999584]}
    assert out["x"] == [1.0, 2]
    assert math.isnan(out["nan"])
    assert out["v"] is not state["v"] and out["m"]["gpt-4o"] is not state["m"]["gpt-4o"]
    assert state["v"][:5] == before["v"][:5] and state["m"] == before["m"]
    assert state["x"] == before["x"]


def test_a_cost_state_shrinks_by_a_third_as_json() -> None:
    rng = random.Random(4)
    state = {"v": [rng.random() * 10 for _ in range(12)], "t": [rng.random() for _ in range(4)]}
    assert len(orjson.dumps(persisted(state))) < 0.6 * len(orjson.dumps(state))
