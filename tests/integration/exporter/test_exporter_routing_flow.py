"""The exporter against real NATS and real receivers: routing, isolation, redaction, retries."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from nats.js import JetStreamContext

from support.receivers import LangfuseReceiver, OtlpReceiver, WebhookReceiver, serving
from support.receivers.samples import PROMPT, REPLY, completed, failed
from tollgate_devstack.embedded import StackUrls
from tollgate_exporter.app import create_app
from tollgate_exporter.settings import ExporterSettings
from tollgate_shared import names
from tollgate_shared.config import parse_config
from tollgate_shared.events import ExportDeadLettered
from tollgate_shared.publishing import publish_event
from tollgate_shared.sealing import Sealer
from tollgate_shared.state import KeyState, LoggingCallback, TeamState, hash_key

GLOBAL_PK, GLOBAL_SK = "pk-lf-global", "sk-lf-global"
EXPORTER_MASTER_KEY = "sk-master-for-exporter-tests"


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def eventually(check: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.05)


@contextmanager
def receivers(**projects: str) -> Iterator[tuple[LangfuseReceiver, OtlpReceiver, WebhookReceiver]]:
    with ExitStack() as stack:
        lf = stack.enter_context(
            serving(LangfuseReceiver(projects={GLOBAL_PK: GLOBAL_SK, **projects}))
        )
        otlp = stack.enter_context(serving(OtlpReceiver()))
        hook = stack.enter_context(serving(WebhookReceiver(secret="whsec")))
        yield lf, otlp, hook


def env_for(lf: LangfuseReceiver, otlp: OtlpReceiver, hook: WebhookReceiver) -> dict[str, str]:
    return {
        "LANGFUSE_PUBLIC_KEY": GLOBAL_PK,
        "LANGFUSE_SECRET_KEY": GLOBAL_SK,
        "LANGFUSE_HOST": lf.base_url,
        "OTEL_EXPORTER": "otlp_http",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.base_url,
        "OTEL_SERVICE_NAME": "tollgate-test",
        "WEBHOOK_URL": hook.url("global"),
        "WEBHOOK_SECRET": "whsec",
    }


@asynccontextmanager
async def exporter(
    stack: StackUrls, litellm: dict[str, Any], env: dict[str, str], **knobs: Any
) -> AsyncIterator[httpx.AsyncClient]:
    settings = ExporterSettings(
        nats_url=stack.nats_url,
        master_key=EXPORTER_MASTER_KEY,
        export_batch_wait_s=0.05,
        export_retry_initial_s=0.05,
        export_retry_max_s=0.2,
        export_timeout_s=2.0,
        **knobs,
    )
    cfg = parse_config({"litellm_settings": litellm})
    app = create_app(settings, cfg, env)
    async with (
        LifespanManager(app, startup_timeout=30),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://exporter"
        ) as client,
    ):
        assert (await client.get("/health")).status_code == 200
        yield client


async def put_team(js: JetStreamContext, team: TeamState) -> None:
    kv = await js.key_value(names.KV_TEAMS)
    await kv.put(team.team_id, team.to_json())


async def put_key(js: JetStreamContext, plaintext: str, **fields: Any) -> KeyState:
    key = KeyState(token=hash_key(plaintext), **fields)
    kv = await js.key_value(names.KV_KEYS)
    await kv.put(key.token, key.to_json())
    return key


def lf_callback(pk: str, sk: str, host: str, **extra: Any) -> LoggingCallback:
    return LoggingCallback(
        callback_name="langfuse",
        callback_vars={
            "langfuse_public_key": pk,
            "langfuse_secret_key": sk,
            "langfuse_host": host,
            **extra,
        },
    )


async def key_health(client: httpx.AsyncClient, plaintext: str) -> httpx.Response:
    return await client.post("/key/health", headers={"Authorization": f"Bearer {plaintext}"})


def trace_ids(lf: LangfuseReceiver, pk: str) -> set[str]:
    return {t["id"] for t in lf.traces(pk)}


async def test_litellm_langfuse_flow_and_a_genai_span_for_the_same_call(
    provisioned: StackUrls, js: JetStreamContext
) -> None:
    with receivers() as (lf, otlp, hook):
        litellm = {
            "success_callback": ["langfuse"],
            "failure_callback": ["langfuse"],
            "callbacks": ["otel"],
            "langfuse_default_tags": ["cache_hit", "user_api_key_alias", "user_api_key_team_alias"],
        }
        async with exporter(provisioned, litellm, env_for(lf, otlp, hook)):
            trace_id = uid("trace")
            ev = completed(
                None,
                None,
                metadata={
                    "generation_name": "ishaan-generation",
                    "trace_id": trace_id,
                    "trace_user_id": "user-id2",
                    "session_id": "session-1",
                    "tags": ["tag1", "tag2"],
                },
                tags=["tag1", "tag2"],
                session_id="session-1",
                traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            bad = failed(None, None, metadata={"trace_id": uid("trace-f")})
            await publish_event(js, ev)
            await publish_event(js, bad)
            await eventually(lambda: trace_id in trace_ids(lf, GLOBAL_PK), what="langfuse trace")
            await eventually(
                lambda: len(otlp.by_attribute("tollgate.request.id", ev.request_id)) == 1,
                what="otlp span",
            )
            await eventually(
                lambda: any(g.get("level") == "ERROR" for g in lf.generations(GLOBAL_PK)),
                what="error gen",
            )

    (trace,) = [t for t in lf.traces(GLOBAL_PK) if t["id"] == trace_id]
    assert trace["userId"] == "user-id2"
    assert trace["sessionId"] == "session-1"
    assert trace["tags"] == ["tag1", "tag2", "cache_hit:False", "user_api_key_alias:alias-1"]
    (gen,) = [g for g in lf.generations(GLOBAL_PK) if g["traceId"] == trace_id]
    assert gen["name"] == "ishaan-generation"
    assert gen["usage"]["input"] == 9
    assert gen["usage"]["output"] == 8
    assert gen["costDetails"] == {"total": 0.000123}
    assert gen["model"] == "gpt-4o-2024-08-06"
    assert gen["modelParameters"] == {"temperature": 0.2, "max_tokens": 64}
    assert gen["completionStartTime"]
    assert gen["startTime"] < gen["endTime"]
    err = next(g for g in lf.generations(GLOBAL_PK) if g["traceId"] == bad.metadata["trace_id"])
    assert err["level"] == "ERROR"
    assert "slow down" in err["statusMessage"]

    (span,) = otlp.by_attribute("tollgate.request.id", ev.request_id)
    assert span.span.name == "chat gpt-4o"
    assert span.span.kind == 3  # SPAN_KIND_CLIENT
    assert span.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert span.parent_span_id == "00f067aa0ba902b7"
    assert span.resource["service.name"] == "tollgate-test"
    a = span.attributes
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o"
    assert a["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert a["gen_ai.response.id"] == ev.response_id
    assert a["gen_ai.response.finish_reasons"] == ["stop"]
    assert a["gen_ai.usage.input_tokens"] == 9
    assert a["gen_ai.usage.output_tokens"] == 8
    assert a["gen_ai.conversation.id"] == "session-1"
    assert span.span.start_time_unix_nano == int(ev.start_time.timestamp() * 1e6) * 1000
    (fspan,) = otlp.by_attribute("tollgate.request.id", bad.request_id)
    assert fspan.attributes["error.type"] == "RateLimitError"
    assert fspan.span.status.code == 2  # STATUS_CODE_ERROR
    # the webhook was not configured: nothing went there
    assert hook.attempts == 0


async def test_two_teams_two_projects_nothing_crosses_and_disabled_team_gets_nothing(
    provisioned: StackUrls, js: JetStreamContext
) -> None:
    team_a, team_b, team_c = uid("team-a"), uid("team-b"), uid("gdpr")
    with receivers(**{"pk-a": "sk-a", "pk-b": "sk-b"}) as (lf, otlp, hook):
        litellm = {
            "callbacks": ["langfuse", "otel", "webhook"],
            "default_team_settings": [
                {
                    "team_id": team_a,
                    "success_callback": ["langfuse"],
                    "langfuse_public_key": "pk-a",
                    "langfuse_secret": "sk-a",
                },
            ],
        }
        # Team B's credentials arrive as admin stores them: sealed with the master key.
        seal = Sealer(EXPORTER_MASTER_KEY).seal
        await put_team(
            js,
            TeamState(
                team_id=team_b, logging=[lf_callback(seal("pk-b"), seal("sk-b"), lf.base_url)]
            ),
        )
        await put_team(
            js,
            TeamState(
                team_id=team_c,
                logging_disabled=True,
                logging=[lf_callback("pk-a", "sk-a", lf.base_url)],
            ),
        )
        async with exporter(provisioned, litellm, env_for(lf, otlp, hook)):
            evs_a = [completed(team_a) for _ in range(3)]
            evs_b = [completed(team_b) for _ in range(3)]
            ev_c = completed(team_c, metadata={"trace_id": uid("gdpr-trace")})
            control = completed(None)  # global: langfuse + otel + webhook
            for ev in [ev_c, *evs_a, *evs_b, control]:
                await publish_event(js, ev)
            await eventually(lambda: {e.request_id for e in evs_a} <= trace_ids(lf, "pk-a"))
            await eventually(lambda: {e.request_id for e in evs_b} <= trace_ids(lf, "pk-b"))
            await eventually(
                lambda: (
                    control.request_id in trace_ids(lf, GLOBAL_PK)
                    and otlp.by_attribute("tollgate.request.id", control.request_id)
                    and any(e["request_id"] == control.request_id for e in hook.events())
                )
            )

    a_ids, b_ids = {e.request_id for e in evs_a}, {e.request_id for e in evs_b}
    assert trace_ids(lf, "pk-a").isdisjoint(b_ids)
    assert trace_ids(lf, "pk-b").isdisjoint(a_ids)
    assert trace_ids(lf, GLOBAL_PK).isdisjoint(a_ids | b_ids)
    # team settings replace the global callbacks: team A's calls reached neither OTLP nor webhook
    for rid in a_ids | b_ids:
        assert not otlp.by_attribute("tollgate.request.id", rid)
        assert all(e["request_id"] != rid for e in hook.events())
    # the disabled team's call left no byte anywhere
    everything = lf.all_bytes() + otlp.all_bytes() + hook.all_bytes()
    assert ev_c.request_id.encode() not in everything
    assert ev_c.event_id.encode() not in everything
    assert hook.bad_signatures == 0


async def test_key_override_wins_and_settings_changes_apply_live(
    provisioned: StackUrls, js: JetStreamContext
) -> None:
    team = uid("team-k")
    with receivers(**{"pk-team": "sk-team", "pk-key": "sk-key"}) as (lf, otlp, hook):
        await put_team(
            js, TeamState(team_id=team, logging=[lf_callback("pk-team", "sk-team", lf.base_url)])
        )
        override, plain = uid("sk-override"), uid("sk-plain")
        k_over = await put_key(
            js,
            override,
            team_id=team,
            key_alias="over",
            metadata={"logging": [lf_callback("pk-key", "sk-key", lf.base_url).model_dump()]},
        )
        k_plain = await put_key(js, plain, team_id=team, key_alias="plain")
        async with exporter(provisioned, {"callbacks": ["otel"]}, env_for(lf, otlp, hook)) as c:
            ev_over = completed(team, k_over.token)
            ev_plain = completed(team, k_plain.token)
            await publish_event(js, ev_over)
            await publish_event(js, ev_plain)
            await eventually(lambda: ev_over.request_id in trace_ids(lf, "pk-key"))
            await eventually(lambda: ev_plain.request_id in trace_ids(lf, "pk-team"))
            assert ev_over.request_id not in trace_ids(lf, "pk-team")
            assert ev_plain.request_id not in trace_ids(lf, "pk-key")

            health = (await key_health(c, override)).json()
            assert health["key"] == "healthy"
            assert health["logging_callbacks"]["callbacks"] == ["langfuse"]
            assert health["logging_callbacks"]["status"] == "healthy"

            # the team is switched off: within a second, nothing more leaves for it
            await put_team(js, TeamState(team_id=team, logging_disabled=True))
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            while (await key_health(c, plain)).json()["logging_callbacks"]["callbacks"]:
                assert loop.time() - t0 < 1.0, "team setting not applied within a second"
                await asyncio.sleep(0.02)
            late = completed(team, k_plain.token)
            control = completed(None)
            await publish_event(js, late)
            await publish_event(js, control)
            await eventually(
                lambda: bool(otlp.by_attribute("tollgate.request.id", control.request_id))
            )
            assert late.request_id.encode() not in lf.all_bytes() + otlp.all_bytes()

            unknown = await key_health(c, "sk-nobody-has-this")
            assert unknown.status_code == 401
            assert (await c.post("/key/health")).status_code == 401
            master = (await key_health(c, "sk-master-for-exporter-tests")).json()
            assert master["logging_callbacks"]["callbacks"] == ["otel"]


async def test_redaction_leaves_no_prompt_text_in_any_exported_byte(
    provisioned: StackUrls, js: JetStreamContext
) -> None:
    with receivers(**{"pk-open": "sk-open"}) as (lf, otlp, hook):
        opt_in = uid("sk-optin")
        k = await put_key(
            js,
            opt_in,
            metadata={
                "logging": [
                    lf_callback(
                        "pk-open", "sk-open", lf.base_url, turn_off_message_logging=False
                    ).model_dump()
                ]
            },
        )
        litellm = {"callbacks": ["langfuse", "otel", "webhook"], "turn_off_message_logging": True}
        async with exporter(provisioned, litellm, env_for(lf, otlp, hook)):
            evs = [completed(uid("t")), failed(uid("t")), completed(None)]
            opened = completed(None, k.token)
            for ev in [*evs, opened]:
                await publish_event(js, ev)
            await eventually(lambda: opened.request_id in trace_ids(lf, "pk-open"))
            for ev in evs:
                await eventually(
                    lambda ev=ev: (
                        ev.request_id in trace_ids(lf, GLOBAL_PK)
                        and otlp.by_attribute("tollgate.request.id", ev.request_id)
                        and any(e["request_id"] == ev.request_id for e in hook.events())
                    )
                )

    redacted_bytes = lf.raw_for(GLOBAL_PK) + otlp.all_bytes() + hook.all_bytes()
    assert lf.raw_for(GLOBAL_PK)
    assert otlp.all_bytes()
    assert hook.all_bytes()
    for text in (PROMPT, REPLY, "be brief", "plum"):
        assert text.encode() not in redacted_bytes
    assert all(e["content_redacted"] for e in hook.events())
    # the key that opted back in got its content, in its own project only
    (gen,) = lf.generations("pk-open")
    assert PROMPT in json.dumps(gen["input"])
    assert REPLY in json.dumps(gen["output"])
    everything = lf.all_bytes() + otlp.all_bytes() + hook.all_bytes()
    assert everything.count(PROMPT.encode()) == lf.raw_for("pk-open").count(PROMPT.encode())


async def test_failing_destination_loses_nothing_and_delays_no_one(
    provisioned: StackUrls, js: JetStreamContext
) -> None:
    team_down, team_up = uid("team-down"), uid("team-up")
    with ExitStack() as stack:
        down = stack.enter_context(
            serving(LangfuseReceiver(projects={"pk-d": "sk-d"}, fail_status=500))
        )
        up = stack.enter_context(serving(LangfuseReceiver(projects={"pk-u": "sk-u"})))
        await put_team(
            js, TeamState(team_id=team_down, logging=[lf_callback("pk-d", "sk-d", down.base_url)])
        )
        await put_team(
            js, TeamState(team_id=team_up, logging=[lf_callback("pk-u", "sk-u", up.base_url)])
        )
        dl = await js.pull_subscribe(
            names.EXPORT_DEAD_LETTER, durable=None, stream=names.STREAM_EXPORT.name
        )
        async with exporter(
            provisioned, {}, {}, export_retry_attempts=200, export_retry_deadline_s=60.0
        ) as c:
            evs_down = [completed(team_down) for _ in range(5)]
            evs_up = [completed(team_up) for _ in range(5)]
            for a, b in zip(evs_down, evs_up, strict=True):
                await publish_event(js, a)
                await publish_event(js, b)
            await eventually(
                lambda: {e.request_id for e in evs_up} <= trace_ids(up, "pk-u"),
                timeout=5,
                what="healthy destination unaffected",
            )
            await eventually(lambda: down.attempts >= 3, what="retries against the 500s")
            assert trace_ids(down, "pk-d") == set()

            k = uid("sk-down")
            await put_key(js, k, team_id=team_down)
            response = await key_health(c, k)
            while response.status_code == 401:  # the key reaches the exporter's view
                await asyncio.sleep(0.02)
                response = await key_health(c, k)
            report = response.json()
            assert report["key"] == "unhealthy"
            assert "500" in report["logging_callbacks"]["details"]

            down.fail_status = None  # it recovers
            await eventually(
                lambda: {e.request_id for e in evs_down} <= trace_ids(down, "pk-d"),
                timeout=15,
                what="everything delivered after recovery",
            )
            report = (await key_health(c, k)).json()
            assert report["logging_callbacks"]["status"] == "healthy", report
        # nothing was dead-lettered for these events
        mine = {e.event_id for e in evs_down + evs_up}
        try:
            msgs = await dl.fetch(100, timeout=0.5)
        except TimeoutError:
            msgs = []
        dead = [ExportDeadLettered.from_json(m.data) for m in msgs]
        assert not [d for d in dead if d.source_event_id in mine]
        await dl.unsubscribe()
    # each generation arrived once (redelivered batches were de-duplicated by envelope id)
    gens = list(down.generations("pk-d"))
    assert len(gens) == 5


async def test_rejected_credentials_dead_letter_and_key_health_says_so(
    provisioned: StackUrls, js: JetStreamContext
) -> None:
    team = uid("team-badcreds")
    with receivers() as (lf, otlp, hook):
        await put_team(
            js, TeamState(team_id=team, logging=[lf_callback("pk-wrong", "sk-wrong", lf.base_url)])
        )
        k = uid("sk-bad")
        await put_key(js, k, team_id=team)
        sub = await js.subscribe(
            names.EXPORT_DEAD_LETTER, stream=names.STREAM_EXPORT.name, ordered_consumer=True
        )
        async with exporter(provisioned, {}, env_for(lf, otlp, hook)) as c:
            ev = completed(team)
            await publish_event(js, ev)
            record = None
            deadline = asyncio.get_running_loop().time() + 10
            while record is None:
                msg = await sub.next_msg(
                    timeout=max(0.1, deadline - asyncio.get_running_loop().time())
                )
                candidate = ExportDeadLettered.from_json(msg.data)
                if candidate.source_event_id == ev.event_id:
                    record = candidate
            assert record.sink == "langfuse"
            assert record.status_code == 401
            assert record.attempts == 1
            assert "pk-wrong" in record.destination
            assert "sk-wrong" not in record.destination
            assert record.source_subject == ev.subject()
            report = (await key_health(c, k)).json()
            assert report["key"] == "unhealthy"
            assert report["logging_callbacks"]["status"] == "unhealthy"
            assert "dead-lettered" in report["logging_callbacks"]["details"]
            metrics = (await c.get("/metrics")).text
            assert "tollgate_exporter_dead_lettered_total" in metrics
        await sub.unsubscribe()


@pytest.mark.parametrize("missing", ["LANGFUSE_SECRET_KEY"])
async def test_misconfigured_callback_is_reported_by_key_health(
    provisioned: StackUrls, js: JetStreamContext, missing: str
) -> None:
    with receivers() as (lf, otlp, hook):
        env = env_for(lf, otlp, hook)
        env.pop(missing)
        k = uid("sk-miscfg")
        await put_key(js, k)
        async with exporter(provisioned, {"callbacks": ["langfuse"]}, env) as c:
            report = (await key_health(c, k)).json()
    assert report["logging_callbacks"]["status"] == "unhealthy"
    assert "langfuse_secret_key" in report["logging_callbacks"]["details"]
