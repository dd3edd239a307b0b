"""Problem lines: where, what was expected, what was found, and what was probably meant."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentwatch.detectors.problems import (
    Problem,
    RulesError,
    describe,
    from_validation_error,
    key_path,
    suggest,
)


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")

    colour: Literal["red", "green", "blue"] = "red"


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=5)
    size: int = Field(ge=1)
    inner: Inner = Inner()
    tags: list[str] = []


def errors(doc: object, **kw: object) -> list[Problem]:
    with pytest.raises(ValidationError) as info:
        Model.model_validate(doc)
    return from_validation_error(info.value, file="f.yml", **kw)  # type: ignore[arg-type]


def test_problem_lines() -> None:
    full = Problem(
        "f.yml",
        "params.x",
        "wrong type",
        group="g",
        rule="R",
        index=2,
        expected="an integer",
        found="'a' (a string)",
    )
    assert str(full) == (
        "f.yml: group 'g' rule 'R': key 'params.x': wrong type: expected an integer, "
        "found 'a' (a string)"
    )
    nameless = Problem("f.yml", "alert", "missing: this key is required", group="g", index=2)
    assert str(nameless) == "f.yml: group 'g' rule #3: key 'alert': missing: this key is required"
    whole_file = Problem("f.yml", "(file)", "cannot read: No such file or directory")
    assert str(whole_file) == "f.yml: cannot read: No such file or directory"
    # found alone belongs to the JSON, the reason already says it
    quiet = Problem("f.yml", "k", "not accepted: k must be > 0, got -1", found="-1 (an integer)")
    assert quiet.message == "not accepted: k must be > 0, got -1"
    assert quiet.to_dict()["found"] == "-1 (an integer)"
    assert quiet.to_dict()["line"] == str(quiet)


def test_rules_error_keeps_every_problem() -> None:
    problems = [Problem("f.yml", "a", "one"), Problem("f.yml", "b", "two")]
    error = RulesError(problems)
    assert error.problems == problems
    assert error.lines == ["f.yml: key 'a': one", "f.yml: key 'b': two"]
    assert str(error) == "invalid rules:\n  f.yml: key 'a': one\n  f.yml: key 'b': two"


def test_describe_and_suggest() -> None:
    assert describe("x" * 100).endswith("... (a string)") and len(describe("x" * 100)) < 80
    assert describe({"a": 1}) == "{'a': 1} (a mapping)"
    assert describe(False) == "false"
    assert describe(1.5) == "1.5 (a number)"
    assert suggest("Cooldown", ["cooldown", "for"]) == "cooldown"
    assert suggest(3, ["a"]) is None
    assert key_path(["tests", 0, "agents", "a1", "events", 2, "acton"]) == (
        "tests[0].agents.a1.events[2].acton"
    )


def test_pydantic_errors_in_words() -> None:
    problems = errors(
        {
            "name": "toolong",
            "size": 0,
            "inner": {"colour": "gren", "shade": 1},
            "tags": [1],
            "x": 1,
        },
        known_keys={(): ["name", "size", "inner", "tags"], ("inner",): ["colour"]},
    )
    by_key = {p.key: p for p in problems}
    assert set(by_key) == {"name", "size", "inner.colour", "inner.shade", "tags[0]", "x"}
    assert (by_key["name"].reason, by_key["name"].expected) == ("too long", "at most 5 characters")
    assert (by_key["size"].reason, by_key["size"].expected) == (
        "out of range",
        "a number at least 1",
    )
    assert by_key["inner.colour"].suggestion == "green"
    assert by_key["inner.colour"].expected == "one of red, green, blue"
    assert by_key["inner.shade"].reason == "unknown key (known: colour)"
    assert (by_key["tags[0]"].expected, by_key["tags[0]"].found) == ("a string", "1 (an integer)")
    assert by_key["x"].reason == "unknown key (known: name, size, inner, tags)"
    assert all("Input should" not in str(p) for p in problems)


def test_known_keys_may_be_a_function_of_the_location() -> None:
    (problem,) = errors(
        {"name": "a", "size": 1, "inner": {"colur": "red"}},
        known_keys=lambda loc: ["colour"] if loc == ("inner",) else [],
    )
    assert (problem.key, problem.suggestion) == ("inner.colur", "colour")


def test_missing_and_prefix() -> None:
    problems = errors({}, prefix=["tests", 3], group="g")
    assert [(p.key, p.reason, p.group) for p in problems] == [
        ("tests[3].name", "missing: this key is required", "g"),
        ("tests[3].size", "missing: this key is required", "g"),
    ]
