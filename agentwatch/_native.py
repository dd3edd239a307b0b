"""Which detection modules may run compiled, and the guard that keeps them honest.

``setup.py`` compiles the modules named in :data:`COMPILED` with Cython and writes, next to
each build, the SHA-256 of the source it was built from (``<build>.sha256``). A compiled
module shadows its ``.py`` file, so an edited source would silently keep running the old
build; :func:`install` puts a finder in front of the import system that loads the source
instead whenever a build does not match its source (or when ``AGENTWATCH_PURE_PYTHON`` is
set), and says so once on the ``agentwatch`` logger. A hash, not a file time: installing a
wheel gives every file a new time, in no particular order.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

__all__ = [
    "COMPILED",
    "compiled_modules",
    "install",
    "pure_python_requested",
    "source_digest",
]

#: Modules of :mod:`agentwatch.detectors` on the per-event path, compiled when possible.
COMPILED = (
    "base",
    "baseline",
    "budget",
    "calibration",
    "cost_context",
    "cost_drift",
    "cost_spike",
    "drift",
    "engine",
    "failure_rate",
    "fleet_agents",
    "fleet_outlier",
    "fleet_tail",
    "mix_shift",
    "novelty",
    "persisted",
    "policy",
    "rate_test",
    "robust_zscore",
    "runaway_loop",
    "sequence",
)

_PACKAGE = "agentwatch.detectors"
_DIR = Path(__file__).parent / "detectors"
log = logging.getLogger("agentwatch")


def pure_python_requested(environ: Mapping[str, str]) -> bool:
    """Whether ``AGENTWATCH_PURE_PYTHON`` asks for the sources (any value but 0/false/no)."""
    value = environ.get("AGENTWATCH_PURE_PYTHON", "").strip().lower()
    return value not in ("", "0", "false", "no")


def source_digest(path: Path) -> str:
    """The SHA-256 (hex) that a build of ``path`` records."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _build(name: str) -> Path | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = _DIR / f"{name}{suffix}"
        if path.exists():
            return path
    return None


def _matches(build: Path, source: Path) -> bool:
    record = build.with_name(build.name + ".sha256")
    try:
        return record.read_text().strip() == source_digest(source)
    except OSError:  # no record: an unknown build
        return False


class _SourceFinder:
    """Finds the ``.py`` source of a compiled module that must not be used."""

    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        return importlib.util.spec_from_file_location(
            fullname, _DIR / (fullname.rpartition(".")[2] + ".py")
        )


def install(environ: Mapping[str, str] = os.environ) -> list[str]:
    """Route imports of mismatched (or, on request, all) compiled modules to their sources.

    Returns the module names routed. Call before the modules are first imported.
    """
    pure = pure_python_requested(environ)
    names = []
    for name in COMPILED:
        build = _build(name)
        if build is not None and (pure or not _matches(build, _DIR / f"{name}.py")):
            names.append(f"{_PACKAGE}.{name}")
    if names:
        if not pure:
            log.warning(
                "compiled %s not built from the current source; running the source "
                "(rebuild with `make compile`)",
                ", ".join(n.rpartition(".")[2] for n in names),
            )
        sys.meta_path.insert(0, _SourceFinder(set(names)))
    return names


def compiled_modules() -> list[str]:
    """The detection modules that are running compiled in this process."""
    return [
        name
        for name in COMPILED
        if (module := sys.modules.get(f"{_PACKAGE}.{name}")) is not None
        and not str(getattr(module, "__file__", "")).endswith(".py")
    ]
