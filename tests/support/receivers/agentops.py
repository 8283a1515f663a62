"""AgentOps: the JWT exchange (`POST /v3/auth/token`) and OTLP/HTTP protobuf traces
(`POST /v1/traces`, bearer JWT); spans are recorded as `ReceivedSpan`s per tenant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Response
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from support.receivers import attr_value
from support.receivers.http_api import Invalid, VendorReceiver, bearer, loads


@dataclass
class AgentopsReceiver(VendorReceiver):
    def tenant(self, headers: dict[str, str]) -> str | None:
        token = bearer(headers) or ""
        return token.removeprefix("jwt-") if token.startswith("jwt-") else None

    def lookup(
        self, method: str, path: str, body: bytes, headers: dict[str, str], query: dict[str, str]
    ) -> Response[Any] | None:
        if path != "/v3/auth/token":
            return None
        tenant = self.keys.get(loads(body).get("api_key", ""))
        if tenant is None:
            return Response({"error": "invalid api key"}, status_code=401)
        return Response({"token": f"jwt-{tenant}", "project_id": f"proj-{tenant}"})

    def decode(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> list[dict[str, Any]]:
        if path != "/v1/traces" or headers.get("content-type") != "application/x-protobuf":
            raise Invalid(f"no route {path} for {headers.get('content-type')}")
        req = ExportTraceServiceRequest.FromString(body)
        out = []
        for rs in req.resource_spans:
            resource = {a.key: attr_value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for span in ss.spans:
                    attrs = {a.key: attr_value(a.value) for a in span.attributes}
                    out.append(
                        {
                            "name": span.name,
                            "attributes": attrs,
                            "resource": resource,
                            "status": span.status.code,
                            "trace_id": span.trace_id.hex(),
                        }
                    )
        return out
