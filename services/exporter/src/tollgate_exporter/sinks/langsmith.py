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

from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import Any

from tollgate_exporter.destinations import Destination, digest, safe_url
from tollgate_exporter.sinks._http_api import (
    Credentials,
    Part,
    Post,
    RenderContext,
    base_url,
    completion,
    create_with,
    error_text,
    failed,
    first,
    metadata,
    model_of,
    prompt,
    response_body,
)
from tollgate_exporter.sinks.base import ExportItem, SinkType, stable_id

DEFAULT_BASE = "https://api.smith.langchain.com"
DEFAULT_PROJECT = "litellm-completion"
MAX_RUNS = 100


def destination(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    c = Credentials(
        vars_,
        env,
        (
            "langsmith_api_key",
            "langsmith_base_url",
        ),
    )
    key = c.secret("langsmith_api_key", "LANGSMITH_API_KEY")
    if not key:
        return "langsmith needs langsmith_api_key (or LANGSMITH_API_KEY)"
    base = base_url(c.get("langsmith_base_url", "LANGSMITH_BASE_URL") or DEFAULT_BASE)
    project = c.get("langsmith_project", "LANGSMITH_PROJECT") or DEFAULT_PROJECT
    run_name = env.get("LANGSMITH_DEFAULT_RUN_NAME") or "LLMRun"
    return Destination(
        "langsmith",
        f"langsmith:{digest(base, key, project)}",
        f"langsmith {safe_url(base)} {project}",
        {"base": base, "api_key": key, "project": project, "run_name": run_name},
    )


def run(item: ExportItem, project: str, run_name: str) -> dict[str, Any]:
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
        "name": first(meta.get("run_name"), run_name),
        "run_type": "llm",
        "session_name": first(meta.get("project_name"), project),
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


async def render(ctx: RenderContext, dest: Destination, items: Sequence[ExportItem]) -> list[Part]:
    o = dest.options
    out: list[Part] = []
    for lo in range(0, len(items), MAX_RUNS):
        chunk = range(lo, min(lo + MAX_RUNS, len(items)))
        out.append(
            Post(
                f"{o['base']}/runs/batch",
                {"post": [run(items[i], o["project"], o["run_name"]) for i in chunk]},
                tuple(chunk),
                {"x-api-key": o["api_key"]},
                what="langsmith",
            )
        )
    return out


SINK = SinkType(
    kind="langsmith",
    names=("langsmith",),
    destination=destination,
    create=create_with("langsmith", render),
)
