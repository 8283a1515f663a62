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

from collections.abc import Mapping, Sequence
from typing import Any

from tollgate_exporter.destinations import Destination, digest, safe_url
from tollgate_exporter.sinks._http_api import (
    Credentials,
    Part,
    Post,
    RenderContext,
    Skip,
    create_with,
    failed,
    iso,
    latency_ms,
    model_of,
)
from tollgate_exporter.sinks.base import ExportItem, SinkType


def destination(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    c = Credentials(
        vars_,
        env,
        (
            "greenscale_api_key",
            "greenscale_endpoint",
        ),
    )
    key = c.secret("greenscale_api_key", "GREENSCALE_API_KEY")
    url = c.get("greenscale_endpoint", "GREENSCALE_ENDPOINT")
    if not key or not url:
        return "greenscale needs greenscale_api_key and greenscale_endpoint (GREENSCALE_*)"
    if not url.startswith(("http://", "https://")):
        return "greenscale: greenscale_endpoint must be an http(s) URL"
    return Destination(
        "greenscale",
        f"greenscale:{digest(url, key)}",
        f"greenscale {safe_url(url)}",
        {"url": url, "key": key},
    )


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
    for key, value in event.metadata.items():
        if not key.startswith("greenscale"):
            continue
        if key == "greenscale_project":
            body["project"] = value
        elif key == "greenscale_application":
            body["application"] = value
        else:
            tags.append({"key": key.replace("greenscale_", ""), "value": str(value)})
    extra = {
        "key_alias": event.key_alias,
        "team_id": event.team_id,
        "cost": str(event.spend),
        "request_id": event.request_id,
    }
    tags.extend({"key": k, "value": v} for k, v in extra.items() if v)
    body["tags"] = tags
    return body


async def render(ctx: RenderContext, dest: Destination, items: Sequence[ExportItem]) -> list[Part]:
    o = dest.options
    return [
        Skip(i)
        if failed(item)
        else Post(o["url"], usage(item), (i,), {"api-key": o["key"]}, what="greenscale")
        for i, item in enumerate(items)
    ]


SINK = SinkType(
    kind="greenscale",
    names=("greenscale",),
    destination=destination,
    create=create_with("greenscale", render),
)
