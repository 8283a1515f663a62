"""`mlflow`: an MLflow tracking server's OTLP endpoint (MLflow >= 3.6, `{uri}/v1/traces`),
a preset of the OTLP sink: the experiment in `x-mlflow-experiment-id`, a bearer token when set.

Settings (MLflow's): `MLFLOW_TRACKING_URI` (required), `MLFLOW_EXPERIMENT_ID` (default `0`),
`MLFLOW_TRACKING_TOKEN`; callback variables of the same names in lower case.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tollgate_exporter.destinations import Destination
from tollgate_exporter.sinks.base import SinkType
from tollgate_exporter.sinks.otel import VendorSettings, create, preset_destination


def destination(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    v = VendorSettings(vars_, env, ("MLFLOW_TRACKING_URI",))
    uri = v.get("MLFLOW_TRACKING_URI")
    if not uri or not uri.startswith(("http://", "https://")):
        return "mlflow needs an http(s) mlflow_tracking_uri (MLFLOW_TRACKING_URI)"
    experiment = v.get("MLFLOW_EXPERIMENT_ID") or "0"
    token = v.secret("MLFLOW_TRACKING_TOKEN")
    return preset_destination(
        "mlflow",
        f"{uri.rstrip('/')}/v1/traces",
        headers={
            "x-mlflow-experiment-id": experiment,
            "authorization": f"Bearer {token}" if token else None,
        },
        vars_=vars_,
        label=f"experiment {experiment}",
    )


SINK = SinkType(kind="mlflow", names=("mlflow",), destination=destination, create=create)
