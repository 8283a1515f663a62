"""Fallback upstream when nginx is absent: a raw ASGI app answering the same fixed bodies."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

from tollgate_bench import bodies
from tollgate_bench.upstream import CHAT_PATH, DISCARD_PATH, STREAM_PATH

_CHAT = bodies.completion()
_SSE = bodies.sse_stream()

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:  # drain the request body
        more = (await receive()).get("more_body", False)
    path = scope["path"]
    if path == CHAT_PATH:
        body, ctype, status = _CHAT, b"application/json", 200
    elif path == STREAM_PATH:
        body, ctype, status = _SSE, b"text/event-stream", 200
    elif path == DISCARD_PATH:
        body, ctype, status = b"{}", b"application/json", 200
    elif path == "/health":
        body, ctype, status = b"ok", b"text/plain", 200
    else:
        body, ctype, status = b"not found", b"text/plain", 404
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="off",
    )


if __name__ == "__main__":
    main()
