"""What the Google sinks (gcs_bucket, gcs_pubsub, bigquery) share: the service account and
the API root, read LiteLLM's way, and one gcloud-aio client per destination.

`GCS_PATH_SERVICE_ACCOUNT` (or the callback's `gcs_path_service_account`) is the service
account JSON the gcloud-aio clients sign their OAuth token requests with. An endpoint
override (`<sink>_endpoint`, e.g. a private endpoint) keeps authentication; an emulator
host (`STORAGE_EMULATOR_HOST`, `PUBSUB_EMULATOR_HOST`, `BIGQUERY_EMULATOR_HOST`) talks
plain HTTP without tokens, as Google's own clients do.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import aiohttp

from tollgate_exporter.content import standard_metadata, user_metadata
from tollgate_exporter.sinks._storage import Settings, dumps, utc
from tollgate_exporter.sinks.base import ExportItem, SinkContext
from tollgate_shared.events import LlmRequestFailed

# The row of LiteLLM's spend log (SpendLogsPayload), as its gcs_pubsub logger publishes it
# for a BigQuery subscription, plus Tollgate's key alias, team alias and event id. Mode
# NULLABLE unless said; JSON columns carry JSON text, as LiteLLM sends them.
SPEND_LOG_SCHEMA: list[dict[str, str]] = [
    {"name": "request_id", "type": "STRING", "mode": "REQUIRED"},
    {"name": "event_id", "type": "STRING"},
    {"name": "call_type", "type": "STRING"},
    {"name": "api_key", "type": "STRING"},
    {"name": "key_alias", "type": "STRING"},
    {"name": "spend", "type": "NUMERIC"},
    {"name": "total_tokens", "type": "INT64"},
    {"name": "prompt_tokens", "type": "INT64"},
    {"name": "completion_tokens", "type": "INT64"},
    {"name": "startTime", "type": "TIMESTAMP"},
    {"name": "endTime", "type": "TIMESTAMP"},
    {"name": "completionStartTime", "type": "TIMESTAMP"},
    {"name": "model", "type": "STRING"},
    {"name": "model_id", "type": "STRING"},
    {"name": "model_group", "type": "STRING"},
    {"name": "custom_llm_provider", "type": "STRING"},
    {"name": "api_base", "type": "STRING"},
    {"name": "user", "type": "STRING"},
    {"name": "metadata", "type": "JSON"},
    {"name": "cache_hit", "type": "STRING"},
    {"name": "cache_key", "type": "STRING"},
    {"name": "request_tags", "type": "JSON"},
    {"name": "team_id", "type": "STRING"},
    {"name": "team_alias", "type": "STRING"},
    {"name": "end_user", "type": "STRING"},
    {"name": "requester_ip_address", "type": "STRING"},
    {"name": "session_id", "type": "STRING"},
    {"name": "status", "type": "STRING"},
    {"name": "messages", "type": "JSON"},
    {"name": "response", "type": "JSON"},
    {"name": "proxy_server_request", "type": "JSON"},
    {"name": "content_redacted", "type": "BOOL"},
]


def spend_log_row(item: ExportItem) -> dict[str, Any]:
    """One call as LiteLLM's spend log row (`SPEND_LOG_SCHEMA`); content only when allowed."""
    e = item.event
    failed = isinstance(e, LlmRequestFailed)
    meta = {**user_metadata(e), **standard_metadata(e)}
    if isinstance(e, LlmRequestFailed):
        meta["error_information"] = {
            "error_class": e.error_class,
            "error_message": e.error_message,
            "error_code": str(e.status_code),
        }
    return {
        "request_id": e.request_id,
        "event_id": e.event_id,
        "call_type": e.call_type,
        "api_key": e.api_key_hash or "",
        "key_alias": e.key_alias,
        "spend": str(e.spend),
        "total_tokens": e.total_tokens,
        "prompt_tokens": e.prompt_tokens,
        "completion_tokens": e.completion_tokens,
        "startTime": utc(e.start_time).isoformat(),
        "endTime": utc(e.end_time).isoformat(),
        "completionStartTime": (
            utc(e.completion_start_time).isoformat() if e.completion_start_time else None
        ),
        "model": e.requested_model,
        "model_id": e.model_id,
        "model_group": e.model_group,
        "custom_llm_provider": e.custom_llm_provider,
        "api_base": e.api_base,
        "user": e.user_id or "",
        "metadata": dumps(meta),
        "cache_hit": str(bool(e.cache_hit)),
        "cache_key": None,
        "request_tags": dumps(list(e.tags)),
        "team_id": e.team_id,
        "team_alias": e.team_alias,
        "end_user": e.end_user or "",
        "requester_ip_address": e.requester_ip,
        "session_id": e.session_id,
        "status": "failure" if failed else "success",
        "messages": dumps(e.messages) if e.messages is not None else None,
        "response": dumps(e.response) if e.response is not None else None,
        "proxy_server_request": (
            dumps(e.proxy_server_request) if e.proxy_server_request is not None else None
        ),
        "content_redacted": item.redacted,
    }


def google_settings(
    s: Settings, var_prefix: str, endpoint_env: str, emulator_env: str
) -> dict[str, Any]:
    """Service account file, API root and whether it is an emulator (no auth)."""
    emulator = s.get((f"{var_prefix}_emulator_host",), (emulator_env,))
    endpoint = s.get((f"{var_prefix}_endpoint",), (endpoint_env,))
    if emulator and not emulator.startswith(("http://", "https://")):
        emulator = f"http://{emulator}"
    return {
        "service_account": s.get(
            (f"{var_prefix}_path_service_account", "gcs_path_service_account"),
            ("GCS_PATH_SERVICE_ACCOUNT", "GOOGLE_APPLICATION_CREDENTIALS"),
        ),
        "api_root": emulator or endpoint,
        "dev": bool(emulator),
    }


def service_account_problem(name: str, google: dict[str, Any]) -> str | None:
    """Why the destination cannot authenticate (no file), or None."""
    if google["dev"]:
        return None
    path = google["service_account"]
    if not path:
        return f"{name} needs gcs_path_service_account (or GCS_PATH_SERVICE_ACCOUNT)"
    if not os.path.isfile(path):
        return f"{name}: service account file {path} does not exist"
    return None


class GoogleClients:
    """One gcloud-aio client per destination, sharing one aiohttp session."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._clients: dict[str, Any] = {}

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    def get(self, key: str, build: Callable[[aiohttp.ClientSession], Any]) -> Any:
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = build(self.session)
        return client

    async def close(self) -> None:
        self._clients.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None


class GoogleSink:
    """What the Google sinks share: their clients and the per-call timeout (whole seconds,
    as gcloud-aio takes it), from the exporter's settings."""

    def __init__(self, ctx: SinkContext) -> None:
        timeout_s = ctx.settings.export_timeout_s
        self._clients = GoogleClients(timeout_s)
        self._timeout = int(max(timeout_s, 1))

    async def close(self) -> None:
        await self._clients.close()
