"""infra/ parses, agrees with the code (ports, metric names) and refers only to files that exist."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tollgate_devstack import plan
from tollgate_shared.litellm_metrics import CATALOG

ROOT = Path(__file__).resolve().parents[3]
INFRA = ROOT / "infra"
PORTS = {s.name: s.port() for s in plan.SERVICES}

# What LiteLLM's Prometheus integration exposes and Tollgate's ingress mirrors.
LITELLM_METRICS = {
    "litellm_proxy_total_requests_metric_total",
    "litellm_proxy_failed_requests_metric_total",
    "litellm_request_total_latency_metric",
    "litellm_llm_api_latency_metric",
    "litellm_llm_api_time_to_first_token_metric",
    "litellm_overhead_latency_metric",
    "litellm_spend_metric_total",
    "litellm_total_tokens_metric_total",
    "litellm_input_tokens_metric_total",
    "litellm_output_tokens_metric_total",
    "litellm_deployment_success_responses_total",
    "litellm_deployment_failure_responses_total",
    "litellm_remaining_requests",
    "litellm_deployment_state",
}

_DEFINITION = re.compile(r"\b(Counter|Gauge|Histogram|Summary)\(\s*\"([a-zA-Z_:][a-zA-Z0-9_:]*)\"")
_SUFFIXES = {
    "Counter": ("_total", "_created"),
    "Histogram": ("_bucket", "_sum", "_count", "_created"),
    "Summary": ("", "_sum", "_count", "_created"),
    "Gauge": ("",),
}


def _series(kind: str, name: str) -> set[str]:
    """The series names prometheus_client exposes for one metric."""
    base = name.removesuffix("_total") if kind == "Counter" else name
    names = {base + suffix for suffix in _SUFFIXES[kind]}
    return names | {base} if kind == "Histogram" else names


def defined_metrics() -> set[str]:
    """Every series name the code can expose: LiteLLM's catalog, and each metric the
    services and the shared package define with prometheus_client."""
    names: set[str] = set()
    for spec in CATALOG:
        names |= _series(spec.kind.capitalize(), spec.name)
    sources = [*(ROOT / "shared" / "src").rglob("*.py"), *(ROOT / "services").rglob("src/**/*.py")]
    for path in sources:
        for kind, name in _DEFINITION.findall(path.read_text()):
            names |= _series(kind, name)
    return names


KNOWN = defined_metrics() | {"up"}

# Label lists and matchers hold label names (some start with litellm_), not metrics.
_LABEL_GROUPS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_MATCHERS = re.compile(r"\{[^}]*\}")
_IDENT = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")
_PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "rate", "increase", "topk", "bottomk",
    "histogram_quantile", "by", "without", "unless", "and", "or", "on", "ignoring",
    "bool", "offset", "le", "inf",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    stripped = _MATCHERS.sub(" ", _LABEL_GROUPS.sub(" ", expr))
    stripped = re.sub(r"\[[^\]]*\]", " ", stripped)  # range selectors like [5m]
    return {
        t
        for t in _IDENT.findall(stripped)
        if t not in _PROMQL_WORDS and not t.replace(".", "").isdigit() and not t.startswith("$")
    }


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# --- metric names --------------------------------------------------------------


def test_code_defines_every_litellm_metric_the_dashboards_rely_on() -> None:
    missing = {m for m in LITELLM_METRICS if m not in KNOWN and m + "_bucket" not in KNOWN}
    assert not missing, f"ingress no longer defines {sorted(missing)}"
    assert {"tollgate_consumer_pending", "tollgate_spool_depth"} <= KNOWN
    assert "tollgate_events_published_total" in KNOWN


def test_metric_name_extraction() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, litellm_model_name) "
        '(rate(litellm_request_total_latency_metric_bucket{team=~"$team"}[5m]))) '
        "/ on (instance) tollgate_spool_depth"
    )
    assert metric_names(expr) == {
        "litellm_request_total_latency_metric_bucket",
        "tollgate_spool_depth",
    }


def _dashboard_exprs() -> Iterator[tuple[str, str]]:
    for path in sorted((INFRA / "grafana" / "dashboards").glob("*.json")):
        dash = json.loads(path.read_text())
        for panel in dash["panels"]:
            for target in panel.get("targets", []):
                yield f"{path.name}: {panel['title']}", target["expr"]


def test_dashboards_parse_and_use_only_known_metrics() -> None:
    paths = sorted((INFRA / "grafana" / "dashboards").glob("*.json"))
    assert paths
    seen: set[str] = set()
    for path in paths:
        dash = json.loads(path.read_text())
        assert dash["uid"]
        assert dash["title"]
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        variables = {v["name"] for v in dash["templating"]["list"]}
        for panel in dash["panels"]:
            for target in panel.get("targets", []):
                for var in re.findall(r"\$(\w+)", target["expr"]):
                    assert var.startswith("__") or var in variables, (panel["title"], var)
    for where, expr in _dashboard_exprs():
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr}"
        unknown = names - KNOWN
        assert not unknown, f"{where}: {sorted(unknown)} is not a metric the code defines"
        seen |= names
    # The dashboard covers LiteLLM's core series and Tollgate's pipeline.
    for wanted in ("litellm_proxy_total_requests_metric_total", "litellm_spend_metric_total"):
        assert wanted in seen
    assert {"tollgate_consumer_pending", "tollgate_spool_depth"} <= seen


def test_alert_rules_parse_and_use_only_known_metrics() -> None:
    rules = load_yaml(INFRA / "prometheus" / "alerts.yml")
    alerts = [r for g in rules["groups"] for r in g["rules"]]
    assert len({a["alert"] for a in alerts}) == len(alerts)
    for rule in alerts:
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        unknown = metric_names(rule["expr"]) - KNOWN
        assert not unknown, f"{rule['alert']}: unknown metrics {sorted(unknown)}"


def test_prometheus_scrapes_every_service_on_its_port() -> None:
    prom = load_yaml(INFRA / "prometheus" / "prometheus.yml")
    assert prom["rule_files"] == ["/etc/prometheus/alerts.yml"]
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    for name, port in PORTS.items():
        sd = jobs[f"tollgate-{name}"]["dns_sd_configs"][0]
        assert sd == {"names": [name], "type": "A", "port": port}


# --- docker compose ---------------------------------------------------------------

# The service keys this file uses, all from the Compose specification.
_COMPOSE_SERVICE_KEYS = {
    "image", "build", "command", "entrypoint", "environment", "volumes", "ports", "restart",
    "depends_on", "healthcheck", "deploy", "networks", "profiles",
}  # fmt: skip


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(INFRA / "docker-compose.yml")
    return data


def test_compose_runs_the_whole_system(compose: dict[str, Any]) -> None:
    services = compose["services"]
    expected = {
        "nats-1", "nats-2", "nats-3", "postgres", "redis", "provision", "migrate-ledger",
        "migrate-admin", "prometheus", "grafana", "otel-collector", *PORTS,
    }  # fmt: skip
    assert expected <= set(services)
    for name, svc in services.items():
        assert set(svc) <= _COMPOSE_SERVICE_KEYS, f"{name}: {set(svc) - _COMPOSE_SERVICE_KEYS}"
        deps = svc.get("depends_on", {})
        assert set(deps) <= set(services), f"{name} depends on an unknown service"
    for name, port in PORTS.items():
        env = services[name]["environment"]
        assert env["TOLLGATE_PORT"] == str(port)
        assert env["TOLLGATE_NATS_URL"] == "nats://nats:4222"
        assert services[name]["build"]["args"]["SERVICE"] == name
        for other, other_port in PORTS.items():
            if other != "ingress":
                assert env[f"TOLLGATE_{other.upper()}_URL"] == f"http://{other}:{other_port}"
    assert services["provision"]["entrypoint"][-2:] == ["--replicas", "3"]
    assert services["migrate-ledger"]["command"] == ["migrate"]


def test_compose_mounts_and_builds_only_existing_files(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (INFRA / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in compose["volumes"], f"{name} uses undeclared volume {source}"
        if "build" in svc:
            build = svc["build"]
            assert (INFRA / build["context"] / build["dockerfile"]).is_file()


def test_nats_cluster_routes_name_the_three_nodes(compose: dict[str, Any]) -> None:
    conf = (INFRA / "nats" / "nats-cluster.conf").read_text()
    routes = set(re.findall(r"nats-route://([\w-]+):6222", conf))
    assert routes == {"nats-1", "nats-2", "nats-3"}
    assert routes <= set(compose["services"])
    assert "max_payload: 8MB" in conf


def test_dockerfile_installs_only_one_member() -> None:
    text = (INFRA / "docker" / "Dockerfile").read_text()
    assert 'uv sync --package "tollgate-${SERVICE}" --frozen --no-dev' in text
    # Every workspace member's pyproject is copied so uv can read the lock file.
    for member in ("shared", "devstack", *(f"services/{s}" for s in PORTS)):
        assert f"COPY {member}/pyproject.toml" in text
        assert (ROOT / member / "pyproject.toml").is_file()


def test_config_example_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    from tollgate_shared.config import load_config

    monkeypatch.setenv("TOLLGATE_MASTER_KEY", "sk-a-strong-master-key-for-tests")
    cfg = load_config(INFRA / "config" / "config.yaml")
    assert "demo" in cfg.model_names()


# --- grafana, otel (the Helm chart: tests/unit/infra/) ---------------------------


def test_grafana_provisioning_points_at_the_dashboards(compose: dict[str, Any]) -> None:
    ds = load_yaml(INFRA / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    assert ds["datasources"][0]["url"] == "http://prometheus:9090"
    provider = load_yaml(INFRA / "grafana" / "provisioning" / "dashboards" / "tollgate.yml")
    path = provider["providers"][0]["options"]["path"]
    assert f"./grafana/dashboards:{path}:ro" in compose["services"]["grafana"]["volumes"]


def test_otel_collector_pipelines_use_defined_components() -> None:
    conf = load_yaml(INFRA / "otel" / "otel-collector.yaml")
    for pipeline in conf["service"]["pipelines"].values():
        for kind in ("receivers", "processors", "exporters"):
            assert set(pipeline.get(kind, [])) <= set(conf[kind]), kind
