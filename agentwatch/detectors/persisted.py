"""Detector state as it is persisted: every float to :data:`DIGITS` significant digits.

Detectors keep their per-agent state as JSON-ready values, updated in place with full double
precision. Written as they are, its floats take 17-19 characters each that no dictionary
compresses (``7.5284487758496725``): half of a bench agent's compressed table value. The
table, its changelog and a restore need far less: :func:`persisted` is a copy whose floats
keep :data:`DIGITS` significant digits, and never fewer than :data:`MIN_DECIMALS` decimals, so
an epoch timestamp keeps its milliseconds. The live state is not touched: a worker that never
restarts judges exactly as before, and one restored from the table differs from it by less
than one part in ten million in any learned value.

Examples
--------
>>> persisted({"v": [105, 7.5284487758496725, 0.0031575908021066806, 0.0, -6.022265175108544]})
{'v': [105, 7.528449, 0.003157591, 0.0, -6.022265]}
>>> persisted({"t": [1767225857.365, None, True], "ids": ["b1-95444"]})
{'t': [1767225857.365, None, True], 'ids': ['b1-95444']}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentwatch.detectors import _cython_shim as cython
else:
    try:
        import cython
    except ImportError:  # Cython is a build requirement only; the sources run without it
        from agentwatch.detectors import _cython_shim as cython

if cython.compiled:  # a compile-time constant: the build keeps this branch only
    from cython.cimports.libc.math import fabs, floor, log10
else:
    from math import fabs, floor, log10

__all__ = ["DIGITS", "MIN_DECIMALS", "persisted"]

#: Significant digits a persisted float keeps (a float32 holds about as many).
DIGITS = 7
#: ... but never fewer decimals than this (timestamps in seconds keep their milliseconds).
MIN_DECIMALS = 3
_EXACT_POWERS = 22  # 10**k is an exact double up to here: n / 10**k is then correctly rounded
#: Rounded on the integer grid only below this: 2**53 is where doubles stop holding every
#: integer; three bits below it, ``x * scale`` and its inverse stay within a quarter of a unit,
#: so a value written again rounds to itself.
_GRID = 2.0**50


@cython.cfunc
@cython.annotation_typing(True)  # C doubles: ~70 floats per agent on every table write
def _rounded(x: cython.double) -> cython.double:
    """``x`` to :data:`DIGITS` significant digits (:data:`MIN_DECIMALS` decimals at least)."""
    if x == 0.0 or x - x != 0.0:  # zero, or not finite (inf - inf and nan - nan are nan)
        return x
    exponent: cython.double = floor(log10(fabs(x)))
    decimals: cython.Py_ssize_t = DIGITS - 1 - cython.cast(cython.Py_ssize_t, exponent)
    if decimals < MIN_DECIMALS:  # noqa: PLR1730 - max() of C integers would box them
        decimals = MIN_DECIMALS
    if decimals > _EXACT_POWERS:
        return float(round(x, decimals))  # tiny: Python's correctly rounded (slower) path
    scale: cython.double = 10.0**decimals
    scaled: cython.double = x * scale
    if fabs(scaled) >= _GRID:
        return x  # too large to round on a double's integer grid: kept as it is
    # an integer over an exact power of ten, correctly rounded: the double nearest to the
    # short decimal, which is what it prints as
    rounded: cython.double = floor(scaled + 0.5) / scale
    return rounded


def persisted(value: Any) -> Any:
    """A copy of JSON-ready ``value`` with every float rounded (see the module docstring);
    dicts and lists are copied, everything else is returned as it is."""
    kind = type(value)
    if kind is float:
        return _rounded(value)
    if kind is dict:
        return {key: persisted(item) for key, item in value.items()}
    if kind is list or kind is tuple:
        return [persisted(item) for item in value]
    return value
