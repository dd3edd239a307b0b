"""Problems found in a rules file (or a rule test file), each one line a person can act on.

A :class:`Problem` names the file, the rule (group, alert name and position), the key path,
what was expected and what was found, and a suggestion for a misspelt name; :func:`describe`
renders a value for people, :func:`suggest` finds the name a typo meant, and
:func:`from_validation_error` turns pydantic's errors into problems without its raw wording.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import ValidationError

__all__ = [
    "KnownKeys",
    "Problem",
    "RulesError",
    "describe",
    "expected_for",
    "from_validation_error",
    "key_path",
    "suggest",
]

#: What a pydantic error type means the value should have been.
_EXPECTED = {
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping",
    "mapping_type": "a mapping",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "list_type": "a list",
    "tuple_type": "a list",
    "sequence_str": "a list of strings",
    "iterable_type": "a list",
    "string_type": "a string",
    "string_too_long": "a shorter string",
    "string_too_short": "a non-empty string",
    "missing": "a value",
    "none_required": "null",
    "datetime_type": "a date and time (ISO 8601)",
    "datetime_parsing": "a date and time (ISO 8601)",
    "datetime_from_date_parsing": "a date and time (ISO 8601)",
    "timezone_aware": "a date and time with a time zone (such as 2026-01-01T00:00:00Z)",
}

_FOUND_LIMIT = 60

Location = tuple[int | str, ...]
#: The allowed keys of the mappings of a model, per location (or as a function of it).
KnownKeys = Mapping[Location, Sequence[str]] | Callable[[Location], Sequence[str]]


@dataclass(frozen=True)
class Problem:
    """One problem in one file.

    Attributes
    ----------
    file
        The file (``<builtin default.yml>`` for the shipped rules).
    key
        The key path inside the rule (``params.max_actions``), or from the top of the file
        when there is no rule (``groups[0].rules``); ``(file)``, ``(top)`` or ``(rule)`` for
        the file, its top level or the rule as a whole.
    reason
        What is wrong, in words.
    group, rule, index
        The rule's group name, its alert name (``None`` when it has none) and its position
        in the group (0-based); all ``None`` for a problem outside any rule.
    expected, found, suggestion
        What the key should hold, the value found (as :func:`describe` renders it), and the
        name a misspelt key or value probably meant.

    Examples
    --------
    >>> p = Problem("r.yml", "params.max_actons", "unknown parameter of detector 'budget'",
    ...             group="g", rule="Budget", index=0, suggestion="max_actions")
    >>> print(p)
    r.yml: group 'g' rule 'Budget': key 'params.max_actons': unknown parameter of detector \
'budget'; did you mean 'max_actions'?
    """

    file: str
    key: str
    reason: str
    group: str | None = None
    rule: str | None = None
    index: int | None = None
    expected: str | None = None
    found: str | None = None
    suggestion: str | None = None

    @property
    def where(self) -> str:
        """``group 'g' rule 'R'`` (``rule #3`` for a rule without a name), or ``""``."""
        parts = []
        if self.group is not None:
            parts.append(f"group {self.group!r}")
        if self.rule is not None:
            parts.append(f"rule {self.rule!r}")
        elif self.index is not None:
            parts.append(f"rule #{self.index + 1}")
        return " ".join(parts)

    @property
    def message(self) -> str:
        """The reason with what was expected and found, and the suggestion.

        ``found`` shows only beside ``expected``: a reason without an expectation (a
        detector's own words) already says what it found.
        """
        text = self.reason
        if self.expected is not None and self.found is not None:
            text += f": expected {self.expected}, found {self.found}"
        elif self.expected is not None:
            text += f": expected {self.expected}"
        if self.suggestion is not None:
            text += f"; did you mean {self.suggestion!r}?"
        return text

    def __str__(self) -> str:
        parts = [self.file, self.where]
        if not self.key.startswith("("):  # (file), (top), (rule): the place says it all
            parts.append(f"key {self.key!r}")
        return ": ".join([p for p in parts if p] + [self.message])

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields plus ``message`` (the reason with the details) and ``line``."""
        return {**asdict(self), "message": self.message, "line": str(self)}


class RulesError(ValueError):
    """A rules file that cannot be used; ``problems`` lists every :class:`Problem` in it."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("invalid rules:\n  " + "\n  ".join(str(p) for p in self.problems))

    @property
    def lines(self) -> list[str]:
        """One line per problem: file, rule, key and reason."""
        return [str(p) for p in self.problems]


def expected_for(error_type: str) -> str | None:
    """What a pydantic error type says the value should have been (``None``: unknown).

    Examples
    --------
    >>> expected_for("int_type"), expected_for("no_such_error")
    ('an integer', None)
    """
    return _EXPECTED.get(error_type)


def describe(value: Any) -> str:
    """A value as a person reads it: short, with its YAML type.

    Examples
    --------
    >>> describe("five"), describe(3), describe(None), describe(True)
    ("'five' (a string)", '3 (an integer)', 'null', 'true')
    >>> describe([1, 2])
    '[1, 2] (a list)'
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    if len(text) > _FOUND_LIMIT:
        text = text[: _FOUND_LIMIT - 3] + "..."
    if isinstance(value, str):
        kind = "a string"
    elif isinstance(value, int):
        kind = "an integer"
    elif isinstance(value, float):
        kind = "a number"
    elif isinstance(value, dict):
        kind = "a mapping"
    elif isinstance(value, list | tuple):
        kind = "a list"
    else:
        kind = f"a {type(value).__name__}"
    return f"{text} ({kind})"


def suggest(name: object, known: Iterable[str]) -> str | None:
    """The known name closest to a misspelt ``name``, if one is close enough.

    Examples
    --------
    >>> suggest("max_actons", ["max_actions", "window_s", "max_cost_usd"])
    'max_actions'
    >>> suggest("colour", ["alert", "detector"]) is None
    True
    """
    if not isinstance(name, str):
        return None
    folded = {k.lower(): k for k in known}
    match = difflib.get_close_matches(name.lower(), list(folded), n=1, cutoff=0.6)
    return folded[match[0]] if match else None


def key_path(parts: Iterable[int | str]) -> str:
    """``("params", "ignore_kinds", 1)`` -> ``'params.ignore_kinds[1]'``.

    Examples
    --------
    >>> key_path(["groups", 0, "rules"]), key_path([])
    ('groups[0].rules', '')
    """
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _literal_values(ctx: dict[str, Any] | None) -> list[str]:
    expected = str((ctx or {}).get("expected", ""))
    return [v.strip().strip("'") for v in expected.replace(" or ", ",").split(",") if v.strip()]


def from_validation_error(
    exc: ValidationError,
    *,
    file: str,
    prefix: Sequence[int | str] = (),
    known_keys: KnownKeys | None = None,
    expected_by_key: dict[tuple[int | str, ...], str] | None = None,
    **context: Any,
) -> list[Problem]:
    """Problems for each of pydantic's errors, worded for people.

    Parameters
    ----------
    exc
        The error of validating one model.
    file
        The file the model came from.
    prefix
        The model's key path in the file (before each error's location).
    known_keys
        Per location of a mapping (``()`` for the model itself), its allowed keys, as a
        mapping or a function of the location: an unknown key gets the closest as a
        suggestion, or the list of them.
    expected_by_key
        Per location, what the value should be when pydantic's own wording would not say it
        (a duration, a pattern).
    context
        ``group``, ``rule`` and ``index`` of every problem.
    """
    table = known_keys if isinstance(known_keys, Mapping) else None
    lookup = None if isinstance(known_keys, Mapping) else known_keys
    expected_by_key = expected_by_key or {}
    problems: list[Problem] = []
    seen: set[tuple[tuple[int | str, ...], str]] = set()
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        kind = err["type"]
        if (loc, kind) in seen:
            continue
        seen.add((loc, kind))
        key = key_path([*prefix, *loc]) or "(top)"
        value = err.get("input")
        ctx = err.get("ctx")
        if kind == "extra_forbidden":
            if table is not None:
                known = table.get(loc[:-1], ())
            else:
                known = lookup(loc[:-1]) if lookup is not None else ()
            hint = suggest(loc[-1], known)
            reason = "unknown key"
            if hint is None and known:
                reason += f" (known: {', '.join(known)})"
            problems.append(Problem(file, key, reason, suggestion=hint, **context))
        elif kind == "missing":
            problems.append(Problem(file, key, "missing: this key is required", **context))
        elif kind == "literal_error":
            values = _literal_values(ctx)
            problems.append(
                Problem(
                    file,
                    key,
                    "not an allowed value",
                    expected="one of " + ", ".join(values),
                    found=describe(value),
                    suggestion=suggest(value, values),
                    **context,
                )
            )
        elif kind in ("value_error", "assertion_error"):
            reason = str(err["msg"]).removeprefix("Value error, ")
            reason = reason.removeprefix("Assertion failed, ")
            problems.append(
                Problem(
                    file,
                    key,
                    reason,
                    expected=expected_by_key.get(loc),
                    found=describe(value),
                    **context,
                )
            )
        elif kind == "string_pattern_mismatch":
            pattern = (ctx or {}).get("pattern", "its pattern")
            problems.append(
                Problem(
                    file,
                    key,
                    "not an allowed name",
                    expected=expected_by_key.get(loc, f"a string matching {pattern}"),
                    found=describe(value),
                    **context,
                )
            )
        elif kind in ("string_too_long", "string_too_short", "too_long", "too_short"):
            limit = (ctx or {}).get("max_length", (ctx or {}).get("min_length", "?"))
            longer = kind.endswith("short")
            unit = "characters" if kind.startswith("string") else "items"
            problems.append(
                Problem(
                    file,
                    key,
                    "too short" if longer else "too long",
                    expected=f"{'at least' if longer else 'at most'} {limit} {unit}",
                    found=describe(value),
                    **context,
                )
            )
        elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
            bound = next(iter((ctx or {}).values()), "?")
            words = {
                "greater_than": "greater than",
                "greater_than_equal": "at least",
                "less_than": "less than",
                "less_than_equal": "at most",
            }[kind]
            problems.append(
                Problem(
                    file,
                    key,
                    "out of range",
                    expected=f"a number {words} {bound}",
                    found=describe(value),
                    **context,
                )
            )
        else:
            expected = expected_by_key.get(loc) or _EXPECTED.get(kind)
            if expected is None:
                reason = f"{err['msg']} (found {describe(value)})"
                problems.append(Problem(file, key, reason, found=describe(value), **context))
            else:
                problems.append(
                    Problem(
                        file,
                        key,
                        "wrong type",
                        expected=expected,
                        found=describe(value),
                        **context,
                    )
                )
    return problems
