"""Receivers for exported logs: real HTTP servers that decode and record what they get.

`LangfuseReceiver` speaks Langfuse's batch ingestion API (basic auth per
project, 207 answers, de-duplication on envelope ids as Langfuse does);
`OtlpReceiver` decodes OTLP/HTTP protobuf with the OpenTelemetry proto package;
`WebhookReceiver` records JSON webhooks and checks their HMAC signature.
Each can be told to fail (`fail_status`) or to be slow (`latency_s`), and keeps
every raw body it received in `raw`, so tests can search all exported bytes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from litestar import Litestar, Request, Response, post
from litestar.params import FromPath
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import (
    TraceServiceServicer,
    add_TraceServiceServicer_to_server,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from support.fake_upstream import serve_in_thread


@dataclass
class _Receiver:
    fail_status: int | None = None
    latency_s: float = 0.0
    port: int = 0
    raw: list[bytes] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    attempts: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def all_bytes(self) -> bytes:
        with self._lock:
            return b"".join(self.raw)

    async def _gate(self, request: Request[Any, Any, Any]) -> tuple[bytes, Response[Any] | None]:
        body = await request.body()
        with self._lock:
            self.attempts += 1
            self.raw.append(body)
            self.headers.append(dict(request.headers))
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if self.fail_status:
            return body, Response({"error": "injected failure"}, status_code=self.fail_status)
        return body, None


@dataclass
class LangfuseReceiver(_Receiver):
    """Langfuse ingestion: `projects` maps public key -> secret key."""

    projects: dict[str, str] = field(default_factory=dict)
    # public key -> envelope id -> ingestion event (de-duplicated, as Langfuse does)
    events: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def _project(self, request: Request[Any, Any, Any]) -> str | None:
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("basic "):
            return None
        public, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        return public if self.projects.get(public) == secret else None

    def bodies(self, public_key: str, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [
                e["body"] for e in self.events.get(public_key, {}).values() if e["type"] == kind
            ]

    def raw_for(self, public_key: str) -> bytes:
        """Every body sent with `public_key`'s credentials (whether accepted or not)."""
        out = b""
        with self._lock:
            for headers, body in zip(self.headers, self.raw, strict=True):
                auth = headers.get("authorization", "")
                if auth.lower().startswith("basic "):
                    public = base64.b64decode(auth[6:]).decode().partition(":")[0]
                    if public == public_key:
                        out += body
        return out

    def traces(self, public_key: str) -> list[dict[str, Any]]:
        return self.bodies(public_key, "trace-create")

    def generations(self, public_key: str) -> list[dict[str, Any]]:
        return self.bodies(public_key, "generation-create")

    def app(self) -> Litestar:
        rec = self

        @post("/api/public/ingestion", status_code=207)
        async def ingest(request: Request[Any, Any, Any]) -> Response[Any]:
            body, failure = await rec._gate(request)
            if failure is not None:
                return failure
            project = rec._project(request)
            if project is None:
                return Response({"message": "Invalid credentials"}, status_code=401)
            batch = json.loads(body)["batch"]
            successes = []
            with rec._lock:
                store = rec.events.setdefault(project, {})
                for event in batch:
                    store.setdefault(event["id"], event)
                    successes.append({"id": event["id"], "status": 201})
            return Response({"successes": successes, "errors": []}, status_code=207)

        return Litestar([ingest])


def attr_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [attr_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: attr_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


@dataclass
class ReceivedSpan:
    span: Span
    attributes: dict[str, Any]
    resource: dict[str, Any]

    @property
    def trace_id(self) -> str:
        return self.span.trace_id.hex()

    @property
    def span_id(self) -> str:
        return self.span.span_id.hex()

    @property
    def parent_span_id(self) -> str:
        return self.span.parent_span_id.hex()


@dataclass
class OtlpReceiver(_Receiver):
    """OTLP/HTTP traces endpoint (protobuf) at /v1/traces."""

    spans: list[ReceivedSpan] = field(default_factory=list)

    def by_attribute(self, key: str, value: Any) -> list[ReceivedSpan]:
        with self._lock:
            return [s for s in self.spans if s.attributes.get(key) == value]

    def app(self) -> Litestar:
        rec = self

        @post("/v1/traces", status_code=200)
        async def traces(request: Request[Any, Any, Any]) -> Response[bytes]:
            body, failure = await rec._gate(request)
            if failure is not None:
                return failure
            if request.headers.get("content-type") != "application/x-protobuf":
                return Response(b"protobuf only", status_code=415)
            req = ExportTraceServiceRequest.FromString(body)
            with rec._lock:
                for rs in req.resource_spans:
                    resource = {a.key: attr_value(a.value) for a in rs.resource.attributes}
                    for ss in rs.scope_spans:
                        for span in ss.spans:
                            attrs = {a.key: attr_value(a.value) for a in span.attributes}
                            rec.spans.append(ReceivedSpan(span, attrs, resource))
            return Response(
                ExportTraceServiceResponse().SerializeToString(),
                media_type="application/x-protobuf",
            )

        return Litestar([traces])


@dataclass
class WebhookReceiver(_Receiver):
    """JSON webhooks at /hook/{name}; `secret` (if set) must sign each body."""

    secret: str | None = None
    payloads: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0

    def url(self, name: str = "main") -> str:
        return f"{self.base_url}/hook/{name}"

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [e for p in self.payloads for e in p["events"]]

    def app(self) -> Litestar:
        rec = self

        @post("/hook/{name:str}", status_code=200)
        async def hook(name: FromPath[str], request: Request[Any, Any, Any]) -> Response[Any]:
            body, failure = await rec._gate(request)
            if failure is not None:
                return failure
            if rec.secret is not None:
                expected = (
                    "sha256=" + hmac.new(rec.secret.encode(), body, hashlib.sha256).hexdigest()
                )
                got = request.headers.get("x-tollgate-signature", "")
                if not hmac.compare_digest(expected, got):
                    with rec._lock:
                        rec.bad_signatures += 1
                    return Response({"error": "bad signature"}, status_code=401)
            payload = json.loads(body)
            payload["_hook"] = name
            with rec._lock:
                rec.payloads.append(payload)
            return Response({"ok": True})

        return Litestar([hook])


@contextmanager
def serving(receiver: Any) -> Iterator[Any]:
    """Start a receiver's server in a thread; yields the receiver with its port set."""
    with serve_in_thread(receiver.app()) as port:
        receiver.port = port
        yield receiver


class OtlpGrpcReceiver(TraceServiceServicer):
    """OTLP/gRPC trace service on a grpc.aio server (run in the test's event loop)."""

    def __init__(self, fail_code: grpc.StatusCode | None = None) -> None:
        self.fail_code = fail_code
        self.requests: list[ExportTraceServiceRequest] = []
        self.metadata: list[dict[str, str]] = []
        self.port = 0
        self._server: grpc.aio.Server | None = None

    async def Export(  # noqa: N802 (the generated service's method name)
        self, request: ExportTraceServiceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ExportTraceServiceResponse:
        self.metadata.append({k: str(v) for k, v in context.invocation_metadata() or ()})
        if self.fail_code is not None:
            await context.abort(self.fail_code, "injected failure")
        self.requests.append(request)
        return ExportTraceServiceResponse()

    def spans(self) -> list[ReceivedSpan]:
        out = []
        for req in self.requests:
            for rs in req.resource_spans:
                resource = {a.key: attr_value(a.value) for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    out.extend(
                        ReceivedSpan(
                            s, {a.key: attr_value(a.value) for a in s.attributes}, resource
                        )
                        for s in ss.spans
                    )
        return out

    async def start(self) -> str:
        self._server = grpc.aio.server()
        add_TraceServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)
