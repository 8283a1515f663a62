"""Datadog receivers: Logs intake v2 (`/api/v2/logs`) and LLM Observability spans
(`/api/intake/llm-obs/v1/trace/spans`), checking `DD-API-KEY` and the documented shapes.

Malformed payloads get the 400 Datadog answers with, so tests can see a dead letter carry
the vendor's answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from litestar import Litestar, Request, Response, post

from support.receivers import _Receiver

_LOG_FIELDS = ("ddsource", "ddtags", "hostname", "message", "service")
_SPAN_FIELDS = {
    "trace_id": str,
    "span_id": str,
    "parent_id": str,
    "name": str,
    "start_ns": int,
    "duration": int,
    "status": str,
    "meta": dict,
    "metrics": dict,
}


def _log_problem(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return "log entry must be an object"
    for f in _LOG_FIELDS:
        if not isinstance(entry.get(f), str):
            return f"{f} must be a string"
    return None


def _span_problem(span: Any) -> str | None:
    if not isinstance(span, dict):
        return "span must be an object"
    for f, t in _SPAN_FIELDS.items():
        if not isinstance(span.get(f), t):
            return f"span.{f} must be {t.__name__}"
    if span["status"] not in ("ok", "error"):
        return "span.status must be ok or error"
    if span["meta"].get("kind") not in ("llm", "workflow", "agent", "tool", "task", "embedding"):
        return "span.meta.kind invalid"
    return None


@dataclass
class DatadogReceiver(_Receiver):
    api_key: str = "dd-key"
    logs: list[dict[str, Any]] = field(default_factory=list)
    llm_batches: list[dict[str, Any]] = field(default_factory=list)

    def messages(self) -> list[dict[str, Any]]:
        """Each log's `message`, decoded (LiteLLM's standard logging payload)."""
        with self._lock:
            return [json.loads(e["message"]) for e in self.logs]

    def spans(self) -> list[dict[str, Any]]:
        with self._lock:
            return [s for b in self.llm_batches for s in b["data"]["attributes"]["spans"]]

    def _auth(self, request: Request[Any, Any, Any]) -> Response[Any] | None:
        if request.headers.get("dd-api-key") != self.api_key:
            return Response({"errors": ["Forbidden"]}, status_code=403)
        return None

    def app(self) -> Litestar:
        rec = self

        @post("/api/v2/logs", status_code=202)
        async def logs(request: Request[Any, Any, Any]) -> Response[Any]:
            body, failure = await rec._gate(request)
            if failure is not None:
                return failure
            if (denied := rec._auth(request)) is not None:
                return denied
            entries = json.loads(body)
            if not isinstance(entries, list) or len(entries) > 1000:
                return Response({"errors": ["payload must be an array of <= 1000 logs"]}, 400)
            for entry in entries:
                if (problem := _log_problem(entry)) is not None:
                    return Response({"errors": [problem]}, status_code=400)
            with rec._lock:
                rec.logs.extend(entries)
            return Response({}, status_code=202)

        @post("/api/intake/llm-obs/v1/trace/spans", status_code=202)
        async def spans(request: Request[Any, Any, Any]) -> Response[Any]:
            body, failure = await rec._gate(request)
            if failure is not None:
                return failure
            if (denied := rec._auth(request)) is not None:
                return denied
            doc = json.loads(body)
            data = doc.get("data") if isinstance(doc, dict) else None
            attrs = data.get("attributes") if isinstance(data, dict) else None
            if not isinstance(attrs, dict) or data.get("type") != "span":
                return Response({"errors": ["data.type must be span"]}, status_code=400)
            if not isinstance(attrs.get("ml_app"), str) or not isinstance(attrs.get("spans"), list):
                return Response({"errors": ["ml_app and spans are required"]}, status_code=400)
            for span in attrs["spans"]:
                if (problem := _span_problem(span)) is not None:
                    return Response({"errors": [problem]}, status_code=400)
            with rec._lock:
                rec.llm_batches.append(doc)
            return Response({}, status_code=202)

        return Litestar([logs, spans])
