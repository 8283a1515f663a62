"""`arize`: Arize AX over OTLP, a preset of the OTLP sink: `space_id` and `api_key`
headers, OpenInference attributes (what Arize reads), the project as resource attributes.

Settings (LiteLLM's): `ARIZE_SPACE_ID` (or `ARIZE_SPACE_KEY`), `ARIZE_API_KEY`,
`ARIZE_PROJECT_NAME`; `ARIZE_ENDPOINT` (OTLP/gRPC, default `https://otlp.arize.com/v1`) or
`ARIZE_HTTP_ENDPOINT` (OTLP/HTTP); callback variables of the same names in lower case.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tollgate_exporter.destinations import Destination
from tollgate_exporter.sinks.base import SinkType
from tollgate_exporter.sinks.otel import VendorSettings, create, preset_destination

DEFAULT_GRPC_ENDPOINT = "https://otlp.arize.com/v1"


def destination(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    v = VendorSettings(vars_, env, ("ARIZE_ENDPOINT", "ARIZE_HTTP_ENDPOINT"))
    space = v.secret("ARIZE_SPACE_ID", "ARIZE_SPACE_KEY")
    api_key = v.secret("ARIZE_API_KEY")
    if not space or not api_key:
        return "arize needs arize_space_id (or arize_space_key) and arize_api_key"
    http = v.get("ARIZE_HTTP_ENDPOINT")
    grpc_endpoint = v.get("ARIZE_ENDPOINT")
    if http and not grpc_endpoint:
        url, exporter = http, "otlp_http"
    else:
        url, exporter = grpc_endpoint or DEFAULT_GRPC_ENDPOINT, "otlp_grpc"
    project = v.get("ARIZE_PROJECT_NAME") or "litellm"
    return preset_destination(
        "arize",
        url,
        headers={"space_id": space, "api_key": api_key},
        vars_=vars_,
        resource_attributes={"model_id": project, "openinference.project.name": project},
        conventions=("openinference",),
        exporter=exporter,
        label=f"space {space}",
    )


SINK = SinkType(kind="arize", names=("arize",), destination=destination, create=create)
