"""PostHog's batch capture API (`POST /batch/`): checks the project key and each event's
shape, records `$ai_generation` events as PostHog's LLM analytics reads them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from litestar import Litestar, Request, Response, post

from support.receivers import _Receiver


@dataclass
class PosthogReceiver(_Receiver):
    api_key: str = "phc_test"
    captured: list[dict[str, Any]] = field(default_factory=list)

    def generations(self) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.captured if e["event"] == "$ai_generation"]

    def app(self) -> Litestar:
        rec = self

        @post("/batch/", status_code=200)
        async def batch(request: Request[Any, Any, Any]) -> Response[Any]:
            body, failure = await rec._gate(request)
            if failure is not None:
                return failure
            doc = json.loads(body)
            if doc.get("api_key") != rec.api_key:
                return Response(
                    {"type": "authentication_error", "detail": "Project API key invalid."},
                    status_code=401,
                )
            events = doc.get("batch")
            if not isinstance(events, list):
                return Response({"type": "validation_error", "detail": "batch"}, status_code=400)
            for e in events:
                if not (
                    isinstance(e, dict)
                    and isinstance(e.get("event"), str)
                    and e.get("distinct_id")
                    and isinstance(e.get("properties"), dict)
                ):
                    return Response(
                        {"type": "validation_error", "detail": "event, distinct_id, properties"},
                        status_code=400,
                    )
            with rec._lock:
                rec.captured.extend(events)
            return Response({"status": 1})

        return Litestar([batch])
