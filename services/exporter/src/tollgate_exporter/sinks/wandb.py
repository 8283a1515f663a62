"""`wandb` (W&B Weave): Weave's OTLP endpoint, a preset of the OTLP sink: Basic auth
`api:<key>`, the `project_id` header and `wandb.entity` / `wandb.project` resource
attributes, GenAI plus OpenInference attributes (both of which Weave maps).

Settings: `WANDB_API_KEY`, `WANDB_PROJECT_ID` (`<entity>/<project>`), `WANDB_BASE_URL` (default
`https://trace.wandb.ai`; traces go to `{url}/otel/v1/traces`); callback variables of the same
names in lower case. Names: `wandb`, `weave`, `weave_otel`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from tollgate_exporter.destinations import Destination
from tollgate_exporter.sinks.base import SinkType
from tollgate_exporter.sinks.otel import VendorSettings, create, preset_destination

DEFAULT_BASE_URL = "https://trace.wandb.ai"


def destination(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    v = VendorSettings(vars_, env, ("WANDB_BASE_URL",))
    api_key = v.secret("WANDB_API_KEY")
    project_id = v.get("WANDB_PROJECT_ID", "WEAVE_PROJECT_ID")
    if not api_key or not project_id or "/" not in project_id:
        return "wandb needs wandb_api_key and wandb_project_id (<entity>/<project>)"
    entity, _, project = project_id.partition("/")
    base = (v.get("WANDB_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
    token = base64.b64encode(f"api:{api_key}".encode()).decode()
    return preset_destination(
        "wandb",
        f"{base}/otel/v1/traces",
        headers={"authorization": f"Basic {token}", "project_id": project_id},
        vars_=vars_,
        resource_attributes={"wandb.entity": entity, "wandb.project": project},
        conventions=("openinference",),
        label=project_id,
    )


SINK = SinkType(
    kind="wandb", names=("wandb", "weave", "weave_otel"), destination=destination, create=create
)
