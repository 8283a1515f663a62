"""s3 / s3_v2, sqs and dynamodb through aiobotocore into moto's standalone server (one per
module): each test writes calls through the sink and reads back what landed with a
separate client — fields, content only when allowed, partitioned keys, truncation."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from aiobotocore.session import get_session

from support.emulators import check_record, destination_of, item, moto_server, sink_of
from support.receivers.samples import completed, failed
from tollgate_exporter.sinks import PermanentError

pytestmark = pytest.mark.integration

CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest_asyncio.fixture(loop_scope="session")
async def aws(moto: str) -> AsyncIterator[dict[str, Any]]:
    session = get_session()
    async with (
        session.create_client("s3", region_name="us-east-1", endpoint_url=moto, **CREDS) as s3,
        session.create_client("sqs", region_name="us-east-1", endpoint_url=moto, **CREDS) as sqs,
        session.create_client(
            "dynamodb", region_name="us-east-1", endpoint_url=moto, **CREDS
        ) as ddb,
    ):
        yield {"s3": s3, "sqs": sqs, "dynamodb": ddb, "url": moto}


def s3_vars(moto: str, bucket: str, **more: Any) -> dict[str, Any]:
    return {
        "s3_bucket_name": bucket,
        "s3_region_name": "us-east-1",
        "s3_endpoint_url": moto,
        "s3_aws_access_key_id": "os.environ/AWS_ACCESS_KEY_ID",
        "s3_aws_secret_access_key": "testing",
        **more,
    }


@pytest.mark.parametrize("name", ["s3", "s3_v2"])
@pytest.mark.parametrize("content", [True, False])
async def test_s3_one_object_per_call_by_date_and_team(
    aws: dict[str, Any], name: str, content: bool
) -> None:
    bucket = f"logs-{name.replace('_', '-')}-{content}".lower()
    await aws["s3"].create_bucket(Bucket=bucket)
    # os.environ/ in callback vars is resolved by routing; here the env supplies it directly.
    v = s3_vars(aws["url"], bucket, s3_path="tollgate")
    v["s3_aws_access_key_id"] = "testing"
    dest = destination_of(name, v, {})
    ok = completed("team-a", "hash-a", tags=["prod", "chat"])
    bad = failed(None, "hash-b", tags=["prod"])
    async with sink_of("s3") as sink:
        await sink.send(dest, [item(ok, content), item(bad, content)])
        await sink.send(dest, [item(ok, content)])  # a redelivery overwrites, never adds
    listed = await aws["s3"].list_objects_v2(Bucket=bucket)
    keys = sorted(o["Key"] for o in listed["Contents"])
    day = ok.start_time.strftime("%Y-%m-%d")
    assert keys == sorted(
        [
            f"tollgate/date={day}/team=team-a/{ok.event_id}.json",
            f"tollgate/date={bad.start_time:%Y-%m-%d}/team=_/{bad.event_id}.json",
        ]
    )
    for event in (ok, bad):
        key = next(k for k in keys if event.event_id in k)
        got = await aws["s3"].get_object(Bucket=bucket, Key=key)
        doc = json.loads(await got["Body"].read())
        check_record(doc, event, content)
    assert doc["status"] == "failure"
    assert doc["error_information"]["error_class"] == "RateLimitError"


async def test_s3_batched_jsonl_objects(aws: dict[str, Any]) -> None:
    await aws["s3"].create_bucket(Bucket="logs-batched")
    dest = destination_of(
        "s3",
        {"s3_batch_objects": True},
        {
            "S3_BUCKET_NAME": "logs-batched",
            "AWS_ENDPOINT_URL": aws["url"],
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        },
    )
    events = [completed("team-a", tags=[f"n{i}"]) for i in range(5)] + [completed("team-b")]
    async with sink_of("s3") as sink:
        await sink.send(dest, [item(e, True) for e in events])
    listed = await aws["s3"].list_objects_v2(Bucket="logs-batched")
    keys = sorted(o["Key"] for o in listed["Contents"])
    assert len(keys) == 2  # one object per team
    assert all(k.endswith(".jsonl") and k.startswith("date=") for k in keys)
    got = await aws["s3"].get_object(
        Bucket="logs-batched", Key=next(k for k in keys if "team-a" in k)
    )
    lines = (await got["Body"].read()).decode().splitlines()
    assert [json.loads(line)["event_id"] for line in lines] == [e.event_id for e in events[:5]]
    check_record(json.loads(lines[0]), events[0], True)


async def test_s3_missing_bucket_is_refused_for_good(aws: dict[str, Any]) -> None:
    dest = destination_of("s3", s3_vars(aws["url"], "no-such-bucket"), {})
    async with sink_of("s3") as sink:
        with pytest.raises(PermanentError, match="NoSuchBucket"):
            await sink.send(dest, [item(completed("t"), True)])


@pytest.mark.parametrize("content", [True, False])
async def test_sqs_one_message_per_call(aws: dict[str, Any], content: bool) -> None:
    q = await aws["sqs"].create_queue(QueueName=f"calls-{content}")
    url = q["QueueUrl"]
    dest = destination_of(
        "aws_sqs",
        {
            "sqs_queue_url": url,
            "sqs_endpoint_url": aws["url"],
            **{f"sqs_{k}": v for k, v in CREDS.items()},
        },
        {},
    )
    events = [completed("team-a", "h", tags=["x"]) for _ in range(12)] + [failed("team-b")]
    async with sink_of("sqs") as sink:
        result = await sink.send(dest, [item(e, content) for e in events])
    assert not result.rejected
    got: dict[str, Any] = {}
    while len(got) < len(events):
        answer = await aws["sqs"].receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=1
        )
        for m in answer.get("Messages", []):
            doc = json.loads(m["Body"])
            got[doc["event_id"]] = (doc, m["MessageAttributes"])
    assert set(got) == {e.event_id for e in events}
    doc, attrs = got[events[0].event_id]
    check_record(doc, events[0], content)
    assert attrs["team_id"]["StringValue"] == "team-a"
    assert attrs["event_type"]["StringValue"] == "llm.request.completed.v1"


async def test_sqs_oversized_content_is_truncated_with_a_marker(aws: dict[str, Any]) -> None:
    q = await aws["sqs"].create_queue(QueueName="calls-big")
    url = q["QueueUrl"]
    dest = destination_of(
        "sqs",
        {"sqs_queue_url": url, "sqs_endpoint_url": aws["url"], "sqs_max_message_bytes": 8192},
        {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
    )
    big = completed("team-a", messages=[{"role": "user", "content": "x" * 50_000}])
    async with sink_of("sqs") as sink:
        await sink.send(dest, [item(big, True)])
    answer = await aws["sqs"].receive_message(QueueUrl=url, WaitTimeSeconds=1)
    (m,) = answer["Messages"]
    assert len(m["Body"]) <= 8192
    doc = json.loads(m["Body"])
    assert doc["content_truncated"] is True
    assert doc["messages"]["truncated"] is True
    assert doc["messages"]["original_bytes"] > 50_000
    assert doc["total_tokens"] == big.total_tokens
    assert doc["key_alias"] == big.key_alias


@pytest.mark.parametrize("content", [True, False])
async def test_dynamodb_one_item_per_call(aws: dict[str, Any], content: bool) -> None:
    table = f"tollgate-calls-{content}"
    await aws["dynamodb"].create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "request_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "request_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dest = destination_of(
        "dynamodb",
        {"dynamodb_table_name": table},
        {
            "AWS_ENDPOINT_URL": aws["url"],
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "t",
        },
    )
    events = [completed("team-a", "h", tags=["a", "b"]) for _ in range(30)]
    async with sink_of("dynamodb") as sink:
        await sink.send(dest, [item(e, content) for e in events])
        await sink.send(dest, [item(events[0], content)])
    scan = await aws["dynamodb"].scan(TableName=table)
    assert scan["Count"] == 30
    got = await aws["dynamodb"].get_item(
        TableName=table, Key={"request_id": {"S": events[0].request_id}}
    )
    it = got["Item"]
    assert it["spend"]["S"] == str(events[0].spend)
    assert it["response_cost"]["N"] == str(events[0].spend)
    assert it["total_tokens"]["N"] == "17"
    assert it["key_alias"]["S"] == "alias-1"
    assert it["team_id"]["S"] == "team-a"
    assert it["session_id"]["S"] == "sess-42"
    assert [v["S"] for v in it["request_tags"]["L"]] == ["a", "b"]
    assert it["metadata"]["M"]["user_api_key_alias"]["S"] == "alias-1"
    assert it["content_redacted"]["BOOL"] is (not content)
    assert ("messages" in it) is content
