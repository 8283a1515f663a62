"""How the HTTP edge answers an error: every refusal as the shared OpenAI-format error body."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap

from tollgate_admin.errors import AdminError
from tollgate_shared.errors import error_body

log = logging.getLogger(__name__)


def json_error(status: int, message: str, param: str | None) -> Response[dict[str, Any]]:
    return Response(error_body(message, status, param=param), status_code=status)


def admin_error(_: Request[Any, Any, Any], exc: AdminError) -> Response[dict[str, Any]]:
    return Response(exc.body(), status_code=exc.status)


def validation_error(
    _: Request[Any, Any, Any], exc: ValidationException
) -> Response[dict[str, Any]]:
    """Litestar's 400 for a body or parameter that does not fit its schema, naming the field."""
    problems = exc.extra if isinstance(exc.extra, list) else []
    parts: list[str] = []
    param: str | None = None
    for p in problems[:10]:
        if isinstance(p, dict):
            key = str(p.get("key") or "") or None
            param = param or key
            parts.append(f"{key}: {p.get('message')}" if key else str(p.get("message")))
    message = "; ".join(parts) or str(exc.detail)
    return json_error(400, message, param)


def http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    return json_error(exc.status_code, str(exc.detail), None)


def unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    if isinstance(exc, ValueError | TypeError | UnicodeError):
        # A value the schema let through but the code could not use: the client's fault.
        return json_error(400, f"invalid input: {exc}"[:500], None)
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return json_error(500, "internal error; see the admin service log", None)


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    AdminError: admin_error,
    ValidationException: validation_error,
    HTTPException: http_error,
    Exception: unexpected,
}
