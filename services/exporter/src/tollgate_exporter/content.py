"""What of an LLM event may leave Tollgate: content removal and LiteLLM's standard metadata."""

from __future__ import annotations

from typing import Any

from tollgate_shared.events import LlmRequestFinished

# LiteLLM's placeholder for removed content, kept so dashboards read the same.
REDACTED = "redacted-by-litellm"
# Request parameters that carry content of their own (tool schemas, prompts).
_CONTENT_PARAMS = frozenset(
    {
        "tools",
        "functions",
        "tool_choice",
        "response_format",
        "prediction",
        "prompt",
        "input",
        "messages",
        "extra_body",
        "metadata",
    }
)
# User metadata keys LiteLLM never forwards to loggers.
_DROPPED_METADATA = frozenset({"headers", "endpoint", "caching_groups", "previous_models"})


def _redact_response(response: Any) -> Any:
    """Keep a response's identity, usage and finish reasons; drop every choice's content."""
    if not isinstance(response, dict):
        return None
    kept = {k: response[k] for k in ("id", "object", "created", "model", "usage") if k in response}
    choices = response.get("choices")
    if isinstance(choices, list):
        kept["choices"] = [
            {"index": c.get("index"), "finish_reason": c.get("finish_reason")}
            for c in choices
            if isinstance(c, dict)
        ]
    return kept


def redact(event: LlmRequestFinished) -> LlmRequestFinished:
    """A copy of `event` with request and response content removed."""
    params = {
        k: v
        for k, v in event.model_parameters.items()
        if k not in _CONTENT_PARAMS and isinstance(v, str | int | float | bool | type(None))
    }
    return event.model_copy(
        update={
            "messages": None,
            "response": _redact_response(event.response),
            "proxy_server_request": None,
            "model_parameters": params,
        }
    )


def user_metadata(event: LlmRequestFinished) -> dict[str, Any]:
    """The caller's request metadata, without keys LiteLLM never forwards."""
    return {k: v for k, v in event.metadata.items() if k not in _DROPPED_METADATA}


def standard_metadata(event: LlmRequestFinished) -> dict[str, Any]:
    """LiteLLM's `user_api_key_*` metadata for a call (what langfuse_default_tags name)."""
    out: dict[str, Any] = {
        "user_api_key_hash": event.api_key_hash,
        "user_api_key_alias": event.key_alias,
        "user_api_key_team_id": event.team_id,
        "user_api_key_team_alias": event.team_alias,
        "user_api_key_user_id": event.user_id,
        "user_api_key_user_email": event.user_email,
        "user_api_key_end_user_id": event.end_user,
        "user_api_key_org_id": event.organization_id,
        "requester_ip_address": event.requester_ip,
        "model_group": event.model_group,
        "model_id": event.model_id,
        "api_base": event.api_base,
        "cache_hit": event.cache_hit,
    }
    return {k: v for k, v in out.items() if v is not None}


def output_message(event: LlmRequestFinished) -> Any:
    """The first choice's message (what LiteLLM logs as a chat call's output)."""
    response = event.response
    if not isinstance(response, dict):
        return response
    choices = response.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        first = choices[0]
        return first.get("message", first.get("text"))
    if "data" in response:  # embeddings: LiteLLM logs no output
        return None
    return response.get("output")
