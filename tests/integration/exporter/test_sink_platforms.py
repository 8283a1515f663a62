"""Part A's platforms through a real exporter and NATS to receivers that decode what arrives
as the vendor would: OTLP protobuf for the presets, Datadog's logs and LLM Obs intakes,
Sentry envelopes (sentry-sdk's parser), PostHog's batch API.

One exporter serves every sink at once: each key routes (its `metadata.logging`) to one
platform, every key makes one successful and one failed call, and each receiver is
checked field by field. Global `turn_off_message_logging` is on; only the datadog key
turns content back on for itself (seed 003's example).
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack, asynccontextmanager
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from nats.js import JetStreamContext

from support.receivers import serving
from support.receivers.datadog import DatadogReceiver
from support.receivers.otlp_vendor import OtlpVendorReceiver, VendorSpan
from support.receivers.posthog import PosthogReceiver
from support.receivers.samples import PROMPT, REPLY, completed, failed
from support.receivers.sentry import SentryReceiver
from tollgate_devstack.embedded import StackUrls
from tollgate_exporter.app import create_app
from tollgate_exporter.settings import ExporterSettings
from tollgate_shared import names
from tollgate_shared.config import parse_config
from tollgate_shared.events import LlmRequestFinished
from tollgate_shared.publishing import publish_event
from tollgate_shared.state import KeyState, LoggingCallback, hash_key

OTLP_PRESETS = (
    "langfuse_otel",
    "arize",
    "arize_phoenix",
    "logfire",
    "langtrace",
    "opik",
    "mlflow",
    "wandb",
)


def otlp_vars(name: str, base: str) -> dict[str, str]:
    return {
        "langfuse_otel": {
            "langfuse_public_key": "pk-otel",
            "langfuse_secret_key": "sk-otel",
            "langfuse_otel_host": base,
        },
        "arize": {
            "arize_space_id": "space-1",
            "arize_api_key": "arize-key",
            "arize_http_endpoint": f"{base}/v1/traces",
            "arize_project_name": "proj-arize",
        },
        "arize_phoenix": {
            "phoenix_api_key": "phx-key",
            "phoenix_collector_http_endpoint": base,
            "phoenix_project_name": "proj-phx",
        },
        "logfire": {"logfire_token": "lf-write-token", "logfire_base_url": base},
        "langtrace": {"langtrace_api_key": "lt-key", "langtrace_api_host": base},
        "opik": {
            "opik_api_key": "opik-key",
            "opik_workspace": "ws",
            "opik_project_name": "proj-opik",
            "opik_url_override": base,
        },
        "mlflow": {"mlflow_tracking_uri": base, "mlflow_experiment_id": "7"},
        "wandb": {
            "wandb_api_key": "wb-key",
            "wandb_project_id": "ent/proj-wb",
            "wandb_base_url": base,
        },
    }[name]


# What each preset must carry: (path, headers, resource attributes, span attributes).
def otlp_expectations(name: str) -> tuple[str, dict[str, str], dict[str, Any], dict[str, Any]]:
    basic = base64.b64encode(b"pk-otel:sk-otel").decode()
    wb = base64.b64encode(b"api:wb-key").decode()
    return {
        "langfuse_otel": (
            "api/public/otel/v1/traces",
            {"authorization": f"Basic {basic}"},
            {},
            {"langfuse.observation.type": "generation", "langfuse.session.id": "sess-42"},
        ),
        "arize": (
            "v1/traces",
            {"space_id": "space-1", "api_key": "arize-key"},
            {"model_id": "proj-arize", "openinference.project.name": "proj-arize"},
            {"openinference.span.kind": "LLM", "llm.token_count.prompt": 9},
        ),
        "arize_phoenix": (
            "v1/traces",
            {"authorization": "Bearer phx-key"},
            {"openinference.project.name": "proj-phx"},
            {"openinference.span.kind": "LLM", "session.id": "sess-42"},
        ),
        "logfire": ("v1/traces", {"authorization": "lf-write-token"}, {}, {}),
        "langtrace": ("api/trace", {"x-api-key": "lt-key"}, {}, {}),
        "opik": (
            "v1/private/otel/v1/traces",
            {"authorization": "opik-key", "comet-workspace": "ws", "projectname": "proj-opik"},
            {},
            {},
        ),
        "mlflow": ("v1/traces", {"x-mlflow-experiment-id": "7"}, {}, {}),
        "wandb": (
            "otel/v1/traces",
            {"authorization": f"Basic {wb}", "project_id": "ent/proj-wb"},
            {"wandb.entity": "ent", "wandb.project": "proj-wb"},
            {"openinference.span.kind": "LLM"},
        ),
    }[name]


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def eventually(check: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def exporter(
    stack: StackUrls, litellm: dict[str, Any], env: dict[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    settings = ExporterSettings(
        nats_url=stack.nats_url,
        master_key="sk-master-platforms",
        export_batch_wait_s=0.05,
        export_retry_initial_s=0.05,
        export_retry_max_s=0.2,
        export_timeout_s=2.0,
    )
    app = create_app(settings, parse_config({"litellm_settings": litellm}), env)
    async with (
        LifespanManager(app, startup_timeout=30),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://exporter"
        ) as client,
    ):
        yield client


async def put_key(js: JetStreamContext, plaintext: str, **fields: Any) -> KeyState:
    key = KeyState(token=hash_key(plaintext), **fields)
    kv = await js.key_value(names.KV_KEYS)
    await kv.put(key.token, key.to_json())
    return key


async def key_health(client: httpx.AsyncClient, plaintext: str) -> httpx.Response:
    return await client.post("/key/health", headers={"Authorization": f"Bearer {plaintext}"})


def calls(name: str, key_hash: str) -> tuple[LlmRequestFinished, LlmRequestFinished]:
    common: dict[str, Any] = {
        "key_alias": f"alias-{name}",
        "trace_id": uid(f"trace-{name}"),
        "tags": ["prod", f"sink:{name}"],
        "metadata": {"tags": ["prod"], "experiment": "e-1"},
    }
    return (
        completed("team-int", key_hash, **common),
        failed("team-int", key_hash, **common),
    )


async def test_every_part_a_platform_receives_its_vendor_format(
    provisioned: StackUrls, js: JetStreamContext
) -> None:
    with ExitStack() as stack:
        otlp = stack.enter_context(serving(OtlpVendorReceiver()))
        dd = stack.enter_context(serving(DatadogReceiver()))
        sentry = stack.enter_context(serving(SentryReceiver()))
        ph = stack.enter_context(serving(PosthogReceiver()))
        vars_by_sink: dict[str, dict[str, Any]] = {
            **{n: otlp_vars(n, otlp.base_url) for n in OTLP_PRESETS},
            "datadog": {
                "dd_api_key": "dd-key",
                "dd_agent_host": "127.0.0.1",
                "dd_agent_port": str(dd.port),
                "dd_env": "test",
                # seed 003: this key logs prompts although the gateway redacts globally
                "turn_off_message_logging": False,
            },
            "datadog_llm_observability": {
                "dd_api_key": "dd-key",
                "dd_llmobs_url": f"{dd.base_url}/api/intake/llm-obs/v1/trace/spans",
                "dd_ml_app": "tollgate-app",
            },
            "sentry": {"sentry_dsn": sentry.dsn()},
            "posthog": {"posthog_api_key": "phc_test", "posthog_api_url": ph.base_url},
        }
        events: dict[str, tuple[LlmRequestFinished, LlmRequestFinished]] = {}
        keys: dict[str, str] = {}
        for name, vars_ in vars_by_sink.items():
            keys[name] = uid(f"sk-{name}")
            state = await put_key(
                js,
                keys[name],
                key_alias=f"alias-{name}",
                metadata={
                    "logging": [
                        LoggingCallback(callback_name=name, callback_vars=vars_).model_dump()
                    ]
                },
            )
            events[name] = calls(name, state.token)
        bad_key = uid("sk-posthog-bad")
        bad_state = await put_key(
            js,
            bad_key,
            metadata={
                "logging": [
                    LoggingCallback(
                        callback_name="posthog",
                        callback_vars={
                            "posthog_api_key": "phc_wrong",
                            "posthog_api_url": ph.base_url,
                        },
                    ).model_dump()
                ]
            },
        )
        async with exporter(provisioned, {"turn_off_message_logging": True}, {}) as client:
            for ok, bad in events.values():
                await publish_event(js, ok)
                await publish_event(js, bad)
            await publish_event(js, completed("team-int", bad_state.token))

            def otlp_has(name: str) -> Callable[[], bool]:
                ok, bad = events[name]
                return lambda: bool(
                    otlp.by_request(ok.request_id) and otlp.by_request(bad.request_id)
                )

            for name in OTLP_PRESETS:
                await eventually(otlp_has(name), what=f"{name} spans")
            await eventually(lambda: len(dd.logs) >= 2, what="datadog logs")
            await eventually(lambda: len(dd.spans()) >= 2, what="datadog llm obs spans")
            await eventually(lambda: len(sentry.events) >= 1, what="sentry event")
            await eventually(lambda: len(ph.generations()) >= 2, what="posthog generations")

            async def bad_key_unhealthy() -> dict[str, Any]:
                body: dict[str, Any] = {}
                for _ in range(100):
                    body = (await key_health(client, bad_key)).json()
                    if body["key"] == "unhealthy":
                        break
                    await asyncio.sleep(0.1)
                return body

            bad_health = await bad_key_unhealthy()

    # --- OTLP presets: path, vendor headers, resource and span attributes, per call
    for name in OTLP_PRESETS:
        ok, bad = events[name]
        path, headers, resource, attrs = otlp_expectations(name)
        (got,) = otlp.by_request(ok.request_id)
        (err,) = otlp.by_request(bad.request_id)
        check_otlp(name, got, path, headers, resource, attrs, ok)
        assert err.span.attributes["error.type"] == "RateLimitError", name
        assert err.span.span.status.code == 2, name
    assert PROMPT.encode() not in otlp.all_bytes()  # global redaction holds for every preset

    # --- datadog logs: one log per call, LiteLLM's standard payload as message
    ok, bad = events["datadog"]
    by_id = {m["id"]: m for m in dd.messages()}
    entry = next(e for e in dd.logs if json.loads(e["message"])["id"] == ok.request_id)
    assert entry["ddsource"] == "litellm"
    assert entry["service"] == "litellm-server"
    assert entry["status"] == "info"
    assert "env:test" in entry["ddtags"]
    assert "team:team-int" in entry["ddtags"]
    assert "key_alias:alias-datadog" in entry["ddtags"]
    assert "prod" in entry["ddtags"].split(",")
    msg = by_id[ok.request_id]
    assert msg["model"] == "gpt-4o"
    assert (msg["prompt_tokens"], msg["completion_tokens"], msg["total_tokens"]) == (9, 8, 17)
    assert msg["response_cost"] == 0.000123
    assert msg["response_time"] == 0.85
    assert msg["metadata"]["user_api_key_alias"] == "alias-datadog"
    assert msg["metadata"]["user_api_key_team_id"] == "team-int"
    assert msg["metadata"]["experiment"] == "e-1"
    assert msg["session_id"] == "sess-42"
    assert msg["trace_id"] == ok.trace_id
    assert msg["request_tags"] == ["prod", "sink:datadog"]
    # seed 003: the key turned message logging back on for itself
    assert msg["messages"][1]["content"] == PROMPT
    assert msg["response"]["content"] == REPLY
    failure = by_id[bad.request_id]
    assert failure["status"] == "failure"
    assert failure["error_information"]["error_class"] == "RateLimitError"
    assert "slow down" in failure["error_str"]

    # --- datadog LLM observability: llm spans, metrics, redacted content
    ok, bad = events["datadog_llm_observability"]
    spans = {s["meta"]["metadata"]["request_id"]: s for s in dd.spans()}
    s = spans[ok.request_id]
    assert s["meta"]["kind"] == "llm"
    assert s["status"] == "ok"
    assert s["meta"]["model_name"] == "gpt-4o-2024-08-06"
    assert s["metrics"]["input_tokens"] == 9
    assert s["metrics"]["output_tokens"] == 8
    assert s["metrics"]["total_cost"] == 0.000123
    assert s["duration"] == 850_000_000
    assert s["session_id"] == "sess-42"
    assert "key_alias:alias-datadog_llm_observability" in s["tags"]
    assert "prod" in s["tags"]
    assert s["meta"]["input"]["messages"][0]["content"] == "redacted-by-litellm"
    assert dd.llm_batches[0]["data"]["attributes"]["ml_app"] == "tollgate-app"
    e = spans[bad.request_id]
    assert e["status"] == "error"
    assert e["meta"]["error"]["type"] == "RateLimitError"

    # --- sentry: only the failure, as an error event with the request context, no prompt
    ok, bad = events["sentry"]
    (event,) = sentry.events
    assert event["level"] == "error"
    assert event["exception"]["values"][0]["type"] == "RateLimitError"
    assert "slow down" in event["exception"]["values"][0]["value"]
    assert event["tags"]["key_alias"] == "alias-sentry"
    assert event["tags"]["team_id"] == "team-int"
    ctx = event["contexts"]["llm_request"]
    assert ctx["request_id"] == bad.request_id
    assert ctx["trace_id"] == bad.trace_id
    assert ctx["session_id"] == "sess-42"
    assert ctx["latency_ms"] == 850.0
    assert ctx["request_tags"] == ["prod", "sink:sentry"]
    assert "messages" not in event["extra"]
    assert PROMPT.encode() not in sentry.all_bytes()

    # --- posthog: one $ai_generation per call
    ok, bad = events["posthog"]
    gens = {g["properties"]["$ai_span_id"]: g for g in ph.generations()}
    g = gens[ok.request_id]["properties"]
    assert g["$ai_model"] == "gpt-4o-2024-08-06"
    assert g["$ai_provider"] == "openai"
    assert (g["$ai_input_tokens"], g["$ai_output_tokens"]) == (9, 8)
    assert g["$ai_total_cost_usd"] == 0.000123
    assert g["$ai_latency"] == 0.85
    assert g["$ai_trace_id"] == ok.trace_id
    assert g["$ai_session_id"] == "sess-42"
    assert g["key_alias"] == "alias-posthog"
    assert g["team_id"] == "team-int"
    assert g["request_tags"] == ["prod", "sink:posthog"]
    assert g["metadata"]["experiment"] == "e-1"
    assert "$ai_input" not in g
    f = gens[bad.request_id]["properties"]
    assert f["$ai_is_error"] is True
    assert f["$ai_http_status"] == 429
    assert "slow down" in f["$ai_error"]
    assert PROMPT.encode() not in ph.all_bytes()

    # --- a vendor refusing the payload (401): dead-lettered at once with its answer
    assert bad_health["key"] == "unhealthy", bad_health
    assert "Project API key invalid" in bad_health["logging_callbacks"]["details"]


def check_otlp(
    name: str,
    got: VendorSpan,
    path: str,
    headers: dict[str, str],
    resource: dict[str, Any],
    attrs: dict[str, Any],
    ev: LlmRequestFinished,
) -> None:
    assert got.path.strip("/") == path, name
    for k, v in headers.items():
        assert got.headers.get(k) == v, (name, k)
    for k, v in resource.items():
        assert got.span.resource.get(k) == v, (name, k)
    a = got.span.attributes
    assert a["gen_ai.request.model"] == "gpt-4o", name
    assert a["gen_ai.usage.input_tokens"] == 9, name
    assert a["gen_ai.usage.output_tokens"] == 8, name
    assert a["tollgate.cost.usd"] == 0.000123, name
    assert a["tollgate.key.alias"] == f"alias-{name}", name
    assert a["tollgate.team.id"] == "team-int", name
    assert a["gen_ai.conversation.id"] == "sess-42", name
    assert a["tollgate.trace_id"] == ev.trace_id, name
    assert a["tollgate.tags"] == ["prod", f"sink:{name}"], name
    assert got.span.span.end_time_unix_nano - got.span.span.start_time_unix_nano == 850_000_000
    for k, v in attrs.items():
        assert a.get(k) == v, (name, k, a.get(k))
