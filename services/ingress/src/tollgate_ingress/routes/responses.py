"""The Responses API routes: decode, call the Responses service, encode."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, delete, get, post
from litestar.datastructures import State
from litestar.types import ASGIApp

from tollgate_ingress.responses.service import PATHS, Responses
from tollgate_ingress.routes.llm import JSON, answer_call


@post(list(PATHS), operation_id="create_response", status_code=200, tags=["llm"])
async def create_response(request: Request[Any, Any, Any], state: State) -> ASGIApp:
    """OpenAI's Responses API (plain, or streamed as the Responses event stream)."""
    responses: Responses = state.responses
    return await answer_call(request, responses.create)


async def _read(
    request: Request[Any, Any, Any], state: State, response_id: str, action: str
) -> Response[bytes]:
    responses: Responses = state.responses
    status, body = await responses.read(
        request.headers, response_id, action, dict(request.query_params)
    )
    return Response(body, status_code=status, media_type=JSON)


@get([f"{p}/{{response_id:str}}" for p in PATHS], operation_id="get_response", tags=["llm"])
async def get_response(
    request: Request[Any, Any, Any], state: State, response_id: str
) -> Response[bytes]:
    """A stored response, as the key (or team) that created it sees it."""
    return await _read(request, state, response_id, "get")


@delete(
    [f"{p}/{{response_id:str}}" for p in PATHS],
    operation_id="delete_response",
    status_code=200,
    tags=["llm"],
)
async def delete_response(
    request: Request[Any, Any, Any], state: State, response_id: str
) -> Response[bytes]:
    """Forget a stored response: a later previous_response_id naming it is a 404."""
    return await _read(request, state, response_id, "delete")


@get(
    [f"{p}/{{response_id:str}}/input_items" for p in PATHS],
    operation_id="list_response_input_items",
    tags=["llm"],
)
async def list_input_items(
    request: Request[Any, Any, Any], state: State, response_id: str
) -> Response[bytes]:
    """The input items of a stored response (`order`, `limit`, `after`)."""
    return await _read(request, state, response_id, "input_items")


response_routes = [create_response, get_response, delete_response, list_input_items]
