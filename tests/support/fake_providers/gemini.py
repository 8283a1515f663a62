"""A fake Gemini API (AI Studio, `x-goog-api-key`) and Vertex AI (bearer token from its own
OAuth token endpoint, which verifies the service account's signed JWT): checks the path and
the GenerateContentRequest's shape; answers plain or as `alt=sse` events; errors as Google's."""

from __future__ import annotations

import json
import secrets
import urllib.parse
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import jwt
from litestar import Request, Response, post
from litestar.response import Stream

from support.fake_providers import GEMINI_KEY, words

if TYPE_CHECKING:
    from support.fake_providers import FakeProviders

GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
STATUSES = {429: "RESOURCE_EXHAUSTED", 400: "INVALID_ARGUMENT", 503: "UNAVAILABLE"}
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_PEM = _KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)


def service_account(token_uri: str) -> dict[str, Any]:
    """A service-account key file whose token_uri is the fake's token endpoint."""
    pem = _KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {
        "type": "service_account",
        "project_id": "fake-project",
        "private_key_id": "fake-key-id",
        "private_key": pem,
        "client_email": "tollgate@fake-project.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }


def _error(status: int, message: str) -> Response[Any]:
    return Response(
        {"error": {"code": status, "message": message, "status": STATUSES.get(status, "INTERNAL")}},
        status_code=status,
    )


def check(fp: FakeProviders, body: Any) -> str | None:
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return fp.problem("gemini: contents must be a non-empty list")
    for c in contents:
        if c.get("role") not in ("user", "model") or not isinstance(c.get("parts"), list):
            return fp.problem("gemini: a content has a bad role or parts")
    if "messages" in body or "model" in body:
        return fp.problem("gemini: OpenAI fields in a GenerateContentRequest")
    return None


def answer(fp: FakeProviders, body: Any, model: str) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"text": fp.reply}]
    finish = "STOP"
    config = body.get("generationConfig") or {}
    if config.get("responseMimeType") == "application/json":
        parts = [{"text": json.dumps({"answer": fp.reply})}]
    elif fp.tool_call and body.get("tools"):
        name, args = fp.tool_call
        parts = [{"functionCall": {"name": name, "args": args}}]
    prompt = words(body.get("contents")) + words(body.get("systemInstruction"))
    return {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish}],
        "usageMetadata": {
            "promptTokenCount": prompt,
            "candidatesTokenCount": len(fp.reply.split()),
            "thoughtsTokenCount": 3,
            "totalTokenCount": prompt + len(fp.reply.split()) + 3,
        },
        "modelVersion": model,
        "responseId": "gem-fake",
    }


async def sse(data: dict[str, Any]) -> AsyncIterator[bytes]:
    cand = data["candidates"][0]
    parts = cand["content"]["parts"]
    # Text in two events, the last with the finish reason and the usage.
    if "text" in parts[0] and " " in parts[0]["text"]:
        head, tail = parts[0]["text"].split(" ", 1)
        first = {
            "candidates": [{"content": {"role": "model", "parts": [{"text": head + " "}]}}],
            "responseId": data["responseId"],
        }
        yield b"data: " + json.dumps(first).encode() + b"\r\n\r\n"
        parts = [{"text": tail}]
    last = {**data, "candidates": [{**cand, "content": {"role": "model", "parts": parts}}]}
    yield b"data: " + json.dumps(last).encode() + b"\r\n\r\n"


def _model_and_method(rest: str) -> tuple[str, str]:
    model, _, method = rest.rpartition(":")
    return model, method


def routes(fp: FakeProviders) -> list[Any]:
    async def serve(
        provider: str, request: Request[Any, Any, Any], rest: str
    ) -> Response[Any] | Stream:
        body = await request.json()
        headers = dict(request.headers)
        fp.requests.append((provider, request.url.path, headers, body))
        if provider == "gemini" and headers.get("x-goog-api-key") != GEMINI_KEY:
            return _error(401, fp.problem("gemini: x-goog-api-key missing or wrong"))
        if provider == "vertex":
            token = headers.get("authorization", "").removeprefix("Bearer ")
            if token not in fp.vertex_tokens:
                return _error(
                    401, fp.problem("vertex: bearer token not issued by the token endpoint")
                )
        model, method = _model_and_method(rest)
        if method not in ("generateContent", "streamGenerateContent"):
            return _error(404, fp.problem(f"{provider}: unknown method {method}"))
        if method == "streamGenerateContent" and request.query_params.get("alt") != "sse":
            return _error(400, fp.problem(f"{provider}: stream without alt=sse"))
        wrong = check(fp, body)
        if wrong:
            return _error(400, wrong)
        if provider in fp.fail:
            return _error(fp.fail[provider], "Resource has been exhausted (e.g. check quota).")
        data = answer(fp, body, model)
        if method == "streamGenerateContent":
            return Stream(sse(data), media_type="text/event-stream")
        return Response(data)

    @post("/gemini/v1beta/models/{rest:str}", status_code=200)
    async def gemini(request: Request[Any, Any, Any]) -> Response[Any] | Stream:
        return await serve("gemini", request, request.path_params["rest"])

    @post(
        "/vertex/v1/projects/{project:str}/locations/{location:str}/publishers/google/models/{rest:str}",
        status_code=200,
    )
    async def vertex(request: Request[Any, Any, Any]) -> Response[Any] | Stream:
        project = request.path_params["project"]
        location = request.path_params["location"]
        rest = request.path_params["rest"]
        if project != "fake-project" or location != "europe-west4":
            return _error(
                404, fp.problem(f"vertex: unexpected project/location {project}/{location}")
            )
        return await serve("vertex", request, rest)

    @post("/vertex/token", status_code=200)
    async def token(request: Request[Any, Any, Any]) -> Response[Any]:
        form = urllib.parse.parse_qs((await request.body()).decode())
        assertion = (form.get("assertion") or [""])[0]
        try:
            # google-auth addresses the assertion to Google's token endpoint, whatever token_uri is.
            claims = jwt.decode(assertion, certs=PUBLIC_PEM, audience=GOOGLE_TOKEN_AUDIENCE)
        except ValueError as exc:
            return Response(
                {"error": "invalid_grant", "error_description": fp.problem(f"vertex token: {exc}")},
                status_code=400,
            )
        if "cloud-platform" not in str(claims.get("scope")):
            return Response({"error": "invalid_scope"}, status_code=400)
        issued = secrets.token_hex(8)
        fp.vertex_tokens.add(issued)
        return Response({"access_token": issued, "expires_in": 3600, "token_type": "Bearer"})

    return [gemini, vertex, token]
