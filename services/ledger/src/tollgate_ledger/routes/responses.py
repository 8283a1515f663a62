"""How the read routes answer: exact JSON numbers, OpenAI-format errors, operation ids."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response

from tollgate_ledger.filters import FilterError
from tollgate_ledger.service import DB_UNAVAILABLE, NotReadyError
from tollgate_shared.errors import error_body
from tollgate_shared.web import OPENAI_EXCEPTION_HANDLERS, unexpected_error

log = logging.getLogger(__name__)

# Money is Decimal end to end: encode it as an exact JSON number, never via float.
_ENCODER = msgspec.json.Encoder(decimal_format="number")


def json_response(
    content: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response[bytes]:
    return Response(
        content=_ENCODER.encode(content),
        status_code=status_code,
        media_type="application/json",
        headers=headers,
    )


def _bad_filter(_: Request[Any, Any, Any], exc: FilterError) -> Response[bytes]:
    return json_response(error_body(exc.message, 400, param=exc.param), 400)


def _not_ready(_: Request[Any, Any, Any], exc: NotReadyError) -> Response[bytes]:
    return json_response(error_body(str(exc), 503), 503)


def _unexpected(req: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    if isinstance(exc, DB_UNAVAILABLE):
        log.warning("database unavailable for %s: %s", req.url.path, exc)
        return json_response(error_body("database unavailable, try again", 503), 503)
    return unexpected_error(req, exc)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    **OPENAI_EXCEPTION_HANDLERS,
    FilterError: _bad_filter,
    NotReadyError: _not_ready,
    Exception: _unexpected,
}


def operation_ids(by_path: dict[str, str]) -> Any:
    """Operation ids for a handler served on several paths: one per path."""

    def create(_: Any, __: Any, path_components: list[Any]) -> str:
        path = "/" + "/".join(p for p in path_components if isinstance(p, str))
        return by_path[path]

    return create
