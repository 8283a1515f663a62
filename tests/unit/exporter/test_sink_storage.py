"""Storage, queue, search and database sinks without I/O: destinations from LiteLLM's
settings (callback variables, `s3_callback_params`, environment), why a destination is
unusable, and the shapes each sink stores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from support.receivers.samples import PROMPT, completed
from tollgate_exporter.content import redact
from tollgate_exporter.destinations import Destination
from tollgate_exporter.routing import CallbackSpec, callback_settings, destination_for
from tollgate_exporter.sinks import ExportItem, dynamodb, elasticsearch, registry, s3, sqs
from tollgate_exporter.sinks._google import SPEND_LOG_SCHEMA, spend_log_row
from tollgate_exporter.sinks._storage import object_key, record
from tollgate_shared.config import parse_config

pytestmark = pytest.mark.unit


def dest(name: str, vars_: dict[str, Any], env: dict[str, str] | None = None) -> Destination:
    d = registry().destination_for(name, vars_, {}, env or {})
    assert isinstance(d, Destination), d
    return d


@pytest.mark.parametrize(
    ("name", "vars_", "needs"),
    [
        ("s3", {}, "s3_bucket_name"),
        ("s3_v2", {}, "s3_bucket_name"),
        ("sqs", {}, "sqs_queue_url"),
        ("aws_sqs", {}, "sqs_queue_url"),
        ("dynamodb", {}, "dynamodb_table_name"),
        ("gcs_bucket", {}, "gcs_bucket_name"),
        ("gcs_bucket", {"gcs_bucket_name": "b"}, "gcs_path_service_account"),
        ("gcs_pubsub", {"gcs_pubsub_topic_id": "t"}, "gcs_pubsub_project_id"),
        ("bigquery", {"bigquery_project_id": "p"}, "bigquery_dataset_id"),
        ("azure_storage", {"azure_storage_account_name": "a"}, "azure_storage_file_system"),
        (
            "azure_storage",
            {"azure_storage_account_name": "a", "azure_storage_file_system": "c"},
            "azure_storage_account_key",
        ),
        ("elasticsearch", {}, "elasticsearch_url"),
        ("supabase", {"supabase_url": "https://x.supabase.co"}, "supabase_key"),
    ],
)
def test_a_missing_setting_is_a_reason_naming_it(
    name: str, vars_: dict[str, Any], needs: str
) -> None:
    why = registry().destination_for(name, vars_, {}, {})
    assert isinstance(why, str)
    assert needs in why


def test_s3_callback_params_are_the_global_settings_of_s3_and_s3_v2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA1")
    cfg = parse_config(
        {
            "litellm_settings": {
                "callbacks": ["s3_v2"],
                "s3_callback_params": {
                    "s3_bucket_name": "logs",
                    "s3_region_name": "eu-west-1",
                    "s3_aws_access_key_id": "os.environ/AWS_ACCESS_KEY_ID",
                    "s3_path": "llm",
                },
            }
        }
    )
    named = callback_settings(cfg.litellm_settings)
    for name in ("s3", "s3_v2"):
        spec = CallbackSpec(name, "success_and_failure", {}, "global")
        d, unusable = destination_for(spec, {}, named, registry())
        assert isinstance(d, Destination), d
        assert unusable is None
        assert d.options["bucket"] == "logs"
        assert d.options["path"] == "llm"
        assert d.options["aws"]["region_name"] == "eu-west-1"
        assert d.options["aws"]["aws_access_key_id"] == "AKIA1"


def test_team_credentials_make_their_own_destination() -> None:
    a = dest(
        "s3", {"s3_bucket_name": "b", "s3_aws_access_key_id": "A", "s3_aws_secret_access_key": "x"}
    )
    b = dest(
        "s3", {"s3_bucket_name": "b", "s3_aws_access_key_id": "B", "s3_aws_secret_access_key": "y"}
    )
    assert a.key != b.key
    assert "x" not in a.label.split()


def test_gcs_bucket_per_team_settings_as_seed_003(tmp_path: Path) -> None:
    account = tmp_path / "sa.json"
    account.write_text("{}")
    d = dest(
        "gcs_bucket",
        {"gcs_bucket_name": "team-bucket", "gcs_path_service_account": str(account)},
        {"GCS_BUCKET_NAME": "global-bucket"},
    )
    assert d.options["bucket"] == "team-bucket"
    assert d.options["service_account"] == str(account)
    assert d.options["dev"] is False


def test_object_keys_partition_by_date_and_team() -> None:
    e = completed("team-a")
    key = object_key("/prefix/", ExportItem(e, False))
    assert key == f"prefix/date={e.start_time:%Y-%m-%d}/team=team-a/{e.event_id}.json"
    assert object_key(None, ExportItem(completed(None), False)).split("/")[1] == "team=_"


def test_s3_batch_objects_group_by_date_and_team() -> None:
    items = [ExportItem(completed(t), False) for t in ("a", "a", "b")]
    objects = s3.batch_objects("p", items)
    assert len(objects) == 2
    lines = next(v for k, v in objects.items() if "team=a" in k).decode().splitlines()
    assert len(lines) == 2
    assert s3.batch_objects("p", items) == objects  # stable names: a retry overwrites


def test_redacted_record_carries_no_content() -> None:
    e = completed("t", tags=["x"])
    doc = record(ExportItem(redact(e), True))
    assert PROMPT not in json.dumps(doc)
    assert doc["content_redacted"] is True
    assert doc["spend"] == "0.000123"
    assert doc["request_tags"] == ["x"]


def test_sqs_truncates_content_with_a_marker_and_keeps_the_numbers() -> None:
    big = completed("t", messages=[{"role": "user", "content": "x" * 10_000}])
    text = sqs.body(ExportItem(big, False), 4096)
    assert len(text.encode()) <= 4096
    doc = json.loads(text)
    assert doc["content_truncated"] is True
    assert doc["messages"]["truncated"] is True
    assert doc["total_tokens"] == 17
    small = json.loads(sqs.body(ExportItem(completed("t"), False), 262_144))
    assert "content_truncated" not in small
    groups = sqs.entries([ExportItem(completed("t"), False)] * 25, 262_144)
    assert [len(g) for g in groups] == [10, 10, 5]


def test_dynamodb_attribute_values() -> None:
    assert dynamodb.attribute({"a": [1, "x", None, True]}) == {
        "M": {"a": {"L": [{"N": "1"}, {"S": "x"}, {"NULL": True}, {"BOOL": True}]}}
    }
    it = dynamodb.item(ExportItem(completed("t"), False))
    assert it["request_id"]["S"].startswith("chatcmpl-")
    assert it["response_cost"] == {"N": "0.000123"}


def test_spend_log_row_matches_its_bigquery_schema() -> None:
    row = spend_log_row(ExportItem(completed("t", tags=["a"]), False))
    assert list(row) == [f["name"] for f in SPEND_LOG_SCHEMA]
    assert json.loads(row["request_tags"]) == ["a"]
    assert row["spend"] == "0.000123"


def test_elasticsearch_bulk_pairs_and_template() -> None:
    items = [ExportItem(completed("t"), False) for _ in range(2)]
    ops = elasticsearch.operations("logs-tollgate.llm-default", items)
    assert [next(iter(o)) for o in ops[::2]] == ["create", "create"]
    assert ops[0]["create"]["_id"] == items[0].event.event_id
    assert ops[1]["cost"] == 0.000123
    assert "@timestamp" in ops[1]
    tpl = elasticsearch.INDEX_TEMPLATE
    assert tpl["data_stream"] == {}
    assert tpl["template"]["mappings"]["properties"]["cost"]["type"] == "scaled_float"
