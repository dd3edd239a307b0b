"""A real Prometheus scrapes a live worker; every Grafana dashboard query must return data.

Debian's ``prometheus`` scrapes the worker's ``/metrics`` every second and evaluates the shipped
self-monitoring rules. Two waves of traffic go through the worker (valid events of two fleets,
errors and denials, malformed records, and a policy violation per wave that opens an incident
paged through the signed webhook, whose first attempt fails), so every counter exists and
moves between scrapes. Then each query of ``deploy/grafana/dashboards/agentwatch.json`` runs
through Prometheus's HTTP API the way Grafana would send it (``$__rate_interval`` and
``$fleet`` substituted), and must return data; the template variable's ``label_values`` query
must list the fleets; every alert rule must evaluate without error.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from pathlib import Path

import pytest

from agentwatch.config import Settings
from agentwatch.streams.app import create_app
from agentwatch.streams.runner import running_app
from tests.prometheus_stack import Prometheus, WebhookReceiver, eventually
from tests.streams.test_pipeline import encoded, event, produce, wait_for
from tests.streams.test_response import risky, rules_file
from tests.test_compose import DASHBOARD_FILE, dashboard_queries

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
RULES_FILE = ROOT / "deploy" / "prometheus" / "rules" / "agentwatch.rules.yml"
SCRAPE_S = 1
#: What Grafana sends for ``$__rate_interval`` at this scrape interval would be 4 s; the queries
#: run once, right after the traffic, so a window that spans both waves is used.
RATE_INTERVAL = "30s"
SECRET = "dash-" + "0f1e2d3c" * 5


def grafana_expr(expr: str, fleet: str = ".*") -> str:
    """``expr`` as Grafana sends it: variables replaced (``$fleet`` = All is ``.*``)."""
    out = expr.replace("$__rate_interval", RATE_INTERVAL).replace("$__interval", "5s")
    out = out.replace("$__range", "5m").replace("${fleet}", fleet).replace("$fleet", fleet)
    assert "$" not in out, f"an unknown dashboard variable in {expr!r}"
    return out


def wave(n: int) -> list[tuple[bytes | None, bytes]]:
    """Valid events of two fleets with errors and denials, malformed records, a violation."""
    base = 1000 * n
    items = [encoded(event(base + i, f"w{n}-a{i % 4}")) for i in range(40)]
    items += [encoded(event(base + 40 + i, f"w{n}-o{i}", fleet="ops")) for i in range(10)]
    items += [
        encoded(event(base + 50 + i, f"w{n}-a1", status="error", error="boom")) for i in range(5)
    ]
    items += [encoded(event(base + 60 + i, f"w{n}-a2", status="denied")) for i in range(5)]
    items += [(b"bad", b"{not json"), (b"bad", json.dumps({"event_id": "x"}).encode())]
    items.append(risky(base + 90, f"rogue-{n}"))
    return items


def is_rate(expr: str) -> bool:
    return "rate(" in expr


async def test_every_dashboard_query_returns_data_from_a_live_worker(
    settings: Settings, tmp_path: Path
) -> None:
    dashboard = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    queries = list(dict.fromkeys(dashboard_queries(dashboard)))
    panel_exprs = [q for q in queries if not q.lstrip().startswith("label_values(")]
    variable_queries = [q for q in queries if q.lstrip().startswith("label_values(")]
    assert panel_exprs and variable_queries

    async with WebhookReceiver() as hook:
        worker = create_app(
            settings.replace(
                rules_file=rules_file(tmp_path),
                notify_max_backoff_s=0.2,
                incident_group_wait_s=0.2,
                incident_resolve_after_s=600,
                routes={"critical": ["webhook"]},
                webhook={"url": f"{hook.url}/page", "secret": SECRET},
            )
        )
        async with running_app(worker):
            target = worker.web_url.removeprefix("http://")
            config = {
                "global": {"scrape_interval": f"{SCRAPE_S}s", "evaluation_interval": "1s"},
                "rule_files": [str(RULES_FILE)],
                "scrape_configs": [
                    {
                        "job_name": "agentwatch",
                        "metrics_path": "/metrics",
                        "static_configs": [{"targets": [target]}],
                    }
                ],
            }
            async with Prometheus(tmp_path / "prometheus", config) as prom:

                async def scraped() -> bool:
                    return bool(await prom.query('up{job="agentwatch"} == 1'))

                await eventually(scraped, 15, "Prometheus scraped the worker")
                for n in (1, 2):  # the second wave moves every counter the first created
                    hook.answers.append(503)  # each page fails once, then is retried
                    await produce(worker.settings, wave(n))
                    await wait_for(lambda n=n: len(hook.on("/page")) == n, timeout=20)
                    await asyncio.sleep(2 * SCRAPE_S)

                async def has_two_pages() -> bool:
                    sent = await prom.query("sum(agentwatch_notifications_sent_total)")
                    return bool(sent) and float(sent[0]["value"][1]) == 2

                await eventually(has_two_pages, 10, "Prometheus saw both pages")
                await asyncio.sleep(2 * SCRAPE_S)

                empty, nan, flat = [], [], []
                for expr in panel_exprs:
                    for fleet in (".*", "support"):
                        if fleet != ".*" and "$fleet" not in expr:
                            continue
                        result = await prom.query(grafana_expr(expr, fleet))
                        values = [float(r["value"][1]) for r in result]
                        if not values:
                            empty.append((fleet, expr))
                        elif any(math.isnan(v) for v in values):
                            nan.append((fleet, expr))
                        elif is_rate(expr) and not any(v > 0 for v in values):
                            flat.append((fleet, expr))
                assert not empty, f"queries without data: {empty}"
                assert not nan, f"queries answering NaN: {nan}"
                assert not flat, f"rate queries that saw no increase: {flat}"

                for variable in variable_queries:
                    metric, label = re.fullmatch(
                        r"\s*label_values\(\s*([^,]+?)\s*,\s*(\w+)\s*\)\s*", variable
                    ).groups()  # type: ignore[union-attr]
                    found = await prom.api(f"label/{label}/values", **{"match[]": metric})
                    assert {"support", "ops"} <= set(found), variable

                groups = (await prom.api("rules"))["groups"]
                evaluated = [r for g in groups for r in g["rules"]]
                assert len(evaluated) >= 12
                broken = [(r["name"], r.get("lastError")) for r in evaluated if r["health"] != "ok"]
                assert not broken, broken
