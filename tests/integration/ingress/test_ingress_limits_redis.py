"""The limiter against real Redis: parallel slots given back, and reclaimed after a crash."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from tollgate_devstack.embedded import StackUrls
from tollgate_ingress.auth import AuthError, Identity, RateLimit
from tollgate_ingress.limits import PARALLEL_TTL_S, RateLimiter


@pytest.fixture
async def limiter(stack: StackUrls) -> AsyncIterator[RateLimiter]:
    client = aioredis.from_url(stack.redis_url)
    try:
        yield RateLimiter(client)
    finally:
        await client.aclose()


def identity(**kw: object) -> Identity:
    return Identity(api_key_hash=uuid.uuid4().hex, **kw)  # type: ignore[arg-type]


async def test_parallel_slots_are_given_back_and_a_crashed_holder_is_reclaimed(
    limiter: RateLimiter,
) -> None:
    who = identity(max_parallel_requests=2)
    t0 = time.time()
    first = await limiter.enter(who, t0)
    second = await limiter.enter(who, t0)
    assert first
    assert second
    assert first != second
    with pytest.raises(AuthError) as info:
        await limiter.enter(who, t0)
    assert info.value.status == 429
    await limiter.leave(who, second)  # an answered call gives its slot back
    third = await limiter.enter(who, t0 + 1)
    assert third is not None
    # `first` and `third` are never given back (their replica died); once they are older
    # than PARALLEL_TTL_S the next admission drops them, and traffic never keeps them alive.
    with pytest.raises(AuthError):
        await limiter.enter(who, t0 + PARALLEL_TTL_S / 2)
    later = t0 + PARALLEL_TTL_S + 2
    assert await limiter.enter(who, later) is not None
    assert await limiter.enter(who, later) is not None
    with pytest.raises(AuthError):
        await limiter.enter(who, later)


async def test_no_limit_costs_nothing_and_team_rpm_is_shared(limiter: RateLimiter) -> None:
    assert await limiter.enter(identity()) is None
    team = f"team-{uuid.uuid4().hex[:8]}"
    a = identity(rate_limits=(RateLimit("team", team, 2, None),))
    b = identity(rate_limits=(RateLimit("team", team, 2, None),))
    now = (time.time() // 60) * 60 + 1  # the start of a minute, so the window holds
    await limiter.admit(a, now)
    await limiter.admit(b, now)
    with pytest.raises(AuthError, match=f"team {team} allows 2 requests per minute"):
        await limiter.admit(a, now)
    await limiter.admit(a, now + 60)  # the next minute starts afresh
