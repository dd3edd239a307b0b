"""Tests for the backtest HTML report: structure, self-containment, escaping, content."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import pytest

from agentwatch.lab.evaluation import FleetSummary, evaluate
from agentwatch.lab.labels import Label
from agentwatch.lab.report import margin, render_report
from agentwatch.lab.report.style import dur
from agentwatch.lab.sim import SimConfig, Simulation
from agentwatch.schemas import Anomaly

VOID = {"meta", "br", "img", "input", "link", "hr", "col", "area", "base", "wbr", "source"}
SVG_VOID = {"rect", "line", "circle", "path", "polyline", "polygon", "ellipse"}
MALICIOUS = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'


class _Page(HTMLParser):
    """Collects tags, SVGs per section, attribute values and text; checks nesting."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: Counter[str] = Counter()
        self.svgs: Counter[str] = Counter()
        self.section: str | None = None
        self.attr_values: list[str] = []
        self.text: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        self.attr_values += [v or "" for _, v in attrs]
        self.attr_values += [k for k, _ in attrs]
        if tag == "section":
            self.section = dict(attrs).get("id")
        if tag == "svg":
            self.svgs[self.section or ""] += 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        self.attr_values += [v or "" for _, v in attrs]
        self.attr_values += [k for k, _ in attrs]

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}>, open: {self.stack[-3:]}")
            return
        self.stack.pop()
        if tag == "section":
            self.section = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    assert not parser.errors, parser.errors[:5]
    assert parser.stack == [], parser.stack
    return parser


T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def make_anomaly(i: int, agent: str, ts: float, detector: str, **kw: Any) -> Anomaly:
    values: dict[str, Any] = {
        "anomaly_id": f"an-{i}",
        "ts": datetime.fromtimestamp(ts, UTC),
        "agent_id": agent,
        "fleet": agent.split("-", maxsplit=1)[0],
        "detector": detector,
        "kind": detector,
        "severity": ("info", "warning", "error", "critical")[i % 4],
        "score": 3.0 * (1.0 + (i % 7) / 5),
        "threshold": 3.0,
        "observed": 10.0,
        "baseline": 2.0,
        "summary": f"{detector} observed 10 vs baseline 2",
    }
    values.update(kw)
    return Anomaly(**values)


@pytest.fixture(scope="module")
def backtest() -> tuple[list[Anomaly], list[Label], FleetSummary]:
    """A simulated fleet's labels plus fake anomalies near incidents, benign changes and noise."""
    sim = Simulation(SimConfig(agents=40, minutes=120, seed=11))
    labels = sim.labels()
    agents = [a.agent_id for a in sim.agents()]
    rng = random.Random(0)
    detectors = ["repeat", "budget", "failure_rate", "policy", "target_novelty"]
    anomalies: list[Anomaly] = []
    for lab in labels:
        start = lab.start_s
        if lab.agent_id is None:
            agent = next(a for a in agents if a.startswith(lab.fleet))
        else:
            agent = lab.agent_id
        det = rng.choice(detectors)
        for k in range(3):
            anomalies.append(make_anomaly(len(anomalies), agent, start + 20 + 60 * k, det))
    t0 = sim.config.start.timestamp()
    for _ in range(10):
        agent = rng.choice(agents)
        anomalies.append(
            make_anomaly(len(anomalies), agent, t0 + rng.uniform(0, 7200), "river_hst")
        )
    anomalies.append(make_anomaly(len(anomalies), agents[0], t0 + 100, "repeat", summary=MALICIOUS))
    counts = Counter(a.fleet for a in sim.agents())
    summary = FleetSummary(agents=40, start=t0, end=t0 + 7200, agents_by_fleet=dict(counts))
    return anomalies, labels, summary


def test_page_structure_one_svg_per_chart_section(backtest: Any) -> None:
    anomalies, labels, summary = backtest
    ev = evaluate(anomalies, labels, summary)
    page = render_report(anomalies, labels, summary, ev)
    assert page.startswith("<!DOCTYPE html>")
    parsed = parse(page)
    assert parsed.svgs == {"detectors": 1, "timelines": 1, "margins": 1}
    assert parsed.tags["section"] == 4  # detectors, timelines, margins, evaluation
    assert parsed.tags["table"] >= 4
    assert parsed.tags["title"] > len({a.agent_id for a in anomalies})  # tooltips


def test_recall_table_gives_the_delay_after_each_incidents_first_evidence(backtest: Any) -> None:
    anomalies, labels, summary = backtest
    # every incident agent's first event at its incident's start; its anomalies 20 s later
    events = {str(lab.agent_id): [lab.start_s] for lab in labels if lab.agent_id and not lab.benign}
    ev = evaluate(anomalies, labels, summary, events=events)
    loop = ev.kind("runaway_loop")
    assert loop is not None and loop.median_after_evidence_s == pytest.approx(20.0)
    page = render_report(anomalies, labels, summary, ev)
    assert '<th class="n">median after evidence</th>' in page
    row = page[page.index("<td>runaway_loop</td>") :]
    row = row[: row.index("</tr>")]
    assert row.endswith(f'<td class="n">{dur(20.0)}</td>')  # the last column
    plain = render_report(anomalies, labels, summary, evaluate(anomalies, labels, summary))
    assert "median after evidence" in plain  # the column is there, empty when not counted


def test_self_contained_no_scripts_no_urls(backtest: Any) -> None:
    anomalies, labels, summary = backtest
    # a URL inside a summary is text, and stays text
    extra = make_anomaly(
        10_000, "support-000", summary.start + 60, "exfil", summary="upload to https://evil.test/x"
    )
    page = render_report([*anomalies, extra], labels, summary, evaluate(anomalies, labels, summary))
    parsed = parse(page)
    assert parsed.tags["script"] == 0 and parsed.tags["link"] == 0 and parsed.tags["img"] == 0
    assert parsed.tags["iframe"] == 0 and parsed.tags["object"] == 0
    assert not [v for v in parsed.attr_values if "http" in v.lower() or v.startswith("on")]
    assert "url(" not in page
    assert "https://evil.test/x" in "".join(parsed.text)


def test_malicious_text_is_escaped(backtest: Any) -> None:
    anomalies, labels, summary = backtest
    bad_labels = [*labels, replace(labels[0], id="<b>inc</b>", params={"x": "<script>"})]
    page = render_report(
        anomalies, bad_labels, summary, evaluate(anomalies, bad_labels, summary), title=MALICIOUS
    )
    assert "<script" not in page and "<img" not in page and "<b>inc" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    parsed = parse(page)
    assert parsed.tags["script"] == 0
    assert MALICIOUS in "".join(parsed.text)  # the summary shows up as text, intact


def test_every_detector_is_named(backtest: Any) -> None:
    anomalies, labels, summary = backtest
    page = render_report(anomalies, labels, summary, evaluate(anomalies, labels, summary))
    text = "".join(parse(page).text)
    for detector in {a.detector for a in anomalies}:
        assert detector in text, detector
    for kind in {lab.kind for lab in labels if not lab.benign}:
        assert kind in text, kind


def test_without_evaluation_and_empty_inputs(backtest: Any) -> None:
    anomalies, labels, summary = backtest
    page = render_report(anomalies, labels, summary, None)
    parsed = parse(page)
    assert parsed.svgs == {"detectors": 1, "timelines": 1, "margins": 1}
    assert 'id="evaluation"' not in page
    empty = render_report([], [], FleetSummary(agents=0, start=0.0, end=0.0), None)
    assert parse(empty).svgs == {"detectors": 1, "timelines": 1, "margins": 1}
    assert "no anomalies" in empty


def test_timelines_are_capped_with_incident_agents_first() -> None:
    t0 = T0.timestamp()
    anomalies = [make_anomaly(i, f"support-{i:03d}", t0 + 60 * i, "rate") for i in range(100)]
    labels = [
        Label.from_dict(
            {
                "id": "inc-1",
                "kind": "runaway_loop",
                "agent_id": "ops-999",
                "fleet": "ops",
                "start": "2026-01-05T09:30:00Z",
                "end": "2026-01-05T09:40:00Z",
            }
        )
    ]
    summary = FleetSummary(agents=101, start=t0, end=t0 + 7200)
    page = render_report(anomalies, labels, summary, None, max_agents=20)
    assert "20 of 101 agents" in page
    text = "".join(parse(page).text)
    assert "ops-999" in text and "support-000" in text and "support-050" not in text
    assert text.index("ops-999") < text.index("support-000")


def test_margins_use_threshold_overrides() -> None:
    a = make_anomaly(0, "support-000", T0.timestamp(), "rate", score=6.0, threshold=3.0, rule="r1")
    assert margin(a) == 2.0
    assert margin(a, {"rate": 4.0}) == 1.5
    assert margin(a, {"rate": 4.0, "r1": 6.0}) == 1.0  # the rule's name wins
    assert margin(make_anomaly(1, "x", 0.0, "rate", threshold=0.0)) is None
    summary = FleetSummary(agents=1, start=T0.timestamp(), end=T0.timestamp() + 60)
    page = render_report([a], [], summary, None, thresholds={"rate": 12.0})
    parse(page)
    # measured against the overriding threshold: half of it, not twice the anomaly's own
    assert "margin 0.476-0.513: 1 anomalies" in page
    own = render_report([a], [], summary, None)
    assert "margin 1.99-2.11: 1 anomalies" in own and "margin 0.476" not in own


def test_false_anomalies_are_split_in_histograms(backtest: Any) -> None:
    anomalies, labels, summary = backtest
    ev = evaluate(anomalies, labels, summary)
    assert ev.false_episodes > 0
    page = render_report(anomalies, labels, summary, ev)
    assert "in false episodes" in page and "in true episodes" in page
