"""Collection rules for the whole tree (``testpaths`` holds ``tests`` and ``agentwatch``).

A compiled detection module shadows its ``.py`` file, which pytest's ``--doctest-modules``
refuses to collect ("import file mismatch"); its doctests run against the compiled module
in ``tests/test_native.py`` instead, so every example still runs exactly once.
"""

from __future__ import annotations

import agentwatch.detectors  # noqa: F401 - imports each module, compiled or from source
from agentwatch import _native

collect_ignore = [f"agentwatch/detectors/{name}.py" for name in _native.compiled_modules()]
