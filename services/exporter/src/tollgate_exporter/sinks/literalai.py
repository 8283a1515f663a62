"""Literal AI sink: each call is an `llm` step, a batch is one GraphQL `ingestStep` mutation.

`POST {LITERAL_API_URL}/api/graphql` (default `https://cloud.getliteral.ai`) with the
`x-api-key` header and `x-client-name`, the query LiteLLM's logger sends: one aliased
`stepN: ingestStep(id: $id_N, ...)` per call with the step's fields as `$<field>_N`
variables: `id` (`metadata.step_id`, else derived from the event id), `threadId`
(`metadata.literalai_thread_id`), `parentId`, `rootRunId`, `type: "llm"`, `name`
(model), `startTime`, `endTime`, `error`, `tags`, `metadata`, and `generation`
(`provider`, `model`, `inputTokenCount`, `outputTokenCount`, `tokenCount`, `duration`,
`settings`, `messages`, `messageCompletion`, `tools`).

Credentials: `literalai_api_key`, `literalai_api_url` (callback vars) else
`LITERAL_API_KEY`, `LITERAL_API_URL`.
"""

from __future__ import annotations

from typing import Any

import httpx

from tollgate_exporter.sinks._http_api import (
    HttpApi,
    completion,
    endpoint,
    error_text,
    iso,
    key,
    metadata,
    model_of,
    prompt,
)
from tollgate_exporter.sinks.base import ExportItem, stable_id

DEFAULT_URL = "https://cloud.getliteral.ai"
MAX_STEPS = 50
# (variable, GraphQL type) of `ingestStep`'s arguments, in LiteLLM's order.
_ARGS = (
    ("id", "String!"),
    ("threadId", "String"),
    ("rootRunId", "String"),
    ("type", "StepType"),
    ("startTime", "DateTime"),
    ("endTime", "DateTime"),
    ("error", "String"),
    ("input", "Json"),
    ("output", "Json"),
    ("metadata", "Json"),
    ("parentId", "String"),
    ("name", "String"),
    ("tags", "[String!]"),
    ("generation", "GenerationPayloadInput"),
)


def step(item: ExportItem) -> dict[str, Any]:
    event = item.event
    meta = event.metadata
    params = dict(event.model_parameters)
    tools = params.pop("tools", None)
    return {
        "id": str(meta.get("step_id") or stable_id(event.event_id, "literalai-step")),
        "threadId": meta.get("literalai_thread_id"),
        "parentId": meta.get("literalai_parent_id"),
        "rootRunId": meta.get("literalai_root_run_id"),
        "type": "llm",
        "name": model_of(event),
        "startTime": iso(event.start_time),
        "endTime": iso(event.end_time),
        "error": error_text(event),
        "tags": list(event.tags) or meta.get("literalai_tags"),
        "metadata": metadata(item),
        "generation": {
            "type": "CHAT",
            "provider": event.custom_llm_provider or "litellm",
            "model": model_of(event),
            "inputTokenCount": event.prompt_tokens,
            "outputTokenCount": event.completion_tokens,
            "tokenCount": event.total_tokens,
            "duration": (event.end_time - event.start_time).total_seconds(),
            "settings": params,
            "messages": prompt(item),
            "messageCompletion": completion(item),
            "tools": tools,
        },
    }


def mutation(count: int) -> str:
    """The `AddStep` mutation for `count` steps (LiteLLM's query, aliased per step)."""
    decls = " ".join(f"${a}_{n}: {t}" for n in range(count) for a, t in _ARGS)
    calls = " ".join(
        f"step{n}: ingestStep({', '.join(f'{a}: ${a}_{n}' for a, _ in _ARGS)}) {{ ok message }}"
        for n in range(count)
    )
    return f"mutation AddStep({decls}) {{ {calls} }}"


def graphql_errors(response: httpx.Response) -> str | None:
    """GraphQL answers 200 with `errors` (or a step with `ok: false`) when it refused."""
    try:
        doc = response.json()
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    if doc.get("errors"):
        return str(doc["errors"])[:300]
    data = doc.get("data") or {}
    bad = [v.get("message") for v in data.values() if isinstance(v, dict) and v.get("ok") is False]
    return str(bad)[:300] if bad else None


def request_body(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """One `AddStep` mutation for the steps, each step's fields as its `$<field>_N`."""
    variables: dict[str, Any] = {}
    for n, fields in enumerate(steps):
        variables.update({f"{k}_{n}": v for k, v in fields.items() if v is not None})
    return {"query": mutation(len(steps)), "variables": variables}


API = HttpApi(
    "literalai",
    {
        "key": key("literalai_api_key", "LITERAL_API_KEY"),
        "base": endpoint("literalai_api_url", "LITERAL_API_URL", default=DEFAULT_URL),
    },
    names=("literalai", "literal_ai"),
    auth=("x-api-key", "{key}"),
    headers_extra={"x-client-name": "tollgate"},
    path="/api/graphql",
    payload=lambda item, _: step(item),
    batch=MAX_STEPS,
    envelope=request_body,
    check=graphql_errors,
)
SINK = API.sink
