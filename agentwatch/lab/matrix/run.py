"""Backtest a set of worlds, one by one, and report each (``backtest --worlds``).

For each world: the spec's trace is generated (or reused from ``--traces DIR`` when the spec
and the simulator's code are unchanged), replayed through the live engine exactly as
``agentwatch backtest FILE`` does (so its events/s is the end-to-end figure), and scored
against the world's labels. Results are per world, never pooled alone: the pooled line sums
incidents, episodes and agent-hours of the same worlds below them.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from agentwatch.detectors.rules import RuleSet
from agentwatch.lab.backtest import DEFAULT_EXCHANGE_S, run_backtest
from agentwatch.lab.evaluation import Evaluation, Targets, incident_agents
from agentwatch.lab.evaluation.evaluation import expected_by_chance
from agentwatch.lab.evaluation.results import quantile
from agentwatch.lab.labels import Label, load_labels
from agentwatch.lab.matrix.seal import HALVES, half_files
from agentwatch.lab.sim import Simulation, World, load_world, write_jsonl

__all__ = [
    "KIND_COLUMNS",
    "WorldRun",
    "format_tables",
    "progress_line",
    "run_world",
    "run_worlds",
    "runs_to_json",
    "select_worlds",
    "sim_code_hash",
]

KIND_COLUMNS: tuple[tuple[str, str], ...] = (
    ("runaway_loop", "loop"),
    ("cost_explosion", "explosion"),
    ("error_storm", "storm"),
    ("privilege_probing", "probing"),
    ("exfiltration", "exfil"),
    ("unapproved_high_risk", "unapproved"),
    ("mix_shift", "mix"),
    ("cost_drift", "ramp"),
)
"""Incident kinds in table order, with their column titles."""


def sim_code_hash() -> str:
    """SHA-256 over the simulator's source files: a cached trace is reused only while the
    code that generated it is unchanged."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted([*(root / "sim").rglob("*.py"), root / "labels.py"]):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def select_worlds(selector: str, *, allow_sealed: bool = False) -> list[World]:
    """The worlds of a half (``tuning``, ``sealed``), a directory of specs or one spec file.

    Raises
    ------
    ~agentwatch.lab.sim.WorldError
        A spec that does not load; a sealed one without ``allow_sealed``.
    ValueError
        Nothing to run.
    """
    if selector in HALVES:
        files = half_files(selector)
    else:
        path = Path(selector)
        if path.is_dir():
            files = sorted(path.glob("*.yml"))
        elif path.is_file():
            files = [path]
        else:
            raise ValueError(f"{selector}: not a half ({', '.join(HALVES)}), directory or file")
    if not files:
        raise ValueError(f"{selector}: no world specs (*.yml) there")
    return [load_world(p, allow_sealed=allow_sealed) for p in files]


@dataclass(frozen=True)
class WorldRun:
    """One world's backtest and its evaluation."""

    world: World
    evaluation: Evaluation
    events: int
    seconds: float
    """The replay, end to end (engine setup, read, decode, detect)."""
    engine_seconds: float
    generate_seconds: float | None
    """Writing the trace (``None`` when a cached one was reused)."""

    @property
    def events_per_s(self) -> float:
        """End-to-end replay throughput."""
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def engine_events_per_s(self) -> float:
        """Throughput of :meth:`~agentwatch.detectors.engine.Engine.process` alone."""
        return self.events / self.engine_seconds if self.engine_seconds > 0 else 0.0

    def to_dict(self, targets: Targets | None = None) -> dict[str, Any]:
        """JSON-able form: the figures, the checks, and the evaluation (50 false episodes)."""
        ev = self.evaluation
        kinds = {
            k.kind: {
                "incidents": k.incidents,
                "detected": k.detected,
                "median_ttd_s": k.median_ttd_s,
                "median_after_evidence_s": k.median_after_evidence_s,
            }
            for k in ev.kinds
        }
        fast = ev.fast_ramps
        return {
            "name": self.world.name,
            "half": self.world.half,
            "factors": dict(self.world.factors),
            "spec_sha256": self.world.sha256,
            "seed": self.world.seed,
            "agents": ev.summary.agents,
            "agent_hours": round(ev.summary.agent_hours, 2),
            "events": self.events,
            "events_per_s": round(self.events_per_s),
            "engine_events_per_s": round(self.engine_events_per_s),
            "generate_seconds": self.generate_seconds,
            "recall": ev.recall,
            "incidents": len(ev.incidents),
            "detected": ev.detected,
            "false_episodes": ev.false_episodes,
            "false_per_100_agent_hours": round(ev.false_per_100_agent_hours, 4),
            "benign_change_episodes": ev.benign_change_total,
            "benign_change_expected": ev.benign_change_expected,
            "kinds": kinds,
            "fast_ramps": {
                "count": len(fast),
                "in_time": sum(ev.ramp_in_time(r, targets) for r in fast),
                "after_2x_s": [r.after_2x_s for r in fast],
            },
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in ev.check(targets)],
            "evaluation": ev.to_dict(max_episodes=50),
        }


def _cached(traces: Path, world: World) -> tuple[Path, Path, bool]:
    events = traces / f"{world.name}.jsonl"
    labels = traces / f"{world.name}.labels.jsonl"
    key_file = traces / f"{world.name}.key"
    key = f"{world.sha256} {sim_code_hash()}\n"
    fresh = (
        events.is_file()
        and labels.is_file()
        and key_file.is_file()
        and key_file.read_text(encoding="utf-8") == key
    )
    if not fresh:
        key_file.unlink(missing_ok=True)
    return events, labels, fresh


def run_world(
    world: World,
    rules: RuleSet,
    *,
    traces: Path | None = None,
    partitions: int = 1,
    exchange_s: float = DEFAULT_EXCHANGE_S,
) -> WorldRun:
    """Generate (or reuse) one world's trace, replay it through ``rules`` (as ``partitions``
    workers exchanging fleet summaries every ``exchange_s``), score it."""
    tmp = None if traces is not None else Path(tempfile.mkdtemp(prefix="agentwatch-world-"))
    try:
        directory = traces if traces is not None else tmp
        assert directory is not None
        directory.mkdir(parents=True, exist_ok=True)
        events_path, labels_path, fresh = _cached(directory, world)
        generate_s: float | None = None
        if not fresh:
            started = time.perf_counter()
            write_jsonl(Simulation(world.config), events_path, labels_path)
            generate_s = time.perf_counter() - started
            key = f"{world.sha256} {sim_code_hash()}\n"
            (directory / f"{world.name}.key").write_text(key, encoding="utf-8")
        labels: list[Label] = load_labels(labels_path)
        result = run_backtest(
            events_path,
            rules,
            partitions=partitions,
            exchange_s=exchange_s,
            track=incident_agents(labels),
        )
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    evaluation = result.score(labels)
    return WorldRun(
        world=world,
        evaluation=evaluation,
        events=result.events,
        seconds=result.seconds,
        engine_seconds=result.engine_seconds,
        generate_seconds=generate_s,
    )


def run_worlds(
    worlds: Sequence[World],
    rules: RuleSet,
    *,
    traces: Path | None = None,
    on_world: Callable[[WorldRun], None] | None = None,
    partitions: int = 1,
    exchange_s: float = DEFAULT_EXCHANGE_S,
) -> list[WorldRun]:
    """:func:`run_world` for each world in turn (``on_world`` sees each as it finishes)."""
    runs: list[WorldRun] = []
    for world in worlds:
        run = run_world(world, rules, traces=traces, partitions=partitions, exchange_s=exchange_s)
        runs.append(run)
        if on_world is not None:
            on_world(run)
    return runs


# -- output ------------------------------------------------------------------------------


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}s"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        return "  ".join(cells).rstrip()

    return [fmt(header), "  ".join("-" * w for w in widths), *(fmt(r) for r in rows)]


def _kind_cell(det: int, n: int, ttds: list[float], seens: list[float], afters: list[float]) -> str:
    if not n:
        return ""
    seen = quantile(seens, 0.5)
    after = quantile(afters, 0.5)
    return (
        f"{det}/{n} {_secs(quantile(ttds, 0.5))}"
        + ("" if after is None else f" ({_secs(after)})")
        + ("" if seen is None else f" {seen:.0f}e")
    )


def _ramp_cell(runs: Sequence[WorldRun], targets: Targets) -> str:
    fast = [r for run in runs for r in run.evaluation.fast_ramps]
    if not fast:
        return ""
    ok = sum(Evaluation.ramp_in_time(r, targets) for r in fast)
    afters = [r.after_2x_s for r in fast if r.after_2x_s is not None]
    return f"{ok}/{len(fast)} {_secs(quantile(afters, 0.5))}"


def _row(label: str, runs: Sequence[WorldRun], targets: Targets) -> tuple[list[str], list[str]]:
    incidents = [r for run in runs for r in run.evaluation.incidents]
    detected = sum(r.detected for r in incidents)
    agent_hours = sum(run.evaluation.summary.agent_hours for run in runs)
    false = sum(run.evaluation.false_episodes for run in runs)
    benign = sum(run.evaluation.benign_change_total for run in runs)
    chance = expected_by_chance([run.evaluation for run in runs])
    events = sum(run.events for run in runs)
    seconds = sum(run.seconds for run in runs)
    checks = [c for run in runs for c in run.evaluation.check(targets)]
    main = [
        label,
        str(sum(run.evaluation.summary.agents for run in runs)),
        f"{agent_hours:,.0f}",
        f"{events:,}",
        f"{detected}/{len(incidents)}",
        "n/a" if not incidents else f"{detected / len(incidents):.3f}",
        f"{false / agent_hours * 100:.2f}" if agent_hours else "-",
        str(benign) if chance is None else f"{benign} ({chance:.1f})",
        _ramp_cell(runs, targets),
        f"{events / seconds:,.0f}" if seconds else "-",
        "PASS" if all(c.ok for c in checks) else "FAIL",
    ]
    kinds = [label]
    for kind, _ in KIND_COLUMNS:
        mine = [r for r in incidents if r.kind == kind]
        ttds = [r.ttd_s for r in mine if r.ttd_s is not None]
        seens = [float(r.events_to_detect) for r in mine if r.events_to_detect is not None]
        afters = [r.after_evidence_s for r in mine if r.after_evidence_s is not None]
        kinds.append(_kind_cell(sum(r.detected for r in mine), len(mine), ttds, seens, afters))
    return main, kinds


def format_tables(runs: Sequence[WorldRun], targets: Targets | None = None) -> str:
    """Two per-world tables (figures; recall and median time to detect per kind), each with
    a pooled line over the same worlds, and each failing world's failed checks."""
    t = targets or Targets()
    main_rows: list[list[str]] = []
    kind_rows: list[list[str]] = []
    for run in runs:
        main, kinds = _row(run.world.name, [run], t)
        main_rows.append(main)
        kind_rows.append(kinds)
    if len(runs) > 1:
        main, kinds = _row("pooled", runs, t)
        main_rows.append(main)
        kind_rows.append(kinds)
    lines = _table(
        [
            "world",
            "agents",
            "agent-h",
            "events",
            "detected",
            "recall",
            "false/100h",
            "benign",
            "ramps<=30m",
            "events/s",
            "targets",
        ],
        main_rows,
    )
    lines.append("")
    lines += _table(["world", *(title for _, title in KIND_COLUMNS)], kind_rows)
    lines += [
        "",
        "detected: incidents caught / incidents; false/100h: false alert episodes per 100 "
        "agent-hours; benign: false episodes on benign fleet-wide changes (in brackets: how",
        "many the change windows would hold by chance, at the world's false rate outside them);",
        "ramps<=30m: fast cost ramps (3x within 2 h) flagged within 30 min of crossing 2x, "
        "median delay after 2x; per kind: caught/incidents, median time to detect, in "
        "brackets the median delay after the incident's first evidence, and "
        "median events to detect (Ne: the agent's events from the incident start to the first "
        "detection, the evidence the detectors had);",
        "events/s: the backtest end to end (engine setup, read, decode, detect) on one core.",
    ]
    missed = [(run, r) for run in runs for r in run.evaluation.incidents if not r.detected]
    if missed:
        lines += [
            "",
            f"missed incidents ({len(missed)}; in brackets the agent's events and failed calls "
            "from the incident's start to its end: what it left to detect):",
        ]
        lines += [f"  {run.world.name}: {r.describe()}" for run, r in missed]
    failing = [(run, [c for c in run.evaluation.check(t) if not c.ok]) for run in runs]
    failing = [(run, bad) for run, bad in failing if bad]
    if failing:
        lines += ["", "failed targets:"]
        for run, bad in failing:
            lines.append(f"  {run.world.name}: " + "; ".join(f"{c.name} {c.detail}" for c in bad))
    return "\n".join(lines)


def runs_to_json(
    runs: Sequence[WorldRun], targets: Targets | None = None, rules: dict[str, str] | None = None
) -> dict[str, Any]:
    """JSON-able report: every world, the targets and the rules file with its SHA-256."""
    t = targets or Targets()
    return {
        "rules": rules or {},
        "targets": {
            "min_recall": t.min_recall,
            "max_false_per_100_agent_hours": t.max_false_per_100_agent_hours,
            "max_benign_change_episodes": t.max_benign_change_episodes,
            "max_median_ttd_s": t.max_median_ttd_s,
            "ttd_kinds": list(t.ttd_kinds),
            "max_after_2x_s": t.max_after_2x_s,
        },
        "worlds": [run.to_dict(t) for run in runs],
        "passed": all(c.ok for run in runs for c in run.evaluation.check(t)),
    }


def progress_line(stream: IO[str] = sys.stderr) -> Callable[[WorldRun], None]:
    """A callback printing one line per finished world."""

    def show(run: WorldRun) -> None:
        gen = "cached" if run.generate_seconds is None else f"generated {run.generate_seconds:.1f}s"
        stream.write(
            f"  {run.world.name}: {run.events:,} events, {gen}, replayed {run.seconds:.1f}s\n"
        )
        stream.flush()

    return show
