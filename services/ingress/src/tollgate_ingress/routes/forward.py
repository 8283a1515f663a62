"""Forwards control and read paths to their owning service, so port 4000 serves everything."""

from __future__ import annotations

from typing import Any

import httpx
from litestar import Request, Response, route
from litestar.datastructures import State

from tollgate_ingress.forwarding import FORWARDED_PREFIXES, Owners
from tollgate_shared import names
from tollgate_shared.credentials import KEY_HEADERS
from tollgate_shared.errors import error_json

# What the owning service needs to see (the caller's key, so it can authorise), not a
# secret rule: these are relayed as they came.
_REQUEST_HEADERS = (
    *KEY_HEADERS,
    "content-type",
    "accept",
    names.HDR_CHANGED_BY,
    "traceparent",
    "tracestate",
)
_RESPONSE_HEADERS = ("content-type", names.HDR_CALL_ID, "location")

_PATHS = sorted(
    {
        p
        for prefix, _ in FORWARDED_PREFIXES
        for p in (prefix, f"{prefix}/{{rest:path}}")
        if not any(prefix.startswith(o + "/") for o, _ in FORWARDED_PREFIXES)
    }
)


@route(
    _PATHS,
    http_method=["GET", "POST", "PUT", "PATCH", "DELETE"],
    operation_id="forward_control_path",
    include_in_schema=False,
)
async def forward(request: Request[Any, Any, Any], state: State) -> Response[bytes]:
    """Relay the request to the owning service and its answer back, unchanged."""
    owners: Owners = state.owners
    client: httpx.AsyncClient = state.forward_client
    url = owners.url_for(request.url.path)
    if url is None:
        return _error(404, f"no route for {request.url.path}")
    query = request.scope.get("query_string", b"")
    if query:
        url = f"{url}?{query.decode('latin-1')}"
    headers = {h: v for h in _REQUEST_HEADERS if (v := request.headers.get(h)) is not None}
    if request.client:
        headers["x-forwarded-for"] = request.client.host
    try:
        resp = await client.request(
            request.method, url, headers=headers, content=await request.body()
        )
    except httpx.HTTPError as exc:
        return _error(
            503, f"the service behind {request.url.path} is unavailable: {type(exc).__name__}"
        )
    out = {h: v for h in _RESPONSE_HEADERS if (v := resp.headers.get(h)) is not None}
    return Response(
        resp.content,
        status_code=resp.status_code,
        headers=out,
        media_type=resp.headers.get("content-type"),
    )


def _error(status: int, message: str) -> Response[bytes]:
    return Response(error_json(message, status), status_code=status, media_type="application/json")
