"""`s3` (alias `s3_v2`): one JSON object per call in an S3 bucket (any S3-compatible store),
keyed by date and team so Athena or DuckDB can query the bucket as a partitioned table:

    <s3_path>/date=YYYY-MM-DD/team=<team id or _>/<event id>.json

With `s3_batch_objects: true`, a batch becomes one JSON-lines object per date and team
(`.../batch-<id>.jsonl`, the id derived from the batch's event ids) — fewer, larger objects
for volume. A redelivered event overwrites its own object, never adds a second one.

Settings (LiteLLM's `litellm_settings.s3_callback_params`, or a team's/key's callback
variables): `s3_bucket_name`, `s3_region_name`, `s3_endpoint_url`, `s3_path`,
`s3_aws_access_key_id`, `s3_aws_secret_access_key`, `s3_aws_session_token` (values may be
`os.environ/NAME`); the standard `AWS_*` variables otherwise, and `S3_BUCKET_NAME`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from tollgate_exporter.destinations import Destination, digest
from tollgate_exporter.sinks._aws import AwsSink
from tollgate_exporter.sinks._storage import (
    Settings,
    aws_settings,
    bounded,
    day,
    dumps,
    mapped_errors,
    object_key,
    record,
    team_of,
)
from tollgate_exporter.sinks.base import BatchResult, ExportItem, SinkType, stable_id


def destination(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    s = Settings(vars_, env)
    bucket = s.get(("s3_bucket_name", "bucket"), ("S3_BUCKET_NAME",))
    if not bucket:
        return f"{name} needs s3_bucket_name (s3_callback_params or S3_BUCKET_NAME)"
    aws = aws_settings(s, "s3")
    options = {
        "bucket": bucket,
        "path": s.get(("s3_path",), ("S3_PATH",)) or "",
        "batch_objects": s.flag(("s3_batch_objects",), ("S3_BATCH_OBJECTS",)),
        "aws": aws,
    }
    where = aws["endpoint_url"] or aws["region_name"]
    return Destination(
        "s3",
        f"s3:{digest(options)}",
        f"s3 s3://{bucket}/{options['path']} {where} {aws['aws_access_key_id'] or ''}".rstrip(),
        options,
    )


def batch_objects(prefix: str, items: Sequence[ExportItem]) -> dict[str, bytes]:
    """One JSON-lines object per (date, team) of the batch."""
    groups: dict[tuple[str, str], list[ExportItem]] = {}
    for i in items:
        groups.setdefault((day(i.event), team_of(i.event)), []).append(i)
    out: dict[str, bytes] = {}
    for (date, team), group in groups.items():
        name = stable_id(*(i.event.event_id for i in group))
        key = "/".join(
            p
            for p in (prefix.strip("/"), f"date={date}", f"team={team}", f"batch-{name}.jsonl")
            if p
        )
        out[key] = "".join(dumps(record(i)) + "\n" for i in group).encode()
    return out


class S3Sink(AwsSink):
    kind = "s3"

    async def send(self, destination: Destination, items: Sequence[ExportItem]) -> BatchResult:
        opts = destination.options
        if opts["batch_objects"]:
            objects = batch_objects(opts["path"], items)
            content_type = "application/x-ndjson"
        else:
            objects = {object_key(opts["path"], i): dumps(record(i)).encode() for i in items}
            content_type = "application/json"
        async with mapped_errors(f"s3 bucket {opts['bucket']}"):
            client = await self._clients.get("s3", destination.key, opts["aws"])
            await bounded(
                [
                    partial(
                        client.put_object,
                        Bucket=opts["bucket"],
                        Key=key,
                        Body=body,
                        ContentType=content_type,
                    )
                    for key, body in objects.items()
                ]
            )
        return BatchResult()


SINK = SinkType(kind="s3", names=("s3", "s3_v2"), destination=destination, create=S3Sink)
