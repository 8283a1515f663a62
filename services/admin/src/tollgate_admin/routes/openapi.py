"""The admin API's OpenAPI document: title, description and the two ways to present a key."""

from __future__ import annotations

from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from tollgate_shared import names


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
