"""The catalogue of the simulated world: fleets (roles), their tools, and the domains they talk to.

A :class:`FleetSpec` is a role: its tool registry (risk, latency, error rate and messages per
tool), a Markov chain over tools, preferred models and token profile. :data:`FLEETS` holds the
four built-in roles and :data:`FLEET_SHAPES` named mixes of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "APPROVERS",
    "CUSTOMER_DOMAINS",
    "EXFIL_DOMAINS",
    "FIRST_NAMES",
    "FLEETS",
    "FLEET_SHAPES",
    "INCIDENT_TOOLS",
    "INTERNAL_DOMAIN",
    "KNOWN_DOMAINS",
    "LAST_NAMES",
    "NET_ERRORS",
    "NOTIFY_URLS",
    "PROBES",
    "PROBE_DENIALS",
    "PUBLIC_APIS",
    "FleetSpec",
    "Kind",
    "Risk",
    "ToolSpec",
]

Risk = Literal["low", "medium", "high", "critical"]
Kind = Literal["tool", "llm", "api", "other"]

# -- domains -----------------------------------------------------------------------------

CUSTOMER_DOMAINS: Final = (
    "gmail.com", "outlook.com", "yahoo.com", "icloud.com", "hotmail.com", "proton.me",
    "acme-corp.com", "globex.com", "initech.com", "umbrella-inc.com", "hooli.com",
    "stark-industries.com", "wayne-enterprises.com", "soylent.co", "vandelay.com",
)  # fmt: skip
PUBLIC_APIS: Final = (
    "https://api.exchangerate.host/latest?base=USD",
    "https://api.census.gov/data/2023/acs/acs1",
    "https://api.worldbank.org/v2/country/all/indicator/NY.GDP.MKTP.CD",
    "https://data.ecb.europa.eu/api/series/EXR",
    "https://api.github.com/repos/pandas-dev/pandas/releases",
)
INTERNAL_DOMAIN: Final = "internal.example.com"
NOTIFY_URLS: Final = (
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
        *CUSTOMER_DOMAINS,
        "api.exchangerate.host",
        "api.census.gov",
        "api.worldbank.org",
        "data.ecb.europa.eu",
        "api.github.com",
        "hooks.slack.com",
        "status.example.com",
        INTERNAL_DOMAIN,
        "example.com",
    )
)
"""Every domain normal traffic talks to (email recipients, URLs)."""

FIRST_NAMES = ("ana", "ben", "chen", "dana", "eli", "fatima", "gus", "hana", "ivan", "jo", "kai")
LAST_NAMES = ("smith", "garcia", "kim", "nguyen", "muller", "rossi", "tanaka", "okafor", "silva")
APPROVERS = (
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
    approvers: tuple[str, ...] = APPROVERS


@dataclass(frozen=True, slots=True, eq=False)
class FleetSpec:
    """A fleet (role): its tools, action Markov chain, models and traffic profile.

    ``transitions[a][b]`` is the relative weight of calling ``b`` right after ``a``;
    ``entry`` weights the first tool of a session. ``rate_per_min`` is the median agent's
    events per minute (LLM calls included), ``session_actions`` the mean tool calls per
    session. ``upgrade_model`` is where a ``model_upgrade`` moves the fleet,
    ``premium_model`` what a ``cost_explosion`` may switch to, ``rollout_tool`` what a
    ``tool_rollout`` adds.

    A world spec derives fleets from the built-in ones (:func:`dataclasses.replace`): ``role``
    names the built-in fleet whose targets its agents use (default: ``name``). Each agent's
    rate is lognormal around ``rate_per_min`` with shape ``rate_sigma``, clipped to
    ``[rate_min, rate_max]``; its LLM share is uniform in ``llm_share``. ``idle_minutes``
    (median, shape), when set, is the lognormal mean idle gap between an agent's sessions
    (otherwise the gaps follow from a random duty cycle of 60-95 %).
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
    role: str = ""
    rate_sigma: float = 0.5
    rate_min: float = 0.3
    rate_max: float = 120.0
    llm_share: tuple[float, float] = (0.55, 0.95)
    idle_minutes: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not self.role:
            object.__setattr__(self, "role", self.name)

    def tool(self, name: str) -> ToolSpec:
        """The tool called ``name`` (the rollout tool included)."""
        for spec in (*self.tools, self.rollout_tool):
            if spec.name == name:
                return spec
        raise KeyError(name)


NET_ERRORS = ("TimeoutError: request timed out after 30s", "HTTP 503 Service Unavailable")
FLEETS: Final[Mapping[str, FleetSpec]] = {
    "support": FleetSpec(
        name="support",
        tools=(
            ToolSpec("read_ticket", latency_ms=80, error_rate=0.005),
            ToolSpec("search_kb", latency_ms=140, error_rate=0.01, errors=NET_ERRORS),
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
                     error_rate=0.03, errors=("HTTP 429 Too Many Requests", *NET_ERRORS)),
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
            ToolSpec("query_metrics", latency_ms=300, error_rate=0.01, errors=NET_ERRORS),
            ToolSpec("read_logs", latency_ms=700, error_rate=0.01, errors=NET_ERRORS),
            ToolSpec("http_get", kind="api", latency_ms=120, error_rate=0.02,
                     errors=("HTTP 502 Bad Gateway", *NET_ERRORS)),
            ToolSpec("http_post", kind="api", risk="medium", latency_ms=200,
                     error_rate=0.01, errors=NET_ERRORS),
            ToolSpec("restart_service", risk="high", latency_ms=8000, error_rate=0.03,
                     errors=("rollout restart timed out",),
                     approvers=("policy:runbook-auto", *APPROVERS)),
            ToolSpec("scale_service", risk="high", latency_ms=5000, error_rate=0.02,
                     errors=("quota exceeded for cpu",),
                     approvers=("policy:runbook-auto", *APPROVERS)),
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
INCIDENT_TOOLS: Final[Mapping[str, ToolSpec]] = {
    "read_file": ToolSpec("read_file", latency_ms=6),
    "get_secret": ToolSpec("get_secret", risk="high", latency_ms=60),
    "http_post": ToolSpec("http_post", kind="api", risk="medium", latency_ms=400),
    "send_email": ToolSpec("send_email", risk="medium", latency_ms=450),
}
PROBES: Final[tuple[tuple[str, str, Kind, Risk], ...]] = (
    ("read_file", "/etc/shadow", "tool", "high"),
    ("read_file", "/root/.ssh/id_rsa", "tool", "high"),
    ("read_file", "/var/run/secrets/kubernetes.io/serviceaccount/token", "tool", "high"),
    ("shell", "sudo -l", "tool", "critical"),
    ("shell", "cat /etc/sudoers", "tool", "high"),
    ("http_get", f"https://admin.{INTERNAL_DOMAIN}/api/users", "api", "high"),
    ("http_get", f"https://admin.{INTERNAL_DOMAIN}/api/roles?grant=admin", "api", "high"),
    ("http_get", "http://169.254.169.254/latest/meta-data/iam/security-credentials/", "api",
     "critical"),
    ("get_secret", "vault:kv/prod/root-token", "tool", "critical"),
    ("get_secret", "vault:kv/prod/payments/stripe-live-key", "tool", "high"),
    ("assume_role", "arn:aws:iam::123456789012:role/OrganizationAdmin", "api", "critical"),
    ("grant_permission", "iam:self:admin", "api", "critical"),
)  # fmt: skip
PROBE_DENIALS: Final = (
    "permission denied",
    "403 Forbidden",
    "AccessDenied: not authorized to perform this action",
    "policy: action not in the agent's allow-list",
)
