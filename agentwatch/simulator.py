"""Fleet simulator: realistic, seeded agent traffic with labelled incidents and benign changes.

The simulator is the test bed of agentwatch: the ``up --demo`` live demo, the benchmark and,
above all, the backtests that measure detector recall and precision all run on its output. It
therefore aims to look like a real fleet rather than like a textbook distribution:

* **Fleets** (roles: ``support``, ``coder``, ``analyst``, ``ops``) each have their own tool
  registry (risk level, latency distribution, error rate and error messages per tool), a
  Markov chain over tools (the action *sequence*, not only the mix), preferred LLM models and
  token profiles. Two fleet shapes are built in (:data:`FLEET_SHAPES`): ``mixed`` and
  ``large-support``; any mapping ``{fleet: share}`` works too.
* **Agents** differ from their peers: rate (lognormal around the fleet median), duty cycle,
  how often they call the LLM, model choice, token sizes, error proneness and a perturbed
  transition matrix. They work in **sessions** (a ``session_id`` each, geometric length, idle
  gaps between) whose context grows the LLM input tokens; targets are realistic and
  session-coherent (one ticket per support session, a few focus files per coding session).
* **Benign noise**: per-tool errors with retries, rare benign ``denied`` statuses, short
  **error bursts** (one tool failing for a minute or two for a few agents of a fleet, labelled
  ``error_burst``) and an optional diurnal rate swing.
* **Incidents** (:data:`ALL_INCIDENT_KINDS`) are injected into distinct random agents at
  random times after a warm-up: ``runaway_loop``, ``cost_explosion``, ``error_storm``,
  ``privilege_probing``, ``exfiltration``, ``mix_shift``, ``cost_drift`` and
  ``unapproved_high_risk``. They are sized to be realistic (a handful to a few dozen times the
  baseline, never a thousand) but plainly visible to a good detector.
* **Benign fleet-wide changes** (:data:`BENIGN_CHANGE_KINDS`) that a detector must *not* page
  on: ``model_upgrade`` (a whole fleet moves to a pricier model) and ``tool_rollout`` (a whole
  fleet gains a new tool).

Everything is a pure function of :class:`SimConfig`: the same seed yields the same events
(byte for byte, event ids included) and the same labels; no global random state is touched.
Each agent draws from its own generator, so agents untouched by an incident produce the same
traffic whether or not incidents are injected.

Time model. Events are stamped in simulated event time starting at ``SimConfig.start``.
``minutes=None`` runs forever (the live demo): time is cut into epochs of ``epoch_minutes``
and every epoch gets a fresh round of the requested incidents (benign changes happen once, in
the first epoch); :meth:`Simulation.labels` then needs an ``until`` bound.
:func:`produce` paces events to Kafka and, when paced, rewrites ``ts`` onto the wall clock.

Examples
--------
>>> sim = Simulation(SimConfig(agents=12, minutes=20, seed=7))
>>> events = list(sim.events())
>>> len(events) > 500, all(a.ts <= b.ts for a, b in zip(events, events[1:]))
(True, True)
>>> sorted({label["kind"] for label in sim.labels() if not label["benign"]}) == sorted(
...     ALL_INCIDENT_KINDS)
True
>>> events[0].event_id == list(Simulation(SimConfig(agents=12, minutes=20, seed=7)).events())[
...     0].event_id
True
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import gc
import itertools
import json
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from statistics import NormalDist
from typing import Any, Final, Literal, Protocol

import numpy as np
from aiokafka import AIOKafkaProducer
from numpy.typing import NDArray

from agentwatch.config import Settings
from agentwatch.schemas._types import format_ts
from agentwatch.schemas.events import ActionEvent, encode_event

__all__ = [
    "ALL_BENIGN_CHANGES",
    "ALL_INCIDENT_KINDS",
    "BENIGN_CHANGE_KINDS",
    "DEFAULT_START",
    "EXFIL_DOMAINS",
    "FLEETS",
    "FLEET_SHAPES",
    "KNOWN_DOMAINS",
    "MODEL_PRICES",
    "AgentProfile",
    "FleetSpec",
    "IncidentSpec",
    "SimConfig",
    "Simulation",
    "ToolSpec",
    "demo_config",
    "demo_task",
    "llm_cost",
    "load_labels",
    "parse_kinds",
    "produce",
    "write_jsonl",
]

Risk = Literal["low", "medium", "high", "critical"]
Kind = Literal["tool", "llm", "api", "other"]
_Record = tuple[float, int, dict[str, Any]]

DEFAULT_START: Final = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
"""Default simulated start: a Monday, 09:00 UTC."""

ALL_INCIDENT_KINDS: Final[tuple[str, ...]] = (
    "runaway_loop",
    "cost_explosion",
    "error_storm",
    "privilege_probing",
    "exfiltration",
    "mix_shift",
    "cost_drift",
    "unapproved_high_risk",
)
BENIGN_CHANGE_KINDS: Final[tuple[str, ...]] = ("model_upgrade", "tool_rollout")
ALL_BENIGN_CHANGES: Final = BENIGN_CHANGE_KINDS  # alias

_WINDOW_S: Final = 30.0  # generation window: events are merged and sorted window by window
_MAX_INPUT_TOKENS: Final = 200_000  # context limit
_SEED_NS: Final = "agentwatch-sim"

# -- prices ------------------------------------------------------------------------------

MODEL_PRICES: Final[Mapping[str, tuple[float, float]]] = {
    # USD per million tokens: (input, output)
    "gemini-2.0-flash": (0.10, 0.40),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1-mini": (0.40, 1.60),
    "claude-3-5-haiku": (0.80, 4.00),
    "gemini-2.5-pro": (1.25, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4o": (2.50, 10.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-opus-4": (15.00, 75.00),
}
_MODEL_TPS: Final[Mapping[str, float]] = {
    # output tokens per second, for LLM latency
    "gemini-2.0-flash": 180.0,
    "gpt-4o-mini": 110.0,
    "gpt-4.1-mini": 100.0,
    "claude-3-5-haiku": 90.0,
    "gemini-2.5-pro": 80.0,
    "gpt-4.1": 75.0,
    "gpt-4o": 80.0,
    "claude-sonnet-4": 65.0,
    "claude-opus-4": 35.0,
}
# model -> (USD per input token, USD per output token, ms per output token)
_MODEL_RATES: Final[Mapping[str, tuple[float, float, float]]] = {
    m: (pin / 1e6, pout / 1e6, 1000.0 / _MODEL_TPS[m]) for m, (pin, pout) in MODEL_PRICES.items()
}
_LLM_ERRORS: Final = (
    "429 rate_limit_exceeded: too many tokens per minute",
    "529 overloaded_error: the model is overloaded",
    "500 internal server error from the provider",
    "timeout after 120s waiting for the model",
)


def llm_cost(model: str, input_tokens: int, output_tokens: int) -> float:
    """Cost in USD of one LLM call at :data:`MODEL_PRICES`.

    Examples
    --------
    >>> llm_cost("gpt-4o", 1_000_000, 100_000)
    3.5
    """
    price_in, price_out = MODEL_PRICES[model]
    return (input_tokens * price_in + output_tokens * price_out) / 1e6


# -- domains -----------------------------------------------------------------------------

_CUSTOMER_DOMAINS: Final = (
    "gmail.com", "outlook.com", "yahoo.com", "icloud.com", "hotmail.com", "proton.me",
    "acme-corp.com", "globex.com", "initech.com", "umbrella-inc.com", "hooli.com",
    "stark-industries.com", "wayne-enterprises.com", "soylent.co", "vandelay.com",
)  # fmt: skip
_PUBLIC_APIS: Final = (
    "https://api.exchangerate.host/latest?base=USD",
    "https://api.census.gov/data/2023/acs/acs1",
    "https://api.worldbank.org/v2/country/all/indicator/NY.GDP.MKTP.CD",
    "https://data.ecb.europa.eu/api/series/EXR",
    "https://api.github.com/repos/pandas-dev/pandas/releases",
)
_INTERNAL_DOMAIN: Final = "internal.example.com"
_NOTIFY_URLS: Final = (
    "https://hooks.slack.com/services/T024BE7LD/B05U8Q1PZ/ops-alerts",
    "https://status.example.com/api/v1/incidents",
)
EXFIL_DOMAINS: Final[tuple[str, ...]] = (
    "paste-drop.io", "filebin-share.net", "transfer-now.cc", "anon-upload.xyz",
    "webhook-relay.site", "data-sink.top",
)  # fmt: skip
"""Domains only exfiltration incidents send to (never seen in normal traffic)."""
KNOWN_DOMAINS: Final[frozenset[str]] = frozenset(
    (
        *_CUSTOMER_DOMAINS,
        "api.exchangerate.host",
        "api.census.gov",
        "api.worldbank.org",
        "data.ecb.europa.eu",
        "api.github.com",
        "hooks.slack.com",
        "status.example.com",
        _INTERNAL_DOMAIN,
        "example.com",
    )
)
"""Every domain normal traffic talks to (email recipients, URLs)."""

_FIRST = ("ana", "ben", "chen", "dana", "eli", "fatima", "gus", "hana", "ivan", "jo", "kai")
_LAST = ("smith", "garcia", "kim", "nguyen", "muller", "rossi", "tanaka", "okafor", "silva")
_APPROVERS = (
    "alice@example.com",
    "bob@example.com",
    "carol@example.com",
    "oncall-lead@example.com",
)

# -- tools and fleets --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """One entry of a fleet's tool registry (its risk matrix row).

    ``latency_ms`` is the median of a lognormal with shape ``latency_sigma``; ``approvers``
    are who approves the tool's calls in normal traffic when it is high or critical risk.
    """

    name: str
    risk: Risk = "low"
    kind: Kind = "tool"
    latency_ms: float = 100.0
    latency_sigma: float = 0.5
    error_rate: float = 0.01
    errors: tuple[str, ...] = ("TimeoutError: tool call timed out after 30s",)
    approvers: tuple[str, ...] = _APPROVERS


@dataclass(frozen=True, slots=True, eq=False)
class FleetSpec:
    """A fleet (role): its tools, action Markov chain, models and traffic profile.

    ``transitions[a][b]`` is the relative weight of calling ``b`` right after ``a``;
    ``entry`` weights the first tool of a session. ``rate_per_min`` is the median agent's
    events per minute (LLM calls included), ``session_actions`` the mean tool calls per
    session. ``upgrade_model`` is where a ``model_upgrade`` moves the fleet,
    ``premium_model`` what a ``cost_explosion`` may switch to, ``rollout_tool`` what a
    ``tool_rollout`` adds.
    """

    name: str
    tools: tuple[ToolSpec, ...]
    transitions: Mapping[str, Mapping[str, float]]
    entry: Mapping[str, float]
    models: Mapping[str, float]
    secondary_model: str
    upgrade_model: str
    premium_model: str
    rollout_tool: ToolSpec
    rate_per_min: float
    input_tokens: float
    output_tokens: float
    session_actions: float

    def tool(self, name: str) -> ToolSpec:
        """The tool called ``name`` (the rollout tool included)."""
        for spec in (*self.tools, self.rollout_tool):
            if spec.name == name:
                return spec
        raise KeyError(name)


_NET_ERRORS = ("TimeoutError: request timed out after 30s", "HTTP 503 Service Unavailable")
FLEETS: Final[Mapping[str, FleetSpec]] = {
    "support": FleetSpec(
        name="support",
        tools=(
            ToolSpec("read_ticket", latency_ms=80, error_rate=0.005),
            ToolSpec("search_kb", latency_ms=140, error_rate=0.01, errors=_NET_ERRORS),
            ToolSpec("lookup_order", latency_ms=160, error_rate=0.01,
                     errors=("order not found", "HTTP 504 Gateway Timeout from orders-api")),
            ToolSpec("reply_ticket", latency_ms=220, error_rate=0.008),
            ToolSpec("send_email", risk="medium", latency_ms=450, error_rate=0.01,
                     errors=("SMTP 421 service not available", "SMTP 450 mailbox busy")),
            ToolSpec("refund", risk="high", latency_ms=900, latency_sigma=0.6,
                     error_rate=0.02, errors=("payment provider declined the refund",
                                              "HTTP 502 from payments-api")),
        ),
        transitions={
            "read_ticket": {"search_kb": 5, "lookup_order": 3, "reply_ticket": 2,
                            "read_ticket": 1},
            "search_kb": {"search_kb": 2, "reply_ticket": 4, "read_ticket": 1,
                          "lookup_order": 1},
            "lookup_order": {"refund": 1.2, "reply_ticket": 4, "search_kb": 1,
                             "send_email": 0.5},
            "reply_ticket": {"read_ticket": 6, "send_email": 1.5, "search_kb": 0.5},
            "send_email": {"read_ticket": 5, "reply_ticket": 1},
            "refund": {"reply_ticket": 5, "send_email": 2},
        },
        entry={"read_ticket": 1},
        models={"gpt-4o-mini": 0.6, "gpt-4.1-mini": 0.4},
        secondary_model="gemini-2.0-flash",
        upgrade_model="claude-3-5-haiku",
        premium_model="claude-sonnet-4",
        rollout_tool=ToolSpec("translate_text", latency_ms=300, error_rate=0.01),
        rate_per_min=5.0,
        input_tokens=2500,
        output_tokens=220,
        session_actions=10,
    ),
    "coder": FleetSpec(
        name="coder",
        tools=(
            ToolSpec("read_file", latency_ms=6, latency_sigma=0.8, error_rate=0.01,
                     errors=("FileNotFoundError: no such file",)),
            ToolSpec("write_file", latency_ms=9, latency_sigma=0.8, error_rate=0.005,
                     errors=("PermissionError: read-only file system",)),
            ToolSpec("run_tests", latency_ms=9000, latency_sigma=0.7, error_rate=0.03,
                     errors=("pytest exited with code 1: 3 failed", "collection error",
                             "TimeoutError: test run exceeded 600s")),
            ToolSpec("git_commit", risk="medium", latency_ms=300, error_rate=0.02,
                     errors=("pre-commit hook failed", "nothing to commit")),
            ToolSpec("shell", risk="high", latency_ms=700, latency_sigma=1.0,
                     error_rate=0.04, errors=("exit status 1", "exit status 127: not found"),
                     approvers=("policy:sandbox-shell",)),
            ToolSpec("deploy", risk="critical", latency_ms=45000, latency_sigma=0.5,
                     error_rate=0.03, errors=("rollout failed: readiness probe timeout",
                                              "deploy lock held by another pipeline")),
        ),
        transitions={
            "read_file": {"read_file": 4, "write_file": 3, "run_tests": 1, "shell": 0.5},
            "write_file": {"write_file": 1.5, "run_tests": 4, "read_file": 2},
            "run_tests": {"read_file": 3, "write_file": 3, "git_commit": 1.5, "shell": 0.5},
            "git_commit": {"deploy": 0.5, "read_file": 3, "run_tests": 0.5},
            "shell": {"read_file": 2, "run_tests": 1, "write_file": 1},
            "deploy": {"read_file": 3, "shell": 1},
        },
        entry={"read_file": 4, "shell": 1},
        models={"claude-sonnet-4": 0.7, "gpt-4.1": 0.3},
        secondary_model="gpt-4.1-mini",
        upgrade_model="claude-opus-4",
        premium_model="claude-opus-4",
        rollout_tool=ToolSpec("code_search", latency_ms=250, error_rate=0.01),
        rate_per_min=8.0,
        input_tokens=7000,
        output_tokens=380,
        session_actions=28,
    ),
    "analyst": FleetSpec(
        name="analyst",
        tools=(
            ToolSpec("read_table", latency_ms=600, error_rate=0.01,
                     errors=("table not found", "warehouse timeout after 60s")),
            ToolSpec("sql_query", latency_ms=1500, latency_sigma=1.0, error_rate=0.04,
                     errors=("SQL syntax error near 'GROUP'", "column does not exist",
                             "query exceeded 120s limit")),
            ToolSpec("chart", latency_ms=900, error_rate=0.01),
            ToolSpec("export_csv", risk="medium", latency_ms=3000, error_rate=0.02,
                     errors=("S3 AccessDenied on PutObject", "export exceeded 1M rows")),
            ToolSpec("http_get", kind="api", latency_ms=250, latency_sigma=0.6,
                     error_rate=0.03, errors=("HTTP 429 Too Many Requests", *_NET_ERRORS)),
            ToolSpec("write_table", risk="high", latency_ms=4000, error_rate=0.02,
                     errors=("schema mismatch on insert",)),
        ),
        transitions={
            "read_table": {"sql_query": 5, "read_table": 1, "chart": 1},
            "sql_query": {"sql_query": 3, "chart": 3, "read_table": 1, "export_csv": 0.8,
                          "write_table": 0.3, "http_get": 0.5},
            "chart": {"sql_query": 3, "export_csv": 1, "read_table": 1},
            "export_csv": {"sql_query": 2, "read_table": 1, "http_get": 0.5},
            "http_get": {"sql_query": 2, "read_table": 1},
            "write_table": {"sql_query": 2, "chart": 1},
        },
        entry={"read_table": 3, "sql_query": 2, "http_get": 0.5},
        models={"gpt-4o": 0.5, "gemini-2.5-pro": 0.5},
        secondary_model="gpt-4o-mini",
        upgrade_model="claude-opus-4",
        premium_model="claude-opus-4",
        rollout_tool=ToolSpec("run_notebook", risk="medium", latency_ms=5000, error_rate=0.03),
        rate_per_min=4.0,
        input_tokens=5000,
        output_tokens=450,
        session_actions=15,
    ),
    "ops": FleetSpec(
        name="ops",
        tools=(
            ToolSpec("query_metrics", latency_ms=300, error_rate=0.01, errors=_NET_ERRORS),
            ToolSpec("read_logs", latency_ms=700, error_rate=0.01, errors=_NET_ERRORS),
            ToolSpec("http_get", kind="api", latency_ms=120, error_rate=0.02,
                     errors=("HTTP 502 Bad Gateway", *_NET_ERRORS)),
            ToolSpec("http_post", kind="api", risk="medium", latency_ms=200,
                     error_rate=0.01, errors=_NET_ERRORS),
            ToolSpec("restart_service", risk="high", latency_ms=8000, error_rate=0.03,
                     errors=("rollout restart timed out",),
                     approvers=("policy:runbook-auto", *_APPROVERS)),
            ToolSpec("scale_service", risk="high", latency_ms=5000, error_rate=0.02,
                     errors=("quota exceeded for cpu",),
                     approvers=("policy:runbook-auto", *_APPROVERS)),
            ToolSpec("get_secret", risk="high", latency_ms=60, error_rate=0.005,
                     errors=("vault: permission denied",),
                     approvers=("policy:vault-readonly",)),
            ToolSpec("rollback", risk="critical", latency_ms=20000, error_rate=0.03,
                     errors=("no previous revision",)),
        ),
        transitions={
            "query_metrics": {"query_metrics": 2, "read_logs": 4, "http_get": 1,
                              "scale_service": 0.3, "restart_service": 0.3},
            "read_logs": {"read_logs": 2, "query_metrics": 3, "restart_service": 0.5,
                          "http_get": 0.5, "get_secret": 0.3},
            "http_get": {"query_metrics": 2, "read_logs": 1, "http_post": 0.5},
            "http_post": {"query_metrics": 3, "read_logs": 1},
            "restart_service": {"query_metrics": 4, "http_post": 1},
            "scale_service": {"query_metrics": 4, "http_post": 1},
            "get_secret": {"restart_service": 1, "http_get": 1, "rollback": 0.3,
                           "query_metrics": 1},
            "rollback": {"query_metrics": 3, "http_post": 1},
        },
        entry={"query_metrics": 3, "read_logs": 1},
        models={"gpt-4.1-mini": 0.5, "claude-3-5-haiku": 0.5},
        secondary_model="gemini-2.0-flash",
        upgrade_model="gpt-4.1",
        premium_model="claude-opus-4",
        rollout_tool=ToolSpec("query_traces", latency_ms=400, error_rate=0.01),
        rate_per_min=3.0,
        input_tokens=3500,
        output_tokens=260,
        session_actions=8,
    ),
}  # fmt: skip
"""The built-in fleets (roles)."""

FLEET_SHAPES: Final[Mapping[str, Mapping[str, float]]] = {
    "mixed": {"support": 0.35, "coder": 0.25, "analyst": 0.2, "ops": 0.2},
    "large-support": {"support": 0.75, "coder": 0.1, "analyst": 0.1, "ops": 0.05},
}
"""Named fleet mixes: share of the agents in each fleet."""

# Tools that only incidents use, outside any fleet's registry.
_INCIDENT_TOOLS: Final[Mapping[str, ToolSpec]] = {
    "read_file": ToolSpec("read_file", latency_ms=6),
    "get_secret": ToolSpec("get_secret", risk="high", latency_ms=60),
    "http_post": ToolSpec("http_post", kind="api", risk="medium", latency_ms=400),
    "send_email": ToolSpec("send_email", risk="medium", latency_ms=450),
}
_PROBES: Final[tuple[tuple[str, str, Kind, Risk], ...]] = (
    ("read_file", "/etc/shadow", "tool", "high"),
    ("read_file", "/root/.ssh/id_rsa", "tool", "high"),
    ("read_file", "/var/run/secrets/kubernetes.io/serviceaccount/token", "tool", "high"),
    ("shell", "sudo -l", "tool", "critical"),
    ("shell", "cat /etc/sudoers", "tool", "high"),
    ("http_get", f"https://admin.{_INTERNAL_DOMAIN}/api/users", "api", "high"),
    ("http_get", f"https://admin.{_INTERNAL_DOMAIN}/api/roles?grant=admin", "api", "high"),
    ("http_get", "http://169.254.169.254/latest/meta-data/iam/security-credentials/", "api",
     "critical"),
    ("get_secret", "vault:kv/prod/root-token", "tool", "critical"),
    ("get_secret", "vault:kv/prod/payments/stripe-live-key", "tool", "high"),
    ("assume_role", "arn:aws:iam::123456789012:role/OrganizationAdmin", "api", "critical"),
    ("grant_permission", "iam:self:admin", "api", "critical"),
)  # fmt: skip
_PROBE_DENIALS: Final = (
    "permission denied",
    "403 Forbidden",
    "AccessDenied: not authorized to perform this action",
    "policy: action not in the agent's allow-list",
)

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


class _Session:
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
    return f"{rng.choice(_FIRST)}.{rng.choice(_LAST)}@{rng.choice(_CUSTOMER_DOMAINS)}"


# -- configuration -----------------------------------------------------------------------


@dataclass(frozen=True)
class IncidentSpec:
    """An incident to inject (or one that was injected): ``kind`` in ``agent_id`` over
    ``[start, end)``.

    ``fleet`` and ``incident_id`` are filled in by the simulation when left empty;
    ``params`` records the incident's parameters (which action loops, which model, ...).

    Examples
    --------
    >>> from datetime import timedelta
    >>> spec = IncidentSpec("runaway_loop", "support-000", DEFAULT_START + timedelta(minutes=20),
    ...                     DEFAULT_START + timedelta(minutes=25))
    >>> sim = Simulation(SimConfig(agents=8, minutes=30, incidents=(), explicit_incidents=(spec,),
    ...                            benign_changes=(), error_bursts_per_hour=0))
    >>> [(s.kind, s.agent_id, s.fleet) for s in sim.incidents()]
    [('runaway_loop', 'support-000', 'support')]
    """

    kind: str
    agent_id: str
    start: datetime
    end: datetime
    fleet: str = ""
    incident_id: str = ""
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class SimConfig:
    """Everything that determines a simulation; equal configs give identical output.

    Parameters
    ----------
    agents
        Number of agents, split over fleets by ``shape``.
    minutes
        Simulated duration; ``None`` runs forever (live demo), with one round of incidents
        every ``epoch_minutes``.
    seed
        Seed of every random choice.
    start
        Simulated start time (UTC).
    incidents
        Incident kinds to inject, each ``incidents_per_kind`` times (a kind may also be
        repeated), each into a different random agent at a random time after the warm-up.
    incidents_per_kind
        How many incidents of each listed kind (per epoch).
    explicit_incidents
        Incidents at fixed agents and times, on top of the random ones.
    benign_changes
        Fleet-wide benign changes to make (``model_upgrade``, ``tool_rollout``), each in a
        random fleet (different fleets when possible), once.
    shape
        The fleet mix: a name from :data:`FLEET_SHAPES` (``mixed``, ``large-support``) or a
        mapping ``{fleet: share}`` over :data:`FLEETS`.
    warmup_minutes
        Quiet period before the first incident or change so baselines can form; default a
        quarter of the run (of an epoch), at most 30 minutes.
    epoch_minutes
        Length of an incident round when ``minutes`` is ``None``.
    error_bursts_per_hour
        Mean number of benign error bursts (a tool failing for a minute or two for a few
        agents of one fleet) per simulated hour.
    diurnal_amplitude
        Relative day/night swing of every agent's rate (peak at 15:00 UTC); 0 disables it.
    benign_unapproved_rate
        Fraction of normal high/critical calls that lack ``approved_by`` (unlabelled noise;
        0 makes every unapproved high-risk call an incident).
    id_prefix
        Prepended to every ``event_id`` (keeps ids unique across repeated live runs).
    """

    agents: int = 50
    minutes: float | None = 60.0
    seed: int = 0
    start: datetime = DEFAULT_START
    incidents: Sequence[str] = ALL_INCIDENT_KINDS
    incidents_per_kind: int = 1
    explicit_incidents: Sequence[IncidentSpec] = ()
    benign_changes: Sequence[str] = BENIGN_CHANGE_KINDS
    shape: str | Mapping[str, float] = "mixed"
    warmup_minutes: float | None = None
    epoch_minutes: float = 60.0
    error_bursts_per_hour: float = 2.0
    diurnal_amplitude: float = 0.2
    benign_unapproved_rate: float = 0.0
    id_prefix: str = ""

    def __post_init__(self) -> None:
        if self.agents < 1:
            raise ValueError(f"agents must be >= 1, got {self.agents}")
        if self.minutes is not None and not self.minutes > 0:
            raise ValueError(f"minutes must be > 0 or None, got {self.minutes}")
        if not self.epoch_minutes > 0:
            raise ValueError(f"epoch_minutes must be > 0, got {self.epoch_minutes}")
        if self.start.utcoffset() is None:
            raise ValueError("start must be timezone-aware (UTC)")
        if self.incidents_per_kind < 0:
            raise ValueError("incidents_per_kind must be >= 0")
        for kind in (*self.incidents, *(s.kind for s in self.explicit_incidents)):
            if kind not in ALL_INCIDENT_KINDS:
                raise ValueError(f"unknown incident kind {kind!r}; one of {ALL_INCIDENT_KINDS}")
        for kind in self.benign_changes:
            if kind not in BENIGN_CHANGE_KINDS:
                raise ValueError(f"unknown benign change {kind!r}; one of {BENIGN_CHANGE_KINDS}")
        shares = self.fleet_shares()
        unknown = sorted(set(shares) - set(FLEETS))
        if (
            unknown
            or not shares
            or any(v < 0 for v in shares.values())
            or not any(v > 0 for v in shares.values())
        ):
            raise ValueError(f"bad shape {self.shape!r}: shares over {sorted(FLEETS)}")
        count = len(self.incidents) * self.incidents_per_kind
        if count > self.agents:
            raise ValueError(f"{count} incidents need at least as many agents, got {self.agents}")
        if self.warmup_minutes is not None and self.warmup_minutes < 0:
            raise ValueError("warmup_minutes must be >= 0")
        if not 0 <= self.benign_unapproved_rate <= 1 or not 0 <= self.diurnal_amplitude < 1:
            raise ValueError("benign_unapproved_rate in [0, 1], diurnal_amplitude in [0, 1)")
        if self.error_bursts_per_hour < 0:
            raise ValueError("error_bursts_per_hour must be >= 0")

    def fleet_shares(self) -> Mapping[str, float]:
        """The fleet mix as ``{fleet: share}``."""
        if isinstance(self.shape, str):
            if self.shape not in FLEET_SHAPES:
                raise ValueError(f"unknown fleet shape {self.shape!r}; one of {list(FLEET_SHAPES)}")
            return FLEET_SHAPES[self.shape]
        return self.shape


@dataclass(frozen=True)
class AgentProfile:
    """The static traits of one simulated agent (see :meth:`Simulation.agents`).

    ``rate_per_min`` is the agent's target events per minute (LLM calls included; latency,
    sessions and the diurnal swing move the realised rate around it), ``llm_share`` the
    probability that an LLM call precedes a tool call, ``session_actions`` the mean tool calls
    per session and ``error_multiplier`` its error proneness relative to the fleet.
    """

    agent_id: str
    fleet: str
    rate_per_min: float
    model: str
    llm_share: float
    session_actions: float
    error_multiplier: float


# -- internal model ----------------------------------------------------------------------


def _rng(seed: int, *parts: object) -> random.Random:
    # String seeds are hashed with SHA-512: stable across processes and PYTHONHASHSEED.
    return random.Random(":".join((_SEED_NS, str(seed), *map(str, parts))))


# Standard normal quantiles at 2**13 evenly spaced probabilities: ``_Z[rng.getrandbits(13)]``
# is a (finely discretised) N(0, 1) draw, several times cheaper than ``random.gauss``.
_Z: Final[tuple[float, ...]] = tuple(NormalDist().inv_cdf((i + 0.5) / 8192) for i in range(8192))


def _lognormal(rng: random.Random, median: float, sigma: float) -> float:
    return median * math.exp(sigma * _Z[rng.getrandbits(13)])


def _pick(rng: random.Random, seq: Sequence[str]) -> str:
    """``rng.choice`` for the hot path (one ``random()`` call, no rejection loop)."""
    return seq[int(rng.random() * len(seq))]


def _exp1(rng: random.Random) -> float:
    """An Exp(1) draw."""
    return -math.log(1.0 - rng.random())


def _cumulative(weights: Sequence[float]) -> list[float]:
    """Normalised cumulative weights; sample with ``bisect_right(cum, rng.random())``."""
    total = float(sum(weights))
    if total <= 0:
        raise ValueError("all weights are zero")
    cum: list[float] = []
    acc = 0.0
    last = max(i for i, w in enumerate(weights) if w > 0)
    for i, w in enumerate(weights):
        acc += w
        cum.append(1.0 if i >= last else acc / total)
    return cum


def _stationary(matrix: NDArray[np.float64]) -> list[float]:
    rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1e-12)
    lazy = 0.5 * (rows + np.eye(rows.shape[0]))  # same stationary law, never periodic
    dist = np.full(rows.shape[0], 1.0 / rows.shape[0]) @ np.linalg.matrix_power(lazy, 512)
    dist = dist / dist.sum()
    # Rounded so that last-bit differences between numpy builds cannot change the stream.
    return [round(float(x), 9) for x in dist]


class _Profile:
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
        rng = _rng(seed, "profile", agent_id)
        self.index = index
        self.agent_id = agent_id
        self.fleet = fleet
        self.rate = min(max(_lognormal(rng, fleet.rate_per_min, 0.5), 0.3), 120.0)
        self.duty = rng.uniform(0.6, 0.95)
        self.llm_share = rng.uniform(0.55, 0.95)  # P(an LLM call precedes a tool call)
        self.model: str = rng.choices(list(fleet.models), weights=list(fleet.models.values()))[0]
        self.in_base = _lognormal(rng, fleet.input_tokens, 0.35)
        self.out_base = _lognormal(rng, fleet.output_tokens, 0.35)
        self.session_mean = max(2.0, _lognormal(rng, fleet.session_actions, 0.35))
        self.err_mult = _lognormal(rng, 1.0, 0.5)
        # States: the fleet's tools, then its rollout tool (weight 0 until rolled out).
        self.tool_specs: tuple[ToolSpec, ...] = (*fleet.tools, fleet.rollout_tool)
        self.states = tuple(t.name for t in self.tool_specs)
        n = len(fleet.tools)
        self.chain_weights: list[list[float]] = []
        for name in self.states[:n]:
            row = fleet.transitions.get(name, {})
            self.chain_weights.append(
                [row.get(b, 0.0) * _lognormal(rng, 1.0, 0.4) for b in self.states[:n]] + [0.0]
            )
        self.entry_weights = [fleet.entry.get(s, 0.0) for s in self.states[:n]] + [0.0]
        # Row n: after the rollout tool (unreachable until rolled out); row n + 1: entry.
        self.chain_weights.append(list(self.entry_weights))
        self.chain_weights.append(list(self.entry_weights))
        matrix = np.array([row[:n] for row in self.chain_weights[:n]], dtype=np.float64)
        self.stationary = _stationary(matrix)
        self.repo = rng.choice(_REPOS)
        self.services = rng.sample(_SERVICES, rng.randint(3, 6))
        self.tables = rng.sample(_TABLES, rng.randint(4, 8))
        # Pacing: events per minute while in a session, split between LLM gaps and latency.
        active_rate = self.rate / self.duty
        step_s = 60.0 * (1.0 + self.llm_share) / active_rate
        tool_lat = sum(
            p * t.latency_ms * math.exp(t.latency_sigma**2 / 2) / 1000.0
            for p, t in zip(self.stationary, fleet.tools, strict=True)
        )
        llm_lat = 0.5 + self.out_base / _MODEL_TPS[self.model]
        busy = tool_lat + self.llm_share * llm_lat
        self.gap_mean = max(0.25, (step_s - busy) / (1.0 + self.llm_share))
        session_s = self.session_mean * max(step_s, busy)
        self.idle_mean = session_s * (1.0 - self.duty) / self.duty

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
    def new_session(self, rng: random.Random, sid: str) -> _Session:
        sess = _Session(sid)
        fleet = self.fleet.name
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

    def target(self, action: str, rng: random.Random, sess: _Session, attrs: dict[str, Any]) -> str:
        """A realistic target for ``action``; may add attributes (amounts, sizes)."""
        fleet = self.fleet.name
        if fleet == "support":
            if action in ("read_ticket", "reply_ticket"):
                return sess.ticket
            if action == "search_kb":
                return f"kb:{_pick(rng, _KB_TOPICS)}"
            if action == "lookup_order":
                return sess.order
            if action == "refund":
                attrs["amount_usd"] = round(min(_lognormal(rng, 35.0, 0.8), 900.0), 2)
                return sess.order
            if action == "send_email":
                return sess.customer
            return f"lang:{_pick(rng, ('es', 'de', 'fr', 'ja', 'pt'))}"  # translate_text
        if fleet == "coder":
            repo = self.repo
            if action in ("read_file", "write_file"):
                if rng.random() < 0.8:
                    return _pick(rng, sess.focus)
                pkg = repo.replace("-", "_")
                extra = ("README.md", "pyproject.toml", f"src/{pkg}/__init__.py")
                return f"/workspace/{repo}/{_pick(rng, extra)}"
            if action == "run_tests":
                return sess.focus[-1] if rng.random() < 0.7 else f"/workspace/{repo}/tests"
            if action == "git_commit":
                return f"git:{repo}@{sess.order}"
            if action == "shell":
                return _pick(rng, _SHELL)
            if action == "deploy":
                return f"deploy:{repo}@{'prod' if rng.random() < 0.15 else 'staging'}"
            return f"code:{repo}?q={_pick(rng, _MODULES)}"  # code_search
        if fleet == "analyst":
            if action in ("sql_query", "read_table"):
                return sess.table if rng.random() < 0.75 else _pick(rng, self.tables)
            if action == "chart":
                return f"chart:{_pick(rng, _METRICS)}_by_{_pick(rng, _DIMS)}"
            if action == "export_csv":
                attrs["rows"] = int(_lognormal(rng, 5000, 1.0)) + 1
                return f"s3://acme-analytics-exports/{sess.table.rsplit('.', 1)[-1]}.csv"
            if action == "http_get":
                return _pick(rng, _PUBLIC_APIS)
            if action == "write_table":
                return f"warehouse.scratch.{sess.table.rsplit('.', 1)[-1]}_agg"
            return f"notebook:{_pick(rng, _METRICS)}-analysis.ipynb"  # run_notebook
        # ops
        svc = sess.service if rng.random() < 0.7 else _pick(rng, self.services)
        if action == "query_metrics":
            return f"prometheus:{svc}/{_pick(rng, _PROM)}"
        if action == "read_logs":
            return f"loki:{{app={svc!r}}}"
        if action == "http_get":
            return f"https://{svc}.{_INTERNAL_DOMAIN}/healthz"
        if action == "http_post":
            return _pick(rng, _NOTIFY_URLS)
        if action in ("restart_service", "scale_service"):
            if action == "scale_service":
                attrs["replicas"] = rng.randint(2, 12)
            return f"k8s:prod/{svc}"
        if action == "get_secret":
            return f"vault:kv/prod/{svc}/{_pick(rng, _SECRET_NAMES)}"
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


@dataclass(slots=True)
class _Incident:
    spec: IncidentSpec
    fleet: str
    # runtime parameters, by kind
    action: str = ""
    target: str = ""
    period_s: float = 0.0
    model: str | None = None
    in_factor: float = 1.0
    out_factor: float = 1.0
    error_rate: float = 0.0
    final_factor: float = 1.0
    alt_chain: list[list[float]] | None = None
    injected: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    start_s: float = 0.0
    end_s: float = 0.0


@dataclass(frozen=True, slots=True)
class _Burst:
    burst_id: str
    fleet: str
    tool: str
    start_s: float
    end_s: float
    error_rate: float
    error: str
    agents: tuple[str, ...]


@dataclass(slots=True)
class _Change:
    kind: str
    fleet: str
    start_s: float
    end_s: float
    per_agent: dict[str, float]  # agent_id -> effective time
    detail: dict[str, Any]


@dataclass(slots=True)
class _Epoch:
    index: int
    incidents: list[_Incident]
    bursts: list[_Burst]
    changes: list[_Change]


# -- runtime -----------------------------------------------------------------------------


class _Runner:
    """Runtime state of one agent: advances its clock and emits records."""

    __slots__ = (
        "agent_id",
        "approve_noise",
        "buf",
        "bursts",
        "chain",
        "diurnal",
        "fleet_name",
        "idx",
        "incidents",
        "p",
        "remaining",
        "rng",
        "rolled_chain",
        "rollout_at",
        "sched",
        "sess",
        "sessions",
        "slow",
        "state",
        "step_no",
        "t",
        "upgrade_at",
        "upgrade_model",
    )

    def __init__(self, prof: _Profile, seed: int, t0: float, cfg: SimConfig) -> None:
        self.p = prof
        self.rng = _rng(seed, "run", prof.agent_id)
        self.idx = prof.index
        self.agent_id = prof.agent_id
        self.fleet_name = prof.fleet.name
        self.chain = [_cumulative(row) for row in prof.chain_weights]
        self.rolled_chain: list[list[float]] | None = None
        self.rollout_at = math.inf
        self.upgrade_at = math.inf
        self.upgrade_model = prof.model
        self.diurnal = cfg.diurnal_amplitude
        self.slow = 1.0
        self.approve_noise = cfg.benign_unapproved_rate
        self.incidents: list[_Incident] = []
        self.bursts: list[_Burst] = []
        self.sched: list[tuple[float, dict[str, Any]]] = []
        self.buf: list[_Record] = []
        self.sessions = 0
        self.remaining = 0
        self.step_no = 0
        self.state = len(prof.states)  # the entry row
        self.sess = _Session("")
        # Agents start at a random point of their cycle (some mid-session, some idle).
        self.t = t0 + self.rng.random() * min(prof.idle_mean, 300.0)

    # -- setup ---------------------------------------------------------------------------
    def apply_change(self, change: _Change) -> None:
        at = change.per_agent[self.agent_id]
        if change.kind == "model_upgrade":
            self.upgrade_at = at
            self.upgrade_model = str(change.detail["to_model"])
        else:
            share = float(change.detail["share"])
            new = len(self.p.states) - 1
            rolled: list[list[float]] = []
            for i, row in enumerate(self.p.chain_weights):
                total = sum(row)
                bumped = [w * (1.0 - share) for w in row]
                bumped[new] += share * total
                if i == new:  # the new tool's own row: back to the usual first tools
                    bumped = [*self.p.entry_weights[:new], 0.2 * sum(self.p.entry_weights)]
                rolled.append(bumped)
            self.rolled_chain = [_cumulative(row) for row in rolled]
            self.rollout_at = at

    def add_incident(self, inc: _Incident) -> None:
        self.incidents.append(inc)
        self.incidents.sort(key=lambda i: i.start_s)
        self.sched.extend(inc.injected)
        self.sched.sort(key=itemgetter(0))

    def add_burst(self, burst: _Burst) -> None:
        self.bursts.append(burst)

    # -- generation ----------------------------------------------------------------------
    def advance(self, until: float, out: list[_Record]) -> None:
        if self.diurnal:
            self._set_slow(self.t)
        while self.t < until:
            self._step()
        buf = self.buf
        if buf:
            cut = len(buf)
            while cut and buf[cut - 1][0] >= until:
                cut -= 1
            if cut:
                out.extend(buf[:cut])
                del buf[:cut]
        sched = self.sched
        while sched and sched[0][0] < until:
            ts, kw = sched.pop(0)
            kw = dict(kw)
            if self.sess.sid:
                kw["session_id"] = self.sess.sid
            out.append((ts, self.idx, kw))
        if self.bursts:
            self.bursts = [b for b in self.bursts if b.end_s >= until]

    def _incident_at(self, t: float) -> _Incident | None:
        incs = self.incidents
        while incs and incs[0].end_s <= t:
            incs.pop(0)
        for inc in incs:
            if inc.start_s <= t < inc.end_s:
                return inc
        return None

    def _next_incident_start(self, t: float) -> float:
        return min((i.start_s for i in self.incidents if i.start_s > t), default=math.inf)

    def _set_slow(self, t: float) -> None:
        """Diurnal divisor of gaps at ``t`` (> 1 around the 15:00 UTC peak)."""
        day = (t / 86400.0 - 15.0 / 24.0) * 2.0 * math.pi
        self.slow = 1.0 + self.diurnal * math.cos(day)

    def _new_session(self, inc: _Incident | None) -> None:
        rng = self.rng
        p = self.p
        if self.sessions and inc is None:
            idle = _exp1(rng) * p.idle_mean / self.slow
            self.t = min(self.t + idle, max(self._next_incident_start(self.t), self.t))
        else:
            gap = _exp1(rng) * p.gap_mean
            if inc is None or self.t > inc.start_s:  # at an incident's start: at once
                self.t += gap
        self.sessions += 1
        sid = f"sess-{rng.getrandbits(48):012x}"
        self.sess = p.new_session(rng, sid)
        self.remaining = 1 + int(_exp1(rng) * (p.session_mean - 1.0))
        self.step_no = 0
        self.state = len(p.states)  # entry row

    def _step(self) -> None:
        inc = self._incident_at(self.t) if self.incidents else None
        if inc is not None and inc.spec.kind == "runaway_loop":
            if not self.sess.sid:
                self._new_session(inc)
            self._loop_step(inc)
            return
        if self.remaining <= 0:
            self._new_session(inc)
            inc = self._incident_at(self.t) if self.incidents else None
            if inc is not None and inc.spec.kind == "runaway_loop":
                return
        rng = self.rng
        p = self.p
        t = began = self.t
        kind = inc.spec.kind if inc is not None else ""
        # 1. the LLM decides (most steps)
        llm_p = 1.0 if kind == "cost_explosion" else p.llm_share
        if rng.random() < llm_p:
            t = self._llm(t, inc, kind)
            if kind == "cost_explosion" and rng.random() < 0.5:
                t = self._llm(t, inc, kind)
        # 2. the tool call
        if kind == "mix_shift" and inc is not None and inc.alt_chain is not None:
            chain = inc.alt_chain
        elif t >= self.rollout_at and self.rolled_chain is not None:
            chain = self.rolled_chain
        else:
            chain = self.chain
        row = chain[self.state] if self.state < len(chain) else chain[-1]
        state = bisect.bisect_right(row, rng.random())
        self.state = state
        spec = p.tool_specs[state]
        err_p = (
            inc.error_rate
            if kind == "error_storm" and inc is not None
            else (spec.error_rate * p.err_mult)
        )
        t = self._tool(t, spec, err_p, kind == "error_storm")
        self.step_no += 1
        self.remaining -= 1
        gap = -math.log(1.0 - rng.random()) * p.gap_mean
        self.t = t + gap / self.slow
        if self.incidents:
            # an incident starts with the agent's next step (at once if it began during this
            # one): its label's start is when the first affected event happens, not a
            # moment of the agent's pause before it
            self.t = min(self.t, max(self._next_incident_start(began), t))

    def _llm(self, t: float, inc: _Incident | None, kind: str) -> float:
        rng = self.rng
        p = self.p
        model = self.upgrade_model if t >= self.upgrade_at else p.model
        if rng.random() < 0.12:
            model = p.fleet.secondary_model
        growth = 1.0 + 0.03 * min(self.step_no, 30)  # the prompt grows with the session
        f_in = f_out = 1.0
        if inc is not None:
            if kind == "cost_explosion":
                model = inc.model or model
                f_in, f_out = inc.in_factor, inc.out_factor
            elif kind == "cost_drift":
                frac = (t - inc.start_s) / (inc.end_s - inc.start_s)
                f_in = f_out = 1.0 + (inc.final_factor - 1.0) * min(max(frac, 0.0), 1.0)
        tokens_in = min(
            int(p.in_base * growth * f_in * math.exp(0.35 * _Z[rng.getrandbits(13)])),
            _MAX_INPUT_TOKENS,
        )
        tokens_out = int(p.out_base * f_out * math.exp(0.5 * _Z[rng.getrandbits(13)])) + 1
        per_in, per_out, ms_per_out = _MODEL_RATES[model]
        latency = 350.0 + 300.0 * rng.random() + tokens_out * ms_per_out
        kw: dict[str, Any] = {
            "agent_id": self.agent_id,
            "fleet": self.fleet_name,
            "session_id": self.sess.sid,
            "action": "chat",
            "kind": "llm",
            "model": model,
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "cost_usd": round(tokens_in * per_in + tokens_out * per_out, 7),
            "latency_ms": round(latency, 1),
        }
        llm_err = 0.1 if kind == "error_storm" else 0.004
        if rng.random() < llm_err:
            kw["status"] = "error"
            kw["error"] = _LLM_ERRORS[int(rng.random() * len(_LLM_ERRORS))]
            kw["output_tokens"] = 0
            kw["cost_usd"] = round(tokens_in * per_in, 7)
        self.buf.append((t, self.idx, kw))
        return t + latency / 1000.0 + 0.05 + 0.2 * rng.random()

    def _tool(self, t: float, spec: ToolSpec, err_p: float, storm: bool) -> float:
        rng = self.rng
        p = self.p
        attrs: dict[str, Any] = {}
        target = p.target(spec.name, rng, self.sess, attrs)
        approved: str | None = None
        high = spec.risk in ("high", "critical")
        if high and rng.random() >= self.approve_noise:
            approved = p.approval(spec, rng, target, attrs)
        burst_p = 0.0
        burst_err = ""
        if self.bursts:
            for b in self.bursts:
                if b.tool == spec.name and b.start_s <= t < b.end_s:
                    burst_p, burst_err = b.error_rate, b.error
        for attempt in range(3):
            latency = _lognormal(rng, spec.latency_ms, spec.latency_sigma)
            kw: dict[str, Any] = {
                "agent_id": self.agent_id,
                "fleet": self.fleet_name,
                "session_id": self.sess.sid,
                "action": spec.name,
                "target": target,
                "latency_ms": round(latency, 1),
            }
            if spec.kind != "tool":
                kw["kind"] = spec.kind
            if spec.risk != "low":
                kw["risk"] = spec.risk
            if approved is not None:
                kw["approved_by"] = approved
            if attrs:
                kw["attributes"] = attrs
            u = rng.random()
            failed = False
            if burst_p and u < burst_p:
                kw["status"] = "error"
                kw["error"] = burst_err
                failed = True
            elif u < err_p:
                kw["status"] = "error"
                kw["error"] = spec.errors[int(rng.random() * len(spec.errors))]
                failed = True
            elif high and u > 0.998:
                kw["status"] = "denied"
                kw["error"] = "policy: approval expired, re-request approval"
            self.buf.append((t, self.idx, kw))
            t += latency / 1000.0
            if not failed or attempt == 2 or rng.random() >= (0.6 if storm else 0.4):
                break
            t += 1.0 + 3.0 * rng.random()  # back off, then retry the same call
        return t

    def _loop_step(self, inc: _Incident) -> None:
        rng = self.rng
        p = self.p
        t0 = self.t
        t = t0
        model = self.upgrade_model if t >= self.upgrade_at else p.model
        tokens_in = min(int(p.in_base * 1.4 * (0.98 + 0.04 * rng.random())), _MAX_INPUT_TOKENS)
        tokens_out = int(40 + 30 * rng.random())
        latency = 350.0 + 200.0 * rng.random() + tokens_out / _MODEL_TPS[model] * 1000.0
        self.buf.append(
            (
                t,
                self.idx,
                {
                    "agent_id": self.agent_id,
                    "fleet": self.fleet_name,
                    "session_id": self.sess.sid,
                    "action": "chat",
                    "kind": "llm",
                    "model": model,
                    "input_tokens": tokens_in,
                    "output_tokens": tokens_out,
                    "cost_usd": round(llm_cost(model, tokens_in, tokens_out), 7),
                    "latency_ms": round(latency, 1),
                },
            )
        )
        t += latency / 1000.0 + 0.05
        spec = p.fleet.tool(inc.action)
        tool_latency = _lognormal(rng, spec.latency_ms, spec.latency_sigma * 0.5)
        kw: dict[str, Any] = {
            "agent_id": self.agent_id,
            "fleet": self.fleet_name,
            "session_id": self.sess.sid,
            "action": inc.action,
            "target": inc.target,
            "latency_ms": round(tool_latency, 1),
        }
        if spec.kind != "tool":
            kw["kind"] = spec.kind
        if spec.risk != "low":
            kw["risk"] = spec.risk
        for b in self.bursts:  # a tool outage fails the looping calls too
            if b.tool == inc.action and b.start_s <= t < b.end_s and rng.random() < b.error_rate:
                kw["status"] = "error"
                kw["error"] = b.error
        self.buf.append((t, self.idx, kw))
        t += tool_latency / 1000.0
        self.t = max(t + 0.05, t0 + inc.period_s * (0.8 + 0.4 * rng.random()))


# -- the simulation ----------------------------------------------------------------------


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


# Every ActionEvent field in declaration order, with its default (``None`` for required ones,
# which the generator always sets): a copy updated with an event's values is exactly the
# ``__dict__`` pydantic's validation would build.
_EVENT_TEMPLATE: Final[dict[str, Any]] = {
    name: (None if info.is_required() else info.get_default(call_default_factory=True))
    for name, info in ActionEvent.model_fields.items()
}
_new_object = object.__new__
_set_attr = object.__setattr__


def _construct(values: dict[str, Any]) -> ActionEvent:
    """Build an :class:`ActionEvent` from trusted values without validating them.

    Equal (``==`` and byte-identical on the wire) to ``ActionEvent(**values)``; the tests
    hold the two paths to that.
    """
    data = _EVENT_TEMPLATE.copy()
    data.update(values)
    attrs = values.get("attributes")
    data["attributes"] = dict(attrs) if attrs else {}
    event: ActionEvent = _new_object(ActionEvent)
    _set_attr(event, "__dict__", data)
    _set_attr(event, "__pydantic_fields_set__", set(values))
    _set_attr(event, "__pydantic_extra__", None)
    _set_attr(event, "__pydantic_private__", None)
    return event


class Simulation:
    """A seeded simulated fleet; iterate :meth:`events`, read :meth:`labels`.

    The constructor only stores the configuration. Every call of :meth:`events` regenerates
    the stream from scratch, identically.

    Parameters
    ----------
    config
        The configuration; keyword ``overrides`` replace its fields
        (``Simulation(agents=10, minutes=5)`` works too).

    Examples
    --------
    >>> sim = Simulation(agents=6, minutes=10, seed=1, incidents=("runaway_loop",))
    >>> [a.fleet for a in sim.agents()]
    ['support', 'support', 'coder', 'coder', 'analyst', 'ops']
    >>> label = sim.labels()[0]
    >>> sorted(label)
    ['agent_id', 'benign', 'details', 'end', 'fleet', 'id', 'kind', 'start']
    """

    def __init__(self, config: SimConfig | None = None, **overrides: Any) -> None:
        base = config or SimConfig()
        if overrides:
            base = dataclasses.replace(base, **overrides)
        self.config = base
        self._profiles: list[_Profile] | None = None
        self._epochs: dict[int, _Epoch] = {}

    # -- planning ------------------------------------------------------------------------
    @property
    def _t0(self) -> float:
        return self.config.start.timestamp()

    @property
    def _epoch_s(self) -> float:
        cfg = self.config
        return (cfg.minutes if cfg.minutes is not None else cfg.epoch_minutes) * 60.0

    @property
    def _end(self) -> float:
        cfg = self.config
        return math.inf if cfg.minutes is None else self._t0 + cfg.minutes * 60.0

    def _profiles_list(self) -> list[_Profile]:
        if self._profiles is None:
            cfg = self.config
            shares = {k: v for k, v in cfg.fleet_shares().items() if v > 0}
            counts = _apportion(cfg.agents, shares)
            profiles: list[_Profile] = []
            for name in FLEETS:
                for j in range(counts.get(name, 0)):
                    agent_id = f"{name}-{j:03d}"
                    profiles.append(_Profile(cfg.seed, len(profiles), agent_id, FLEETS[name]))
            self._profiles = profiles
        return self._profiles

    def agents(self) -> list[AgentProfile]:
        """The simulated agents and their static traits, in a stable order."""
        return [p.public() for p in self._profiles_list()]

    def _epoch(self, k: int) -> _Epoch:
        if k not in self._epochs:
            self._epochs[k] = self._plan_epoch(k)
        return self._epochs[k]

    def _plan_epoch(self, k: int) -> _Epoch:
        cfg = self.config
        profiles = self._profiles_list()
        by_id = {p.agent_id: p for p in profiles}
        e0 = self._t0 + k * self._epoch_s
        e1 = e0 + self._epoch_s
        if k == 0:
            warm = (
                cfg.warmup_minutes * 60.0
                if cfg.warmup_minutes is not None
                else min(0.25 * self._epoch_s, 1800.0)
            )
        else:
            warm = 0.05 * self._epoch_s
        lo = min(e0 + warm, e0 + 0.9 * self._epoch_s)
        rng = _rng(cfg.seed, "plan", k)

        incidents: list[_Incident] = []
        kinds = [kind for kind in cfg.incidents for _ in range(cfg.incidents_per_kind)]
        chosen = rng.sample(range(len(profiles)), len(kinds))
        for i, (kind, a) in enumerate(zip(kinds, chosen, strict=True)):
            irng = _rng(cfg.seed, "incident", k, i)
            start, end = _incident_window(kind, irng, lo, e1)
            incidents.append(
                _make_incident(
                    kind, profiles[a], irng, start=start, end=end, incident_id=f"inc-{k}-{i:02d}"
                )
            )
        if k == 0:
            for i, spec in enumerate(cfg.explicit_incidents):
                if spec.agent_id not in by_id:
                    raise ValueError(f"explicit incident for unknown agent {spec.agent_id!r}")
                irng = _rng(cfg.seed, "explicit", i)
                incidents.append(
                    _make_incident(
                        spec.kind,
                        by_id[spec.agent_id],
                        irng,
                        start=spec.start.timestamp(),
                        end=spec.end.timestamp(),
                        incident_id=spec.incident_id or f"inc-x-{i:02d}",
                    )
                )

        bursts: list[_Burst] = []
        brng = _rng(cfg.seed, "bursts", k)
        mean_bursts = cfg.error_bursts_per_hour * self._epoch_s / 3600.0
        n_bursts = int(mean_bursts) + (brng.random() < mean_bursts % 1.0)
        fleets_present = sorted({p.fleet.name for p in profiles}, key=list(FLEETS).index)
        for b in range(n_bursts):
            fleet_name = brng.choice(fleets_present)
            members = [p for p in profiles if p.fleet.name == fleet_name]
            fleet = members[0].fleet
            tools = [t for t in fleet.tools if t.risk in ("low", "medium")]
            tool = brng.choices(
                tools, weights=[members[0].stationary[fleet.tools.index(t)] + 0.02 for t in tools]
            )[0]
            start = math.floor(brng.uniform(e0, e1 - 60.0))
            end = min(start + math.floor(brng.uniform(45.0, 150.0)), e1)
            hit = brng.sample(members, min(len(members), brng.randint(2, 5)))
            error = brng.choice(
                (
                    f"HTTP 503 Service Unavailable: {tool.name} backend is down",
                    f"TimeoutError: {tool.name} upstream did not answer in 30s",
                    "ConnectionResetError: connection reset by peer",
                )
            )
            bursts.append(
                _Burst(f"burst-{k}-{b:02d}", fleet.name, tool.name, start, end,
                       brng.uniform(0.7, 0.95), error, tuple(h.agent_id for h in hit))
            )  # fmt: skip

        changes: list[_Change] = []
        if k == 0 and cfg.benign_changes:
            crng = _rng(cfg.seed, "changes")
            pool = list(fleets_present)
            for kind in cfg.benign_changes:
                if not pool:
                    pool = list(fleets_present)
                fleet_name = crng.choice(pool)
                pool.remove(fleet_name)
                fleet = FLEETS[fleet_name]
                at = math.floor(crng.uniform(lo, lo + 0.5 * (e1 - lo)))
                members = [p for p in profiles if p.fleet.name == fleet_name]
                per_agent = {p.agent_id: at + crng.uniform(0.0, 120.0) for p in members}
                detail: dict[str, Any]
                if kind == "model_upgrade":
                    detail = {
                        "from_models": sorted({p.model for p in members}),
                        "to_model": fleet.upgrade_model,
                    }
                else:
                    detail = {"tool": fleet.rollout_tool.name, "share": crng.uniform(0.1, 0.18)}
                detail["agents"] = len(members)
                changes.append(_Change(kind, fleet_name, at, at + 120.0, per_agent, detail))
        return _Epoch(k, incidents, bursts, changes)

    def _epochs_until(self, until: float) -> Iterator[_Epoch]:
        k = 0
        while self._t0 + k * self._epoch_s < min(until, self._end):
            yield self._epoch(k)
            k += 1

    # -- outputs -------------------------------------------------------------------------
    def incidents(self, until: datetime | None = None) -> list[IncidentSpec]:
        """The injected incidents (random and explicit), by start time.

        ``until`` bounds an endless (``minutes=None``) simulation; it is required there.
        """
        limit = self._limit(until)
        out = [inc.spec for ep in self._epochs_until(limit) for inc in ep.incidents]
        return sorted(
            (s for s in out if s.start.timestamp() < limit), key=lambda s: (s.start, s.incident_id)
        )

    def _limit(self, until: datetime | None) -> float:
        if until is None:
            if self.config.minutes is None:
                raise ValueError("an endless simulation (minutes=None) needs `until`")
            return self._end
        return until.timestamp()

    def labels(self, until: datetime | None = None) -> list[dict[str, Any]]:
        """One JSON-able dict per injected incident, benign change and benign error burst.

        Keys: ``id``, ``kind``, ``agent_id`` (``None`` for a fleet-wide change), ``fleet``,
        ``start``, ``end`` (RFC 3339 UTC), ``benign`` and ``details`` (kind-specific
        parameters). Benign kinds are :data:`BENIGN_CHANGE_KINDS` and ``error_burst`` (one
        label per affected agent). Sorted by start time. ``until`` bounds an endless
        simulation and is required there.
        """
        limit = self._limit(until)
        labels: list[dict[str, Any]] = []
        for ep in self._epochs_until(limit):
            for inc in ep.incidents:
                spec = inc.spec
                labels.append(
                    {
                        "id": spec.incident_id,
                        "kind": spec.kind,
                        "agent_id": spec.agent_id,
                        "fleet": spec.fleet,
                        "start": format_ts(spec.start),
                        "end": format_ts(spec.end),
                        "benign": False,
                        "details": dict(spec.params),
                    }
                )
            for ch in ep.changes:
                labels.append(
                    {
                        "id": f"change-{ch.kind}",
                        "kind": ch.kind,
                        "agent_id": None,
                        "fleet": ch.fleet,
                        "start": format_ts(_utc(ch.start_s)),
                        "end": format_ts(_utc(ch.end_s)),
                        "benign": True,
                        "details": dict(ch.detail),
                    }
                )
            for b in ep.bursts:
                for agent_id in b.agents:
                    labels.append(
                        {
                            "id": b.burst_id,
                            "kind": "error_burst",
                            "agent_id": agent_id,
                            "fleet": b.fleet,
                            "start": format_ts(_utc(b.start_s)),
                            "end": format_ts(_utc(b.end_s)),
                            "benign": True,
                            "details": {"tool": b.tool, "error_rate": round(b.error_rate, 3)},
                        }
                    )
        end = self._end
        labels = [
            lab
            for lab in labels
            if datetime.fromisoformat(lab["start"]).timestamp() < min(limit, end)
        ]
        labels.sort(key=lambda lab: (lab["start"], lab["id"], lab["agent_id"] or ""))
        return labels

    def event_list(self, *, validate: bool = False, limit: int | None = None) -> list[ActionEvent]:
        """All events (or the first ``limit``) as a list, for benchmarks and backtests.

        Built with the cyclic garbage collector paused: the events hold no reference cycles,
        and hundreds of thousands of new objects would otherwise trigger repeated full
        collections (they halve the throughput). ``validate`` as in :meth:`events`.

        Examples
        --------
        >>> len(Simulation(agents=3, minutes=2, incidents=()).event_list(limit=10))
        10
        """
        if self.config.minutes is None and limit is None:
            raise ValueError("an endless simulation (minutes=None) needs `limit`")
        enabled = gc.isenabled()
        gc.disable()
        try:
            return list(itertools.islice(self.events(validate=validate), limit))
        finally:
            if enabled:
                gc.enable()

    def events(self, *, validate: bool = True) -> Iterator[ActionEvent]:
        """All events in event-time order (endless when ``minutes`` is ``None``).

        Event ids are ``f"{id_prefix}{agent_id}-{n}"`` with ``n`` counting each agent's
        events from 0 in time order.

        Parameters
        ----------
        validate
            Build each event through pydantic validation (the default). ``False`` builds the
            very same models (equal, byte-identical on the wire) without re-validating the
            generator's own output, about twice as fast; :func:`write_jsonl`,
            :func:`produce` and benchmarks use it.
        """
        cfg = self.config
        profiles = self._profiles_list()
        t0 = self._t0
        end = self._end
        runners = [_Runner(p, cfg.seed, t0, cfg) for p in profiles]
        by_id = {r.agent_id: r for r in runners}
        counters = [0] * len(runners)
        prefix = cfg.id_prefix
        ids = [f"{prefix}{r.agent_id}-" for r in runners]
        key = itemgetter(0, 1)
        fromtimestamp = datetime.fromtimestamp
        build = _validated if validate else _construct
        planned = 0
        t = t0
        while t < end:
            w1 = min(t + _WINDOW_S, end)
            # Plan one epoch ahead so idle agents wake up for incidents that start soon.
            while t0 + planned * self._epoch_s < min(w1 + self._epoch_s, end):
                ep = self._epoch(planned)
                for ch in ep.changes:
                    for agent_id in ch.per_agent:
                        by_id[agent_id].apply_change(ch)
                for inc in ep.incidents:
                    by_id[inc.spec.agent_id].add_incident(inc)
                for b in ep.bursts:
                    for agent_id in b.agents:
                        by_id[agent_id].add_burst(b)
                planned += 1
            records: list[_Record] = []
            for r in runners:
                r.advance(w1, records)
            records.sort(key=key)
            for ts, idx, kw in records:
                n = counters[idx]
                counters[idx] = n + 1
                kw["event_id"] = ids[idx] + str(n)
                kw["ts"] = fromtimestamp(ts, UTC)
                yield build(kw)
            t = w1


def _validated(values: dict[str, Any]) -> ActionEvent:
    return ActionEvent(**values)


def _apportion(total: int, shares: Mapping[str, float]) -> dict[str, int]:
    """Largest-remainder split of ``total`` agents; every fleet gets one when possible."""
    names = [n for n in FLEETS if n in shares]
    weight = sum(shares[n] for n in names)
    raw = {n: total * shares[n] / weight for n in names}
    counts = {n: int(raw[n]) for n in names}
    if total >= len(names):
        for n in names:
            counts[n] = max(counts[n], 1)
    while sum(counts.values()) > total:
        n = max(names, key=lambda m: (counts[m] - raw[m], counts[m]))
        counts[n] -= 1
    for n in sorted(names, key=lambda m: (counts[m] - raw[m], names.index(m))):
        if sum(counts.values()) >= total:
            break
        counts[n] += 1
    return counts


_DURATIONS_MIN: Final[Mapping[str, tuple[float, float]]] = {
    "runaway_loop": (3.0, 8.0),
    "cost_explosion": (5.0, 12.0),
    "error_storm": (5.0, 12.0),
    "privilege_probing": (5.0, 12.0),
    "exfiltration": (3.0, 8.0),
    "mix_shift": (10.0, 20.0),
    "unapproved_high_risk": (5.0, 15.0),
}


def _incident_window(kind: str, rng: random.Random, lo: float, hi: float) -> tuple[float, float]:
    avail = hi - lo
    if kind == "cost_drift":  # a slow creep that lasts to the end of the run (epoch)
        return float(math.floor(lo + rng.uniform(0.0, 0.25) * avail)), hi
    dmin, dmax = _DURATIONS_MIN[kind]
    duration = max(min(rng.uniform(dmin, dmax) * 60.0, 0.6 * avail), min(60.0, avail))
    start = math.floor(rng.uniform(lo, max(lo, hi - duration)))
    return float(start), min(start + math.floor(duration), hi)


def _make_incident(
    kind: str,
    prof: _Profile,
    rng: random.Random,
    *,
    start: float,
    end: float,
    incident_id: str,
) -> _Incident:
    """Choose an incident's parameters and pre-plan its injected events."""
    fleet = prof.fleet
    inc = _Incident(
        spec=IncidentSpec(kind, prof.agent_id, _utc(start), _utc(end)),
        fleet=fleet.name,
        start_s=start,
        end_s=end,
    )
    params: dict[str, Any] = {}
    base = {"agent_id": prof.agent_id, "fleet": fleet.name}
    n_tools = len(fleet.tools)
    if kind == "runaway_loop":
        low = [i for i in range(n_tools) if fleet.tools[i].risk == "low"]
        top = max(low, key=lambda i: prof.stationary[i])
        inc.action = fleet.tools[top].name
        inc.target = prof.target(inc.action, rng, prof.new_session(rng, ""), {})
        tool_rate = prof.rate / (1.0 + prof.llm_share)
        rate = min(max(6.0 * tool_rate, 12.0), 60.0)
        inc.period_s = 60.0 / rate
        params = {"action": inc.action, "target": inc.target, "rate_per_min": round(rate, 1)}
    elif kind == "cost_explosion":
        if rng.random() < 0.5 and fleet.premium_model != prof.model:
            # switched to the premium model, with somewhat longer prompts
            inc.model = fleet.premium_model
            inc.in_factor = rng.uniform(1.5, 2.5)
            inc.out_factor = rng.uniform(1.2, 2.0)
        else:  # context stuffing on the usual model
            inc.in_factor = rng.uniform(5.0, 10.0)
            inc.out_factor = rng.uniform(1.5, 2.5)
        params = {
            "mode": "premium_model" if inc.model else "context_stuffing",
            "model": inc.model,
            "input_factor": round(inc.in_factor, 2),
            "output_factor": round(inc.out_factor, 2),
        }
    elif kind == "error_storm":
        inc.error_rate = rng.uniform(0.5, 0.8)
        params = {"error_rate": round(inc.error_rate, 3)}
    elif kind == "cost_drift":
        inc.final_factor = rng.uniform(3.0, 5.0)
        params = {"final_factor": round(inc.final_factor, 2)}
    elif kind == "mix_shift":
        pi = prof.stationary
        order = sorted(range(n_tools), key=lambda i: pi[i])
        q = [0.0] * n_tools
        for rank, i in enumerate(order):
            q[i] = pi[order[n_tools - 1 - rank]]
        tv = 0.5 * sum(abs(a - b) for a, b in zip(pi, q, strict=True))
        if tv < 0.3:
            q = [0.5 * x for x in q]
            q[order[0]] += 0.5
            tv = 0.5 * sum(abs(a - b) for a, b in zip(pi, q, strict=True))
        row = _cumulative([*q, 0.0])
        inc.alt_chain = [row] * (n_tools + 2)
        names = [t.name for t in fleet.tools]
        params = {
            "tv_distance": round(tv, 3),
            "before": {names[i]: round(pi[i], 3) for i in range(n_tools)},
            "after": {names[i]: round(q[i], 3) for i in range(n_tools)},
        }
    elif kind == "privilege_probing":
        count = max(10, int((end - start) / 60.0 * rng.uniform(2.0, 4.0)))
        times = sorted(rng.uniform(start, end) for _ in range(count))
        for ts in times:
            action, target, akind, risk = rng.choice(_PROBES)
            u = rng.random()
            status = "denied" if u < 0.8 else ("error" if u < 0.95 else "ok")
            kw: dict[str, Any] = {
                **base,
                "action": action,
                "target": target,
                "kind": akind,
                "risk": risk,
                "status": status,
                "latency_ms": round(_lognormal(rng, 40.0, 0.5), 1),
            }
            if status != "ok":
                kw["error"] = rng.choice(_PROBE_DENIALS)
            inc.injected.append((ts, kw))
        params = {"probes": count}
    elif kind == "exfiltration":
        pairs = rng.randint(1, 3)
        span = max(end - start - 90.0, 1.0)
        reads: list[str] = []
        dests: list[str] = []
        for j in range(pairs):
            # the incident starts with its first secret read, the first step of it that is
            # in the event stream (as unapproved_high_risk starts with its first action);
            # further pairs follow at random within the window
            if j == 0:
                t_read = start + rng.uniform(0.0, 5.0)
            else:
                t_read = start + span * (j + rng.random()) / pairs
            if fleet.name == "coder":
                secret = (
                    "read_file",
                    f"/workspace/{prof.repo}/"
                    + rng.choice((".env", "secrets/prod.json", ".aws/credentials")),
                )
            elif fleet.name == "ops":
                secret = ("get_secret", f"vault:kv/prod/{rng.choice(prof.services)}/db-password")
            else:
                secret = rng.choice(
                    (
                        ("read_file", "/app/.env"),
                        ("get_secret", "vault:kv/prod/payments/stripe-live-key"),
                    )
                )
            spec = _INCIDENT_TOOLS[secret[0]]
            read_kw: dict[str, Any] = {
                **base,
                "action": secret[0],
                "target": secret[1],
                "latency_ms": round(_lognormal(rng, 30.0, 0.5), 1),
            }
            if spec.risk != "low":
                read_kw["risk"] = spec.risk
                read_kw["approved_by"] = "policy:vault-readonly"
            inc.injected.append((t_read, read_kw))
            domain = rng.choice(EXFIL_DOMAINS)
            t_send = t_read + rng.uniform(5.0, 60.0)
            if rng.random() < 0.6:
                dest = f"https://{domain}/upload/{rng.getrandbits(32):08x}"
                send_kw: dict[str, Any] = {
                    **base,
                    "action": "http_post",
                    "kind": "api",
                    "risk": "medium",
                    "target": dest,
                    "attributes": {"bytes": rng.randint(2_000, 400_000)},
                }
            else:
                dest = f"{rng.choice(_FIRST)}{rng.randint(10, 99)}@{domain}"
                send_kw = {
                    **base,
                    "action": "send_email",
                    "risk": "medium",
                    "target": dest,
                    "attributes": {"attachments": 1},
                }
            send_kw["latency_ms"] = round(_lognormal(rng, 400.0, 0.5), 1)
            inc.injected.append((t_send, send_kw))
            reads.append(secret[1])
            dests.append(dest)
        params = {"secrets": reads, "destinations": dests}
    elif kind == "unapproved_high_risk":
        risky = [t for t in fleet.tools if t.risk in ("high", "critical")]
        count = rng.randint(2, 4)
        actions: list[str] = []
        for i in range(count):
            spec = rng.choice(risky)
            attrs: dict[str, Any] = {}
            target = prof.target(spec.name, rng, prof.new_session(rng, ""), attrs)
            if spec.name == "deploy":
                target = target.replace("@staging", "@prod")
            if spec.name == "refund":
                attrs["amount_usd"] = round(rng.uniform(250.0, 2500.0), 2)
            kw = {
                **base,
                "action": spec.name,
                "target": target,
                "risk": spec.risk,
                "latency_ms": round(_lognormal(rng, spec.latency_ms, spec.latency_sigma), 1),
            }
            if spec.kind != "tool":
                kw["kind"] = spec.kind
            if attrs:
                kw["attributes"] = attrs
            # the incident starts with its first unapproved action (that is when it is
            # detectable); the rest follow at random within the window
            at = start + rng.uniform(0.0, 5.0) if i == 0 else rng.uniform(start, end)
            inc.injected.append((at, kw))
            actions.append(spec.name)
        params = {"actions": actions}
    inc.injected.sort(key=itemgetter(0))
    inc.spec = IncidentSpec(
        kind, prof.agent_id, _utc(start), _utc(end), fleet.name, incident_id, params
    )
    return inc


# -- output ------------------------------------------------------------------------------


def write_jsonl(
    sim: Simulation, events_path: str | Path, labels_path: str | Path | None = None
) -> tuple[int, int]:
    """Write the events (wire JSON, one per line) and the labels (one JSON per line).

    Returns ``(events, labels)`` counts; missing parent directories are created. Only for a
    finite simulation.

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> sim = Simulation(agents=5, minutes=5, incidents=("error_storm",))
    >>> n, m = write_jsonl(sim, os.path.join(d, "e.jsonl"), os.path.join(d, "l.jsonl"))
    >>> n > 0 and m >= 1
    True
    """
    if sim.config.minutes is None:
        raise ValueError("write_jsonl needs a finite simulation (minutes is None)")
    count = 0
    for path in (events_path, labels_path):
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    with Path(events_path).open("wb") as fh:
        for event in sim.events(validate=False):
            fh.write(encode_event(event))
            fh.write(b"\n")
            count += 1
    labels = sim.labels()
    if labels_path is not None:
        with Path(labels_path).open("w", encoding="utf-8") as lf:
            for label in labels:
                lf.write(json.dumps(label, sort_keys=True) + "\n")
    return count, len(labels)


def load_labels(path: str | Path) -> list[dict[str, Any]]:
    """Read labels written by :func:`write_jsonl` (a JSON array works too)."""
    text = Path(path).read_text(encoding="utf-8").strip()
    if text.startswith("["):
        data = json.loads(text)
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON array of labels")
        return [dict(item) for item in data]
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def produce(
    sim: Simulation,
    bootstrap: str,
    topic: str,
    speed: float = 1.0,
    producer: Any = None,
    *,
    retime: bool | None = None,
    max_events: int | None = None,
    kafka_options: Mapping[str, Any] | None = None,
) -> int:
    """Send the simulation's events to Kafka, key = ``agent_id``, value = wire JSON.

    Parameters
    ----------
    sim
        The simulation; an endless one (``minutes=None``) runs until cancelled or
        ``max_events``.
    bootstrap, topic
        Where to send (ignored for ``bootstrap`` when ``producer`` is given).
    speed
        1 = real time, 60 = one simulated minute per second, 0 = as fast as possible.
    producer
        A started ``AIOKafkaProducer`` (or anything with an async ``send``) to reuse; it is
        left running. By default one is created, started and stopped here.
    retime
        Rewrite ``ts`` onto the wall clock so live, event-time windows line up with arrival
        time: ``ts' = now0 + (ts - start) / speed`` (at speed 0, ``now0 + (ts - start)``).
        Default: on when paced (``speed > 0``), off at ``speed == 0``. Order is kept; at speed
        ``s`` event-time rates appear ``s`` times higher.
    max_events
        Stop after this many events.
    kafka_options
        Connection security for the producer made here
        (:func:`agentwatch.kafka_security.client_options`).

    Returns
    -------
    int
        Number of events sent (all delivered when this returns).
    """
    if speed < 0 or math.isnan(speed):
        raise ValueError(f"speed must be >= 0, got {speed}")
    do_retime = speed > 0 if retime is None else retime
    own = producer is None
    if producer is None:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, linger_ms=5, acks=1, **dict(kafka_options or {})
        )
        await producer.start()
    loop = asyncio.get_running_loop()
    sim_t0 = sim.config.start.timestamp()
    scale = speed if speed > 0 else 1.0
    wall0 = time.time()
    mono0 = loop.time()
    count = 0
    pending: list[Any] = []
    try:
        for event in sim.events(validate=False):
            if max_events is not None and count >= max_events:
                break
            offset = (event.ts.timestamp() - sim_t0) / scale
            if speed > 0:
                delay = mono0 + offset - loop.time()
                if delay > 0.001:
                    await asyncio.sleep(delay)
            out = event.model_copy(update={"ts": _utc(wall0 + offset)}) if do_retime else event
            pending.append(
                await producer.send(topic, value=encode_event(out), key=out.agent_id.encode())
            )
            count += 1
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
            elif count % 256 == 0:
                await asyncio.sleep(0)  # let the sender run during long fast bursts
        if pending:
            await asyncio.gather(*pending)
    finally:
        if own:
            await producer.stop()
    return count


# -- CLI and demo helpers ----------------------------------------------------------------


def parse_kinds(text: str, allowed: Sequence[str]) -> tuple[str, ...]:
    """Parse a comma-separated list of kinds; ``all`` is every allowed kind, ``none`` none.

    Examples
    --------
    >>> parse_kinds("all", BENIGN_CHANGE_KINDS)
    ('model_upgrade', 'tool_rollout')
    >>> parse_kinds("runaway_loop, exfiltration", ALL_INCIDENT_KINDS)
    ('runaway_loop', 'exfiltration')
    >>> parse_kinds("none", ALL_INCIDENT_KINDS)
    ()
    """
    words = [w.strip() for w in text.split(",") if w.strip()]
    if words == ["all"]:
        return tuple(allowed)
    if words in ([], ["none"]):
        return ()
    unknown = [w for w in words if w not in allowed]
    if unknown:
        raise ValueError(f"unknown kind(s) {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return tuple(words)


def demo_config(agents: int = 40, seed: int = 0) -> SimConfig:
    """The endless fleet of ``agentwatch up --demo``.

    A new round of every incident kind (as many as there are agents) every 20 simulated
    minutes after a 5-minute warm-up, both benign changes once, error bursts and the diurnal
    swing as usual.
    """
    return SimConfig(
        agents=agents,
        minutes=None,
        seed=seed,
        incidents=ALL_INCIDENT_KINDS[: max(agents, 0)],
        epoch_minutes=20.0,
        warmup_minutes=5.0,
    )


class _HasSettings(Protocol):
    @property
    def settings(self) -> Settings: ...


def demo_task(
    agents: int = 40,
    speed: float = 1.0,
    seed: int = 0,
    *,
    producer: Any = None,
) -> Callable[[_HasSettings], Awaitable[None]]:
    """A background task for the embedded worker: produce :func:`demo_config` traffic forever.

    The returned coroutine function takes the worker app (anything with ``.settings``) and
    sends to its actions topic at ``speed`` simulated minutes per real minute, timestamps on
    the wall clock (see :func:`produce`), until cancelled.

    Examples
    --------
    >>> task = demo_task(agents=10, speed=60)
    >>> callable(task)
    True
    """
    sim = Simulation(demo_config(agents, seed))

    async def simulated_fleet(worker_app: _HasSettings) -> None:
        from agentwatch.kafka_security import client_options

        settings = worker_app.settings
        await produce(
            sim,
            settings.kafka_bootstrap,
            settings.topic("actions"),
            speed,
            producer=producer,
            kafka_options=client_options(settings),
        )

    return simulated_fleet
