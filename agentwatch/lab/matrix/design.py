"""The evaluation matrix: 24 worlds over five factors, split into a tuning and a sealed half.

Factors and levels:

* ``density``: ``sparse`` (agents at 0.2-3 events a minute, median 0.5, half-hour idle
  gaps, 12 h), ``mixed`` (fleets at medians 0.5, 2 and 8 a minute, each spread 0.2-30, 8 h),
  ``dense`` (3-30 a minute, median 10, gaps of minutes, 4 h);
* ``price_spread``: ``narrow`` (each fleet's usual models, at most 4x apart) or ``wide``
  (``gpt-4o-mini``, ``gpt-4o`` and ``claude-opus-4`` in every fleet: 100x apart);
* ``fleet_size``: ``small`` (fleets of 3, 8 and 12 agents), ``medium`` (20, 35, 45, 60),
  ``large`` (one fleet of 450 beside fleets of 20 and 5);
* ``benign``: ``upgrade+rollout`` (a model upgrade and a tool rollout) or ``+prompt`` (the
  same plus a prompt change that doubles every input);
* ``intensity``: ``subtle`` (incident intensities 0.0 and 0.2), ``moderate`` (0.4, 0.6),
  ``blatant`` (0.8, 1.0).

Each half has 12 worlds in which every level appears equally often (4 per three-level factor,
6 per two-level one): density x fleet size x intensity follow two different Latin squares
(plus three extra rows each), so the halves share their levels but few combinations, and
price spread and benign changes are crossed within each density. Every world carries all
eight incident kinds (19 incidents; 9 in small worlds): runaway loops with and without LLM
calls in between, in agents with history and in brand-new ones; cost explosions by model
switch, context stuffing and context growth; a fast cost ramp (to 3-4x within 2 h) and a
slow one (up to 8 h where it fits); error storms, privilege probing, exfiltration, mix shifts
and unapproved high-risk actions.

:func:`design` lists the rows, :func:`spec` renders one world's spec; ``python -m
agentwatch.lab.matrix.design DIR`` writes the tuning specs (the sealed ones were written
once, before any tuning, and are frozen by their manifest).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

__all__ = ["FACTORS", "SEALED_HALVES", "Row", "design", "render", "spec"]

FACTORS: Final[Mapping[str, tuple[str, ...]]] = {
    "density": ("sparse", "mixed", "dense"),
    "price_spread": ("narrow", "wide"),
    "fleet_size": ("small", "medium", "large"),
    "benign": ("upgrade+rollout", "+prompt"),
    "intensity": ("subtle", "moderate", "blatant"),
}
"""Every factor's levels."""

_ROLES: Final = ("support", "coder", "analyst", "ops")
_LETTERS: Final = {
    "tuning": "t",
    "sealed": "s",
    "sealed-2": "u",
    "sealed-3": "v",
    "sealed-4": "w",
    "sealed-5": "x",
    "sealed-6": "y",
    "sealed-7": "z",
    "sealed-8": "a",
    "sealed-9": "b",
    "sealed-10": "c",
    "sealed-11": "d",
    "sealed-12": "e",
    "sealed-13": "f",
}
SEALED_HALVES: Final = tuple(half for half in _LETTERS if half != "tuning")
"""Halves whose specs say ``half: sealed``: the first was opened once on 2026-12-05 (commit
``c26c6d9``); ``sealed-2`` (same design rows, new seeds) was committed on 2026-12-05 before any
later change was tuned, to judge those changes; it was opened once at ``966e8ec``.
``sealed-3`` (same rows, seeds 11001-11012) was committed on 2026-12-05 at the start of the next
session, before any of that session's changes were tuned; it was opened once at ``c9aa44d``.
``sealed-4`` (same rows, seeds 13001-13012) was committed on 2026-12-05 before sealed-3 was
opened, for the changes after it; it was opened once at ``469a7eb``. ``sealed-5`` (same rows,
seeds 15001-15012) was committed on 2026-12-06 before sealed-4 was opened, for the changes
after that; it was opened once at ``d0b12a5``. ``sealed-6`` (same rows, seeds 17001-17012)
was committed on 2026-12-06 after sealed-5 was opened, before any later change was tuned.
``sealed-7`` (same rows, seeds 19001-19012) was committed on 2026-12-06 before sealed-6 was
opened, for the changes after it; ``sealed-8`` (same rows, seeds 21001-21012, ``a01``-``a12``)
before sealed-7 was opened, for the changes after that; ``sealed-9`` (same rows, seeds
23001-23012, ``b01``-``b12``) after sealed-8 was opened, before any later change was tuned;
``sealed-10`` (same rows, seeds 25001-25012, ``c01``-``c12``) before sealed-9 was opened;
``sealed-11`` (same rows, seeds 27001-27012, ``d01``-``d12``) before sealed-10 was opened;
``sealed-12`` (same rows, seeds 29001-29012, ``e01``-``e12``) before sealed-11 was opened;
``sealed-13`` (same rows, seeds 31001-31012, ``f01``-``f12``) before sealed-12 was opened."""
_SIZES: Final[Mapping[str, tuple[int, ...]]] = {
    "small": (3, 8, 12),
    "medium": (20, 35, 45, 60),
    "large": (450, 20, 5),
}
_MINUTES: Final[Mapping[str, float]] = {"sparse": 720.0, "mixed": 480.0, "dense": 240.0}
_START_HOUR: Final[Mapping[str, int]] = {"sparse": 6, "mixed": 8, "dense": 10}
_WARMUP: Final[Mapping[str, float]] = {"sparse": 90.0, "mixed": 60.0, "dense": 45.0}
_INTENSITIES: Final[Mapping[str, tuple[float, float]]] = {
    "subtle": (0.0, 0.2),
    "moderate": (0.4, 0.6),
    "blatant": (0.8, 1.0),
}
_WIDE_MODELS: Final = {"gpt-4o-mini": 0.4, "gpt-4o": 0.35, "claude-opus-4": 0.25}
_STEP_UP: Final = {  # a model upgrade in a wide-spread fleet: each agent one step up
    "gpt-4o-mini": "gpt-4.1-mini",
    "gpt-4o": "gpt-4.1",
    "claude-opus-4": "claude-opus-4",
}


@dataclass(frozen=True)
class Row:
    """One world of the matrix: its half, name, seed and factor levels."""

    half: str
    index: int
    seed: int
    density: str
    price_spread: str
    fleet_size: str
    benign: str
    intensity: str

    @property
    def name(self) -> str:
        """``t01-sparse-small-subtle`` style: half letter (``t``, ``s``, ``u`` for the second
        sealed half, ``v`` for the third, ``w`` for the fourth, ``x`` for the fifth, ``y`` for
        the sixth), number, the three 3-level factors."""
        letter = _LETTERS[self.half]
        return f"{letter}{self.index:02d}-{self.density}-{self.fleet_size}-{self.intensity}"

    @property
    def factors(self) -> dict[str, str]:
        """The row's level of every factor."""
        return {f: str(getattr(self, f)) for f in FACTORS}


def _half(
    half: str, square: int, extras: Sequence[tuple[int, int, int]], seed0: int, flip: bool
) -> list[Row]:
    cells = [(d, s, (d + square * s) % 3) for d in range(3) for s in range(3)]
    cells += list(extras)
    cells.sort()
    rows: list[Row] = []
    for d in range(3):
        mine = [c for c in cells if c[0] == d]
        for k, (_, s, i) in enumerate(mine):
            price = ("narrow", "wide")[(k + flip) % 2]
            benign = FACTORS["benign"][(k // 2 + flip) % 2]
            rows.append(
                Row(
                    half=half,
                    index=len(rows) + 1,
                    seed=seed0 + len(rows) + 1,
                    density=FACTORS["density"][d],
                    price_spread=price,
                    fleet_size=FACTORS["fleet_size"][s],
                    benign=benign,
                    intensity=FACTORS["intensity"][i],
                )
            )
    return rows


def design() -> list[Row]:
    """The 168 rows: 12 tuning (``t01``-``t12``), 12 sealed (``s01``-``s12``), then the second
    to thirteenth sealed halves (``u01``-``u12``, ``v01``-``v12``, ``w01``-``w12``, ``x01``-``x12``,
    ``y01``-``y12``, ``z01``-``z12``, ``a01``-``a12``, ``b01``-``b12``, ``c01``-``c12``,
    ``d01``-``d12``, ``e01``-``e12``, ``f01``-``f12``: the sealed rows again with new seeds)."""
    rows = _half("tuning", 1, [(0, 1, 0), (1, 2, 2), (2, 0, 1)], 1000, flip=False)
    for n, half in enumerate(SEALED_HALVES, 1):  # the same rows, seeds 7001-7012, 9001-9012...
        rows += _half(half, 2, [(0, 2, 2), (1, 1, 1), (2, 0, 0)], 5000 + 2000 * n, flip=True)
    return rows


def _rate(density: str, k: int) -> tuple[dict[str, float], dict[str, float]]:
    if density == "sparse":
        return {"median": 0.5, "sigma": 0.8, "min": 0.2, "max": 3.0}, {"median": 30, "sigma": 1.0}
    if density == "dense":
        return {"median": 10.0, "sigma": 0.6, "min": 3.0, "max": 30.0}, {"median": 4, "sigma": 0.8}
    median, idle = ((0.5, 30), (2.0, 10), (8.0, 3))[k % 3]
    rate = {"median": median, "sigma": 1.0, "min": 0.2, "max": 30.0}
    return rate, {"median": idle, "sigma": 1.0}


def _fleets(row: Row) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for k, agents in enumerate(_SIZES[row.fleet_size]):
        role = _ROLES[(row.seed + k) % len(_ROLES)]
        rate, idle = _rate(row.density, k)
        fleet: dict[str, Any] = {
            "name": f"{role}-{k + 1}",
            "role": role,
            "agents": agents,
            "rate_per_min": rate,
            "idle_minutes": idle,
        }
        if row.price_spread == "wide":
            fleet["models"] = dict(_WIDE_MODELS)
            fleet["secondary_model"] = "gpt-4o-mini"
        out.append(fleet)
    return out


def _changes(row: Row, fleets: Sequence[Mapping[str, Any]], minutes: float) -> list[Any]:
    names = [f["name"] for f in fleets]
    upgrade: dict[str, Any] = {
        "kind": "model_upgrade",
        "fleet": names[0],
        "at_minute": round(0.35 * minutes),
    }
    if row.price_spread == "wide":
        upgrade["map"] = dict(_STEP_UP)
    changes: list[Any] = [
        upgrade,
        {"kind": "tool_rollout", "fleet": names[1], "at_minute": round(0.55 * minutes)},
    ]
    if row.benign == "+prompt":
        changes.append(
            {
                "kind": "prompt_change",
                "fleet": names[2 % len(names)],
                "at_minute": round(0.45 * minutes),
                "input_factor": 2.0,
            }
        )
    return changes


def _incidents(row: Row, minutes: float, warmup: float) -> list[dict[str, Any]]:
    lo, hi = _INTENSITIES[row.intensity]
    room = minutes - warmup - 40.0  # a ramp and half an hour at its top fit in the run
    fast = {"kind": "cost_drift", "intensity": lo, "final_factor": 3.0 + hi}
    fast["ramp_minutes"] = round(min(120.0 - 90.0 * hi, room))
    slow = {"kind": "cost_drift", "intensity": hi, "final_factor": 3.0}
    slow["ramp_minutes"] = round(min(480.0 - 300.0 * lo, room))
    loops = [
        {"llm_between": True, "new_agent": False},
        {"llm_between": False, "new_agent": True},
        {"llm_between": False, "new_agent": False},
        {"llm_between": True, "new_agent": True},
    ]
    modes = ("model_switch", "context_stuffing", "context_growth")
    if row.fleet_size == "small":  # nine incidents in 23 agents
        flip = row.seed % 2
        loop_list = [loops[flip], loops[2 + flip]]
        out = [
            {"kind": "runaway_loop", "intensity": (lo, hi)[k], **opts}
            for k, opts in enumerate(loop_list)
        ]
        out.append(
            {"kind": "cost_explosion", "intensity": hi, "mode": modes[row.seed % 3]},
        )
        out.append(fast)
        out += [
            {"kind": kind, "intensity": (lo, hi)[k % 2]}
            for k, kind in enumerate(
                (
                    "error_storm",
                    "privilege_probing",
                    "exfiltration",
                    "mix_shift",
                    "unapproved_high_risk",
                )
            )
        ]
        return out
    out = [
        {"kind": "runaway_loop", "intensity": (lo, hi)[k % 2], **opts}
        for k, opts in enumerate(loops)
    ]
    out += [
        {"kind": "cost_explosion", "intensity": (lo, hi)[k % 2], "mode": mode}
        for k, mode in enumerate(modes)
    ]
    out += [fast, slow]
    for kind in (
        "error_storm",
        "privilege_probing",
        "exfiltration",
        "mix_shift",
        "unapproved_high_risk",
    ):
        out += [{"kind": kind, "intensity": lo}, {"kind": kind, "intensity": hi}]
    return out


def spec(row: Row) -> dict[str, Any]:
    """The world spec (a YAML-able mapping) of one row."""
    minutes = _MINUTES[row.density]
    warmup = _WARMUP[row.density]
    fleets = _fleets(row)
    return {
        "version": 1,
        "name": row.name,
        "description": (
            f"{row.half} world {row.index}: {row.density} agents, {row.price_spread} price "
            f"spread, {row.fleet_size} fleets, benign {row.benign}, {row.intensity} incidents"
        ),
        "half": "sealed" if row.half in SEALED_HALVES else row.half,
        "seed": row.seed,
        "start": f"2026-01-{5 + row.index % 5:02d}T{_START_HOUR[row.density]:02d}:00:00Z",
        "minutes": minutes,
        "warmup_minutes": warmup,
        "error_bursts_per_hour": 1.0 if row.fleet_size == "small" else 2.0,
        "diurnal": {"amplitude": round(0.2 + 0.1 * (row.seed % 4), 1), "peak_hour": 15},
        "factors": row.factors,
        "fleets": fleets,
        "benign_changes": _changes(row, fleets, minutes),
        "incidents": _incidents(row, minutes, warmup),
    }


def render(row: Row) -> str:
    """The spec file's text (YAML with a header comment)."""
    header = (
        f"# agentwatch world spec: {row.half} half of the evaluation matrix "
        "(agentwatch/lab/matrix/design.py).\n"
        "# Same file, same events: the seed is here. Run: agentwatch simulate --world FILE "
        "--out F\n"
    )
    if row.half in SEALED_HALVES:
        header += (
            "# SEALED: do not simulate or evaluate before the detectors are final "
            "(MANIFEST.sha256).\n"
        )
    body = yaml.safe_dump(spec(row), sort_keys=False, default_flow_style=None, width=100)
    return header + body


def main(argv: Sequence[str] | None = None) -> int:
    """Write the tuning specs into DIR (``--sealed HALF``: a sealed half's, only into a new
    DIR)."""
    args = list(sys.argv[1:] if argv is None else argv)
    half = "tuning"
    if "--sealed" in args:
        at = args.index("--sealed")
        half = args[at + 1] if at + 1 < len(args) and args[at + 1] in SEALED_HALVES else ""
        del args[at : at + 2]
    if len(args) != 1 or not half or args[0].startswith("-"):  # --help is no DIR
        print(
            f"usage: python -m agentwatch.lab.matrix.design [--sealed {'|'.join(SEALED_HALVES)}] "
            "DIR",
            file=sys.stderr,
        )
        return 0 if args in (["--help"], ["-h"]) else 2
    out = Path(args[0])
    sealed = half in SEALED_HALVES
    if sealed and out.exists() and any(out.iterdir()):
        print(f"{out}: not empty; sealed specs are written once", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    for row in design():
        if row.half == half:
            (out / f"{row.name}.yml").write_text(render(row), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
