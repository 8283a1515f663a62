"""An Elasticsearch receiver: validates `PUT /_index_template/{name}` and `POST|PUT /_bulk`
as Elasticsearch documents them (NDJSON action/document pairs, one JSON object per line, a
final newline, `create` into a data stream matching an installed template) and keeps the
documents per index, answering with the per-item statuses (409 for an `_id` already there).

Answers carry `X-Elastic-Product: Elasticsearch`, which the official client checks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from fnmatch import fnmatch
from typing import Any

from litestar import Litestar, Request, Response, put, route
from litestar.params import FromPath

from support.receivers import _Receiver

HEADERS = {"X-Elastic-Product": "Elasticsearch"}


class Invalid(ValueError):  # noqa: N818 - reads as the answer
    pass


@dataclass
class ElasticsearchReceiver(_Receiver):
    api_key: str = "es-key"
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    docs: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    invalid: list[str] = field(default_factory=list)
    refuse_ids: set[str] = field(default_factory=set)  # answered 400 mapper_parsing_exception

    def documents(self, index: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.docs.get(index, {}).values())

    def _authorized(self, request: Request[Any, Any, Any]) -> bool:
        return request.headers.get("authorization") == f"ApiKey {self.api_key}"

    def bulk(self, body: bytes) -> list[dict[str, Any]]:
        if not body.endswith(b"\n"):
            raise Invalid("bulk body must end with a newline")
        lines = body.decode().split("\n")[:-1]
        if len(lines) % 2:
            raise Invalid("bulk body must be action/document pairs")
        items: list[dict[str, Any]] = []
        for action_line, doc_line in zip(lines[::2], lines[1::2], strict=True):
            action = json.loads(action_line)
            doc = json.loads(doc_line)
            if list(action) != ["create"]:
                raise Invalid(f"a data stream takes only create actions, got {list(action)}")
            meta = action["create"]
            index, doc_id = meta["_index"], meta["_id"]
            if not any(
                fnmatch(index, p) and "data_stream" in t
                for t in self.templates.values()
                for p in t["index_patterns"]
            ):
                raise Invalid(f"no data stream template matches {index}")
            if "@timestamp" not in doc:
                raise Invalid("a data stream document needs @timestamp")
            stored = self.docs.setdefault(index, {})
            if doc_id in self.refuse_ids:
                status, error = 400, {"type": "mapper_parsing_exception"}
            elif doc_id in stored:
                status, error = 409, {"type": "version_conflict_engine_exception"}
            else:
                stored[doc_id] = doc
                status, error = 201, None
            outcome: dict[str, Any] = {"_index": index, "_id": doc_id, "status": status}
            if error:
                outcome["error"] = error
            items.append({"create": outcome})
        return items

    def app(self) -> Litestar:
        rec = self

        @put("/_index_template/{name:str}")
        async def template(name: FromPath[str], request: Request[Any, Any, Any]) -> Response[Any]:
            body, failure = await rec._gate(request)
            if failure is not None:
                return failure
            if not rec._authorized(request):
                return Response({"error": "unauthorized"}, status_code=401, headers=HEADERS)
            doc = json.loads(body)
            if not doc.get("index_patterns") or "template" not in doc:
                return Response({"error": "bad template"}, status_code=400, headers=HEADERS)
            with rec._lock:
                rec.templates[name] = doc
            return Response({"acknowledged": True}, headers=HEADERS)

        @route("/_bulk", http_method=["POST", "PUT"], status_code=200)
        async def bulk(request: Request[Any, Any, Any]) -> Response[Any]:
            body, failure = await rec._gate(request)
            if failure is not None:
                return Response(
                    {"error": "injected"}, status_code=failure.status_code, headers=HEADERS
                )
            if not rec._authorized(request):
                return Response({"error": "unauthorized"}, status_code=401, headers=HEADERS)
            if "x-ndjson" not in request.headers.get("content-type", ""):
                return Response({"error": "bulk needs NDJSON"}, status_code=400, headers=HEADERS)
            try:
                with rec._lock:
                    items = rec.bulk(body)
            except (Invalid, ValueError, KeyError) as exc:
                rec.invalid.append(str(exc))
                return Response({"error": str(exc)}, status_code=400, headers=HEADERS)
            errors = any(next(iter(i.values()))["status"] >= 300 for i in items)
            return Response({"took": 1, "errors": errors, "items": items}, headers=HEADERS)

        return Litestar([template, bulk])
