"""Ledger integration fixtures: a migrated database, a per-test consumer, event factories."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import pytest
from ledger_support import provisioned_consumer
from nats.js import JetStreamContext

from tollgate_ledger.app import migrate
from tollgate_shared import names


@pytest.fixture
async def ledger_db(database_url: str) -> str:
    await migrate(database_url)
    return database_url


@pytest.fixture
async def pool(ledger_db: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(ledger_db, min_size=1, max_size=4)
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture
def team() -> str:
    return f"lt-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def spend_spec(js: JetStreamContext, team: str) -> AsyncIterator[names.ConsumerSpec]:
    """A durable like `ledger-spend`, filtered to this test's team so tests never share it."""
    spec = replace(
        names.LEDGER_SPEND,
        name=f"ledger-spend-{team}",
        filter_subjects=(
            f"{names.LLM_REQUEST_COMPLETED}.{team}",
            f"{names.LLM_REQUEST_FAILED}.{team}",
        ),
        backoff_s=(0.2, 0.5),
    )
    async with provisioned_consumer(js, spec):
        yield spec
