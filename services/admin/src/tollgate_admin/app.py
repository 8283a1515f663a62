"""Assembles the admin service: PostgreSQL pool, NATS, KV state, outbox relay, routes, docs."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
from litestar import Litestar, Request, Response
from litestar.datastructures import State
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from nats.aio.client import Client as NATS

from tollgate_admin import store
from tollgate_admin.errors import AdminError
from tollgate_admin.propagation import KvState, OutboxRelay
from tollgate_admin.routes import KeyController, ModelController, TeamController, UserController
from tollgate_admin.routes.deps import DEPENDENCIES, AdminContext
from tollgate_admin.service import AdminService
from tollgate_admin.settings import AdminSettings
from tollgate_admin.uow import UnitOfWork, db_error
from tollgate_shared import names
from tollgate_shared.config import TollgateConfig
from tollgate_shared.dependencies import check_nats, check_postgres
from tollgate_shared.errors import error_body
from tollgate_shared.migrate import apply_migrations
from tollgate_shared.publishing import connect_nats
from tollgate_shared.web import health_router

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass
class Deps:
    nc: NATS | None = None
    pool: asyncpg.Pool | None = None


def _json(status: int, message: str, param: str | None) -> Response[dict[str, Any]]:
    return Response(error_body(message, status, param=param), status_code=status)


def _admin_error(_: Request[Any, Any, Any], exc: AdminError) -> Response[dict[str, Any]]:
    return Response(exc.body(), status_code=exc.status)


def _validation_error(
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
    return _json(400, message, param)


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    return _json(exc.status_code, str(exc.detail), None)


def _db_error(_: Request[Any, Any, Any], exc: asyncpg.PostgresError) -> Response[dict[str, Any]]:
    err = db_error(exc)
    return Response(err.body(), status_code=err.status)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    if isinstance(exc, ValueError | TypeError | UnicodeError):
        # A value the schema let through but the code could not use: the client's fault.
        return _json(400, f"invalid input: {exc}"[:500], None)
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _json(500, "internal error; see the admin service log", None)


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Tollgate admin API",
        version="1.0.0",
        description=(
            "LiteLLM-compatible management endpoints: keys, teams, users, models and team "
            "logging. Every route needs the master key (`Authorization: Bearer <key>` or "
            "`x-litellm-api-key`), except that a virtual key may read its own /key/info."
        ),
        path="/schema",
        use_handler_docstrings=True,
        render_plugins=[SwaggerRenderPlugin(), JsonRenderPlugin(), YamlRenderPlugin()],
        components=Components(
            security_schemes={
                "BearerAuth": SecurityScheme(type="http", scheme="bearer"),
                "LitellmApiKey": SecurityScheme(
                    type="apiKey", name=names.HDR_LITELLM_KEY, security_scheme_in="header"
                ),
            }
        ),
        security=[{"BearerAuth": []}, {"LitellmApiKey": []}],
    )


def create_app(settings: AdminSettings, cfg: TollgateConfig) -> Litestar:
    deps = Deps()
    ctx = AdminContext()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        deps.pool = await asyncpg.create_pool(
            settings.database_url, min_size=1, max_size=10, init=store.init_connection
        )
        async with deps.pool.acquire() as conn:
            await apply_migrations(conn, names.SCHEMA_ADMIN, MIGRATIONS)
        deps.nc = await connect_nats(settings.nats_url, "tollgate-admin")
        js = deps.nc.jetstream()
        kv = KvState(js, prune=settings.kv_prune)
        await kv.open()
        # KV is derived state: rebuild it from PostgreSQL on every start.
        await kv.resync(deps.pool)
        relay = OutboxRelay(deps.pool, js)
        await relay.flush()
        await relay.start()
        ctx.service = AdminService(
            UnitOfWork(deps.pool, kv, relay),
            cfg,
            sealer=settings.sealer(cfg),
            master_key=settings.effective_master_key(cfg),
        )
        try:
            yield
        finally:
            await relay.stop()
            await kv.close()
            await deps.nc.drain()
            await deps.pool.close()

    checks = lambda: {  # noqa: E731
        "nats": partial(check_nats, deps.nc),
        "postgres": partial(check_postgres, deps.pool),
    }
    return Litestar(
        route_handlers=[
            health_router("admin", checks),
            KeyController,
            TeamController,
            UserController,
            ModelController,
        ],
        dependencies=DEPENDENCIES,
        lifespan=[lifespan],
        state=State({"admin": ctx}),
        openapi_config=openapi_config(),
        exception_handlers={
            AdminError: _admin_error,
            ValidationException: _validation_error,
            HTTPException: _http_error,
            asyncpg.PostgresError: _db_error,
            Exception: _unexpected,
        },
    )
