"""Through the front door: openai client -> ingress :4000 -> events -> exporter -> receivers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import httpx
import openai
from nats.js import JetStreamContext

from support.configs import MASTER_KEY, write_config
from support.fake_upstream import fake_upstream
from support.receivers import LangfuseReceiver, OtlpReceiver, serving
from support.system import running_system
from tollgate_devstack.embedded import StackUrls
from tollgate_shared import names
from tollgate_shared.state import KeyState, LoggingCallback, TeamState, hash_key


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def eventually(check: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_team_projects_disabled_team_and_litellm_flow_through_ingress(
    provisioned: StackUrls, js: JetStreamContext, tmp_path: Path
) -> None:
    t1, t2, t3 = uid("team1"), uid("team2"), uid("team3")
    k1, k2, k3 = uid("sk-e2e1"), uid("sk-e2e2"), uid("sk-e2e3")
    with ExitStack() as stack:
        up = stack.enter_context(fake_upstream(reply="exported reply words"))
        lf = stack.enter_context(
            serving(
                LangfuseReceiver(
                    projects={"pk-global": "sk-global", "pk-t1": "sk-t1", "pk-t2": "sk-t2"}
                )
            )
        )
        otlp = stack.enter_context(serving(OtlpReceiver()))
        cfg = write_config(
            tmp_path / "config.yaml",
            up.base_url,
            litellm_settings={
                "success_callback": ["langfuse"],
                "callbacks": ["otel"],
                "langfuse_default_tags": ["user_api_key_alias"],
                "default_team_settings": [
                    {
                        "team_id": t1,
                        "success_callback": ["langfuse"],
                        "langfuse_public_key": "pk-t1",
                        "langfuse_secret": "sk-t1",
                    },
                ],
            },
        )
        teams = await js.key_value(names.KV_TEAMS)
        keys = await js.key_value(names.KV_KEYS)
        for team in (
            TeamState(team_id=t1),
            TeamState(
                team_id=t2,
                logging=[
                    LoggingCallback(
                        callback_name="langfuse",
                        callback_vars={
                            "langfuse_public_key": "pk-t2",
                            "langfuse_secret_key": "sk-t2",
                            "langfuse_host": lf.base_url,
                        },
                    )
                ],
            ),
            TeamState(team_id=t3, logging_disabled=True),
        ):
            await teams.put(team.team_id, team.to_json())
        for plain, team_id in ((k1, t1), (k2, t2), (k3, t3)):
            state = KeyState(token=hash_key(plain), team_id=team_id, key_alias=f"alias-{team_id}")
            await keys.put(state.token, state.to_json())

        env = {
            "LANGFUSE_PUBLIC_KEY": "pk-global",
            "LANGFUSE_SECRET_KEY": "sk-global",
            "LANGFUSE_HOST": lf.base_url,
            "OTEL_EXPORTER": "otlp_http",
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.base_url,
            "TOLLGATE_EXPORT_BATCH_WAIT_S": "0.1",
        }
        with running_system(provisioned, tmp_path, cfg, env, backends=("exporter",)) as system:
            base = f"{system.ingress_url}/v1"

            async def call(key: str, marker: str, **metadata: object) -> None:
                client = openai.AsyncOpenAI(base_url=base, api_key=key, max_retries=0)
                await client.chat.completions.create(
                    model="fake",
                    messages=[{"role": "user", "content": f"hello {marker}"}],
                    extra_body={"metadata": metadata},
                )

            trace_id = uid("trace")
            m1, m2, m3 = uid("m1"), uid("m2"), uid("m3")
            await call(k1, m1)
            await call(k2, m2)
            await call(k3, m3)
            # The master key's call is the marker: published after the disabled team's,
            # and the exporter handles the stream in order, queueing each destination's
            # items in order. Once the marker has reached the global Langfuse project and
            # the collector (the destinations a leak of team 3 would reach), team 3's call
            # has been handled: nothing of it arriving by then means nothing will.
            await call(
                MASTER_KEY,
                "global",
                generation_name="ishaan-generation",
                trace_id=trace_id,
                trace_user_id="user-id2",
                session_id="session-e2e",
                tags=["tag1", "tag2"],
            )

            def traces(pk: str) -> list[dict[str, object]]:
                return lf.traces(pk)

            await eventually(
                lambda: any(t["id"] == trace_id for t in traces("pk-global")),
                what="global langfuse trace",
            )
            await eventually(
                lambda: any(m1 in str(t.get("input")) for t in traces("pk-t1")),
                what="team 1 project",
            )
            await eventually(
                lambda: any(m2 in str(t.get("input")) for t in traces("pk-t2")),
                what="team 2 project",
            )
            await eventually(
                lambda: bool(otlp.by_attribute("gen_ai.conversation.id", "session-e2e")),
                what="otlp span",
            )

            async with httpx.AsyncClient(base_url=system.ingress_url) as http:
                health = await http.post("/key/health", headers={"Authorization": f"Bearer {k2}"})
                unknown = await http.post(
                    "/key/health", headers={"Authorization": "Bearer sk-nope"}
                )

    assert health.status_code == 200, health.text
    body = health.json()
    assert body["key"] == "healthy"
    assert body["logging_callbacks"]["callbacks"] == ["langfuse"]
    assert body["logging_callbacks"]["status"] == "healthy"
    assert unknown.status_code == 401

    assert not any(m2 in str(t.get("input")) for t in traces("pk-t1"))
    assert not any(m1 in str(t.get("input")) for t in traces("pk-t2"))
    everything = lf.all_bytes() + otlp.all_bytes()
    assert m1.encode() not in lf.raw_for("pk-global") + otlp.all_bytes()
    assert m3.encode() not in everything

    (trace,) = [t for t in traces("pk-global") if t["id"] == trace_id]
    assert trace["userId"] == "user-id2"
    assert trace["sessionId"] == "session-e2e"
    assert trace["tags"][:2] == ["tag1", "tag2"]
    (gen,) = [g for g in lf.generations("pk-global") if g["traceId"] == trace_id]
    assert gen["name"] == "ishaan-generation"
    assert gen["usage"]["output"] == 3
    (span,) = otlp.by_attribute("gen_ai.conversation.id", "session-e2e")
    assert span.span.name == "chat fake"
    assert span.attributes["gen_ai.request.model"] == "fake"
    assert span.attributes["gen_ai.usage.output_tokens"] == 3
    assert span.attributes["gen_ai.response.finish_reasons"] == ["stop"]
