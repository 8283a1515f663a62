"""The OpenTelemetry Collector example and the compose `elastic` profile hold together:
every pipeline names receivers, processors and exporters that are defined (memory_limiter
first, batch after it), traces and logs reach Elasticsearch beside debug in OTel mapping
mode, and the compose file rendered with `--profile elastic` (profiles applied, as
`docker compose config` does) has Elasticsearch, Kibana and the data view set-up, every
dependency among the rendered services, and the collector pointed at Elasticsearch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
COLLECTOR = ROOT / "infra" / "otel" / "otel-collector.yaml"
COMPOSE = ROOT / "infra" / "docker-compose.yml"


def collector() -> dict[str, Any]:
    return yaml.safe_load(COLLECTOR.read_text())


def render(profiles: set[str]) -> dict[str, Any]:
    """The compose services `docker compose --profile ...` would run (anchors merged)."""
    doc = yaml.safe_load(COMPOSE.read_text())
    services = {
        name: svc
        for name, svc in doc["services"].items()
        if not svc.get("profiles") or profiles & set(svc["profiles"])
    }
    return {**doc, "services": services}


def test_every_pipeline_names_defined_components_memory_limiter_first() -> None:
    cfg = collector()
    pipelines = cfg["service"]["pipelines"]
    assert {"traces", "logs"} <= set(pipelines)
    for name, p in pipelines.items():
        for kind in ("receivers", "processors", "exporters"):
            for component in p.get(kind, []):
                assert component in cfg[kind], f"{name}: {kind} {component} is not defined"
        assert p["processors"][0] == "memory_limiter", name
        assert p["processors"].index("batch") > 0, name
    for ext in cfg["service"].get("extensions", []):
        assert ext in cfg["extensions"]


def test_traces_and_logs_reach_elasticsearch_beside_debug() -> None:
    cfg = collector()
    es = cfg["exporters"]["elasticsearch"]
    assert es["mapping"]["mode"] == "otel"
    assert es["endpoints"] == ["${env:ELASTICSEARCH_ENDPOINT}"]
    for pipeline in ("traces", "logs"):
        assert cfg["service"]["pipelines"][pipeline]["exporters"] == ["debug", "elasticsearch"]


def test_compose_renders_with_the_elastic_profile() -> None:
    plain = render(set())["services"]
    assert not {"elasticsearch", "kibana", "kibana-setup"} & set(plain)
    doc = render({"elastic"})
    services = doc["services"]
    assert {"elasticsearch", "kibana", "kibana-setup", "otel-collector"} <= set(services)
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}) or {}:
            assert dep in services, f"{name} depends on {dep}, not rendered"
        for volume in svc.get("volumes", []) or []:
            source = volume.split(":")[0] if isinstance(volume, str) else volume["source"]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name}: {source} is missing"
            else:
                assert source in doc["volumes"], f"{name}: volume {source} is not declared"
    env = services["otel-collector"]["environment"]
    assert env["ELASTICSEARCH_ENDPOINT"] == "${ELASTICSEARCH_ENDPOINT:-http://elasticsearch:9200}"
    assert (
        services["kibana"]["environment"]["ELASTICSEARCH_HOSTS"] == '["http://elasticsearch:9200"]'
    )
    setup = " ".join(services["kibana-setup"]["command"])
    assert "/api/data_views/data_view" in setup
    assert '"title": "traces-*.otel-*"' in setup
    assert '"timeFieldName": "@timestamp"' in setup
    image = services["elasticsearch"]["image"]
    assert image.split(":")[-1] == services["kibana"]["image"].split(":")[-1]  # same version
