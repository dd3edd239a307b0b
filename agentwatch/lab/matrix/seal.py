"""The world specs of the two halves, and the seal on the sealed one.

The specs ship inside the package (``agentwatch/lab/worlds/tuning/*.yml`` and
``agentwatch/lab/worlds/sealed/*.yml``) so that ``agentwatch backtest --worlds tuning`` works
from an installed wheel as from a checkout. The sealed half was written and its manifest
committed before any detector was tuned on the tuning half: ``sealed/MANIFEST.sha256`` holds
each sealed spec's SHA-256 (``sha256sum -c MANIFEST.sha256`` checks it) with its seed on the
comment line before it. :func:`verify_seal` reports any spec that changed, appeared or went
missing; the tests run it, and pin the manifest's own hash.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import yaml

from agentwatch.lab.matrix.design import SEALED_HALVES

__all__ = [
    "HALVES",
    "MANIFEST",
    "WORLDS_DIR",
    "SealEntry",
    "half_files",
    "manifest_path",
    "manifest_text",
    "read_manifest",
    "verify_seal",
]

WORLDS_DIR: Final = Path(__file__).resolve().parent.parent / "worlds"
"""Where the specs live: one directory per half."""
HALVES: Final = ("tuning", *SEALED_HALVES)
MANIFEST: Final = WORLDS_DIR / "sealed" / "MANIFEST.sha256"
"""The first sealed half's manifest; :func:`manifest_path` gives any half's."""

_SEED = re.compile(r"^# seed (\d+)\s*$")
_LINE = re.compile(r"^([0-9a-f]{64})  (\S+)$")


@dataclass(frozen=True)
class SealEntry:
    """One sealed spec: its file name, SHA-256 and seed."""

    name: str
    sha256: str
    seed: int


def half_files(half: str, root: Path = WORLDS_DIR) -> list[Path]:
    """The spec files of one half, by name."""
    if half not in HALVES:
        raise ValueError(f"unknown half {half!r}; one of {', '.join(HALVES)}")
    return sorted((root / half).glob("*.yml"))


def manifest_path(half: str, root: Path = WORLDS_DIR) -> Path:
    """A sealed half's manifest (each committed before the changes it judges were tuned)."""
    return root / half / "MANIFEST.sha256"


def manifest_text(files: list[Path], note: str) -> str:
    """A manifest for ``files``: a header, then ``# seed N`` and ``<sha256>  <name>`` each."""
    lines = [
        "# agentwatch sealed worlds: SHA-256 of each spec (sha256sum -c MANIFEST.sha256)",
        f"# and its seed. {note}",
    ]
    for path in files:
        data = path.read_bytes()
        seed = yaml.safe_load(data)["seed"]
        lines += [f"# seed {seed}", f"{hashlib.sha256(data).hexdigest()}  {path.name}"]
    return "\n".join(lines) + "\n"


def read_manifest(path: Path = MANIFEST) -> list[SealEntry]:
    """The entries of a manifest.

    Raises
    ------
    ValueError
        A line that is neither a comment nor ``<sha256>  <name>``, or an entry without the
        ``# seed N`` line before it.
    """
    entries: list[SealEntry] = []
    seed: int | None = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if match := _SEED.match(line):
            seed = int(match.group(1))
        elif match := _LINE.match(line):
            if seed is None:
                raise ValueError(f"{path}:{number}: no '# seed N' line before this entry")
            entries.append(SealEntry(match.group(2), match.group(1), seed))
            seed = None
        elif line.strip() and not line.startswith("#"):
            raise ValueError(f"{path}:{number}: not '<sha256>  <file>' nor a comment")
    return entries


def verify_seal(
    root: Path = WORLDS_DIR, manifest: Path | None = None, half: str = "sealed"
) -> list[str]:
    """Every way a sealed half's specs differ from their manifest (empty: the seal holds).

    Reads the specs' bytes and seeds only: nothing is simulated.
    """
    manifest = manifest or manifest_path(half, root)
    entries = {e.name: e for e in read_manifest(manifest)}
    files = {p.name: p for p in half_files(half, root)}
    problems = [f"{name}: in the manifest, missing" for name in sorted(set(entries) - set(files))]
    problems += [f"{name}: not in the manifest" for name in sorted(set(files) - set(entries))]
    for name in sorted(set(entries) & set(files)):
        data = files[name].read_bytes()
        if hashlib.sha256(data).hexdigest() != entries[name].sha256:
            problems.append(f"{name}: SHA-256 differs from the manifest (the spec changed)")
            continue
        doc = yaml.safe_load(data)
        if doc.get("seed") != entries[name].seed or doc.get("half") != "sealed":
            problems.append(f"{name}: seed or half differs from the manifest")
    return problems
