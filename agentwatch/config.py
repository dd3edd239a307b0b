"""Settings: one frozen model from ``AGENTWATCH_*`` environment variables and ``agentwatch.toml``.

Precedence (highest first): explicit keyword arguments, environment variables, the TOML file
(``AGENTWATCH_CONFIG`` or ``./agentwatch.toml``), defaults. A bad value fails at start with the
file (or variable), the key and the reason.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

__all__ = [
    "AlertmanagerSettings",
    "ConfigError",
    "Settings",
    "WebhookSettings",
    "load_settings",
]

ENV_PREFIX = "AGENTWATCH_"
#: Separates a section from its key in variable names: ``AGENTWATCH_ALERTMANAGER__URLS``.
ENV_NESTED_DELIMITER = "__"
Severity = Literal["info", "warning", "error", "critical"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]
DEFAULT_CONFIG_FILE = "agentwatch.toml"
#: Room for key, headers and record-batch framing on top of a value (see ``_check_sizes``).
RECORD_OVERHEAD_BYTES = 4096


class ConfigError(ValueError):
    """Invalid configuration; the message names the source, the key and the reason."""


_HTTP_URL = r"^https?://[^\s/?#]+(/[^\s?#]*)?$"
_HTTP_URL_WITH_QUERY = r"^https?://[^\s/?#]+([/?][^\s#]*)?$"
WEBHOOK_SECRET_MIN = 32


def _split_list(value: Any) -> Any:
    """A comma-separated string (or a JSON array in one) as a list; other values unchanged."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except ValueError:
            return value
    return [part.strip() for part in text.split(",") if part.strip()]


class AlertmanagerSettings(BaseModel):
    """The ``alertmanager`` notifier's section (``[agentwatch.alertmanager]``,
    ``AGENTWATCH_ALERTMANAGER__<KEY>``): Prometheus Alertmanager's ``/api/v2/alerts``.

    Every open incident is posted again every ``resend_interval_s`` with ``endsAt`` four
    intervals ahead, as Prometheus does: Alertmanager resolves an alert nobody refreshes.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Alertmanager base URLs, comma-separated (every member of an HA cluster: "
        "alerts are not gossiped); empty = notifier off",
    )
    resend_interval_s: float = Field(
        60.0,
        ge=1,
        le=3600,
        description="open incidents are posted again this often; endsAt is 4 intervals ahead",
    )
    requests_per_second: float = Field(
        10.0, gt=0, le=1000, description="rate limit of posts (deliveries and refreshes)"
    )
    timeout_s: float = Field(10.0, gt=0, le=300, description="longest one post may take")
    external_labels: dict[str, str] = Field(
        default_factory=dict,
        description='labels added to every alert (e.g. {cluster = "prod"})',
    )
    bearer_token: SecretStr | None = Field(
        None, description="sent as Authorization: Bearer (an authenticating proxy)"
    )
    basic_auth_username: str | None = Field(None, description="HTTP basic auth user")
    basic_auth_password: SecretStr | None = Field(None, description="HTTP basic auth password")

    @field_validator("urls", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("urls")
    @classmethod
    def _check_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not re.match(_HTTP_URL, url):
                raise ValueError(f"{url!r} is not an http:// or https:// base URL")
        return [url.rstrip("/") for url in value]

    @field_validator("bearer_token", "basic_auth_password", "basic_auth_username", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _check_auth(self) -> AlertmanagerSettings:
        if (self.basic_auth_username is None) != (self.basic_auth_password is None):
            raise ValueError("basic_auth_username and basic_auth_password go together")
        if self.bearer_token is not None and self.basic_auth_username is not None:
            raise ValueError("give bearer_token or basic auth, not both")
        return self


class WebhookSettings(BaseModel):
    """The ``webhook`` notifier's section (``[agentwatch.webhook]``,
    ``AGENTWATCH_WEBHOOK__<KEY>``): each notification's JSON, signed with HMAC-SHA256.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str | None = Field(
        None,
        pattern=_HTTP_URL_WITH_QUERY,
        description="where notifications are POSTed; unset = off",
    )
    secret: SecretStr | None = Field(
        None, description="HMAC-SHA256 signing key (at least 32 characters); required with url"
    )
    requests_per_second: float = Field(10.0, gt=0, le=1000, description="rate limit; excess waits")
    timeout_s: float = Field(10.0, gt=0, le=300, description="longest one request may take")

    @field_validator("url", "secret", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("secret")
    @classmethod
    def _check_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < WEBHOOK_SECRET_MIN:
            raise ValueError(
                f"must be at least {WEBHOOK_SECRET_MIN} characters "
                "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)"
            )
        return value

    @model_validator(mode="after")
    def _secret_with_url(self) -> WebhookSettings:
        if self.url is not None and self.secret is None:
            raise ValueError("secret is required with url: every request is signed")
        return self


class Settings(BaseSettings):
    """Everything a worker, the CLI and the SDK read from the environment.

    Secrets, when there are any, are :class:`~pydantic.SecretStr` and print as ``**********``.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        frozen=True,
        extra="forbid",
        validate_default=True,
    )

    # Kafka
    kafka_bootstrap: str = Field(
        "127.0.0.1:9092", description="comma-separated host:port list of Kafka brokers"
    )
    app_id: str = Field("agentwatch", pattern=r"^[A-Za-z0-9._-]+$")
    topic_prefix: str = Field("agentwatch", pattern=r"^[A-Za-z0-9._-]+$")
    topic_partitions: int = Field(8, ge=1, le=1024)
    replication_factor: int = Field(1, ge=1, le=16)
    rebalance_timeout_s: float = Field(60.0, gt=0, description="consumer-group rebalance timeout")
    session_timeout_s: float = Field(
        45.0,
        gt=0,
        le=80,
        description="consumer-group session timeout; Tansu admits a member after half of it",
    )
    heartbeat_interval_s: float = Field(3.0, gt=0)
    fetch_max_wait_ms: int = Field(
        20,
        ge=1,
        le=10_000,
        description="longest a busy worker's fetch waits for data; a broker that holds a "
        "fetch for all of it (Tansu) adds up to this much to an event's latency",
    )
    fetch_idle_wait_ms: int = Field(
        10,
        ge=1,
        le=10_000,
        description="the worker's fetch wait while it is idle (below fetch_busy_events_per_s); "
        "a halt then crosses the worker's two hops without waiting out fetch_max_wait_ms",
    )
    fetch_busy_events_per_s: float = Field(
        2000.0,
        ge=0,
        description="events/s from which a worker counts as busy and fetches with "
        "fetch_max_wait_ms (0: always)",
    )
    producer_max_batch_bytes: int = Field(
        16384,
        ge=1,
        description="the worker producer's record-batch size in bytes (1: one record per batch)",
    )

    # Kafka security: TLS and SASL for every client (workers, CLI, SDK); checked together at
    # start (validators below). docs/operations.md, "Securing Kafka".
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="how clients talk to the brokers (Kafka security.protocol)"
    )
    kafka_sasl_mechanism: SaslMechanism | None = Field(
        None, description="SASL mechanism; required with SASL_SSL and SASL_PLAINTEXT"
    )
    kafka_sasl_username: str | None = Field(None, description="PLAIN and SCRAM user")
    kafka_sasl_password: SecretStr | None = Field(None, description="PLAIN and SCRAM password")
    kafka_sasl_oauth_token: SecretStr | None = Field(
        None, description="OAUTHBEARER: a fixed bearer token"
    )
    kafka_sasl_oauth_token_file: Path | None = Field(
        None, description="OAUTHBEARER: a file holding the token, read again when it changes"
    )
    kafka_ssl_cafile: Path | None = Field(
        None, description="CA certificates (PEM) to trust for the brokers; default: the system's"
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        None, description="password of kafka_ssl_keyfile, if it is encrypted"
    )
    kafka_ssl_certfile: Path | None = Field(
        None, description="client certificate (PEM) for brokers that require one (mutual TLS)"
    )
    kafka_ssl_keyfile: Path | None = Field(None, description="private key of kafka_ssl_certfile")
    kafka_ssl_check_hostname: bool = Field(
        True, description="verify that the broker's certificate names the host connected to"
    )

    # State
    store: Literal["rocksdb", "memory"] = "rocksdb"
    data_dir: Path = Path("./data")

    # Processing
    batch_max: int = Field(2000, ge=1, le=100_000)
    batch_within_s: float = Field(0.05, gt=0, le=10)
    batch_idle_within_s: float = Field(
        0.005,
        gt=0,
        le=10,
        description="the ingest batch window while the worker is idle (below "
        "fetch_busy_events_per_s); batch_within_s while busy",
    )
    batch_quiet_s: float = Field(
        0.002,
        ge=0,
        le=10,
        description="an ingest batch is also cut once no event came for this long (what one "
        "fetch returned is in); 0 = only full or at its window",
    )
    engine_process: Literal["auto", "on", "off"] = Field(
        "auto",
        description="run the detection engine in a process of its own, where another core "
        "folds a batch while the worker fetches the next (docs/operations.md); auto: when "
        "this process may use two cores or more and the rules file has rules",
    )
    commit_interval_s: float = Field(
        2.0,
        gt=0,
        le=60,
        description="offsets are committed, and changed baselines written, this often",
    )
    stop_grace_s: float = Field(
        20.0,
        ge=0,
        le=3600,
        description="a stop waits this long for the ingest batch in progress (its anomalies "
        "acknowledged), then cancels it; the next start reads its events again (0 = no limit)",
    )
    max_event_bytes: int = Field(
        64 * 1024, ge=1024, le=1024 * 1024, description="larger events are dead-lettered"
    )
    recent_events_per_agent: int = Field(
        50,
        ge=0,
        le=10_000,
        description="the last N events of each agent held in memory as anomaly evidence (0 = none)",
    )
    recent_events_max_bytes: int = Field(
        32 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="per agent: the recent events held as evidence fit in this many bytes",
    )

    # Fleet state across workers (docs/operations.md, "Several workers: one fleet")
    fleet_exchange_s: float = Field(
        5.0,
        gt=0,
        le=600,
        description="each worker publishes its fleet summaries to <prefix>.fleets, and merges "
        "the other workers', this often",
    )
    fleet_ttl_s: float = Field(
        60.0,
        gt=0,
        le=86_400,
        description="another worker's fleet summaries are forgotten this long after it last "
        "published them (a worker that left)",
    )
    worker_id: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        pattern=r"^[^|]+$",
        description="this worker among those sharing fleet summaries; stable across restarts "
        "(default: host name and data_dir)",
    )

    # Record size limits (docs/operations.md, "Record sizes"); one coherent set
    max_message_bytes: int = Field(
        1_048_588,
        ge=128 * 1024,
        le=64 * 1024 * 1024,
        description="largest record agentwatch's topics accept (max.message.bytes), its "
        "producer sends and its consumer fetches per partition; Kafka's default",
    )
    deadletter_max_bytes: int = Field(
        64 * 1024,
        ge=1024,
        description="a dead letter keeps this long a prefix of the rejected record (its full "
        "length and SHA-256 go in headers)",
    )
    deadletter_log_interval_s: float = Field(
        10.0, gt=0, le=3600, description="one dead-letter summary warning per interval"
    )

    # Readiness (/readyz)
    ready_stall_after_s: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="a stage with input waiting that has not moved this long is stalled",
    )

    # Web (health, agent views, control API, metrics)
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=0, le=65535)
    web_advertised_url: str | None = Field(
        None,
        pattern=r"^https?://[^/\s]+$",
        description="URL other workers use to reach this one (default http://web_host:web_port)",
    )

    api_token: SecretStr | None = Field(
        None,
        description="bearer token for the control API; unset = control endpoints refuse (503)",
    )
    console_session_ttl_s: float = Field(
        43200.0,
        gt=0,
        le=7 * 86400,
        description="how long an on-call console login lasts (its session expires after this)",
    )
    auth_max_failures: int = Field(
        10,
        ge=0,
        description="wrong tokens (API, approvals, console login) from one address within "
        "auth_failure_window_s after which it is refused with 429 until the window passes; "
        "0 = no limit",
    )
    auth_failure_window_s: float = Field(
        60.0, gt=0, le=86400, description="the window auth_max_failures counts in, seconds"
    )
    api_url: str = Field(
        "http://127.0.0.1:6066",
        pattern=r"^https?://[^/\s]+$",
        description="where the CLI reaches a worker's control API (unset: the connection "
        "file's, else http://web_host:web_port)",
    )

    # Where `agentwatch up` records how to reach it (agentwatch/connection.py)
    home: Path = Field(
        Path("~/.agentwatch"),
        description="per-user agentwatch directory; holds connection.json while `up` runs",
    )
    connection_file: Path | None = Field(
        None,
        description="the connection file `up` writes and the SDK and CLI read (default "
        "<home>/connection.json)",
    )

    # Control records: workers sign them (Ed25519), SDK agents verify them (docs/operations.md)
    control_signing_key_file: Path | None = Field(
        None,
        description="worker: Ed25519 private key (PEM, mode 0600); default <data_dir>/control.key"
        " when it exists (`agentwatch keys generate DIR` makes one)",
    )
    control_signing_key: SecretStr | None = Field(
        None,
        description="worker: the private key inline (PEM or base64 of 32 bytes); wins over the "
        "file",
    )
    control_verify_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="SDK: accepted public keys, comma-separated (files, PEM or base64 of 32 "
        "bytes; several during a rotation); default <data_dir>/control.pub when it exists",
    )
    control_max_clock_skew_s: float = Field(
        300.0,
        ge=1,
        le=86400,
        description="SDK: a control record whose version or updated_at is further than this "
        "ahead of the agent's clock is refused as implausible",
    )
    control_fetch_max_wait_ms: int = Field(
        100,
        ge=1,
        le=10_000,
        description="SDK: long-poll time of the agent's control-topic fetches; on a broker "
        "that holds fetches (Tansu) it bounds how soon a halt is obeyed, on Kafka it only "
        "sets how often an idle agent asks",
    )

    rules_file: Path | None = Field(
        None, description="alerting rules (YAML); default: the shipped rules"
    )

    # OTLP/HTTP trace receiver (agentwatch up, worker and ingest): docs/otlp.md
    otlp_enabled: bool = Field(
        True, description="serve OTLP/HTTP traces in `agentwatch up` and `agentwatch worker`"
    )
    otlp_host: str = Field("127.0.0.1", min_length=1, description="address the receiver binds")
    otlp_port: int = Field(4318, ge=0, le=65535, description="its port (0: any free port)")
    otlp_fleet_attribute: str = Field(
        "service.name",
        min_length=1,
        max_length=256,
        description="resource attribute whose value is the fleet of a span's events",
    )
    otlp_prices_file: Path | None = Field(
        None,
        description="model prices (TOML, USD per million tokens) over the shipped table, for "
        "LLM spans that carry no cost",
    )
    otlp_hold_s: float = Field(
        30.0,
        gt=0,
        le=600,
        description="longest a span without an agent waits for its invoke_agent ancestor",
    )
    otlp_max_held_spans: int = Field(
        20_000, ge=10, le=1_000_000, description="most spans waiting for their agent at once"
    )
    otlp_max_request_bytes: int = Field(
        16 * 1024 * 1024,
        ge=64 * 1024,
        le=256 * 1024 * 1024,
        description="largest request body, after gzip (larger: 413)",
    )
    otlp_max_inflight_spans: int = Field(
        50_000,
        ge=100,
        le=10_000_000,
        description="spans received and not yet acknowledged by Kafka; beyond it requests get "
        "429 with Retry-After",
    )
    otlp_ack_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="a request whose events Kafka has not acknowledged by then gets 503",
    )

    # Incidents (Alertmanager-style grouping per agent)
    incident_group_wait_s: float = Field(
        10.0, ge=0, le=3600, description="wait this long after an incident opens before paging"
    )
    incident_group_interval_s: float = Field(
        300.0, ge=0, le=86400, description="at most one escalation notice per incident this often"
    )
    incident_repeat_interval_s: float = Field(
        14400.0, ge=60, description="re-notify an incident still open and unacknowledged this often"
    )
    incident_resolve_after_s: float = Field(
        1800.0, ge=1, description="an incident resolves after this long without anomalies"
    )
    incident_reopen_window_s: float = Field(
        3600.0,
        ge=0,
        description="an anomaly this soon after a resolve reopens the incident (no new page)",
    )

    # Notifications
    runbook_base_url: str | None = Field(
        None,
        pattern=r"^https?://\S+/$",
        description="where docs/ is served (ends in /); relative runbook_url values are joined "
        "to it so pages carry clickable links",
    )
    pagerduty_routing_key: SecretStr | None = Field(
        None, description="PagerDuty Events API v2 integration (routing) key"
    )
    pagerduty_url: str = Field(
        "https://events.pagerduty.com",
        pattern=r"^https?://[^\s]+$",
        description="Events API base URL (tests point it at a local fake)",
    )
    pagerduty_events_per_minute: int = Field(
        120, ge=1, le=10_000, description="rate limit per routing key; excess waits"
    )
    slack_webhook_url: SecretStr | None = Field(None, description="Slack incoming-webhook URL")
    slack_messages_per_second: float = Field(1.0, gt=0, le=100)
    slack_signing_secret: SecretStr | None = Field(
        None,
        description="Slack app signing secret: verifies the Approve / Deny button clicks "
        "posted to /slack/interactivity (docs/approvals.md)",
    )
    alertmanager: AlertmanagerSettings = Field(
        default_factory=AlertmanagerSettings,
        description="Alertmanager notifier (docs/alerting.md)",
    )
    webhook: WebhookSettings = Field(
        default_factory=WebhookSettings, description="signed webhook notifier (docs/alerting.md)"
    )
    notify_max_backoff_s: float = Field(
        60.0, gt=0, le=3600, description="longest wait between delivery retries"
    )
    routes: dict[Severity, list[str]] = Field(
        default_factory=lambda: {  # type: ignore[arg-type]
            "critical": ["pagerduty", "slack"],
            "error": ["pagerduty", "slack"],
            "warning": ["slack"],
            "info": [],
        },
        description="severity -> notifiers",
    )
    fleet_routes: dict[str, dict[Severity, list[str]]] = Field(
        default_factory=dict, description="per-fleet overrides of routes"
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("kafka_bootstrap")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        hosts = [h.strip() for h in value.split(",") if h.strip()]
        if not hosts:
            raise ValueError("needs at least one host:port")
        for host in hosts:
            name, sep, port = host.removeprefix("kafka://").rpartition(":")
            if not sep or not name or not port.isdigit():
                raise ValueError(f"{host!r} is not host:port")
        return ",".join(h.removeprefix("kafka://") for h in hosts)

    @field_validator("connection_file", mode="before")
    @classmethod
    def _empty_path_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("home", "connection_file")
    @classmethod
    def _expand_user(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser()

    @field_validator("control_verify_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator(
        "api_token",
        "pagerduty_routing_key",
        "slack_webhook_url",
        "slack_signing_secret",
        "control_signing_key",
        mode="before",
    )
    @classmethod
    def _empty_secret_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    # -- Kafka security: each check sits on the later field of a pair (fields validate in order)
    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator(
        "kafka_sasl_mechanism",
        "kafka_sasl_username",
        "kafka_sasl_password",
        "kafka_sasl_oauth_token",
        "kafka_sasl_oauth_token_file",
        "kafka_ssl_cafile",
        "kafka_ssl_key_password",
        "kafka_ssl_certfile",
        "kafka_ssl_keyfile",
        mode="before",
    )
    @classmethod
    def _empty_kafka_option_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("kafka_sasl_mechanism")
    @classmethod
    def _check_sasl_mechanism(cls, value: str | None, info: ValidationInfo) -> str | None:
        protocol = info.data.get("kafka_security_protocol")
        if protocol is None:
            return value
        if protocol.startswith("SASL_") and value is None:
            raise ValueError(
                f"required with kafka_security_protocol {protocol}: "
                "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER"
            )
        if value is not None and not protocol.startswith("SASL_"):
            raise ValueError(
                f"set, but kafka_security_protocol is {protocol}: use SASL_SSL (or SASL_PLAINTEXT)"
            )
        return value

    @field_validator("kafka_sasl_username", "kafka_sasl_password")
    @classmethod
    def _check_sasl_user(cls, value: Any, info: ValidationInfo) -> Any:
        if "kafka_sasl_mechanism" not in info.data:
            return value
        mechanism = info.data["kafka_sasl_mechanism"]
        if mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512") and value is None:
            raise ValueError(f"required with kafka_sasl_mechanism {mechanism}")
        if value is not None and mechanism not in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
            raise ValueError(
                f"set, but kafka_sasl_mechanism is {mechanism or 'not set'}: "
                "it is used with PLAIN and SCRAM"
            )
        return value

    @field_validator("kafka_sasl_oauth_token")
    @classmethod
    def _check_oauth_token(cls, value: Any, info: ValidationInfo) -> Any:
        mechanism = info.data.get("kafka_sasl_mechanism", "OAUTHBEARER")
        if value is not None and mechanism != "OAUTHBEARER":
            raise ValueError(f"set, but kafka_sasl_mechanism is {mechanism or 'not set'}")
        return value

    @field_validator("kafka_sasl_oauth_token_file")
    @classmethod
    def _check_oauth_token_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if "kafka_sasl_mechanism" not in info.data:
            return value
        mechanism = info.data["kafka_sasl_mechanism"]
        token = info.data.get("kafka_sasl_oauth_token")
        if mechanism != "OAUTHBEARER":
            if value is not None:
                raise ValueError(f"set, but kafka_sasl_mechanism is {mechanism or 'not set'}")
            return value
        if value is None and token is None:
            raise ValueError(
                "OAUTHBEARER needs kafka_sasl_oauth_token or kafka_sasl_oauth_token_file"
            )
        if value is not None and token is not None:
            raise ValueError("give kafka_sasl_oauth_token or kafka_sasl_oauth_token_file, not both")
        if value is not None:
            try:
                text = value.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"{value}: cannot read the token: {exc}") from None
            if not text:
                raise ValueError(f"{value}: the token file is empty")
        return value

    @field_validator("kafka_ssl_cafile", "kafka_ssl_key_password", "kafka_ssl_certfile")
    @classmethod
    def _check_ssl_file(cls, value: Any, info: ValidationInfo) -> Any:
        protocol = info.data.get("kafka_security_protocol")
        if value is None or protocol is None:
            return value
        if protocol not in ("SSL", "SASL_SSL"):
            raise ValueError(f"set, but kafka_security_protocol {protocol} uses no TLS")
        if isinstance(value, Path):
            if not value.is_file():
                raise ValueError(f"{value}: no such file")
            if info.field_name == "kafka_ssl_cafile":
                try:
                    ssl.create_default_context(cafile=str(value))
                except (ssl.SSLError, OSError, ValueError) as exc:
                    raise ValueError(f"{value}: not a PEM CA certificate: {exc}") from None
        return value

    @field_validator("kafka_ssl_keyfile")
    @classmethod
    def _check_ssl_key(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        protocol = info.data.get("kafka_security_protocol")
        certfile = info.data.get("kafka_ssl_certfile")
        if protocol is None or (value is None and certfile is None):
            return value
        if protocol not in ("SSL", "SASL_SSL"):
            raise ValueError(f"set, but kafka_security_protocol {protocol} uses no TLS")
        if certfile is None:
            raise ValueError("set, but kafka_ssl_certfile is not")
        if value is not None and not value.is_file():
            raise ValueError(f"{value}: no such file")
        password = info.data.get("kafka_ssl_key_password")
        try:
            ssl.create_default_context().load_cert_chain(
                certfile, value, password.get_secret_value() if password else None
            )
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ValueError(
                f"{certfile} and {value or certfile} are not a certificate and its key "
                f"(wrong kafka_ssl_key_password?): {exc}"
            ) from None
        return value

    @model_validator(mode="after")
    def _check_heartbeat(self) -> Settings:
        if self.heartbeat_interval_s >= self.session_timeout_s:
            raise ValueError("heartbeat_interval_s must be below session_timeout_s")
        return self

    @model_validator(mode="after")
    def _check_sizes(self) -> Settings:
        room = self.max_message_bytes - RECORD_OVERHEAD_BYTES
        for name in ("max_event_bytes", "deadletter_max_bytes"):
            if getattr(self, name) > room:
                raise ValueError(
                    f"{name} must be at most max_message_bytes - {RECORD_OVERHEAD_BYTES} "
                    f"({room}): its records must fit the topics' limit"
                )
        return self

    def replace(self, **changes: Any) -> Settings:
        """A validated copy with ``changes`` applied (``model_copy`` would skip validation)."""
        return type(self)(**{**dict(self), **changes})

    # -- derived names -----------------------------------------------------------------
    def topic(self, name: str) -> str:
        """Full topic name, e.g. ``topic("actions") == "agentwatch.actions"``."""
        return f"{self.topic_prefix}.{name}"

    def fleet_worker_id(self) -> str:
        """:attr:`worker_id`, or by default this host's name and the data directory: the same
        after a restart, different for two workers on one host."""
        if self.worker_id is not None:
            return self.worker_id
        import socket

        return f"{socket.gethostname()}:{self.data_dir.resolve()}".replace("|", "/")

    @property
    def connection_path(self) -> Path:
        """Where the connection file of ``agentwatch up`` is: ``connection_file``, else
        ``<home>/connection.json``."""
        return self.connection_file or self.home / "connection.json"

    @property
    def broker_url(self) -> str:
        """The bootstrap list in faust's URL form."""
        return ";".join(f"kafka://{h}" for h in self.kafka_bootstrap.split(","))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    section = data.get("agentwatch", data)
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [agentwatch] must be a table")
    return section


def _without_env_keys(file_values: dict[str, Any], env_keys: set[str]) -> dict[str, Any]:
    """The file's values minus every key the environment sets, sections included.

    The environment outranks the file key by key: ``AGENTWATCH_ALERTMANAGER__URLS`` replaces
    ``urls`` of the file's ``[agentwatch.alertmanager]`` and keeps its other keys.
    """
    values = {k: v for k, v in file_values.items() if k not in env_keys}
    for env_key in env_keys:
        section, sep, key = env_key.partition(ENV_NESTED_DELIMITER)
        if sep and isinstance(values.get(section), dict) and key in values[section]:
            values[section] = {k: v for k, v in values[section].items() if k != key}
    return values


def _env_name(loc: list[str], env_keys: set[str]) -> str | None:
    """The environment variable (without prefix) that set the value at ``loc``, if one did."""
    for end in range(len(loc), 0, -1):
        name = ENV_NESTED_DELIMITER.join(loc[:end]).lower()
        if name in env_keys:
            return name
    return None


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build :class:`Settings` from defaults, the TOML file, the environment and ``overrides``.

    Raises
    ------
    ConfigError
        naming the file or environment variable, the key and the reason.
    """
    explicit = config_file or os.environ.get(f"{ENV_PREFIX}CONFIG")
    path = Path(explicit) if explicit else Path(DEFAULT_CONFIG_FILE)
    file_values: dict[str, Any] = {}
    if path.is_file():
        file_values = _read_toml(path)
    elif explicit:
        raise ConfigError(f"{path}: config file not found")
    env_keys = {k[len(ENV_PREFIX) :].lower() for k in os.environ if k.startswith(ENV_PREFIX)} - {
        "config"
    }
    values = _without_env_keys(file_values, env_keys)
    values.update(overrides)
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            key = ".".join(loc) or "?"
            env_name = _env_name(loc, env_keys)
            if loc and loc[0] in overrides:
                source = "argument"
            elif env_name is not None:
                source = f"environment {ENV_PREFIX}{env_name.upper()}"
            elif loc and loc[0] in file_values:
                source = str(path)
            else:
                source = str(path) if path.is_file() else "settings"
            problems.append(f"{source}: key {key!r}: {err['msg']}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from None
