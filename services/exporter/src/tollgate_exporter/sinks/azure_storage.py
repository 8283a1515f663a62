"""`azure_storage`: one JSON blob per call in an Azure Storage container (the file system of
an ADLS Gen2 account is a container too), keyed by date and team
(`<azure_storage_path>/date=YYYY-MM-DD/team=<team>/<event id>.json`), uploaded with
azure-storage-blob's asyncio client; a redelivered call overwrites its own blob.

Settings, LiteLLM's names: `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_FILE_SYSTEM` (the
container), and either `AZURE_STORAGE_ACCOUNT_KEY` or a service principal
(`AZURE_STORAGE_TENANT_ID`, `AZURE_STORAGE_CLIENT_ID`, `AZURE_STORAGE_CLIENT_SECRET`,
through azure-identity); callback variables of the same names in lower case;
`AZURE_STORAGE_ACCOUNT_URL` for another endpoint (Azurite, sovereign clouds).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from tollgate_exporter.destinations import Destination, digest, safe_url
from tollgate_exporter.sinks._storage import (
    Settings,
    bounded,
    dumps,
    mapped_errors,
    object_key,
    record,
)
from tollgate_exporter.sinks.base import BatchResult, ExportItem, SinkContext, SinkType

if TYPE_CHECKING:
    from azure.storage.blob.aio import ContainerClient


def destination(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    s = Settings(vars_, env)

    def get(n: str) -> str | None:
        return s.get((n.lower(),), (n,))

    account = get("AZURE_STORAGE_ACCOUNT_NAME")
    container = get("AZURE_STORAGE_FILE_SYSTEM") or get("AZURE_STORAGE_CONTAINER")
    if not account or not container:
        return f"{name} needs azure_storage_account_name and azure_storage_file_system"
    key = get("AZURE_STORAGE_ACCOUNT_KEY")
    principal = {
        "tenant_id": get("AZURE_STORAGE_TENANT_ID"),
        "client_id": get("AZURE_STORAGE_CLIENT_ID"),
        "client_secret": get("AZURE_STORAGE_CLIENT_SECRET"),
    }
    if not key and not all(principal.values()):
        return (
            f"{name} needs azure_storage_account_key or a service principal "
            "(azure_storage_tenant_id, azure_storage_client_id, azure_storage_client_secret)"
        )
    url = get("AZURE_STORAGE_ACCOUNT_URL") or f"https://{account}.blob.core.windows.net"
    options = {
        "account": account,
        "url": url,
        "container": container,
        "key": key,
        "principal": None if key else principal,
        "path": get("AZURE_STORAGE_PATH") or "",
    }
    return Destination(
        "azure_storage",
        f"azure_storage:{digest(options)}",
        f"azure_storage {safe_url(url)}/{container}",
        options,
    )


class AzureStorageSink:
    kind = "azure_storage"

    def __init__(self) -> None:
        self._containers: dict[str, ContainerClient] = {}
        self._closers: list[Any] = []
        self._json: Any = None

    async def _container(self, destination: Destination) -> ContainerClient:
        found = self._containers.get(destination.key)
        if found is not None:
            return found
        # The Azure libraries are imported when a destination first uses them (they take
        # most of a second): an exporter without one never loads them.
        from azure.core.exceptions import ResourceExistsError
        from azure.identity.aio import ClientSecretCredential
        from azure.storage.blob import ContentSettings
        from azure.storage.blob.aio import BlobServiceClient

        self._json = ContentSettings(content_type="application/json")
        opts = destination.options
        credential: Any
        if opts["key"]:
            credential = {"account_name": opts["account"], "account_key": opts["key"]}
        else:
            credential = ClientSecretCredential(**opts["principal"])
            self._closers.append(credential)
        service = BlobServiceClient(opts["url"], credential=credential)
        self._closers.append(service)
        container = service.get_container_client(opts["container"])
        with contextlib.suppress(ResourceExistsError):
            await container.create_container()
        self._containers[destination.key] = container
        return container

    async def send(self, destination: Destination, items: Sequence[ExportItem]) -> BatchResult:
        opts = destination.options
        async with mapped_errors(f"azure storage {opts['container']}"):
            container = await self._container(destination)
            await bounded(
                [
                    partial(
                        container.upload_blob,
                        object_key(opts["path"], i),
                        dumps(record(i)).encode(),
                        overwrite=True,
                        content_settings=self._json,
                    )
                    for i in items
                ]
            )
        return BatchResult()

    async def close(self) -> None:
        for closer in reversed(self._closers):
            await closer.close()
        self._closers.clear()
        self._containers.clear()


def create(ctx: SinkContext) -> AzureStorageSink:
    return AzureStorageSink()


SINK = SinkType(
    kind="azure_storage", names=("azure_storage",), destination=destination, create=create
)
