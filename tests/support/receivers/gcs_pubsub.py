"""A Pub/Sub receiver: validates `POST /v1/projects/{p}/topics/{t}:publish` as Google
documents it (`{"messages": [{"data": <base64>, "attributes": {str: str}}]}`, at most 1000
messages) with a bearer token it issued from its OAuth token endpoint (`POST /token`, the
service account's `token_uri`, JWT-bearer grant), and answers `messageIds`.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from litestar import Litestar, Request, Response, post
from litestar.params import FromPath

from support.receivers import _Receiver

TOKEN = "ya29.tollgate-test-token"


@dataclass
class PubsubReceiver(_Receiver):
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    invalid: list[str] = field(default_factory=list)
    tokens_issued: int = 0
    require_token: bool = True  # False: an emulator's plain HTTP, as PUBSUB_EMULATOR_HOST

    def decoded(self, topic: str) -> list[dict[str, Any]]:
        """Each message of `topic`: its data decoded as JSON, with `attributes`."""
        with self._lock:
            return [
                {**json.loads(base64.b64decode(m["data"])), "_attributes": m.get("attributes", {})}
                for m in self.messages.get(topic, [])
            ]

    def app(self) -> Litestar:
        rec = self

        @post("/token", status_code=200)
        async def token(request: Request[Any, Any, Any]) -> dict[str, Any]:
            form = await request.form()
            if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
                return {"error": "unsupported_grant_type"}
            rec.tokens_issued += 1
            return {"access_token": TOKEN, "expires_in": 3600, "token_type": "Bearer"}

        @post("/v1/projects/{project:str}/{rest:path}", status_code=200)
        async def publish(
            project: FromPath[str], rest: FromPath[str], request: Request[Any, Any, Any]
        ) -> Response[Any]:
            body, failure = await rec._gate(request)
            if failure is not None:
                return failure
            if rec.require_token and request.headers.get("authorization") != f"Bearer {TOKEN}":
                return Response({"error": {"code": 401}}, status_code=401)
            topic_part = rest.lstrip("/")
            if not topic_part.startswith("topics/") or not topic_part.endswith(":publish"):
                return Response({"error": {"code": 404}}, status_code=404)
            topic = f"projects/{project}/{topic_part.removesuffix(':publish')}"
            try:
                doc = json.loads(body)
                msgs = doc["messages"]
                if not 0 < len(msgs) <= 1000:
                    raise ValueError("between 1 and 1000 messages")
                for m in msgs:
                    base64.b64decode(m["data"], validate=True)
                    attrs = m.get("attributes", {})
                    if not all(isinstance(v, str) for v in attrs.values()):
                        raise ValueError("attribute values must be strings")
            except (ValueError, KeyError, TypeError) as exc:
                rec.invalid.append(str(exc))
                return Response({"error": {"code": 400, "message": str(exc)}}, status_code=400)
            with rec._lock:
                stored = rec.messages.setdefault(topic, [])
                first = len(stored)
                stored.extend(msgs)
            return Response({"messageIds": [str(first + i) for i in range(len(msgs))]})

        return Litestar([token, publish])
