"""How the read routes answer: exact JSON numbers, OpenAI-format errors, operation ids."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from tollgate_ledger.filters import FilterError
from tollgate_ledger.service import DB_UNAVAILABLE, NotReadyError
from tollgate_shared.errors import error_body

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


def _validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[bytes]:
    extra = exc.extra if isinstance(exc.extra, list) else []
    keys = [str(e.get("key")) for e in extra if isinstance(e, dict) and e.get("key")]
    detail = "; ".join(
        f"{e.get('key')}: {e.get('message')}" for e in extra if isinstance(e, dict)
    ) or str(exc.detail)
    return json_response(
        error_body(f"invalid parameter: {detail}", 400, param=keys[0] if keys else None), 400
    )


def _http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    return json_response(
        error_body(str(exc.detail), exc.status_code), exc.status_code, headers=exc.headers
    )


def _not_ready(_: Request[Any, Any, Any], exc: NotReadyError) -> Response[bytes]:
    return json_response(error_body(str(exc), 503), 503)


def _unexpected(req: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    if isinstance(exc, DB_UNAVAILABLE):
        log.warning("database unavailable for %s: %s", req.url.path, exc)
        return json_response(error_body("database unavailable, try again", 503), 503)
    log.exception("unexpected error on %s", req.url.path)
    return json_response(error_body("internal error", 500), 500)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    FilterError: _bad_filter,
    ValidationException: _validation,
    HTTPException: _http,
    NotReadyError: _not_ready,
    Exception: _unexpected,
}


def operation_ids(by_path: dict[str, str]) -> Any:
    """Operation ids for a handler served on several paths: one per path."""

    def create(_: Any, __: Any, path_components: list[Any]) -> str:
        path = "/" + "/".join(p for p in path_components if isinstance(p, str))
        return by_path[path]

    return create
