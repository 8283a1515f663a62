"""Confident AI's tracing API (`POST /v1/traces`, `CONFIDENT_API_KEY` header), read with
the trace model DeepEval documents (`deepeval/tracing/api.py`, mirrored: the package is
too heavy for a test dependency)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from support.receivers.http_api import VendorReceiver, loads


class ApiSpan(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    uuid: str
    name: str | None = None
    status: Literal["SUCCESS", "ERRORED"]
    type: Literal["base", "agent", "llm", "retriever", "tool"]
    trace_uuid: str = Field(alias="traceUuid")
    parent_uuid: str | None = Field(None, alias="parentUuid")
    start_time: str = Field(alias="startTime")
    end_time: str = Field(alias="endTime")
    input: dict[str, Any] | list[Any] | str | None = None
    output: dict[str, Any] | list[Any] | str | None = None
    error: str | None = None
    model: str | None = None
    input_token_count: int | None = Field(None, alias="inputTokenCount")
    output_token_count: int | None = Field(None, alias="outputTokenCount")


class TraceApi(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    uuid: str
    base_spans: list[ApiSpan] = Field(alias="baseSpans")
    agent_spans: list[ApiSpan] = Field(alias="agentSpans")
    llm_spans: list[ApiSpan] = Field(alias="llmSpans")
    retriever_spans: list[ApiSpan] = Field(alias="retrieverSpans")
    tool_spans: list[ApiSpan] = Field(alias="toolSpans")
    start_time: str = Field(alias="startTime")
    end_time: str = Field(alias="endTime")
    metadata: dict[str, Any] | None = None
    tags: list[str] | None = None
    environment: Literal["production", "development", "staging"] | None = None


@dataclass
class DeepevalReceiver(VendorReceiver):
    key_header = "confident_api_key"
    route = "/v1/traces"

    def decode(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> list[dict[str, Any]]:
        trace = TraceApi.model_validate(loads(body))
        return [trace.model_dump(by_alias=True)]
