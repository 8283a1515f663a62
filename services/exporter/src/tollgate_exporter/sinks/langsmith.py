"""LangSmith sink: each call becomes one `llm` run, posted in batches to the runs batch API.

`POST {LANGSMITH_BASE_URL}/runs/batch` with `x-api-key` and `{"post": [run, ...]}`;
a run carries `id`, `trace_id` and `dotted_order` (a root run: its own id), `name`
(`metadata.run_name`, else `LANGSMITH_DEFAULT_RUN_NAME`, else `LLMRun`), `run_type:
"llm"`, `session_name` (the project: `metadata.project_name`, the callback's
`langsmith_project`, `LANGSMITH_PROJECT`, else `litellm-completion`), `inputs`
(messages, model, parameters), `outputs` (the response, with `usage_metadata`:
tokens and cost), `start_time`/`end_time`, `error` on failure, `tags`, and
`extra.metadata` (LiteLLM's metadata, `ls_provider`, `ls_model_name`). Run ids derive
from the event id, so a redelivery updates the same run.

Credentials: `langsmith_api_key`, `langsmith_project`, `langsmith_base_url` (callback
vars) else `LANGSMITH_API_KEY`, `LANGSMITH_PROJECT`, `LANGSMITH_BASE_URL`.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from tollgate_exporter.sinks._http_api import (
    HttpApi,
    Options,
    completion,
    endpoint,
    error_text,
    failed,
    first,
    key,
    metadata,
    model_of,
    option,
    prompt,
    response_body,
)
from tollgate_exporter.sinks.base import ExportItem, stable_id

DEFAULT_BASE = "https://api.smith.langchain.com"
DEFAULT_PROJECT = "litellm-completion"
MAX_RUNS = 100


def run(item: ExportItem, o: Options) -> dict[str, Any]:
    event = item.event
    meta = metadata(item)
    run_id = stable_id(event.event_id, "langsmith-run")
    start = event.start_time
    dotted = f"{start.astimezone(UTC).strftime('%Y%m%dT%H%M%S%fZ')}{run_id}"
    body = response_body(item)
    outputs: dict[str, Any] = dict(body) if isinstance(body, dict) else {}
    if item.redacted and outputs.get("choices"):
        outputs["choices"] = [
            {**c, "message": completion(item)} for c in outputs["choices"] if isinstance(c, dict)
        ]
    outputs["usage_metadata"] = {
        "input_tokens": event.prompt_tokens,
        "output_tokens": event.completion_tokens,
        "total_tokens": event.total_tokens,
        "total_cost": float(event.spend),
        "input_token_details": {"cache_read": event.cached_tokens},
        "output_token_details": {"reasoning": event.reasoning_tokens},
    }
    return {
        "id": run_id,
        "trace_id": run_id,
        "dotted_order": dotted,
        "name": first(meta.get("run_name"), o["run_name"]),
        "run_type": "llm",
        "session_name": first(meta.get("project_name"), o["project"]),
        # microseconds, as in `dotted_order` (LangSmith checks that they agree)
        "start_time": event.start_time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "end_time": event.end_time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "inputs": {
            "messages": prompt(item),
            "model": event.requested_model,
            **{k: v for k, v in event.model_parameters.items() if isinstance(v, int | float | str)},
        },
        "outputs": None if failed(item) else outputs,
        "error": error_text(event),
        "tags": list(event.tags),
        "extra": {
            "metadata": {
                **meta,
                "ls_provider": event.custom_llm_provider,
                "ls_model_name": model_of(event),
                "key_alias": event.key_alias,
                "team_id": event.team_id,
            },
            "invocation_params": {"model": model_of(event)},
        },
    }


API = HttpApi(
    "langsmith",
    {
        "key": key("langsmith_api_key", "LANGSMITH_API_KEY"),
        "base": endpoint("langsmith_base_url", "LANGSMITH_BASE_URL", default=DEFAULT_BASE),
        "project": option("langsmith_project", "LANGSMITH_PROJECT", default=DEFAULT_PROJECT),
        "run_name": option(None, "LANGSMITH_DEFAULT_RUN_NAME", default="LLMRun"),
    },
    auth=("x-api-key", "{key}"),
    path="/runs/batch",
    payload=run,
    batch=MAX_RUNS,
    envelope=lambda runs: {"post": runs},
    identity=("base", "key", "project"),
    label=("base", "project"),
)
SINK = API.sink
