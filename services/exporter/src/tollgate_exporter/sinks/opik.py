"""`opik`: Comet Opik over OTLP/HTTP, a preset of the OTLP sink: `Authorization`,
`Comet-Workspace` and `projectName` headers, GenAI semantic-convention spans.

Settings (LiteLLM's): `OPIK_API_KEY`, `OPIK_WORKSPACE`, `OPIK_PROJECT_NAME`, `OPIK_URL_OVERRIDE`
(default `https://www.comet.com/opik/api`; traces go to `{url}/v1/private/otel/v1/traces`);
callback variables of the same names in lower case.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tollgate_exporter.destinations import Destination
from tollgate_exporter.sinks.base import SinkType
from tollgate_exporter.sinks.otel import VendorSettings, create, preset_destination

DEFAULT_URL = "https://www.comet.com/opik/api"
PATH = "/v1/private/otel/v1/traces"


def destination(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    v = VendorSettings(vars_, env, ("OPIK_URL_OVERRIDE",))
    base = (v.get("OPIK_URL_OVERRIDE") or DEFAULT_URL).rstrip("/")
    api_key = v.secret("OPIK_API_KEY")
    workspace = v.get("OPIK_WORKSPACE")
    if base == DEFAULT_URL and not (api_key and workspace):
        return "opik needs opik_api_key and opik_workspace for Comet's cloud"
    project = v.get("OPIK_PROJECT_NAME") or "Default Project"
    return preset_destination(
        "opik",
        base + PATH,
        headers={
            "authorization": api_key,
            "comet-workspace": workspace,
            "projectname": project,
        },
        vars_=vars_,
        label=f"{workspace or 'local'}/{project}",
    )


SINK = SinkType(kind="opik", names=("opik",), destination=destination, create=create)
