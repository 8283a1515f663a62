"""OTLP over gRPC (`OTEL_EXPORTER=otlp_grpc`): spans reach a real gRPC trace service."""

from __future__ import annotations

import asyncio
import uuid

import grpc
from asgi_lifespan import LifespanManager
from nats.js import JetStreamContext

from support.receivers import OtlpGrpcReceiver
from support.receivers.samples import completed
from tollgate_devstack.embedded import StackUrls
from tollgate_exporter.app import create_app
from tollgate_exporter.settings import ExporterSettings
from tollgate_shared.config import parse_config
from tollgate_shared.publishing import publish_event


async def test_spans_over_grpc_with_headers_and_retry(
    provisioned: StackUrls, js: JetStreamContext
) -> None:
    receiver = OtlpGrpcReceiver(fail_code=grpc.StatusCode.UNAVAILABLE)
    endpoint = await receiver.start()
    settings = ExporterSettings(
        nats_url=provisioned.nats_url,
        export_batch_wait_s=0.05,
        export_retry_initial_s=0.05,
        export_retry_max_s=0.1,
        export_retry_attempts=50,
    )
    env = {
        "OTEL_EXPORTER": "otlp_grpc",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_HEADERS": "x-team-token=abc123",
    }
    app = create_app(settings, parse_config({"litellm_settings": {"callbacks": ["otel"]}}), env)
    session = f"grpc-{uuid.uuid4().hex[:8]}"
    try:
        async with LifespanManager(app, startup_timeout=30):
            ev = completed(None, session_id=session)
            await publish_event(js, ev)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while len(receiver.metadata) < 2:  # it was refused at least once...
                assert loop.time() < deadline, "no retry against UNAVAILABLE"
                await asyncio.sleep(0.05)
            receiver.fail_code = None  # ...then the collector is back
            while not [
                s for s in receiver.spans() if s.attributes.get("gen_ai.conversation.id") == session
            ]:
                assert loop.time() < deadline, "span never arrived over gRPC"
                await asyncio.sleep(0.05)
    finally:
        await receiver.stop()
    (span,) = [s for s in receiver.spans() if s.attributes.get("gen_ai.conversation.id") == session]
    assert span.span.name == "chat gpt-4o"
    assert span.attributes["tollgate.request.id"] == ev.request_id
    assert receiver.metadata[-1]["x-team-token"] == "abc123"
