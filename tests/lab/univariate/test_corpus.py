from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentwatch.lab.univariate.corpus import CorpusError, half_of, load_corpus, parse_time
from tests.lab.univariate.nab_fixture import SHIFT, SPIKE, START, write_corpus


def test_loads_the_labelled_series_and_names_the_missing_ones(tmp_path: Path) -> None:
    root = write_corpus(tmp_path)
    labels = json.loads((root / "labels" / "combined_windows.json").read_text())
    labels["realTweets/not_fetched.csv"] = []
    (root / "labels" / "combined_windows.json").write_text(json.dumps(labels))
    series, missing = load_corpus(root)
    assert [s.name for s in series] == sorted([SHIFT[0], SPIKE[0]])
    assert missing == ["realTweets/not_fetched.csv"]
    spike = next(s for s in series if s.name == SPIKE[0])
    assert len(spike.values) == 2016 and spike.timestamps[0] == START
    assert spike.windows == ((START + 300.0 * 1150, START + 300.0 * 1250),)
    assert parse_time("2024-03-01 00:00:00.000000") == START


def test_the_halves_depend_on_the_name_only() -> None:
    assert half_of(SPIKE[0]) == "calibration"
    assert half_of(SHIFT[0]) == "held_out"


def test_unreadable_corpora_say_what_to_fix(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"combined_windows\.json: no such file"):
        load_corpus(tmp_path)
    root = write_corpus(tmp_path)
    path = root / "data" / SPIKE[0]
    rows = path.read_text().splitlines()
    path.write_text("\n".join([rows[0], rows[2], rows[1], *rows[3:]]) + "\n")
    with pytest.raises(CorpusError, match="goes back in time"):
        load_corpus(root)
    path.write_text("time,val\n")
    with pytest.raises(CorpusError, match="expected a 'timestamp,value' header"):
        load_corpus(root)
