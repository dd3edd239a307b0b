"""Check a parsed rules file and report every problem in it at once.

:func:`check_document` walks the file's groups and rules and collects a
:class:`~agentwatch.detectors.problems.Problem` for each unknown key (with the known key it
probably meant), each value of the wrong type (what was expected, what was found), each
detector parameter a detector does not have or rejects, each unknown detector and each
duplicate alert name. A detector's parameters are checked against its constructor's signature
(names and annotated types) before it is built, so a wrong type reads "expected an integer,
found 'five'", never the Python error it would cause inside the detector.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import cache
from typing import Any, Literal

from pydantic import ConfigDict, TypeAdapter, ValidationError

from agentwatch.alerting.silences import InhibitRule
from agentwatch.detectors.base import DETECTORS, AgentDetector
from agentwatch.detectors.problems import (
    Problem,
    describe,
    expected_for,
    from_validation_error,
    key_path,
    suggest,
)
from agentwatch.detectors.rules import SEVERITIES, Rule, RuleAction

__all__ = [
    "DURATION",
    "check_document",
    "check_inhibit_rules",
    "check_params",
    "describe_type",
    "detector_parameters",
]

TOP_KEYS = ("groups", "inhibit_rules", "approvals")
GROUP_KEYS = ("name", "rules")
RULE_KEYS = tuple(f.alias or name for name, f in Rule.model_fields.items())
ACTION_KEYS = tuple(RuleAction.model_fields)
DURATION = "a duration such as 30s, 5m or 1h30m, or seconds (not negative)"
_STRICT = ConfigDict(strict=True)


def check_document(doc: Any, source: str) -> tuple[list[Rule], list[Problem]]:
    """The valid rules of a parsed rules file, and every problem found in it.

    Parameters
    ----------
    doc
        The file's YAML, parsed.
    source
        The file's name, as problems name it.

    Returns
    -------
    tuple
        The rules without a problem, in file order, and the problems, in file order. The
        file is usable only when there are no problems.

    Examples
    --------
    >>> doc = {"groups": [{"name": "g", "rules": [
    ...     {"alert": "Budget", "detector": "budget", "params": {"max_actons": 10}}]}]}
    >>> rules, problems = check_document(doc, "r.yml")
    >>> print(problems[0])
    r.yml: group 'g' rule 'Budget': key 'params.max_actons': unknown parameter of detector \
'budget'; did you mean 'max_actions'?
    """
    problems: list[Problem] = []
    if doc is None:
        problems.append(
            Problem(source, "(top)", "empty file", expected="a mapping with a 'groups' list")
        )
        return [], problems
    if not isinstance(doc, dict):
        problems.append(
            Problem(
                source,
                "(top)",
                "wrong type",
                expected="a mapping with a 'groups' list",
                found=describe(doc),
            )
        )
        return [], problems
    problems += _unknown_keys(doc, TOP_KEYS, source, [])
    groups = doc.get("groups")
    if "groups" not in doc:
        problems.append(Problem(source, "groups", "missing: this key is required"))
        return [], problems
    if not isinstance(groups, list):
        problems.append(
            Problem(
                source, "groups", "wrong type", expected="a list of groups", found=describe(groups)
            )
        )
        return [], problems
    rules: list[Rule] = []
    first_seen: dict[str, str] = {}
    for g, group in enumerate(groups):
        at: list[int | str] = ["groups", g]
        if not isinstance(group, dict):
            problems.append(
                Problem(
                    source,
                    key_path(at),
                    "wrong type",
                    expected="a mapping with 'name' and 'rules'",
                    found=describe(group),
                )
            )
            continue
        problems += _unknown_keys(group, GROUP_KEYS, source, at)
        name = group.get("name")
        if name is not None and not isinstance(name, str):
            problems.append(
                Problem(
                    source,
                    key_path([*at, "name"]),
                    "wrong type",
                    expected="a string",
                    found=describe(name),
                )
            )
        gname = name if isinstance(name, str) else f"#{g + 1}"
        raws = group.get("rules")
        if not isinstance(raws, list):
            problems.append(
                Problem(
                    source,
                    key_path([*at, "rules"]),
                    "missing: every group needs a 'rules' list" if raws is None else "wrong type",
                    group=gname,
                    expected=None if raws is None else "a list of rules",
                    found=None if raws is None else describe(raws),
                )
            )
            continue
        for r, raw in enumerate(raws):
            rule, found = _check_rule(raw, source, gname, r)
            problems += found
            alert = raw.get("alert") if isinstance(raw, dict) else None
            if isinstance(alert, str):
                here = f"group {gname!r} rule #{r + 1}"
                if alert in first_seen:
                    problems.append(
                        Problem(
                            source,
                            "alert",
                            f"duplicate alert name (first in {first_seen[alert]}); "
                            "every rule needs its own",
                            group=gname,
                            rule=alert,
                            index=r,
                        )
                    )
                    rule = None
                else:
                    first_seen[alert] = here
            if rule is not None and not found:
                rules.append(rule)
    return rules, problems


def check_inhibit_rules(doc: Any, source: str) -> tuple[list[InhibitRule], list[Problem]]:
    """The ``inhibit_rules:`` of a parsed rules file (Alertmanager's shape), and their problems.

    Examples
    --------
    >>> doc = {"inhibit_rules": [{"source_matchers": ['rule="FailureRate"'],
    ...     "target_matchers": ['rule="FailureRate"'], "equal": ["fleet"], "min_agents": 3}]}
    >>> rules, problems = check_inhibit_rules(doc, "r.yml")
    >>> rules[0].min_agents, problems
    (3, [])
    >>> print(check_inhibit_rules({"inhibit_rules": [{"equal": "fleet"}]}, "r.yml")[1][0])
    r.yml: key 'inhibit_rules[0].source_matchers': Field required
    """
    if not isinstance(doc, dict) or doc.get("inhibit_rules") is None:
        return [], []
    raws = doc["inhibit_rules"]
    if not isinstance(raws, list):
        found = describe(raws)
        return [], [Problem(source, "inhibit_rules", "wrong type", expected="a list", found=found)]
    rules: list[InhibitRule] = []
    problems: list[Problem] = []
    for i, raw in enumerate(raws):
        try:
            rules.append(InhibitRule.model_validate(raw))
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                where = key_path(["inhibit_rules", i, *error["loc"]])
                problems.append(Problem(source, where, str(error["msg"])))
        except ValueError as exc:  # a matcher that does not parse
            problems.append(Problem(source, key_path(["inhibit_rules", i]), str(exc)))
    return rules, problems


def _unknown_keys(
    mapping: Mapping[Any, Any], known: Sequence[str], source: str, at: list[int | str]
) -> list[Problem]:
    problems = []
    for key in mapping:
        if key not in known:
            hint = suggest(key, known)
            reason = "unknown key" if hint else f"unknown key (known: {', '.join(known)})"
            problems.append(Problem(source, key_path([*at, str(key)]), reason, suggestion=hint))
    return problems


def _check_rule(raw: Any, source: str, group: str, index: int) -> tuple[Rule | None, list[Problem]]:
    """One rule: its own keys with the model, its parameters against its detector."""
    if not isinstance(raw, dict):
        problem = Problem(
            source,
            "(rule)",
            "wrong type",
            group=group,
            index=index,
            expected="a mapping with 'alert' and 'detector'",
            found=describe(raw),
        )
        return None, [problem]
    alert = raw.get("alert")
    context: dict[str, Any] = {
        "group": group,
        "rule": alert if isinstance(alert, str) else None,
        "index": index,
    }
    problems: list[Problem] = []
    rule: Rule | None = None
    try:
        rule = Rule.model_validate(raw)
    except ValidationError as exc:
        problems += _rule_problems(exc, raw, source, context)
    detector = raw.get("detector")
    params = raw.get("params", {})
    if isinstance(detector, str) and detector in DETECTORS and isinstance(params, dict):
        for parts, reason, expected, found, hint in check_params(DETECTORS[detector], params):
            problems.append(
                Problem(
                    source,
                    key_path(["params", *parts]),
                    reason,
                    expected=expected,
                    found=found,
                    suggestion=hint,
                    **context,
                )
            )
    return (rule if not problems else None), problems


def _rule_problems(
    exc: ValidationError, raw: dict[str, Any], source: str, context: dict[str, Any]
) -> list[Problem]:
    """The model's errors, with the detector, severity, durations and action made clear."""
    problems = from_validation_error(
        exc,
        file=source,
        known_keys={(): RULE_KEYS, ("action",): ACTION_KEYS},
        expected_by_key={
            ("alert",): "a name of letters, digits and _, starting with a letter",
            ("params",): "a mapping of the detector's parameters",
            ("fleets",): "a list of fleet names",
            ("labels",): "a mapping of strings to strings",
            ("annotations",): "a mapping of strings to strings",
        },
        **context,
    )
    return [_clarify(problem, raw) for problem in problems]


def _clarify(problem: Problem, raw: dict[str, Any]) -> Problem:
    key = problem.key
    if key == "detector" and isinstance(raw.get("detector"), str):
        known = sorted(DETECTORS)
        hint = suggest(raw["detector"], known)
        return replace(
            problem,
            reason="unknown detector" if hint else f"unknown detector (known: {', '.join(known)})",
            expected="a registered detector",
            found=describe(raw["detector"]),
            suggestion=hint,
        )
    if key == "labels" and isinstance(raw.get("labels"), dict) and "severity" in problem.reason:
        value = raw["labels"].get("severity")
        return replace(
            problem,
            key="labels.severity",
            reason="not a severity",
            expected="one of " + ", ".join(SEVERITIES),
            found=describe(value),
            suggestion=suggest(value, SEVERITIES),
        )
    if key in ("for", "cooldown") and problem.expected is None:
        return replace(
            problem, reason="not a duration", expected=DURATION, found=describe(raw.get(key))
        )
    if key.startswith("action.") and isinstance(raw.get("action"), str):
        return replace(problem, key="action")  # written as `action: halt`
    return problem


Issue = tuple[list[int | str], str, str | None, str | None, str | None]


def check_params(cls: type[AgentDetector], params: Mapping[str, Any]) -> list[Issue]:
    """Every problem with a rule's ``params`` for detector ``cls``.

    Unknown names (with the closest known one), values of the wrong type (by the
    constructor's annotations, strictly: ``"5"`` is not an integer, ``5.0`` is not one
    either), NaN, and values the constructor rejects: each supplied parameter is tried on its
    own, so that every rejected one is named; a combination rejected although each value
    alone is accepted is reported on ``params``.

    Returns
    -------
    list
        ``(key path under params, reason, expected, found, suggestion)`` per problem.

    Examples
    --------
    >>> from agentwatch.detectors.runaway_loop import RunawayLoop
    >>> for issue in check_params(RunawayLoop, {"min_run": "five", "min_rn": 3}):
    ...     print(issue)
    (['min_run'], 'wrong type', 'an integer', "'five' (a string)", None)
    (['min_rn'], "unknown parameter of detector 'runaway_loop'", None, None, 'min_run')
    >>> check_params(RunawayLoop, {"min_run": 1})
    [(['min_run'], "not accepted by detector 'runaway_loop': min_run must be >= 2, got 1", None, \
'1 (an integer)', None)]
    """
    known, open_ended = detector_parameters(cls)
    issues: list[Issue] = []
    good: dict[str, Any] = {}
    for name, value in params.items():
        if not isinstance(name, str) or (name not in known and not open_ended):
            hint = suggest(name, known)
            reason = f"unknown parameter of detector {cls.name!r}"
            if hint is None:
                reason += f" (known: {', '.join(known) or 'none'})"
            issues.append(([str(name)], reason, None, None, hint))
            continue
        found = _type_issues(name, value, known.get(name, Any))
        if found:
            issues += found
        else:
            good[name] = value  # range checks see only well-typed values
    rejected = f"not accepted by detector {cls.name!r}"
    try:
        cls(**good)
    except (TypeError, ValueError) as exc:
        alone: list[Issue] = []
        for name, value in good.items():
            try:
                cls(**{name: value})
            except (TypeError, ValueError) as err:
                alone.append(([name], f"{rejected}: {err}", None, describe(value), None))
        whole: list[Issue] = [([], f"{rejected}: {exc}", None, None, None)]
        issues += alone or whole
    return issues


def _type_issues(name: str, value: Any, annotation: Any) -> list[Issue]:
    optional, inner = _split_optional(annotation)
    if value is None:
        if optional or annotation is Any:
            return []
        return [([name], "wrong type", describe_type(annotation), "null", None)]
    if inner is Any:
        return []
    if isinstance(value, float) and math.isnan(value):
        return [([name], "not a number", "a finite number", describe(value), None)]
    try:
        _adapter(inner).validate_python(value)
    except ValidationError as exc:
        issues: list[Issue] = []
        for err in exc.errors(include_url=False):
            loc = [p for p in err["loc"] if p != "[key]"]
            if not loc:
                return [([name], "wrong type", describe_type(annotation), describe(value), None)]
            expected = expected_for(err["type"])
            issues.append(
                (
                    [name, *loc],
                    "wrong type",
                    expected or describe_type(annotation),
                    describe(err.get("input")),
                    None,
                )
            )
        return issues
    except (TypeError, ValueError):  # an annotation pydantic cannot check: the constructor will
        return []
    return []


@cache
def _adapter(annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation, config=_STRICT)


def _split_optional(annotation: Any) -> tuple[bool, Any]:
    """``X | None`` -> ``(True, X)``; ``X`` -> ``(False, X)``."""
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):
        args = typing.get_args(annotation)
        rest = [a for a in args if a is not type(None)]
        if len(rest) < len(args):
            if len(rest) == 1:
                return True, rest[0]
            return True, typing.Union[tuple(rest)]  # noqa: UP007 - built from a tuple
    return False, annotation


@cache
def detector_parameters(cls: type[AgentDetector]) -> tuple[dict[str, Any], bool]:
    """A detector's constructor parameters with their types, and whether it takes ``**kw``.

    Examples
    --------
    >>> from agentwatch.detectors.budget import Budget
    >>> params, open_ended = detector_parameters(Budget)
    >>> sorted(params), open_ended
    (['fleets', 'max_actions', 'max_cost_usd', 'window_s'], False)
    """
    signature = inspect.signature(cls.__init__)
    try:
        hints = typing.get_type_hints(cls.__init__)
    except (NameError, TypeError):  # an annotation that does not resolve: names only
        hints = {}
    params: dict[str, Any] = {}
    open_ended = False
    for name, param in signature.parameters.items():
        if name == "self":
            continue
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            open_ended = True
        elif param.kind is not inspect.Parameter.VAR_POSITIONAL:
            params[name] = hints.get(name, Any)
    return params, open_ended


_WORDS: dict[Any, tuple[str, str]] = {
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
    bool: ("true or false", "booleans"),
    str: ("a string", "strings"),
    type(None): ("null", "null"),
}


def describe_type(annotation: Any, plural: bool = False) -> str:
    """An annotation in words.

    Examples
    --------
    >>> from collections.abc import Mapping, Sequence
    >>> describe_type(int | None)
    'an integer or null'
    >>> describe_type(Sequence[str])
    'a list of strings'
    >>> describe_type(Mapping[str, Mapping[str, float | None]] | None)
    'a mapping of strings to mappings of strings to numbers or null, or null'
    """
    if annotation in _WORDS:
        return _WORDS[annotation][plural]
    if annotation is Any:
        return "values" if plural else "any value"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):
        words = [describe_type(a, plural) for a in args]
        nested = any(" or " in w for w in words[:-1])
        return (", or " if nested else " or ").join(words)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if isinstance(origin, type) and issubclass(origin, Mapping) and len(args) == 2:
        inner = f"{describe_type(args[0], True)} to {describe_type(args[1], True)}"
        return f"mappings of {inner}" if plural else f"a mapping of {inner}"
    if isinstance(origin, type) and issubclass(origin, Sequence | set | frozenset) and args:
        inner = describe_type(args[0], True)
        return f"lists of {inner}" if plural else f"a list of {inner}"
    name = getattr(annotation, "__name__", str(annotation))
    return f"{name} values" if plural else f"a {name}"
