"""`langfuse_otel`: Langfuse's OTLP endpoint (`{host}/api/public/otel/v1/traces`), a preset of
the OTLP sink: Basic auth from the project keys, GenAI attributes plus Langfuse's
`langfuse.*` ones (generation, usage and cost details, session, user, tags, level).

Settings (LiteLLM's): `LANGFUSE_PUBLIC_KEY`, `LANGFUSE_SECRET_KEY`, `LANGFUSE_OTEL_HOST`
(else `LANGFUSE_HOST`; default `https://us.cloud.langfuse.com`); callback variables
`langfuse_public_key`, `langfuse_secret_key`/`langfuse_secret`,
`langfuse_otel_host`/`langfuse_host`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from tollgate_exporter.destinations import Destination
from tollgate_exporter.sinks.base import SinkType
from tollgate_exporter.sinks.otel import VendorSettings, create, preset_destination

DEFAULT_HOST = "https://us.cloud.langfuse.com"
PATH = "/api/public/otel/v1/traces"


def destination(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    v = VendorSettings(vars_, env, ("LANGFUSE_OTEL_HOST", "LANGFUSE_HOST"))
    host = (v.get("LANGFUSE_OTEL_HOST", "LANGFUSE_HOST") or DEFAULT_HOST).rstrip("/")
    if not host.startswith(("http://", "https://")):
        host = f"https://{host}"
    public = v.secret("LANGFUSE_PUBLIC_KEY")
    secret = v.secret("LANGFUSE_SECRET_KEY", "LANGFUSE_SECRET")
    if not public or not secret:
        return "langfuse_otel needs langfuse_public_key and langfuse_secret_key"
    token = base64.b64encode(f"{public}:{secret}".encode()).decode()
    return preset_destination(
        "langfuse_otel",
        host.removesuffix("/api/public/otel") + PATH,
        headers={"authorization": f"Basic {token}", "x-langfuse-ingestion-version": "4"},
        vars_=vars_,
        conventions=("langfuse",),
        label=public,
    )


SINK = SinkType(
    kind="langfuse_otel", names=("langfuse_otel",), destination=destination, create=create
)
