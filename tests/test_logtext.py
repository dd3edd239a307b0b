"""Escaping outside text for log lines."""

from __future__ import annotations

import logging

import pytest

from agentwatch.logtext import escape


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alice", "alice"),
        ("Zoë 发送", "Zoë 发送"),
        ("ops\nINFO control: resume a1 by admin", "ops\\nINFO control: resume a1 by admin"),
        ("a\rb\x00c\x1b[31m", "a\\rb\\x00c\\x1b[31m"),
        ("evil\u202etxt.exe", "evil\\u202etxt.exe"),
        ("\ufeffbom\u2028sep\uffff", "\\ufeffbom\\u2028sep\\uffff"),
        ("C:\\path\\n", "C:\\\\path\\\\n"),  # a literal backslash cannot fake an escape
    ],
)
def test_escape_keeps_one_printable_line(text: str, expected: str) -> None:
    assert escape(text) == expected


def test_escape_bounds_length_and_accepts_any_object() -> None:
    assert escape("x" * 300) == "x" * 256 + "...(+44 chars)"
    assert escape(["a\nb"], limit=100) == "['a\\\\nb']"


def test_a_newline_in_an_actor_cannot_forge_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    logging.getLogger("t").info("control: halt a1 by %s", escape("bob\nINFO control: resume a1"))
    (record,) = caplog.records
    assert "\n" not in record.getMessage()
