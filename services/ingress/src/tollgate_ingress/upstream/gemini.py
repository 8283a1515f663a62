"""Google AI Studio's Gemini API (`gemini/<model>`): chat completions to `generateContent`
and back, `streamGenerateContent?alt=sse` to chunks, thinking and cached-content usage."""

from __future__ import annotations

from typing import Any

import orjson

from tollgate_ingress.routing import Deployment
from tollgate_ingress.upstream.openai import UpstreamError, UpstreamUnreachableError
from tollgate_ingress.upstream.translating import (
    ChunkTranslator,
    Outgoing,
    TranslatingAdapter,
    completion,
    content_parts,
    data_url,
    json_schema_of,
    not_translated,
    openai_usage,
    parse_arguments,
    stop_list,
    text_of,
)

DEFAULT_API_BASE = "https://generativelanguage.googleapis.com/v1beta"

FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "MALFORMED_FUNCTION_CALL": "stop",
}
# JSON Schema keys Gemini's `responseSchema`/`parameters` (an OpenAPI subset) refuse.
UNSUPPORTED_SCHEMA_KEYS = frozenset({"additionalProperties", "$schema", "strict", "title"})


def clean_schema(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: clean_schema(v) for k, v in schema.items() if k not in UNSUPPORTED_SCHEMA_KEYS}
    if isinstance(schema, list):
        return [clean_schema(v) for v in schema]
    return schema


def _image(url: str) -> dict[str, Any]:
    inline = data_url(url)
    if inline is not None:
        return {"inline_data": {"mime_type": inline[0], "data": inline[1]}}
    # Gemini fetches gs:// and Files API URIs itself; the MIME type is a guess from the
    # extension, JPEG when there is none.
    ext = url.rsplit(".", 1)[-1].lower() if "." in url.rsplit("/", 1)[-1] else ""
    mime = {"png": "image/png", "webp": "image/webp", "gif": "image/gif"}.get(ext, "image/jpeg")
    return {"file_data": {"mime_type": mime, "file_uri": url}}


def _parts(content: Any) -> list[dict[str, Any]]:
    return content_parts(content, "gemini", _image)


def contents_of(messages: list[Any]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(systemInstruction, contents): roles user/model, tool results as functionResponse
    parts named after the call they answer (Gemini has no call ids)."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for m in messages:
        role = m.get("role")
        if role in ("system", "developer"):
            system.extend(_parts(m.get("content")))
            continue
        parts: list[dict[str, Any]]
        if role == "assistant":
            role, parts = "model", _parts(m.get("content"))
            for tc in m.get("tool_calls") or ():
                fn = tc.get("function") or {}
                names[str(tc.get("id"))] = fn.get("name", "")
                parts.append(
                    {
                        "functionCall": {
                            "name": fn.get("name", ""),
                            "args": parse_arguments(fn.get("arguments")),
                        }
                    }
                )
        elif role == "tool":
            content = m.get("content")
            text = content if isinstance(content, str) else text_of(content)
            try:
                result = orjson.loads(text)
            except orjson.JSONDecodeError:
                result = None
            response = result if isinstance(result, dict) else {"content": text}
            name = names.get(str(m.get("tool_call_id")), m.get("name") or "")
            role, parts = "user", [{"functionResponse": {"name": name, "response": response}}]
        elif role == "user":
            parts = _parts(m.get("content"))
        else:
            raise not_translated("gemini", f"a message with role {role!r}")
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return ({"parts": system} if system else None), contents


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice == "auto":
        return {"functionCallingConfig": {"mode": "AUTO"}}
    if choice == "required":
        return {"functionCallingConfig": {"mode": "ANY"}}
    if choice == "none":
        return {"functionCallingConfig": {"mode": "NONE"}}
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name", "")
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    return None


def request_body(body: dict[str, Any]) -> dict[str, Any]:
    """A chat completions body as a GenerateContentRequest."""
    system, contents = contents_of(body.get("messages") or [])
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = system
    config: dict[str, Any] = {}
    for src, dst in (("temperature", "temperature"), ("top_p", "topP"), ("top_k", "topK")):
        if body.get(src) is not None:
            config[dst] = body[src]
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens:
        config["maxOutputTokens"] = max_tokens
    stops = stop_list(body.get("stop"))
    if stops:
        config["stopSequences"] = stops
    if body.get("n"):
        config["candidateCount"] = body["n"]
    schema = json_schema_of(body.get("response_format"))
    if schema is not None:
        config["responseMimeType"] = "application/json"
        if (body.get("response_format") or {}).get("type") == "json_schema":
            config["responseSchema"] = clean_schema(schema)
    if config:
        out["generationConfig"] = config
    tools = []
    for t in body.get("tools") or ():
        fn = t.get("function") if isinstance(t, dict) else None
        if t.get("type") != "function" or not isinstance(fn, dict):
            raise not_translated("gemini", f"a tool of type {t.get('type')!r}")
        decl: dict[str, Any] = {"name": fn.get("name", "")}
        if fn.get("description"):
            decl["description"] = fn["description"]
        if fn.get("parameters"):
            decl["parameters"] = clean_schema(fn["parameters"])
        tools.append(decl)
    if tools:
        out["tools"] = [{"functionDeclarations": tools}]
    tool_config = _tool_config(body.get("tool_choice"))
    if tool_config is not None:
        out["toolConfig"] = tool_config
    return out


def usage_of(meta: dict[str, Any]) -> dict[str, Any]:
    """usageMetadata in OpenAI's terms: thoughts are billed as output, so they count in
    completion tokens and are named as reasoning tokens."""
    prompt = int(meta.get("promptTokenCount") or 0)
    thoughts = int(meta.get("thoughtsTokenCount") or 0)
    answer = int(meta.get("candidatesTokenCount") or 0)
    cached = int(meta.get("cachedContentTokenCount") or 0)
    return openai_usage(prompt, answer + thoughts, cached=cached, reasoning=thoughts)


def _message(parts: list[dict[str, Any]], first_call: int = 0) -> tuple[str, list[Any], str]:
    """(text, tool calls, thought text) of a candidate's parts."""
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for p in parts:
        if "functionCall" in p:
            fc = p["functionCall"] or {}
            n = first_call + len(calls)
            calls.append(
                {
                    "id": fc.get("id") or f"call_{n}",
                    "type": "function",
                    "function": {
                        "name": fc.get("name", ""),
                        "arguments": orjson.dumps(fc.get("args") or {}).decode(),
                    },
                }
            )
        elif "text" in p:
            (thoughts if p.get("thought") else texts).append(p["text"])
    return "".join(texts), calls, "".join(thoughts)


def response_of(data: dict[str, Any], model: str) -> dict[str, Any]:
    candidates = data.get("candidates") or []
    if not candidates:
        block = (data.get("promptFeedback") or {}).get("blockReason")
        if block:
            raise UpstreamError(400, f"gemini blocked the prompt: {block}", data, "content_filter")
    choices: list[dict[str, Any]] = []
    for i, cand in enumerate(candidates):
        text, calls, thoughts = _message((cand.get("content") or {}).get("parts") or [])
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            message["tool_calls"] = calls
        if thoughts:
            message["reasoning_content"] = thoughts
        finish = "tool_calls" if calls else FINISH.get(str(cand.get("finishReason")), "stop")
        choices.append({"index": i, "message": message, "finish_reason": finish})
    out = completion(
        str(data.get("modelVersion") or model),
        choices[0]["message"] if choices else {"role": "assistant", "content": None},
        choices[0]["finish_reason"] if choices else "stop",
        usage_of(data.get("usageMetadata") or {}),
        f"chatcmpl-{data['responseId']}" if data.get("responseId") else None,
    )
    if len(choices) > 1:
        out["choices"] = choices
    return out


class GenerateContentTranslator(ChunkTranslator):
    """Each streamed GenerateContentResponse as a chunk; usage from the last one that has it."""

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.usage: dict[str, Any] = {}
        self.calls = 0
        self.finish: str | None = None

    def feed(self, event: Any) -> list[dict[str, Any]]:
        if not isinstance(event, dict):
            return []
        if "error" in event:
            err = event["error"] if isinstance(event["error"], dict) else {}
            status = int(err.get("code") or 502)
            raise UpstreamError(status, str(err.get("message") or event["error"]), event)
        if event.get("usageMetadata"):
            self.usage = event["usageMetadata"]
        if event.get("responseId") and not self.started:
            self.id = f"chatcmpl-{event['responseId']}"
        out: list[dict[str, Any]] = []
        for cand in (event.get("candidates") or [])[:1]:
            text, calls, thoughts = _message(
                (cand.get("content") or {}).get("parts") or [], self.calls
            )
            delta: dict[str, Any] = {}
            if text:
                delta["content"] = text
            if thoughts:
                delta["reasoning_content"] = thoughts
            if calls:
                delta["tool_calls"] = [{"index": self.calls + i, **c} for i, c in enumerate(calls)]
                self.calls += len(calls)
            if delta or not self.started:
                out.append(self.chunk(delta or {"content": ""}))
            if cand.get("finishReason"):
                reason = FINISH.get(str(cand["finishReason"]), "stop")
                self.finish = "tool_calls" if self.calls else reason
        return out

    def end(self) -> list[dict[str, Any]]:
        if self.finish is None:
            raise UpstreamUnreachableError(
                "gemini closed the stream before a finishReason", timed_out=False
            )
        return [self.chunk({}, self.finish), self.usage_chunk(usage_of(self.usage))]


class GeminiAdapter(TranslatingAdapter):
    provider = "gemini"

    def url(self, dep: Deployment, stream: bool) -> str:
        base = (dep.params.api_base or DEFAULT_API_BASE).rstrip("/")
        model = dep.params.upstream_model
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"{base}/models/{model}:{method}"

    async def auth_headers(self, dep: Deployment) -> dict[str, str]:
        return {"x-goog-api-key": dep.params.api_key} if dep.params.api_key else {}

    async def prepare(self, dep: Deployment, body: dict[str, Any], stream: bool) -> Outgoing:
        headers = {"content-type": "application/json", **await self.auth_headers(dep)}
        return Outgoing(self.url(dep, stream), headers, orjson.dumps(request_body(body)))

    def response(
        self, data: dict[str, Any], dep: Deployment, body: dict[str, Any]
    ) -> dict[str, Any]:
        return response_of(data, dep.params.upstream_model)

    def translator(self, dep: Deployment, body: dict[str, Any]) -> GenerateContentTranslator:
        return GenerateContentTranslator(dep.params.upstream_model)


ADAPTER = GeminiAdapter()
