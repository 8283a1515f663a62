"""Generic webhook sink: batched JSON of Tollgate's own event documents, optionally signed.

POST <url> with `content-type: application/json` and this body:

    {"type": "tollgate.llm_events", "version": 1, "sent_at": "<RFC 3339>",
     "destination": "<callback name>",
     "events": [ {<the LlmRequestCompleted / LlmRequestFailed JSON, as on the stream>,
                  "event_type": "llm.request.completed.v1" | "llm.request.failed.v1",
                  "content_redacted": true | false}, ... ]}

When a secret is configured, `X-Tollgate-Signature: sha256=<hex>` is the
HMAC-SHA256 of the raw body with that secret, and `X-Tollgate-Timestamp` the
send time (also inside the body as `sent_at`). A batch may be delivered again
after a failure; receivers de-duplicate on each event's `event_id`.

Callback names: `webhook` (`WEBHOOK_URL`/`WEBHOOK_SECRET`/`WEBHOOK_HEADERS`),
`generic_api`/`generic` (`GENERIC_LOGGER_ENDPOINT`/`GENERIC_LOGGER_HEADERS`), and any
other name whose variables or `callback_settings.<name>` carry a `webhook_url`
(a named webhook).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pydantic_core

from tollgate_exporter.destinations import Destination, digest, parse_headers, pick, safe_url
from tollgate_exporter.sinks.base import BatchResult, ExportItem, SinkContext, SinkType, post

SIGNATURE_HEADER = "X-Tollgate-Signature"
TIMESTAMP_HEADER = "X-Tollgate-Timestamp"
PAYLOAD_TYPE = "tollgate.llm_events"


_GENERIC_NAMES = ("generic_api", "generic")


def destination(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    """An http(s) endpoint, with an optional signing secret and extra headers."""
    generic = name in _GENERIC_NAMES
    url = pick(vars_, "webhook_url", "url") or (
        env.get("GENERIC_LOGGER_ENDPOINT") if generic else env.get("WEBHOOK_URL")
    )
    if not url:
        return f"{name} needs a webhook_url (or WEBHOOK_URL in the environment)"
    if not url.startswith(("http://", "https://")):
        return f"{name}: webhook_url must be an http(s) URL"
    secret = pick(vars_, "webhook_secret", "secret") or env.get("WEBHOOK_SECRET")
    headers = parse_headers(
        vars_.get("webhook_headers")
        or (env.get("GENERIC_LOGGER_HEADERS") if generic else env.get("WEBHOOK_HEADERS"))
    )
    return Destination(
        "webhook",
        f"webhook:{digest(name, url, secret, headers)}",
        f"webhook {name} {safe_url(url)}",
        {"name": name, "url": url, "secret": secret, "headers": headers},
    )


def claims(vars_: Mapping[str, Any], named: Mapping[str, Any]) -> bool:
    """A callback of any name is a named webhook when it is given a URL."""
    return "webhook_url" in vars_ or "url" in named


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def document_json(item: ExportItem) -> orjson.Fragment:
    """One event's document: its JSON as pydantic writes it (as on the stream, content
    redacted or not), with `event_type` and `content_redacted` appended. Serialised once,
    not turned into a dict only to be written out again."""
    raw = pydantic_core.to_json(item.event)
    tail = b',"event_type":%b,"content_redacted":%b}' % (
        orjson.dumps(item.event.event_type),
        b"true" if item.redacted else b"false",
    )
    return orjson.Fragment(raw[:-1] + tail)


def render(name: str, items: Sequence[ExportItem], now: datetime) -> bytes:
    payload = {
        "type": PAYLOAD_TYPE,
        "version": 1,
        "sent_at": now.isoformat(),
        "destination": name,
        "events": [document_json(i) for i in items],
    }
    return orjson.dumps(payload)


class WebhookSink:
    kind = "webhook"

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def send(self, destination: Destination, items: Sequence[ExportItem]) -> BatchResult:
        opts = destination.options
        now = datetime.now(UTC)
        body = render(opts["name"], items, now)
        headers = {
            **opts["headers"],
            "content-type": "application/json",
            TIMESTAMP_HEADER: now.isoformat(),
        }
        if opts.get("secret"):
            headers[SIGNATURE_HEADER] = sign(opts["secret"], body)
        await post(
            self._client, opts["url"], f"webhook {opts['name']}", content=body, headers=headers
        )
        return BatchResult()

    async def close(self) -> None:
        """Nothing of its own to release (the HTTP client is shared)."""


def create(ctx: SinkContext) -> WebhookSink:
    return WebhookSink(ctx.client)


SINK = SinkType(
    kind="webhook",
    names=("webhook", *_GENERIC_NAMES),
    destination=destination,
    create=create,
    claims=claims,
)
