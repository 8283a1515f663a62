"""`langtrace`: Langtrace over OTLP/HTTP, a preset of the OTLP sink: `x-api-key` header,
GenAI semantic-convention spans (Langtrace's own conventions follow them).

Settings: `LANGTRACE_API_KEY`, `LANGTRACE_API_HOST` (default `https://app.langtrace.ai`, traces
posted to `{host}/api/trace`); callback variables `langtrace_api_key`, `langtrace_api_host`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tollgate_exporter.destinations import Destination
from tollgate_exporter.sinks.base import SinkType
from tollgate_exporter.sinks.otel import VendorSettings, create, preset_destination

DEFAULT_HOST = "https://app.langtrace.ai"


def destination(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    v = VendorSettings(vars_, env, ("LANGTRACE_API_HOST",))
    api_key = v.secret("LANGTRACE_API_KEY")
    if not api_key:
        return "langtrace needs langtrace_api_key (LANGTRACE_API_KEY)"
    host = (v.get("LANGTRACE_API_HOST") or DEFAULT_HOST).rstrip("/")
    url = host if host.endswith("/api/trace") else f"{host}/api/trace"
    return preset_destination("langtrace", url, headers={"x-api-key": api_key}, vars_=vars_)


SINK = SinkType(kind="langtrace", names=("langtrace",), destination=destination, create=create)
