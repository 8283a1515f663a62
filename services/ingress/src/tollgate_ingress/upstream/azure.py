"""Azure OpenAI (`azure/<deployment name>`): OpenAI's wire format at Azure's deployment URL,
with `api_version`, and an `api-key` header or an Entra ID bearer token (`azure_ad_token`)."""

from __future__ import annotations

from typing import Any

import orjson

from tollgate_ingress.routing import Deployment
from tollgate_ingress.upstream.openai import UpstreamError
from tollgate_ingress.upstream.translating import (
    ChunkTranslator,
    Outgoing,
    TranslatingAdapter,
    param,
)

# The latest GA data-plane version when this was written; `api_version` overrides it.
DEFAULT_API_VERSION = "2024-10-21"


class PassThrough(ChunkTranslator):
    """Azure streams OpenAI chunks already (content-filter results included)."""

    def feed(self, event: Any) -> list[dict[str, Any]]:
        if not isinstance(event, dict):
            return []
        if "error" in event and not event.get("choices"):
            err = event["error"] if isinstance(event["error"], dict) else {}
            raise UpstreamError(502, str(err.get("message") or event["error"]), event)
        return [event]


class AzureAdapter(TranslatingAdapter):
    provider = "azure"

    def url(self, dep: Deployment) -> str:
        base = (dep.params.api_base or "").rstrip("/")
        if not base:
            raise UpstreamError(
                400, "azure: api_base (https://<resource>.openai.azure.com) is required"
            )
        version = dep.params.api_version or DEFAULT_API_VERSION
        return (
            f"{base}/openai/deployments/{dep.params.upstream_model}/chat/completions"
            f"?api-version={version}"
        )

    def headers(self, dep: Deployment) -> dict[str, str]:
        h = {"content-type": "application/json"}
        token = param(dep, "azure_ad_token")
        if token:
            h["authorization"] = f"Bearer {token}"
        elif dep.params.api_key:
            h["api-key"] = dep.params.api_key
        return h

    async def prepare(self, dep: Deployment, body: dict[str, Any], stream: bool) -> Outgoing:
        out = {**body, "model": dep.params.upstream_model}
        return Outgoing(self.url(dep), self.headers(dep), orjson.dumps(out))

    def response(
        self, data: dict[str, Any], dep: Deployment, body: dict[str, Any]
    ) -> dict[str, Any]:
        return data

    def translator(self, dep: Deployment, body: dict[str, Any]) -> PassThrough:
        return PassThrough(dep.params.upstream_model)


ADAPTER = AzureAdapter()
