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
`AGENTOPS_OTLP_ENDPOINT` / `AGENTOPS_AUTH_ENDPOINT`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource

from tollgate_exporter.destinations import Destination, digest, safe_url
from tollgate_exporter.sinks._http_api import Credentials, cached, json_of, request
from tollgate_exporter.sinks.base import BatchResult, ExportItem, SinkContext, SinkType
from tollgate_exporter.sinks.otel import build_span

OTLP_ENDPOINT = "https://otlp.agentops.cloud/v1/traces"
AUTH_ENDPOINT = "https://api.agentops.ai/v3/auth/token"


def destination(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    c = Credentials(
        vars_,
        env,
        (
            "agentops_api_key",
            "agentops_otlp_endpoint",
            "agentops_auth_endpoint",
        ),
    )
    key = c.secret("agentops_api_key", "AGENTOPS_API_KEY")
    if not key:
        return "agentops needs agentops_api_key (or AGENTOPS_API_KEY)"
    otlp = c.get("agentops_otlp_endpoint", "AGENTOPS_OTLP_ENDPOINT") or OTLP_ENDPOINT
    auth = c.get("agentops_auth_endpoint", "AGENTOPS_AUTH_ENDPOINT") or AUTH_ENDPOINT
    service = env.get("AGENTOPS_SERVICE_NAME") or "agentops"
    environment = env.get("AGENTOPS_ENVIRONMENT") or "production"
    return Destination(
        "agentops",
        f"agentops:{digest(otlp, auth, key, service, environment)}",
        f"agentops {safe_url(otlp)}",
        {"otlp": otlp, "auth": auth, "key": key, "service": service, "environment": environment},
    )


class AgentOpsSink:
    kind = "agentops"

    def __init__(self, ctx: SinkContext) -> None:
        self._client = ctx.client
        self._tokens: dict[str, dict[str, Any]] = {}

    async def _token(self, dest: Destination) -> dict[str, Any]:
        o = dest.options

        async def fetch() -> dict[str, Any]:
            response = await request(
                self._client, "POST", o["auth"], "agentops auth", json={"api_key": o["key"]}
            )
            doc = json_of(response, "agentops auth")
            return {"token": str(doc["token"]), "project_id": doc.get("project_id")}

        cache = self._tokens.setdefault(dest.key, {})
        token: dict[str, Any] = await cached(cache, "token", fetch)
        return token

    async def send(self, destination: Destination, items: Sequence[ExportItem]) -> BatchResult:
        o = destination.options
        auth = await self._token(destination)
        attrs: dict[str, Any] = {
            "service.name": o["service"],
            "deployment.environment": o["environment"],
            "telemetry.sdk.name": "agentops",
        }
        if auth.get("project_id"):
            attrs["project.id"] = str(auth["project_id"])
        resource = Resource(attrs)
        body = encode_spans([build_span(i, resource, True) for i in items]).SerializeToString()
        try:
            await request(
                self._client,
                "POST",
                o["otlp"],
                "agentops otlp",
                content=body,
                headers={
                    "authorization": f"Bearer {auth['token']}",
                    "content-type": "application/x-protobuf",
                },
            )
        except Exception as exc:
            if getattr(exc, "status_code", None) in (401, 403):
                self._tokens.pop(destination.key, None)
            raise
        return BatchResult()

    async def close(self) -> None:
        """Nothing of its own to release (the HTTP client is shared)."""


SINK = SinkType(kind="agentops", names=("agentops",), destination=destination, create=AgentOpsSink)
