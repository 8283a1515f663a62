"""`elasticsearch`: one document per call, bulk-indexed with the official async client into
a data stream (default `logs-tollgate.llm-default`) whose index template Tollgate ships and
installs (`INDEX_TEMPLATE`, priority 250 over the built-in `logs-*-*` one).

Bulk request: NDJSON pairs `{"create": {"_index": <stream>, "_id": <event id>}}` + document;
the event id as `_id` makes a redelivery a 409 conflict for that item, counted as delivered.
Items refused with 429/5xx retry the batch (accepted ones then conflict harmlessly); items
refused otherwise (a mapping error) are dead-lettered alone with Elasticsearch's reason.

The document: `@timestamp` (call start), `event.duration` (ns), and the record of
`_storage.record` — `cost` as `scaled_float` (micro-dollars exact to 1e-6), `spend` as a
keyword holding the exact decimal string, ids and aliases as keywords, `messages` and
`response` present only when content may leave (stored, not indexed: `enabled: false`).

Settings: `ELASTICSEARCH_URL`, `ELASTICSEARCH_API_KEY` or `ELASTICSEARCH_USERNAME` +
`ELASTICSEARCH_PASSWORD`, `ELASTICSEARCH_INDEX`, `ELASTICSEARCH_MANAGE_TEMPLATE` (default
true); callback variables of the same names in lower case.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tollgate_exporter.destinations import Destination, digest, safe_url
from tollgate_exporter.sinks._storage import RETRY_STATUS, Settings, record, status_error, utc
from tollgate_exporter.sinks.base import (
    BatchResult,
    ExportItem,
    RetryableError,
    SinkContext,
    SinkType,
)

if TYPE_CHECKING:
    from elasticsearch import AsyncElasticsearch

DEFAULT_INDEX = "logs-tollgate.llm-default"
TEMPLATE_NAME = "tollgate-llm"
_KEYWORDS = (
    "event_id",
    "event_type",
    "id",
    "trace_id",
    "call_type",
    "status",
    "model",
    "model_group",
    "model_id",
    "custom_llm_provider",
    "api_base",
    "key_alias",
    "key_hash",
    "team_id",
    "team_alias",
    "user_id",
    "end_user",
    "session_id",
    "request_tags",
    "spend",
    "date",
)

# The index template Tollgate ships for its data stream.
INDEX_TEMPLATE: dict[str, Any] = {
    "index_patterns": ["logs-tollgate.llm-*"],
    "data_stream": {},
    "priority": 250,
    "_meta": {"managed_by": "tollgate"},
    "template": {
        "settings": {"index": {"mapping": {"total_fields": {"limit": 2000}}}},
        "mappings": {
            "dynamic": True,
            "properties": {
                "@timestamp": {"type": "date"},
                "start_time": {"type": "date"},
                "end_time": {"type": "date"},
                "event": {"properties": {"duration": {"type": "long"}}},
                "cost": {"type": "scaled_float", "scaling_factor": 1_000_000},
                "response_cost": {"type": "double"},
                "prompt_tokens": {"type": "long"},
                "completion_tokens": {"type": "long"},
                "total_tokens": {"type": "long"},
                "response_time": {"type": "double"},
                "cache_hit": {"type": "boolean"},
                "content_redacted": {"type": "boolean"},
                **{k: {"type": "keyword"} for k in _KEYWORDS},
                "metadata": {"type": "flattened"},
                "model_parameters": {"type": "flattened"},
                "error_information": {"type": "flattened"},
                "messages": {"type": "object", "enabled": False},
                "response": {"type": "object", "enabled": False},
                "error_str": {"type": "text"},
            },
        },
    },
}


def destination(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    s = Settings(vars_, env)

    def get(n: str) -> str | None:
        return s.get((n.lower(),), (n,))

    url = get("ELASTICSEARCH_URL") or get("ELASTICSEARCH_HOST")
    if not url:
        return f"{name} needs elasticsearch_url (or ELASTICSEARCH_URL)"
    options = {
        "url": url,
        "api_key": get("ELASTICSEARCH_API_KEY"),
        "username": get("ELASTICSEARCH_USERNAME"),
        "password": get("ELASTICSEARCH_PASSWORD"),
        "index": get("ELASTICSEARCH_INDEX") or DEFAULT_INDEX,
        "manage_template": (get("ELASTICSEARCH_MANAGE_TEMPLATE") or "true").lower()
        not in ("false", "0", "no"),
    }
    return Destination(
        "elasticsearch",
        f"elasticsearch:{digest(options)}",
        f"elasticsearch {safe_url(url)} {options['index']}",
        options,
    )


def document(item: ExportItem) -> dict[str, Any]:
    e = item.event
    doc = record(item)
    doc["@timestamp"] = utc(e.start_time).isoformat()
    doc["cost"] = float(e.spend)
    doc["event"] = {"duration": int((e.end_time - e.start_time).total_seconds() * 1e9)}
    for unused in ("startTime", "endTime", "completionStartTime"):
        doc.pop(unused, None)
    return doc


def operations(index: str, items: Sequence[ExportItem]) -> list[dict[str, Any]]:
    ops: list[dict[str, Any]] = []
    for i in items:
        ops.append({"create": {"_index": index, "_id": i.event.event_id}})
        ops.append(document(i))
    return ops


@contextlib.asynccontextmanager
async def _mapped(what: str) -> AsyncIterator[None]:
    # The client library is imported when a destination first uses it (it takes most of a
    # second): an exporter without an Elasticsearch destination never loads it.
    from elastic_transport import ConnectionError as TransportConnectionError
    from elastic_transport import ConnectionTimeout
    from elasticsearch import ApiError

    try:
        yield
    except ApiError as exc:
        status = exc.meta.status if exc.meta else 500
        retry_after = exc.meta.headers.get("retry-after") if exc.meta else None
        raise status_error(
            what, status, str(exc.body)[:300], float(retry_after) if retry_after else None
        ) from exc
    except (TransportConnectionError, ConnectionTimeout) as exc:
        raise RetryableError(f"{what} unreachable: {exc}") from exc


class ElasticsearchSink:
    kind = "elasticsearch"

    def __init__(self, timeout_s: float) -> None:
        self._timeout = timeout_s
        self._clients: dict[str, AsyncElasticsearch] = {}
        self._ready: set[str] = set()

    def _client(self, destination: Destination) -> AsyncElasticsearch:
        found = self._clients.get(destination.key)
        if found is None:
            opts = destination.options
            auth: dict[str, Any] = {}
            if opts["api_key"]:
                auth["api_key"] = opts["api_key"]
            elif opts["username"]:
                auth["basic_auth"] = (opts["username"], opts["password"] or "")
            from elasticsearch import AsyncElasticsearch

            found = AsyncElasticsearch(
                opts["url"],
                request_timeout=self._timeout,
                max_retries=0,
                retry_on_timeout=False,
                **auth,
            )
            self._clients[destination.key] = found
        return found

    async def send(self, destination: Destination, items: Sequence[ExportItem]) -> BatchResult:
        opts = destination.options
        client = self._client(destination)
        result = BatchResult()
        async with _mapped(f"elasticsearch {destination.label}"):
            if opts["manage_template"] and destination.key not in self._ready:
                await client.indices.put_index_template(name=TEMPLATE_NAME, **INDEX_TEMPLATE)
                self._ready.add(destination.key)
            answer = await client.bulk(operations=operations(opts["index"], items))
        if not answer.get("errors"):
            return result
        retry: list[str] = []
        for n, entry in enumerate(answer["items"]):
            outcome = next(iter(entry.values()))
            status = int(outcome.get("status", 500))
            if status < 300 or status == 409:  # 409: this event is already indexed
                continue
            reason = f"elasticsearch refused ({status}): {outcome.get('error')}"
            if status in RETRY_STATUS or status >= 500:
                retry.append(reason)
            else:
                result.rejected[n] = reason
        if retry:
            raise RetryableError(f"{len(retry)} of {len(items)} bulk items failed: {retry[0]}")
        return result

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()


def create(ctx: SinkContext) -> ElasticsearchSink:
    return ElasticsearchSink(ctx.settings.export_timeout_s)


SINK = SinkType(
    kind="elasticsearch", names=("elasticsearch",), destination=destination, create=create
)
