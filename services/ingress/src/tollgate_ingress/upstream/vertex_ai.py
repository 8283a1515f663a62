"""Vertex AI's Gemini models (`vertex_ai/<model>`): the Gemini wire format at
`<location>-aiplatform.googleapis.com` for `vertex_project`/`vertex_location`, with a bearer
token from a service account (`vertex_credentials`: a JSON file or its text) or the
application-default credentials, minted by google-auth and refreshed before it expires."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any, cast

import google.auth
import google.auth.transport.requests
from google.auth.credentials import Credentials
from google.auth.exceptions import GoogleAuthError
from google.oauth2 import service_account

from tollgate_ingress.routing import Deployment
from tollgate_ingress.upstream.gemini import GeminiAdapter
from tollgate_ingress.upstream.openai import UpstreamError
from tollgate_ingress.upstream.translating import param

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
DEFAULT_LOCATION = "us-central1"


def credentials_from(raw: Any) -> Credentials:
    """Service-account credentials from a path or JSON text (a dict too); ADC when unset."""
    if raw is None:
        found, _project = google.auth.default(scopes=SCOPES)
        return found
    info = raw
    if isinstance(raw, str):
        text = raw.strip()
        if not text.startswith("{"):
            with open(os.path.expanduser(text), encoding="utf-8") as f:
                text = f.read()
        info = json.loads(text)
    from_info = service_account.Credentials.from_service_account_info
    return cast(Credentials, from_info(info, scopes=SCOPES))  # type: ignore[no-untyped-call]


class VertexAdapter(GeminiAdapter):
    provider = "vertex_ai"

    def __init__(self) -> None:
        # One credentials object per deployment (its token cached in it), one refresh at a time.
        self._creds: dict[str, Credentials] = {}
        self._lock = asyncio.Lock()

    def url(self, dep: Deployment, stream: bool) -> str:
        project = param(dep, "vertex_project")
        location = param(dep, "vertex_location") or DEFAULT_LOCATION
        if not project:
            raise UpstreamError(400, "vertex_ai: vertex_project is required in litellm_params")
        base = (dep.params.api_base or f"https://{location}-aiplatform.googleapis.com").rstrip("/")
        model = dep.params.upstream_model
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return (
            f"{base}/v1/projects/{project}/locations/{location}/publishers/google/models/"
            f"{model}:{method}"
        )

    async def auth_headers(self, dep: Deployment) -> dict[str, str]:
        creds = self._creds.get(dep.model_id)
        if creds is None or not creds.valid:
            async with self._lock:
                try:
                    creds = self._creds.get(dep.model_id)
                    if creds is None:
                        raw = param(dep, "vertex_credentials")
                        creds = await asyncio.to_thread(credentials_from, raw)
                        self._creds[dep.model_id] = creds
                    if not creds.valid:
                        # google-auth's refresh is blocking I/O: off the event loop.
                        await asyncio.to_thread(
                            creds.refresh, google.auth.transport.requests.Request()
                        )
                except (GoogleAuthError, OSError, ValueError) as exc:
                    raise UpstreamError(
                        401, f"vertex_ai: no access token from the credentials: {exc}"
                    ) from exc
        return {"authorization": f"Bearer {creds.token}"}


ADAPTER = VertexAdapter()
