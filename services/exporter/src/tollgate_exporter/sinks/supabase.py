"""`supabase`: one row per call in a Supabase table, through its REST API (PostgREST):
`POST {SUPABASE_URL}/rest/v1/{table}` with the rows as a JSON array, `apikey` and
`Authorization: Bearer` the service key, `Prefer: return=minimal,resolution=ignore-duplicates`
(a redelivered call hits the `request_id` primary key and is ignored, not doubled).

Columns are LiteLLM's spend log row (`_google.SPEND_LOG_SCHEMA`; JSON columns as `jsonb`),
so the table LiteLLM's Supabase logger documents works with the added Tollgate columns
(`docs/sinks-storage.md` has the DDL). Settings: `SUPABASE_URL`, `SUPABASE_KEY`,
`supabase_table_name` / `SUPABASE_TABLE_NAME` (default `request_logs`), or callback
variables of those names in lower case.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from tollgate_exporter.destinations import Destination, digest, safe_url
from tollgate_exporter.sinks._google import spend_log_row
from tollgate_exporter.sinks._storage import Settings
from tollgate_exporter.sinks.base import BatchResult, ExportItem, SinkContext, SinkType, post

DEFAULT_TABLE = "request_logs"
_JSON_COLUMNS = ("metadata", "request_tags", "messages", "response", "proxy_server_request")


def destination(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    s = Settings(vars_, env)
    url = s.get(("supabase_url",), ("SUPABASE_URL",))
    key = s.get(("supabase_key",), ("SUPABASE_KEY",))
    if not url or not key:
        return f"{name} needs supabase_url and supabase_key (SUPABASE_URL, SUPABASE_KEY)"
    table = s.get(("supabase_table_name",), ("SUPABASE_TABLE_NAME",)) or DEFAULT_TABLE
    options = {"url": f"{url.rstrip('/')}/rest/v1/{table}", "key": key}
    return Destination(
        "supabase", f"supabase:{digest(options)}", f"supabase {safe_url(options['url'])}", options
    )


def row(item: ExportItem) -> dict[str, Any]:
    """The spend log row with JSON columns as JSON values (PostgREST writes them to jsonb)."""
    out = spend_log_row(item)
    for column in _JSON_COLUMNS:
        if out[column] is not None:
            out[column] = json.loads(out[column])
    return out


class SupabaseSink:
    kind = "supabase"

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def send(self, destination: Destination, items: Sequence[ExportItem]) -> BatchResult:
        opts = destination.options
        headers = {
            "apikey": opts["key"],
            "Authorization": f"Bearer {opts['key']}",
            "Content-Type": "application/json",
            "Prefer": "return=minimal,resolution=ignore-duplicates",
        }
        body = json.dumps([row(i) for i in items])
        await post(self._client, opts["url"], "supabase", content=body, headers=headers)
        return BatchResult()

    async def close(self) -> None:
        """Nothing of its own to release (the HTTP client is shared)."""


def create(ctx: SinkContext) -> SupabaseSink:
    return SupabaseSink(ctx.client)


SINK = SinkType(kind="supabase", names=("supabase",), destination=destination, create=create)
