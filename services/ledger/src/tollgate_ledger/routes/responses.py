"""What every ledger route shares: master-key auth, OpenAI-style errors, exact JSON numbers."""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec
from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.handlers.base import BaseRouteHandler

from tollgate_ledger.handlers import FilterError
from tollgate_ledger.projections.reads import LedgerReader
from tollgate_shared import names

log = logging.getLogger(__name__)

# Money is Decimal end to end: encode it as an exact JSON number, never via float.
_ENCODER = msgspec.json.Encoder(decimal_format="number")


@dataclass
class ReadDeps:
    """What the read routes need; `pool` is set once the app has started."""

    reader: LedgerReader
    master_key: str | None
    pool: asyncpg.Pool | None = None

    def require_pool(self) -> asyncpg.Pool:
        if self.pool is None:
            raise HTTPException(status_code=503, detail="database not connected")
        return self.pool


def json_response(
    content: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response[bytes]:
    return Response(
        content=_ENCODER.encode(content),
        status_code=status_code,
        media_type="application/json",
        headers=headers,
    )


def error_body(
    message: str, status_code: int, param: str | None = None, type_: str | None = None
) -> dict[str, Any]:
    """OpenAI's error shape, as LiteLLM's ProxyException answers it."""
    if type_ is None:
        type_ = {401: "auth_error", 403: "auth_error", 404: "not_found_error"}.get(
            status_code, "invalid_request_error" if status_code < 500 else "internal_error"
        )
    return {"error": {"message": message, "type": type_, "param": param, "code": str(status_code)}}


def master_key_guard(deps: ReadDeps) -> Any:
    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if deps.master_key is None:
            return
        auth = connection.headers.get("authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else auth.strip()
        token = token or connection.headers.get(names.HDR_LITELLM_KEY, "")
        if not token:
            raise NotAuthorizedException(
                "No api key passed in: send 'Authorization: Bearer <master key>'"
            )
        if not hmac.compare_digest(token.encode(), deps.master_key.encode()):
            raise NotAuthorizedException("Invalid key: the ledger's read API needs the master key")

    return guard


def _bad_filter(_: Request[Any, Any, Any], exc: FilterError) -> Response[bytes]:
    return json_response(error_body(exc.message, 400, exc.param), 400)


def _validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[bytes]:
    extra = exc.extra if isinstance(exc.extra, list) else []
    keys = [str(e.get("key")) for e in extra if isinstance(e, dict) and e.get("key")]
    detail = "; ".join(
        f"{e.get('key')}: {e.get('message')}" for e in extra if isinstance(e, dict)
    ) or str(exc.detail)
    return json_response(
        error_body(f"invalid parameter: {detail}", 400, keys[0] if keys else None), 400
    )


def _http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    return json_response(
        error_body(str(exc.detail), exc.status_code), exc.status_code, headers=exc.headers
    )


def _unexpected(req: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    if isinstance(exc, asyncpg.PostgresError | OSError | asyncpg.InterfaceError):
        log.warning("database unavailable for %s: %s", req.url.path, exc)
        return json_response(error_body("database unavailable, try again", 503), 503)
    log.exception("unexpected error on %s", req.url.path)
    return json_response(error_body("internal error", 500), 500)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    FilterError: _bad_filter,
    ValidationException: _validation,
    HTTPException: _http,
    Exception: _unexpected,
}


def operation_ids(by_path: dict[str, str]) -> Any:
    """Operation ids for a handler served on several paths: one per path."""

    def create(_: Any, __: Any, path_components: list[Any]) -> str:
        path = "/" + "/".join(p for p in path_components if isinstance(p, str))
        return by_path[path]

    return create


def page_envelope(
    data: list[Any], total: int, page: int, page_size: int, key: str = "data"
) -> dict[str, Any]:
    return {
        key: data,
        "total": total,
        "page": page,
        "page_size": page_size,
        "total_pages": -(-total // page_size),
    }
