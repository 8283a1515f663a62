"""`arize_phoenix`: Arize Phoenix over OTLP, a preset of the OTLP sink: bearer API key
(Phoenix Cloud), OpenInference attributes, the project as `openinference.project.name`.

Settings (LiteLLM's): `PHOENIX_API_KEY`, `PHOENIX_COLLECTOR_HTTP_ENDPOINT` (default
`https://app.phoenix.arize.com/v1/traces`) or `PHOENIX_COLLECTOR_ENDPOINT` (OTLP/gRPC),
`PHOENIX_PROJECT_NAME` (default `litellm`); callback variables of the same names in lower case.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tollgate_exporter.destinations import Destination
from tollgate_exporter.sinks.base import SinkType
from tollgate_exporter.sinks.otel import VendorSettings, create, preset_destination

DEFAULT_HTTP_ENDPOINT = "https://app.phoenix.arize.com/v1/traces"


def destination(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    v = VendorSettings(
        vars_, env, ("PHOENIX_COLLECTOR_HTTP_ENDPOINT", "PHOENIX_COLLECTOR_ENDPOINT")
    )
    http = v.get("PHOENIX_COLLECTOR_HTTP_ENDPOINT")
    grpc_endpoint = v.get("PHOENIX_COLLECTOR_ENDPOINT")
    if grpc_endpoint and not http:
        url, exporter = grpc_endpoint, "otlp_grpc"
    else:
        url, exporter = http or DEFAULT_HTTP_ENDPOINT, "otlp_http"
        if not url.rstrip("/").endswith("/v1/traces"):
            url = url.rstrip("/") + "/v1/traces"
    api_key = v.secret("PHOENIX_API_KEY")
    if not api_key and url == DEFAULT_HTTP_ENDPOINT:
        return "arize_phoenix needs phoenix_api_key for Phoenix Cloud"
    project = v.get("PHOENIX_PROJECT_NAME") or "litellm"
    return preset_destination(
        "arize_phoenix",
        url,
        headers={"authorization": f"Bearer {api_key}" if api_key else None},
        vars_=vars_,
        resource_attributes={"openinference.project.name": project},
        conventions=("openinference",),
        exporter=exporter,
        label=f"project {project}",
    )


SINK = SinkType(
    kind="arize_phoenix", names=("arize_phoenix",), destination=destination, create=create
)
