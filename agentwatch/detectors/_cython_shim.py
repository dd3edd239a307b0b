"""The little of Cython's pure-Python mode the detection sources use, for when Cython is not
installed (it is a build requirement only): its decorators do nothing, its C types are the
Python types they convert to. The compiled modules never import it (see ``setup.py``).

Examples
--------
>>> @cclass
... class Point:
...     x: double
>>> annotation_typing(False)(len)("ab")
2
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["Py_ssize_t", "annotation_typing", "cast", "cclass", "cfunc", "compiled", "double"]

_T = TypeVar("_T")

compiled = False
double = float
Py_ssize_t = int


def cclass(cls: _T) -> _T:
    """``@cython.cclass``: an extension type once compiled; here, the class itself."""
    return cls


def cfunc(function: _T) -> _T:
    """``@cython.cfunc``: a C function once compiled; here, the function itself."""
    return function


def cast(kind: Callable[[Any], _T], value: Any) -> _T:
    """``cython.cast(kind, value)``: C's conversion once compiled; here, ``kind(value)``."""
    return kind(value)


def annotation_typing(flag: bool) -> Callable[[_T], _T]:
    """``@cython.annotation_typing(flag)``: whether annotations are C types once compiled."""

    def keep(target: _T) -> _T:
        return target

    return keep
