"""The matrix design: 24 worlds, every level in both halves, the committed tuning specs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from agentwatch.lab.matrix.design import FACTORS, SEALED_HALVES, design, main, render
from agentwatch.lab.matrix.seal import HALVES, half_files


def test_24_worlds_every_level_equally_often_in_both_halves() -> None:
    rows = design()
    assert len(rows) == 168 and len({r.name for r in rows}) == 168  # with the later sealed halves
    assert len({r.seed for r in rows}) == 168
    assert ("tuning", "sealed", *(f"sealed-{n}" for n in range(2, 14))) == HALVES
    for half in HALVES:
        mine = [r for r in rows if r.half == half]
        assert len(mine) == 12
        for factor, levels in FACTORS.items():
            counts = Counter(getattr(r, factor) for r in mine)
            assert set(counts) == set(levels), (half, factor)
            assert len(set(counts.values())) == 1, (half, factor, counts)  # balanced


def test_halves_share_levels_but_no_full_combination() -> None:
    rows = design()
    combos = {h: {tuple(r.factors.values()) for r in rows if r.half == h} for h in HALVES}
    for half in SEALED_HALVES:
        assert not combos["tuning"] & combos[half], half


def test_committed_tuning_specs_are_the_design() -> None:
    files = {p.name: p.read_text(encoding="utf-8") for p in half_files("tuning")}
    rows = [r for r in design() if r.half == "tuning"]
    assert files == {f"{r.name}.yml": render(r) for r in rows}


def test_sealed_files_are_the_designed_names() -> None:
    assert [p.name for p in half_files("sealed")] == [
        f"{r.name}.yml" for r in design() if r.half == "sealed"
    ]


def test_help_prints_the_usage_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["--help"]) == 0
    assert main(["--bogus"]) == 2
    assert "usage: python -m agentwatch.lab.matrix.design" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no directory named after the option
