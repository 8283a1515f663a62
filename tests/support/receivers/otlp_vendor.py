"""An OTLP/HTTP receiver on any path, recording each request's path and headers with its spans.

The OTLP presets (Langfuse OTEL, Arize, Phoenix, Logfire, Langtrace, Opik, MLflow, Weave)
post protobuf `ExportTraceServiceRequest`s to their vendor's traces path with the
vendor's auth headers; this decodes them as those collectors do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from litestar import Litestar, Request, Response, post
from litestar.params import FromPath
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from support.receivers import ReceivedSpan, _Receiver, attr_value


@dataclass
class VendorSpan:
    path: str
    headers: dict[str, str]
    span: ReceivedSpan


@dataclass
class OtlpVendorReceiver(_Receiver):
    """Accepts OTLP/HTTP protobuf on every path; `required_headers` must be present."""

    required_headers: dict[str, str] = field(default_factory=dict)
    received: list[VendorSpan] = field(default_factory=list)

    def by_request(self, request_id: str) -> list[VendorSpan]:
        with self._lock:
            return [
                s
                for s in self.received
                if s.span.attributes.get("tollgate.request.id") == request_id
            ]

    def app(self) -> Litestar:
        rec = self

        @post("/{path:path}", status_code=200)
        async def traces(path: FromPath[str], request: Request[Any, Any, Any]) -> Response[Any]:
            body, failure = await rec._gate(request)
            if failure is not None:
                return failure
            headers = {k.lower(): v for k, v in request.headers.items()}
            for k, v in rec.required_headers.items():
                if headers.get(k.lower()) != v:
                    return Response({"error": f"bad or missing {k}"}, status_code=401)
            if headers.get("content-type") != "application/x-protobuf":
                return Response({"error": "protobuf only"}, status_code=415)
            req = ExportTraceServiceRequest.FromString(body)
            with rec._lock:
                for rs in req.resource_spans:
                    resource = {a.key: attr_value(a.value) for a in rs.resource.attributes}
                    for ss in rs.scope_spans:
                        for span in ss.spans:
                            attrs = {a.key: attr_value(a.value) for a in span.attributes}
                            rec.received.append(
                                VendorSpan(path, headers, ReceivedSpan(span, attrs, resource))
                            )
            return Response(
                ExportTraceServiceResponse().SerializeToString(),
                media_type="application/x-protobuf",
            )

        return Litestar([traces])
