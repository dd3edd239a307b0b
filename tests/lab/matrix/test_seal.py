"""The seal: the sealed specs are exactly what was committed before any tuning."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from agentwatch.lab.matrix.design import design, render
from agentwatch.lab.matrix.seal import (
    MANIFEST,
    WORLDS_DIR,
    manifest_path,
    read_manifest,
    verify_seal,
)
from agentwatch.lab.sim import SealedWorldError, load_world

# The manifest's own SHA-256, pinned: changing a sealed spec needs a new manifest AND an edit
# here, both visible in review. Never update it to make the test pass during tuning.
MANIFEST_SHA256 = "36535a3bc060729e2a46dd676a92bae8ca34e58dbb16337bfebb54c18e216cc8"


def test_the_seal_holds() -> None:
    assert hashlib.sha256(MANIFEST.read_bytes()).hexdigest() == MANIFEST_SHA256
    assert verify_seal() == []
    entries = read_manifest()
    assert len(entries) == 12
    assert [e.seed for e in entries] == list(range(7001, 7013))


@pytest.mark.parametrize(
    ("half", "pinned", "seed0"),
    [
        ("sealed-2", "0d9810c5ba65ffb95c2927eafcf1eb3fb961c79160760f72279c7d1cd4ba9921", 9000),
        ("sealed-3", "1faeccada61f744fd180b1a195258aedf32b6bc393a5f1af90601ab73e71575e", 11000),
        ("sealed-4", "7b16b1e0421c48a1053fc8cc81a0beb212441ff1e8617c2cf6986123d56e0e39", 13000),
        ("sealed-5", "b5e7ba0dbe3e51ec1b2eb51915738e1f5b077178530aac9a813be1df52b21a0e", 15000),
        ("sealed-6", "4f8ee13933a33a60ee72533ef88c59f6766d372af4081071ba609ce27a27f0f6", 17000),
        ("sealed-7", "fa4a0841e947695a5d4b5eec367064384fa8bc7ea51814414459ac0da2aec228", 19000),
        ("sealed-8", "03c4cb18c200e18e20744e53c2a3958528ef952dc3da4b78d06aeca71c41577a", 21000),
        ("sealed-9", "877704678fdab8c1b5aa60adf48224fa0f4bfab0af734c62e336b80f34772401", 23000),
        ("sealed-10", "fa9378e1353dcd9b0d4f5de0e5d7a994354a44857b9df9df4f1e4d014215516d", 25000),
        ("sealed-11", "001fd8f0acfedbc86f77d3ea43f3b04f2c50a6c2c10822a2dacd55159fa907da", 27000),
        ("sealed-12", "a33fd7e292e4d9006f258432710e30e05d87196c43ecfe489be83c1086db4426", 29000),
        ("sealed-13", "4f6d63f969258aec2263658702238e8aeacc6eabf03ab2eb818fcca14ea706e2", 31000),
    ],
)
def test_the_later_seals_hold(half: str, pinned: str, seed0: int) -> None:
    """The later sealed halves: the first half's design rows with new seeds, each committed
    before the changes it judges were tuned (each manifest's own SHA-256 pinned)."""
    manifest = manifest_path(half)
    assert hashlib.sha256(manifest.read_bytes()).hexdigest() == pinned
    assert verify_seal(half=half) == []
    entries = read_manifest(manifest)
    assert [e.seed for e in entries] == list(range(seed0 + 1, seed0 + 13))
    first = {r.index: r for r in design() if r.half == "sealed"}
    for row in (r for r in design() if r.half == half):
        assert row.factors == first[row.index].factors
        path = WORLDS_DIR / half / f"{row.name}.yml"
        assert path.read_text(encoding="utf-8") == render(row)
        with pytest.raises(SealedWorldError, match="--sealed"):
            load_world(path)


def test_a_sealed_spec_does_not_load_without_leave() -> None:
    with pytest.raises(SealedWorldError, match="--sealed"):
        load_world(WORLDS_DIR / "sealed" / read_manifest()[0].name)


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    root = tmp_path / "worlds"
    shutil.copytree(WORLDS_DIR / "sealed", root / "sealed")
    return root


def test_a_changed_spec_breaks_the_seal(copy: Path) -> None:
    spec = sorted((copy / "sealed").glob("*.yml"))[3]
    spec.write_bytes(spec.read_bytes().replace(b"intensity: 0.", b"intensity: 0.0", 1))
    assert verify_seal(copy) == [
        f"{spec.name}: SHA-256 differs from the manifest (the spec changed)"
    ]


def test_an_added_or_removed_spec_breaks_the_seal(copy: Path) -> None:
    first = sorted((copy / "sealed").glob("*.yml"))[0]
    shutil.copy(first, copy / "sealed" / "s99-extra.yml")
    first.unlink()
    assert verify_seal(copy) == [
        f"{first.name}: in the manifest, missing",
        "s99-extra.yml: not in the manifest",
    ]


def test_a_bad_manifest_line_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "MANIFEST.sha256"
    bad.write_text("# seed 1\nnot a hash  x.yml\n", encoding="utf-8")
    with pytest.raises(ValueError, match=":2: not"):
        read_manifest(bad)
