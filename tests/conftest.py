"""Test session wiring: tier markers by folder, and real NATS/PostgreSQL/Redis.

Integration and e2e tests use the servers named by TOLLGATE_NATS_URL,
TOLLGATE_DATABASE_URL and TOLLGATE_REDIS_URL when set, otherwise the embedded
binaries, started once per session in a temporary folder.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from support.databases import fresh_database
from tollgate_devstack.embedded import EmbeddedStack, StackUrls
from tollgate_shared.provision import provision_url
from tollgate_shared.publishing import connect_nats

_TIERS = ("unit", "contract", "integration", "e2e")

# pgserver notes from a thread at interpreter exit that PostgreSQL stopped; in a parallel
# worker stderr is closed by then, and logging would print a traceback instead.
logging.getLogger("pgserver").setLevel(logging.WARNING)


# The suites sharing one scaled-out stack (`loadrun.acquire_shared_stack`): run back to
# back, and the stack is stopped after the last of them, not at the end of the session (idle,
# its three NATS nodes and ten services take a third of a core from every later test).
_SHARED_STACK_SUITES = ("chaos", "scaleout")


def _shared_stack_suite(item: pytest.Item | None) -> bool:
    if item is None:
        return False
    parts = Path(str(item.fspath)).parts
    return "e2e" in parts and any(s in parts for s in _SHARED_STACK_SUITES)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test's tier is the folder it lives in: tests/<tier>/..."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        for tier in _TIERS:
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))
                break
    shared = [i for i in items if _shared_stack_suite(i)]
    if shared:
        first = items.index(shared[0])
        rest = [i for i in items if not _shared_stack_suite(i)]
        items[:] = rest[:first] + shared + rest[first:]


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if _shared_stack_suite(item) and not _shared_stack_suite(nextitem):
        from tollgate_devstack.loadrun import release_shared_stack

        release_shared_stack(now=True)


@pytest.fixture(scope="session")
def stack() -> Iterator[StackUrls]:
    """Real servers: from the environment, or embedded for this session."""
    given = {
        "nats_url": os.environ.get("TOLLGATE_NATS_URL"),
        "database_url": os.environ.get("TOLLGATE_DATABASE_URL"),
        "redis_url": os.environ.get("TOLLGATE_REDIS_URL"),
    }
    # Outside pytest's temporary root: PostgreSQL runs as another user when the tests run as
    # root, and any other pytest session of the same user sets that root back to 0700 when it
    # starts, which cut a running suite's database off once (PANIC: Permission denied).
    root = Path(tempfile.mkdtemp(prefix="tollgate-test-stack-"))
    # Parallel workers (pytest-xdist) each start their own servers: no preferred ports.
    embedded = EmbeddedStack(root, preferred_ports="PYTEST_XDIST_WORKER" not in os.environ)
    try:
        yield embedded.start(**given)
    finally:
        embedded.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
async def provisioned(stack: StackUrls) -> StackUrls:
    """Streams, consumers and buckets exist (idempotent, as `just provision`), created as
    the `provision` user where the embedded NATS has authorization."""
    await provision_url(stack.nats_url, auth=stack.nats_auth("provision"))
    return stack


@pytest.fixture
async def nc(provisioned: StackUrls) -> AsyncIterator[NATS]:
    client = await connect_nats(provisioned.nats_url, "tollgate-tests")
    try:
        yield client
    finally:
        await client.drain()


@pytest.fixture
def js(nc: NATS) -> JetStreamContext:
    return nc.jetstream()


@pytest.fixture
async def database_url(stack: StackUrls) -> AsyncIterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    async with fresh_database(stack.database_url) as url:
        yield url
