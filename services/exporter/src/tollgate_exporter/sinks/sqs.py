"""`sqs` (alias `aws_sqs`): one message per call on an SQS queue, sent with
SendMessageBatch (up to 10 entries and 256 KiB per request).

The body is the call's record (`_storage.record`); message attributes `event_type`,
`team_id` and `key_alias` let consumers filter without parsing. A record larger than
`sqs_max_message_bytes` (default 262,144, SQS's classic limit) is never dropped: its
content (`messages`, `response`, `proxy_server_request`) is replaced by
`{"truncated": true, "original_bytes": N}` and `content_truncated: true` is set, so every
other field still arrives. Entries SQS refuses as the sender's fault are dead-lettered
alone; others are retried, without re-sending the entries already accepted.

Settings (LiteLLM's `aws_sqs_callback_params` / callback variables): `sqs_queue_url`,
`sqs_region_name`, `sqs_endpoint_url`, `sqs_aws_access_key_id`,
`sqs_aws_secret_access_key`, `sqs_aws_session_token`, `sqs_max_message_bytes`; the
environment's `SQS_QUEUE_URL` and standard `AWS_*` variables otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tollgate_exporter.destinations import Destination, digest, safe_url
from tollgate_exporter.sinks._aws import AwsSink
from tollgate_exporter.sinks._storage import (
    SentMemory,
    Settings,
    aws_settings,
    dumps,
    mapped_errors,
    record,
)
from tollgate_exporter.sinks.base import (
    BatchResult,
    ExportItem,
    RetryableError,
    SinkContext,
    SinkType,
)

MAX_ENTRIES = 10
DEFAULT_MAX_BYTES = 262_144
_CONTENT = ("messages", "response", "proxy_server_request")


def destination(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    s = Settings(vars_, env)
    url = s.get(("sqs_queue_url", "queue_url"), ("SQS_QUEUE_URL", "AWS_SQS_QUEUE_URL"))
    if not url:
        return f"{name} needs sqs_queue_url (or SQS_QUEUE_URL)"
    raw_max = s.get(("sqs_max_message_bytes",), ("SQS_MAX_MESSAGE_BYTES",))
    options = {
        "queue_url": url,
        "aws": aws_settings(s, "sqs"),
        "max_bytes": int(raw_max) if raw_max else DEFAULT_MAX_BYTES,
    }
    return Destination("sqs", f"sqs:{digest(options)}", f"sqs {safe_url(url)}", options)


def body(item: ExportItem, max_bytes: int) -> str:
    """The message body, content truncated with a marker when the record is too large."""
    doc = record(item)
    text = dumps(doc)
    size = len(text.encode())
    if size <= max_bytes:
        return text
    for field in _CONTENT:
        if doc.get(field) is not None:
            doc[field] = {"truncated": True, "original_bytes": size}
    doc["content_truncated"] = True
    text = dumps(doc)
    if len(text.encode()) > max_bytes:  # metadata alone too large: keep the call's numbers
        doc["metadata"] = {"truncated": True}
        doc["model_parameters"] = {"truncated": True}
        text = dumps(doc)
    return text


def attributes(item: ExportItem) -> dict[str, dict[str, str]]:
    e = item.event
    attrs = {"event_type": e.event_type, "team_id": e.team_id, "key_alias": e.key_alias}
    return {k: {"DataType": "String", "StringValue": v} for k, v in attrs.items() if v}


def entries(items: Sequence[ExportItem], max_bytes: int) -> list[list[tuple[int, str]]]:
    """(index, body) groups of at most 10 entries and `max_bytes` per request."""
    groups: list[list[tuple[int, str]]] = [[]]
    size = 0
    for index, item in enumerate(items):
        text = body(item, max_bytes)
        n = len(text.encode()) + 512  # attributes
        if groups[-1] and (len(groups[-1]) >= MAX_ENTRIES or size + n > max_bytes):
            groups.append([])
            size = 0
        groups[-1].append((index, text))
        size += n
    return groups


class SqsSink(AwsSink):
    kind = "sqs"

    def __init__(self, ctx: SinkContext) -> None:
        super().__init__(ctx)
        self._sent = SentMemory()

    async def send(self, destination: Destination, items: Sequence[ExportItem]) -> BatchResult:
        opts = destination.options
        result = BatchResult()
        retry: list[str] = []
        todo = [
            i
            for i in range(len(items))
            if f"{destination.key}|{items[i].event.event_id}" not in self._sent
        ]
        pending = [items[i] for i in todo]
        async with mapped_errors(f"sqs {opts['queue_url']}"):
            client = await self._clients.get("sqs", destination.key, opts["aws"])
            for group in entries(pending, opts["max_bytes"]):
                answer = await client.send_message_batch(
                    QueueUrl=opts["queue_url"],
                    Entries=[
                        {
                            "Id": str(n),
                            "MessageBody": text,
                            "MessageAttributes": attributes(pending[n]),
                        }
                        for n, text in group
                    ],
                )
                for ok in answer.get("Successful", []):
                    event = pending[int(ok["Id"])].event
                    self._sent.add(f"{destination.key}|{event.event_id}")
                for bad in answer.get("Failed", []):
                    reason = f"sqs refused: {bad.get('Code')}: {bad.get('Message')}"
                    if bad.get("SenderFault"):
                        result.rejected[todo[int(bad["Id"])]] = reason
                    else:
                        retry.append(reason)
        if retry:
            raise RetryableError(f"{len(retry)} sqs entries failed: {retry[0]}")
        return result


SINK = SinkType(kind="sqs", names=("sqs", "aws_sqs"), destination=destination, create=SqsSink)
