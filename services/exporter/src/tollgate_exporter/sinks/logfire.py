"""`logfire`: Pydantic Logfire over OTLP/HTTP, a preset of the OTLP sink: the write token
as `Authorization`, GenAI semantic-convention spans (which Logfire renders as LLM calls).

Settings (LiteLLM's): `LOGFIRE_TOKEN`, `LOGFIRE_BASE_URL` (default
`https://logfire-api.pydantic.dev`); callback variables `logfire_token`, `logfire_base_url`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tollgate_exporter.destinations import Destination
from tollgate_exporter.sinks.base import SinkType
from tollgate_exporter.sinks.otel import VendorSettings, create, preset_destination

DEFAULT_BASE_URL = "https://logfire-api.pydantic.dev"


def destination(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    v = VendorSettings(vars_, env, ("LOGFIRE_BASE_URL",))
    token = v.secret("LOGFIRE_TOKEN")
    if not token:
        return "logfire needs logfire_token (LOGFIRE_TOKEN)"
    base = (v.get("LOGFIRE_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
    return preset_destination(
        "logfire", f"{base}/v1/traces", headers={"authorization": token}, vars_=vars_
    )


SINK = SinkType(kind="logfire", names=("logfire",), destination=destination, create=create)
