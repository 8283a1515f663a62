"""AgentOps sink: an OTLP preset (AgentOps ingests OpenTelemetry), with its token exchange.

As LiteLLM's AgentOps integration does: the API key is exchanged once per destination
for a JWT (`POST https://api.agentops.ai/v3/auth/token {"api_key": ...}` ->
`{"token", "project_id"}`), then spans go to `https://otlp.agentops.cloud/v1/traces`
as OTLP/HTTP protobuf with `Authorization: Bearer <jwt>`. The spans are the `otel`
sink's own (`otel.build_span`: GenAI semantic conventions, content only when not
redacted); the resource carries `service.name` (`AGENTOPS_SERVICE_NAME`, default
`agentops`), `deployment.environment` (`AGENTOPS_ENVIRONMENT`, default `production`),
`telemetry.sdk.name: agentops` and `project.id`. A 401 drops the token, so the next
attempt fetches a new one.

Credentials: `agentops_api_key` (callback var) else `AGENTOPS_API_KEY`; the endpoints can
be moved with `agentops_otlp_endpoint` / `agentops_auth_endpoint` (callback vars) or
`AGENTOPS_OTLP_ENDPOINT` / `AGENTOPS_AUTH_ENDPOINT`. A batch is one request; once
accepted, a retry of the same batch does not send it again (as every HTTP-API sink).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource

from tollgate_exporter.destinations import Destination
from tollgate_exporter.sinks._http_api import (
    HttpApi,
    Part,
    Post,
    RenderContext,
    cached,
    endpoint,
    json_of,
    key,
    option,
)
from tollgate_exporter.sinks.base import ExportItem, request
from tollgate_exporter.sinks.otel import build_span

OTLP_ENDPOINT = "https://otlp.agentops.cloud/v1/traces"
AUTH_ENDPOINT = "https://api.agentops.ai/v3/auth/token"


async def render(ctx: RenderContext, dest: Destination, items: Sequence[ExportItem]) -> list[Part]:
    """The batch's spans as one OTLP request, with a JWT exchanged for the key (once)."""
    o = dest.options

    async def fetch() -> dict[str, Any]:
        response = await request(
            ctx.client, "POST", o["auth"], "agentops auth", json={"api_key": o["key"]}
        )
        doc = json_of(response, "agentops auth")
        return {"token": str(doc["token"]), "project_id": doc.get("project_id")}

    auth: dict[str, Any] = await cached(ctx.cache, "token", fetch)
    attrs: dict[str, Any] = {
        "service.name": o["service"],
        "deployment.environment": o["environment"],
        "telemetry.sdk.name": "agentops",
    }
    if auth.get("project_id"):
        attrs["project.id"] = str(auth["project_id"])
    resource = Resource(attrs)
    spans = encode_spans([build_span(i, resource, True) for i in items]).SerializeToString()
    return [
        Post(
            o["otlp"],
            spans,
            tuple(range(len(items))),
            {"authorization": f"Bearer {auth['token']}"},
            content_type="application/x-protobuf",
            what="agentops otlp",
        )
    ]


API = HttpApi(
    "agentops",
    {
        "key": key("agentops_api_key", "AGENTOPS_API_KEY"),
        "otlp": endpoint(
            "agentops_otlp_endpoint", "AGENTOPS_OTLP_ENDPOINT", default=OTLP_ENDPOINT, base=False
        ),
        "auth": endpoint(
            "agentops_auth_endpoint", "AGENTOPS_AUTH_ENDPOINT", default=AUTH_ENDPOINT, base=False
        ),
        "service": option(None, "AGENTOPS_SERVICE_NAME", default="agentops"),
        "environment": option(None, "AGENTOPS_ENVIRONMENT", default="production"),
    },
    render=render,
    identity=("otlp", "auth", "key", "service", "environment"),
    label=("otlp",),
)
SINK = API.sink
