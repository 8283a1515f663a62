"""Through the front door: three teams routed to three platforms at once, each receiving only
its own team's calls; seed 003's examples as written (a team callback and a key callback
with `os.environ/` credentials; the global `datadog` with `turn_off_message_logging` and a
key that opts back in)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import httpx
import openai
from nats.js import JetStreamContext

from support.configs import MASTER_KEY, write_config
from support.fake_upstream import fake_upstream
from support.receivers import LangfuseReceiver, serving
from support.receivers.datadog import DatadogReceiver
from support.receivers.otlp_vendor import OtlpVendorReceiver
from support.receivers.posthog import PosthogReceiver
from support.system import running_system
from tollgate_devstack.embedded import StackUrls
from tollgate_shared import names
from tollgate_shared.state import KeyState, LoggingCallback, TeamState, hash_key


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def eventually(check: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def seed_003_langfuse(host: str, secret_var: str = "LANGFUSE_SECRET_KEY") -> LoggingCallback:
    """Seed 003's recommended form: credentials referenced in the proxy's environment."""
    return LoggingCallback(
        callback_name="langfuse",
        callback_type="success",
        callback_vars={
            "langfuse_public_key": "os.environ/LANGFUSE_PUBLIC_KEY",
            "langfuse_secret_key": f"os.environ/{secret_var}",
            "langfuse_host": host,
        },
    )


async def test_three_teams_three_platforms_and_seed_003_as_written(
    provisioned: StackUrls, js: JetStreamContext, tmp_path: Path
) -> None:
    t_ph, t_phx, t_lf = uid("team-posthog"), uid("team-phoenix"), uid("team-langfuse")
    k_ph, k_phx, k_lf = uid("sk-ph"), uid("sk-phx"), uid("sk-lf")
    k_opt_in, k_unset = uid("sk-dd-optin"), uid("sk-unset")
    with ExitStack() as stack:
        up = stack.enter_context(fake_upstream(reply="platform reply words"))
        lf = stack.enter_context(serving(LangfuseReceiver(projects={"pk-env": "sk-env"})))
        dd = stack.enter_context(serving(DatadogReceiver(api_key="dd-global")))
        ph = stack.enter_context(serving(PosthogReceiver(api_key="phc_team")))
        phx = stack.enter_context(
            serving(OtlpVendorReceiver(required_headers={"authorization": "Bearer phx-team"}))
        )
        cfg = write_config(
            tmp_path / "config.yaml",
            up.base_url,
            litellm_settings={"callbacks": ["datadog"], "turn_off_message_logging": True},
        )
        teams = await js.key_value(names.KV_TEAMS)
        keys = await js.key_value(names.KV_KEYS)
        for team in (
            TeamState(
                team_id=t_ph,
                logging=[
                    LoggingCallback(
                        callback_name="posthog",
                        callback_vars={
                            "posthog_api_key": "phc_team",
                            "posthog_api_url": ph.base_url,
                        },
                    )
                ],
            ),
            TeamState(
                team_id=t_phx,
                logging=[
                    LoggingCallback(
                        callback_name="arize_phoenix",
                        callback_vars={
                            "phoenix_api_key": "phx-team",
                            "phoenix_collector_http_endpoint": f"{phx.base_url}/v1/traces",
                            "phoenix_project_name": "team-phx",
                        },
                    )
                ],
            ),
            TeamState(team_id=t_lf, logging=[seed_003_langfuse(lf.base_url)]),
        ):
            await teams.put(team.team_id, team.to_json())
        key_states = [
            KeyState(token=hash_key(k_ph), team_id=t_ph, key_alias="alias-ph"),
            KeyState(token=hash_key(k_phx), team_id=t_phx, key_alias="alias-phx"),
            KeyState(token=hash_key(k_lf), team_id=t_lf, key_alias="alias-lf"),
            KeyState(
                token=hash_key(k_opt_in),
                key_alias="alias-optin",
                metadata={
                    "logging": [
                        {
                            "callback_name": "datadog",
                            "callback_vars": {"turn_off_message_logging": False},
                        }
                    ]
                },
            ),
            KeyState(
                token=hash_key(k_unset),
                key_alias="alias-unset",
                metadata={
                    "logging": [
                        seed_003_langfuse(lf.base_url, "UNSET_LANGFUSE_SECRET").model_dump()
                    ]
                },
            ),
        ]
        for state in key_states:
            await keys.put(state.token, state.to_json())

        env = {
            "LANGFUSE_PUBLIC_KEY": "pk-env",
            "LANGFUSE_SECRET_KEY": "sk-env",
            "DD_API_KEY": "dd-global",
            "DD_AGENT_HOST": "127.0.0.1",
            "DD_AGENT_PORT": str(dd.port),
            "TOLLGATE_EXPORT_BATCH_WAIT_S": "0.1",
        }
        with running_system(provisioned, tmp_path, cfg, env, backends=("exporter",)) as system:
            base = f"{system.ingress_url}/v1"

            async def call(key: str, marker: str) -> None:
                client = openai.AsyncOpenAI(base_url=base, api_key=key, max_retries=0)
                await client.chat.completions.create(
                    model="fake",
                    messages=[{"role": "user", "content": f"hello {marker}"}],
                    extra_body={"metadata": {"tags": [marker]}},
                )

            m_ph, m_phx, m_lf = uid("m-ph"), uid("m-phx"), uid("m-lf")
            m_opt, m_unset, m_global = uid("m-opt"), uid("m-unset"), uid("m-global")
            await call(k_ph, m_ph)
            await call(k_phx, m_phx)
            await call(k_lf, m_lf)
            await call(k_opt_in, m_opt)
            await call(k_unset, m_unset)
            await call(MASTER_KEY, m_global)

            def in_dd(marker: str) -> bool:
                return any(marker in m["request_tags"] for m in dd.messages())

            await eventually(lambda: in_dd(m_global) and in_dd(m_opt), what="datadog logs")
            await eventually(
                lambda: any(m_ph in g["properties"]["request_tags"] for g in ph.generations()),
                what="posthog",
            )
            await eventually(
                lambda: any(
                    m_phx in (s.span.attributes.get("tollgate.tags") or []) for s in phx.received
                ),
                what="phoenix",
            )
            await eventually(
                lambda: any(m_lf in (t.get("tags") or []) for t in lf.traces("pk-env")),
                what="langfuse (os.environ credentials)",
            )
            async with httpx.AsyncClient(base_url=system.ingress_url) as http:
                unset_health: dict[str, object] = {}
                for _ in range(100):
                    unset_health = (
                        await http.post(
                            "/key/health", headers={"Authorization": f"Bearer {k_unset}"}
                        )
                    ).json()
                    if unset_health.get("key") == "unhealthy":
                        break
                    await asyncio.sleep(0.1)
                lf_health = (
                    await http.post("/key/health", headers={"Authorization": f"Bearer {k_lf}"})
                ).json()

    # Each team's calls reached its own platform only.
    own = {m_ph: ph.all_bytes(), m_phx: phx.all_bytes(), m_lf: lf.all_bytes()}
    everything = ph.all_bytes() + phx.all_bytes() + lf.all_bytes() + dd.all_bytes()
    for marker, body in own.items():
        assert marker.encode() in body
        assert everything.count(marker.encode()) == body.count(marker.encode()), marker
    # Team settings replace the global datadog callback.
    assert not any(m in dd.all_bytes() for m in (m_ph.encode(), m_phx.encode(), m_lf.encode()))
    (span,) = [s for s in phx.received if m_phx in s.span.attributes["tollgate.tags"]]
    assert span.span.resource["openinference.project.name"] == "team-phx"
    assert span.span.attributes["tollgate.team.id"] == t_phx
    (gen,) = [g for g in ph.generations() if m_ph in g["properties"]["request_tags"]]
    assert gen["properties"]["team_id"] == t_ph
    assert gen["properties"]["$ai_output_tokens"] == 3

    # Seed 003: os.environ/ credentials resolved from the exporter's environment.
    (trace,) = [t for t in lf.traces("pk-env") if m_lf in (t.get("tags") or [])]
    assert trace["input"] == "redacted-by-litellm"
    assert b"os.environ/" not in b"".join(h.get("authorization", "").encode() for h in lf.headers)
    assert lf_health["key"] == "healthy", lf_health
    # An unset variable: unhealthy, named, and nothing sent.
    assert unset_health["key"] == "unhealthy", unset_health
    assert "UNSET_LANGFUSE_SECRET" in json.dumps(unset_health)
    assert m_unset.encode() not in everything

    # Seed 003's datadog example: globally redacted, the opted-in key logs its prompt.
    by_marker = {m["request_tags"][0]: m for m in dd.messages()}
    assert by_marker[m_global]["messages"] is None
    assert by_marker[m_opt]["messages"][0]["content"] == f"hello {m_opt}"
    assert f"hello {m_global}".encode() not in dd.all_bytes()
