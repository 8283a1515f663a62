"""The limiter against real Redis: parallel slots given back and reclaimed after a crash, rate
limits checked before counting, and budget reservations."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import redis.asyncio as aioredis

from tollgate_devstack.embedded import StackUrls
from tollgate_ingress.auth import AuthError, Identity, RateLimit
from tollgate_ingress.limits import PARALLEL_TTL_S, RateLimiter, Reservation

NANO = 10**9  # one USD in the limiter's unit
MILLI = 10**6


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
    first = await limiter.admit(who, t0)
    second = await limiter.admit(who, t0)
    assert first
    assert second
    assert first.member != second.member
    with pytest.raises(AuthError) as info:
        await limiter.admit(who, t0)
    assert info.value.status == 429
    await limiter.release(second, tokens=0)  # an answered call gives its slot back
    third = await limiter.admit(who, t0 + 1)
    assert third is not None
    # `first` and `third` are never given back (their replica died); once they are older
    # than PARALLEL_TTL_S the next admission drops them, and traffic never keeps them alive.
    with pytest.raises(AuthError):
        await limiter.admit(who, t0 + PARALLEL_TTL_S / 2)
    later = t0 + PARALLEL_TTL_S + 2
    assert await limiter.admit(who, later) is not None
    assert await limiter.admit(who, later) is not None
    with pytest.raises(AuthError):
        await limiter.admit(who, later)


async def test_no_limit_costs_nothing_and_team_rpm_is_shared(limiter: RateLimiter) -> None:
    assert await limiter.admit(identity()) is None
    team = f"team-{uuid.uuid4().hex[:8]}"
    a = identity(rate_limits=(RateLimit("team", team, 2, None),))
    b = identity(rate_limits=(RateLimit("team", team, 2, None),))
    now = (time.time() // 60) * 60 + 1  # the start of a minute, so the window holds
    await limiter.admit(a, now)
    await limiter.admit(b, now)
    with pytest.raises(AuthError, match=f"team {team} allows 2 requests per minute"):
        await limiter.admit(a, now)
    await limiter.admit(a, now + 60)  # the next minute starts afresh


async def test_a_key_past_its_own_rpm_does_not_use_up_its_teams_rpm(
    limiter: RateLimiter, stack: StackUrls
) -> None:
    team = f"team-{uuid.uuid4().hex[:8]}"
    spammer = identity(
        rate_limits=(RateLimit("key", "k1", 1, None), RateLimit("team", team, 3, None))
    )
    teammate = identity(rate_limits=(RateLimit("team", team, 3, None),))
    now = (time.time() // 60) * 60 + 1
    await limiter.admit(spammer, now)
    for _ in range(5):  # refused by its own rpm: must not count against the team
        with pytest.raises(AuthError, match="key allows 1 requests per minute"):
            await limiter.admit(spammer, now)
    await limiter.admit(teammate, now)
    await limiter.admit(teammate, now)
    with pytest.raises(AuthError, match=f"team {team} allows 3 requests per minute"):
        await limiter.admit(teammate, now)
    # Refusals are counted apart, per limit that refused.
    client = aioredis.from_url(stack.redis_url)
    try:
        w = int(now // 60)
        assert int(await client.get(f"tollgate:ratelimit:key:k1:{w}:refused") or 0) == 5
        assert int(await client.get(f"tollgate:ratelimit:team:{team}:{w}:refused") or 0) == 1
    finally:
        await client.aclose()


async def test_budget_reservations_admit_only_what_the_headroom_covers(
    limiter: RateLimiter,
) -> None:
    team = f"team-{uuid.uuid4().hex[:8]}"
    who = identity(budgets=(("team", team, Decimal("1")),))
    now = time.time()
    # Headroom 1.00 USD; each call reserves 0.60: the first is admitted, the second not.
    # (A call alone is admitted whatever its estimate while the headroom is positive.)
    alone = await limiter.admit(who, now, reserve=[Reservation("team", "other-" + team, 1, NANO)])
    assert alone is not None
    first = await limiter.admit(who, now, reserve=[Reservation("team", team, NANO, 600 * MILLI)])
    assert first is not None
    with pytest.raises(AuthError) as info:
        await limiter.admit(who, now, reserve=[Reservation("team", team, NANO, 600 * MILLI)])
    assert info.value.code == "budget_exceeded"
    # Settled at 0.10 and held until `now + 5`: a second call fits while it is held...
    await limiter.release(first, tokens=0, costs=[100 * MILLI], hold_until=[now + 5])
    second = await limiter.admit(
        who, now + 1, reserve=[Reservation("team", team, NANO, 600 * MILLI)]
    )
    assert second is not None
    with pytest.raises(AuthError):  # 0.10 held + 0.60 reserved + 0.40 > 1.00
        await limiter.admit(who, now + 1, reserve=[Reservation("team", team, NANO, 400 * MILLI)])
    # ...and a reservation whose holder died is dropped once it expires.
    assert await limiter.admit(
        who, now + PARALLEL_TTL_S + 10, reserve=[Reservation("team", team, NANO, 1)]
    )
