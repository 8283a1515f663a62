"""`bigquery`: one row per call streamed into a BigQuery table (`tabledata.insertAll`, the
legacy streaming API, with gcloud-aio-bigquery), `insertId` = the event id so BigQuery's
best-effort de-duplication drops a redelivered row.

The table has the spend log schema (`_google.SPEND_LOG_SCHEMA`, the same row `gcs_pubsub`
publishes). Before its first insert a destination reads the table (`tables.get`): absent,
Tollgate creates it, day-partitioned on `startTime`; present, every column Tollgate writes
must be there (a missing one is a clear refusal, not silently dropped data). Rows BigQuery
refuses (`insertErrors`) are dead-lettered alone.

Settings: `BIGQUERY_PROJECT_ID`, `BIGQUERY_DATASET_ID`, `BIGQUERY_TABLE_ID` (default
`tollgate_spend_logs`), `GCS_PATH_SERVICE_ACCOUNT` (or `bigquery_path_service_account`),
callback variables of those names in lower case; `BIGQUERY_EMULATOR_HOST` for an emulator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
from gcloud.aio.bigquery import Table

from tollgate_exporter.destinations import Destination, digest
from tollgate_exporter.sinks._google import (
    SPEND_LOG_SCHEMA,
    GoogleSink,
    google_settings,
    service_account_problem,
    spend_log_row,
)
from tollgate_exporter.sinks._storage import Settings, mapped_errors, status_error
from tollgate_exporter.sinks.base import (
    BatchResult,
    ExportItem,
    PermanentError,
    SinkContext,
    SinkType,
)

DEFAULT_TABLE = "tollgate_spend_logs"
MAX_ROWS = 500  # Google's recommended insertAll batch


def destination(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    s = Settings(vars_, env)
    project = s.get(("bigquery_project_id",), ("BIGQUERY_PROJECT_ID",))
    dataset = s.get(("bigquery_dataset_id",), ("BIGQUERY_DATASET_ID",))
    table = s.get(("bigquery_table_id",), ("BIGQUERY_TABLE_ID",)) or DEFAULT_TABLE
    if not project or not dataset:
        return f"{name} needs bigquery_project_id and bigquery_dataset_id (BIGQUERY_*)"
    google = google_settings(s, "bigquery", "BIGQUERY_ENDPOINT", "BIGQUERY_EMULATOR_HOST")
    problem = service_account_problem(name, google)
    if problem:
        return problem
    options = {"project": project, "dataset": dataset, "table": table, **google}
    return Destination(
        "bigquery",
        f"bigquery:{digest(options)}",
        f"bigquery {project}.{dataset}.{table} {google['api_root'] or ''}".rstrip(),
        options,
    )


def table_resource(project: str, dataset: str, table: str) -> dict[str, Any]:
    return {
        "tableReference": {"projectId": project, "datasetId": dataset, "tableId": table},
        "schema": {"fields": SPEND_LOG_SCHEMA},
        "timePartitioning": {"type": "DAY", "field": "startTime"},
        "description": "Tollgate LLM calls (one row per call, LiteLLM's spend log columns)",
    }


def missing_columns(resource: Mapping[str, Any]) -> list[str]:
    have = {f.get("name") for f in resource.get("schema", {}).get("fields", [])}
    return [f["name"] for f in SPEND_LOG_SCHEMA if f["name"] not in have]


class BigquerySink(GoogleSink):
    kind = "bigquery"

    def __init__(self, ctx: SinkContext) -> None:
        super().__init__(ctx)
        self._ready: set[str] = set()

    def _table(self, destination: Destination) -> Table:
        opts = destination.options
        return self._clients.get(  # type: ignore[no-any-return]
            destination.key,
            lambda session: Table(
                opts["dataset"],
                opts["table"],
                project=opts["project"],
                service_file=opts["service_account"],
                session=session,  # type: ignore[arg-type]  # aiohttp's, as the aio build takes
                api_root=opts["api_root"],
            ),
        )

    async def _ensure(self, destination: Destination, table: Table) -> None:
        """Create the table, or check it has every column (once per destination)."""
        if destination.key in self._ready:
            return
        opts = destination.options
        try:
            resource = await table.get(timeout=self._timeout)
        except aiohttp.ClientResponseError as exc:
            if exc.status != 404:
                raise
            await table.create(
                table_resource(opts["project"], opts["dataset"], opts["table"]),
                timeout=self._timeout,
            )
        else:
            missing = missing_columns(resource)
            if missing:
                raise PermanentError(
                    f"bigquery table {opts['dataset']}.{opts['table']} lacks columns {missing}"
                )
        self._ready.add(destination.key)

    async def send(self, destination: Destination, items: Sequence[ExportItem]) -> BatchResult:
        table = self._table(destination)
        result = BatchResult()
        async with mapped_errors(f"bigquery {destination.label}"):
            await self._ensure(destination, table)
            for start in range(0, len(items), MAX_ROWS):
                rows = [spend_log_row(i) for i in items[start : start + MAX_ROWS]]
                answer = await table.insert(
                    rows,
                    ignore_unknown=False,
                    timeout=self._timeout,
                    insert_id_fn=lambda row: str(row["event_id"]),
                )
                for error in answer.get("insertErrors", []):
                    reasons = [e.get("reason", "") for e in error.get("errors", [])]
                    if any(r in ("backendError", "internalError") for r in reasons):
                        raise status_error("bigquery insertAll", 503, str(error))
                    if reasons and all(r == "stopped" for r in reasons):
                        raise status_error("bigquery insertAll", 503, "rows stopped by others")
                    result.rejected[start + int(error["index"])] = f"bigquery refused: {error}"
        return result


SINK = SinkType(kind="bigquery", names=("bigquery",), destination=destination, create=BigquerySink)
