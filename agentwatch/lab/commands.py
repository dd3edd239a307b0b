"""What ``agentwatch backtest`` does with a trace, with world specs, and with ``--compare``.

Thin command adapters over :mod:`agentwatch.lab.backtest`, :mod:`agentwatch.lab.matrix.run`,
:mod:`agentwatch.lab.compare` and the report: they print, and exit with status 2 and a one-line
message for a foreseeable failure (a missing file, a bad spec, a sealed world without leave).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from agentwatch.detectors.rules import RuleSet
from agentwatch.lab.evaluation import Evaluation, Targets

__all__ = ["backtest_compare", "backtest_file", "backtest_worlds"]


def backtest_file(
    events: Path,
    ruleset: RuleSet,
    *,
    fingerprint: dict[str, str],
    out: Path | None,
    labels: Path | None,
    report: Path | None,
    progress: bool,
    as_json: bool,
    goal: Targets,
    what_if: bool,
    partitions: int = 1,
    exchange_s: float = 5.0,
) -> Evaluation | None:
    import json

    from agentwatch.lab.backtest import run_backtest
    from agentwatch.lab.evaluation import incident_agents
    from agentwatch.lab.labels import LabelError, load_labels

    if not events.is_file():
        typer.echo(f"agentwatch backtest: {events}: no such file", err=True)
        raise typer.Exit(2)
    try:
        label_rows = load_labels(labels) if labels is not None else []
    except (OSError, LabelError) as exc:
        typer.echo(f"agentwatch backtest: {exc}", err=True)
        raise typer.Exit(2) from None
    result = run_backtest(
        events,
        ruleset,
        progress=progress and sys.stderr.isatty(),
        track=incident_agents(label_rows),
        partitions=partitions,
        exchange_s=exchange_s,
    )
    for line in result.first_errors:
        typer.echo(f"invalid event: {line}", err=True)

    def say(text: str) -> None:  # with --json, stdout carries the JSON only
        typer.echo(text, err=as_json)

    say(
        f"{result.events} events, {result.summary.agents} agents, {len(result.anomalies)} "
        f"anomalies; {result.invalid} invalid, {result.duplicates} duplicate, "
        f"{result.out_of_order} out of order"
    )
    say(
        f"throughput: {result.engine_events_per_s:,.0f} events/s in the engine "
        f"(Engine.process), {result.events_per_s:,.0f} events/s end to end "
        f"(engine setup, read, decode, detect)"
    )
    say(f"rules: {fingerprint['source']} sha256 {fingerprint['sha256']}")
    if partitions > 1:
        say(f"replayed as {partitions} workers exchanging fleet summaries every {exchange_s:g} s")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8") as fh:
            for anomaly in result.anomalies:
                fh.write(anomaly.model_dump_json() + "\n")
        say(f"wrote {len(result.anomalies)} anomalies to {out}")
    evaluation = None
    if labels is not None:
        evaluation = result.score(label_rows)
        if not as_json:
            typer.echo(evaluation.format_text(targets=goal))
    if as_json:
        doc: dict[str, Any] = {
            "rules": fingerprint,
            "events": result.events,
            "events_per_s": round(result.events_per_s),
            "engine_events_per_s": round(result.engine_events_per_s),
            "anomalies": len(result.anomalies),
        }
        if evaluation is not None:
            doc["evaluation"] = evaluation.to_dict()
            doc["checks"] = [
                {"name": c.name, "ok": c.ok, "detail": c.detail} for c in evaluation.check(goal)
            ]
        typer.echo(json.dumps(doc, indent=2, sort_keys=True))
    if report is not None:
        from agentwatch.lab.report import render_report
        from agentwatch.lab.whatif import run_whatif

        scenarios = None
        if what_if:
            say("re-running every rule with stricter thresholds for the report's what-if")
            scenarios = run_whatif(events, ruleset, result.anomalies, label_rows, result.summary)
        report.parent.mkdir(parents=True, exist_ok=True)
        html = render_report(
            result.anomalies,
            label_rows,
            result.summary,
            evaluation,
            whatif=scenarios,
            rules=fingerprint,
        )
        report.write_text(html, encoding="utf-8")
        say(f"wrote report to {report}")
    return evaluation


def backtest_compare(
    files: tuple[Path, Path],
    pair: tuple[RuleSet, RuleSet],
    *,
    events: Path | None,
    labels: Path | None,
    worlds: str | None,
    sealed: bool,
    traces: Path | None,
    goal: Targets,
    as_json: bool,
) -> bool:
    import json
    import tempfile

    from agentwatch.lab.backtest import rules_fingerprint, run_backtest
    from agentwatch.lab.compare import Comparison, format_comparison
    from agentwatch.lab.evaluation import incident_agents
    from agentwatch.lab.labels import LabelError, load_labels

    comparisons: list[Comparison] = []
    if worlds is not None:
        from agentwatch.lab.matrix.run import run_world, select_worlds
        from agentwatch.lab.sim import WorldError

        if events is not None or labels is not None:
            typer.echo("agentwatch backtest: --worlds replaces EVENTS and --labels", err=True)
            raise typer.Exit(2)
        try:
            chosen = select_worlds(worlds, allow_sealed=sealed)
        except (WorldError, ValueError) as exc:
            typer.echo(f"agentwatch backtest: {exc}", err=True)
            raise typer.Exit(2) from None
        if any(w.half == "sealed" for w in chosen):
            typer.echo("agentwatch backtest: BREAKING THE SEAL (sealed worlds)", err=True)
        with tempfile.TemporaryDirectory(prefix="agentwatch-compare-") as tmp:
            where = traces or Path(tmp)
            for world in chosen:
                a = run_world(world, pair[0], traces=where).evaluation
                b = run_world(world, pair[1], traces=where).evaluation
                comparisons.append(Comparison(world.name, a, b))
                typer.echo(f"  compared {world.name}", err=True)
    else:
        if events is None or labels is None:
            typer.echo("agentwatch backtest: --compare needs EVENTS with --labels, or --worlds")
            raise typer.Exit(2)
        try:
            label_rows = load_labels(labels)
        except (OSError, LabelError) as exc:
            typer.echo(f"agentwatch backtest: {exc}", err=True)
            raise typer.Exit(2) from None
        if not events.is_file():
            typer.echo(f"agentwatch backtest: {events}: no such file", err=True)
            raise typer.Exit(2)
        sides = []
        for ruleset in pair:
            result = run_backtest(events, ruleset, track=incident_agents(label_rows))
            sides.append(result.score(label_rows))
        comparisons.append(Comparison(events.name, sides[0], sides[1]))
    fa, fb = rules_fingerprint(files[0]), rules_fingerprint(files[1])
    if as_json:
        doc = {
            "a": fa,
            "b": fb,
            "comparisons": [c.to_dict(goal) for c in comparisons],
        }
        typer.echo(json.dumps(doc, indent=2, sort_keys=True))
    else:
        typer.echo(
            format_comparison(
                comparisons,
                f"{fa['source']} (sha256 {fa['sha256'][:16]}...)",
                f"{fb['source']} (sha256 {fb['sha256'][:16]}...)",
                goal,
            )
        )
    return all(c.ok for comp in comparisons for c in comp.b.check(goal))


def backtest_worlds(
    selector: str,
    ruleset: RuleSet,
    *,
    fingerprint: dict[str, str],
    goal: Targets,
    sealed: bool,
    traces: Path | None,
    as_json: bool,
    partitions: int = 1,
    exchange_s: float = 5.0,
) -> bool:
    import json
    import time

    from agentwatch.lab.matrix.run import (
        format_tables,
        progress_line,
        run_worlds,
        runs_to_json,
        select_worlds,
    )
    from agentwatch.lab.sim import WorldError

    try:
        chosen = select_worlds(selector, allow_sealed=sealed)
    except (WorldError, ValueError) as exc:
        typer.echo(f"agentwatch backtest: {exc}", err=True)
        raise typer.Exit(2) from None
    opened = [w.name for w in chosen if w.half == "sealed"]
    if opened:
        typer.echo(
            f"agentwatch backtest: BREAKING THE SEAL of {len(opened)} sealed world(s): "
            f"{', '.join(opened)}",
            err=True,
        )
    typer.echo(
        f"backtesting {len(chosen)} world(s) with {fingerprint['source']} "
        f"(sha256 {fingerprint['sha256'][:16]}...)",
        err=True,
    )
    started = time.perf_counter()
    if partitions > 1:
        typer.echo(
            f"replaying as {partitions} workers exchanging fleet summaries every "
            f"{exchange_s:g} s of event time",
            err=True,
        )
    runs = run_worlds(
        chosen,
        ruleset,
        traces=traces,
        on_world=progress_line(),
        partitions=partitions,
        exchange_s=exchange_s,
    )
    wall = time.perf_counter() - started
    doc = runs_to_json(runs, goal, fingerprint)
    if as_json:
        doc["wall_seconds"] = round(wall, 1)
        typer.echo(json.dumps(doc, indent=2, sort_keys=True))
    else:
        typer.echo(f"rules: {fingerprint['source']} sha256 {fingerprint['sha256']}")
        typer.echo(format_tables(runs, goal))
        typer.echo(f"\nwall time: {wall:.0f} s for {len(runs)} world(s), one process")
    return bool(doc["passed"])
