"""An OTLP/HTTP collector that takes metrics too: `/v1/metrics` (protobuf) decoded with the
OpenTelemetry proto package beside `OtlpReceiver`'s `/v1/traces`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from litestar import Litestar, Request, Response, post
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from support.receivers import OtlpReceiver, attr_value


@dataclass(frozen=True)
class HistogramPoint:
    """One histogram data point as a collector decodes it."""

    name: str
    unit: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str
    count: int
    sum: float
    bucket_counts: list[int]
    explicit_bounds: list[float]
    min: float
    max: float
    delta: bool
    start_time_unix_nano: int
    time_unix_nano: int


@dataclass
class OtlpMetricsReceiver(OtlpReceiver):
    """OTLP/HTTP traces and metrics; only histograms are kept (what the exporter sends)."""

    points: list[HistogramPoint] = field(default_factory=list)
    metric_requests: int = 0

    def histogram(self, name: str, **attributes: Any) -> list[HistogramPoint]:
        """The points of `name` whose attributes include `attributes`."""
        with self._lock:
            return [
                p
                for p in self.points
                if p.name == name and all(p.attributes.get(k) == v for k, v in attributes.items())
            ]

    def app(self) -> Litestar:
        rec = self
        app = super().app()

        @post("/v1/metrics", status_code=200)
        async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
            body, failure = await rec._gate(request)
            if failure is not None:
                return failure
            if request.headers.get("content-type") != "application/x-protobuf":
                return Response(b"protobuf only", status_code=415)
            req = ExportMetricsServiceRequest.FromString(body)
            with rec._lock:
                rec.metric_requests += 1
                for rm in req.resource_metrics:
                    resource = {a.key: attr_value(a.value) for a in rm.resource.attributes}
                    for sm in rm.scope_metrics:
                        for m in sm.metrics:
                            if m.WhichOneof("data") != "histogram":
                                continue
                            delta = (
                                m.histogram.aggregation_temporality
                                == AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
                            )
                            rec.points.extend(
                                HistogramPoint(
                                    name=m.name,
                                    unit=m.unit,
                                    attributes={a.key: attr_value(a.value) for a in p.attributes},
                                    resource=resource,
                                    scope=sm.scope.name,
                                    count=p.count,
                                    sum=p.sum,
                                    bucket_counts=list(p.bucket_counts),
                                    explicit_bounds=list(p.explicit_bounds),
                                    min=p.min,
                                    max=p.max,
                                    delta=delta,
                                    start_time_unix_nano=p.start_time_unix_nano,
                                    time_unix_nano=p.time_unix_nano,
                                )
                                for p in m.histogram.data_points
                            )
            return Response(
                ExportMetricsServiceResponse().SerializeToString(),
                media_type="application/x-protobuf",
            )

        app.register(metrics)
        return app
