"""Anthropic's Messages route: decode, call the Messages service, encode."""

from __future__ import annotations

from typing import Any

from litestar import Request, post
from litestar.datastructures import State
from litestar.types import ASGIApp

from tollgate_ingress.messages.service import PATHS, Messages
from tollgate_ingress.routes.llm import answer_call


@post(list(PATHS), operation_id="anthropic_messages", status_code=200, tags=["llm"])
async def create_message(request: Request[Any, Any, Any], state: State) -> ASGIApp:
    """Anthropic's Messages API (plain, or streamed with Anthropic's event types), answered
    by the model group's OpenAI-compatible deployments."""
    messages: Messages = state.messages
    return await answer_call(request, messages.create)
