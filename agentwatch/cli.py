"""The ``agentwatch`` command."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from agentwatch.config import ConfigError, Settings, load_settings

__all__ = ["app", "main"]

app = typer.Typer(
    name="agentwatch",
    help="Runtime monitor, anomaly detector and kill switch for fleets of LLM agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
schema_app = typer.Typer(help="Wire-contract JSON Schemas.", no_args_is_help=True)
app.add_typer(schema_app, name="schema")
rules_app = typer.Typer(help="Alerting rules files.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML settings file (default ./agentwatch.toml)."),
]


def _settings(config: Path | None, **overrides: object) -> Settings:
    try:
        settings = load_settings(config, **{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        typer.echo(f"agentwatch: {exc}", err=True)
        raise typer.Exit(2) from None
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return settings


@app.command()
def up(
    demo: Annotated[bool, typer.Option(help="Also run a simulated fleet with incidents.")] = False,
    agents: Annotated[int, typer.Option(help="Simulated agents (with --demo).")] = 40,
    speed: Annotated[float, typer.Option(help="Simulated minutes per real minute.")] = 1.0,
    config: ConfigOption = None,
) -> None:
    """Embedded stack: local broker + worker + web; --demo adds a simulated fleet."""
    from agentwatch.streams.runner import run_embedded

    settings = _settings(config)
    tasks = []
    if demo:
        from agentwatch.simulator import demo_task

        tasks.append(demo_task(agents=agents, speed=speed))
    raise typer.Exit(run_embedded(settings, tasks=tasks))


@app.command()
def worker(config: ConfigOption = None) -> None:
    """A production worker against AGENTWATCH_KAFKA_BOOTSTRAP."""
    from agentwatch.streams.runner import run_worker

    raise typer.Exit(run_worker(_settings(config)))


@app.command()
def simulate(
    agents: Annotated[int, typer.Option(help="Number of agents.")] = 50,
    minutes: Annotated[float, typer.Option(help="Simulated minutes.")] = 60.0,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same events).")] = 0,
    incidents: Annotated[
        str, typer.Option(help="Comma-separated incident kinds, 'all' or 'none'.")
    ] = "all",
    benign: Annotated[
        str, typer.Option(help="Comma-separated benign fleet-wide changes, 'all' or 'none'.")
    ] = "all",
    shape: Annotated[str, typer.Option(help="Fleet shape.")] = "mixed",
    out: Annotated[Path | None, typer.Option(help="Write events as JSONL here.")] = None,
    labels: Annotated[Path | None, typer.Option(help="Write incident labels here.")] = None,
    kafka: Annotated[bool, typer.Option(help="Produce to the actions topic.")] = False,
    speed: Annotated[
        float, typer.Option(help="With --kafka: 1 = real time, 60 = 1 min/s, 0 = max.")
    ] = 0.0,
    config: ConfigOption = None,
) -> None:
    """Simulate a fleet of agents with injected incidents and benign changes."""
    from agentwatch import simulator

    if out is None and not kafka:
        typer.echo("agentwatch simulate: give --out FILE or --kafka", err=True)
        raise typer.Exit(2)
    try:
        sim_config = simulator.SimConfig(
            agents=agents,
            minutes=minutes,
            seed=seed,
            incidents=simulator.parse_kinds(incidents, simulator.ALL_INCIDENT_KINDS),
            benign_changes=simulator.parse_kinds(benign, simulator.ALL_BENIGN_CHANGES),
            shape=shape,
        )
    except ValueError as exc:
        typer.echo(f"agentwatch simulate: {exc}", err=True)
        raise typer.Exit(2) from None
    sim = simulator.Simulation(sim_config)
    if out is not None:
        labels_path = labels or out.with_name(out.stem + ".labels.jsonl")
        n_events, n_labels = simulator.write_jsonl(sim, out, labels_path)
        typer.echo(f"wrote {n_events} events to {out} and {n_labels} labels to {labels_path}")
    if kafka:
        settings = _settings(config)
        sent = asyncio.run(
            simulator.produce(sim, settings.kafka_bootstrap, settings.topic("actions"), speed)
        )
        typer.echo(f"produced {sent} events to {settings.topic('actions')}")


@app.command()
def bench(
    events: Annotated[int, typer.Option(help="Events to process.")] = 200_000,
    agents: Annotated[int, typer.Option(help="Distinct agents.")] = 1_000,
    rate: Annotated[float, typer.Option(help="Offered load (events/s) for latency.")] = 2000.0,
    latency_seconds: Annotated[float, typer.Option(help="Length of the latency phase.")] = 15.0,
    store: Annotated[str, typer.Option(help="rocksdb or memory.")] = "rocksdb",
) -> None:
    """Throughput, latency and memory of one worker on the embedded broker; one JSON line."""
    from agentwatch.streams.bench import run_bench

    logging.basicConfig(level=logging.WARNING)
    result = run_bench(
        events=events,
        agents=agents,
        rate=rate,
        latency_seconds=latency_seconds,
        store=store,
    )
    typer.echo(result)


@app.command()
def backtest(
    events: Annotated[Path, typer.Argument(help="Events as JSONL (one ActionEvent per line).")],
    rules: Annotated[Path | None, typer.Option(help="Rules file (default: shipped).")] = None,
    out: Annotated[Path | None, typer.Option(help="Write anomalies as JSONL here.")] = None,
    labels: Annotated[Path | None, typer.Option(help="Incident labels (JSONL).")] = None,
    report: Annotated[Path | None, typer.Option(help="Write an HTML report here.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Replay recorded events through the detection engine; score against labels."""
    from agentwatch.backtest import run_backtest
    from agentwatch.detectors.rules import RulesError, load_rules
    from agentwatch.evaluation import evaluate
    from agentwatch.simulator import load_labels

    try:
        ruleset = load_rules(rules)
    except RulesError as exc:
        typer.echo(f"agentwatch backtest: {exc}", err=True)
        raise typer.Exit(2) from None
    if not events.is_file():
        typer.echo(f"agentwatch backtest: {events}: no such file", err=True)
        raise typer.Exit(2)
    result = run_backtest(events, ruleset, progress=progress and sys.stderr.isatty())
    for line in result.first_errors:
        typer.echo(f"invalid event: {line}", err=True)
    typer.echo(
        f"{result.events} events, {result.summary.agents} agents, {len(result.anomalies)} "
        f"anomalies; {result.invalid} invalid, {result.duplicates} duplicate, "
        f"{result.out_of_order} out of order"
    )
    typer.echo(
        f"throughput: {result.events_per_s:,.0f} events/s end to end (read, decode, detect), "
        f"{result.engine_events_per_s:,.0f} events/s in the engine"
    )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8") as fh:
            for anomaly in result.anomalies:
                fh.write(anomaly.model_dump_json() + "\n")
        typer.echo(f"wrote {len(result.anomalies)} anomalies to {out}")
    label_rows = load_labels(labels) if labels is not None else []
    evaluation = None
    if labels is not None:
        evaluation = evaluate(result.anomalies, label_rows, result.summary)
        typer.echo(evaluation.format_text())
    if report is not None:
        from agentwatch.report import render_report

        report.parent.mkdir(parents=True, exist_ok=True)
        html = render_report(result.anomalies, label_rows, result.summary, evaluation)
        report.write_text(html, encoding="utf-8")
        typer.echo(f"wrote report to {report}")


@rules_app.command("validate")
def rules_validate(path: Path) -> None:
    """Check a rules file; print every problem with file, rule and key."""
    from agentwatch.detectors.rules import RulesError, load_rules

    try:
        ruleset = load_rules(path)
    except RulesError as exc:
        for problem in exc.problems:
            typer.echo(problem, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{path}: {len(ruleset.rules)} rules OK")


@schema_app.command("export")
def schema_export(directory: Path) -> None:
    """Write the wire models' JSON Schemas into DIRECTORY."""
    from agentwatch.schemas import export_schemas

    for path in export_schemas(directory):
        typer.echo(str(path))


def main() -> None:
    """Entry point of the ``agentwatch`` console script."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
