"""AWS clients for the s3, sqs and dynamodb sinks: one aiobotocore client per destination
(region, endpoint, credentials), kept open while the exporter runs.

Botocore's own retries are off (one attempt per call): the exporter's delivery loop
retries, honours `Retry-After`, and dead-letters, as for every sink.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from tollgate_exporter.sinks.base import SinkContext


class AwsClients:
    """One client per (service, destination key), created on first use."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._session: Any = None
        self._config: Any = None
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[str, Any] = {}

    async def get(self, service: str, key: str, aws: Mapping[str, str | None]) -> Any:
        client = self._clients.get(key)
        if client is None:
            if self._session is None:
                # aiobotocore is imported when a destination first uses it (it takes half a
                # second): an exporter without an AWS destination never loads it.
                from aiobotocore.config import AioConfig
                from aiobotocore.session import get_session

                self._session = get_session()
                self._config = AioConfig(
                    retries={"total_max_attempts": 1, "mode": "standard"},
                    connect_timeout=self._timeout_s,
                    read_timeout=self._timeout_s,
                )
            kwargs = {k: v for k, v in aws.items() if v}
            client = await self._stack.enter_async_context(
                self._session.create_client(service, config=self._config, **kwargs)
            )
            self._clients[key] = client
        return client

    async def close(self) -> None:
        self._clients.clear()
        await self._stack.aclose()


class AwsSink:
    """What the AWS sinks share: their clients, built from the exporter's timeout, closed
    with the sink."""

    def __init__(self, ctx: SinkContext) -> None:
        self._clients = AwsClients(ctx.settings.export_timeout_s)

    async def close(self) -> None:
        await self._clients.close()
