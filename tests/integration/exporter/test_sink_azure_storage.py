"""azure_storage through azure-storage-blob's asyncio client into Azurite (npm, installed
by `./just emulators` when missing): one blob per call by date and team, read back."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from azure.storage.blob.aio import ContainerClient

from support.emulators import (
    AZURITE_ACCOUNT,
    AZURITE_KEY,
    azurite,
    check_record,
    destination_of,
    item,
    sink_of,
)
from support.receivers.samples import completed, failed
from tollgate_exporter.sinks import PermanentError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def account_url() -> Iterator[str]:
    with azurite() as url:
        yield url


def env(url: str, container: str, key: str = AZURITE_KEY) -> dict[str, str]:
    return {
        "AZURE_STORAGE_ACCOUNT_NAME": AZURITE_ACCOUNT,
        "AZURE_STORAGE_ACCOUNT_KEY": key,
        "AZURE_STORAGE_FILE_SYSTEM": container,
        "AZURE_STORAGE_ACCOUNT_URL": url,
    }


@pytest.mark.parametrize("content", [True, False])
async def test_azure_blob_per_call_by_date_and_team(account_url: str, content: bool) -> None:
    container = f"tollgate-{str(content).lower()}"
    dest = destination_of(
        "azure_storage", {"azure_storage_path": "llm"}, env(account_url, container)
    )
    ok, bad = completed("team-a", "h", tags=["blue"]), failed(None, "h")
    async with sink_of("azure_storage") as sink:
        await sink.send(dest, [item(ok, content), item(bad, content)])
        await sink.send(dest, [item(ok, content)])
    creds = {"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY}
    async with ContainerClient(account_url, container, credential=creds) as client:
        names = sorted([b.name async for b in client.list_blobs()])
        assert names == sorted(
            [
                f"llm/date={ok.start_time:%Y-%m-%d}/team=team-a/{ok.event_id}.json",
                f"llm/date={bad.start_time:%Y-%m-%d}/team=_/{bad.event_id}.json",
            ]
        )
        blob = await client.download_blob(next(n for n in names if ok.event_id in n))
        check_record(json.loads(await blob.readall()), ok, content)


async def test_azure_wrong_key_is_refused_for_good(account_url: str) -> None:
    wrong = "d3Jvbmc=" * 8
    dest = destination_of("azure_storage", {}, env(account_url, "refused", wrong))
    async with sink_of("azure_storage") as sink:
        with pytest.raises(PermanentError, match="403"):
            await sink.send(dest, [item(completed("t"), True)])
