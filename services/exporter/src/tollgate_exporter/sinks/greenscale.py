"""Greenscale sink: each successful call's usage metadata (never content) posted to Greenscale.

`POST {GREENSCALE_ENDPOINT}` with the `api-key` header, one call per request, the body
LiteLLM's logger sends: `modelId`, `inputTokenCount`, `outputTokenCount`, `timestamp`,
`invocationLatency` (ms), `project` (`metadata.greenscale_project`), `application`
(`metadata.greenscale_application`) and `tags` (`[{key, value}]`: the other
`greenscale_*` metadata keys, plus the key alias, team, cost and request id).
Greenscale is a success callback in LiteLLM; failed calls are not sent.

Credentials: `greenscale_api_key`, `greenscale_endpoint` (callback vars) else
`GREENSCALE_API_KEY`, `GREENSCALE_ENDPOINT` (both required).
"""

from __future__ import annotations

from typing import Any

from tollgate_exporter.sinks._http_api import (
    HttpApi,
    Options,
    endpoint,
    iso,
    key,
    latency_ms,
    model_of,
)
from tollgate_exporter.sinks.base import ExportItem


def http_endpoint(o: Options) -> str | None:
    if not o["url"].startswith(("http://", "https://")):
        return "greenscale: greenscale_endpoint must be an http(s) URL"
    return None


def usage(item: ExportItem) -> dict[str, Any]:
    event = item.event
    body: dict[str, Any] = {
        "modelId": model_of(event),
        "inputTokenCount": event.prompt_tokens,
        "outputTokenCount": event.completion_tokens,
        "timestamp": iso(event.end_time),
        "invocationLatency": latency_ms(event),
    }
    tags = []
    for name, value in event.metadata.items():
        if not name.startswith("greenscale"):
            continue
        if name == "greenscale_project":
            body["project"] = value
        elif name == "greenscale_application":
            body["application"] = value
        else:
            tags.append({"key": name.replace("greenscale_", ""), "value": str(value)})
    extra = {
        "key_alias": event.key_alias,
        "team_id": event.team_id,
        "cost": str(event.spend),
        "request_id": event.request_id,
    }
    tags.extend({"key": k, "value": v} for k, v in extra.items() if v)
    body["tags"] = tags
    return body


API = HttpApi(
    "greenscale",
    {
        "key": key("greenscale_api_key", "GREENSCALE_API_KEY"),
        # the whole URL, posted to as it is
        "url": endpoint("greenscale_endpoint", "GREENSCALE_ENDPOINT", base=False),
    },
    missing="greenscale needs greenscale_api_key and greenscale_endpoint (GREENSCALE_*)",
    finish=http_endpoint,
    auth=("api-key", "{key}"),
    url="url",
    payload=lambda item, _: usage(item),
    skip_failed=True,
    identity=("url", "key"),
    label=("url",),
)
SINK = API.sink
