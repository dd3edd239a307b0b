"""Every detector documents each of its parameters in its numpydoc ``Parameters`` section."""

from __future__ import annotations

import inspect
import re

import pytest

from agentwatch.detectors.base import DETECTORS


def _documented(doc: str) -> set[str]:
    section = doc.split("Parameters\n    ----------\n", 1)
    if len(section) < 2:
        return set()
    body = re.split(r"\n    (?:Notes|Examples|See Also|References)\n    -+\n", section[1])[0]
    return set(re.findall(r"^    (\w+)$", body, re.MULTILINE))


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_every_parameter_is_documented(name: str) -> None:
    cls = DETECTORS[name]
    signature = inspect.signature(cls.__init__)
    params = {
        p.name
        for p in signature.parameters.values()
        if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }
    documented = _documented(cls.__doc__ or "")
    assert params, f"{name}: no parameters found"
    assert params - documented == set(), f"{name}: undocumented {sorted(params - documented)}"
    assert documented - params == set(), f"{name}: documents {sorted(documented - params)}"
