"""Part-B sinks end to end: real NATS, the exporter, and a receiver per vendor that decodes
what arrives the way the vendor's API would (its request model where its SDK ships one).

One exporter routes a run of calls at once: every sink globally with
`turn_off_message_logging` on; two teams with their own braintrust / lago / lunary
credentials (isolation); a key that opts back into content for its own LangSmith
project (seed 003's form); a team whose vendors refuse it (dead letters with the
vendor's answer or the reason). Each vendor's test then reads its own receiver.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager
from nats.js import JetStreamContext

from support.receivers import serving
from support.receivers.agentops import AgentopsReceiver
from support.receivers.argilla import ArgillaReceiver
from support.receivers.athina import AthinaReceiver
from support.receivers.braintrust import BraintrustReceiver
from support.receivers.cloudzero import CloudzeroReceiver
from support.receivers.deepeval import DeepevalReceiver
from support.receivers.galileo import GalileoReceiver
from support.receivers.greenscale import GreenscaleReceiver
from support.receivers.helicone import HeliconeReceiver
from support.receivers.http_api import VendorReceiver
from support.receivers.humanloop import HumanloopReceiver
from support.receivers.lago import LagoReceiver
from support.receivers.langsmith import LangsmithReceiver
from support.receivers.literalai import LiteralaiReceiver
from support.receivers.lunary import LunaryReceiver
from support.receivers.openmeter import OpenmeterReceiver
from support.receivers.promptlayer import PromptlayerReceiver
from support.receivers.samples import PROMPT, REPLY, completed, failed
from tollgate_devstack.embedded import StackUrls
from tollgate_exporter.app import create_app
from tollgate_exporter.settings import ExporterSettings
from tollgate_shared import names
from tollgate_shared.config import parse_config
from tollgate_shared.events import ExportDeadLettered, LlmRequestFinished
from tollgate_shared.publishing import connect_nats, publish_event
from tollgate_shared.state import KeyState, LoggingCallback, TeamState, hash_key

pytestmark = pytest.mark.integration

RECEIVERS: dict[str, type[VendorReceiver]] = {
    "langsmith": LangsmithReceiver,
    "lunary": LunaryReceiver,
    "helicone": HeliconeReceiver,
    "deepeval": DeepevalReceiver,
    "athina": AthinaReceiver,
    "braintrust": BraintrustReceiver,
    "humanloop": HumanloopReceiver,
    "literalai": LiteralaiReceiver,
    "promptlayer": PromptlayerReceiver,
    "argilla": ArgillaReceiver,
    "agentops": AgentopsReceiver,
    "openmeter": OpenmeterReceiver,
    "greenscale": GreenscaleReceiver,
    "cloudzero": CloudzeroReceiver,
    "lago": LagoReceiver,
    "galileo": GalileoReceiver,
}
SINKS = tuple(RECEIVERS)
# Metering sinks bill successes only, as LiteLLM's do.
METERING = {"openmeter", "greenscale", "cloudzero", "lago"}


# sink -> its global key's variable, its endpoint's variable, the endpoint's path
GLOBAL_ENV = {
    "langsmith": ("LANGSMITH_API_KEY", "LANGSMITH_BASE_URL", ""),
    "lunary": ("LUNARY_PUBLIC_KEY", "LUNARY_API_URL", ""),
    "helicone": ("HELICONE_API_KEY", "HELICONE_API_BASE", ""),
    "deepeval": ("CONFIDENT_API_KEY", "CONFIDENT_BASE_URL", ""),
    "athina": ("ATHINA_API_KEY", "ATHINA_BASE_URL", ""),
    "braintrust": ("BRAINTRUST_API_KEY", "BRAINTRUST_API_BASE", "/v1"),
    "humanloop": ("HUMANLOOP_API_KEY", "HUMANLOOP_BASE_URL", "/v5"),
    "literalai": ("LITERAL_API_KEY", "LITERAL_API_URL", ""),
    "promptlayer": ("PROMPTLAYER_API_KEY", "PROMPTLAYER_API_BASE", ""),
    "argilla": ("ARGILLA_API_KEY", "ARGILLA_BASE_URL", ""),
    "agentops": ("AGENTOPS_API_KEY", "AGENTOPS_OTLP_ENDPOINT", "/v1/traces"),
    "openmeter": ("OPENMETER_API_KEY", "OPENMETER_API_ENDPOINT", ""),
    "greenscale": ("GREENSCALE_API_KEY", "GREENSCALE_ENDPOINT", "/log"),
    "cloudzero": ("CLOUDZERO_API_KEY", "CLOUDZERO_API_BASE", ""),
    "lago": ("LAGO_API_KEY", "LAGO_API_BASE", ""),
    "galileo": ("GALILEO_API_KEY", "GALILEO_BASE_URL", ""),
}


def env_for(r: dict[str, VendorReceiver]) -> dict[str, str]:
    """Global credentials (tenant `global` at every receiver), as LiteLLM's variables."""
    env = {
        "LANGSMITH_PROJECT": "proj-g",
        "AGENTOPS_AUTH_ENDPOINT": f"{r['agentops'].base_url}/v3/auth/token",
        "CLOUDZERO_CONNECTION_ID": "conn-1",
        "LAGO_API_EVENT_CODE": "llm_tokens",
        "GALILEO_PROJECT_ID": "p1",
        "BRAINTRUST_KEY_TEAM_A": "braintrust-team-a",
        "BRAINTRUST_KEY_TEAM_B": "braintrust-team-b",
    }
    for sink, (key, endpoint, path) in GLOBAL_ENV.items():
        env[key] = f"{sink}-global"
        env[endpoint] = f"{r[sink].base_url}{path}"
    return env


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def eventually(check: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.05)


@dataclass
class Flow:
    receivers: dict[str, VendorReceiver]
    ok: LlmRequestFinished
    bad: LlmRequestFinished
    team_a: LlmRequestFinished
    team_b: LlmRequestFinished
    optout: LlmRequestFinished
    refused: LlmRequestFinished
    dead: list[ExportDeadLettered] = field(default_factory=list)


async def put(js: JetStreamContext, bucket: str, key: str, value: bytes) -> None:
    kv = await js.key_value(bucket)
    await kv.put(key, value)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def flow(provisioned: StackUrls) -> AsyncIterator[Flow]:
    nc = await connect_nats(provisioned.nats_url, "tollgate-tests")
    try:
        async for f in _flow(provisioned, nc.jetstream()):
            yield f
    finally:
        await nc.drain()


async def _flow(provisioned: StackUrls, js: JetStreamContext) -> AsyncIterator[Flow]:
    with ExitStack() as stack:
        r: dict[str, VendorReceiver] = {}
        for sink, cls in RECEIVERS.items():
            keys = {f"{sink}-{t}": t for t in ("global", "team-a", "team-b", "optout")}
            keys.update({f"user-{t}:pw": t for t in ("team-a", "team-b")})  # galileo's login
            r[sink] = stack.enter_context(serving(cls(keys=keys)))
        assert isinstance(r["argilla"], ArgillaReceiver)
        r["argilla"].datasets = {"global": ["litellm-completion"]}
        team_a, team_b, team_c = uid("team-a"), uid("team-b"), uid("team-c")

        def team_callbacks(tag: str) -> list[LoggingCallback]:
            return [
                LoggingCallback(
                    callback_name="braintrust",
                    callback_vars={
                        # seed 003's form: the credential is a reference to the environment
                        "braintrust_api_key": f"os.environ/BRAINTRUST_KEY_TEAM_{tag.upper()}",
                        "braintrust_api_base": f"{r['braintrust'].base_url}/v1",
                    },
                ),
                LoggingCallback(
                    callback_name="lago",
                    callback_type="success",
                    callback_vars={
                        "lago_api_key": f"lago-team-{tag}",
                        "lago_api_base": r["lago"].base_url,
                        "lago_api_event_code": "llm_tokens",
                        "lago_api_charge_by": "team_id",
                    },
                ),
                LoggingCallback(
                    callback_name="galileo",
                    callback_vars={
                        "galileo_username": f"user-team-{tag}",
                        "galileo_password": "pw",
                        "galileo_base_url": r["galileo"].base_url,
                        "galileo_project_id": f"p-{tag}",
                    },
                ),
                LoggingCallback(
                    callback_name="lunary",
                    callback_vars={
                        "lunary_public_key": f"lunary-team-{tag}",
                        "lunary_api_url": r["lunary"].base_url,
                    },
                ),
            ]

        await put(
            js,
            names.KV_TEAMS,
            team_a,
            TeamState(team_id=team_a, logging=team_callbacks("a")).to_json(),
        )
        await put(
            js,
            names.KV_TEAMS,
            team_b,
            TeamState(team_id=team_b, logging=team_callbacks("b")).to_json(),
        )
        refusing = [
            LoggingCallback(
                callback_name="helicone",
                callback_vars={
                    "helicone_api_key": "hc-wrong",
                    "helicone_api_base": r["helicone"].base_url,
                },
            ),
            LoggingCallback(
                callback_name="lago",
                callback_vars={
                    "lago_api_key": "lago-team-a",
                    "lago_api_base": r["lago"].base_url,
                    "lago_api_event_code": "llm_tokens",
                },
            ),
        ]
        refusing.append(
            LoggingCallback(
                callback_name="athina",
                callback_vars={
                    "athina_api_key": "os.environ/ATHINA_KEY_NOBODY_SET",
                    "athina_base_url": r["athina"].base_url,
                },
            )
        )
        await put(js, names.KV_TEAMS, team_c, TeamState(team_id=team_c, logging=refusing).to_json())
        optout_key = KeyState(
            token=hash_key(uid("sk-optout")),
            key_alias="content-on",
            metadata={
                "logging": [
                    {
                        "callback_name": "langsmith",
                        "callback_type": "success_and_failure",
                        "callback_vars": {
                            "langsmith_api_key": "langsmith-optout",
                            "langsmith_base_url": r["langsmith"].base_url,
                            "turn_off_message_logging": False,
                        },
                    }
                ]
            },
        )
        await put(js, names.KV_KEYS, optout_key.token, optout_key.to_json())

        settings = ExporterSettings(
            nats_url=provisioned.nats_url,
            master_key="sk-master-part-b",
            export_batch_wait_s=0.05,
            export_retry_initial_s=0.05,
            export_retry_max_s=0.2,
            export_timeout_s=2.0,
        )
        litellm = {"callbacks": list(SINKS), "turn_off_message_logging": True}
        app = create_app(settings, parse_config({"litellm_settings": litellm}), env_for(r))
        sub = await js.subscribe(
            names.EXPORT_DEAD_LETTER, stream=names.STREAM_EXPORT.name, ordered_consumer=True
        )
        meta = {"greenscale_project": "acme", "greenscale_region": "eu", "run_name": "chat-run"}
        ok = completed(
            None,
            None,
            end_user="cust-1",
            trace_id="trace-part-b",
            tags=["t1", "t2"],
            metadata=meta,
        )
        bad = failed(None, None, end_user="cust-1", tags=["t1"])
        ev_a, ev_b = completed(team_a), completed(team_b)
        optout = completed(None, optout_key.token, key_alias="content-on")
        refused = completed(team_c)
        flow = Flow(r, ok, bad, ev_a, ev_b, optout, refused)
        async with AsyncExitStack() as astack:
            await astack.enter_async_context(LifespanManager(app, startup_timeout=30))
            for ev in (ok, bad, ev_a, ev_b, optout, refused):
                await publish_event(js, ev)

            async def collect() -> None:
                while True:
                    msg = await sub.next_msg(timeout=30)
                    flow.dead.append(ExportDeadLettered.from_json(msg.data))

            collector = asyncio.create_task(collect())
            await eventually(
                lambda: (
                    all(
                        ok.request_id.encode() in r[s].all_bytes() for s in SINKS if s != "agentops"
                    )
                    and bool(r["agentops"].all())
                    and len([d for d in flow.dead if d.source_event_id == refused.event_id]) == 3
                    and len(r["lunary"].of("team-b")) == 2
                ),
                what="every sink's receiver and the refused team's dead letters",
            )
            # Failures and the second team: let the last batches land.
            await eventually(lambda: bad.request_id.encode() in r["langsmith"].all_bytes())
            await asyncio.sleep(0.3)
            collector.cancel()
            await sub.unsubscribe()
            yield flow


def one(records: list[dict[str, Any]], what: str) -> dict[str, Any]:
    assert len(records) == 1, f"{what}: {len(records)} records"
    return records[0]


def by_meta(
    rec: VendorReceiver, tenant: str, rid: str, key: str = "metadata"
) -> list[dict[str, Any]]:
    return [x for x in rec.of(tenant) if (x.get(key) or {}).get("litellm_call_id") == rid]


async def test_langsmith(flow: Flow) -> None:
    rec, ok, bad = flow.receivers["langsmith"], flow.ok, flow.bad
    runs = [
        x
        for x in rec.of("global")
        if x["extra"]["metadata"].get("litellm_call_id") == ok.request_id
    ]
    run = one(runs, "langsmith run")
    assert run["run_type"] == "llm"
    assert run["name"] == "chat-run"
    assert run["session_name"] == "proj-g"
    assert run["inputs"]["model"] == "gpt-4o"
    assert run["inputs"]["messages"] == "redacted-by-litellm"
    usage = run["outputs"]["usage_metadata"]
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_cost"]) == (9, 8, 0.000123)
    m = run["extra"]["metadata"]
    assert m["user_api_key_alias"] == "alias-1"
    assert m["session_id"] == "sess-42"
    assert m["trace_id"] == "trace-part-b"
    assert m["ls_model_name"] == "gpt-4o-2024-08-06"
    assert run["tags"] == ["t1", "t2"]
    assert run["end_time"] > run["start_time"]
    err = one(
        [
            x
            for x in rec.of("global")
            if x["extra"]["metadata"]["litellm_call_id"] == bad.request_id
        ],
        "fail",
    )
    assert "slow down" in err["error"]
    assert err["outputs"] is None
    # seed 003: the key that turned content back on gets it, in its own project only
    mine = one(rec.of("optout"), "opt-out run")
    assert mine["extra"]["metadata"]["litellm_call_id"] == flow.optout.request_id
    assert PROMPT in str(mine["inputs"]["messages"])
    assert REPLY in str(mine["outputs"])
    assert all(
        x["extra"]["metadata"]["litellm_call_id"] != flow.optout.request_id
        for x in rec.of("global")
    )


async def test_lunary(flow: Flow) -> None:
    rec, ok = flow.receivers["lunary"], flow.ok
    start = one(
        [
            e
            for e in rec.of("global")
            if e["event"] == "start" and e["metadata"]["litellm_call_id"] == ok.request_id
        ],
        "start",
    )
    end = one(
        [e for e in rec.of("global") if e["runId"] == start["runId"] and e["event"] == "end"], "end"
    )
    assert start["type"] == "llm"
    assert start["name"] == "gpt-4o-2024-08-06"
    assert start["userId"] == "cust-1"
    assert start["tags"] == ["t1", "t2"]
    assert start["userProps"]["key_alias"] == "alias-1"
    assert start["metadata"]["session_id"] == "sess-42"
    assert end["tokensUsage"] == {"prompt": 9, "completion": 8}
    assert end["cost"] == 0.000123
    assert end["output"]["content"] == "redacted-by-litellm"
    bad_start = one(
        [
            e
            for e in rec.of("global")
            if e.get("metadata", {}).get("litellm_call_id") == flow.bad.request_id
        ],
        "fail start",
    )
    err = one(
        [e for e in rec.of("global") if e["runId"] == bad_start["runId"] and e["event"] == "error"],
        "error",
    )
    assert "slow down" in err["error"]["message"]


async def test_helicone(flow: Flow) -> None:
    rec, ok = flow.receivers["helicone"], flow.ok

    def of(rid: str) -> dict[str, Any]:
        return one(
            [
                x
                for x in rec.of("global")
                if x["providerRequest"]["meta"].get("Helicone-Property-request_id") == rid
            ],
            rid,
        )

    log = of(ok.request_id)
    meta = log["providerRequest"]["meta"]
    assert log["providerRequest"]["json"]["model"] == "gpt-4o"
    assert log["providerResponse"]["json"]["usage"]["prompt_tokens"] == 9
    assert log["providerResponse"]["status"] == 200
    assert meta["Helicone-User-Id"] == "cust-1"
    assert meta["Helicone-Session-Id"] == "sess-42"
    assert meta["Helicone-Property-key_alias"] == "alias-1"
    assert meta["Helicone-Property-cost"] == "0.000123"
    t = log["timing"]
    ms = (
        (t["endTime"]["seconds"] - t["startTime"]["seconds"]) * 1000
        + t["endTime"]["milliseconds"]
        - t["startTime"]["milliseconds"]
    )
    assert ms == 850
    assert t["timeToFirstToken"] == 300
    fail = of(flow.bad.request_id)
    assert fail["providerResponse"]["status"] == 429
    assert "slow down" in fail["providerResponse"]["json"]["error"]["message"]


async def test_deepeval(flow: Flow) -> None:
    rec = flow.receivers["deepeval"]
    trace = one(by_meta(rec, "global", flow.ok.request_id), "trace")
    (span,) = trace["llmSpans"]
    assert span["status"] == "SUCCESS"
    assert span["model"] == "gpt-4o-2024-08-06"
    assert (span["inputTokenCount"], span["outputTokenCount"]) == (9, 8)
    assert trace["tags"] == ["t1", "t2"]
    assert trace["environment"] == "development"
    assert trace["metadata"]["user_api_key_alias"] == "alias-1"
    assert trace["metadata"]["response_cost"] == 0.000123
    assert trace["metadata"]["session_id"] == "sess-42"
    (fspan,) = one(by_meta(rec, "global", flow.bad.request_id), "fail")["llmSpans"]
    assert fspan["status"] == "ERRORED"


async def test_athina(flow: Flow) -> None:
    rec = flow.receivers["athina"]
    log = one(rec.where("global", "external_reference_id", flow.ok.request_id), "log")
    assert log["language_model_id"] == "gpt-4o-2024-08-06"
    assert (log["prompt_tokens"], log["completion_tokens"], log["total_tokens"]) == (9, 8, 17)
    assert log["cost"] == 0.000123
    assert log["response_time"] == 850
    assert log["session_id"] == "sess-42"
    assert log["customer_user_id"] == "cust-1"
    assert log["tags"] == ["t1", "t2"]
    assert log["custom_attributes"]["key_alias"] == "alias-1"
    assert log["prompt"] == "redacted-by-litellm"


async def test_braintrust(flow: Flow) -> None:
    rec = flow.receivers["braintrust"]
    ev = one(by_meta(rec, "global", flow.ok.request_id), "event")
    assert ev["_project"] == "proj-global-litellm"
    assert ev["span_attributes"] == {"name": "Chat Completion", "type": "llm"}
    m = ev["metrics"]
    assert (m["prompt_tokens"], m["completion_tokens"], m["total_cost"]) == (9, 8, 0.000123)
    assert round(m["end"] - m["start"], 3) == 0.85
    assert round(m["time_to_first_token"], 3) == 0.3
    assert ev["metadata"]["user_api_key_alias"] == "alias-1"
    assert ev["metadata"]["model"] == "gpt-4o-2024-08-06"
    assert ev["tags"] == ["t1", "t2"]
    assert ev["input"] == "redacted-by-litellm"


async def test_humanloop(flow: Flow) -> None:
    rec = flow.receivers["humanloop"]
    log = one(by_meta(rec, "global", flow.ok.request_id), "log")
    assert log["path"] == "tollgate/gpt-4o"
    assert log["prompt"]["model"] == "gpt-4o-2024-08-06"
    assert (log["prompt_tokens"], log["output_tokens"], log["prompt_cost"]) == (9, 8, 0.000123)
    assert log["metadata"]["key_alias"] == "alias-1"
    assert log["metadata"]["session_id"] == "sess-42"
    assert log["metadata"]["tags"] == ["t1", "t2"]
    assert log["user"] == "cust-1"
    assert log["output_message"]["content"] == "redacted-by-litellm"


async def test_literalai(flow: Flow) -> None:
    rec = flow.receivers["literalai"]
    step = one(by_meta(rec, "global", flow.ok.request_id), "step")
    g = step["generation"]
    assert step["type"] == "llm"
    assert step["name"] == "gpt-4o-2024-08-06"
    assert (g["inputTokenCount"], g["outputTokenCount"], g["tokenCount"]) == (9, 8, 17)
    assert g["provider"] == "openai"
    assert g["duration"] == 0.85
    assert step["tags"] == ["t1", "t2"]
    assert step["metadata"]["user_api_key_alias"] == "alias-1"
    assert step["metadata"]["response_cost"] == 0.000123
    assert step["metadata"]["trace_id"] == "trace-part-b"


async def test_promptlayer(flow: Flow) -> None:
    rec = flow.receivers["promptlayer"]
    log = one(by_meta(rec, "global", flow.ok.request_id), "log")
    assert (log["provider"], log["model"]) == ("openai", "gpt-4o-2024-08-06")
    assert (log["input_tokens"], log["output_tokens"], log["price"]) == (9, 8, 0.000123)
    assert log["status"] == "SUCCESS"
    assert log["tags"] == ["t1", "t2"]
    assert log["metadata"]["key_alias"] == "alias-1"
    assert log["metadata"]["session_id"] == "sess-42"
    assert one(by_meta(rec, "global", flow.bad.request_id), "fail")["status"] == "ERROR"


async def test_argilla(flow: Flow) -> None:
    rec = flow.receivers["argilla"]
    record = one(rec.where("global", "external_id", flow.ok.request_id), "record")
    assert record["_dataset"] == "ds-global-litellm-completion"
    assert record["fields"] == {
        "user_input": "redacted-by-litellm",
        "llm_output": "redacted-by-litellm",
    }
    m = record["metadata"]
    assert (m["model"], m["prompt_tokens"], m["response_cost"], m["latency_ms"]) == (
        "gpt-4o-2024-08-06",
        9,
        0.000123,
        850,
    )
    assert m["key_alias"] == "alias-1"
    assert m["session_id"] == "sess-42"
    assert m["tags"] == ["t1", "t2"]
    fail = one(rec.where("global", "external_id", flow.bad.request_id), "fail")
    assert fail["metadata"]["status"] == "failure"


async def test_agentops(flow: Flow) -> None:
    rec = flow.receivers["agentops"]
    span = one(
        [
            s
            for s in rec.of("global")
            if s["attributes"]["tollgate.request.id"] == flow.ok.request_id
        ],
        "span",
    )
    assert span["resource"]["project.id"] == "proj-global"
    assert span["resource"]["deployment.environment"] == "production"
    assert span["resource"]["telemetry.sdk.name"] == "agentops"
    a = span["attributes"]
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (9, 8)
    assert a["tollgate.cost.usd"] == 0.000123
    assert a["tollgate.key.alias"] == "alias-1"
    assert a["gen_ai.conversation.id"] == "sess-42"
    assert a["tollgate.tags"] == ["t1", "t2"]
    assert "gen_ai.input.messages" not in a
    fail = one(
        [
            s
            for s in rec.of("global")
            if s["attributes"]["tollgate.request.id"] == flow.bad.request_id
        ],
        "fail",
    )
    assert fail["attributes"]["error.type"] == "RateLimitError"
    assert fail["status"] == 2


async def test_openmeter(flow: Flow) -> None:
    rec = flow.receivers["openmeter"]
    ce = one(rec.where("global", "id", flow.ok.request_id), "cloudevent")
    assert (ce["type"], ce["source"], ce["subject"]) == (
        "litellm_tokens",
        "litellm-proxy",
        "cust-1",
    )
    d = ce["data"]
    assert (d["model"], d["cost"], d["prompt_tokens"], d["completion_tokens"]) == (
        "gpt-4o-2024-08-06",
        0.000123,
        9,
        8,
    )
    assert d["key_alias"] == "alias-1"


async def test_greenscale(flow: Flow) -> None:
    rec = flow.receivers["greenscale"]
    logs = [
        x
        for x in rec.of("global")
        if {"key": "request_id", "value": flow.ok.request_id} in x["tags"]
    ]
    log = one(logs, "usage")
    assert (log["modelId"], log["inputTokenCount"], log["outputTokenCount"]) == (
        "gpt-4o-2024-08-06",
        9,
        8,
    )
    assert log["invocationLatency"] == 850
    assert log["project"] == "acme"
    assert {"key": "region", "value": "eu"} in log["tags"]
    assert {
        "key": "key_alias",
        "value": "alias-1",
    } in log["tags"]
    assert {"key": "cost", "value": "0.000123"} in log["tags"]


async def test_cloudzero(flow: Flow) -> None:
    rec = flow.receivers["cloudzero"]
    row = one(rec.where("global", "resource/tag:request_id", flow.ok.request_id), "row")
    assert (row["cost/cost"], row["usage/amount"], row["usage/units"]) == (
        "0.000123",
        "17",
        "tokens",
    )
    assert row["resource/tag:model"] == "gpt-4o-2024-08-06"
    assert row["resource/tag:key_alias"] == "alias-1"
    assert row["resource/tag:input_tokens"] == "9"
    assert row["resource/service"] == "openai"
    assert row["_connection"] == "conn-1"
    assert row["_operation"] == "sum"


async def test_lago(flow: Flow) -> None:
    rec = flow.receivers["lago"]
    ev = one(rec.where("global", "transaction_id", flow.ok.request_id), "usage event")
    assert ev["external_subscription_id"] == "cust-1"
    assert ev["code"] == "llm_tokens"
    p = ev["properties"]
    assert (
        p["model"],
        p["response_cost"],
        p["prompt_tokens"],
        p["completion_tokens"],
        p["total_tokens"],
    ) == (
        "gpt-4o-2024-08-06",
        0.000123,
        9,
        8,
        17,
    )
    assert int(ev["timestamp"]) == int(flow.ok.end_time.timestamp())  # the model keeps a string


async def test_galileo(flow: Flow) -> None:
    rec = flow.receivers["galileo"]

    def of(tenant: str, rid: str) -> dict[str, Any]:
        return one([x for x in rec.of(tenant) if x["user_metadata"]["request_id"] == rid], rid)

    span = of("global", flow.ok.request_id)
    assert (span["_api"], span["_project"], span["type"]) == ("v2", "p1", "llm")
    assert span["model"] == "gpt-4o-2024-08-06"
    assert span["metrics"] == {
        "duration_ns": 850_000_000,
        "num_input_tokens": 9,
        "num_output_tokens": 8,
    }
    assert span["user_metadata"]["response_cost"] == "0.000123"
    assert span["user_metadata"]["key_alias"] == "alias-1"
    assert span["user_metadata"]["session_id"] == "sess-42"
    assert span["tags"] == ["t1", "t2"]
    assert span["output"]["content"] == "redacted-by-litellm"
    fail = of("global", flow.bad.request_id)
    assert fail["status_code"] == 429
    assert "slow down" in fail["output"]["content"]
    # the enterprise login flow, for team A's own project
    record = of("team-a", flow.team_a.request_id)
    assert (record["_api"], record["_project"], record["latency_ms"]) == ("observe", "p-a", 850)
    assert record["user_metadata"]["team_id"] == flow.team_a.team_id


def where(key: str) -> Callable[[VendorReceiver, str], list[dict[str, Any]]]:
    return lambda rec, rid: rec.where("global", key, rid)


def in_meta(rec: VendorReceiver, rid: str) -> list[dict[str, Any]]:
    return by_meta(rec, "global", rid)


# sink -> how its receiver finds a call's record, and where that record holds the error
# (langsmith, lunary, helicone and galileo: in their own tests)
ERROR_AT: dict[str, tuple[Callable[[VendorReceiver, str], list[dict[str, Any]]], Any]] = {
    "deepeval": (in_meta, lambda x: x["llmSpans"][0]["error"]),
    "athina": (where("external_reference_id"), lambda x: x["custom_attributes"]["error"]),
    "braintrust": (in_meta, lambda x: x["error"]),
    "humanloop": (in_meta, lambda x: x["error"]),
    "literalai": (in_meta, lambda x: x["error"]),
    "promptlayer": (in_meta, lambda x: x["error_message"]),
    "argilla": (where("external_id"), lambda x: x["fields"]["llm_output"]),
}


@pytest.mark.parametrize("sink", sorted(ERROR_AT))
async def test_a_failed_call_arrives_with_its_error(flow: Flow, sink: str) -> None:
    find, error = ERROR_AT[sink]
    assert "slow down" in error(one(find(flow.receivers[sink], flow.bad.request_id), sink))


@pytest.mark.parametrize("sink", sorted(METERING))
async def test_metering_never_bills_a_failed_call(flow: Flow, sink: str) -> None:
    assert flow.bad.request_id.encode() not in flow.receivers[sink].all_bytes()


async def test_teams_credentials_carry_only_their_own_calls(flow: Flow) -> None:
    a, b = flow.team_a, flow.team_b
    bt, lago, lunary = (flow.receivers[s] for s in ("braintrust", "lago", "lunary"))
    assert {x["metadata"]["litellm_call_id"] for x in bt.of("team-a")} == {a.request_id}
    assert {x["metadata"]["litellm_call_id"] for x in bt.of("team-b")} == {b.request_id}
    assert {x["_project"] for x in bt.of("team-a")} == {"proj-team-a-litellm"}
    assert [x["external_subscription_id"] for x in lago.of("team-a")] == [a.team_id]
    assert [x["external_subscription_id"] for x in lago.of("team-b")] == [b.team_id]
    assert {
        e["metadata"]["litellm_call_id"] for e in lunary.of("team-a") if e["event"] == "start"
    } == {a.request_id}
    # a team's own callbacks replace the global ones
    assert [x["user_metadata"]["request_id"] for x in flow.receivers["galileo"].of("team-b")] == [
        b.request_id
    ]
    for sink in set(SINKS) - {"braintrust", "lago", "lunary", "galileo"}:
        assert a.request_id.encode() not in flow.receivers[sink].all_bytes(), sink


async def test_refusals_dead_letter_at_once_with_the_vendors_answer(flow: Flow) -> None:
    letters = {d.sink: d for d in flow.dead if d.source_event_id == flow.refused.event_id}
    assert letters["helicone"].status_code == 401
    assert letters["helicone"].attempts == 1
    assert "invalid api key" in letters["helicone"].error
    assert "hc-wrong" not in letters["helicone"].destination
    assert "no end_user_id" in letters["lago"].error  # LiteLLM's default charge_by, no end user
    # an unset os.environ/ reference: dead-lettered naming it, the literal never sent
    assert "ATHINA_KEY_NOBODY_SET" in letters["athina"].error
    assert b"os.environ/" not in flow.receivers["athina"].all_bytes()


async def test_no_redacted_content_left_tollgate(flow: Flow) -> None:
    for sink in SINKS:
        rec = flow.receivers[sink]
        sent = b"".join(
            body
            for body, h in zip(rec.raw, rec.headers, strict=True)
            if h.get("x-api-key") != "langsmith-optout"
        )
        assert PROMPT.encode() not in sent, sink
        assert REPLY.encode() not in sent, sink
        assert not rec.invalid, (sink, rec.invalid)


BENCH_SINKS = (
    "langsmith",
    "lunary",
    "braintrust",
    "literalai",
    "argilla",
    "openmeter",
    "cloudzero",
    "lago",
    "galileo",
    "athina",
)


@pytest.mark.skipif(
    not os.environ.get("TOLLGATE_EXPORTER_BENCH"),
    reason="throughput figure: TOLLGATE_EXPORTER_BENCH=<events> (not part of ./just test)",
)
async def test_throughput_with_ten_destinations(provisioned: StackUrls) -> None:
    """Events/s through one exporter fanning out to ten vendor destinations at once.

    The events are on the stream before the exporter starts; the clock runs from its
    start until every receiver holds every call. Receivers share the exporter's
    process (threads), so this is a floor.
    """
    count = int(os.environ["TOLLGATE_EXPORTER_BENCH"])
    nc = await connect_nats(provisioned.nats_url, "tollgate-tests")
    js = nc.jetstream()
    with ExitStack() as stack:
        r: dict[str, VendorReceiver] = {}
        for sink in BENCH_SINKS:
            keys = {f"{sink}-global": "global"}
            r[sink] = stack.enter_context(serving(RECEIVERS[sink](keys=keys)))
        assert isinstance(r["argilla"], ArgillaReceiver)
        r["argilla"].datasets = {"global": ["litellm-completion"]}
        events = [completed(end_user="cust-1") for _ in range(count)]
        for ev in events:
            await publish_event(js, ev)
        settings = ExporterSettings(nats_url=provisioned.nats_url, master_key="sk-bench")
        litellm = {"callbacks": list(BENCH_SINKS)}
        env = env_for({s: r.get(s, r["langsmith"]) for s in RECEIVERS})
        app = create_app(settings, parse_config({"litellm_settings": litellm}), env)
        last = events[-1].request_id.encode()
        loop = asyncio.get_running_loop()
        started, cpu = loop.time(), time.process_time()
        async with LifespanManager(app, startup_timeout=30):
            await eventually(
                lambda: (
                    all(len(r[s].all()) >= count for s in BENCH_SINKS if s != "lunary")
                    and len(r["lunary"].all()) >= 2 * count
                ),
                timeout=600,
                what="every destination holding every call",
            )
            elapsed, cpu = loop.time() - started, time.process_time() - cpu
        assert all(last in r[s].all_bytes() for s in BENCH_SINKS)
    await nc.drain()
    print(
        f"\nexporter: {count} events x {len(BENCH_SINKS)} destinations in {elapsed:.1f} s = "
        f"{count / elapsed:.0f} events/s ({count * len(BENCH_SINKS) / elapsed:.0f} deliveries/s); "
        f"{cpu:.1f} CPU s in this process (exporter + receivers): {count / cpu:.0f} events/CPU s"
    )
