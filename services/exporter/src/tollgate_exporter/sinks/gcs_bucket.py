"""`gcs_bucket`: one JSON object per call in a Google Cloud Storage bucket, keyed by date
and team (`<gcs_path>/date=YYYY-MM-DD/team=<team>/<event id>.json`), uploaded with
gcloud-aio-storage; a redelivered call overwrites its own object.

Settings, as LiteLLM's: `GCS_BUCKET_NAME` and `GCS_PATH_SERVICE_ACCOUNT` globally;
`gcs_bucket_name` and `gcs_path_service_account` per team (`POST /team/{id}/callback`,
seed 003's example) or key (`metadata.logging`); `gcs_path` / `GCS_PATH` a prefix;
`STORAGE_EMULATOR_HOST` (or `gcs_emulator_host`) for fake-gcs-server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from gcloud.aio.storage import Storage

from tollgate_exporter.destinations import Destination, digest
from tollgate_exporter.sinks._google import GoogleSink, google_settings, service_account_problem
from tollgate_exporter.sinks._storage import (
    Settings,
    bounded,
    dumps,
    mapped_errors,
    object_key,
    record,
)
from tollgate_exporter.sinks.base import BatchResult, ExportItem, SinkType


def destination(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    s = Settings(vars_, env)
    bucket = s.get(("gcs_bucket_name",), ("GCS_BUCKET_NAME",))
    if not bucket:
        return f"{name} needs gcs_bucket_name (or GCS_BUCKET_NAME)"
    google = google_settings(s, "gcs", "GCS_ENDPOINT", "STORAGE_EMULATOR_HOST")
    problem = service_account_problem(name, google)
    if problem:
        return problem
    options = {"bucket": bucket, "path": s.get(("gcs_path",), ("GCS_PATH",)) or "", **google}
    return Destination(
        "gcs_bucket",
        f"gcs_bucket:{digest(options)}",
        f"gcs_bucket gs://{bucket}/{options['path']} {google['api_root'] or ''}".rstrip(),
        options,
    )


class GcsBucketSink(GoogleSink):
    kind = "gcs_bucket"

    def _storage(self, destination: Destination) -> Storage:
        opts = destination.options
        return self._clients.get(  # type: ignore[no-any-return]
            destination.key,
            lambda session: Storage(
                service_file=None if opts["dev"] else opts["service_account"],
                session=session,  # type: ignore[arg-type]  # aiohttp's, as the aio build takes
                api_root=opts["api_root"],
                api_is_dev=opts["dev"] if opts["api_root"] else None,
            ),
        )

    async def send(self, destination: Destination, items: Sequence[ExportItem]) -> BatchResult:
        opts = destination.options
        storage = self._storage(destination)
        async with mapped_errors(f"gcs bucket {opts['bucket']}"):
            await bounded(
                [
                    partial(
                        storage.upload,
                        opts["bucket"],
                        object_key(opts["path"], i),
                        dumps(record(i)).encode(),
                        content_type="application/json",
                        timeout=self._timeout,
                    )
                    for i in items
                ]
            )
        return BatchResult()


SINK = SinkType(
    kind="gcs_bucket", names=("gcs_bucket",), destination=destination, create=GcsBucketSink
)
