"""Legacy text completions over chat completions: a prompt into a chat request, a chat
answer or stream back into `text_completion` objects."""

from __future__ import annotations

from typing import Any

from tollgate_ingress.parsing import BadRequestError, load_object
from tollgate_shared.config import LitellmParams

# Providers LiteLLM calls on their own /v1/completions (`text-completion-openai/...`).
NATIVE_PROVIDERS = frozenset({"text-completion-openai", "text-completion-codestral"})
# Chat request fields with the same meaning in a text completion request.
_SHARED_FIELDS = (
    "max_tokens",
    "temperature",
    "top_p",
    "n",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "user",
    "logit_bias",
    "stream",
    "stream_options",
    # LiteLLM's own fields, read by the gateway.
    "metadata",
    "litellm_session_id",
    "tags",
    "mock_response",
    "litellm_metadata",
    "litellm_trace_id",
)


def is_native(params: LitellmParams, model_info: dict[str, Any]) -> bool:
    """Whether a deployment serves /v1/completions itself (and answers for real): a
    text-completion provider, or a model whose model_info says mode `completion`."""
    if params.mock_response is not None:
        return False
    return params.provider in NATIVE_PROVIDERS or model_info.get("mode") == "completion"


def load_body(raw: bytes) -> dict[str, Any]:
    """A text completion request, checked for what the gateway relies on."""
    body = load_object(raw)
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise BadRequestError("model is required and must be a string", "model")
    prompt = body.get("prompt")
    if not _is_prompt(prompt):
        raise BadRequestError(
            "prompt must be a string, a list of strings, or a list of token ids", "prompt"
        )
    return body


def _is_prompt(prompt: Any) -> bool:
    if isinstance(prompt, str):
        return True
    if not isinstance(prompt, list) or not prompt:
        return False
    if all(isinstance(p, str) for p in prompt) or all(isinstance(p, int) for p in prompt):
        return True
    return all(isinstance(p, list) and all(isinstance(t, int) for t in p) for p in prompt)


def prompt_text(body: dict[str, Any]) -> str | None:
    """The one text prompt a chat call can answer (None: token ids or several prompts,
    which only a native deployment serves)."""
    prompt = body["prompt"]
    if isinstance(prompt, str):
        return prompt
    if len(prompt) == 1 and isinstance(prompt[0], str):
        return str(prompt[0])
    return None


def chat_body(body: dict[str, Any]) -> dict[str, Any]:
    """The chat request that answers a text completion (its prompt as one user message);
    for a prompt chat cannot carry, the refusal names `prompt`."""
    text = prompt_text(body)
    if text is None:
        raise BadRequestError(
            "prompt: token ids or several prompts are served only by a deployment with a "
            "native completions endpoint (text-completion-openai/...)",
            "prompt",
        )
    out: dict[str, Any] = {"model": body["model"], "messages": [{"role": "user", "content": text}]}
    out.update({k: body[k] for k in _SHARED_FIELDS if k in body})
    return out


def _text(choice: dict[str, Any], key: str) -> str:
    part = choice.get(key) or {}
    content = part.get("content") if isinstance(part, dict) else None
    return content if isinstance(content, str) else ""


def completion_from_chat(chat: dict[str, Any], echo: str | None = None) -> dict[str, Any]:
    """A chat completion as a `text_completion` (the prompt first when `echo` was asked)."""
    choices = [
        {
            "text": (echo or "") + _text(c, "message"),
            "index": c.get("index", i),
            "logprobs": None,
            "finish_reason": c.get("finish_reason"),
        }
        for i, c in enumerate(chat.get("choices") or ())
        if isinstance(c, dict)
    ]
    out = {
        "id": _cmpl_id(chat.get("id")),
        "object": "text_completion",
        "created": chat.get("created"),
        "model": chat.get("model"),
        "choices": choices,
    }
    if chat.get("usage") is not None:
        out["usage"] = chat["usage"]
    if chat.get("system_fingerprint"):
        out["system_fingerprint"] = chat["system_fingerprint"]
    return out


def chunk_from_chat(chunk: dict[str, Any]) -> dict[str, Any]:
    """One chat stream chunk as a text completion stream chunk."""
    out = completion_from_chat({**chunk, "usage": None})
    out["choices"] = [
        {**c, "text": _text(orig, "delta")}
        for c, orig in zip(out["choices"], chunk.get("choices") or (), strict=False)
    ]
    if chunk.get("usage"):
        out["usage"] = chunk["usage"]
    return out


def _cmpl_id(chat_id: Any) -> str:
    text = str(chat_id or "")
    return "cmpl-" + text.removeprefix("chatcmpl-") if text else "cmpl-tollgate"
