"""Sink adapters: Langfuse, OpenTelemetry (OTLP) and generic webhooks."""

from __future__ import annotations

from tollgate_exporter.sinks.base import (
    BatchResult,
    ExportItem,
    PermanentError,
    RetryableError,
    Sink,
    SinkError,
)

__all__ = ["BatchResult", "ExportItem", "PermanentError", "RetryableError", "Sink", "SinkError"]
