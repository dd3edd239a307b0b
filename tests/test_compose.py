"""Static checks of the production deployment files (Docker does not run on development machines).

The compose file, the Prometheus config, the Grafana provisioning and the Dockerfile are parsed
and checked against each other and against :class:`agentwatch.config.Settings`, so a renamed
setting, a port that drifts or a secret pasted into a file fails here instead of at deploy time.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any, get_args
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import SecretStr, ValidationError

from agentwatch.config import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PROMETHEUS_FILE = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DATASOURCE_FILE = GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDER_FILE = GRAFANA_DIR / "provisioning" / "dashboards" / "agentwatch.yml"
DASHBOARD_FILE = GRAFANA_DIR / "dashboards" / "agentwatch.json"

WORKERS = ("worker-1", "worker-2")
REQUIRED_SERVICES = {"kafka", *WORKERS, "prometheus", "grafana"}
REQUIRED_WORKER_ENV = {
    "KAFKA_BOOTSTRAP",
    "WEB_HOST",
    "WEB_PORT",
    "STORE",
    "DATA_DIR",
    "WEB_ADVERTISED_URL",
}
DASHBOARD_METRICS = {
    "agentwatch_events_ingested_total",
    "agentwatch_deadletters_total",
    "agentwatch_batch_seconds",
    "agentwatch_consumer_lag",
}
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
# A value taken from the environment with no default: ${NAME}, ${NAME?msg} or ${NAME:?msg}.
# ${VAR}, ${VAR:?message} (required) or ${VAR:-} (optional, empty default): never a literal value
REQUIRED_INTERPOLATION = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(?::?\?[^}]*|:-)?\}$")
SECRET_KEY_NAME = re.compile(
    r"TOKEN|PASSWORD|PASSWD|SECRET|ROUTING_KEY|WEBHOOK|API_KEY|PRIVATE_KEY|CREDENTIAL", re.I
)
PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}
PROMQL_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


# -- helpers ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_agentwatch_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the environment: keep the developer's AGENTWATCH_* out of these checks."""
    for key in list(os.environ):
        if key.startswith(ENV_PREFIX):
            monkeypatch.delenv(key)


def _load_yaml(path: Path) -> Any:
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing"
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = _load_yaml(COMPOSE_FILE)
    assert isinstance(data, dict), "docker-compose.yml is not a mapping"
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    svcs = compose.get("services")
    assert isinstance(svcs, dict), "docker-compose.yml has no services"
    return svcs


@pytest.fixture(scope="module")
def prometheus_config() -> dict[str, Any]:
    data = _load_yaml(PROMETHEUS_FILE)
    assert isinstance(data, dict)
    return data


def env_of(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as str -> str, whichever compose syntax it uses."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in env)
        return {k: v for k, v in pairs}
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def is_literal(value: str) -> bool:
    """True when compose would not interpolate anything in ``value`` (``$$`` is an escape)."""
    return "$" not in value.replace("$$", "")


def worker_env(service: dict[str, Any]) -> dict[str, str]:
    """The service's AGENTWATCH_* variables, keyed by Settings field name."""
    return {
        key[len(ENV_PREFIX) :].lower(): value
        for key, value in env_of(service).items()
        if key.startswith(ENV_PREFIX)
    }


def worker_settings(service: dict[str, Any]) -> Settings:
    """The Settings a worker would run with, from its literal environment values."""
    values = {
        k: v for k, v in worker_env(service).items() if k in Settings.model_fields and is_literal(v)
    }
    return Settings(**values)


def published_ports(service: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(host_ip, host_port, container_port) for each published port; host_ip "" = all."""
    result: list[tuple[str, str, int]] = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            result.append(
                (
                    str(entry.get("host_ip", "")),
                    str(entry.get("published", "")),
                    int(entry["target"]),
                )
            )
            continue
        spec = str(entry).split("/", 1)[0]
        if spec.startswith("["):
            ip, _, rest = spec[1:].partition("]:")
            host_port, _, container = rest.rpartition(":")
        else:
            parts = spec.split(":")
            ip = parts[0] if len(parts) == 3 else ""
            host_port = parts[-2] if len(parts) >= 2 else ""
            container = parts[-1]
        result.append((ip, host_port, int(container.split("-")[0])))
    return result


def volume_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) for each volume entry, short or long syntax."""
    mounts: list[tuple[str, str]] = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            mounts.append((str(entry.get("source", "")), str(entry["target"])))
        else:
            source, _, rest = str(entry).partition(":")
            mounts.append((source, rest.split(":", 1)[0]) if rest else ("", source))
    return mounts


def mount_target(service: dict[str, Any], source: str) -> str:
    """Where the bind mount of repository path ``source`` lands inside the container."""
    wanted = (ROOT / source).resolve()
    for src, target in volume_mounts(service):
        if src.startswith((".", "/")) and (ROOT / src).resolve() == wanted:
            return target
    raise AssertionError(f"{source} is not mounted into the service")


def parse_listeners(value: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` -> {NAME: (host, port)}."""
    listeners: dict[str, tuple[str, int]] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        name, sep, address = item.partition("://")
        assert sep, f"listener {item!r} is not NAME://host:port"
        host, _, port = address.rpartition(":")
        listeners[name] = (host, int(port))
    return listeners


def command_flags(service: dict[str, Any]) -> dict[str, str]:
    command = service.get("command") or []
    args = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    flags: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep:
            flags[key] = value
    return flags


def prometheus_port(service: dict[str, Any]) -> int:
    address = command_flags(service).get("--web.listen-address", ":9090")
    return int(address.rpartition(":")[2])


def is_secret_field(name: str) -> bool:
    annotation = Settings.model_fields[name].annotation
    return annotation is SecretStr or SecretStr in get_args(annotation)


def promql_metric_names(expr: str) -> set[str]:
    """Metric names a PromQL (or Grafana ``label_values``) expression selects."""
    templated = re.fullmatch(r"\s*label_values\((.*?)(?:,\s*[A-Za-z_]\w*)?\)\s*", expr)
    if templated:
        expr = templated.group(1)
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = PROMQL_GROUPING.sub(" ", expr)
    names = set()
    for match in re.finditer(r"(?<![\w:$.])([A-Za-z_:][\w:]*)(\s*\()?", expr):
        name, call = match.groups()
        if not call and name.lower() not in PROMQL_KEYWORDS:
            names.add(name)
    return names


def dashboard_queries(node: Any) -> Iterator[str]:
    """Every ``expr`` of a panel target and every templating query in the dashboard."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in {"expr", "query"} and isinstance(value, str):
                yield value
            elif key == "query" and isinstance(value, dict) and "query" in value:
                yield str(value["query"])
            else:
                yield from dashboard_queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_queries(item)


def datasource_uids(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ds = node.get("datasource")
        if isinstance(ds, dict) and "uid" in ds:
            yield str(ds["uid"])
        for value in node.values():
            yield from datasource_uids(value)
    elif isinstance(node, list):
        for item in node:
            yield from datasource_uids(item)


def walk_strings(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk_strings(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from walk_strings(item, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node


def dockerfile_instructions() -> list[tuple[str, str]]:
    assert DOCKERFILE.is_file(), "Dockerfile is missing"
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    instructions = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


# -- the helpers themselves ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("rate(up[5m])", {"up"}),
        ('sum by (fleet) (rate(foo_total{fleet=~"$fleet"}[$__rate_interval]))', {"foo_total"}),
        ("histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m])))", {"h_bucket"}),
        ("a / clamp_min(b, 1e-9) and on (x) c", {"a", "b", "c"}),
        ("label_values(agentwatch_x_total, fleet)", {"agentwatch_x_total"}),
    ],
)
def test_promql_metric_names(expr: str, expected: set[str]) -> None:
    assert promql_metric_names(expr) == expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("127.0.0.1:6067:6066", ("127.0.0.1", "6067", 6066)),
        ("6066:6066", ("", "6066", 6066)),
        ("6066", ("", "", 6066)),
        ("[::1]:3000:3000/tcp", ("::1", "3000", 3000)),
        ({"target": 80, "published": "8080", "host_ip": "127.0.0.1"}, ("127.0.0.1", "8080", 80)),
    ],
)
def test_published_ports_parser(spec: Any, expected: tuple[str, str, int]) -> None:
    assert published_ports({"ports": [spec]}) == [expected]


# -- compose ---------------------------------------------------------------------------------


def test_services_exist(services: dict[str, dict[str, Any]]) -> None:
    missing = REQUIRED_SERVICES - services.keys()
    assert not missing, f"docker-compose.yml lacks services {sorted(missing)}"


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if "build" in service:
            continue
        image = str(service.get("image", ""))
        repo, _, tag = image.rpartition(":")
        assert repo and "/" not in tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest", f"{name}: image {image!r} is not pinned"


@pytest.mark.parametrize("worker", WORKERS)
def test_worker_runs_the_image_command(services: dict[str, dict[str, Any]], worker: str) -> None:
    service = services[worker]
    assert service.get("build"), f"{worker} is not built from the Dockerfile"
    build = service["build"]
    dockerfile = build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
    context = build.get("context", ".") if isinstance(build, dict) else build
    assert (ROOT / context / dockerfile).resolve() == DOCKERFILE
    command = service.get("command")
    assert command in (["worker"], "worker"), f"{worker} runs {command!r}, not `agentwatch worker`"


@pytest.mark.parametrize("worker", WORKERS)
def test_worker_env_keys_are_settings_fields(
    services: dict[str, dict[str, Any]], worker: str
) -> None:
    env = worker_env(services[worker])
    unknown = sorted(f"{ENV_PREFIX}{k.upper()}" for k in env if k not in Settings.model_fields)
    assert not unknown, f"{worker}: {unknown} are not fields of agentwatch.config.Settings"
    missing = sorted(f"{ENV_PREFIX}{k}" for k in REQUIRED_WORKER_ENV if k.lower() not in env)
    assert not missing, f"{worker}: {missing} not set"


@pytest.mark.parametrize("worker", WORKERS)
def test_worker_literal_env_values_validate(
    services: dict[str, dict[str, Any]], worker: str
) -> None:
    literals = {k: v for k, v in worker_env(services[worker]).items() if is_literal(v)}
    assert literals, f"{worker}: no literal AGENTWATCH_* values to check"
    for field, value in literals.items():
        try:
            Settings(**{field: value})
        except ValidationError as exc:
            pytest.fail(f"{worker}: {ENV_PREFIX}{field.upper()}={value!r} is invalid: {exc}")
    settings = worker_settings(services[worker])
    assert settings.store == "rocksdb"
    assert settings.data_dir.is_absolute(), "the data dir must not depend on the working dir"


@pytest.mark.parametrize("worker", WORKERS)
def test_worker_advertised_url_and_secrets_from_the_environment(
    services: dict[str, dict[str, Any]], worker: str
) -> None:
    env = worker_env(services[worker])
    assert env["web_advertised_url"] == f"http://{worker}:6066"
    for field, value in env.items():
        if field in Settings.model_fields and is_secret_field(field):
            assert REQUIRED_INTERPOLATION.fullmatch(value), (
                f"{worker}: {ENV_PREFIX}{field.upper()} is a secret; use ${{VAR:?...}}"
            )


def test_no_literal_secrets_in_compose(compose: dict[str, Any]) -> None:
    offenders = []
    for name, service in compose["services"].items():
        for key, value in env_of(service).items():
            if SECRET_KEY_NAME.search(key) and not REQUIRED_INTERPOLATION.fullmatch(value):
                offenders.append(f"{name}.environment.{key}")
    for path, value in walk_strings(compose):
        if re.search(r"(?i)\b(?:bearer|token|password)[=: ]+[A-Za-z0-9_\-]{12,}", value):
            offenders.append(path)
    assert not offenders, (
        f"literal secrets (or defaults for them) in docker-compose.yml: {offenders}"
    )


@pytest.mark.parametrize("worker", WORKERS)
def test_worker_bootstrap_matches_a_kafka_listener(
    services: dict[str, dict[str, Any]], worker: str
) -> None:
    kafka_env = env_of(services["kafka"])
    listeners = parse_listeners(kafka_env["KAFKA_LISTENERS"])
    advertised = parse_listeners(kafka_env["KAFKA_ADVERTISED_LISTENERS"])
    controllers = set(kafka_env["KAFKA_CONTROLLER_LISTENER_NAMES"].split(","))
    aliases = {"kafka"}
    networks = services["kafka"].get("networks") or {}
    if isinstance(networks, dict):
        for network in networks.values():
            aliases.update((network or {}).get("aliases") or [])

    bootstrap = worker_settings(services[worker]).kafka_bootstrap
    for address in bootstrap.split(","):
        host, _, port_text = address.rpartition(":")
        port = int(port_text)
        assert host in aliases, f"{worker}: bootstrap host {host!r} is not the kafka service"
        names = [n for n, (_, p) in listeners.items() if p == port and n not in controllers]
        assert names, f"{worker}: kafka declares no client listener on port {port}"
        # The broker redirects clients to its advertised address for that listener.
        assert advertised.get(names[0]) == (host, port), (
            f"{worker}: listener {names[0]} advertises {advertised.get(names[0])}, "
            f"but workers bootstrap from {address}"
        )


@pytest.mark.parametrize("worker", WORKERS)
def test_workers_wait_for_a_healthy_kafka(services: dict[str, dict[str, Any]], worker: str) -> None:
    depends = services[worker].get("depends_on") or {}
    assert isinstance(depends, dict), f"{worker}: depends_on needs condition: service_healthy"
    assert depends.get("kafka", {}).get("condition") == "service_healthy"
    assert services["kafka"].get("healthcheck", {}).get("test"), "kafka has no healthcheck"


def test_every_published_port_binds_loopback(services: dict[str, dict[str, Any]]) -> None:
    exposed = [
        f"{name}: {ip or '0.0.0.0'}:{host_port or '<random>'}->{container}"
        for name, service in services.items()
        for ip, host_port, container in published_ports(service)
        if ip not in {"127.0.0.1", "::1"}
    ]
    assert not exposed, f"ports published beyond loopback: {exposed}"
    host_network = [n for n, s in services.items() if s.get("network_mode") == "host"]
    assert not host_network, f"services on the host network bypass port bindings: {host_network}"
    host_ports = [hp for s in services.values() for _, hp, _ in published_ports(s)]
    assert len(host_ports) == len(set(host_ports)), f"host port published twice: {host_ports}"


def test_worker_web_port_matches_prometheus_targets(
    services: dict[str, dict[str, Any]], prometheus_config: dict[str, Any]
) -> None:
    targets: set[str] = set()
    for job in prometheus_config.get("scrape_configs") or []:
        if job.get("metrics_path", "/metrics") != "/metrics":
            continue
        for static in job.get("static_configs") or []:
            targets.update(static.get("targets") or [])

    for worker in WORKERS:
        settings = worker_settings(services[worker])
        assert settings.web_host not in LOOPBACK_HOSTS, (
            f"{worker}: web server bound to {settings.web_host} is unreachable from "
            "Prometheus and the published port"
        )
        container_ports = {c for _, _, c in published_ports(services[worker])}
        assert settings.web_port in container_ports, (
            f"{worker}: web port {settings.web_port} is not the published container port "
            f"{sorted(container_ports)}"
        )
        target = f"{worker}:{settings.web_port}"
        assert target in targets, f"Prometheus does not scrape {target}/metrics ({targets})"


def test_workers_publish_their_otlp_receiver(services: dict[str, dict[str, Any]]) -> None:
    exposed = {
        int(p.split("/")[0])
        for kw, rest in dockerfile_instructions()
        if kw == "EXPOSE"
        for p in rest.split()
    }
    for worker in WORKERS:
        settings = worker_settings(services[worker])
        assert settings.otlp_enabled
        assert settings.otlp_host not in LOOPBACK_HOSTS, (
            f"{worker}: OTLP receiver bound to {settings.otlp_host} is unreachable from the "
            "published port"
        )
        container_ports = {c for _, _, c in published_ports(services[worker])}
        assert settings.otlp_port in container_ports, f"{worker}: OTLP port not published"
        assert settings.otlp_port in exposed, f"the image does not EXPOSE {settings.otlp_port}"


def test_prometheus_config_is_mounted(services: dict[str, dict[str, Any]]) -> None:
    prometheus = services["prometheus"]
    target = mount_target(prometheus, "deploy/prometheus/prometheus.yml")
    config_file = command_flags(prometheus).get("--config.file", "/etc/prometheus/prometheus.yml")
    assert target == config_file, f"config mounted at {target}, Prometheus reads {config_file}"
    assert prometheus_port(prometheus) in {c for _, _, c in published_ports(prometheus)}


@pytest.mark.parametrize("worker", WORKERS)
def test_worker_state_on_its_own_named_volume(
    compose: dict[str, Any], services: dict[str, dict[str, Any]], worker: str
) -> None:
    data_dir = str(worker_settings(services[worker]).data_dir)
    named = {t: s for s, t in volume_mounts(services[worker]) if s and s[0] not in "./~$"}
    assert data_dir in named, f"{worker}: {data_dir} is not on a named volume"
    assert named[data_dir] in (compose.get("volumes") or {}), f"volume {named[data_dir]} undeclared"
    others = [
        s
        for w in WORKERS
        if w != worker
        for s, t in volume_mounts(services[w])
        if t == str(worker_settings(services[w]).data_dir)
    ]
    assert named[data_dir] not in others, f"{worker} shares its state volume with another worker"


@pytest.mark.parametrize("worker", WORKERS)
def test_workers_sign_with_the_key_the_keys_service_makes(
    compose: dict[str, Any], services: dict[str, dict[str, Any]], worker: str
) -> None:
    """`agentwatch worker` refuses to start without a signing key: the compose file must give
    every worker the same key, made once by a one-shot `agentwatch keys generate DIR`."""
    settings = worker_settings(services[worker])
    key_file = settings.control_signing_key_file
    assert key_file is not None, f"{worker}: AGENTWATCH_CONTROL_SIGNING_KEY_FILE not set"
    key_dir = str(PurePosixPath(str(key_file)).parent)
    mounts = {
        target: source
        for source, target in volume_mounts(services[worker])
        if source and source[0] not in "./~$"
    }
    assert key_dir in mounts, f"{worker}: {key_dir} is not on a named volume"
    volume = mounts[key_dir]
    assert volume in (compose.get("volumes") or {}), f"volume {volume} undeclared"
    raw = [v for v in services[worker].get("volumes") or [] if str(v).startswith(volume + ":")]
    assert raw and str(raw[0]).endswith(":ro"), f"{worker}: mount {volume} read-only"

    makers = {
        name: svc
        for name, svc in services.items()
        if (svc.get("command") or [])[:2] == ["keys", "generate"]
    }
    assert makers, "no service runs `agentwatch keys generate`"
    name, maker = next(iter(makers.items()))
    assert maker["command"][2] == key_dir and PurePosixPath(str(key_file)).name == "control.key"
    assert (volume, key_dir) in volume_mounts(maker), f"{name} does not write {volume}"
    assert maker.get("image") == services[worker].get("image"), f"{name} runs another image"
    depends = services[worker].get("depends_on") or {}
    assert depends.get(name, {}).get("condition") == "service_completed_successfully"
    # the image's user must own the mount point, or the volume is not writable for it
    mkdirs = " ".join(r for kw, r in dockerfile_instructions() if kw == "RUN")
    assert re.search(rf"mkdir -p [^&]*{re.escape(key_dir)}\b", mkdirs)
    assert re.search(rf"chown agentwatch:agentwatch [^&]*{re.escape(key_dir)}\b", mkdirs)


def test_kafka_is_single_node_kraft(services: dict[str, dict[str, Any]]) -> None:
    kafka = services["kafka"]
    image = str(kafka["image"])
    assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", image), f"kafka image {image!r}"
    env = env_of(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not [k for k in env if "ZOOKEEPER" in k], "KRaft mode takes no ZooKeeper settings"
    node_id = env["KAFKA_NODE_ID"]
    assert node_id == "1"

    listeners = parse_listeners(env["KAFKA_LISTENERS"])
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert controller in listeners, f"controller listener {controller} is not declared"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node_id}@kafka:{listeners[controller][1]}"
    protocols = dict(
        p.split(":", 1) for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(listeners) <= protocols.keys(), "every listener needs a security protocol"
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in listeners
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] != controller
    assert set(parse_listeners(env["KAFKA_ADVERTISED_LISTENERS"])) <= set(listeners) - {controller}

    cluster_id = env.get("CLUSTER_ID", "")
    try:
        raw = base64.urlsafe_b64decode(cluster_id + "==")
    except (binascii.Error, ValueError):
        raw = b""
    assert len(cluster_id) == 22 and len(raw) == 16, f"CLUSTER_ID {cluster_id!r} is not a UUID"


def test_kafka_replication_factors_are_one(services: dict[str, dict[str, Any]]) -> None:
    env = env_of(services["kafka"])
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env.get(key) == "1", f"{key}={env.get(key)!r}; a single broker needs 1"
    too_high = {
        k: v
        for k, v in env.items()
        if re.search(r"REPLICATION_FACTOR$|MIN_ISR$|MIN_INSYNC_REPLICAS$", k) and v != "1"
    }
    assert not too_high, f"single broker, but {too_high}"
    for worker in WORKERS:
        assert worker_settings(services[worker]).replication_factor == 1


def test_kafka_default_partitions_match_workers(services: dict[str, dict[str, Any]]) -> None:
    partitions = env_of(services["kafka"]).get("KAFKA_NUM_PARTITIONS")
    if partitions is None:
        pytest.skip("broker default partition count not set")
    for worker in WORKERS:
        assert int(partitions) == worker_settings(services[worker]).topic_partitions


# -- Grafana ---------------------------------------------------------------------------------


def test_grafana_datasource_points_at_prometheus(services: dict[str, dict[str, Any]]) -> None:
    grafana = services["grafana"]
    assert mount_target(grafana, "deploy/grafana/provisioning") == "/etc/grafana/provisioning"
    datasources = _load_yaml(DATASOURCE_FILE)["datasources"]
    prom = [d for d in datasources if d["type"] == "prometheus"]
    assert prom, "no Prometheus data source provisioned"
    url = urlsplit(prom[0]["url"])
    assert url.hostname == "prometheus" and url.hostname in services
    assert url.port == prometheus_port(services["prometheus"])
    secrets = [k for k in prom[0].get("secureJsonData") or {} if not str(k).startswith("$")]
    assert not secrets, "secureJsonData committed to the repository"


def test_grafana_dashboard_provider_path_is_mounted(services: dict[str, dict[str, Any]]) -> None:
    providers = _load_yaml(DASHBOARD_PROVIDER_FILE)["providers"]
    paths = {PurePosixPath(p["options"]["path"]) for p in providers if p.get("type") == "file"}
    target = PurePosixPath(mount_target(services["grafana"], "deploy/grafana/dashboards"))
    assert target in paths, f"dashboards mounted at {target}, provider reads {paths}"


def test_grafana_admin_password_not_default(services: dict[str, dict[str, Any]]) -> None:
    env = env_of(services["grafana"])
    password = env.get("GF_SECURITY_ADMIN_PASSWORD", "")
    assert REQUIRED_INTERPOLATION.fullmatch(password), "Grafana admin password must be required"
    assert env.get("GF_AUTH_ANONYMOUS_ENABLED", "false") == "false"


def test_dashboard_queries_only_agentwatch_metrics() -> None:
    dashboard = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    assert dashboard.get("uid") and dashboard.get("title")
    queries = list(dashboard_queries(dashboard))
    assert queries, "the dashboard queries nothing"
    names = set().union(*(promql_metric_names(q) for q in queries))
    foreign = sorted(n for n in names if not n.startswith("agentwatch_"))
    assert not foreign, f"dashboard queries non-agentwatch metrics: {foreign}"
    families = {re.sub(r"_(?:bucket|sum|count)$", "", n) for n in names}
    unused = DASHBOARD_METRICS - families
    assert not unused, f"dashboard does not chart {sorted(unused)}"


def test_dashboard_uses_the_provisioned_datasource() -> None:
    dashboard = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    provisioned = {d.get("uid") for d in _load_yaml(DATASOURCE_FILE)["datasources"]}
    used = set(datasource_uids(dashboard)) - {"-- Grafana --", "grafana"}
    assert used, "dashboard panels name no data source"
    assert used <= provisioned, f"dashboard uses data sources {used - provisioned}"


# -- image -----------------------------------------------------------------------------------


def test_dockerfile_runs_the_worker_as_non_root(services: dict[str, dict[str, Any]]) -> None:
    instructions = dockerfile_instructions()
    froms = [rest for kw, rest in instructions if kw == "FROM"]
    assert froms[-1].split()[0] == "python:3.11-slim"
    final = instructions[max(i for i, (kw, _) in enumerate(instructions) if kw == "FROM") :]
    users = [rest for kw, rest in final if kw == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, "image runs as root"
    assert ("ENTRYPOINT", '["agentwatch"]') in final
    assert ("CMD", '["worker"]') in final
    # the base install is only the agent SDK: the image must install the worker extra
    assert any(
        kw == "RUN" and re.search(r"pip install\b.*\s'?\.\[[^\]]*\bworker\b[^\]]*\]'?$", r)
        for kw, r in instructions
    )

    exposed = {int(p.split("/")[0]) for kw, r in final if kw == "EXPOSE" for p in r.split()}
    volumes = {v for kw, r in final if kw == "VOLUME" for v in json.loads(r)}
    for worker in WORKERS:
        settings = worker_settings(services[worker])
        assert settings.web_port in exposed, f"EXPOSE {exposed} lacks {settings.web_port}"
        assert str(settings.data_dir) in volumes, f"VOLUME {volumes} lacks {settings.data_dir}"


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    assert DOCKERIGNORE.is_file(), ".dockerignore is missing"
    patterns = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    missing = {".git", ".venv", ".env", "agentwatch.toml"} - patterns
    assert not missing, f".dockerignore should exclude {sorted(missing)}"
    kept = {"pyproject.toml", "agentwatch", "README.md"} & patterns
    assert not kept, f".dockerignore excludes files `pip install .` needs: {sorted(kept)}"
