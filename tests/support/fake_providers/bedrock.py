"""A fake Bedrock runtime (Converse and ConverseStream): verifies the SigV4 signature with
botocore (same secret, the signed headers, X-Amz-Date), checks the Converse body; answers JSON
or the binary `application/vnd.amazon.eventstream` framing, encoded here as AWS documents it
(botocore only decodes); errors as Bedrock's (`x-amzn-ErrorType`, `{"message"}`)."""

from __future__ import annotations

import binascii
import json
import struct
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from litestar import Request, Response, post
from litestar.response import Stream

from support.fake_providers import AWS_KEY_ID, AWS_SECRET, words

if TYPE_CHECKING:
    from support.fake_providers import FakeProviders

REGION = "eu-central-1"
ERROR_TYPES = {
    429: "ThrottlingException",
    400: "ValidationException",
    503: "ServiceUnavailableException",
}


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (total and headers length, CRC32), string headers
    (type 7), payload, message CRC32."""
    raw_headers = b""
    for name, value in headers.items():
        n, v = name.encode(), value.encode()
        raw_headers += struct.pack("!B", len(n)) + n + b"\x07" + struct.pack("!H", len(v)) + v
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack("!II", total, len(raw_headers))
    head = prelude + struct.pack("!I", binascii.crc32(prelude))
    message = head + raw_headers + payload
    return message + struct.pack("!I", binascii.crc32(message))


def event(kind: str, payload: dict[str, Any]) -> bytes:
    return encode_message(
        {":event-type": kind, ":content-type": "application/json", ":message-type": "event"},
        json.dumps(payload).encode(),
    )


def verify_sigv4(headers: dict[str, str], url: str, body: bytes) -> str | None:
    auth = headers.get("authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return "no SigV4 authorization header"
    fields = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 ") :].split(","))
    if not fields.get("Credential", "").startswith(f"{AWS_KEY_ID}/"):
        return "signed with another access key"
    if f"/{REGION}/bedrock/aws4_request" not in fields["Credential"]:
        return f"credential scope is not {REGION}/bedrock: {fields['Credential']}"
    signed = fields["SignedHeaders"].split(";")
    request = AWSRequest(
        method="POST", url=url, data=body, headers={h: headers[h] for h in signed if h in headers}
    )
    request.context["timestamp"] = headers.get("x-amz-date", "")
    signer = SigV4Auth(ReadOnlyCredentials(AWS_KEY_ID, AWS_SECRET, None), "bedrock", REGION)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    return None if expected == fields.get("Signature") else "SigV4 signature does not match"


def check(fp: FakeProviders, body: Any) -> str | None:
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs or msgs[0].get("role") != "user":
        return fp.problem("bedrock: messages must start with a user turn")
    for m in msgs:
        if not isinstance(m.get("content"), list):
            return fp.problem("bedrock: content must be a list of blocks")
    if "model" in body or "max_tokens" in body:
        return fp.problem("bedrock: OpenAI fields in a Converse request")
    return None


def _error(status: int, message: str) -> Response[Any]:
    kind = ERROR_TYPES.get(status, "InternalServerException")
    return Response(
        {"message": message},
        status_code=status,
        headers={"x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/"},
    )


def routes(fp: FakeProviders) -> list[Any]:
    @post("/bedrock/model/{model_id:str}/{op:str}", status_code=200)
    async def converse(request: Request[Any, Any, Any]) -> Response[Any] | Stream:
        op = request.path_params["op"]
        raw = await request.body()
        body = json.loads(raw)
        headers = dict(request.headers)
        fp.requests.append(("bedrock", request.url.path, headers, body))
        # The path as the client signed it (percent-encoded model id).
        raw_path = request.scope["raw_path"].decode()
        url = f"http://{headers['host']}{raw_path}"
        wrong = verify_sigv4(headers, url, raw)
        if wrong:
            return _error(403, fp.problem(f"bedrock: {wrong}"))
        if op not in ("converse", "converse-stream"):
            return _error(404, fp.problem(f"bedrock: unknown operation {op}"))
        wrong = check(fp, body)
        if wrong:
            return _error(400, wrong)
        if "bedrock" in fp.fail:
            return _error(fp.fail["bedrock"], "Too many requests, please wait before trying again.")
        content: list[dict[str, Any]] = [{"text": fp.reply}]
        stop = "end_turn"
        tools = {t["toolSpec"]["name"] for t in (body.get("toolConfig") or {}).get("tools", [])}
        if "json_tool_call" in tools:
            content = [
                {
                    "toolUse": {
                        "toolUseId": "tooluse_json",
                        "name": "json_tool_call",
                        "input": {"answer": fp.reply},
                    }
                }
            ]
            stop = "tool_use"
        elif fp.tool_call and tools:
            name, args = fp.tool_call
            content = [{"toolUse": {"toolUseId": "tooluse_01", "name": name, "input": args}}]
            stop = "tool_use"
        usage = {
            "inputTokens": words(body.get("messages")) + words(body.get("system")),
            "outputTokens": len(fp.reply.split()),
            "cacheReadInputTokens": 1,
        }
        usage["totalTokens"] = usage["inputTokens"] + usage["outputTokens"] + 1
        if op == "converse":
            return Response(
                {
                    "output": {"message": {"role": "assistant", "content": content}},
                    "stopReason": stop,
                    "usage": usage,
                    "metrics": {"latencyMs": 5},
                }
            )

        async def stream() -> AsyncIterator[bytes]:
            yield event("messageStart", {"role": "assistant"})
            for i, block in enumerate(content):
                if "text" in block:
                    for j, w in enumerate(block["text"].split(" ")):
                        yield event(
                            "contentBlockDelta",
                            {"contentBlockIndex": i, "delta": {"text": (" " if j else "") + w}},
                        )
                else:
                    use = block["toolUse"]
                    yield event(
                        "contentBlockStart",
                        {
                            "contentBlockIndex": i,
                            "start": {
                                "toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}
                            },
                        },
                    )
                    yield event(
                        "contentBlockDelta",
                        {
                            "contentBlockIndex": i,
                            "delta": {"toolUse": {"input": json.dumps(use["input"])}},
                        },
                    )
                yield event("contentBlockStop", {"contentBlockIndex": i})
            yield event("messageStop", {"stopReason": stop})
            yield event("metadata", {"usage": usage, "metrics": {"latencyMs": 5}})

        return Stream(stream(), media_type="application/vnd.amazon.eventstream")

    return [converse]
