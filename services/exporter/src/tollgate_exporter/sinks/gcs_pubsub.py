"""`gcs_pubsub`: one Pub/Sub message per call on a topic, published with gcloud-aio-pubsub
(`projects/{project}/topics/{topic}:publish`, data base64-encoded, up to 1000 messages a
request), in the shape LiteLLM documents as ready for a BigQuery subscription: the spend
log row (`_google.SPEND_LOG_SCHEMA`) as JSON. Attributes `event_id`, `event_type`,
`team_id` let subscribers filter; `event_id` lets them de-duplicate a redelivery.

Settings: `GCS_PUBSUB_PROJECT_ID`, `GCS_PUBSUB_TOPIC_ID`, `GCS_PATH_SERVICE_ACCOUNT` (or the
callback variables of those names in lower case); `PUBSUB_EMULATOR_HOST` for the emulator,
`GCS_PUBSUB_ENDPOINT` for another endpoint (with authentication).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from gcloud.aio.pubsub import PublisherClient, PubsubMessage

from tollgate_exporter.destinations import Destination, digest
from tollgate_exporter.sinks._google import (
    GoogleSink,
    google_settings,
    service_account_problem,
    spend_log_row,
)
from tollgate_exporter.sinks._storage import SentMemory, Settings, mapped_errors
from tollgate_exporter.sinks.base import BatchResult, ExportItem, SinkContext, SinkType

MAX_MESSAGES = 1000
MAX_BYTES = 9_000_000  # Pub/Sub takes 10 MB per publish request


def destination(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    s = Settings(vars_, env)
    project = s.get(("gcs_pubsub_project_id",), ("GCS_PUBSUB_PROJECT_ID",))
    topic = s.get(("gcs_pubsub_topic_id",), ("GCS_PUBSUB_TOPIC_ID",))
    if not project or not topic:
        return f"{name} needs gcs_pubsub_project_id and gcs_pubsub_topic_id (GCS_PUBSUB_*)"
    google = google_settings(s, "gcs_pubsub", "GCS_PUBSUB_ENDPOINT", "PUBSUB_EMULATOR_HOST")
    problem = service_account_problem(name, google)
    if problem:
        return problem
    options = {"topic": PublisherClient.topic_path(project, topic), **google}
    return Destination(
        "gcs_pubsub",
        f"gcs_pubsub:{digest(options)}",
        f"gcs_pubsub {options['topic']} {google['api_root'] or ''}".rstrip(),
        options,
    )


def message(item: ExportItem) -> PubsubMessage:
    e = item.event
    attributes = {"event_id": e.event_id, "event_type": e.event_type, "team_id": e.team_id or ""}
    return PubsubMessage(json.dumps(spend_log_row(item)), **attributes)


class GcsPubsubSink(GoogleSink):
    kind = "gcs_pubsub"

    def __init__(self, ctx: SinkContext) -> None:
        super().__init__(ctx)
        self._sent = SentMemory()

    async def send(self, destination: Destination, items: Sequence[ExportItem]) -> BatchResult:
        opts = destination.options
        client: PublisherClient = self._clients.get(
            destination.key,
            lambda session: PublisherClient(
                service_file=opts["service_account"],
                session=session,  # type: ignore[arg-type]  # aiohttp's, as the aio build takes
                api_root=opts["api_root"],
                api_is_dev=opts["dev"] if opts["api_root"] else None,
            ),
        )
        todo = [i for i in items if f"{destination.key}|{i.event.event_id}" not in self._sent]
        async with mapped_errors(f"pubsub {opts['topic']}"):
            chunk: list[ExportItem] = []
            size = 0
            for item in [*todo, None]:
                msg = message(item) if item is not None else None
                n = len(json.dumps(msg.to_repr())) if msg is not None else 0
                if chunk and (msg is None or len(chunk) >= MAX_MESSAGES or size + n > MAX_BYTES):
                    await client.publish(
                        opts["topic"], [message(i) for i in chunk], timeout=self._timeout
                    )
                    for sent in chunk:  # a retry re-publishes only what was not accepted
                        self._sent.add(f"{destination.key}|{sent.event.event_id}")
                    chunk, size = [], 0
                if item is not None:
                    chunk.append(item)
                    size += n
        return BatchResult()


SINK = SinkType(
    kind="gcs_pubsub", names=("gcs_pubsub",), destination=destination, create=GcsPubsubSink
)
