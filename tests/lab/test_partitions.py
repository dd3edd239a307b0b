"""The one-engine guarantee for any number of workers: ``backtest --partitions N``.

A small simulated world (``tests/lab/worlds/partitions.yml``: two fleets, incidents of every
fleet-aware detector, a tool rollout) replayed as one engine and as four engines that own the
agents Kafka's default partitioner gives them and exchange their fleet summaries: with a zero
exchange interval the anomalies are the same (their numbers up to float rounding); with the
default interval they agree up to the exchange lag, and the scores stay within 5%.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agentwatch.detectors.rules import load_rules
from agentwatch.lab.backtest import home_partition, run_backtest
from agentwatch.lab.evaluation import evaluate
from agentwatch.lab.labels import load_labels
from agentwatch.lab.sim import Simulation, load_world, write_jsonl
from agentwatch.streams.stage import home_partition as worker_home_partition

WORLD = Path(__file__).parent / "worlds" / "partitions.yml"


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    where = tmp_path_factory.mktemp("partitions")
    events, labels = where / "events.jsonl", where / "labels.jsonl"
    write_jsonl(Simulation(load_world(WORLD).config), events, labels)
    return events, labels


def test_four_partitions_exchanging_after_every_event_give_the_same_anomalies(
    trace: tuple[Path, Path],
) -> None:
    rules = load_rules()
    one = run_backtest(trace[0], rules)
    four = run_backtest(trace[0], rules, partitions=4, exchange_s=0.0)
    assert len(one.anomalies) >= 5, "the world must raise anomalies for this to mean anything"
    assert {a.fleet for a in one.anomalies} == {"ops-1", "support-2"}
    # the same anomalies: ids, events, kinds, evidence and words; the numbers up to float
    # rounding (a fleet's sums are added up in another order across workers)
    numbers = ("score", "threshold", "observed", "baseline")
    assert [a.model_dump(exclude=set(numbers)) for a in four.anomalies] == [
        a.model_dump(exclude=set(numbers)) for a in one.anomalies
    ]
    for a, b in zip(one.anomalies, four.anomalies, strict=True):
        for name in numbers:
            assert getattr(b, name) == pytest.approx(getattr(a, name), rel=1e-9)
    assert four.summary.agents == one.summary.agents
    assert four.events == one.events


def test_with_the_default_exchange_interval_the_scores_stay_within_five_percent(
    trace: tuple[Path, Path],
) -> None:
    rules = load_rules()
    labels = load_labels(trace[1])
    one = run_backtest(trace[0], rules)
    four = run_backtest(trace[0], rules, partitions=4)  # every 5 s of event time
    a = evaluate(one.anomalies, labels, one.summary)
    b = evaluate(four.anomalies, labels, four.summary)
    assert a.recall > 0.5
    assert abs(a.recall - b.recall) <= 0.05 * a.recall
    assert abs(a.false_per_100_agent_hours - b.false_per_100_agent_hours) <= 0.05 * max(
        a.false_per_100_agent_hours, b.false_per_100_agent_hours
    )


def test_agents_go_where_the_worker_finds_them() -> None:
    for k in range(200):
        agent = f"agent-{k}"
        assert home_partition(agent, 4) == worker_home_partition(agent, 4)
        assert home_partition(agent, 1) == 0


def test_partitions_must_be_positive(trace: tuple[Path, Path]) -> None:
    with pytest.raises(ValueError, match="partitions"):
        run_backtest(trace[0], load_rules(), partitions=0)


def test_the_cli_replays_as_n_workers_and_says_so(trace: tuple[Path, Path]) -> None:
    import json

    from typer.testing import CliRunner

    from agentwatch.cli import app

    runs = {}
    for args in ([], ["--partitions", "4", "--exchange-s", "0"]):
        done = CliRunner().invoke(
            app,
            [
                "backtest",
                str(trace[0]),
                "--labels",
                str(trace[1]),
                "--json",
                "--no-progress",
                *args,
            ],
        )
        assert done.exit_code == 0, done.output
        runs[bool(args)] = json.loads(done.stdout)
        if args:
            assert "replayed as 4 workers exchanging fleet summaries every 0 s" in done.stderr
    assert runs[True]["anomalies"] == runs[False]["anomalies"] > 0
    assert runs[True]["evaluation"]["recall"] == runs[False]["evaluation"]["recall"]
    bad = CliRunner().invoke(app, ["backtest", str(trace[0]), "--partitions", "0"])
    assert bad.exit_code == 2
