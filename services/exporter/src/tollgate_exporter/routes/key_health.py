"""`POST /key/health`: the calling key's logging callbacks and their delivery health."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Request, Response, post
from litestar.handlers import HTTPRouteHandler
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_401_UNAUTHORIZED,
    HTTP_503_SERVICE_UNAVAILABLE,
)

from tollgate_exporter.service import ExporterStartingError, UnknownKeyError
from tollgate_shared.credentials import presented_key
from tollgate_shared.errors import error_body


def key_health_handler(check: Callable[[str], dict[str, Any]]) -> HTTPRouteHandler:
    """The route; `check` is `KeyHealth.check` (raises ExporterStartingError / UnknownKeyError)."""

    @post(
        "/key/health",
        operation_id="exporter_key_health",
        status_code=HTTP_200_OK,
        tags=["key management"],
    )
    async def key_health(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        """Check the calling key's logging: its callbacks and their recent delivery health."""
        token = presented_key(request.headers.get)
        if token is None:
            return Response(
                error_body(
                    "No api key passed in: use 'Authorization: Bearer sk-...'",
                    HTTP_401_UNAUTHORIZED,
                ),
                status_code=HTTP_401_UNAUTHORIZED,
            )
        try:
            return Response(check(token))
        except ExporterStartingError as exc:
            status = HTTP_503_SERVICE_UNAVAILABLE
            return Response(error_body(str(exc), status), status_code=status)
        except UnknownKeyError as exc:
            status = HTTP_401_UNAUTHORIZED
            return Response(error_body(str(exc), status), status_code=status)

    return key_health
