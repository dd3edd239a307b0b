"""Per-tool settings of the gateway: the risk of each tool and where its target comes from.

A *risk map* (``--risk-map FILE``, YAML) maps tool names or ``fnmatch`` patterns to a risk
level, or to ``{risk: LEVEL, target: KEY}`` where ``KEY`` (or a list of keys, first present
wins) names the argument whose value is the event's ``target``::

    send_email: {risk: high, target: to}
    "fs.*": {risk: medium, target: [path, file]}
    search: low
    "*": low

An exact name wins over patterns; patterns are tried in file order and the first match wins.
A call whose tool names no target key gets a digest of its arguments as ``target``
(``sha256:`` and 16 hex digits of the canonical JSON): repeated identical calls look alike to
the detectors without the arguments leaving the host.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from agentwatch.sdk._support import RISKS, Risk, clip

__all__ = ["PolicyError", "ToolPolicy", "ToolRule", "arguments_digest", "load_policy"]

MAX_TARGET_CHARS = 1024


class PolicyError(ValueError):
    """An unusable risk map; the message names the file, the tool and the problem."""


@dataclass(frozen=True)
class ToolRule:
    """What the risk map says about the tools one name or pattern matches."""

    pattern: str
    risk: Risk | None = None
    target_keys: tuple[str, ...] = ()


def arguments_digest(arguments: Mapping[str, Any] | None) -> str | None:
    """``sha256:`` and 16 hex digits of the canonical JSON of ``arguments`` (``None`` if empty).

    Examples
    --------
    >>> arguments_digest({"b": 1, "a": "x"}) == arguments_digest({"a": "x", "b": 1})
    True
    >>> arguments_digest({"q": "kafka"})
    'sha256:6c0eb6fd4929843f'
    >>> arguments_digest({}) is None
    True
    """
    if not arguments:
        return None
    text = json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ToolPolicy:
    """The risk map: risk and target of a tool call.

    Examples
    --------
    >>> policy = ToolPolicy.from_mapping({"send_email": {"risk": "high", "target": "to"},
    ...                                   "fs.*": "medium"})
    >>> policy.risk("send_email"), policy.risk("fs.read"), policy.risk("search")
    ('high', 'medium', None)
    >>> policy.target("send_email", {"to": "ceo@example.com", "body": "hi"})
    'ceo@example.com'
    >>> policy.target("fs.read", {"path": "/etc/hosts"})
    'sha256:f1e315a560763fcc'
    """

    exact: Mapping[str, ToolRule] = field(default_factory=dict)
    patterns: Sequence[ToolRule] = ()

    @classmethod
    def from_mapping(cls, doc: Mapping[str, Any], source: str = "risk map") -> ToolPolicy:
        """Build a policy from a parsed risk map; raise :class:`PolicyError` on a bad entry."""
        exact: dict[str, ToolRule] = {}
        patterns: list[ToolRule] = []
        for name, value in doc.items():
            if not isinstance(name, str) or not name:
                raise PolicyError(f"{source}: tool names must be non-empty strings, got {name!r}")
            rule = _rule(name, value, source)
            if any(ch in name for ch in "*?["):
                patterns.append(rule)
            else:
                exact[name] = rule
        return cls(exact=exact, patterns=tuple(patterns))

    def rule(self, tool: str) -> ToolRule | None:
        """The rule for ``tool``: its exact entry, else the first matching pattern."""
        found = self.exact.get(tool)
        if found is not None:
            return found
        for rule in self.patterns:
            if fnmatch.fnmatchcase(tool, rule.pattern):
                return rule
        return None

    def risk(self, tool: str) -> Risk | None:
        """The declared risk of ``tool`` (``None``: not in the map)."""
        rule = self.rule(tool)
        return None if rule is None else rule.risk

    def target(self, tool: str, arguments: Mapping[str, Any] | None) -> str | None:
        """The event ``target`` of a call: the first configured argument present, else a
        digest of the arguments."""
        rule = self.rule(tool)
        if rule is not None and arguments:
            for key in rule.target_keys:
                value = arguments.get(key)
                if value is None:
                    continue
                if not isinstance(value, str):
                    value = json.dumps(value, sort_keys=True, default=str)
                return clip(value, MAX_TARGET_CHARS)
        return arguments_digest(arguments)


def _rule(name: str, value: Any, source: str) -> ToolRule:
    where = f"{source}: {name!r}"
    if value is None or isinstance(value, str):
        return ToolRule(name, _risk(value, where))
    if not isinstance(value, Mapping):
        raise PolicyError(f"{where}: expected a risk level or {{risk, target}}, got {value!r}")
    unknown = set(value) - {"risk", "target"}
    if unknown:
        raise PolicyError(f"{where}: unknown keys {sorted(map(str, unknown))}; use risk, target")
    target = value.get("target")
    keys: tuple[str, ...]
    if target is None:
        keys = ()
    elif isinstance(target, str) and target:
        keys = (target,)
    elif isinstance(target, list) and target and all(isinstance(k, str) and k for k in target):
        keys = tuple(cast("list[str]", target))
    else:
        raise PolicyError(f"{where}: target must be an argument name or a list of them")
    return ToolRule(name, _risk(value.get("risk"), where), keys)


def _risk(value: Any, where: str) -> Risk | None:
    if value is None:
        return None
    if value not in RISKS:
        raise PolicyError(f"{where}: risk {value!r} is not one of {', '.join(sorted(RISKS))}")
    return cast(Risk, value)


def load_policy(path: str | Path | None) -> ToolPolicy:
    """Read a risk map (YAML); ``None`` gives the empty policy (no risk, digest targets).

    Raises
    ------
    PolicyError
        when the file cannot be read or parsed, or an entry is invalid (one line).
    """
    if path is None:
        return ToolPolicy()
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"cannot read risk map {path}: {exc.strerror or exc}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise PolicyError(f"risk map {path}{line}: not valid YAML") from None
    if doc is None:
        return ToolPolicy()
    if not isinstance(doc, Mapping):
        raise PolicyError(f"risk map {path}: expected a mapping of tool names to risk levels")
    return ToolPolicy.from_mapping(doc, source=f"risk map {path}")
