"""Incident kinds are classes registered by name."""

from __future__ import annotations

import pytest

from agentwatch.lab.sim import ALL_INCIDENT_KINDS, INCIDENTS, Incident, incident_class


def test_every_kind_has_one_registered_class() -> None:
    assert sorted(INCIDENTS) == sorted(ALL_INCIDENT_KINDS)
    for kind in ALL_INCIDENT_KINDS:
        cls = incident_class(kind)
        assert issubclass(cls, Incident) and cls.kind == kind


def test_unknown_kind_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown incident kind 'meteor'; one of .*runaway_loop"):
        incident_class("meteor")


def test_only_the_loop_takes_over_the_agent() -> None:
    assert [k for k, cls in INCIDENTS.items() if cls.takes_over] == ["runaway_loop"]
