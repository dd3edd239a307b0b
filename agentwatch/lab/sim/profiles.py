"""Simulated agents: the static traits of each agent and the targets of its actions.

A :class:`Profile` is derived from the seed and the agent's id only: its rate, duty cycle,
LLM share, model, token sizes, error proneness, perturbed Markov chain and pacing. Its
:meth:`Profile.target` gives realistic, session-coherent targets (one ticket per support
session, a few focus files per coding session).
"""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np

from agentwatch.lab.sim.catalog import (
    CUSTOMER_DOMAINS,
    FIRST_NAMES,
    INTERNAL_DOMAIN,
    LAST_NAMES,
    NOTIFY_URLS,
    PUBLIC_APIS,
    FleetSpec,
    ToolSpec,
)
from agentwatch.lab.sim.config import AgentProfile
from agentwatch.lab.sim.draws import lognormal, pick, seeded, stationary
from agentwatch.lab.sim.prices import MODEL_TPS

__all__ = ["Profile", "Session"]

_MIN_DUTY = 0.1  # an agent with idle gaps spends at least this share of its time in sessions

# -- targets -----------------------------------------------------------------------------

_KB_TOPICS = (
    "refund-policy", "shipping-times", "password-reset", "invoice-copy", "cancel-subscription",
    "change-address", "damaged-item", "warranty", "gift-cards", "two-factor-auth",
    "data-export", "pricing-tiers",
)  # fmt: skip
_REPOS = ("billing-service", "web-frontend", "data-pipeline", "auth-gateway", "mobile-api",
          "search-indexer", "notifications")  # fmt: skip
_MODULES = ("api", "models", "auth", "billing", "utils", "db", "cli", "workers", "cache",
            "config", "events", "schemas")  # fmt: skip
_SHELL = ("ruff check .", "git status", "git diff --stat", "make lint", "ls -la",
          "python -m pytest -x -q", "pip install -e .", "grep -rn TODO src")  # fmt: skip
_TABLES = (
    "warehouse.sales.orders", "warehouse.sales.order_items", "warehouse.sales.refunds",
    "warehouse.marketing.campaigns", "warehouse.marketing.attribution",
    "warehouse.product.events", "warehouse.product.sessions", "warehouse.finance.invoices",
    "warehouse.finance.revenue_daily", "warehouse.support.tickets", "warehouse.hr.headcount",
    "warehouse.product.feature_flags",
)  # fmt: skip
_METRICS = ("revenue", "orders", "churn", "active_users", "conversion", "tickets", "nps")
_DIMS = ("region", "week", "channel", "plan", "cohort")
_SERVICES = ("payments", "checkout", "search", "auth", "notifications", "inventory",
             "recommendations", "gateway", "billing", "media")  # fmt: skip
_PROM = ("http_requests_total", "p99_latency_seconds", "error_ratio", "cpu_usage",
         "memory_rss_bytes", "queue_depth")  # fmt: skip
_SECRET_NAMES = ("db-readonly", "api-token", "tls-cert", "redis-password")


class Session:
    """Context shared by the actions of one session (targets stay coherent)."""

    __slots__ = ("customer", "focus", "order", "service", "sid", "table", "ticket")

    def __init__(self, sid: str) -> None:
        self.sid = sid
        self.ticket = ""
        self.order = ""
        self.customer = ""
        self.focus: list[str] = []
        self.table = ""
        self.service = ""


def _customer(rng: random.Random) -> str:
    return f"{rng.choice(FIRST_NAMES)}.{rng.choice(LAST_NAMES)}@{rng.choice(CUSTOMER_DOMAINS)}"


class Profile:
    """Static traits of an agent, derived from the seed and its id only."""

    __slots__ = (
        "agent_id",
        "chain_weights",
        "duty",
        "entry_weights",
        "err_mult",
        "fleet",
        "gap_mean",
        "idle_mean",
        "in_base",
        "index",
        "llm_share",
        "model",
        "out_base",
        "rate",
        "repo",
        "services",
        "session_mean",
        "states",
        "stationary",
        "tables",
        "tool_specs",
    )

    def __init__(self, seed: int, index: int, agent_id: str, fleet: FleetSpec) -> None:
        rng = seeded(seed, "profile", agent_id)
        self.index = index
        self.agent_id = agent_id
        self.fleet = fleet
        rate = lognormal(rng, fleet.rate_per_min, fleet.rate_sigma)
        self.rate = min(max(rate, fleet.rate_min), fleet.rate_max)
        self.duty = rng.uniform(0.6, 0.95)
        self.llm_share = rng.uniform(*fleet.llm_share)  # P(an LLM call precedes a tool call)
        self.model: str = rng.choices(list(fleet.models), weights=list(fleet.models.values()))[0]
        self.in_base = lognormal(rng, fleet.input_tokens, 0.35)
        self.out_base = lognormal(rng, fleet.output_tokens, 0.35)
        self.session_mean = max(2.0, lognormal(rng, fleet.session_actions, 0.35))
        self.err_mult = lognormal(rng, 1.0, 0.5)
        # States: the fleet's tools, then its rollout tool (weight 0 until rolled out).
        self.tool_specs: tuple[ToolSpec, ...] = (*fleet.tools, fleet.rollout_tool)
        self.states = tuple(t.name for t in self.tool_specs)
        n = len(fleet.tools)
        self.chain_weights: list[list[float]] = []
        for name in self.states[:n]:
            row = fleet.transitions.get(name, {})
            self.chain_weights.append(
                [row.get(b, 0.0) * lognormal(rng, 1.0, 0.4) for b in self.states[:n]] + [0.0]
            )
        self.entry_weights = [fleet.entry.get(s, 0.0) for s in self.states[:n]] + [0.0]
        # Row n: after the rollout tool (unreachable until rolled out); row n + 1: entry.
        self.chain_weights.append(list(self.entry_weights))
        self.chain_weights.append(list(self.entry_weights))
        matrix = np.array([row[:n] for row in self.chain_weights[:n]], dtype=np.float64)
        self.stationary = stationary(matrix)
        self.repo = rng.choice(_REPOS)
        self.services = rng.sample(_SERVICES, rng.randint(3, 6))
        self.tables = rng.sample(_TABLES, rng.randint(4, 8))
        idle_s = None
        if fleet.idle_minutes is not None:  # drawn apart: the draws above stay as they were
            median, sigma = fleet.idle_minutes
            idle_s = lognormal(seeded(seed, "idle", agent_id), 60.0 * median, sigma)
            self._fit_idle(idle_s)
        # Pacing: events per minute while in a session, split between LLM gaps and latency.
        active_rate = self.rate / self.duty
        step_s = 60.0 * (1.0 + self.llm_share) / active_rate
        tool_lat = sum(
            p * t.latency_ms * math.exp(t.latency_sigma**2 / 2) / 1000.0
            for p, t in zip(self.stationary, fleet.tools, strict=True)
        )
        llm_lat = 0.5 + self.out_base / MODEL_TPS[self.model]
        busy = tool_lat + self.llm_share * llm_lat
        self.gap_mean = max(0.25, (step_s - busy) / (1.0 + self.llm_share))
        session_s = self.session_mean * max(step_s, busy)
        self.idle_mean = session_s * (1.0 - self.duty) / self.duty if idle_s is None else idle_s

    def _fit_idle(self, idle_s: float) -> None:
        """Set the duty cycle that keeps the agent's rate with idle gaps of ``idle_s``.

        One session and one idle gap last ``60 * events / rate`` seconds on average. When the
        gap alone would take more than 90 % of that, the sessions grow instead (the agent
        works longer between longer pauses), so rate and gaps both stay as asked.
        """
        per_session = self.session_mean * (1.0 + self.llm_share)
        cycle_s = 60.0 * per_session / self.rate
        if idle_s > (1.0 - _MIN_DUTY) * cycle_s:
            cycle_s = idle_s / (1.0 - _MIN_DUTY)
            self.session_mean = cycle_s * self.rate / 60.0 / (1.0 + self.llm_share)
        self.duty = 1.0 - idle_s / cycle_s

    def public(self) -> AgentProfile:
        return AgentProfile(
            agent_id=self.agent_id,
            fleet=self.fleet.name,
            rate_per_min=round(self.rate, 3),
            model=self.model,
            llm_share=round(self.llm_share, 3),
            session_actions=round(self.session_mean, 2),
            error_multiplier=round(self.err_mult, 3),
        )

    # -- targets ------------------------------------------------------------------------
    def new_session(self, rng: random.Random, sid: str) -> Session:
        sess = Session(sid)
        fleet = self.fleet.role
        if fleet == "support":
            sess.ticket = f"ticket:{rng.randint(100000, 999999)}"
            sess.order = f"order:ORD-{rng.randint(1000000, 9999999)}"
            sess.customer = _customer(rng)
        elif fleet == "coder":
            mods = rng.sample(_MODULES, 3)
            pkg = self.repo.replace("-", "_")
            sess.focus = [f"/workspace/{self.repo}/src/{pkg}/{m}.py" for m in mods]
            sess.focus.append(f"/workspace/{self.repo}/tests/test_{mods[0]}.py")
            sess.order = f"feat/{rng.choice(_MODULES)}-{rng.randint(100, 999)}"  # branch
        elif fleet == "analyst":
            sess.table = rng.choice(self.tables)
        else:
            sess.service = rng.choice(self.services)
        return sess

    def target(self, action: str, rng: random.Random, sess: Session, attrs: dict[str, Any]) -> str:
        """A realistic target for ``action``; may add attributes (amounts, sizes)."""
        fleet = self.fleet.role
        if fleet == "support":
            if action in ("read_ticket", "reply_ticket"):
                return sess.ticket
            if action == "search_kb":
                return f"kb:{pick(rng, _KB_TOPICS)}"
            if action == "lookup_order":
                return sess.order
            if action == "refund":
                attrs["amount_usd"] = round(min(lognormal(rng, 35.0, 0.8), 900.0), 2)
                return sess.order
            if action == "send_email":
                return sess.customer
            return f"lang:{pick(rng, ('es', 'de', 'fr', 'ja', 'pt'))}"  # translate_text
        if fleet == "coder":
            repo = self.repo
            if action in ("read_file", "write_file"):
                if rng.random() < 0.8:
                    return pick(rng, sess.focus)
                pkg = repo.replace("-", "_")
                extra = ("README.md", "pyproject.toml", f"src/{pkg}/__init__.py")
                return f"/workspace/{repo}/{pick(rng, extra)}"
            if action == "run_tests":
                return sess.focus[-1] if rng.random() < 0.7 else f"/workspace/{repo}/tests"
            if action == "git_commit":
                return f"git:{repo}@{sess.order}"
            if action == "shell":
                return pick(rng, _SHELL)
            if action == "deploy":
                return f"deploy:{repo}@{'prod' if rng.random() < 0.15 else 'staging'}"
            return f"code:{repo}?q={pick(rng, _MODULES)}"  # code_search
        if fleet == "analyst":
            if action in ("sql_query", "read_table"):
                return sess.table if rng.random() < 0.75 else pick(rng, self.tables)
            if action == "chart":
                return f"chart:{pick(rng, _METRICS)}_by_{pick(rng, _DIMS)}"
            if action == "export_csv":
                attrs["rows"] = int(lognormal(rng, 5000, 1.0)) + 1
                return f"s3://acme-analytics-exports/{sess.table.rsplit('.', 1)[-1]}.csv"
            if action == "http_get":
                return pick(rng, PUBLIC_APIS)
            if action == "write_table":
                return f"warehouse.scratch.{sess.table.rsplit('.', 1)[-1]}_agg"
            return f"notebook:{pick(rng, _METRICS)}-analysis.ipynb"  # run_notebook
        # ops
        svc = sess.service if rng.random() < 0.7 else pick(rng, self.services)
        if action == "query_metrics":
            return f"prometheus:{svc}/{pick(rng, _PROM)}"
        if action == "read_logs":
            return f"loki:{{app={svc!r}}}"
        if action == "http_get":
            return f"https://{svc}.{INTERNAL_DOMAIN}/healthz"
        if action == "http_post":
            return pick(rng, NOTIFY_URLS)
        if action in ("restart_service", "scale_service"):
            if action == "scale_service":
                attrs["replicas"] = rng.randint(2, 12)
            return f"k8s:prod/{svc}"
        if action == "get_secret":
            return f"vault:kv/prod/{svc}/{pick(rng, _SECRET_NAMES)}"
        if action == "rollback":
            return f"deploy:{svc}@prod"
        return f"tempo:{svc}"  # query_traces

    def approval(
        self, spec: ToolSpec, rng: random.Random, target: str, attrs: dict[str, Any]
    ) -> str | None:
        """Who approved a high/critical call in normal traffic."""
        if spec.name == "refund" and float(attrs.get("amount_usd", 0)) < 100:
            return "policy:refund-under-100"
        if spec.name == "deploy" and target.endswith("@staging"):
            return "policy:staging-auto"
        return spec.approvers[int(rng.random() * len(spec.approvers))]
