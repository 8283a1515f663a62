"""The OpenAI-format error body every service answers with, and its `type` per status.

    {"error": {"message": ..., "type": ..., "param": ..., "code": "<status>"}}

`type` follows the status unless a caller names a more precise one (LiteLLM's
`budget_exceeded`, say): 401/403 `auth_error`, 404 `not_found_error`, 409
`conflict_error`, 429 `rate_limit_error`, any other 4xx `invalid_request_error`,
5xx `api_error` (the name OpenAI's SDK gives a server-side failure).
"""

from __future__ import annotations

from typing import Any

import orjson

_TYPE_BY_STATUS = {
    401: "auth_error",
    403: "auth_error",
    404: "not_found_error",
    409: "conflict_error",
    429: "rate_limit_error",
}


def error_type(status: int) -> str:
    """The error `type` a response with this status carries by default."""
    found = _TYPE_BY_STATUS.get(status)
    if found is not None:
        return found
    return "api_error" if status >= 500 else "invalid_request_error"


def error_body(
    message: str,
    status: int,
    *,
    param: str | None = None,
    type_: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """The error document; `code` defaults to the status as a string, as LiteLLM sends it."""
    return {
        "error": {
            "message": message,
            "type": type_ or error_type(status),
            "param": param,
            "code": code if code is not None else str(status),
        }
    }


def error_json(
    message: str,
    status: int,
    *,
    param: str | None = None,
    type_: str | None = None,
    code: str | None = None,
) -> bytes:
    """`error_body` serialised, for handlers that write bytes."""
    return orjson.dumps(error_body(message, status, param=param, type_=type_, code=code))
