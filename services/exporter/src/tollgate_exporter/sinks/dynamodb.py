"""`dynamodb`: one item per call in a DynamoDB table, keyed by `request_id` (LiteLLM's
DynamoDB logger's partition key), written with BatchWriteItem (25 items per request).

The item is the call's record (`_storage.record`) in DynamoDB's attribute values: numbers
as `N` (cost exact, from the decimal string), nested metadata and content as maps and
lists. A redelivered call overwrites its own item. Unprocessed items (throttling) are
retried; the table must exist (`request_id` string hash key).

Settings: `dynamodb_table_name` (callback variables / `callback_settings.dynamodb`) or
`DYNAMODB_TABLE_NAME`; `dynamodb_region_name`, `dynamodb_endpoint_url`,
`dynamodb_aws_access_key_id`, … or the standard `AWS_*` variables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from tollgate_exporter.destinations import Destination, digest
from tollgate_exporter.sinks._aws import AwsSink
from tollgate_exporter.sinks._storage import Settings, aws_settings, mapped_errors, record
from tollgate_exporter.sinks.base import (
    BatchResult,
    ExportItem,
    RetryableError,
    SinkType,
)

MAX_ITEMS = 25


def attribute(value: Any) -> dict[str, Any]:
    """A JSON-like value as a DynamoDB attribute value."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float | Decimal):
        return {"N": str(value)}
    if isinstance(value, Mapping):
        return {"M": {str(k): attribute(v) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [attribute(v) for v in value]}
    return {"S": str(value)}


def item(export: ExportItem) -> dict[str, Any]:
    doc = record(export)
    doc["request_id"] = export.event.request_id
    doc["response_cost"] = export.event.spend  # exact, not the float
    return {k: attribute(v) for k, v in doc.items() if v not in (None, "", [], {})}


def destination(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    s = Settings(vars_, env)
    table = s.get(("dynamodb_table_name", "table_name"), ("DYNAMODB_TABLE_NAME",))
    if not table:
        return f"{name} needs dynamodb_table_name (or DYNAMODB_TABLE_NAME)"
    aws = aws_settings(s, "dynamodb")
    options = {"table": table, "aws": aws}
    return Destination(
        "dynamodb",
        f"dynamodb:{digest(options)}",
        f"dynamodb {table} {aws['endpoint_url'] or aws['region_name']}",
        options,
    )


class DynamodbSink(AwsSink):
    kind = "dynamodb"

    async def send(self, destination: Destination, items: Sequence[ExportItem]) -> BatchResult:
        opts = destination.options
        table = opts["table"]
        # One call per request id in a request: BatchWriteItem refuses duplicate keys.
        unique = {i.event.request_id: i for i in items}
        requests = [{"PutRequest": {"Item": item(i)}} for i in unique.values()]
        unprocessed = 0
        async with mapped_errors(f"dynamodb table {table}"):
            client = await self._clients.get("dynamodb", destination.key, opts["aws"])
            for start in range(0, len(requests), MAX_ITEMS):
                answer = await client.batch_write_item(
                    RequestItems={table: requests[start : start + MAX_ITEMS]}
                )
                unprocessed += len(answer.get("UnprocessedItems", {}).get(table, []))
        if unprocessed:
            raise RetryableError(f"dynamodb left {unprocessed} items unprocessed (throttled)")
        return BatchResult()


SINK = SinkType(kind="dynamodb", names=("dynamodb",), destination=destination, create=DynamodbSink)
