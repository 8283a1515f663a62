"""gcs_pubsub (gcloud-aio-pubsub, with a service account whose token endpoint is the
receiver's), bigquery (gcloud-aio-bigquery: table created with Tollgate's schema, rows
streamed with insertAll) and supabase (PostgREST) into receivers that validate each request
as Google and Supabase document it; each test reads back what landed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from support.emulators import check_spend_row, destination_of, item, sink_of
from support.receivers import serving
from support.receivers.bigquery import BigqueryReceiver
from support.receivers.gcs_pubsub import PubsubReceiver
from support.receivers.samples import completed, failed
from support.receivers.supabase import SupabaseReceiver
from tollgate_exporter.sinks import PermanentError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pubsub() -> Iterator[PubsubReceiver]:
    with serving(PubsubReceiver()) as r:
        yield r


@pytest.fixture(scope="module")
def bigquery() -> Iterator[BigqueryReceiver]:
    with serving(BigqueryReceiver()) as r:
        yield r


@pytest.fixture(scope="module")
def supabase() -> Iterator[SupabaseReceiver]:
    with serving(SupabaseReceiver()) as r:
        yield r


def service_account(path: Path, token_uri: str) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "proj",
                "private_key_id": "k1",
                "private_key": pem,
                "client_email": "tollgate@proj.iam.gserviceaccount.com",
                "token_uri": token_uri,
            }
        )
    )
    return str(path)


@pytest.mark.parametrize("content", [True, False])
async def test_gcs_pubsub_publishes_spend_log_rows(
    pubsub: PubsubReceiver, tmp_path: Path, content: bool
) -> None:
    account = service_account(tmp_path / "sa.json", f"{pubsub.base_url}/token")
    topic = f"llm-{str(content).lower()}"
    dest = destination_of(
        "gcs_pubsub",
        {"gcs_pubsub_topic_id": topic},
        {
            "GCS_PUBSUB_PROJECT_ID": "proj",
            "GCS_PATH_SERVICE_ACCOUNT": account,
            "GCS_PUBSUB_ENDPOINT": f"{pubsub.base_url}/v1",
        },
    )
    events = [completed("team-a", "h", tags=["x", "y"]), failed("team-a", "h")]
    async with sink_of("gcs_pubsub") as sink:
        await sink.send(dest, [item(e, content) for e in events])
    got = pubsub.decoded(f"projects/proj/topics/{topic}")
    assert [m["request_id"] for m in got] == [e.request_id for e in events]
    check_spend_row(got[0], events[0], content)
    assert got[1]["status"] == "failure"
    assert got[0]["_attributes"] == {
        "event_id": events[0].event_id,
        "event_type": "llm.request.completed.v1",
        "team_id": "team-a",
    }
    assert pubsub.tokens_issued >= 1
    assert not pubsub.invalid


async def test_gcs_pubsub_refusal_is_permanent(pubsub: PubsubReceiver, tmp_path: Path) -> None:
    pubsub.fail_status = 403
    try:
        account = service_account(tmp_path / "sa.json", f"{pubsub.base_url}/token")
        dest = destination_of(
            "gcs_pubsub",
            {"gcs_pubsub_project_id": "p", "gcs_pubsub_topic_id": "t"},
            {"GCS_PATH_SERVICE_ACCOUNT": account, "GCS_PUBSUB_ENDPOINT": f"{pubsub.base_url}/v1"},
        )
        async with sink_of("gcs_pubsub") as sink:
            with pytest.raises(PermanentError, match="403"):
                await sink.send(dest, [item(completed("t"), True)])
    finally:
        pubsub.fail_status = None


@pytest.mark.parametrize("content", [True, False])
async def test_bigquery_creates_the_table_and_streams_rows(
    bigquery: BigqueryReceiver, content: bool
) -> None:
    table = f"calls_{str(content).lower()}"
    dest = destination_of(
        "bigquery",
        {"bigquery_table_id": table},
        {
            "BIGQUERY_PROJECT_ID": "proj",
            "BIGQUERY_DATASET_ID": "tollgate",
            "BIGQUERY_EMULATOR_HOST": f"{bigquery.base_url}/bigquery/v2",
        },
    )
    events = [completed("team-b", "h", tags=["q"]) for _ in range(3)]
    async with sink_of("bigquery") as sink:
        assert not (await sink.send(dest, [item(e, content) for e in events])).rejected
        await sink.send(dest, [item(events[0], content)])  # insertId de-duplicates
    resource = bigquery.tables[f"proj.tollgate.{table}"]
    assert resource["timePartitioning"] == {"type": "DAY", "field": "startTime"}
    rows = bigquery.of(f"proj.tollgate.{table}")
    assert len(rows) == 3
    check_spend_row(rows[0], events[0], content)
    assert not bigquery.invalid


async def test_bigquery_refuses_a_table_lacking_columns(bigquery: BigqueryReceiver) -> None:
    bigquery.tables["proj.tollgate.old"] = {
        "tableReference": {"projectId": "proj", "datasetId": "tollgate", "tableId": "old"},
        "schema": {"fields": [{"name": "request_id", "type": "STRING"}]},
    }
    dest = destination_of(
        "bigquery",
        {
            "bigquery_project_id": "proj",
            "bigquery_dataset_id": "tollgate",
            "bigquery_table_id": "old",
        },
        {"BIGQUERY_EMULATOR_HOST": f"{bigquery.base_url}/bigquery/v2"},
    )
    async with sink_of("bigquery") as sink:
        with pytest.raises(PermanentError, match="lacks columns"):
            await sink.send(dest, [item(completed("t"), True)])


@pytest.mark.parametrize("content", [True, False])
async def test_supabase_one_row_per_call(supabase: SupabaseReceiver, content: bool) -> None:
    table = f"request_logs_{str(content).lower()}"
    dest = destination_of(
        "supabase",
        {"supabase_table_name": table},
        {"SUPABASE_URL": supabase.base_url, "SUPABASE_KEY": supabase.key},
    )
    events = [completed("team-c", "h", tags=["s"]), failed("team-c", "h")]
    async with sink_of("supabase") as sink:
        await sink.send(dest, [item(e, content) for e in events])
        await sink.send(dest, [item(events[0], content)])  # ignored duplicate, not a 409
    rows = supabase.of(table)
    assert [r["request_id"] for r in rows] == [e.request_id for e in events]
    check_spend_row(rows[0], events[0], content)
    assert isinstance(rows[0]["metadata"], dict)  # jsonb, not text
    assert not supabase.invalid


async def test_supabase_wrong_key_is_refused_for_good(supabase: SupabaseReceiver) -> None:
    dest = destination_of("supabase", {"supabase_url": supabase.base_url, "supabase_key": "no"}, {})
    async with sink_of("supabase") as sink:
        with pytest.raises(PermanentError, match="401"):
            await sink.send(dest, [item(completed("t"), True)])
